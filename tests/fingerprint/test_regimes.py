"""Load regimes: fixed log-scale edges shared by the whole fleet."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.fingerprint import DEFAULT_LOAD_SCALE, LoadScale, build_fingerprint

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


def test_two_systems_with_different_loads_share_the_same_regime_edges() -> None:
    quiet = build_fingerprint(hockey_system(load_range=(1.0, 20.0), seed=1, buckets=600))
    busy = build_fingerprint(hockey_system(load_range=(10.0, 95.0), seed=2, buckets=600))
    shared = set(quiet.load_profile.regimes) & set(busy.load_profile.regimes)
    assert shared, "the load ranges overlap, so some regimes must be shared"
    assert quiet.scale == busy.scale == DEFAULT_LOAD_SCALE
    for regime in shared:
        quiet_loads = quiet.load_profile.regimes[regime]
        busy_loads = busy.load_profile.regimes[regime]
        low, high = DEFAULT_LOAD_SCALE.lower_edge(regime), DEFAULT_LOAD_SCALE.upper_edge(regime)
        # Each system's loads in a shared regime lie within the same fixed edges.
        for stats in (quiet_loads, busy_loads):
            assert low * 0.99 <= stats.mean < high * 1.01


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
