"""AIP-134: UpdateSystem changes the fields its mask names; RegisterSystem again changes
only the fields it sets (the README's grpcurl example re-run with only cpu_cores)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import common_pb2
from tests.collector.conftest import Collector, unique_system


def _full(name: str) -> common_pb2.System:
    return common_pb2.System(
        name=name,
        hostname="db-01.internal",
        cpu_model="EPYC",
        cpu_cores=16,
        memory_bytes=64 * 2**30,
        disks=[common_pb2.Disk(device="nvme0n1", size_bytes=2**40, rotational=False)],
        os="linux",
        kernel="6.1",
        architecture="x86_64",
        labels={"role": "db", "zone": "a"},
    )


def _metadata(system: common_pb2.System) -> common_pb2.System:
    """The system without its output-only times."""
    copy = common_pb2.System()
    copy.CopyFrom(system)
    for field in ("create_time", "update_time", "last_sample_time"):
        copy.ClearField(field)  # type: ignore[arg-type]
    return copy


async def test_registering_again_with_only_cpu_cores_keeps_the_rest(collector: Collector) -> None:
    name = unique_system()
    first = await collector.stub.RegisterSystem(pb.RegisterSystemRequest(system=_full(name)))
    again = await collector.stub.RegisterSystem(
        pb.RegisterSystemRequest(system=common_pb2.System(name=name, cpu_cores=32))
    )
    expected = _metadata(first.system)
    expected.cpu_cores = 32
    assert _metadata(again.system) == expected
    stored = await collector.stub.GetSystem(pb.GetSystemRequest(name=name))
    assert _metadata(stored.system) == expected


async def test_update_system_changes_the_masked_fields_only(collector: Collector) -> None:
    name = unique_system()
    await collector.stub.RegisterSystem(pb.RegisterSystemRequest(system=_full(name)))

    # Labels in the mask are replaced, even by none; hostname, not in the mask, stays.
    reply = await collector.stub.UpdateSystem(
        pb.UpdateSystemRequest(
            system=common_pb2.System(name=name, hostname="ignored", memory_bytes=2**30),
            update_mask=field_mask_pb2.FieldMask(paths=["memory_bytes", "labels"]),
        )
    )
    assert reply.system.memory_bytes == 2**30
    assert dict(reply.system.labels) == {}
    assert reply.system.hostname == "db-01.internal"
    assert reply.system.cpu_cores == 16
    assert len(reply.system.disks) == 1

    # No mask: the fields the request sets.
    reply = await collector.stub.UpdateSystem(
        pb.UpdateSystemRequest(system=common_pb2.System(name=name, labels={"role": "web"}))
    )
    assert dict(reply.system.labels) == {"role": "web"}
    assert reply.system.memory_bytes == 2**30

    # "*": every field, so what the request leaves out is cleared.
    reply = await collector.stub.UpdateSystem(
        pb.UpdateSystemRequest(
            system=common_pb2.System(name=name, cpu_cores=4),
            update_mask=field_mask_pb2.FieldMask(paths=["*"]),
        )
    )
    assert _metadata(reply.system) == common_pb2.System(name=name, cpu_cores=4)


@pytest.mark.parametrize("path", ["name", "create_time", "labels.role", "nonsense"])
async def test_update_system_refuses_a_mask_naming_no_updatable_field(
    collector: Collector, path: str
) -> None:
    name = unique_system()
    await collector.stub.RegisterSystem(pb.RegisterSystemRequest(system=_full(name)))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await collector.stub.UpdateSystem(
            pb.UpdateSystemRequest(
                system=common_pb2.System(name=name, cpu_cores=1),
                update_mask=field_mask_pb2.FieldMask(paths=["cpu_cores", path]),
            )
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "update_mask" in (refused.value.details() or "")
    stored = await collector.stub.GetSystem(pb.GetSystemRequest(name=name))
    assert stored.system.cpu_cores == 16  # nothing changed


async def test_update_system_of_an_unregistered_system_is_not_found(collector: Collector) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await collector.stub.UpdateSystem(
            pb.UpdateSystemRequest(
                system=common_pb2.System(name=unique_system(), cpu_cores=1),
                update_mask=field_mask_pb2.FieldMask(paths=["cpu_cores"]),
            )
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
