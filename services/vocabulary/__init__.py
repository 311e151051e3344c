"""The metric vocabulary: one set of names, with units, for every producer and consumer.

Names follow OpenTelemetry's semantic conventions for system, HTTP and database
metrics, so data from an OpenTelemetry collector's host metrics needs no renaming.
Two rules adapt them to the suite's narrow sample table:

* a **series** is a metric name, or a name with labels in Prometheus' text form,
  labels sorted: ``system.disk.io{direction="read"}``. Labels are part of the
  series' identity, as in Prometheus;
* a cumulative counter (OpenTelemetry ``system.disk.io`` in bytes) is stored as
  its **rate per second** under the same name, with ``/s`` added to its unit.
  Senders compute the rate between two readings; the collector stores what it is
  sent.

Every producer (the agent's host sampler and probes, the agentless scrape of
node_exporter, the shadow providers, the simulation) emits names from here, and
every consumer (the fingerprint's standard KPIs and load metric, the policy, the
verifier) reads them from here. A name that is not here is a *custom* metric: it
is stored and fingerprinted like any other, but has no place in the embedding
and no default role. ``docs/metrics.md`` is the same table for people.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "CPU_UTILIZATION",
    "DB_OPERATION_DURATION",
    "DB_OPERATION_DURATION_P95",
    "DISK_READ",
    "DISK_WRITE",
    "HTTP_ERROR_RATIO",
    "HTTP_PROBE_DURATION",
    "HTTP_REQUEST_DURATION",
    "HTTP_REQUEST_RATE",
    "MEMORY_USAGE",
    "MEMORY_UTILIZATION",
    "METRICS",
    "NETWORK_RECEIVE",
    "NETWORK_TRANSMIT",
    "NON_NEGATIVE",
    "OFFERED_LOAD",
    "POSTGRESQL_COMMITS",
    "PROCESS_COUNT",
    "SHARE",
    "STANDARD_KPIS",
    "TCP_PROBE_DURATION",
    "UNBOUNDED",
    "Bounds",
    "MetricSpec",
    "Role",
    "bounds_of",
    "choose_load_metric",
    "is_known",
    "parse_series",
    "series",
    "spec_of",
]


_SERIES = re.compile(r"(?P<name>[a-zA-Z_][a-zA-Z0-9_.:]*)(?:\{(?P<labels>.*)\})?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series(name: str, labels: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> str:
    """The series of ``name`` with ``labels``: ``name{a="x",b="y"}``, labels sorted."""
    pairs = sorted(labels.items() if isinstance(labels, Mapping) else labels)
    if not pairs:
        return name
    return name + "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs) + "}"


def parse_series(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The metric name and sorted labels of a series; ValueError when it is not one."""
    match = _SERIES.fullmatch(text)
    if match is None:
        raise ValueError(f"not a series name: {text[:80]!r}")
    body = match.group("labels")
    labels: list[tuple[str, str]] = []
    position = 0
    while body is not None and position < len(body):
        label = _LABEL.match(body, position)
        if label is None or label.end() == position:
            raise ValueError(f"not a series name: {text[:80]!r}")
        raw = label.group(2)
        labels.append((label.group(1), re.sub(r"\\.", lambda m: _UNESCAPE.get(m[0], m[0]), raw)))
        position = label.end()
    if body is not None and not labels:
        raise ValueError(f"not a series name: {text[:80]!r}")
    return match.group("name"), tuple(sorted(labels))


