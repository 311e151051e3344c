"""The judge: baseline samples against candidate samples, one KPI at a time.

Two questions are asked of every KPI, because a rank test alone answers only the first:

1. Did the typical value move? Mann-Whitney U (as Kayenta's classifier does) with an
   effect-size gate: a change must be statistically significant *and* large enough to
   matter (Cliff's delta at least "small", and a relative change of the median beyond the
   tolerance). Significance alone flags meaningless shifts once samples are many.
2. Did the bad tail move? A change that leaves the median alone but widens the spread
   (a variance increase, a few very slow requests) is invisible to a rank test, yet it is
   exactly what users of a latency KPI feel. The judge compares the quantile on the bad
   side (p95 when up is bad, p5 when down is bad) with a bootstrap interval, and requires
   the Brown-Forsythe test (Levene's test about the median) to agree that the spread
   changed, so a noisy bootstrap of an extreme quantile cannot fail a change on its own.

Both tests run at ``alpha / 2`` so that a KPI's false-alarm rate stays at ``alpha``.
Too few samples give NODATA; no significant change but an interval that cannot rule out a
change beyond the tolerance gives INCONCLUSIVE, never a silent pass.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import stats

from cfgclone.predictor.change import DEFAULT_DIRECTIONS, DirectionTable, KpiDirection
from cfgclone.predictor.verdict import Interval, KpiResult, Verdict, format_change

FloatArray = npt.NDArray[np.float64]

_BOOTSTRAP_CHUNK_VALUES = 2_000_000
"""Resampled values held in memory at once while bootstrapping."""


@dataclass(frozen=True)
class JudgeSettings:
    """How strict the judge is."""

    alpha: float = 0.05
    """Significance level per KPI, split evenly between the location and the tail test."""
    min_samples: int = 20
    """Fewest finite samples each side needs; fewer gives NODATA."""
    min_effect_size: float = 0.147
    """Smallest |Cliff's delta| that counts as a shift ("small" by the usual convention)."""
    tolerance: float = 0.05
    """Smallest relative change, in the bad direction, that matters."""
    tail_quantile: float = 0.95
    """Quantile of the bad tail: this one when up is bad, ``1 - tail_quantile`` when down is."""
    confidence: float = 0.95
    """Confidence level of the reported bootstrap intervals."""
    bootstrap_resamples: int = 1000
    """Bootstrap resamples per KPI."""
    max_bootstrap_draw: int = 2000
    """Largest resample drawn from one side; larger sides use the m-out-of-n bootstrap."""
    seed: int = 0
    """Seed of the bootstrap, so that a judgement can be reproduced."""

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if self.min_samples < 2:
            raise ValueError("min_samples must be at least 2")
        if not 0.5 < self.tail_quantile < 1.0:
            raise ValueError("tail_quantile must be in (0.5, 1)")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError("confidence must be in (0, 1)")
        if self.tolerance < 0 or self.min_effect_size < 0:
            raise ValueError("tolerance and min_effect_size must not be negative")
        if self.bootstrap_resamples < 100:
            raise ValueError("bootstrap_resamples must be at least 100")
        if self.max_bootstrap_draw < self.min_samples:
            raise ValueError("max_bootstrap_draw must be at least min_samples")


@dataclass(frozen=True)
class _Evidence:
    """What the two tests found for one KPI, before it becomes a verdict."""

    level: float
    shift: float
    relative: float | None
    interval: Interval | None
    p_location: float
    cliffs_delta: float
    tail_q: float
    tail_relative: float | None
    tail_interval: Interval | None
    p_spread: float


