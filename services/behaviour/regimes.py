"""Load regimes on a system's own log scale, and the statistics a KPI keeps per regime.

Regime ``i`` covers loads ``[base * 2**(i/k), base * 2**((i+1)/k))`` with ``k``
regimes per doubling of load; loads below the first edge (idle, zero or negative)
fall into regime 0 and loads beyond the last edge into the last regime, so every
sample has a regime.

The edges follow the observed range of the system's load metric
(:meth:`LoadScale.spanning`: log-spaced between robust quantiles), because load
metrics differ by orders of magnitude between systems and kinds (a CPU share of 0.3,
4,000 requests per second). A system keeps the scale of its first fingerprint for
all later ones, so its configuration versions compare regime by regime. Every scale
has the same number of regimes, so regime ``i`` is the same *position* in each
system's own range: systems are compared by the shape of their behaviour over their
range, and the range itself is part of what their fingerprints record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cfgclone.behaviour.sketch import (
    DEFAULT_RELATIVE_ACCURACY,
    QuantileSketch,
    sketches_by_group,
)

__all__ = [
    "DEFAULT_LOAD_SCALE",
    "REGIME_COUNT",
    "LoadScale",
    "RegimeStats",
    "regime_stats_by_group",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


REGIME_COUNT = 20
"""Regimes of every load scale (the embedding's bands depend on it)."""
_SPAN_QUANTILES = (0.01, 0.99)
_SPAN_MARGIN = 1.5
"""Room beyond the observed range, as a factor on each side, for load that moves later."""
_MIN_SPAN_OCTAVES = 2.0
"""A steady load still gets a scale four times wide."""


@dataclass(frozen=True)
class LoadScale:
    """Edges of a system's load regimes.

    The default (twenty half-doubling regimes from 0.125 to 128) suits loads of that
    order; :meth:`spanning` fits a scale to the loads a system shows, which is how
    fingerprints get theirs.
    """

    base: float = 0.125
    """Lower edge of regime 0, in the load metric's unit."""
    regimes_per_octave: float = 2.0
    """Regimes per doubling of load; 2 makes each regime span a factor of about 1.41."""
    regime_count: int = REGIME_COUNT
    """Number of regimes; loads beyond the last edge fall into the last regime."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base) and self.base > 0.0):
            raise ValueError(f"load scale base must be a positive number, got {self.base!r}")
        if not (math.isfinite(self.regimes_per_octave) and self.regimes_per_octave > 0.0):
            raise ValueError(
                f"regimes per octave must be a positive number, got {self.regimes_per_octave}"
            )
        if self.regime_count < 1:
            raise ValueError(f"regime count must be at least 1, got {self.regime_count}")

    @classmethod
    def spanning(cls, loads: FloatArray, regime_count: int = REGIME_COUNT) -> LoadScale:
        """A scale log-spaced over the robust range of ``loads`` (1st to 99th percentile
        of the positive ones, widened by half on each side, at least two doublings
        wide); the default scale when no load is positive."""
        values = np.asarray(loads, dtype=np.float64)
        positive = values[np.isfinite(values) & (values > 0.0)]
        if positive.size == 0:
            return cls(regime_count=regime_count)
        low, high = (float(q) for q in np.quantile(positive, _SPAN_QUANTILES))
        octaves = max(math.log2(high / low) + 2.0 * math.log2(_SPAN_MARGIN), _MIN_SPAN_OCTAVES)
        middle = math.sqrt(low * high)
        base = middle / math.pow(2.0, octaves / 2.0)
        if not (math.isfinite(base) and base > 0.0):
            return cls(regime_count=regime_count)
        return cls(base=base, regimes_per_octave=regime_count / octaves, regime_count=regime_count)

    @classmethod
    def from_edges(cls, regime: int, low: float, high: float, regime_count: int) -> LoadScale:
        """The scale whose regime ``regime`` spans ``[low, high)``."""
        if not (0.0 < low < high and math.isfinite(high)):
            raise ValueError(f"regime edges must be positive and grow, got {low!r}, {high!r}")
        per_octave = 1.0 / math.log2(high / low)
        return cls(
            base=low / math.pow(2.0, regime / per_octave),
            regimes_per_octave=per_octave,
            regime_count=regime_count,
        )

    def same_as(self, other: LoadScale) -> bool:
        """Equal up to floating-point rounding (a scale read back from its edges)."""
        return (
            self.regime_count == other.regime_count
            and math.isclose(self.base, other.base, rel_tol=1e-9)
            and math.isclose(self.regimes_per_octave, other.regimes_per_octave, rel_tol=1e-9)
        )

    def lower_edge(self, regime: int) -> float:
        """Nominal lower edge of a regime (regime 0 also takes every smaller load)."""
        return self.base * math.pow(2.0, regime / self.regimes_per_octave)

    def upper_edge(self, regime: int) -> float:
        """Nominal upper edge of a regime (the last regime also takes every larger load)."""
        return self.lower_edge(regime + 1)

    def center(self, regime: int) -> float:
        """Geometric middle of a regime's nominal range."""
        return self.base * math.pow(2.0, (regime + 0.5) / self.regimes_per_octave)

    def regime_of(self, loads: FloatArray) -> IntArray:
        """Regime index of each load, vectorised; exact at the edges."""
        edges = self.base * np.exp2(
            np.arange(self.regime_count + 1, dtype=np.float64) / self.regimes_per_octave
        )
        octaves = np.log2(np.maximum(loads, self.base) / self.base)
        regimes: IntArray = np.floor(octaves * self.regimes_per_octave).astype(np.int64)
        np.clip(regimes, 0, self.regime_count - 1, out=regimes)
        # log2 may round across an edge; compare with the edges themselves.
        regimes -= ((loads < edges[regimes]) & (regimes > 0)).astype(np.int64)
        regimes += ((loads >= edges[regimes + 1]) & (regimes < self.regime_count - 1)).astype(
            np.int64
        )
        return regimes


DEFAULT_LOAD_SCALE = LoadScale()


@dataclass(frozen=True)
class RegimeStats:
    """A KPI's statistics within one load regime: weight, mean, variance and quantile sketch.

    ``count`` is a float because decay shrinks it. ``variance`` is the population
    variance (divided by the count), the form that stays defined under decay and
    merges exactly with Chan's parallel formula.
    """

    regime: int
    count: float
    mean: float
    variance: float
    sketch: QuantileSketch

    def merge(self, other: RegimeStats) -> RegimeStats:
        """Statistics of both sets of samples (parallel merge of mean and variance)."""
        if other.regime != self.regime:
            raise ValueError(f"cannot merge regime {self.regime} with regime {other.regime}")
        count = self.count + other.count
        if count <= 0.0:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        squares = (
            self.variance * self.count
            + other.variance * other.count
            + delta * delta * (self.count * other.count / count)
        )
        return RegimeStats(
            self.regime,
            count,
            mean,
            max(squares / count, 0.0),
            self.sketch.merge(other.sketch),
        )

    def decayed(self, factor: float) -> RegimeStats:
        """Weight multiplied by ``factor``; mean, variance and quantiles are unchanged."""
        return RegimeStats(
            self.regime,
            self.count * factor,
            self.mean,
            self.variance,
            self.sketch.decayed(factor),
        )

    @property
    def p50(self) -> float:
        """Median, from the sketch."""
        return self.sketch.quantile(0.5)

    @property
    def p95(self) -> float:
        """95th percentile, from the sketch."""
        return self.sketch.quantile(0.95)

    @property
    def p99(self) -> float:
        """99th percentile, from the sketch."""
        return self.sketch.quantile(0.99)


def regime_stats_by_group(
    values: FloatArray,
    regimes: IntArray,
    regime_count: int,
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
) -> dict[int, RegimeStats]:
    """Statistics of ``values`` per regime, in a few vectorised passes.

    Mean from per-regime sums, variance from a second pass over deviations from
    that mean (stable where a sum of squares would cancel), quantile sketches
    from one bincount of bucket keys.
    """
    counts = np.bincount(regimes, minlength=regime_count).astype(np.float64)
    sums = np.bincount(regimes, weights=values, minlength=regime_count)
    filled = counts > 0.0
    means = np.divide(sums, counts, out=np.zeros(regime_count), where=filled)
    deviations = values - means[regimes]
    squares = np.bincount(regimes, weights=deviations * deviations, minlength=regime_count)
    variances = np.divide(squares, counts, out=np.zeros(regime_count), where=filled)
    sketches = sketches_by_group(values, regimes, regime_count, relative_accuracy)
    stats: dict[int, RegimeStats] = {}
    for regime in np.flatnonzero(filled):
        sketch = sketches[regime]
        assert sketch is not None  # a regime with samples has a sketch
        index = int(regime)
        stats[index] = RegimeStats(
            index,
            float(counts[index]),
            float(means[index]),
            float(variances[index]),
            sketch,
        )
    return stats
