"""What a shadow comparison is made of: the target, its load, the samples, the result.

A shadow run answers "what would this change do to the KPIs?" by trying it on
a throw-away copy of the target under a workload shaped like the target's own
load, alternating baseline and candidate runs so that drift of the machine
hits both alike. The result carries the raw samples; judging them (rank test,
effect size, tail) is the judge's work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cfgclone import vocabulary
from cfgclone.predictor.appliers.model import Configuration, ConfigValue

__all__ = [
    "KPI_CPU",
    "KPI_LATENCY_MEAN",
    "KPI_LATENCY_P95",
    "KPI_THROUGHPUT",
    "SHADOW_KPIS",
    "ConfigValue",
    "Configuration",
    "KpiSamples",
    "RoundRecord",
    "ShadowFailed",
    "ShadowOutcome",
    "ShadowRun",
    "ShadowTarget",
    "Side",
    "WorkloadResult",
    "WorkloadShape",
]

KPI_THROUGHPUT = vocabulary.POSTGRESQL_COMMITS.name
"""Transactions completed per second (down is bad)."""
KPI_LATENCY_MEAN = vocabulary.DB_OPERATION_DURATION.name
"""Mean transaction latency in seconds over one sample interval (up is bad)."""
KPI_LATENCY_P95 = vocabulary.DB_OPERATION_DURATION_P95.name
"""95th percentile of transaction latency in seconds over one interval (up is bad)."""
KPI_CPU = vocabulary.CPU_UTILIZATION.name
"""Share of the shadow's cores its system under test kept busy (up is bad)."""

SHADOW_KPIS: tuple[str, ...] = (KPI_THROUGHPUT, KPI_LATENCY_MEAN, KPI_LATENCY_P95, KPI_CPU)
"""The KPIs every shadow provider reports, one sample per interval of a run."""

KpiSamples = Mapping[str, tuple[float, ...]]
"""KPI name -> samples, one per sample interval, in time order."""


class Side(StrEnum):
    """Which configuration a run measured."""

    BASELINE = "baseline"
    CANDIDATE = "candidate"


class ShadowOutcome(StrEnum):
    """How a shadow comparison ended."""

    COMPLETED = "completed"
    """Every round ran on both sides."""
    FAILED = "failed"
    """A copy could not be made, a configuration was refused or a workload failed."""
    TIMED_OUT = "timed_out"
    """The time limit ended the comparison; the samples so far are kept."""


@dataclass(frozen=True)
class WorkloadShape:
    """The synthetic load a shadow run puts on the copy: the target's load level.

    The predictor derives it from the target's fingerprint (its typical
    transaction rate and concurrency), so the change is tried where the target
    actually runs, not at an arbitrary benchmark point.
    """

    clients: int = 4
    """Concurrent sessions."""
    rate_tps: float | None = None
    """Transactions per second for all clients together; None: as fast as they go."""
    threads: int = 1
    """Worker threads of the load generator."""
    script: str = "tpcb-like"
    """The load generator's transaction mix (pgbench builtin: ``tpcb-like``,
    ``simple-update``, ``select-only``)."""

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise ValueError("a workload needs at least one client")
        if self.threads < 1 or self.threads > self.clients:
            raise ValueError("threads must be between 1 and the number of clients")
        if self.rate_tps is not None and self.rate_tps <= 0:
            raise ValueError("rate_tps must be positive (or None for no limit)")
        if not self.script:
            raise ValueError("a workload needs a script")


@dataclass(frozen=True)
class ShadowTarget:
    """The system a shadow copy is made of."""

    system: str
    """Resource name of the target (``systems/db-01``)."""
    load: WorkloadShape
    """The target's load level, which every run reproduces."""
    settings: Mapping[str, ConfigValue] = field(default_factory=dict)
    """The target's settings that neither side changes; each side's configuration is
    applied over them."""
    data_scale: int = 1
    """Size of the data set the copy is filled with (pgbench scale: 1 is about 16 MB)."""
    load_profile: Mapping[str, float] = field(default_factory=dict)
    """The target's recorded offered load over its recent busy period, per series of the
    metric vocabulary (``postgresql.commits``: 120.0 per second); empty when nothing
    was recorded."""
    hardware: Mapping[str, float] = field(default_factory=dict)
    """The target's hardware as the collector recorded it (``cpu_cores``,
    ``memory_bytes``); empty when unknown."""
    baseline: Mapping[str, ConfigValue] = field(default_factory=dict)
    """The configuration before the change (set by the comparison for providers that
    prepare both sides)."""
    candidate: Mapping[str, ConfigValue] = field(default_factory=dict)
    """The configuration after the change."""
    deadline_unix: float | None = None
    """Wall-clock time (Unix seconds) by which the comparison must have ended."""

    def __post_init__(self) -> None:
        if self.data_scale < 1:
            raise ValueError("data_scale must be at least 1")
        for series, rate in self.load_profile.items():
            if not rate >= 0:
                raise ValueError(f"the recorded load of {series} must be a rate >= 0")


@dataclass(frozen=True)
class WorkloadResult:
    """What one workload run on a copy measured."""

    samples: KpiSamples
    """Per-interval samples of each KPI."""
    details: Mapping[str, str] = field(default_factory=dict)
    """How the run was made (command line, transaction count, ...), for the evidence."""
    error: str | None = None
    """Why the workload did not run as shaped (connections refused, aborted clients,
    time limit); the samples are what was measured until then."""


@dataclass(frozen=True)
class RoundRecord:
    """One workload run of a comparison."""

    side: Side
    round: int
    """0-based round; each round runs the baseline, then the candidate."""
    started_at: datetime
    duration_s: float
    """Wall time of applying the configuration and running the workload."""
    sample_counts: Mapping[str, int]
    """Samples collected per KPI."""
    details: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ShadowRun:
    """The result of a shadow comparison: the samples of both sides and how they came about.

    A failed or timed-out comparison still carries the samples collected before
    it ended; the reason says what went wrong so the verdict can be
    INCONCLUSIVE (or NEGATIVE, when it was the candidate that broke the copy).
    """

    provider: str
    system: str
    outcome: ShadowOutcome
    baseline: KpiSamples
    """Baseline samples per KPI, all rounds in order."""
    candidate: KpiSamples
    """Candidate samples per KPI, all rounds in order."""
    rounds: tuple[RoundRecord, ...]
    rounds_requested: int
    elapsed_s: float
    """Wall time of the whole comparison, copy creation and teardown included."""
    failure_reason: str | None = None
    failed_side: Side | None = None
    """The side whose configuration or workload failed, when one did."""
    details: Mapping[str, str] = field(default_factory=dict)
    """What the provider reports about the copy (server version, ignored settings, ...)."""

    @property
    def completed(self) -> bool:
        return self.outcome is ShadowOutcome.COMPLETED

    def samples(self, side: Side) -> KpiSamples:
        """The samples of one side."""
        return self.baseline if side is Side.BASELINE else self.candidate


class ShadowFailed(Exception):
    """A shadow copy could not be created, configured or measured."""
