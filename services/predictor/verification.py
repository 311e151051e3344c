"""Live verification: is a KPI worse after a change than the metric's own rhythm explains?

Real metrics drift and cycle daily, so the stretch just before a change is a poor baseline
on its own: a window that starts as the morning rush begins looks "worse" than the quiet
hours before it, and a metric that moved a day ago looks "changed" against last week.
The verifier therefore compares the samples after a change (the window) with three
baselines and with one extreme:

1. the *same time of day on the previous days* (seven by default), which answers the
   daily cycle;
2. the *same time the day before*, which answers drift over the days, such as a growth
   in traffic or a shift a day ago, that the pooled days lag behind;
3. the *hours just before the change*, which answer a shift that happened earlier the
   same day;
4. the *worst value of the previous days*: rank and quantile tests do not see a handful of
   extreme samples, yet a latency spike or a CPU pinned at 100% that the last week never
   saw is what users and on-call notice.

:class:`~cfgclone.predictor.judge.Judge` (a rank test with an effect-size gate, and a tail
test) compares the window with each baseline, and the window counts as worse only when it
is worse than *every* baseline with enough samples: a worsening that the time of day, the
days' drift or the level just before the change accounts for is not the change's fault.
Otherwise the window is still worse when its worst value passes the worst of the previous
days by more than the tolerance. That peak is an observation rather than an estimate, so a
verdict that rests on it carries no interval, and the policy reads the verdict itself.

Samples are autocorrelated, which makes every p-value optimistic; requiring the baselines
to agree, an effect size and a tolerance keeps false alarms rare in practice, as
``benchmarks/verify_nab.py`` measures on labelled real server metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

import numpy as np
import numpy.typing as npt

from cfgclone.predictor.change import KpiDirection
from cfgclone.predictor.judge import Judge, JudgeSettings
from cfgclone.predictor.verdict import KpiResult, Verdict, format_change

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_NS_PER_SECOND = 1_000_000_000
_SEVERITY = {
    Verdict.POSITIVE: 0,
    Verdict.NEUTRAL: 1,
    Verdict.INCONCLUSIVE: 2,
    Verdict.NEGATIVE: 3,
}
"""How alarming a judge's verdict is; the less alarming baseline decides."""


@dataclass(frozen=True)
class TimedSamples:
    """One KPI's samples in time order: times in Unix nanoseconds and their values."""

    ts_unix_ns: IntArray
    values: FloatArray

    def __post_init__(self) -> None:
        if self.ts_unix_ns.ndim != 1 or self.ts_unix_ns.shape != self.values.shape:
            raise ValueError(
                f"{self.ts_unix_ns.size} times and {self.values.size} values: "
                "times and values must be one-dimensional and of equal length"
            )
        if self.ts_unix_ns.size > 1 and bool((np.diff(self.ts_unix_ns) < 0).any()):
            raise ValueError("times must be in ascending order; build with TimedSamples.of")

    @classmethod
    def of(
        cls, ts_unix_ns: Sequence[int] | IntArray, values: Sequence[float] | FloatArray
    ) -> TimedSamples:
        """Samples from any sequences, put in time order."""
        times = np.asarray(ts_unix_ns, dtype=np.int64).ravel()
        numbers = np.asarray(values, dtype=np.float64).ravel()
        if times.shape != numbers.shape:
            raise ValueError(f"{times.size} times but {numbers.size} values")
        order = np.argsort(times, kind="stable")
        return cls(times[order], numbers[order])

    def __len__(self) -> int:
        return int(self.values.size)

    def finite(self) -> TimedSamples:
        """The samples whose value is a number; NaN and infinities count as missing."""
        keep = np.isfinite(self.values)
        return TimedSamples(self.ts_unix_ns[keep], self.values[keep])


