"""KPI-versus-load curves: the knee where latency starts to rise, slope and curvature."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgclone.behaviour import SampleSeries, build_fingerprint

from .synthetic import LATENCY, LOAD, MEMORY, NETWORK, hockey_system


@pytest.mark.parametrize("knee", [8.0, 25.0, 40.0, 60.0])
def test_the_knee_of_a_flat_then_rising_latency_is_recovered_within_ten_percent(
    knee: float,
) -> None:
    fingerprint = build_fingerprint(hockey_system(knee=knee, buckets=1_500, seed=int(knee)))
    found = fingerprint.curves[LATENCY].knee_load
    assert found is not None
    assert found == pytest.approx(knee, rel=0.10)


@settings(max_examples=8, deadline=None)
@given(
    knee=st.floats(10.0, 60.0),
    noise=st.floats(0.05, 1.0),
    rise=st.floats(0.1, 2.0),
    seed=st.integers(0, 2**16),
)
def test_the_knee_is_recovered_whatever_the_noise_and_steepness(
    knee: float, noise: float, rise: float, seed: int
) -> None:
    metrics = hockey_system(knee=knee, buckets=1_200, seed=seed, noise=noise)
    load_level = metrics[LOAD].values
    latency = metrics[LATENCY]
    # Rebuild latency with the drawn steepness on the same clock.
    rng = np.random.default_rng(seed)
    values = (
        5.0
        + rise * np.maximum(load_level - knee, 0.0)
        + rng.normal(0.0, noise, latency.values.size)
    )
    metrics[LATENCY] = SampleSeries(latency.ts_unix_ns, values)
    found = build_fingerprint(metrics).curves[LATENCY].knee_load
    assert found is not None
    assert found == pytest.approx(knee, rel=0.10)


def test_kpis_without_a_knee_report_none() -> None:
    fingerprint = build_fingerprint(hockey_system(buckets=1_000))
    curves = fingerprint.curves
    # Memory rises linearly from the start, network latency is noise, load is load.
    assert curves[MEMORY].knee_load is None
    assert curves[NETWORK].knee_load is None
    assert curves[LOAD].knee_load is None


def test_a_knee_above_every_observed_load_is_not_invented() -> None:
    metrics = hockey_system(knee=90.0, buckets=1_000, load_range=(2.0, 60.0))
    assert build_fingerprint(metrics).curves[LATENCY].knee_load is None


def test_slope_is_the_change_per_doubling_of_load() -> None:
    metrics = hockey_system(buckets=1_000)
    ts = metrics[LOAD].ts_unix_ns
    load = metrics[LOAD].values
    # A KPI that grows by exactly 3 per doubling of load, and one that falls.
    metrics["throughput.log"] = SampleSeries(ts + 1, 3.0 * np.log2(load))
    metrics["idle.log"] = SampleSeries(ts + 1, 100.0 - 2.0 * np.log2(load))
    curves = build_fingerprint(metrics).curves
    assert curves["throughput.log"].slope == pytest.approx(3.0, rel=0.02)
    assert curves["throughput.log"].curvature == pytest.approx(0.0, abs=0.05)
    assert curves["idle.log"].slope == pytest.approx(-2.0, rel=0.02)
    # Latency past a knee bends upwards.
    assert curves[LATENCY].slope > 0.0
    assert curves[LATENCY].curvature > 0.0
