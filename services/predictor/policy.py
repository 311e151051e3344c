"""Policy: how per-KPI results become one verdict and an action.

A policy holds, per KPI, the largest tolerated change in the bad direction (relative, and
optionally absolute), whether the KPI is critical, the smallest confidence a result needs
to be decisive, and what to do with a change that cannot be decided.

Each KPI is read from its *interval*, not its point estimate: a prediction of "+8%" whose
interval reaches +14% cannot promise to stay under a 10% threshold, so it is INCONCLUSIVE.
The overall verdict follows from the per-KPI verdicts, most severe first:

1. a critical KPI NEGATIVE -> NEGATIVE (the change must not land);
2. a non-critical KPI NEGATIVE -> INCONCLUSIVE (a regression someone must weigh);
3. any KPI INCONCLUSIVE -> INCONCLUSIVE;
4. any KPI NODATA -> NODATA (never silently a pass or a fail);
5. any KPI POSITIVE -> POSITIVE, otherwise NEUTRAL.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from cfgclone.predictor.change import KpiDirection
from cfgclone.predictor.verdict import Interval, KpiResult, Verdict, classify_interval


class PolicyAction(Enum):
    """What to do with a verdict."""

    PROCEED = "proceed"
    """Apply the change."""
    HOLD = "hold"
    """Hold the change until an operator approves or aborts it."""
    REJECT = "reject"
    """Refuse the change (before it lands, or by rolling it back)."""


@dataclass(frozen=True)
class KpiThreshold:
    """The tolerated change of the KPIs whose name matches ``kpi``.

    ``kpi`` is an exact name or an ``fnmatch`` pattern (``*latency*``); an exact name wins
    over patterns, and the first matching pattern wins over later ones.
    """

    kpi: str
    direction: KpiDirection
    max_relative_change: float = 0.10
    """Largest tolerated relative change in the bad direction, for example 0.1."""
    max_absolute_change: float = 0.0
    """Largest tolerated absolute change in the bad direction, in the KPI's unit; 0 is none.

    When both are set a change is tolerated while it stays within either one: an error
    rate going from 0.01% to 0.02% doubles, but stays within an absolute 0.1%.
    """
    critical: bool = False
    """A critical KPI's NEGATIVE makes the whole verdict NEGATIVE."""
    confidence: float | None = None
    """Confidence of this KPI's predicted interval; None: the policy's ``min_confidence``.
    Higher confidence widens the interval: fewer changes are decided, fewer wrongly."""

    def __post_init__(self) -> None:
        if self.max_relative_change < 0 or self.max_absolute_change < 0:
            raise ValueError(f"{self.kpi}: thresholds must not be negative")
        if self.confidence is not None and not 0.0 < self.confidence < 1.0:
            raise ValueError(f"{self.kpi}: confidence must be in (0, 1)")

    @property
    def is_pattern(self) -> bool:
        return any(c in self.kpi for c in "*?[")

    def matches(self, kpi: str) -> bool:
        if self.is_pattern:
            return fnmatch.fnmatchcase(kpi.lower(), self.kpi.lower())
        return kpi == self.kpi

    def relative_threshold(self, baseline_level: float | None) -> float:
        """The tolerated change as a fraction of the baseline level.

        An absolute threshold widens the relative one when the baseline level is known;
        without a level (a learned prediction) only the relative threshold applies.
        """
        threshold = self.max_relative_change
        if self.max_absolute_change > 0 and baseline_level:
            threshold = max(threshold, self.max_absolute_change / abs(baseline_level))
        return threshold


@dataclass(frozen=True)
class KpiVerdict:
    """One KPI as the policy reads it."""

    kpi: str
    verdict: Verdict
    critical: bool
    explanation: str
    threshold: float | None = None
    """Tolerated relative change applied, when the KPI had a threshold."""


@dataclass(frozen=True)
class PolicyVerdict:
    """The policy's reading of a set of per-KPI results."""

    verdict: Verdict
    action: PolicyAction
    explanation: str
    kpis: tuple[KpiVerdict, ...]


