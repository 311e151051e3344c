"""Adapting a configuration to other hardware: scaled, clamped, rounded and explained."""

from __future__ import annotations

import pytest

from cfgclone.adaptation import (
    POSTGRESQL,
    SIMULATED,
    Adaptation,
    HostResources,
    InvalidConfiguration,
    ParameterExplanation,
    ParameterSpec,
    ParameterType,
    Scaling,
    Schema,
    adapt,
    candidates,
)

GiB = 1 << 30
MB = 1 << 20

BIG = HostResources(memory_bytes=64 * GiB, cores=32, disk_throughput=2000 * MB)
SMALL = HostResources(memory_bytes=16 * GiB, cores=4, disk_throughput=500 * MB)


def explanation(adaptation: Adaptation, key: str) -> ParameterExplanation:
    (found,) = [item for item in adaptation.explanations if item.key == key]
    return found


def test_shared_buffers_of_16gb_on_64_gib_becomes_4gb_on_16_gib() -> None:
    adapted = adapt({"shared_buffers": "16GB"}, POSTGRESQL, BIG, SMALL)
    assert adapted.content == {"shared_buffers": "4GB"}
    assert adapted.explanations == (
        ParameterExplanation(
            "shared_buffers", "16GB", "4GB", "memory 16 GiB / 64 GiB = 0.25", requires_restart=True
        ),
    )


def test_each_parameter_follows_its_own_resource() -> None:
    adapted = adapt(
        {
            "work_mem": "64MB",
            "max_worker_processes": 32,
            "effective_io_concurrency": 200,
            "max_connections": 200,
            "wal_level": "replica",
        },
        POSTGRESQL,
        BIG,
        SMALL,
    )
    assert adapted.content == {
        "work_mem": "16MB",
        "max_worker_processes": 4,
        "effective_io_concurrency": 50,
        "max_connections": 200,
        "wal_level": "replica",
    }
    assert explanation(adapted, "max_worker_processes").why == "cores 4 / 32 = 0.125"
    assert (
        explanation(adapted, "effective_io_concurrency").why
        == "disk throughput 500 MB/s / 2000 MB/s = 0.25"
    )
    assert (
        explanation(adapted, "max_connections").why
        == "does not scale with hardware: copied unchanged"
    )


def test_the_unit_of_the_original_is_kept_when_it_rounds_closely() -> None:
    three_quarters = HostResources(memory_bytes=48 * GiB)
    adapted = adapt(
        {"shared_buffers": "16GB", "work_mem": "10MB", "effective_cache_size": "1GB"},
        POSTGRESQL,
        HostResources(memory_bytes=64 * GiB),
        three_quarters,
    )
    # 7.5MB is not close to a whole MB: it is written in kB; 0.75GB becomes 768MB.
    assert adapted.content == {
        "shared_buffers": "12GB",
        "work_mem": "7680kB",
        "effective_cache_size": "768MB",
    }


def test_bare_numbers_stay_bare_numbers_of_the_parameter_s_unit() -> None:
    # shared_buffers counts 8kB blocks: 16384 blocks are 128MB.
    adapted = adapt(
        {"shared_buffers": 16384, "effective_cache_size": "65536"}, POSTGRESQL, BIG, SMALL
    )
    assert adapted.content == {"shared_buffers": 4096, "effective_cache_size": "16384"}


def test_scaled_values_are_clamped_to_the_bounds_and_the_explanation_says_so() -> None:
    adapted = adapt(
        {"max_parallel_workers_per_gather": 2, "work_mem": "128kB"}, POSTGRESQL, BIG, SMALL
    )
    assert adapted.content == {"max_parallel_workers_per_gather": 0, "work_mem": "64kB"}
    assert explanation(adapted, "work_mem").why == (
        "memory 16 GiB / 64 GiB = 0.25; raised to the minimum 64kB"
    )
    huge = adapt({"workers": 512}, SIMULATED, SMALL, BIG)
    assert huge.content == {"workers": 1024}
    assert explanation(huge, "workers").why == "cores 32 / 4 = 8; lowered to the maximum 1024"


def test_a_parameter_is_kept_when_the_hardware_fact_it_needs_is_unknown() -> None:
    no_memory = HostResources(cores=4)
    adapted = adapt(
        {"shared_buffers": "16GB", "max_worker_processes": 32}, POSTGRESQL, BIG, no_memory
    )
    assert adapted.content == {"shared_buffers": "16GB", "max_worker_processes": 4}
    assert explanation(adapted, "shared_buffers").why == "target memory is unknown: kept as is"
    unknown_both = adapt({"effective_io_concurrency": 200}, POSTGRESQL, HostResources(), SMALL)
    assert explanation(unknown_both, "effective_io_concurrency").why == (
        "source disk throughput is unknown: kept as is"
    )


