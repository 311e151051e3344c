"""Conversion between the adaptation engine and the cfgclone.v1 messages."""

from __future__ import annotations

import pytest
from google.protobuf.struct_pb2 import Struct

from cfgclone.adaptation import (
    POSTGRESQL,
    HostResources,
    InvalidSchema,
    ParameterSpec,
    ParameterType,
    Scaling,
    adapt,
    content_from_struct,
    content_to_struct,
    host_from_system,
    schema_from_proto,
    schema_of,
    schema_to_proto,
    spec_from_proto,
    spec_to_proto,
)
from cfgclone.v1 import common_pb2

GiB = 1 << 30
MB = 1 << 20


def test_every_built_in_spec_survives_a_round_trip_through_the_message() -> None:
    messages = schema_to_proto(POSTGRESQL)
    assert schema_from_proto("postgresql", messages) == POSTGRESQL
    shared_buffers = messages[0]
    assert shared_buffers.type == common_pb2.PARAMETER_TYPE_BYTES
    assert shared_buffers.scaling == common_pb2.SCALING_RULE_MEMORY
    assert (shared_buffers.unit, shared_buffers.min) == ("8kB", 16)


def test_unset_bounds_stay_unset() -> None:
    spec = ParameterSpec("random_page_cost", ParameterType.FLOAT)
    message = spec_to_proto(spec)
    assert not message.HasField("min")
    assert not message.HasField("max")
    assert spec_from_proto(message) == spec


def test_a_declared_schema_reports_every_bad_parameter() -> None:
    messages = [
        common_pb2.ParameterSpec(key="threads"),
        common_pb2.ParameterSpec(
            key="mode", type=common_pb2.PARAMETER_TYPE_ENUM, scaling=common_pb2.SCALING_RULE_CORES
        ),
    ]
    with pytest.raises(InvalidSchema) as raised:
        schema_from_proto("app", messages)
    descriptions = [str(violation) for violation in raised.value.violations]
    assert descriptions[0].startswith("threads: type is unspecified or unknown; use one of ")
    assert descriptions[1:] == [
        "mode: an enum parameter needs its allowed values",
        "mode: enum parameters cannot scale with cores",
    ]


def test_a_configuration_s_own_schema_wins_over_the_built_in_one() -> None:
    configuration = common_pb2.Configuration(
        kind="postgresql",
        schema=[
            common_pb2.ParameterSpec(
                key="max_connections", type=common_pb2.PARAMETER_TYPE_INTEGER, max=100
            )
        ],
    )
    schema = schema_of(configuration)
    assert schema.spec("max_connections") == ParameterSpec(
        "max_connections", ParameterType.INTEGER, maximum=100
    )
    assert schema.spec("work_mem") == POSTGRESQL.spec("work_mem")


def test_struct_content_comes_back_with_whole_numbers_as_integers() -> None:
    struct = content_to_struct({"max_connections": 200, "random_page_cost": 1.1, "jit": True})
    assert isinstance(struct, Struct)
    content = content_from_struct(struct)
    assert content == {"max_connections": 200, "random_page_cost": 1.1, "jit": True}
    assert isinstance(content["max_connections"], int)


def test_a_system_s_hardware_becomes_host_resources() -> None:
    system = common_pb2.System(
        name="systems/db-01",
        cpu_cores=16,
        memory_bytes=64 * GiB,
        architecture="x86_64",
        os="debian 12",
        disks=[
            common_pb2.Disk(device="sda", size_bytes=100 * GiB, rotational=True),
            common_pb2.Disk(device="nvme0n1", size_bytes=2000 * GiB, rotational=False),
        ],
    )
    host = host_from_system(system)
    assert host == HostResources(
        memory_bytes=64 * GiB,
        cores=16,
        disk_throughput=2000 * MB,
        disk_throughput_estimated=True,
        architecture="x86_64",
        os="debian 12",
    )
    assert host.os_families == {"debian", "linux"}


def test_a_label_states_the_measured_disk_throughput() -> None:
    system = common_pb2.System(
        name="systems/db-02",
        labels={"disk_throughput": "800MB"},
        disks=[common_pb2.Disk(device="sda", size_bytes=GiB, rotational=True)],
    )
    host = host_from_system(system)
    assert (host.disk_throughput, host.disk_throughput_estimated) == (800 * MB, False)
    with pytest.raises(ValueError, match="label disk_throughput='fast' of systems/db-03"):
        host_from_system(
            common_pb2.System(name="systems/db-03", labels={"disk_throughput": "fast"})
        )


def test_unreported_hardware_is_unknown_and_adaptation_says_so() -> None:
    host = host_from_system(common_pb2.System(name="systems/new"))
    assert host == HostResources()
    source = HostResources(memory_bytes=64 * GiB)
    adapted = adapt({"shared_buffers": "16GB"}, POSTGRESQL, source, host)
    assert adapted.content == {"shared_buffers": "16GB"}
    assert adapted.explanations[0].why == "target memory is unknown: kept as is"


def test_scaling_unset_in_a_message_means_copied_unchanged() -> None:
    message = common_pb2.ParameterSpec(key="x", type=common_pb2.PARAMETER_TYPE_INTEGER)
    assert spec_from_proto(message).scaling is Scaling.NONE