@dataclass(frozen=True)
class Judge:
    """Compares baseline and candidate samples of KPIs; see the module docstring."""

    settings: JudgeSettings = field(default_factory=JudgeSettings)
    directions: DirectionTable = DEFAULT_DIRECTIONS

    def compare(
        self,
        kpi: str,
        baseline: Sequence[float] | FloatArray,
        candidate: Sequence[float] | FloatArray,
        *,
        direction: KpiDirection | None = None,
        tolerance: float | None = None,
    ) -> KpiResult:
        """Judge one KPI.

        ``direction`` defaults to the direction table's; ``tolerance`` (a policy's
        threshold, for instance) defaults to the settings'. Non-finite samples are
        dropped, and count as missing.
        """
        way = direction if direction is not None else self.directions.direction(kpi)
        tol = self.settings.tolerance if tolerance is None else tolerance
        a = _finite(baseline)
        b = _finite(candidate)
        count = int(a.size + b.size)
        need = self.settings.min_samples
        if a.size < need or b.size < need:
            return KpiResult(
                kpi=kpi,
                direction=way,
                verdict=Verdict.NODATA,
                explanation=(
                    f"{kpi}: {a.size} baseline and {b.size} candidate samples; "
                    f"at least {need} each are needed"
                ),
                evidence_count=count,
            )
        evidence = self._evidence(kpi, a, b, way)
        verdict, reason = self._decide(evidence, way, tol)
        return KpiResult(
            kpi=kpi,
            direction=way,
            verdict=verdict,
            explanation=f"{kpi}: {reason}; {_describe(evidence)}",
            relative_change=evidence.relative,
            interval=evidence.interval,
            p_value=evidence.p_location,
            effect_size=evidence.cliffs_delta,
            tail_quantile=evidence.tail_q,
            tail_change=evidence.tail_relative,
            tail_interval=evidence.tail_interval,
            baseline_level=evidence.level,
            evidence_count=count,
        )

    def compare_all(
        self,
        baseline: Mapping[str, Sequence[float] | FloatArray],
        candidate: Mapping[str, Sequence[float] | FloatArray],
        *,
        directions: Mapping[str, KpiDirection] | None = None,
        tolerances: Mapping[str, float] | None = None,
    ) -> tuple[KpiResult, ...]:
        """Judge every KPI present on either side, in name order.

        A KPI present on one side only is judged with an empty other side, so it comes
        out NODATA rather than disappearing.
        """
        results = []
        for kpi in sorted(set(baseline) | set(candidate)):
            results.append(
                self.compare(
                    kpi,
                    baseline.get(kpi, ()),
                    candidate.get(kpi, ()),
                    direction=(directions or {}).get(kpi),
                    tolerance=(tolerances or {}).get(kpi),
                )
            )
        return tuple(results)

    def _evidence(self, kpi: str, a: FloatArray, b: FloatArray, way: KpiDirection) -> _Evidence:
        s = self.settings
        tail_q = s.tail_quantile if way is KpiDirection.LOWER_IS_BETTER else 1.0 - s.tail_quantile
        level = float(np.median(a))
        shift = float(np.median(b)) - level
        if np.ptp(a) == 0.0 and np.ptp(b) == 0.0:
            # Constant on both sides: the tests are undefined, the answer is not.
            same = a[0] == b[0]
            return _Evidence(
                level=level,
                shift=shift,
                relative=_relative(level, float(b[0])),
                interval=None,
                p_location=1.0 if same else 0.0,
                cliffs_delta=0.0 if same else float(np.sign(b[0] - a[0])),
                tail_q=tail_q,
                tail_relative=_relative(level, float(b[0])),
                tail_interval=None,
                p_spread=1.0,
            )
        u_candidate, p_location = stats.mannwhitneyu(b, a, alternative="two-sided")
        cliffs_delta = 2.0 * float(u_candidate) / (a.size * b.size) - 1.0
        p_spread = float(stats.levene(a, b, center="median").pvalue)
        if not np.isfinite(p_spread):
            # Zero spread on both sides around their medians: no spread change to detect.
            p_spread = 1.0
        tail_a = float(np.quantile(a, tail_q))
        tail_b = float(np.quantile(b, tail_q))
        # Seeded per KPI (crc32, unlike hash(), is the same in every process).
        rng = np.random.default_rng([s.seed, zlib.crc32(kpi.encode())])
        boot = _bootstrap_quantiles(
            a, b, (0.5, tail_q), s.bootstrap_resamples, rng, s.max_bootstrap_draw
        )
        interval = _ratio_interval(boot[0], s.confidence)
        tail_interval = _ratio_interval(boot[1], s.confidence)
        return _Evidence(
            level=level,
            shift=shift,
            relative=_relative(level, float(np.median(b))),
            interval=interval,
            p_location=float(p_location),
            cliffs_delta=cliffs_delta,
            tail_q=tail_q,
            tail_relative=_relative(tail_a, tail_b),
            tail_interval=tail_interval,
            p_spread=p_spread,
        )

    def _decide(self, e: _Evidence, way: KpiDirection, tol: float) -> tuple[Verdict, str]:
        s = self.settings
        level = s.alpha / 2.0
        moved = e.relative if e.relative is not None else e.shift
        worse = way.worsening(moved)
        shifted = e.p_location < level and abs(e.cliffs_delta) >= s.min_effect_size
        # Without a relative scale (zero baseline median) any significant shift matters.
        beyond = abs(moved) > tol if e.relative is not None else moved != 0.0
        tail_name = f"p{round(e.tail_q * 100)}"
        if shifted and worse > 0 and beyond:
            return Verdict.NEGATIVE, f"worse: the median moved {_move(e)} the wrong way"
        if e.tail_interval is not None and e.p_spread < level:
            least, _ = way.worsening_bounds(e.tail_interval.low, e.tail_interval.high)
            if least > tol:
                return Verdict.NEGATIVE, (
                    f"worse in the tail: {tail_name} moved {format_change(e.tail_relative)} "
                    f"and the spread changed, while the median moved {_move(e)}"
                )
        if shifted and worse < 0 and beyond:
            return Verdict.POSITIVE, f"better: the median moved {_move(e)} the right way"
        if e.interval is None:
            if e.relative is None and not shifted:
                return Verdict.NEUTRAL, "no significant change (zero baseline median)"
            if e.relative is not None and abs(e.relative) <= tol:
                return Verdict.NEUTRAL, f"no change beyond the {tol:.0%} tolerance"
            return Verdict.INCONCLUSIVE, "no interval could be computed for the change"
        _, most = way.worsening_bounds(e.interval.low, e.interval.high)
        if most <= tol:
            return Verdict.NEUTRAL, f"no change beyond the {tol:.0%} tolerance"
        return Verdict.INCONCLUSIVE, (
            f"no significant change, but the interval {e.interval} cannot rule out "
            f"a worsening beyond the {tol:.0%} tolerance"
        )


