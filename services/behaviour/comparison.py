"""How far apart two KPI distributions are: one measure for every comparison in cfgclone.

A KPI's distribution in one load regime is summarised by its count, mean, variance and
quantiles (p50, p95, p99). Two summaries are compared by five bounded differences
(mean, p50, p95 and p99 against the pooled standard deviation, and the standard
deviations against their sum), averaged into a distance in [0, 1): 0 when they agree.
A difference is never measured against less than ``relative_floor`` of the KPI's
magnitude, so near-constant KPIs do not make tiny differences look huge. Regimes weigh
by the smaller of the two counts: a comparison is only as sure as its thinner side.

:func:`compare` compares two fingerprints of one system (two configuration versions on
one load scale) KPI by KPI; the similarity service compares two systems' fingerprints
regime by regime with :func:`regime_distance` and :func:`weighted_distance`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cfgclone.behaviour.errors import IncompatibleFingerprint
from cfgclone.behaviour.model import Fingerprint
from cfgclone.behaviour.regimes import RegimeStats

__all__ = [
    "DEFAULT_RELATIVE_FLOOR",
    "KpiDifference",
    "RegimeSummary",
    "compare",
    "regime_distance",
    "weighted_distance",
]

DEFAULT_RELATIVE_FLOOR = 0.01
"""Smallest scale of a difference, as a share of the KPI's magnitude."""
_TINY = 1e-12
_QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class RegimeSummary:
    """A KPI's distribution in one load regime, as the distance reads it."""

    count: float
    mean: float
    variance: float
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, stats: RegimeStats) -> RegimeSummary:
        p50, p95, p99 = stats.sketch.quantiles(_QUANTILES)
        return cls(stats.count, stats.mean, stats.variance, p50, p95, p99)


def regime_distance(
    a: RegimeSummary, b: RegimeSummary, relative_floor: float = DEFAULT_RELATIVE_FLOOR
) -> float:
    """Mean of five bounded differences: mean, p50, p95, p99 and standard deviation.

    A location difference d against the pooled standard deviation s becomes
    d / (d + s), an effect size squeezed into [0, 1); the standard deviations are
    compared relative to their sum.
    """
    magnitude = max(abs(a.mean), abs(b.mean), abs(a.p50), abs(b.p50), abs(a.p99), abs(b.p99))
    floor = max(relative_floor * magnitude, _TINY)
    std_a, std_b = math.sqrt(max(a.variance, 0.0)), math.sqrt(max(b.variance, 0.0))
    scale = max(math.sqrt((max(a.variance, 0.0) + max(b.variance, 0.0)) / 2.0), floor)
    parts = [
        _bounded(abs(x - y), scale)
        for x, y in ((a.mean, b.mean), (a.p50, b.p50), (a.p95, b.p95), (a.p99, b.p99))
    ]
    parts.append(abs(std_a - std_b) / max(std_a + std_b, floor))
    return sum(parts) / len(parts)


def weighted_distance(pairs: Sequence[tuple[float, float]]) -> float:
    """Mean of (distance, weight) pairs, weighted; the pairs must weigh something."""
    total = sum(weight for _, weight in pairs)
    return sum(distance * weight for distance, weight in pairs) / total


def _bounded(difference: float, scale: float) -> float:
    return difference / (difference + scale)


@dataclass(frozen=True)
class KpiDifference:
    """How one KPI differs between two fingerprints at the loads both have seen."""

    kpi: str
    relative_change: float
    """Count-weighted change of the mean over the shared regimes, relative to the first."""
    shared_regimes: tuple[int, ...]
    distance: float
    """Count-weighted :func:`regime_distance` over the shared regimes, in [0, 1)."""


def compare(
    first: Fingerprint, second: Fingerprint, relative_floor: float = DEFAULT_RELATIVE_FLOOR
) -> list[KpiDifference]:
    """Per KPI both have, at the load regimes both saw: the change of the mean and the
    distance between the two distributions. Both must bin load on the same scale.

    The change is relative to the first mean, but never to less than ``relative_floor``
    of the larger of the two: a KPI that was (nearly) zero and is not any more, errors
    that appear, changes by a large amount (``1 / relative_floor``, 100 times by
    default), not by nothing (a zero base) nor by an arbitrarily large one (a tiny base).
    """
    if not first.scale.same_as(second.scale):
        raise IncompatibleFingerprint("the two fingerprints use different load scales")
    differences = []
    for kpi in sorted(set(first.kpis) & set(second.kpis)):
        a, b = first.profiles[kpi].regimes, second.profiles[kpi].regimes
        shared = tuple(r for r in sorted(set(a) & set(b)) if a[r].count > 0 and b[r].count > 0)
        if not shared:
            continue
        weights = [min(a[r].count, b[r].count) for r in shared]
        base = sum(a[r].mean * w for r, w in zip(shared, weights, strict=True)) / sum(weights)
        after = sum(b[r].mean * w for r, w in zip(shared, weights, strict=True)) / sum(weights)
        scale = max(abs(base), relative_floor * max(abs(base), abs(after)))
        relative = (after - base) / scale if scale > 0 else 0.0
        distance = weighted_distance(
            [
                (regime_distance(RegimeSummary.of(a[r]), RegimeSummary.of(b[r])), w)
                for r, w in zip(shared, weights, strict=True)
            ]
        )
        differences.append(KpiDifference(kpi, relative, shared, distance))
    return differences