@dataclass(frozen=True)
class VerifierSettings:
    """How the live verifier builds its baselines and how strict it is."""

    min_samples: int = 20
    """Fewest samples the window, and a baseline, need; a thinner window gives NODATA."""
    season: timedelta = timedelta(days=1)
    """Length of the metric's cycle; the seasonal baseline is the same phase of it."""
    baseline_seasons: int = 7
    """Previous seasons (days, by default) the seasonal baseline and the peak draw on."""
    recent: timedelta = timedelta(hours=6)
    """Span just before the window that the recent baseline covers."""
    tolerance: float = 0.10
    """Smallest relative worsening that matters, of the median, the tail and the peak."""
    min_effect_size: float = 0.147
    """Smallest |Cliff's delta| that counts as a shift ("small" by the usual convention)."""
    alpha: float = 0.05
    """Significance level of each judgement against a baseline."""
    confidence: float = 0.95
    """Confidence level of the reported intervals."""
    bootstrap_resamples: int = 1000
    """Bootstrap resamples per judgement."""
    seed: int = 0
    """Seed of the bootstrap, so that a verification can be reproduced."""

    def __post_init__(self) -> None:
        if self.season <= timedelta(0) or self.recent <= timedelta(0):
            raise ValueError("season and recent must be positive")
        if self.baseline_seasons < 1:
            raise ValueError("baseline_seasons must be at least 1")
        # The judge checks the rest (min_samples, alpha, confidence, gates) the same way.
        self.judge_settings()

    def judge_settings(self) -> JudgeSettings:
        """The judge's settings for one comparison of the window with a baseline."""
        return JudgeSettings(
            alpha=self.alpha,
            min_samples=self.min_samples,
            min_effect_size=self.min_effect_size,
            tolerance=self.tolerance,
            confidence=self.confidence,
            bootstrap_resamples=self.bootstrap_resamples,
            max_bootstrap_draw=max(2000, self.min_samples),
            seed=self.seed,
        )


@dataclass(frozen=True)
class _Baseline:
    """Samples the window is compared with, and what they are, in words."""

    name: str
    """Short name for the verdict's headline."""
    description: str
    """What the samples are, for the details of the explanation."""
    values: FloatArray


@dataclass(frozen=True)
class _Peak:
    """The window's worst value against the worst of the previous seasons."""

    window_worst: float
    reference_worst: float
    reference_span: str
    change: float | None
    """Relative change of the worst value; ``None`` when the reference's worst is zero."""
    beyond: bool
    """Whether the window passed the reference's worst by more than the tolerance."""


