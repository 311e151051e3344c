"""The host and application metrics every sender reports under the vocabulary's names.

The agent's psutil sampler and the agentless scrape of node_exporter must give
the same series for the same machine, so that a fingerprint does not depend on
how its samples were collected. Both report, under the names of
:mod:`cfgclone.vocabulary`:

* ``system.cpu.utilization`` (0 to 1, all cores): busy time over total time,
  where idle and iowait count as not busy, as psutil and htop count it;
* ``system.memory.usage`` (bytes: total minus available) and
  ``system.memory.utilization`` (its share of the total);
* ``system.disk.io{direction="read"|"write"}``: bytes per second, whole disks;
* ``system.network.io{direction="receive"|"transmit"}``: bytes per second,
  interfaces other than loopback;
* ``system.process.count`` (node_exporter reports it only with its
  ``processes`` collector enabled).

An application's own ``/metrics`` is mapped too: the OpenTelemetry HTTP server
histogram as Prometheus renders it (``http_server_request_duration_seconds``)
becomes ``http.server.request.rate``, ``http.server.request.duration`` (mean) and
``http.server.request.error.ratio`` (5xx share); ``db_client_operation_duration_seconds``
becomes ``db.client.operation.duration``. :data:`NODE_EXPORTER` and
:data:`HISTOGRAMS` are the one table of these mappings.

Counters become rates in the sender (the collector stores what it is sent).
A rate needs two readings, so the first reading of a counter yields nothing,
and neither does a reading that went backwards (a reboot, a counter reset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cfgclone import vocabulary
from cfgclone.collector.batching import COUNTER, GAUGE, Sample, is_metric_name
from cfgclone.collector.prometheus_text import Exposition, PromSample
from cfgclone.vocabulary import MetricSpec

__all__ = [
    "CPU_UTILIZATION",
    "DISK_READ",
    "DISK_WRITE",
    "HISTOGRAMS",
    "HOST_METRICS",
    "MEMORY_USAGE",
    "MEMORY_UTILIZATION",
    "NETWORK_RECEIVE",
    "NETWORK_TRANSMIT",
    "NODE_EXPORTER",
    "PROCESS_COUNT",
    "CounterRates",
    "HostMetric",
    "ScrapeConverter",
]


@dataclass(frozen=True, slots=True)
class HostMetric:
    """A vocabulary metric as a sender reports it: gauge, or counter sent as its rate."""

    spec: MetricSpec
    kind: int

    @property
    def name(self) -> str:
        return self.spec.name

    def sample(self, value: float, ts_unix_ns: int) -> Sample:
        return Sample(self.spec.name, value, ts_unix_ns, self.spec.unit, self.kind)


CPU_UTILIZATION = HostMetric(vocabulary.CPU_UTILIZATION, GAUGE)
MEMORY_USAGE = HostMetric(vocabulary.MEMORY_USAGE, GAUGE)
MEMORY_UTILIZATION = HostMetric(vocabulary.MEMORY_UTILIZATION, GAUGE)
DISK_READ = HostMetric(vocabulary.DISK_READ, COUNTER)
DISK_WRITE = HostMetric(vocabulary.DISK_WRITE, COUNTER)
NETWORK_RECEIVE = HostMetric(vocabulary.NETWORK_RECEIVE, COUNTER)
NETWORK_TRANSMIT = HostMetric(vocabulary.NETWORK_TRANSMIT, COUNTER)
PROCESS_COUNT = HostMetric(vocabulary.PROCESS_COUNT, GAUGE)
HOST_METRICS = (
    CPU_UTILIZATION,
    MEMORY_USAGE,
    MEMORY_UTILIZATION,
    DISK_READ,
    DISK_WRITE,
    NETWORK_RECEIVE,
    NETWORK_TRANSMIT,
    PROCESS_COUNT,
)

NODE_EXPORTER: Mapping[str, HostMetric] = {
    "node_disk_read_bytes_total": DISK_READ,
    "node_disk_written_bytes_total": DISK_WRITE,
    "node_network_receive_bytes_total": NETWORK_RECEIVE,
    "node_network_transmit_bytes_total": NETWORK_TRANSMIT,
    "node_processes_pids": PROCESS_COUNT,
}
"""node_exporter series summed into a host metric (loopback interfaces left out).
CPU (``node_cpu_seconds_total`` by mode) and memory (``node_memory_MemTotal_bytes``
and ``node_memory_MemAvailable_bytes``) are computed from several series."""


@dataclass(frozen=True, slots=True)
class HistogramMapping:
    """What an application's duration histogram becomes."""

    duration: MetricSpec
    """The mean duration over the interval: the change of ``_sum`` over that of ``_count``."""
    rate: MetricSpec | None = None
    """The change of ``_count`` per second: the offered load."""
    error_ratio: MetricSpec | None = None
    """The share of the interval's count with a 5xx ``http_response_status_code``."""


