"""KPI distributions of two fingerprints compared regime by regime.

The embedding says how two systems behave in general; this measure checks the
detail where it can be checked. Regimes are bins of each system's load metric on a
log scale that spans that system's own observed range (``cfgclone.behaviour.regimes``),
so regime 5 is the same *position* in each system's range: two versions of one system
share a scale, and two systems compare at corresponding levels of their own load.
For each KPI and regime seen by both, the two distributions are
compared by their means, quantiles (p50, p95, p99) and standard deviations, each
difference expressed against the pooled standard deviation so that KPIs in
different units average together. Regimes weigh by the smaller of the two sample
counts: a comparison is only as sure as its thinner side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cfgclone.behaviour.comparison import (
    DEFAULT_RELATIVE_FLOOR,
    RegimeSummary,
    regime_distance,
    weighted_distance,
)
from cfgclone.v1 import common_pb2

from .errors import InvalidFingerprint

__all__ = ["DistributionComparison", "RegimeDistance", "compare_distributions"]


@dataclass(frozen=True, slots=True)
class RegimeDistance:
    """Distance of one KPI's distributions in one shared load regime."""

    kpi: str
    """KPI metric name."""
    regime: int
    """Regime index on the fleet-wide load scale."""
    distance: float
    """Distance in [0, 1]; 0 when mean, quantiles and spread all agree."""
    weight: float
    """Smaller of the two sample counts (after decay)."""


@dataclass(frozen=True, slots=True)
class DistributionComparison:
    """How far apart two fingerprints' KPI distributions are where they can be compared."""

    distance: float | None
    """Count-weighted mean distance in [0, 1], or None when no KPI shares a regime."""
    regimes: tuple[RegimeDistance, ...]
    """Every (KPI, regime) pair that was compared, by KPI then regime."""
    kpi_distances: Mapping[str, float]
    """Count-weighted distance per shared KPI."""
    shared_kpis: tuple[str, ...]
    """KPIs compared in at least one regime, sorted."""
    shared_regimes: tuple[int, ...]
    """Regimes in which at least one KPI was compared, ascending."""
    first_only_kpis: tuple[str, ...]
    """KPIs of the first fingerprint that could not be compared, sorted."""
    second_only_kpis: tuple[str, ...]
    """KPIs of the second fingerprint that could not be compared, sorted."""
    explanation: str
    """What was compared and where the distributions differ most, in words."""


def compare_distributions(
    first: common_pb2.Fingerprint,
    second: common_pb2.Fingerprint,
    *,
    relative_floor: float = DEFAULT_RELATIVE_FLOOR,
) -> DistributionComparison:
    """Compares the KPI distributions of two fingerprints at the loads both have seen.

    `relative_floor` keeps near-constant KPIs from making tiny differences look huge:
    a difference is never measured against less than this fraction of the KPI's
    magnitude.
    """
    first_profiles = _regimes_by_kpi(first)
    second_profiles = _regimes_by_kpi(second)
    if first.load_metric and second.load_metric and first.load_metric != second.load_metric:
        return _nothing_shared(
            first_profiles,
            second_profiles,
            "KPI distributions were not compared: the fingerprints bin load by different "
            f"metrics ({first.load_metric} and {second.load_metric}).",
        )
    compared: list[RegimeDistance] = []
    for kpi in sorted(first_profiles.keys() & second_profiles.keys()):
        ours, theirs = first_profiles[kpi], second_profiles[kpi]
        for regime in sorted(ours.keys() & theirs.keys()):
            a, b = ours[regime], theirs[regime]
            if a.count <= 0 or b.count <= 0:
                continue
            compared.append(
                RegimeDistance(
                    kpi,
                    regime,
                    regime_distance(_summary(a), _summary(b), relative_floor),
                    min(a.count, b.count),
                )
            )
    if not compared:
        return _nothing_shared(
            first_profiles,
            second_profiles,
            "KPI distributions were not compared: no KPI was measured at a load both "
            "systems have seen.",
        )
    shared_kpis = tuple(sorted({item.kpi for item in compared}))
    shared_regimes = tuple(sorted({item.regime for item in compared}))
    kpi_distances = {kpi: _weighted([r for r in compared if r.kpi == kpi]) for kpi in shared_kpis}
    distance = _weighted(compared)
    first_only = tuple(sorted(first_profiles.keys() - set(shared_kpis)))
    second_only = tuple(sorted(second_profiles.keys() - set(shared_kpis)))
    worst = max(compared, key=lambda item: (item.distance, item.weight))
    explanation = (
        f"KPI distributions are {distance:.2f} apart at the loads both have seen "
        f"(regimes {', '.join(map(str, shared_regimes))}; KPIs {', '.join(shared_kpis)}); "
        f"most different: {worst.kpi} in regime {worst.regime} ({worst.distance:.2f})."
    )
    if first_only or second_only:
        missing = [f"{kpi} (first only)" for kpi in first_only]
        missing += [f"{kpi} (second only)" for kpi in second_only]
        explanation += f" Not compared: {', '.join(missing)}."
    return DistributionComparison(
        distance=distance,
        regimes=tuple(compared),
        kpi_distances=MappingProxyType(kpi_distances),
        shared_kpis=shared_kpis,
        shared_regimes=shared_regimes,
        first_only_kpis=first_only,
        second_only_kpis=second_only,
        explanation=explanation,
    )


def _regimes_by_kpi(
    fingerprint: common_pb2.Fingerprint,
) -> dict[str, dict[int, common_pb2.RegimeStats]]:
    profiles: dict[str, dict[int, common_pb2.RegimeStats]] = {}
    for profile in fingerprint.kpis:
        if profile.kpi in profiles:
            raise InvalidFingerprint(f"{fingerprint.name}: KPI {profile.kpi!r} appears twice")
        regimes: dict[int, common_pb2.RegimeStats] = {}
        for stats in profile.regimes:
            if stats.regime in regimes:
                raise InvalidFingerprint(
                    f"{fingerprint.name}: KPI {profile.kpi!r} has regime {stats.regime} twice"
                )
            values = (stats.count, stats.mean, stats.variance, stats.p50, stats.p95, stats.p99)
            if not all(math.isfinite(value) for value in values):
                raise InvalidFingerprint(
                    f"{fingerprint.name}: KPI {profile.kpi!r} regime {stats.regime} "
                    "has a non-finite statistic"
                )
            if stats.variance < 0 or stats.count < 0:
                raise InvalidFingerprint(
                    f"{fingerprint.name}: KPI {profile.kpi!r} regime {stats.regime} "
                    "has a negative variance or count"
                )
            regimes[stats.regime] = stats
        profiles[profile.kpi] = regimes
    return profiles


def _nothing_shared(
    first: Mapping[str, object], second: Mapping[str, object], explanation: str
) -> DistributionComparison:
    return DistributionComparison(
        distance=None,
        regimes=(),
        kpi_distances=MappingProxyType({}),
        shared_kpis=(),
        shared_regimes=(),
        first_only_kpis=tuple(sorted(first)),
        second_only_kpis=tuple(sorted(second)),
        explanation=explanation,
    )


def _summary(stats: common_pb2.RegimeStats) -> RegimeSummary:
    return RegimeSummary(stats.count, stats.mean, stats.variance, stats.p50, stats.p95, stats.p99)


def _weighted(items: list[RegimeDistance]) -> float:
    return weighted_distance([(item.distance, item.weight) for item in items])
