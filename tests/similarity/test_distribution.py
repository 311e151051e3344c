"""KPI distributions compared at the loads both fingerprints have seen."""

from __future__ import annotations

import math

import pytest

from cfgclone.similarity import (
    InvalidFingerprint,
    SimilarityIndex,
    compare_distributions,
)
from cfgclone.v1 import common_pb2

from .fleet import LAYOUT, family_fleet

# (regime, count, mean, variance, p50, p95, p99)
Stats = tuple[int, float, float, float, float, float, float]


def _latency(regime: int, count: float = 1_000.0, shift: float = 0.0, tail: float = 0.0) -> Stats:
    base = 10.0 * 1.5**regime + shift
    return (regime, count, base, 4.0, base, base + 3.3 + tail, base + 4.7 + 2 * tail)


def _fingerprint(
    name: str, kpis: dict[str, list[Stats]], load_metric: str = "requests_per_second"
) -> common_pb2.Fingerprint:
    fingerprint = common_pb2.Fingerprint(name=f"systems/{name}/fingerprints/1")
    fingerprint.load_metric = load_metric
    for kpi, regimes in kpis.items():
        profile = fingerprint.kpis.add(kpi=kpi)
        for regime, count, mean, variance, p50, p95, p99 in regimes:
            profile.regimes.add(
                regime=regime, count=count, mean=mean, variance=variance, p50=p50, p95=p95, p99=p99
            )
    return fingerprint


def test_identical_distributions_are_zero_apart() -> None:
    kpis: dict[str, list[Stats]] = {
        "latency": [_latency(r) for r in range(1, 5)],
        "cpu": [(2, 50.0, 30.0, 1.0, 30, 32, 33)],
    }
    result = compare_distributions(_fingerprint("a", kpis), _fingerprint("b", kpis))
    assert result.distance == pytest.approx(0.0)
    assert result.shared_kpis == ("cpu", "latency")


def test_only_regimes_both_have_seen_are_compared() -> None:
    first = _fingerprint("a", {"latency": [_latency(r) for r in (1, 2, 3)]})
    second = _fingerprint("b", {"latency": [_latency(r, shift=50.0) for r in (2, 3, 4, 5)]})
    result = compare_distributions(first, second)
    assert result.shared_regimes == (2, 3)
    assert [(r.kpi, r.regime) for r in result.regimes] == [("latency", 2), ("latency", 3)]
    assert "regimes 2, 3" in result.explanation
    assert "latency" in result.explanation


def test_the_distance_grows_with_the_difference_and_stays_within_one() -> None:
    first = _fingerprint("a", {"latency": [_latency(r) for r in range(4)]})
    distances: list[float] = []
    for shift in (0.0, 0.5, 2.0, 10.0, 1e6):
        shifted = _fingerprint("b", {"latency": [_latency(r, shift=shift) for r in range(4)]})
        distance = compare_distributions(first, shifted).distance
        assert distance is not None
        distances.append(distance)
    assert distances == sorted(distances)
    assert len(set(distances)) == len(distances)
    assert distances[0] == pytest.approx(0.0)
    assert all(0.0 <= d <= 1.0 for d in distances)
    assert distances[-1] > 0.75


def test_a_heavier_tail_alone_is_a_difference() -> None:
    first = _fingerprint("a", {"latency": [_latency(3)]})
    second = _fingerprint("b", {"latency": [_latency(3, tail=20.0)]})
    result = compare_distributions(first, second)
    assert result.distance is not None
    assert result.distance > 0.2