@dataclass(frozen=True)
class Policy:
    """Per-KPI thresholds and what to do with their verdicts; see the module docstring."""

    thresholds: tuple[KpiThreshold, ...] = ()
    min_confidence: float = 0.9
    """Smallest interval confidence a result needs to be decisive."""
    on_inconclusive: PolicyAction = PolicyAction.HOLD
    on_nodata: PolicyAction = PolicyAction.HOLD
    default_max_relative_change: float | None = 0.10
    """Tolerated change of KPIs no threshold matches; ``None`` ignores such KPIs."""
    name: str = ""
    """Resource name of the policy revision, for explanations."""

    def __post_init__(self) -> None:
        if not 0.0 < self.min_confidence < 1.0:
            raise ValueError("min_confidence must be in (0, 1)")

    def threshold_for(self, kpi: str) -> KpiThreshold | None:
        """The threshold that applies to ``kpi``: its exact entry, else the first pattern."""
        for threshold in self.thresholds:
            if not threshold.is_pattern and threshold.matches(kpi):
                return threshold
        for threshold in self.thresholds:
            if threshold.is_pattern and threshold.matches(kpi):
                return threshold
        return None

    def confidence_for(self, kpi: str) -> float:
        """The confidence ``kpi``'s interval must have: its threshold's, else the policy's."""
        threshold = self.threshold_for(kpi)
        if threshold is not None and threshold.confidence is not None:
            return threshold.confidence
        return self.min_confidence

    def verdict(self, kpi_results: Iterable[KpiResult]) -> PolicyVerdict:
        """The overall verdict, its action and an explanation per KPI."""
        results = list(kpi_results)
        readings = [r for r in (self._read(result) for result in results) if r is not None]
        seen = {result.kpi for result in results}
        for threshold in self.thresholds:
            # A named KPI the policy watches must not pass just because it is missing.
            if not threshold.is_pattern and threshold.kpi not in seen:
                readings.append(
                    KpiVerdict(
                        kpi=threshold.kpi,
                        verdict=Verdict.NODATA,
                        critical=threshold.critical,
                        explanation=f"{threshold.kpi}: no result for a KPI the policy watches",
                        threshold=threshold.max_relative_change,
                    )
                )
        verdict, summary = _combine(readings)
        action = {
            Verdict.NEGATIVE: PolicyAction.REJECT,
            Verdict.INCONCLUSIVE: self.on_inconclusive,
            Verdict.NODATA: self.on_nodata,
            Verdict.POSITIVE: PolicyAction.PROCEED,
            Verdict.NEUTRAL: PolicyAction.PROCEED,
        }[verdict]
        details = "; ".join(r.explanation for r in readings)
        explanation = f"{summary} ({details})" if details else summary
        return PolicyVerdict(verdict, action, explanation, tuple(readings))

    def _read(self, result: KpiResult) -> KpiVerdict | None:
        threshold = self.threshold_for(result.kpi)
        if threshold is None and self.default_max_relative_change is None:
            return None
        direction = threshold.direction if threshold is not None else result.direction
        critical = threshold.critical if threshold is not None else False
        if threshold is not None:
            limit = threshold.relative_threshold(result.baseline_level)
        else:
            assert self.default_max_relative_change is not None
            limit = self.default_max_relative_change

        def reading(verdict: Verdict, why: str) -> KpiVerdict:
            return KpiVerdict(result.kpi, verdict, critical, f"{result.kpi}: {why}", limit)

        if result.verdict is Verdict.NODATA:
            return reading(Verdict.NODATA, result.explanation.removeprefix(f"{result.kpi}: "))
        if result.interval is None:
            # No interval means the source could not quantify the change (too little
            # evidence); its own verdict is all there is to go on.
            return reading(result.verdict, result.explanation.removeprefix(f"{result.kpi}: "))
        wanted = self.confidence_for(result.kpi)
        if result.interval.confidence < wanted - 1e-9:
            return reading(
                Verdict.INCONCLUSIVE,
                f"interval {result.interval} is below the policy's {wanted:.0%} confidence",
            )
        location = classify_interval(result.interval, direction, limit)
        tail = _tail_verdict(result.tail_interval, direction, limit)
        if tail is Verdict.NEGATIVE and location is not Verdict.NEGATIVE:
            return reading(
                Verdict.NEGATIVE,
                f"tail (q{result.tail_quantile:g}) changed {result.tail_interval}, "
                f"worse than the tolerated {limit:.0%}",
            )
        return reading(location, _why(location, result.interval, limit))


