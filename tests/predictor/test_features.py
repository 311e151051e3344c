"""Features of a change that carry over from one machine to another."""

from __future__ import annotations

import math

import pytest

from cfgclone.adaptation import schema_for
from cfgclone.predictor.features import Resources, change_features

GIB = 1 << 30


def test_parameters_are_also_relative_to_the_resources_their_schema_ties_them_to() -> None:
    before = {"workers": 8, "cache_mb": 4096, "debug_logging": False}
    after = {"workers": 16, "cache_mb": 4096, "debug_logging": True}

    small = change_features(before, after, schema_for("simulated"), Resources(8, 16 * GIB))
    large = change_features(before, after, schema_for("simulated"), Resources(32, 64 * GIB))

    assert small["hardware:log_cores"] == pytest.approx(math.log(8))
    assert small["workers:per_core:before"] == pytest.approx(math.log(1.0))
    assert small["workers:per_core:after"] == pytest.approx(math.log(2.0))
    assert large["workers:per_core:after"] == pytest.approx(math.log(0.5))
    assert small["cache_mb:per_gib:before"] == pytest.approx(
        large["cache_mb:per_gib:before"] + math.log(4)
    )
    # The absolute level is the same on both; only the relative features tell them apart.
    assert small["workers:level"] == large["workers:level"]


def test_the_headroom_is_the_load_level_its_peak_and_the_cpu_utilisation() -> None:
    busy = Resources(8, 16 * GIB, load_level=300.0, load_peak=600.0, utilization=0.8)
    unknown = Resources(8, 16 * GIB, load_level=300.0)

    known = change_features({"workers": 8}, {"workers": 4}, schema_for("simulated"), busy)
    bare = change_features({"workers": 8}, {"workers": 4}, schema_for("simulated"), unknown)

    assert known["load:log_level"] == pytest.approx(math.log1p(300.0))
    assert known["load:log_peak_ratio"] == pytest.approx(math.log(2.0))
    assert known["load:cpu_utilization"] == pytest.approx(0.8)
    assert "load:log_peak_ratio" not in bare
    assert "load:cpu_utilization" not in bare
