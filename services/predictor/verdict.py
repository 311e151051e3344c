"""Verdicts and per-KPI results, shared by the judge, the learners and the policy.

Every way of predicting a change's effect (a shadow run judged by :class:`Judge`, a model
trained on the history of changes) ends in the same :class:`KpiResult`: a relative change
with an interval, a verdict and an explanation. The policy reads only these, so it does
not care how a prediction was made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from cfgclone.predictor.change import KpiDirection


class Verdict(Enum):
    """The judgement of a change, overall or per KPI."""

    POSITIVE = "positive"
    """Better beyond the threshold."""
    NEUTRAL = "neutral"
    """Within the thresholds."""
    NEGATIVE = "negative"
    """Worse beyond the threshold."""
    INCONCLUSIVE = "inconclusive"
    """Too little evidence, or an interval that straddles a threshold."""
    NODATA = "nodata"
    """No data to judge; never silently a pass or a fail."""


@dataclass(frozen=True)
class Interval:
    """An interval of a relative change at a confidence level."""

    low: float
    high: float
    confidence: float

    def __post_init__(self) -> None:
        if not (self.low <= self.high):
            raise ValueError(f"interval low {self.low} is above high {self.high}")
        if not (0.0 < self.confidence < 1.0):
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")

    def __str__(self) -> str:
        return f"[{self.low:+.1%}, {self.high:+.1%}] at {self.confidence:.0%}"


@dataclass(frozen=True)
class KpiResult:
    """The effect of a change on one KPI, as measured or predicted."""

    kpi: str
    direction: KpiDirection
    verdict: Verdict
    explanation: str
    relative_change: float | None = None
    """Relative change of the KPI's typical value, ``(after - before) / before``."""
    interval: Interval | None = None
    """Interval of :attr:`relative_change`; ``None`` when there was too little evidence."""
    p_value: float | None = None
    """p-value of the location test, when a statistical test was used."""
    effect_size: float | None = None
    """Cliff's delta of candidate against baseline in [-1, 1]; positive means larger."""
    tail_quantile: float | None = None
    """Quantile compared for tail regressions (0.95: the high tail; 0.05: the low tail)."""
    tail_change: float | None = None
    """Relative change of that quantile."""
    tail_interval: Interval | None = None
    """Interval of :attr:`tail_change`."""
    baseline_level: float | None = None
    """Typical baseline value (the median), so absolute thresholds can be applied."""
    evidence_count: int = 0
    """Samples behind the result (baseline plus candidate), or training examples."""


def classify_interval(interval: Interval, direction: KpiDirection, threshold: float) -> Verdict:
    """Read an interval of relative change against a tolerated change in the bad direction.

    NEGATIVE when the whole interval is worse than ``threshold``; POSITIVE when the whole
    interval is better than ``-threshold``; INCONCLUSIVE when it straddles ``threshold``
    (it cannot rule out a regression, nor confirm one); NEUTRAL otherwise.
    """
    least, most = direction.worsening_bounds(interval.low, interval.high)
    if least > threshold:
        return Verdict.NEGATIVE
    if most > threshold:
        return Verdict.INCONCLUSIVE
    if most < -threshold:
        return Verdict.POSITIVE
    return Verdict.NEUTRAL


def format_change(change: float | None) -> str:
    """A relative change for explanations, ``+12.3%``; ``n/a`` when undefined."""
    if change is None or not math.isfinite(change):
        return "n/a"
    return f"{change:+.1%}"
