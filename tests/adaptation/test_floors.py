"""Scaling never goes below what the source's own data shows a parameter needs."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.adaptation import (
    POSTGRESQL,
    SIMULATED,
    Floor,
    HostResources,
    ObservedDemand,
    ParameterSpec,
    ParameterType,
    adapt,
    candidates,
    observed_demand,
)

GiB = 1 << 30
MiB = 1 << 20
SOURCE = HostResources(memory_bytes=64 * GiB, cores=32)
TARGET = HostResources(memory_bytes=8 * GiB, cores=4)
WORKING_SET = ObservedDemand(
    working_set_bytes=1100 * MiB,
    evidence={"working_set": "the source's working set (cache.working_set, p95) 1100 MiB"},
)


def test_a_cache_scaled_with_memory_does_not_undercut_the_observed_working_set() -> None:
    # 1350 MB on 64 GiB would become 169 MB on 8 GiB; the source reads 1100 MiB repeatedly.
    blind = adapt({"cache_mb": 1350}, SIMULATED, SOURCE, TARGET)
    assert blind.content == {"cache_mb": 169}
    adapted = adapt({"cache_mb": 1350}, SIMULATED, SOURCE, TARGET, demand=WORKING_SET)
    assert adapted.content == {"cache_mb": 1100}  # MB counts 2**20 bytes, as PostgreSQL does
    (why,) = [e.why for e in adapted.explanations if e.key == "cache_mb"]
    assert "scaling gave 169" in why
    assert "working set (cache.working_set, p95) 1100 MiB" in why
    assert "raised to 1100" in why


def test_every_candidate_respects_the_floor_and_none_exceeds_the_source_value() -> None:
    found = candidates({"cache_mb": 1350}, SIMULATED, SOURCE, TARGET, WORKING_SET)
    values = [c.adaptation.content["cache_mb"] for c in found]
    assert all(1100 <= value <= 1350 for value in values), values


def test_a_floor_never_raises_a_value_above_the_sources_own() -> None:
    huge = ObservedDemand(working_set_bytes=10 * GiB)
    adapted = adapt({"cache_mb": 1350}, SIMULATED, SOURCE, TARGET, demand=huge)
    assert adapted.content == {"cache_mb": 1350}


def test_shared_buffers_in_8kb_blocks_follow_the_working_set_in_bytes() -> None:
    adapted = adapt({"shared_buffers": "16GB"}, POSTGRESQL, SOURCE, TARGET, demand=WORKING_SET)
    assert adapted.content == {"shared_buffers": "2GB"}  # 16 GB / 8, above 1100 MiB
    tight = ObservedDemand(working_set_bytes=3 * GiB)
    raised = adapt({"shared_buffers": "16GB"}, POSTGRESQL, SOURCE, TARGET, demand=tight)
    assert raised.content == {"shared_buffers": "3GB"}


def test_workers_do_not_drop_below_the_requests_the_source_has_in_flight() -> None:
    busy = ObservedDemand(concurrency=11.2)
    adapted = adapt({"workers": 64}, SIMULATED, SOURCE, TARGET, demand=busy)
    assert adapted.content == {"workers": 12}  # cores say 8; the load needs 12
    light = ObservedDemand(concurrency=3.0)
    assert adapt({"workers": 64}, SIMULATED, SOURCE, TARGET, demand=light).content == {"workers": 8}


def test_a_floor_on_a_text_parameter_is_a_schema_problem() -> None:
    spec = ParameterSpec("mode", ParameterType.STRING, floor=Floor.WORKING_SET)
    assert spec.problems() == ["string parameters cannot have a working_set floor"]


def test_the_demand_is_read_from_the_sources_busy_period() -> None:
    minutes = np.arange(0, 600 * 60 * 10**9, 60 * 10**9, dtype=np.int64)
    rate = np.where(np.arange(minutes.size) % 10 == 0, 500.0, 100.0)  # busy one minute in ten
    # 20 ms a request when quiet, queueing up to 60 ms when busy.
    duration = np.where(rate > 100.0, 0.06, 0.02)
    working_set = np.linspace(500, 1000, minutes.size) * MiB
    source = {
        "http.server.request.rate": (minutes.tolist(), rate.tolist()),
        "http.server.request.duration": (minutes.tolist(), duration.tolist()),
        "cache.working_set": (minutes.tolist(), working_set.tolist()),
    }
    demand = observed_demand(source)
    # 500/s x 20 ms: ten requests worked on at once; the queueing is not a need.
    assert demand.concurrency == pytest.approx(10.0)
    assert demand.working_set_bytes == pytest.approx(975 * MiB, rel=0.01)
    assert "the source's busy load (http.server.request.rate, p95) 500/s" in demand.describe(
        Floor.CONCURRENCY
    )
    # A target with a recorded load of its own needs workers for that load.
    quieter = {"http.server.request.rate": (minutes.tolist(), (rate / 4).tolist())}
    at_target = observed_demand(source, quieter)
    assert at_target.concurrency == pytest.approx(2.5)
    assert "the target's busy load" in at_target.describe(Floor.CONCURRENCY)


def test_no_data_means_no_floor() -> None:
    demand = observed_demand({})
    assert demand == ObservedDemand(None, None, {})
    assert adapt({"cache_mb": 1350}, SIMULATED, SOURCE, TARGET, demand=demand).content == {
        "cache_mb": 169
    }
