"""The change model: deltas between configurations and KPI directions."""

from __future__ import annotations

import math

import pytest

from cfgclone.predictor.change import (
    DEFAULT_DIRECTIONS,
    Configuration,
    ConfigurationDelta,
    DeltaKind,
    KpiDirection,
    UnknownKpiDirection,
    numeric_log_ratio,
)


def test_numeric_change_is_a_log_ratio_whatever_the_starting_size() -> None:
    small = numeric_log_ratio(1024, 2048)
    large = numeric_log_ratio(8 * 1024**3, 16 * 1024**3)

    assert small == pytest.approx(math.log(2))
    assert large == pytest.approx(small)
    assert numeric_log_ratio(200, 100) == pytest.approx(-math.log(2))


def test_zero_and_negative_values_use_the_symmetric_log_rule() -> None:
    assert numeric_log_ratio(0, 100) == pytest.approx(math.log(101))
    assert numeric_log_ratio(100, 0) == pytest.approx(-math.log(101))
    assert numeric_log_ratio(-5, 5) == pytest.approx(2 * math.log(6))
    assert numeric_log_ratio(-5, -5) == 0.0
    with pytest.raises(ValueError, match="finite"):
        numeric_log_ratio(1.0, math.inf)


def test_delta_lists_only_what_changed_with_the_encoding_of_each_kind() -> None:
    before: Configuration = {
        "shared_buffers": 1024,
        "random_page_cost": 4.0,
        "max_connections": 100,
        "fsync": True,
        "wal_level": "replica",
        "jit": False,
        "listen": "*",
        "old_param": 3,
    }
    after: Configuration = {
        "shared_buffers": 4096,
        "random_page_cost": 4,  # 4.0 and 4 are the same value
        "max_connections": 100,
        "fsync": False,
        "wal_level": "logical",
        "jit": False,
        "listen": 5432,  # the type changed: categorical
        "new_param": "on",
    }

    delta = ConfigurationDelta.between(before, after)

    kinds = {d.parameter: d.kind for d in delta.parameters}
    assert kinds == {
        "fsync": DeltaKind.BOOLEAN,
        "listen": DeltaKind.CATEGORICAL,
        "new_param": DeltaKind.ADDED,
        "old_param": DeltaKind.REMOVED,
        "shared_buffers": DeltaKind.NUMERIC,
        "wal_level": DeltaKind.CATEGORICAL,
    }
    assert delta.features() == {
        "fsync=false": 1.0,
        "listen=5432": 1.0,
        "new_param:set": 1.0,
        "old_param:unset": 1.0,
        "shared_buffers:log_ratio": pytest.approx(math.log(4)),
        "wal_level=logical": 1.0,
    }
    assert delta.changed == frozenset(kinds)


def test_booleans_are_not_numbers() -> None:
    delta = ConfigurationDelta.between({"fsync": True}, {"fsync": False})

    (change,) = delta.parameters
    assert change.kind is DeltaKind.BOOLEAN
    assert change.log_ratio is None


def test_identical_configurations_have_an_empty_delta() -> None:
    config: Configuration = {"a": 1, "b": "x", "c": True}

    delta = ConfigurationDelta.between(config, dict(config))

    assert not delta
    assert delta.features() == {}


@pytest.mark.parametrize(
    "kpi",
    [
        "cpu_percent",
        "node_cpu_seconds",
        "memory_used_bytes",
        "mem_rss",
        "http_latency_p99_ms",
        "response_time_seconds",
        "error_rate",
        "http_errors",
        "gc_time",
    ],
)
def test_up_is_bad_for_resource_latency_and_error_kpis(kpi: str) -> None:
    assert DEFAULT_DIRECTIONS.direction(kpi) is KpiDirection.LOWER_IS_BETTER


@pytest.mark.parametrize(
    "kpi", ["throughput", "pgbench_tps", "requests_per_second", "disk_iops", "cache_hit_ratio"]
)
def test_down_is_bad_for_throughput_kpis(kpi: str) -> None:
    assert DEFAULT_DIRECTIONS.direction(kpi) is KpiDirection.HIGHER_IS_BETTER


def test_an_override_wins_and_an_unknown_kpi_is_refused_rather_than_guessed() -> None:
    table = DEFAULT_DIRECTIONS.with_overrides({"cpu_idle": KpiDirection.HIGHER_IS_BETTER})

    assert table.direction("cpu_idle") is KpiDirection.HIGHER_IS_BETTER
    assert table.direction("cpu_user") is KpiDirection.LOWER_IS_BETTER
    with pytest.raises(UnknownKpiDirection, match="bus_stops"):
        table.direction("bus_stops")


def test_worsening_is_positive_in_the_bad_direction() -> None:
    assert KpiDirection.LOWER_IS_BETTER.worsening(0.2) == 0.2
    assert KpiDirection.HIGHER_IS_BETTER.worsening(0.2) == -0.2
    assert KpiDirection.HIGHER_IS_BETTER.worsening_bounds(-0.3, 0.1) == (-0.1, 0.3)
    assert KpiDirection.HIGHER_IS_BETTER.is_bad(-0.01)
    assert not KpiDirection.LOWER_IS_BETTER.is_bad(-0.01)