@dataclass(frozen=True)
class LiveVerifier:
    """Judges a KPI's samples after a change against its history; see the module docstring."""

    settings: VerifierSettings = field(default_factory=VerifierSettings)

    def verify(
        self,
        kpi: str,
        direction: KpiDirection,
        history: TimedSamples,
        window: TimedSamples,
        *,
        tolerance: float | None = None,
    ) -> KpiResult:
        """Judge one KPI's window after a change.

        ``history`` holds the samples before the change (a week or more when the metric
        has one), ``window`` those after it; the window's first sample places the
        baselines. ``tolerance`` (a policy's threshold, for instance) defaults to the
        settings'. Non-finite samples count as missing.
        """
        tol = self.settings.tolerance if tolerance is None else tolerance
        after = window.finite()
        before = history.finite()
        need = self.settings.min_samples
        if len(after) < need:
            return _nodata(
                kpi,
                direction,
                f"only {len(after)} samples after the change; at least {need} are needed",
                len(after),
            )
        baselines = self._baselines(before, after)
        if not baselines:
            return _nodata(
                kpi,
                direction,
                f"too little history before the change: fewer than {need} samples at the "
                f"same time of {self._unit} on earlier {self._unit}s and in the "
                f"{_span(self._recent_ns)} before",
                len(after) + len(before),
            )
        judge = Judge(self.settings.judge_settings())
        judged = [
            (b, judge.compare(kpi, b.values, after.values, direction=direction, tolerance=tol))
            for b in baselines
        ]
        peak = self._peak(before, after, direction, tol)
        return _result(kpi, direction, after, judged, peak, tol, self._evidence(before, after))

    @property
    def _season_ns(self) -> int:
        return _ns(self.settings.season)

    @property
    def _recent_ns(self) -> int:
        return _ns(self.settings.recent)

    @property
    def _unit(self) -> str:
        """What a season is called in explanations."""
        return "day" if self.settings.season == timedelta(days=1) else "season"

    def _baselines(self, before: TimedSamples, after: TimedSamples) -> list[_Baseline]:
        """The baselines that have enough samples: seasonal, latest season and recent."""
        unit = self._unit
        found = []
        pooled, seasons = self._seasonal(before, after, self.settings.baseline_seasons)
        if seasons > 1:
            found.append(
                _Baseline(
                    f"the same time of {unit} on earlier {unit}s",
                    f"the same time of {unit} on the previous {seasons} {unit}s",
                    pooled,
                )
            )
        latest, _ = self._seasonal(before, after, 1)
        found.append(
            _Baseline(
                f"the same time the {unit} before", f"the same time the {unit} before", latest
            )
        )
        start = int(after.ts_unix_ns[0])
        span = _span(self._recent_ns)
        recent = _between(before, start - self._recent_ns, start)
        found.append(
            _Baseline(f"the {span} before the change", f"the {span} before the change", recent)
        )
        return [b for b in found if b.values.size >= self.settings.min_samples]

    def _seasonal(
        self, before: TimedSamples, after: TimedSamples, seasons: int
    ) -> tuple[FloatArray, int]:
        """History at the window's phase of each of the last ``seasons`` seasons, and how
        many of them hold samples.

        A window longer than a season covers every phase, so its seasonal baseline is the
        previous seasons whole.
        """
        start = int(after.ts_unix_ns[0])
        span = min(int(after.ts_unix_ns[-1]) - start + 1, self._season_ns)
        parts = []
        for k in range(1, seasons + 1):
            lo = start - k * self._season_ns
            part = _between(before, lo, lo + span)
            if part.size:
                parts.append(part)
        if not parts:
            return np.empty(0, dtype=np.float64), 0
        return np.concatenate(parts), len(parts)

    def _peak(
        self, before: TimedSamples, after: TimedSamples, direction: KpiDirection, tol: float
    ) -> _Peak | None:
        """The window's worst value against the previous seasons' worst.

        Needs at least one whole season of history: against a few hours, a new extreme
        is too common to mean anything.
        """
        start = int(after.ts_unix_ns[0])
        if len(before) == 0 or start - int(before.ts_unix_ns[0]) < self._season_ns:
            return None
        lo = max(
            start - self.settings.baseline_seasons * self._season_ns, int(before.ts_unix_ns[0])
        )
        reference = _between(before, lo, start)
        if reference.size < self.settings.min_samples:
            return None
        pick = np.max if direction is KpiDirection.LOWER_IS_BETTER else np.min
        window_worst = float(pick(after.values))
        reference_worst = float(pick(reference))
        margin = tol * abs(reference_worst)
        beyond = direction.worsening(window_worst - reference_worst) > margin
        change = (
            (window_worst - reference_worst) / abs(reference_worst) if reference_worst else None
        )
        return _Peak(window_worst, reference_worst, _span(start - lo), change, beyond)

    def _evidence(self, before: TimedSamples, after: TimedSamples) -> int:
        """Samples behind a result: the window and the history it was compared with."""
        start = int(after.ts_unix_ns[0])
        reach = max(self.settings.baseline_seasons * self._season_ns, self._recent_ns)
        return len(after) + _between(before, start - reach, start).size


