"""Parameter schemas: validation names every bad parameter and says what to fix."""

from __future__ import annotations

import pytest

from cfgclone.adaptation import (
    POSTGRESQL,
    SIMULATED,
    InvalidConfiguration,
    InvalidSchema,
    ParameterSpec,
    ParameterType,
    Scaling,
    Schema,
    UnknownParameter,
    Violation,
    schema_for,
)


def violations_of(schema: Schema, content: dict[str, object]) -> dict[str, str]:
    with pytest.raises(InvalidConfiguration) as raised:
        schema.validate(content)
    return {violation.parameter: violation.description for violation in raised.value.violations}


def test_a_postgresql_configuration_as_people_write_it_is_valid() -> None:
    content: dict[str, object] = {
        "shared_buffers": "16GB",
        "effective_cache_size": "48 GB",
        "work_mem": 65536,
        "maintenance_work_mem": "2GB",
        "max_connections": 200.0,  # as a protobuf Struct carries it
        "max_worker_processes": "32",
        "random_page_cost": 1.1,
        "synchronous_commit": "off",
        "wal_level": "replica",
        "jit": "on",
        "checkpoint_timeout": "15min",
        "log_line_prefix": "%m [%p] ",
    }
    assert POSTGRESQL.validate(content) == content


def test_every_bad_parameter_is_reported_at_once() -> None:
    found = violations_of(
        POSTGRESQL,
        {
            "shared_buffers": "64kB",
            "work_mem": "16 XB",
            "max_connections": 2.5,
            "wal_level": "archive",
            "jit": "maybe",
            "random_page_cost": "cheap",
            "effective_io_concurrency": 5000,
        },
    )
    assert found == {
        "shared_buffers": "must be at least 128kB, not 64kB",
        "work_mem": (
            "must be a size such as 64MB (units: B, kB, MB, GB, TB): "
            "'XB' is not a size unit; use one of B, kB, MB, GB, TB"
        ),
        "max_connections": "must be a whole number, not 2.5",
        "wal_level": "must be one of minimal, replica, logical; not archive",
        "jit": "must be true or false (or on/off, yes/no, 1/0), not maybe",
        "random_page_cost": "must be a number, not cheap",
        "effective_io_concurrency": "must be at most 1000, not 5000",
    }


def test_the_error_message_names_each_parameter() -> None:
    with pytest.raises(InvalidConfiguration, match=r"^2 invalid parameters: ") as raised:
        POSTGRESQL.validate({"max_connections": 0, "wal_level": "archive"})
    assert "max_connections: must be at least 1, not 0" in str(raised.value)
    assert raised.value.violations[0] == Violation("max_connections", "must be at least 1, not 0")


def test_values_of_the_wrong_json_type_are_refused() -> None:
    found = violations_of(
        POSTGRESQL,
        {
            "shared_buffers": True,
            "wal_level": 3,
            "max_connections": None,
            "custom.list": [1, 2],
            "custom.object": {"a": 1},
            "random_page_cost": float("nan"),
        },
    )
    assert found["shared_buffers"].startswith("must be a size such as 64MB")
    assert found["wal_level"] == "must be one of minimal, replica, logical; not 3"
    assert found["max_connections"] == "has no value (null); give one or leave the parameter out"
    assert found["custom.list"] == "must be a single value, not a list"
    assert found["custom.object"].startswith("must be a single value, not an object")
    assert found["random_page_cost"] == "must be a finite number, not nan"


def test_a_yaml_on_for_an_on_off_enum_is_accepted() -> None:
    # YAML reads `synchronous_commit: on` as a boolean.
    assert POSTGRESQL.validate({"synchronous_commit": True}) == {"synchronous_commit": True}


def test_parameters_the_schema_does_not_declare_may_hold_any_single_value() -> None:
    content: dict[str, object] = {"log_min_duration_statement": "250ms", "autovacuum": True}
    assert POSTGRESQL.validate(content) == content


