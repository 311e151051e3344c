"""The report of one change as plain values, free of protobuf and of any transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class KpiJudgement:
    """A predicted or observed effect on one KPI, and how the policy read it."""

    kpi: str
    higher_is_better: bool
    relative_change: float
    interval_low: float
    interval_high: float
    confidence: float
    verdict: str
    explanation: str
    p_value: float | None
    evidence_count: int
    threshold: float | None
    """Largest tolerated relative change in the bad direction, from the policy."""
    critical: bool = False


@dataclass(frozen=True)
class Judgement:
    """A prediction before applying or a verification after it."""

    verdict: str
    mode: str
    explanation: str
    policy: str
    kpis: tuple[KpiJudgement, ...]


@dataclass(frozen=True)
class Series:
    """Samples of one KPI over a stretch of time."""

    kpi: str
    times: tuple[datetime, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class RegimePoint:
    """One load regime of a fingerprint's KPI: the load it spans and the KPI there."""

    load: float
    mean: float
    p95: float


@dataclass(frozen=True)
class LoadResponse:
    """A KPI against the load, from one fingerprint."""

    kpi: str
    fingerprint: str
    configuration: str
    load_metric: str
    points: tuple[RegimePoint, ...]


@dataclass(frozen=True)
class Difference:
    """One parameter that the change sets differently."""

    key: str
    before: str
    after: str


@dataclass(frozen=True)
class ChangeReport:
    """Everything the page shows about one change."""

    name: str
    system: str
    state: str
    state_reason: str
    requested_by: str
    decided_by: str
    """Who made the decision: the guard by its policy, or the operator who overrode it."""
    created: datetime | None
    updated: datetime | None
    applied: datetime | None
    from_configuration: str
    to_configuration: str
    dry_run: bool
    differences: tuple[Difference, ...]
    prediction: Judgement | None
    verification: Judgement | None
    window: tuple[datetime, datetime] | None
    """The live verification window, when the change was applied."""
    baseline: tuple[Series, ...] = ()
    """Each KPI before the change."""
    after: tuple[Series, ...] = ()
    """Each KPI in the verification window."""
    curves_before: tuple[LoadResponse, ...] = ()
    curves_after: tuple[LoadResponse, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    """What the report could not show, and why."""