def _tail_verdict(interval: Interval | None, direction: KpiDirection, limit: float) -> Verdict:
    if interval is None:
        return Verdict.NEUTRAL
    least, _ = direction.worsening_bounds(interval.low, interval.high)
    return Verdict.NEGATIVE if least > limit else Verdict.NEUTRAL


def _why(verdict: Verdict, interval: Interval, limit: float) -> str:
    match verdict:
        case Verdict.NEGATIVE:
            return f"change {interval} is worse than the tolerated {limit:.0%}"
        case Verdict.INCONCLUSIVE:
            return f"change {interval} straddles the tolerated {limit:.0%}"
        case Verdict.POSITIVE:
            return f"change {interval} is better by more than {limit:.0%}"
        case _:
            return f"change {interval} is within the tolerated {limit:.0%}"


def _combine(readings: list[KpiVerdict]) -> tuple[Verdict, str]:
    """The overall verdict, most severe first (see the module docstring)."""

    def named(verdict: Verdict, *, critical_only: bool = False) -> str:
        return ", ".join(
            r.kpi for r in readings if r.verdict is verdict and (r.critical or not critical_only)
        )

    if not readings:
        return Verdict.NODATA, "no KPI to judge"
    if critical := named(Verdict.NEGATIVE, critical_only=True):
        return Verdict.NEGATIVE, f"critical KPI worse: {critical}"
    if negative := named(Verdict.NEGATIVE):
        return Verdict.INCONCLUSIVE, f"non-critical KPI worse, for an operator to weigh: {negative}"
    if inconclusive := named(Verdict.INCONCLUSIVE):
        return Verdict.INCONCLUSIVE, f"cannot decide: {inconclusive}"
    if nodata := named(Verdict.NODATA):
        return Verdict.NODATA, f"no data: {nodata}"
    if positive := named(Verdict.POSITIVE):
        return Verdict.POSITIVE, f"better: {positive}; nothing worse"
    return Verdict.NEUTRAL, "every KPI within its threshold"


DEFAULT_POLICY = Policy(
    thresholds=(
        # The vocabulary's names (docs/metrics.md) by pattern, so that a KPI a system
        # does not report is not missed: response times, errors, offered load served.
        KpiThreshold("*.duration", KpiDirection.LOWER_IS_BETTER, 0.10, critical=True),
        KpiThreshold("*.duration.p95", KpiDirection.LOWER_IS_BETTER, 0.10, critical=True),
        KpiThreshold("*error*", KpiDirection.LOWER_IS_BETTER, 0.10, critical=True),
        KpiThreshold("*.request.rate", KpiDirection.HIGHER_IS_BETTER, 0.10, critical=True),
        KpiThreshold("*.commits", KpiDirection.HIGHER_IS_BETTER, 0.10, critical=True),
        # Custom metrics named the usual way.
        KpiThreshold("*latency*", KpiDirection.LOWER_IS_BETTER, 0.10, critical=True),
        KpiThreshold("*response_time*", KpiDirection.LOWER_IS_BETTER, 0.10, critical=True),
        KpiThreshold("*throughput*", KpiDirection.HIGHER_IS_BETTER, 0.10, critical=True),
        KpiThreshold("*tps*", KpiDirection.HIGHER_IS_BETTER, 0.10, critical=True),
        # Resources: system.cpu.utilization, system.memory.* and custom ones.
        KpiThreshold("*cpu*", KpiDirection.LOWER_IS_BETTER, 0.10),
        KpiThreshold("*mem*", KpiDirection.LOWER_IS_BETTER, 0.10),
    ),
    name="policies/default",
)
"""The default policy: latency (and response time), error rate, CPU and memory 10% up is
bad; throughput 10% down is bad. What users feel (latency, errors, throughput) is critical;
a CPU or memory regression alone holds the change for an operator rather than refusing it."""
