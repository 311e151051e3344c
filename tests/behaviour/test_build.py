"""Building a fingerprint from sample arrays: alignment, per-regime statistics, errors."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgclone.behaviour import (
    DEFAULT_ALIGN_NS,
    DEFAULT_LOAD_SCALE,
    InsufficientData,
    InvalidSamples,
    SampleSeries,
    SystemProfile,
    build_fingerprint,
    embed,
)
from cfgclone.behaviour.codec import fingerprint_to_proto

from .synthetic import LATENCY, LOAD, MEMORY, NETWORK, SECOND_NS, hockey_system, shuffled


def expected_by_regime(metrics: dict[str, SampleSeries], kpi: str) -> dict[int, np.ndarray]:
    """A slow, obvious reading of the alignment rule: a KPI sample takes the mean load of
    the load samples in its 10 s bucket, and that load's regime."""
    loads: dict[int, list[float]] = defaultdict(list)
    for ts, value in zip(
        metrics[LOAD].ts_unix_ns.tolist(), metrics[LOAD].values.tolist(), strict=True
    ):
        loads[ts // DEFAULT_ALIGN_NS].append(value)
    regime_of_bucket = {
        bucket: int(DEFAULT_LOAD_SCALE.regime_of(np.array([sum(v) / len(v)]))[0])
        for bucket, v in loads.items()
    }
    by_regime: dict[int, list[float]] = defaultdict(list)
    series = metrics[kpi]
    for ts, value in zip(series.ts_unix_ns.tolist(), series.values.tolist(), strict=True):
        bucket = ts // DEFAULT_ALIGN_NS
        if bucket in regime_of_bucket:
            by_regime[regime_of_bucket[bucket]].append(value)
    return {regime: np.array(values) for regime, values in by_regime.items()}


def test_per_regime_count_mean_variance_and_quantiles_match_numpy() -> None:
    metrics = hockey_system(buckets=300, seed=3)
    fingerprint = build_fingerprint(metrics, scale=DEFAULT_LOAD_SCALE)
    for kpi in (LATENCY, MEMORY, NETWORK, LOAD):
        expected = expected_by_regime(metrics, kpi)
        profile = fingerprint.profiles[kpi]
        assert set(profile.regimes) == set(expected)
        for regime, data in expected.items():
            stats = profile.regimes[regime]
            assert stats.count == data.size
            assert stats.mean == pytest.approx(float(data.mean()), rel=1e-12, abs=1e-12)
            assert stats.variance == pytest.approx(float(data.var()), rel=1e-9, abs=1e-12)
            for q, estimate in zip(
                (0.5, 0.95, 0.99), (stats.p50, stats.p95, stats.p99), strict=True
            ):
                exact = float(np.quantile(data, q, method="inverted_cdf"))
                assert abs(estimate - exact) <= 0.01 * abs(exact) * (1 + 1e-9)


def test_kpi_samples_are_aligned_to_the_load_of_their_time_bucket() -> None:
    # Load is 10 in bucket 0 and 80 in bucket 1; KPI samples come between load samples.
    bucket = DEFAULT_ALIGN_NS
    load = SampleSeries(
        np.array([0, 5 * SECOND_NS, bucket, bucket + 5 * SECOND_NS]),
        np.array([10.0, 10.0, 80.0, 80.0]),
    )
    kpi = SampleSeries(
        np.array([3 * SECOND_NS, bucket + 7 * SECOND_NS, 5 * bucket]),
        np.array([1.0, 2.0, 99.0]),  # the last one's bucket has no load sample
    )
    fingerprint = build_fingerprint(
        {LOAD: load, LATENCY: kpi}, min_regime_count=1, scale=DEFAULT_LOAD_SCALE
    )
    low, high = DEFAULT_LOAD_SCALE.regime_of(np.array([10.0, 80.0])).tolist()
    regimes = fingerprint.profiles[LATENCY].regimes
    assert {regime: stats.mean for regime, stats in regimes.items()} == {low: 1.0, high: 2.0}
    # The sample with no load in its bucket is not used.
    assert fingerprint.samples == 4 + 2
    assert fingerprint.window_end_ns == bucket + 7 * SECOND_NS


def test_sample_order_does_not_matter() -> None:
    metrics = hockey_system(buckets=200, seed=4)
    ordered = fingerprint_to_proto(build_fingerprint(metrics))
    mixed = fingerprint_to_proto(build_fingerprint(shuffled(metrics, seed=5)))
    for a, b in zip(ordered.kpis, mixed.kpis, strict=True):
        assert [r.count for r in a.regimes] == [r.count for r in b.regimes]
        assert [r.sketch for r in a.regimes] == [r.sketch for r in b.regimes]
        assert [r.mean for r in a.regimes] == pytest.approx([r.mean for r in b.regimes])


def test_hardware_and_os_metadata_are_kept() -> None:
    system = SystemProfile(
        cpu_cores=16, memory_bytes=64 * 2**30, architecture="aarch64", os="debian 12"
    )
    fingerprint = build_fingerprint(hockey_system(buckets=100), system=system)
    assert fingerprint.system == system


def test_a_single_metric_system_has_its_load_metric_as_only_kpi() -> None:
    load = hockey_system(buckets=200)[LOAD]
    fingerprint = build_fingerprint({"requests.rate": load})
    assert fingerprint.load_metric == "requests.rate"
    assert fingerprint.kpis == ("requests.rate",)
    assert fingerprint.correlations == {}
    assert fingerprint.profiles["requests.rate"].count == len(load)
    assert any("single-metric" in note for note in fingerprint.quality().notes)
    assert np.isfinite(embed(fingerprint).vector).all()


def test_without_a_named_load_metric_cpu_utilization_is_the_load() -> None:
    fingerprint = build_fingerprint(hockey_system(buckets=100))
    assert fingerprint.load_metric == LOAD


def test_a_named_load_metric_is_used() -> None:
    fingerprint = build_fingerprint(hockey_system(buckets=100), load_metric=MEMORY)
    assert fingerprint.load_metric == MEMORY
    assert set(fingerprint.kpis) == {LOAD, LATENCY, MEMORY, NETWORK}


def test_no_load_metric_among_several_metrics_says_which_to_name() -> None:
    metrics = hockey_system(buckets=100)
    del metrics[LOAD]
    with pytest.raises(InsufficientData, match=r"'system\.cpu\.utilization'") as raised:
        build_fingerprint(metrics)
    assert LATENCY in str(raised.value)


def test_a_named_load_metric_without_samples_raises() -> None:
    with pytest.raises(InsufficientData, match=r"no samples of the load metric 'disk\.busy'"):
        build_fingerprint(hockey_system(buckets=100), load_metric="disk.busy")


@pytest.mark.parametrize(
    "metrics",
    [
        {},
        {LOAD: SampleSeries(np.zeros(0, dtype=np.int64), np.zeros(0))},
        {
            LOAD: SampleSeries(np.zeros(0, dtype=np.int64), np.zeros(0)),
            LATENCY: SampleSeries(np.zeros(0, dtype=np.int64), np.zeros(0)),
        },
    ],
    ids=["no metrics", "empty load", "all empty"],
)
def test_an_empty_window_raises_insufficient_data(metrics: dict[str, SampleSeries]) -> None:
    with pytest.raises(InsufficientData, match="no samples"):
        build_fingerprint(metrics)


def test_a_window_too_short_for_any_regime_says_how_many_samples_it_has() -> None:
    metrics = hockey_system(buckets=2)  # 20 load samples, at most 2 load levels
    with pytest.raises(
        InsufficientData, match=r"no load regime has 30 samples .*has \d+: widen the window"
    ):
        build_fingerprint(metrics)
    assert build_fingerprint(metrics, min_regime_count=5).samples > 0


def test_samples_with_mismatched_lengths_or_non_finite_values_are_refused() -> None:
    with pytest.raises(InvalidSamples, match="3 timestamps but 2 values"):
        SampleSeries(np.arange(3), np.zeros(2))
    with pytest.raises(InvalidSamples, match="finite"):
        SampleSeries(np.arange(2), np.array([1.0, math.nan]))


def test_constant_and_zero_kpis_produce_no_nan_anywhere() -> None:
    metrics = hockey_system(buckets=200)
    ts = metrics[LATENCY].ts_unix_ns
    metrics["errors.rate"] = SampleSeries(ts, np.zeros(ts.size))
    metrics["queue.depth"] = SampleSeries(ts, np.full(ts.size, 3.0))
    fingerprint = build_fingerprint(metrics)
    assert fingerprint.correlation("errors.rate", LATENCY) == 0.0
    assert fingerprint.correlation("queue.depth", "errors.rate") == 0.0
    assert fingerprint.curves["queue.depth"].knee_load is None
    message = fingerprint_to_proto(fingerprint)
    numbers = [message.quality.load_min, message.quality.load_max, *message.embedding]
    for kpi in message.kpis:
        numbers += [kpi.curve.slope, kpi.curve.curvature]
        for r in kpi.regimes:
            numbers += [r.count, r.mean, r.variance, r.p50, r.p95, r.p99, r.load_low, r.load_high]
    numbers += [c.coefficient for c in message.correlations]
    assert np.isfinite(numbers).all()


def test_quality_reports_samples_load_range_and_thin_regimes() -> None:
    metrics = hockey_system(buckets=400, load_range=(4.0, 64.0))
    fingerprint = build_fingerprint(metrics)
    quality = fingerprint.quality(min_regime_count=30)
    assert quality.samples == sum(len(series) for series in metrics.values())
    assert quality.load_min == pytest.approx(float(metrics[LOAD].values.min()))
    assert quality.load_max == pytest.approx(float(metrics[LOAD].values.max()))
    assert quality.sparse_regimes == ()
    # Asking for more samples per regime than a regime has marks it sparse.
    thinnest = min(fingerprint.regime_support(r) for r in fingerprint.covered_regimes())
    strict = fingerprint.quality(min_regime_count=thinnest + 1)
    assert strict.sparse_regimes
    assert all(fingerprint.regime_support(r) < thinnest + 1 for r in strict.sparse_regimes)
    assert any("fewer than" in note for note in strict.notes)


def test_a_gap_in_the_load_range_is_a_sparse_regime() -> None:
    metrics = hockey_system(buckets=300, load_range=(2.0, 4.0), seed=1)
    busy = hockey_system(buckets=300, load_range=(40.0, 80.0), seed=2, start_bucket=300)
    joined = {
        name: SampleSeries(
            np.concatenate([metrics[name].ts_unix_ns, busy[name].ts_unix_ns]),
            np.concatenate([metrics[name].values, busy[name].values]),
        )
        for name in metrics
    }
    fingerprint = build_fingerprint(joined)
    gap = DEFAULT_LOAD_SCALE.regime_of(np.array([10.0, 20.0])).tolist()
    assert set(gap) <= set(fingerprint.quality().sparse_regimes)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def arbitrary_series(draw: st.DrawFn) -> SampleSeries:
    size = draw(st.integers(1, 40))
    ts = draw(st.lists(st.integers(0, 60 * SECOND_NS), min_size=size, max_size=size))
    values = draw(st.lists(finite, min_size=size, max_size=size))
    return SampleSeries(np.array(ts, dtype=np.int64), np.array(values))


@settings(max_examples=40, deadline=None)
@given(load=arbitrary_series(), kpis=st.lists(arbitrary_series(), max_size=3))
def test_any_finite_input_gives_a_fingerprint_without_nan(
    load: SampleSeries, kpis: list[SampleSeries]
) -> None:
    metrics = {LOAD: load} | {f"kpi.{i}": series for i, series in enumerate(kpis)}
    # With load samples and a minimum of one sample per regime, a fingerprint always builds.
    fingerprint = build_fingerprint(metrics, min_regime_count=1)
    message = fingerprint_to_proto(fingerprint)
    numbers = [*message.embedding, message.quality.load_min, message.quality.load_max]
    for kpi in message.kpis:
        numbers += [kpi.curve.slope, kpi.curve.curvature]
        numbers += [v for r in kpi.regimes for v in (r.mean, r.variance, r.p50, r.p99)]
    numbers += [c.coefficient for c in message.correlations]
    assert np.isfinite(numbers).all()
    assert all(-1.0 <= c.coefficient <= 1.0 for c in message.correlations)