class Role(enum.Enum):
    """What a metric says about a system."""

    KPI = "kpi"
    """Behaviour a change may make better or worse (latency, utilisation, throughput)."""
    LOAD = "load"
    """Load offered to the system from outside: the axis of the load regimes."""
    PROBE = "probe"
    """A measurement taken from outside by a probe (one series per probe)."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """The values a metric can take: a share lies in [0, 1], a duration is never negative.

    Estimates (a sketch's quantiles, a model's prediction) may stray past them by their
    error; shown to people they are clamped, so a CPU is never busy 100.5% of the time.
    """

    lower: float | None = None
    """The smallest value possible, None when there is none."""
    upper: float | None = None
    """The largest value possible, None when there is none."""

    def clamp(self, value: float) -> float:
        """``value`` moved inside the bounds."""
        if self.lower is not None and value < self.lower:
            return self.lower
        if self.upper is not None and value > self.upper:
            return self.upper
        return value


UNBOUNDED = Bounds()
"""A custom metric's bounds: cfgclone cannot know them."""
NON_NEGATIVE = Bounds(lower=0.0)
"""Durations, bytes, counts and rates."""
SHARE = Bounds(lower=0.0, upper=1.0)
"""A share of a whole (utilisation, error ratio), in OpenTelemetry's unit ``1``."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One name of the vocabulary."""

    name: str
    """The series: a metric name, with its fixed labels when it has any."""
    unit: str
    """UCUM unit as OpenTelemetry writes it: ``1`` (a ratio), ``By/s``, ``s``, ``{request}/s``."""
    role: Role
    description: str
    higher_is_worse: bool | None = None
    """The default direction of harm: True for latency and utilisation, False for
    throughput, None when a change either way is not harm in itself."""
    labelled: bool = False
    """True for a family whose series carry a free label (``probe``), one per instance."""
    bounds: Bounds = NON_NEGATIVE
    """The values the metric can take."""

    @property
    def metric(self) -> str:
        """The metric name without labels."""
        return parse_series(self.name)[0]


def _spec(
    name: str,
    unit: str,
    role: Role,
    description: str,
    *,
    higher_is_worse: bool | None = None,
    labelled: bool = False,
    bounds: Bounds = NON_NEGATIVE,
) -> MetricSpec:
    return MetricSpec(name, unit, role, description, higher_is_worse, labelled, bounds)


CPU_UTILIZATION = _spec(
    "system.cpu.utilization",
    "1",
    Role.KPI,
    "share of all cores' time that was busy (idle and iowait count as not busy), 0 to 1",
    higher_is_worse=True,
    bounds=SHARE,
)
MEMORY_UTILIZATION = _spec(
    "system.memory.utilization",
    "1",
    Role.KPI,
    "memory in use (total minus available) over total memory, 0 to 1",
    higher_is_worse=True,
    bounds=SHARE,
)
MEMORY_USAGE = _spec(
    "system.memory.usage",
    "By",
    Role.KPI,
    "memory in use: total minus available",
    higher_is_worse=True,
)
DISK_READ = _spec(
    'system.disk.io{direction="read"}',
    "By/s",
    Role.KPI,
    "bytes read from whole disks (not partitions), summed over disks",
    higher_is_worse=True,
)
DISK_WRITE = _spec(
    'system.disk.io{direction="write"}',
    "By/s",
    Role.KPI,
    "bytes written to whole disks, summed over disks",
    higher_is_worse=True,
)
NETWORK_RECEIVE = _spec(
    'system.network.io{direction="receive"}',
    "By/s",
    Role.KPI,
    "bytes received on interfaces other than loopback",
    higher_is_worse=True,
)
NETWORK_TRANSMIT = _spec(
    'system.network.io{direction="transmit"}',
    "By/s",
    Role.KPI,
    "bytes sent on interfaces other than loopback",
    higher_is_worse=True,
)
PROCESS_COUNT = _spec(
    "system.process.count",
    "{process}",
    Role.KPI,
    "processes alive",
    higher_is_worse=True,
)
HTTP_REQUEST_DURATION = _spec(
    "http.server.request.duration",
    "s",
    Role.KPI,
    "mean duration of the HTTP requests served in the sample's interval",
    higher_is_worse=True,
)
HTTP_REQUEST_RATE = _spec(
    "http.server.request.rate",
    "{request}/s",
    Role.LOAD,
    "HTTP requests arriving per second (the count of http.server.request.duration as a rate)",
    higher_is_worse=False,
)
HTTP_ERROR_RATIO = _spec(
    "http.server.request.error.ratio",
    "1",
    Role.KPI,
    "share of the interval's HTTP requests answered with a server error (5xx), 0 to 1",
    higher_is_worse=True,
    bounds=SHARE,
)
DB_OPERATION_DURATION_P95 = _spec(
    "db.client.operation.duration.p95",
    "s",
    Role.KPI,
    "95th percentile of the durations of the database operations in the interval",
    higher_is_worse=True,
)
DB_OPERATION_DURATION = _spec(
    "db.client.operation.duration",
    "s",
    Role.KPI,
    "mean duration of the database operations (transactions) clients ran in the interval",
    higher_is_worse=True,
)
POSTGRESQL_COMMITS = _spec(
    "postgresql.commits",
    "{commit}/s",
    Role.LOAD,
    "transactions committed per second",
    higher_is_worse=False,
)
HTTP_PROBE_DURATION = _spec(
    'http.client.request.duration{probe=""}',
    "s",
    Role.PROBE,
    "time for the agent's HTTP probe to get an answer; one series per probe",
    higher_is_worse=True,
    labelled=True,
)
TCP_PROBE_DURATION = _spec(
    'cfgclone.probe.tcp.connect.duration{probe=""}',
    "s",
    Role.PROBE,
    "time for the agent's TCP probe to open a connection (no OpenTelemetry name exists); "
    "one series per probe",
    higher_is_worse=True,
    labelled=True,
)
HTTP_PROBE_STATUS = _spec(
    'http.response.status_code{probe=""}',
    "1",
    Role.PROBE,
    "HTTP status the agent's probe got; 0 when nothing answered",
    labelled=True,
)
TCP_PROBE_UP = _spec(
    'cfgclone.probe.tcp.up{probe=""}',
    "1",
    Role.PROBE,
    "1 when the agent's TCP probe connected, 0 when it did not",
    labelled=True,
    bounds=SHARE,
)

