"""Mergeable Pearson correlation of two KPIs over the time buckets they share.

Why moments and not coefficients: a coefficient cannot be merged, but the
weighted count, means, sums of squared deviations and co-moment of a pair can
(Chan's parallel formulas), so a refined fingerprint's correlation equals the
correlation over the union of the windows.

Samples are paired through the alignment buckets: each KPI contributes its mean
in a bucket, and a bucket weighs ``min(samples of a, samples of b)`` in it, the
number of pairs it can form. That makes the pair's weight comparable with the
KPIs' own sample counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["PairMoments", "pair_moments_from_buckets"]

FloatArray = npt.NDArray[np.float64]

_NEGLIGIBLE_SPREAD = 1e-12
"""A KPI whose standard deviation is below this fraction of its mean is treated as constant."""


@dataclass(frozen=True)
class PairMoments:
    """Weighted co-moments of two KPIs ``a`` and ``b`` (the names live in the fingerprint)."""

    count: float
    """Weight of the pairs."""
    mean_a: float
    mean_b: float
    m2_a: float
    """Weighted sum of squared deviations of ``a`` from ``mean_a``."""
    m2_b: float
    comoment: float
    """Weighted sum of products of the deviations of ``a`` and ``b``."""

    def merge(self, other: PairMoments) -> PairMoments:
        """Moments of both sets of pairs."""
        count = self.count + other.count
        if count <= 0.0:
            return self
        delta_a = other.mean_a - self.mean_a
        delta_b = other.mean_b - self.mean_b
        cross = self.count * other.count / count
        return PairMoments(
            count,
            self.mean_a + delta_a * (other.count / count),
            self.mean_b + delta_b * (other.count / count),
            self.m2_a + other.m2_a + delta_a * delta_a * cross,
            self.m2_b + other.m2_b + delta_b * delta_b * cross,
            self.comoment + other.comoment + delta_a * delta_b * cross,
        )

    def decayed(self, factor: float) -> PairMoments:
        """Weights multiplied by ``factor``; the coefficient is unchanged."""
        return PairMoments(
            self.count * factor,
            self.mean_a,
            self.mean_b,
            self.m2_a * factor,
            self.m2_b * factor,
            self.comoment * factor,
        )

    @property
    def coefficient(self) -> float:
        """Pearson's r in [-1, 1]; 0.0 when either KPI is constant (no NaN, by design)."""
        if self.count <= 0.0:
            return 0.0
        if _constant(self.m2_a, self.count, self.mean_a) or _constant(
            self.m2_b, self.count, self.mean_b
        ):
            return 0.0
        r = self.comoment / math.sqrt(self.m2_a * self.m2_b)
        return min(1.0, max(-1.0, r)) if math.isfinite(r) else 0.0


def _constant(m2: float, count: float, mean: float) -> bool:
    return m2 <= count * (_NEGLIGIBLE_SPREAD * abs(mean)) ** 2 or m2 <= 0.0


def pair_moments_from_buckets(
    names: Sequence[str], bucket_means: FloatArray, bucket_counts: FloatArray
) -> dict[tuple[str, str], PairMoments]:
    """Moments of every pair of KPIs, keyed by the pair of names in sorted order.

    ``bucket_means`` and ``bucket_counts`` are ``len(names) x buckets``: the mean and
    number of samples of each KPI in each alignment bucket (count 0 where it has
    none). Pairs that share no bucket are left out.
    """
    kpi_count = len(names)
    pairs: dict[tuple[str, str], PairMoments] = {}
    if kpi_count < 2:
        return pairs
    totals = bucket_counts.sum(axis=1)
    # Deviations from each KPI's own mean keep the sums below free of cancellation.
    centers = np.divide(
        (bucket_means * bucket_counts).sum(axis=1),
        totals,
        out=np.zeros(kpi_count),
        where=totals > 0.0,
    )
    centered = (bucket_means - centers[:, None]) * (bucket_counts > 0.0)
    for first in range(kpi_count - 1):
        others = slice(first + 1, kpi_count)
        weights = np.minimum(bucket_counts[first][None, :], bucket_counts[others])
        weight = weights.sum(axis=1)
        x = centered[first]
        ys = centered[others]
        # einsum rather than @: a BLAS call here spins up threads that cost more than
        # these few thousand products on a shared machine.
        sum_x = np.einsum("kb,b->k", weights, x)
        sum_xx = np.einsum("kb,b->k", weights, x * x)
        weighted_ys = weights * ys
        sum_y = weighted_ys.sum(axis=1)
        sum_yy = np.einsum("kb,kb->k", weighted_ys, ys)
        sum_xy = np.einsum("kb,b->k", weighted_ys, x)
        for offset in np.flatnonzero(weight > 0.0):
            second = first + 1 + int(offset)
            n = float(weight[offset])
            mean_x = float(sum_x[offset]) / n
            mean_y = float(sum_y[offset]) / n
            moments = PairMoments(
                n,
                mean_x + float(centers[first]),
                mean_y + float(centers[second]),
                max(float(sum_xx[offset]) - n * mean_x * mean_x, 0.0),
                max(float(sum_yy[offset]) - n * mean_y * mean_y, 0.0),
                float(sum_xy[offset]) - n * mean_x * mean_y,
            )
            a, b = names[first], names[second]
            if a <= b:
                pairs[(a, b)] = moments
            else:
                pairs[(b, a)] = _swapped(moments)
    return pairs


def _swapped(moments: PairMoments) -> PairMoments:
    return PairMoments(
        moments.count,
        moments.mean_b,
        moments.mean_a,
        moments.m2_b,
        moments.m2_a,
        moments.comoment,
    )
