"""The host metrics every sender reports under the same names, and counters made rates.

The agent's psutil sampler and the agentless scrape of node_exporter must give
the same series for the same machine, so that a fingerprint does not depend on
how its samples were collected. Both report:

* ``cpu.utilization`` (percent of all cores, 0-100): busy time over total time,
  where idle and iowait count as not busy, as psutil and htop count it;
* ``memory.used`` (bytes): total minus available, as psutil counts it;
* ``disk.read_bytes_per_second`` / ``disk.write_bytes_per_second``: summed over
  whole disks;
* ``net.recv_bytes_per_second`` / ``net.sent_bytes_per_second``: summed over
  interfaces other than loopback;
* ``processes.count``: processes alive (node_exporter reports it only with its
  ``processes`` collector enabled).

Counters become rates in the sender (the collector stores what it is sent).
A rate needs two readings, so the first reading of a counter yields nothing,
and neither does a reading that went backwards (a reboot, a counter reset).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cfgclone.collector.batching import COUNTER, GAUGE, Sample, is_metric_name
from cfgclone.collector.prometheus_text import Exposition, PromSample

__all__ = [
    "CPU_UTILIZATION",
    "DISK_READ",
    "DISK_WRITE",
    "HOST_METRICS",
    "MEMORY_USED",
    "NET_RECV",
    "NET_SENT",
    "PROCESSES",
    "CounterRates",
    "MetricDef",
    "ScrapeConverter",
]


@dataclass(frozen=True, slots=True)
class MetricDef:
    """Name, unit and kind of a metric a sender reports."""

    name: str
    unit: str
    kind: int

    def sample(self, value: float, ts_unix_ns: int) -> Sample:
        return Sample(self.name, value, ts_unix_ns, self.unit, self.kind)


CPU_UTILIZATION = MetricDef("cpu.utilization", "percent", GAUGE)
MEMORY_USED = MetricDef("memory.used", "bytes", GAUGE)
DISK_READ = MetricDef("disk.read_bytes_per_second", "bytes_per_second", COUNTER)
DISK_WRITE = MetricDef("disk.write_bytes_per_second", "bytes_per_second", COUNTER)
NET_RECV = MetricDef("net.recv_bytes_per_second", "bytes_per_second", COUNTER)
NET_SENT = MetricDef("net.sent_bytes_per_second", "bytes_per_second", COUNTER)
PROCESSES = MetricDef("processes.count", "count", GAUGE)
HOST_METRICS = (
    CPU_UTILIZATION,
    MEMORY_USED,
    DISK_READ,
    DISK_WRITE,
    NET_RECV,
    NET_SENT,
    PROCESSES,
)

LOOPBACK_INTERFACES = frozenset({"lo"})


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
        """Percent of ``total`` time that was ``busy`` since the last reading."""
        busy_step = self.delta(f"{key}/busy", busy, at_seconds)
        total_step = self.delta(f"{key}/total", total, at_seconds)
        if busy_step is None or total_step is None or total_step[0] <= 0:
            return None
        return min(100.0, max(0.0, 100.0 * busy_step[0] / total_step[0]))


_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def series_name(sample: PromSample) -> str:
    """A metric name for a Prometheus series: ``name:label.value:...``, labels sorted."""
    parts = [sample.name]
    for key, value in sorted(sample.labels):
        parts.append(f"{key}.{_UNSAFE.sub('_', value) or '_'}")
    return ":".join(parts)


@dataclass
class _NodeTotals:
    cpu_total: float = 0.0
    cpu_idle: float = 0.0
    cpu_seen: bool = False
    memory_total: float | None = None
    memory_available: float | None = None
    disk_read: float | None = None
    disk_written: float | None = None
    net_received: float | None = None
    net_sent: float | None = None
    processes: float | None = None


def _add(total: float | None, value: float) -> float:
    return value if total is None else total + value


def _node_totals(samples: Sequence[PromSample]) -> _NodeTotals:
    totals = _NodeTotals()
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
        elif name == "node_disk_read_bytes_total":
            totals.disk_read = _add(totals.disk_read, sample.value)
        elif name == "node_disk_written_bytes_total":
            totals.disk_written = _add(totals.disk_written, sample.value)
        elif name == "node_network_receive_bytes_total":
            if sample.label("device") not in LOOPBACK_INTERFACES:
                totals.net_received = _add(totals.net_received, sample.value)
        elif name == "node_network_transmit_bytes_total":
            if sample.label("device") not in LOOPBACK_INTERFACES:
                totals.net_sent = _add(totals.net_sent, sample.value)
        elif name == "node_processes_pids":
            totals.processes = sample.value
    return totals


class ScrapeConverter:
    """Turns successive scrapes of one endpoint into samples.

    node_exporter's counters become the host metrics above; series whose name
    starts with one of ``prefixes`` are kept as well, one metric per label set
    (see :func:`series_name`), running totals as per-second rates. Keep one
    converter per endpoint: it remembers the previous scrape's totals.
    """

    def __init__(self, prefixes: Sequence[str] = ()) -> None:
        self.prefixes = tuple(prefixes)
        self._rates = CounterRates()

    def convert(self, exposition: Exposition, ts_unix_ns: int, at_seconds: float) -> list[Sample]:
        """Samples of one scrape taken at ``ts_unix_ns`` (``at_seconds`` on a monotonic clock)."""
        samples = self._host_samples(_node_totals(exposition.samples), ts_unix_ns, at_seconds)
        if self.prefixes:
            samples += self._kept_samples(exposition, ts_unix_ns, at_seconds)
        return samples

    def _host_samples(self, totals: _NodeTotals, ts: int, at: float) -> list[Sample]:
        samples: list[Sample] = []
        if totals.cpu_seen:
            busy = totals.cpu_total - totals.cpu_idle
            utilization = self._rates.utilization("cpu", busy, totals.cpu_total, at)
            if utilization is not None:
                samples.append(CPU_UTILIZATION.sample(utilization, ts))
        if totals.memory_total is not None and totals.memory_available is not None:
            samples.append(MEMORY_USED.sample(totals.memory_total - totals.memory_available, ts))
        for metric, total in (
            (DISK_READ, totals.disk_read),
            (DISK_WRITE, totals.disk_written),
            (NET_RECV, totals.net_received),
            (NET_SENT, totals.net_sent),
        ):
            if total is not None:
                rate = self._rates.rate(metric.name, total, at)
                if rate is not None:
                    samples.append(metric.sample(rate, ts))
        if totals.processes is not None:
            samples.append(PROCESSES.sample(totals.processes, ts))
        return samples

    def _kept_samples(self, exposition: Exposition, ts: int, at: float) -> list[Sample]:
        samples: list[Sample] = []
        for sample in exposition.samples:
            if not sample.name.startswith(self.prefixes) or not math.isfinite(sample.value):
                continue
            name = series_name(sample)
            if not is_metric_name(name):
                continue
            if exposition.is_cumulative(sample.name):
                rate = self._rates.rate(name, sample.value, at)
                if rate is not None:
                    samples.append(Sample(name, rate, ts, "per_second", COUNTER))
            else:
                samples.append(Sample(name, sample.value, ts, "", GAUGE))
        return samples