METRICS: Mapping[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        CPU_UTILIZATION,
        MEMORY_UTILIZATION,
        MEMORY_USAGE,
        DISK_READ,
        DISK_WRITE,
        NETWORK_RECEIVE,
        NETWORK_TRANSMIT,
        PROCESS_COUNT,
        HTTP_REQUEST_DURATION,
        HTTP_REQUEST_RATE,
        HTTP_ERROR_RATIO,
        DB_OPERATION_DURATION,
        DB_OPERATION_DURATION_P95,
        POSTGRESQL_COMMITS,
        HTTP_PROBE_DURATION,
        TCP_PROBE_DURATION,
        HTTP_PROBE_STATUS,
        TCP_PROBE_UP,
    )
}
"""Every name of the vocabulary, by series (labelled families with an empty label)."""

_FAMILIES: Mapping[str, MetricSpec] = {
    spec.metric: spec for spec in METRICS.values() if spec.labelled
}

STANDARD_KPIS: tuple[str, ...] = (
    CPU_UTILIZATION.name,
    MEMORY_UTILIZATION.name,
    DISK_READ.name,
    DISK_WRITE.name,
    NETWORK_RECEIVE.name,
    NETWORK_TRANSMIT.name,
    HTTP_REQUEST_DURATION.name,
    DB_OPERATION_DURATION.name,
)
"""KPIs with a place in a fingerprint's embedding, in embedding order."""

OFFERED_LOAD: tuple[str, ...] = (HTTP_REQUEST_RATE.name, POSTGRESQL_COMMITS.name)
"""Offered-load metrics in order of preference for a system's load regimes."""


def spec_of(name: str) -> MetricSpec | None:
    """The vocabulary entry of a series, or None for a custom metric.

    A labelled family (the probes) matches any series of its metric that carries
    exactly its label.
    """
    found = METRICS.get(name)
    if found is not None:
        return found
    try:
        metric, labels = parse_series(name)
    except ValueError:
        return None
    family = _FAMILIES.get(metric)
    if family is None:
        return None
    wanted = tuple(key for key, _ in parse_series(family.name)[1])
    return family if tuple(key for key, _ in labels) == wanted else None


def bounds_of(name: str) -> Bounds:
    """The values a series can take: a share's [0, 1], non-negative for the rest of the
    vocabulary, unbounded for a custom metric."""
    spec = spec_of(name)
    return UNBOUNDED if spec is None else spec.bounds


def is_known(name: str) -> bool:
    """Whether a series is in the vocabulary (not a custom metric)."""
    return spec_of(name) is not None


def choose_load_metric(present: Iterable[str], preferred: Iterable[str] = ()) -> str | None:
    """The series to build load regimes on, among the series ``present``.

    The first of ``preferred`` present (a system's or a kind's own choice), else the
    first offered-load metric of the vocabulary present, else CPU utilisation; None
    when none of them is there.
    """
    available = set(present)
    for name in (*preferred, *OFFERED_LOAD, CPU_UTILIZATION.name):
        if name in available:
            return name
    return None