def test_special_negative_values_are_not_scaled() -> None:
    adapted = adapt({"autovacuum_work_mem": -1}, POSTGRESQL, BIG, SMALL)
    assert adapted.content == {"autovacuum_work_mem": -1}
    assert "special value" in explanation(adapted, "autovacuum_work_mem").why


def test_parameters_outside_the_schema_are_copied_and_said_to_be() -> None:
    adapted = adapt({"log_line_prefix": "%m "}, POSTGRESQL, BIG, SMALL)
    assert adapted.content == {"log_line_prefix": "%m "}
    assert explanation(adapted, "log_line_prefix").why == (
        "not declared in the postgresql schema: copied unchanged"
    )
    assert not adapted.changes


def test_an_invalid_configuration_is_refused_before_anything_is_scaled() -> None:
    with pytest.raises(InvalidConfiguration, match="shared_buffers: must be at least 128kB"):
        adapt({"shared_buffers": "64kB"}, POSTGRESQL, BIG, SMALL)


def test_durations_floats_and_unbounded_integers_scale_too() -> None:
    schema = Schema(
        "app",
        (
            ParameterSpec("flush_interval", ParameterType.DURATION, "ms", scaling=Scaling.CORES),
            ParameterSpec("cache_ratio", ParameterType.FLOAT, scaling=Scaling.MEMORY),
            ParameterSpec("threads", ParameterType.INTEGER, scaling=Scaling.CORES),
        ),
    )
    adapted = adapt({"flush_interval": "2s", "cache_ratio": 0.3, "threads": 3}, schema, SMALL, BIG)
    assert adapted.content == {"flush_interval": "16s", "cache_ratio": 1.2, "threads": 24}


def test_adapted_changes_tell_whether_a_restart_is_needed() -> None:
    restart = adapt({"shared_buffers": "16GB", "work_mem": "64MB"}, POSTGRESQL, BIG, SMALL)
    reload_only = adapt({"work_mem": "64MB"}, POSTGRESQL, BIG, SMALL)
    assert restart.requires_restart
    assert not reload_only.requires_restart
    assert reload_only.explain() == "work_mem: 64MB -> 16MB (memory 16 GiB / 64 GiB = 0.25)"


def test_candidates_offer_proportional_conservative_and_as_is() -> None:
    content = {"shared_buffers": "16GB", "max_worker_processes": 32}
    found = candidates(content, POSTGRESQL, BIG, SMALL)
    assert [candidate.name for candidate in found] == ["proportional", "conservative", "as-is"]
    proportional, conservative, as_is = (dict(c.adaptation.content) for c in found)
    assert proportional == {"shared_buffers": "4GB", "max_worker_processes": 4}
    # Half the change on a log scale for cores; memory on a smaller host is never
    # left above its proportional share.
    assert conservative == {"shared_buffers": "4GB", "max_worker_processes": 11}
    assert as_is == content


def test_a_candidate_that_overcommits_a_smaller_host_s_memory_carries_a_warning() -> None:
    found = {c.name: c for c in candidates({"shared_buffers": "16GB"}, POSTGRESQL, BIG, SMALL)}
    assert set(found) == {"proportional", "as-is"}
    assert found["proportional"].warnings == ()
    assert found["as-is"].warnings == (
        "shared_buffers 16GB is more than its proportional share 4GB "
        "of the target's 16 GiB of memory",
    )


def test_a_conservative_candidate_grows_less_on_a_bigger_host() -> None:
    found = candidates({"cache_mb": 1024, "workers": 4}, SIMULATED, SMALL, BIG)
    contents = {candidate.name: dict(candidate.adaptation.content) for candidate in found}
    assert contents == {
        "proportional": {"cache_mb": 4096, "workers": 32},
        "conservative": {"cache_mb": 2048, "workers": 11},
        "as-is": {"cache_mb": 1024, "workers": 4},
    }


def test_identical_hardware_gives_a_single_candidate() -> None:
    found = candidates({"shared_buffers": "16GB", "workers": 8}, POSTGRESQL, BIG, BIG)
    assert [candidate.name for candidate in found] == ["proportional"]
    assert found[0].adaptation.content == {"shared_buffers": "16GB", "workers": 8}