def test_regimes_weigh_by_the_thinner_sides_count() -> None:
    first = _fingerprint("a", {"latency": [_latency(1, 1_000.0), _latency(2, 1_000.0)]})
    unsure = _fingerprint("b", {"latency": [_latency(1, 1_000.0), _latency(2, 5.0, shift=40.0)]})
    sure = _fingerprint("c", {"latency": [_latency(1, 1_000.0), _latency(2, 1_000.0, shift=40.0)]})
    unsure_distance = compare_distributions(first, unsure).distance
    sure_distance = compare_distributions(first, sure).distance
    assert unsure_distance is not None
    assert sure_distance is not None
    assert unsure_distance < sure_distance / 10
    weights = {r.regime: r.weight for r in compare_distributions(first, unsure).regimes}
    assert weights == {1: 1_000.0, 2: 5.0}


def test_kpis_are_averaged_separately_and_the_unshared_ones_named() -> None:
    first = _fingerprint(
        "a", {"latency": [_latency(1)], "cpu": [(1, 10.0, 50.0, 4.0, 50, 53, 55)], "disk": []}
    )
    second = _fingerprint(
        "b", {"latency": [_latency(1)], "cpu": [(1, 10.0, 80.0, 4.0, 80, 83, 85)], "net": []}
    )
    result = compare_distributions(first, second)
    assert result.kpi_distances["latency"] == pytest.approx(0.0)
    assert result.kpi_distances["cpu"] > 0.5
    assert result.first_only_kpis == ("disk",)
    assert result.second_only_kpis == ("net",)
    assert "most different: cpu in regime 1" in result.explanation
    assert "disk (first only)" in result.explanation
    assert "net (second only)" in result.explanation


def test_nothing_shared_gives_no_distance_and_says_why() -> None:
    first = _fingerprint("a", {"latency": [_latency(1)]})
    elsewhere = _fingerprint("b", {"latency": [_latency(7)]})
    result = compare_distributions(first, elsewhere)
    assert result.distance is None
    assert result.regimes == ()
    assert "no KPI was measured at a load both systems have seen" in result.explanation
    other_metric = _fingerprint("c", {"latency": [_latency(1)]}, load_metric="cpu_percent")
    result = compare_distributions(first, other_metric)
    assert result.distance is None
    assert "different metrics" in result.explanation


def test_near_constant_kpis_do_not_turn_rounding_into_distance() -> None:
    first = _fingerprint("a", {"errors": [(1, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0)]})
    second = _fingerprint("b", {"errors": [(1, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0)]})
    assert compare_distributions(first, second).distance == 0.0
    third = _fingerprint("c", {"memory": [(1, 100.0, 1e9, 0.0, 1e9, 1e9, 1e9)]})
    fourth = _fingerprint("d", {"memory": [(1, 100.0, 1e9 + 1, 0.0, 1e9 + 1, 1e9 + 1, 1e9 + 1)]})
    distance = compare_distributions(third, fourth).distance
    assert distance is not None
    assert distance < 1e-6


@pytest.mark.parametrize(
    "regimes",
    [
        [_latency(1), _latency(1)],
        [(1, 10.0, math.nan, 1.0, 1, 2, 3)],
        [(1, 10.0, 1.0, -1.0, 1, 2, 3)],
    ],
)
def test_inconsistent_statistics_are_rejected(regimes: list[Stats]) -> None:
    good = _fingerprint("a", {"latency": [_latency(1)]})
    with pytest.raises(InvalidFingerprint, match="latency"):
        compare_distributions(good, _fingerprint("b", {"latency": regimes}))


def test_a_similarity_answer_carries_the_distribution_comparison() -> None:
    fleet, _ = family_fleet(families=2, members=5)
    index = SimilarityIndex(LAYOUT)
    index.rebuild(fleet.entries())
    answer = index.compare("f0-0", "f0-1")
    assert answer.distribution_distance is None
    comparison = compare_distributions(
        _fingerprint("a", {"latency": [_latency(2)]}),
        _fingerprint("b", {"latency": [_latency(2, shift=3.0)]}),
    )
    explained = answer.with_distribution(comparison)
    assert explained.distribution_distance == comparison.distance
    assert explained.explanation.startswith(answer.explanation)
    assert comparison.explanation in explained.explanation
    assert explained.score == answer.score
