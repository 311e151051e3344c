"""The quantile sketch: answers within its relative accuracy, merges exactly, decays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgclone.behaviour import QuantileSketch

QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0)

magnitudes = st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False)
values = st.one_of(st.just(0.0), magnitudes, magnitudes.map(lambda x: -x))
batches = st.lists(values, min_size=1, max_size=300)


def assert_within_relative_error(sketch: QuantileSketch, data: np.ndarray) -> None:
    alpha = sketch.relative_accuracy
    for q in QUANTILES:
        exact = float(np.quantile(data, q, method="inverted_cdf"))
        estimate = sketch.quantile(q)
        assert abs(estimate - exact) <= alpha * abs(exact) * (1 + 1e-9), (q, estimate, exact)


@settings(max_examples=60, deadline=None)
@given(batches, st.sampled_from([0.01, 0.05]))
def test_quantiles_are_within_relative_accuracy_of_numpy(batch: list[float], alpha: float) -> None:
    data = np.array(batch)
    assert_within_relative_error(QuantileSketch.from_values(data, alpha), data)


def test_quantiles_of_heavy_tailed_mixed_sign_data_are_within_one_percent() -> None:
    rng = np.random.default_rng(7)
    data = np.concatenate(
        [rng.lognormal(0.0, 3.0, 50_000), -rng.lognormal(2.0, 1.0, 5_000), np.zeros(500)]
    )
    sketch = QuantileSketch.from_values(data)
    assert sketch.count == data.size
    assert_within_relative_error(sketch, data)


@settings(max_examples=40, deadline=None)
@given(batches, batches, batches)
def test_merge_is_the_sketch_of_the_union_and_associative(
    a: list[float], b: list[float], c: list[float]
) -> None:
    sa, sb, sc = (QuantileSketch.from_values(np.array(x)) for x in (a, b, c))
    union = QuantileSketch.from_values(np.array(a + b + c))
    assert sa.merge(sb).merge(sc) == union
    assert sa.merge(sb.merge(sc)) == union
    assert sc.merge(sa).merge(sb) == union


def test_decay_shrinks_weight_but_keeps_quantiles() -> None:
    data = np.random.default_rng(1).normal(100.0, 10.0, 1_000)
    sketch = QuantileSketch.from_values(data)
    faded = sketch.decayed(0.25)
    assert faded.count == pytest.approx(250.0)
    assert faded.quantiles((0.5, 0.99)) == pytest.approx(sketch.quantiles((0.5, 0.99)), rel=0.02)


def test_decayed_old_values_weigh_less_than_new_ones_in_a_merge() -> None:
    old = QuantileSketch.from_values(np.full(100, 10.0))
    new = QuantileSketch.from_values(np.full(60, 1000.0))
    # Undecayed, the old values are the majority and hold the median.
    assert old.merge(new).quantile(0.5) == pytest.approx(10.0, rel=0.01)
    # Decayed to a weight of 10, the new values hold it.
    assert old.decayed(0.1).merge(new).quantile(0.5) == pytest.approx(1000.0, rel=0.01)


def test_merging_sketches_of_different_accuracy_is_refused() -> None:
    with pytest.raises(ValueError, match="relative accuracy"):
        QuantileSketch.from_values([1.0], 0.01).merge(QuantileSketch.from_values([1.0], 0.02))


def test_quantile_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        QuantileSketch.from_values([1.0, 2.0]).quantile(1.5)


def test_an_empty_sketch_answers_zero_not_nan() -> None:
    assert QuantileSketch(0.01).quantiles((0.5, 0.99)) == (0.0, 0.0)


def test_sketch_arrays_cannot_be_changed_in_place() -> None:
    sketch = QuantileSketch.from_values([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="read-only"):
        sketch.positive_counts[0] = 5.0


@settings(max_examples=60, deadline=None)
@given(batches, st.sampled_from([0.01, 0.05]))
def test_quantiles_rise_with_q_and_stay_within_the_values_sketched(
    batch: list[float], alpha: float
) -> None:
    data = np.array(batch)
    sketch = QuantileSketch.from_values(data, alpha)
    answers = sketch.quantiles(QUANTILES)
    assert list(answers) == sorted(answers)
    assert all(data.min() <= answer <= data.max() for answer in answers)
    assert (sketch.minimum, sketch.maximum) == (data.min(), data.max())


def test_quantiles_never_pass_the_largest_value_sketched() -> None:
    # 1.001 falls in the bucket (1, 1.0202], whose representative value is 1.0101.
    busy = QuantileSketch.from_values(np.concatenate([np.full(990, 1.001), np.full(10, 0.97)]))
    assert QuantileSketch(
        busy.relative_accuracy, busy.positive_offset, busy.positive_counts
    ).quantile(0.99) == pytest.approx(
        1.0101, abs=1e-4
    )  # what it answered before it kept the extremes
    p50, p95, p99 = busy.quantiles((0.5, 0.95, 0.99))
    assert p50 == p95 == p99 == 1.001
    assert busy.quantile(0.0) == 0.97


def test_merge_and_decay_keep_the_extremes() -> None:
    low = QuantileSketch.from_values([0.5, 2.0])
    high = QuantileSketch.from_values([3.0, 7.0])
    merged = low.merge(high.decayed(0.1))
    assert (merged.minimum, merged.maximum) == (0.5, 7.0)
    assert merged.quantile(1.0) == 7.0
    assert merged.quantile(0.0) == 0.5
    # A sketch whose extremes are unknown (stored before they were kept) is not clamped.
    unknown = QuantileSketch(
        low.relative_accuracy, low.positive_offset, low.positive_counts, zero_count=0.0
    )
    assert unknown.quantile(1.0) == pytest.approx(2.0, rel=0.01)
    assert unknown.merge(high).maximum == 7.0
    with pytest.raises(ValueError, match="minimum and maximum"):
        QuantileSketch(0.01, minimum=float("nan"))


def test_a_constant_has_every_quantile_equal_to_it_never_below_its_mean() -> None:
    # A bucket's representative value may lie below the value itself: p95 below the mean.
    assert QuantileSketch.from_values(np.full(100, 0.123)).quantiles((0.5, 0.95, 0.99)) == (
        0.123,
        0.123,
        0.123,
    )