HISTOGRAMS: Mapping[str, HistogramMapping] = {
    "http_server_request_duration_seconds": HistogramMapping(
        vocabulary.HTTP_REQUEST_DURATION, vocabulary.HTTP_REQUEST_RATE, vocabulary.HTTP_ERROR_RATIO
    ),
    "db_client_operation_duration_seconds": HistogramMapping(vocabulary.DB_OPERATION_DURATION),
    "postgresql_transaction_duration_seconds": HistogramMapping(
        vocabulary.DB_OPERATION_DURATION, vocabulary.POSTGRESQL_COMMITS
    ),
}
"""Histograms as OpenTelemetry's Prometheus exporter names them, by family."""

LOOPBACK_INTERFACES = frozenset({"lo"})
_STATUS_LABELS = ("http_response_status_code", "status_code", "code", "status")


class CounterRates:
    """Changes of running totals between consecutive readings, per key."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}

    def delta(self, key: str, total: float, at_seconds: float) -> tuple[float, float] | None:
        """``(change of total, seconds elapsed)`` since the last reading of ``key``.

        None for the first reading, for a total that went backwards, and for no
        time elapsed.
        """
        previous = self._last.get(key)
        self._last[key] = (total, at_seconds)
        if previous is None:
            return None
        change, elapsed = total - previous[0], at_seconds - previous[1]
        if change < 0 or elapsed <= 0:
            return None
        return change, elapsed

    def rate(self, key: str, total: float, at_seconds: float) -> float | None:
        """Per-second rate of ``key`` since its last reading, or None (see :meth:`delta`)."""
        step = self.delta(key, total, at_seconds)
        return None if step is None else step[0] / step[1]

    def utilization(self, key: str, busy: float, total: float, at_seconds: float) -> float | None:
        """Share (0 to 1) of ``total`` time that was ``busy`` since the last reading."""
        busy_step = self.delta(f"{key}/busy", busy, at_seconds)
        total_step = self.delta(f"{key}/total", total, at_seconds)
        if busy_step is None or total_step is None or total_step[0] <= 0:
            return None
        return min(1.0, max(0.0, busy_step[0] / total_step[0]))


def _is_server_error(sample: PromSample) -> bool:
    for key in _STATUS_LABELS:
        status = sample.label(key)
        if status:
            return status.startswith("5")
    return False


@dataclass
class _HistogramTotals:
    count: float = 0.0
    total: float = 0.0
    errors: float = 0.0
    seen: bool = False


@dataclass
class _NodeTotals:
    cpu_total: float = 0.0
    cpu_idle: float = 0.0
    cpu_seen: bool = False
    memory_total: float | None = None
    memory_available: float | None = None


def _node_totals(samples: Sequence[PromSample]) -> tuple[_NodeTotals, dict[HostMetric, float]]:
    totals = _NodeTotals()
    summed: dict[HostMetric, float] = {}
    for sample in samples:
        name = sample.name
        if not name.startswith("node_"):
            continue
        if name == "node_cpu_seconds_total":
            totals.cpu_seen = True
            totals.cpu_total += sample.value
            if sample.label("mode") in ("idle", "iowait"):
                totals.cpu_idle += sample.value
        elif name == "node_memory_MemTotal_bytes":
            totals.memory_total = sample.value
        elif name == "node_memory_MemAvailable_bytes":
            totals.memory_available = sample.value
        else:
            metric = NODE_EXPORTER.get(name)
            if metric is not None and sample.label("device") not in LOOPBACK_INTERFACES:
                summed[metric] = summed.get(metric, 0.0) + sample.value
    return totals, summed


def _histogram_totals(samples: Sequence[PromSample]) -> dict[str, _HistogramTotals]:
    found: dict[str, _HistogramTotals] = {}
    for sample in samples:
        family, _, part = sample.name.rpartition("_")
        if part not in ("count", "sum") or family not in HISTOGRAMS:
            continue
        totals = found.setdefault(family, _HistogramTotals())
        totals.seen = True
        if part == "sum":
            totals.total += sample.value
        else:
            totals.count += sample.value
            if _is_server_error(sample):
                totals.errors += sample.value
    return found


class ScrapeConverter:
    """Turns successive scrapes of one endpoint into samples.

    node_exporter's series become the host metrics above and the mapped
    application histograms their vocabulary metrics; series whose name starts
    with one of ``prefixes`` are kept as well, one series per label set,
    running totals as per-second rates. Keep one converter per endpoint: it
    remembers the previous scrape's totals.
    """

    def __init__(self, prefixes: Sequence[str] = ()) -> None:
        self.prefixes = tuple(prefixes)
        self._rates = CounterRates()

    def convert(self, exposition: Exposition, ts_unix_ns: int, at_seconds: float) -> list[Sample]:
        """Samples of one scrape taken at ``ts_unix_ns`` (``at_seconds`` on a monotonic clock)."""
        totals, summed = _node_totals(exposition.samples)
        samples = self._host_samples(totals, summed, ts_unix_ns, at_seconds)
        samples += self._histogram_samples(exposition, ts_unix_ns, at_seconds)
        if self.prefixes:
            samples += self._kept_samples(exposition, ts_unix_ns, at_seconds)
        return samples

    def _host_samples(
        self, totals: _NodeTotals, summed: Mapping[HostMetric, float], ts: int, at: float
    ) -> list[Sample]:
        samples: list[Sample] = []
        if totals.cpu_seen:
            busy = totals.cpu_total - totals.cpu_idle
            utilization = self._rates.utilization("cpu", busy, totals.cpu_total, at)
            if utilization is not None:
                samples.append(CPU_UTILIZATION.sample(utilization, ts))
        if totals.memory_total is not None and totals.memory_available is not None:
            used = totals.memory_total - totals.memory_available
            samples.append(MEMORY_USAGE.sample(used, ts))
            if totals.memory_total > 0:
                samples.append(MEMORY_UTILIZATION.sample(used / totals.memory_total, ts))
        for metric, total in summed.items():
            if metric.kind == COUNTER:
                rate = self._rates.rate(metric.name, total, at)
                if rate is not None:
                    samples.append(metric.sample(rate, ts))
            else:
                samples.append(metric.sample(total, ts))
        return samples

    def _histogram_samples(self, exposition: Exposition, ts: int, at: float) -> list[Sample]:
        samples: list[Sample] = []
        for family, totals in _histogram_totals(exposition.samples).items():
            mapping = HISTOGRAMS[family]
            count = self._rates.delta(f"{family}/count", totals.count, at)
            total = self._rates.delta(f"{family}/sum", totals.total, at)
            errors = self._rates.delta(f"{family}/errors", totals.errors, at)
            if count is None:
                continue
            if mapping.rate is not None:
                spec = mapping.rate
                samples.append(Sample(spec.name, count[0] / count[1], ts, spec.unit, COUNTER))
            if count[0] <= 0:
                continue
            if total is not None:
                spec = mapping.duration
                samples.append(Sample(spec.name, total[0] / count[0], ts, spec.unit, GAUGE))
            if mapping.error_ratio is not None and errors is not None:
                spec = mapping.error_ratio
                ratio = min(1.0, errors[0] / count[0])
                samples.append(Sample(spec.name, ratio, ts, spec.unit, GAUGE))
        return samples

    def _kept_samples(self, exposition: Exposition, ts: int, at: float) -> list[Sample]:
        samples: list[Sample] = []
        for sample in exposition.samples:
            if not sample.name.startswith(self.prefixes) or not math.isfinite(sample.value):
                continue
            if sample.name.rpartition("_")[0] in HISTOGRAMS:
                continue  # mapped above
            name = vocabulary.series(sample.name, sample.labels)
            if not is_metric_name(name):
                continue
            spec = vocabulary.spec_of(name)
            if exposition.is_cumulative(sample.name):
                rate = self._rates.rate(name, sample.value, at)
                if rate is not None:
                    samples.append(Sample(name, rate, ts, spec.unit if spec else "/s", COUNTER))
            else:
                samples.append(Sample(name, sample.value, ts, spec.unit if spec else "", GAUGE))
        return samples