def _result(
    kpi: str,
    direction: KpiDirection,
    after: TimedSamples,
    judged: list[tuple[_Baseline, KpiResult]],
    peak: _Peak | None,
    tol: float,
    evidence: int,
) -> KpiResult:
    """One result from the judgements against each baseline and the peak.

    The least alarming judgement decides (ties: the smaller worsening), so the window is
    worse only when it is worse than every baseline; failing that, a peak beyond the
    tolerance makes it worse.
    """
    baseline, deciding = min(
        judged,
        key=lambda pair: (
            _SEVERITY.get(pair[1].verdict, -1),
            direction.worsening(pair[1].relative_change or 0.0),
        ),
    )
    comparisons = "; ".join(
        f"against {b.description} ({b.values.size} samples): "
        f"{r.explanation.removeprefix(f'{kpi}: ')}"
        for b, r in judged
    )
    details = f"{len(after)} samples after the change compared {comparisons}"
    if peak is not None:
        details += f"; {_describe_peak(peak, direction)}"
    if peak is not None and peak.beyond and deciding.verdict is not Verdict.NEGATIVE:
        return replace(
            deciding,
            verdict=Verdict.NEGATIVE,
            explanation=f"{kpi}: worse: {_peak_headline(peak, direction, tol)}. {details}",
            interval=None,
            tail_quantile=1.0 if direction is KpiDirection.LOWER_IS_BETTER else 0.0,
            tail_change=peak.change,
            tail_interval=None,
            evidence_count=evidence,
        )
    headline = _headline(deciding.verdict, baseline, [b for b, _ in judged], tol)
    return replace(deciding, explanation=f"{kpi}: {headline}. {details}", evidence_count=evidence)


def _headline(verdict: Verdict, deciding: _Baseline, baselines: list[_Baseline], tol: float) -> str:
    names = [b.name for b in baselines]
    every = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    match verdict:
        case Verdict.NEGATIVE:
            return f"worse than {every}"
        case Verdict.POSITIVE:
            return f"better than {every}"
        case Verdict.INCONCLUSIVE:
            return (
                f"against {deciding.name}, a worsening beyond the {tol:.0%} tolerance can be "
                "neither confirmed nor ruled out"
            )
        case _:
            return f"no worsening beyond the {tol:.0%} tolerance against {deciding.name}"


def _peak_headline(peak: _Peak, direction: KpiDirection, tol: float) -> str:
    word = "highest" if direction is KpiDirection.LOWER_IS_BETTER else "lowest"
    return (
        f"the {word} value after the change, {peak.window_worst:.4g}, is beyond the {word} "
        f"of the previous {peak.reference_span} ({peak.reference_worst:.4g}) by more than "
        f"the {tol:.0%} tolerance"
    )


def _describe_peak(peak: _Peak, direction: KpiDirection) -> str:
    word = "highest" if direction is KpiDirection.LOWER_IS_BETTER else "lowest"
    return (
        f"{word} value {peak.window_worst:.4g} against {peak.reference_worst:.4g} in the "
        f"previous {peak.reference_span} ({format_change(peak.change)})"
    )


def _nodata(kpi: str, direction: KpiDirection, reason: str, evidence: int) -> KpiResult:
    return KpiResult(
        kpi=kpi,
        direction=direction,
        verdict=Verdict.NODATA,
        explanation=f"{kpi}: {reason}",
        evidence_count=evidence,
    )


def _between(samples: TimedSamples, start_ns: int, end_ns: int) -> FloatArray:
    """Values with ``start_ns <= time < end_ns``."""
    lo, hi = np.searchsorted(samples.ts_unix_ns, [start_ns, end_ns], side="left")
    return samples.values[lo:hi]


def _ns(span: timedelta) -> int:
    return int(span.total_seconds() * _NS_PER_SECOND)


def _span(ns: int) -> str:
    """A duration in words: ``7 days``, ``6 h``, ``30 min``."""
    seconds = ns / _NS_PER_SECOND
    if seconds >= 86_400:
        days = seconds / 86_400
        return f"{days:.3g} day" if days == 1 else f"{days:.3g} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.3g} h"
    return f"{seconds / 60:.3g} min"


__all__ = ["LiveVerifier", "TimedSamples", "VerifierSettings"]
