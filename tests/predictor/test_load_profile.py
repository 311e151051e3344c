"""The target's recorded load over its busy period, which a shadow reproduces."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.collector.reads import MetricSamples
from cfgclone.predictor.load_profile import busy_rate, load_profile
from cfgclone.predictor.shadow import WorkloadShape, workload_at


def _samples(values: np.ndarray) -> MetricSamples:
    return MetricSamples(np.arange(values.size, dtype=np.int64), values.astype(np.float64))


def test_the_busy_rate_is_the_level_of_the_busy_hours_not_the_daily_mean() -> None:
    # Eighteen quiet hours at 20/s and six busy ones at 200/s, minute by minute.
    day = np.concatenate([np.full(18 * 60, 20.0), np.full(6 * 60, 200.0)])
    rate = busy_rate(day)
    assert rate == pytest.approx(200.0)
    assert float(np.mean(day)) < 70.0


def test_a_single_burst_does_not_make_the_busy_rate() -> None:
    values = np.full(1000, 50.0)
    values[500] = 5000.0
    assert busy_rate(values) == pytest.approx(50.0)


def test_too_few_or_missing_samples_give_no_rate() -> None:
    assert busy_rate(np.array([1.0, 2.0, np.nan])) is None


def test_the_profile_holds_the_offered_load_series_only() -> None:
    profile = load_profile(
        {
            "postgresql.commits": _samples(np.full(100, 42.0)),
            "system.cpu.utilization": _samples(np.full(100, 0.5)),
            "http.server.request.rate": _samples(np.zeros(100)),
        }
    )
    assert profile == {"postgresql.commits": 42.0}


def test_a_recorded_rate_gets_enough_rate_limited_clients_to_reach_it() -> None:
    default = WorkloadShape(clients=4, threads=2)
    light = workload_at({"postgresql.commits": 50.0}, default)
    heavy = workload_at({"postgresql.commits": 2000.0}, default)
    assert (light.rate_tps, light.clients, light.threads) == (50.0, 4, 2)
    assert (heavy.rate_tps, heavy.clients) == (2000.0, 40)
    assert workload_at({}, default) == default