def test_a_self_contradicting_schema_is_refused_with_every_problem() -> None:
    with pytest.raises(InvalidSchema) as raised:
        Schema(
            "app",
            (
                ParameterSpec("mode", ParameterType.ENUM),
                ParameterSpec("threads", ParameterType.INTEGER, minimum=8, maximum=4),
                ParameterSpec("debug", ParameterType.BOOLEAN, scaling=Scaling.CORES),
                ParameterSpec("cache", ParameterType.BYTES, unit="GiB"),
                ParameterSpec("threads", ParameterType.INTEGER),
            ),
        )
    assert [str(violation) for violation in raised.value.violations] == [
        "mode: an enum parameter needs its allowed values",
        "threads: the minimum 8 is above the maximum 4",
        "debug: boolean parameters cannot scale with cores",
        "cache: unit: 'GiB' is not a size unit (did you mean GB?); use one of B, kB, MB, GB, TB",
        "threads: is declared more than once",
    ]
    assert str(raised.value).startswith("the schema of 'app' is invalid: ")


def test_schema_for_knows_postgresql_and_the_simulated_system() -> None:
    assert schema_for("postgresql") is POSTGRESQL
    assert schema_for("PostgreSQL") is POSTGRESQL
    assert schema_for("postgres") is POSTGRESQL
    assert schema_for("simulated") is SIMULATED


def test_built_in_schemas_declare_how_parameters_scale() -> None:
    def scaling(schema: Schema, key: str) -> Scaling:
        spec = schema.spec(key)
        assert spec is not None
        return spec.scaling

    memory = ["shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem"]
    cores = ["max_worker_processes", "max_parallel_workers", "max_parallel_workers_per_gather"]
    unscaled = ["max_connections", "random_page_cost", "commit_delay", "synchronous_commit"]
    assert {scaling(POSTGRESQL, key) for key in memory} == {Scaling.MEMORY}
    assert {scaling(POSTGRESQL, key) for key in cores} == {Scaling.CORES}
    assert scaling(POSTGRESQL, "effective_io_concurrency") is Scaling.DISK_THROUGHPUT
    assert {scaling(POSTGRESQL, key) for key in [*unscaled, "wal_level"]} == {Scaling.NONE}
    assert scaling(SIMULATED, "workers") is Scaling.CORES
    assert scaling(SIMULATED, "cache_mb") is Scaling.MEMORY


def test_a_configuration_s_own_declarations_override_the_built_in_ones() -> None:
    own = ParameterSpec("max_connections", ParameterType.INTEGER, minimum=1, maximum=500)
    extra = ParameterSpec("pool_size", ParameterType.INTEGER, scaling=Scaling.CORES)
    schema = schema_for("postgresql", [own, extra])
    assert schema.spec("max_connections") == own
    assert schema.spec("pool_size") == extra
    assert schema.spec("shared_buffers") == POSTGRESQL.spec("shared_buffers")
    assert violations_of(schema, {"max_connections": 1000}) == {
        "max_connections": "must be at most 500, not 1000"
    }


def test_a_kind_without_a_built_in_schema_gets_only_its_own_declarations() -> None:
    own = ParameterSpec("threads", ParameterType.INTEGER, scaling=Scaling.CORES)
    assert schema_for("nginx").parameters == ()
    assert schema_for("nginx", [own]).parameters == (own,)


def test_unknown_parameters_come_with_the_nearest_known_names() -> None:
    unknown = SIMULATED.unknown_parameters(
        ["cache_mbb", "workers", "work_mem", "tuned_flag"], also_known=["tuned_flag"]
    )
    assert unknown == [
        UnknownParameter("cache_mbb", ("cache_mb",)),
        UnknownParameter("work_mem", ("workers",)),
    ]
    # A kind without a schema knows only what its configuration already has.
    bare = Schema("custom-app")
    assert bare.unknown_parameters(["thread", "threads"], also_known=["threads"]) == [
        UnknownParameter("thread", ("threads",))
    ]
    assert bare.unknown_parameters([]) == []
