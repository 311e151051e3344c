"""Load regimes: fixed log-scale edges shared by the whole fleet."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.behaviour import DEFAULT_LOAD_SCALE, LoadScale, build_fingerprint

from .synthetic import hockey_system


def test_regime_i_covers_base_times_two_to_the_i_over_k_up_to_the_next_edge() -> None:
    scale = LoadScale(base=1.0, regimes_per_octave=2, regime_count=10)
    edges = [scale.lower_edge(i) for i in range(11)]
    assert edges[:5] == pytest.approx([1.0, 2**0.5, 2.0, 2**1.5, 4.0])
    lower = np.array(edges[:10])
    # Exactly at a lower edge is inside the regime, just below it is in the one before.
    assert scale.regime_of(lower).tolist() == list(range(10))
    assert scale.regime_of(np.nextafter(lower[1:], 0.0)).tolist() == list(range(9))


def test_idle_and_overload_fall_into_the_end_regimes() -> None:
    scale = LoadScale(base=1.0, regimes_per_octave=2, regime_count=10)
    loads = np.array([-5.0, 0.0, 0.5, 1e9])
    assert scale.regime_of(loads).tolist() == [0, 0, 0, 9]


def test_each_system_gets_regime_edges_that_follow_its_own_load() -> None:
    quiet = build_fingerprint(hockey_system(load_range=(0.01, 0.2), seed=1, buckets=600))
    busy = build_fingerprint(hockey_system(load_range=(100.0, 9500.0), seed=2, buckets=600))
    for fingerprint, (low, high) in ((quiet, (0.01, 0.2)), (busy, (100.0, 9500.0))):
        scale = fingerprint.scale
        # The observed range sits inside the scale, clear of the clamping end regimes.
        assert scale.lower_edge(0) < low
        assert scale.upper_edge(scale.regime_count - 1) > high
        regimes = fingerprint.load_profile.regimes
        top = regimes.get(scale.regime_count - 1)
        assert top is None or top.count / fingerprint.load_profile.count < 0.05
        # Regime 0 holds the idle end (the synthetic noise makes some loads zero or less).
        bottom = regimes.get(0)
        assert bottom is None or bottom.mean < scale.lower_edge(1)
        assert len(regimes) >= scale.regime_count // 2, "the range is spread over the regimes"
    assert quiet.scale.regime_count == busy.scale.regime_count


def test_a_steady_load_still_gets_a_scale_two_doublings_wide() -> None:
    scale = LoadScale.spanning(np.full(100, 40.0))
    assert scale.upper_edge(scale.regime_count - 1) / scale.lower_edge(0) == pytest.approx(4.0)
    assert scale.regime_of(np.array([40.0]))[0] in (9, 10)


def test_no_positive_load_falls_back_to_the_default_scale() -> None:
    assert LoadScale.spanning(np.zeros(10)) == DEFAULT_LOAD_SCALE


def test_the_default_scale_spans_idle_to_fully_busy_cpu_percent() -> None:
    scale = DEFAULT_LOAD_SCALE
    regimes = scale.regime_of(np.array([0.1, 1.0, 50.0, 100.0]))
    assert regimes[0] == 0
    assert regimes[-1] == scale.regime_count - 1
    assert len(set(regimes.tolist())) == 4


@pytest.mark.parametrize(
    ("base", "per_octave", "count"), [(0.0, 2, 10), (-1.0, 2, 10), (1.0, 0, 10), (1.0, 2, 0)]
)
def test_a_scale_without_a_positive_base_or_regimes_is_refused(
    base: float, per_octave: int, count: int
) -> None:
    with pytest.raises(ValueError, match="must be"):
        LoadScale(base=base, regimes_per_octave=per_octave, regime_count=count)