def _finite(values: Sequence[float] | FloatArray) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _relative(before: float, after: float) -> float | None:
    if before == 0.0:
        return None
    return (after - before) / abs(before)


def _move(e: _Evidence) -> str:
    if e.relative is not None:
        return format_change(e.relative)
    return f"by {e.shift:+.4g} from a zero baseline"


def _describe(e: _Evidence) -> str:
    tail_name = f"p{round(e.tail_q * 100)}"
    parts = [f"median {format_change(e.relative)}"]
    if e.interval is not None:
        parts[0] += f" {e.interval}"
    parts.append(f"Mann-Whitney p={e.p_location:.3g}")
    parts.append(f"Cliff's delta {e.cliffs_delta:+.2f}")
    tail = f"{tail_name} {format_change(e.tail_relative)}"
    if e.tail_interval is not None:
        tail += f" {e.tail_interval}"
    parts.append(tail)
    parts.append(f"Brown-Forsythe p={e.p_spread:.3g}")
    return ", ".join(parts)


def _bootstrap_quantiles(
    a: FloatArray,
    b: FloatArray,
    quantiles: tuple[float, ...],
    resamples: int,
    rng: np.random.Generator,
    max_draw: int,
) -> list[FloatArray]:
    """Bootstrap distributions of ``Q_b(q) / Q_a(q) - 1`` for each quantile ``q``.

    Both sides are resampled independently (they are independent runs). Resamples whose
    baseline quantile is zero have no ratio and are dropped.
    """
    qa = _bootstrap_side(a, quantiles, resamples, rng, max_draw)
    qb = _bootstrap_side(b, quantiles, resamples, rng, max_draw)
    out = []
    for i in range(len(quantiles)):
        ok = qa[i] != 0.0
        out.append((qb[i][ok] - qa[i][ok]) / np.abs(qa[i][ok]))
    return out


def _bootstrap_side(
    x: FloatArray,
    quantiles: tuple[float, ...],
    resamples: int,
    rng: np.random.Generator,
    max_draw: int,
) -> FloatArray:
    """Bootstrap quantiles of one side, shape ``(len(quantiles), resamples)``.

    A side larger than ``max_draw`` is bootstrapped with draws of ``max_draw`` values
    (the m-out-of-n bootstrap) and the deviations from the full-sample quantile are shrunk
    by ``sqrt(m / n)``, the rate at which a quantile's error shrinks; this keeps a
    judgement of a million samples as fast as one of a few thousand.
    """
    qs = np.asarray(quantiles)
    draw = min(x.size, max_draw)
    chunk = max(1, _BOOTSTRAP_CHUNK_VALUES // draw)
    parts = []
    done = 0
    while done < resamples:
        m = min(chunk, resamples - done)
        parts.append(np.quantile(x[rng.integers(0, x.size, size=(m, draw))], qs, axis=1))
        done += m
    boot = np.concatenate(parts, axis=1)
    if draw < x.size:
        full = np.quantile(x, qs)[:, None]
        boot = full + (boot - full) * np.sqrt(draw / x.size)
    return np.asarray(boot, dtype=np.float64)


def _ratio_interval(boot: FloatArray, confidence: float) -> Interval | None:
    """Percentile interval of a bootstrap distribution; ``None`` when too few resamples."""
    if boot.size < 100:
        return None
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return Interval(float(low), float(high), confidence)


__all__ = ["Judge", "JudgeSettings"]
