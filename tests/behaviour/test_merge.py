"""Merging and decay: a merged fingerprint is the fingerprint of the union of the data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgclone.behaviour import (
    DEFAULT_ALIGN_NS,
    DEFAULT_LOAD_SCALE,
    Fingerprint,
    IncompatibleFingerprint,
    InsufficientData,
    LoadScale,
    SampleSeries,
    SystemProfile,
    build_fingerprint,
    refine_fingerprint,
)

from .synthetic import LATENCY, LOAD, MEMORY, hockey_system, split_at

BUCKETS = 240


def build(metrics: dict[str, SampleSeries]) -> Fingerprint:
    """A window's fingerprint on the one scale windows of a system share."""
    return build_fingerprint(metrics, min_regime_count=1, scale=DEFAULT_LOAD_SCALE)


def assert_same_model(merged: Fingerprint, union: Fingerprint) -> None:
    """Counts, means and variances equal to float tolerance; sketches equal bucket for bucket."""
    assert merged.kpis == union.kpis
    for kpi in union.kpis:
        mine, theirs = merged.profiles[kpi].regimes, union.profiles[kpi].regimes
        assert mine.keys() == theirs.keys()
        for regime, expected in theirs.items():
            got = mine[regime]
            assert got.count == pytest.approx(expected.count, rel=1e-12)
            assert got.mean == pytest.approx(expected.mean, rel=1e-9, abs=1e-12)
            assert got.variance == pytest.approx(expected.variance, rel=1e-7, abs=1e-12)
            assert got.sketch == expected.sketch
            assert got.p99 == expected.p99
    assert merged.correlations.keys() == union.correlations.keys()
    for pair, expected_moments in union.correlations.items():
        assert merged.correlations[pair].count == pytest.approx(expected_moments.count)
        assert merged.correlation(*pair) == pytest.approx(
            union.correlation(*pair), rel=1e-7, abs=1e-9
        )
    assert merged.samples == union.samples
    assert (merged.window_start_ns, merged.window_end_ns) == (
        union.window_start_ns,
        union.window_end_ns,
    )
    assert (merged.load_min, merged.load_max) == (union.load_min, union.load_max)


cuts = st.lists(st.integers(1, BUCKETS - 1), min_size=2, max_size=2, unique=True).map(sorted)


@settings(max_examples=15, deadline=None)
@given(cuts=cuts, seed=st.integers(0, 2**16))
def test_merge_of_windows_equals_the_fingerprint_of_their_union_and_is_associative(
    cuts: list[int], seed: int
) -> None:
    metrics = hockey_system(buckets=BUCKETS, seed=seed)
    first, rest = split_at(metrics, cuts[0] * DEFAULT_ALIGN_NS)
    second, third = split_at(rest, cuts[1] * DEFAULT_ALIGN_NS)
    a, b, c = build(first), build(second), build(third)
    union = build(metrics)
    assert_same_model(a.merge(b).merge(c), union)
    assert_same_model(a.merge(b.merge(c)), union)
    assert_same_model(c.merge(a).merge(b), union)


def test_merge_brings_in_kpis_only_one_side_has() -> None:
    metrics = hockey_system(buckets=BUCKETS)
    first, second = split_at(metrics, 100 * DEFAULT_ALIGN_NS)
    del first[MEMORY]
    merged = build(first).merge(build(second))
    assert MEMORY in merged.kpis
    assert merged.profiles[MEMORY].count == len(second[MEMORY])


def test_decay_multiplies_every_weight_and_keeps_the_statistics() -> None:
    fingerprint = build(hockey_system(buckets=BUCKETS))
    faded = fingerprint.decayed(0.5)
    for kpi in fingerprint.kpis:
        for regime, stats in fingerprint.profiles[kpi].regimes.items():
            old = faded.profiles[kpi].regimes[regime]
            assert old.count == pytest.approx(stats.count * 0.5)
            assert old.sketch.count == pytest.approx(stats.sketch.count * 0.5)
            assert (old.mean, old.variance, old.p50) == (stats.mean, stats.variance, stats.p50)
    assert faded.correlation(LATENCY, LOAD) == pytest.approx(fingerprint.correlation(LATENCY, LOAD))


def test_after_decay_the_newer_window_dominates_the_merged_mean() -> None:
    # The same system before and after a change that doubled its latency.
    before = hockey_system(buckets=BUCKETS, seed=1)
    after = hockey_system(buckets=BUCKETS, seed=2, start_bucket=BUCKETS)
    after[LATENCY] = SampleSeries(after[LATENCY].ts_unix_ns, after[LATENCY].values * 2)
    old, new = build(before), build(after)

    def latency_mean(fingerprint: Fingerprint) -> float:
        return fingerprint.profiles[LATENCY].overall().mean

    plain = latency_mean(old.merge(new))
    faded = latency_mean(old.decayed(0.1).merge(new))
    old_weight = old.profiles[LATENCY].count * 0.1
    new_weight = new.profiles[LATENCY].count
    expected = (old_weight * latency_mean(old) + new_weight * latency_mean(new)) / (
        old_weight + new_weight
    )
    assert faded == pytest.approx(expected, rel=1e-9)
    assert abs(faded - latency_mean(new)) < abs(plain - latency_mean(new)) / 5


def test_refine_is_decay_then_merge_with_the_new_window() -> None:
    metrics = hockey_system(buckets=BUCKETS, seed=3)
    first, second = split_at(metrics, 150 * DEFAULT_ALIGN_NS)
    existing = build(first)
    refined = refine_fingerprint(existing, second, decay=0.8, min_regime_count=1)
    assert_same_model(refined, existing.decayed(0.8).merge(build(second)))


def test_refine_keeps_hardware_unless_new_metadata_is_given() -> None:
    system = SystemProfile(cpu_cores=4, memory_bytes=2**34, architecture="x86_64", os="ubuntu")
    first, second = split_at(hockey_system(buckets=BUCKETS), 150 * DEFAULT_ALIGN_NS)
    existing = build_fingerprint(first, system=system, min_regime_count=1, scale=DEFAULT_LOAD_SCALE)
    assert refine_fingerprint(existing, second, min_regime_count=1).system == system
    upgraded = SystemProfile(cpu_cores=8, memory_bytes=2**35, architecture="x86_64", os="ubuntu")
    refined = refine_fingerprint(existing, second, system=upgraded, min_regime_count=1)
    assert refined.system == upgraded


def test_refine_with_an_empty_window_raises_insufficient_data() -> None:
    existing = build(hockey_system(buckets=BUCKETS))
    empty = {LOAD: SampleSeries(np.zeros(0, dtype=np.int64), np.zeros(0))}
    with pytest.raises(InsufficientData, match="no samples"):
        refine_fingerprint(existing, empty)


@pytest.mark.parametrize("factor", [0.0, -0.5, 1.5, float("nan")])
def test_decay_factor_outside_zero_to_one_is_refused(factor: float) -> None:
    with pytest.raises(ValueError, match="decay factor"):
        build(hockey_system(buckets=50)).decayed(factor)


def test_fingerprints_of_different_load_metrics_or_scales_do_not_merge() -> None:
    metrics = hockey_system(buckets=100)
    by_cpu = build(metrics)
    with pytest.raises(IncompatibleFingerprint, match="load metric"):
        by_cpu.merge(build_fingerprint(metrics, load_metric=MEMORY, min_regime_count=1))
    other_scale = build_fingerprint(metrics, scale=LoadScale(base=1.0), min_regime_count=1)
    with pytest.raises(IncompatibleFingerprint, match="load scales"):
        by_cpu.merge(other_scale)
