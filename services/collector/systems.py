"""Systems: registration, look-up and listing, between protobuf and the systems table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import field_mask_pb2
from psycopg.types.json import Jsonb

from cfgclone.common.errors import InvalidArgument, NotFound, PermissionDenied
from cfgclone.common.limits import MAX_LABELS
from cfgclone.common.message_checks import quote
from cfgclone.common.queries import load_queries
from cfgclone.common.requests import Page, system_id_from_name
from cfgclone.common.store import Store
from cfgclone.v1 import common_pb2

_QUERIES = load_queries("cfgclone.collector", "systems.sql")

STEERING_LABEL_PREFIX = "cfgclone.dev/"
"""Labels under this prefix steer the appliers (the PostgreSQL applier's connection
string, the host a command applier is given): only operators may set them, and a
registration by the system's own agent keeps the ones an operator set."""


def _check_steering_labels(system: common_pb2.System, by_operator: bool) -> None:
    if by_operator:
        return
    for key in sorted(system.labels):
        if key.startswith(STEERING_LABEL_PREFIX):
            raise PermissionDenied(
                f"system.labels: {key[:80]!r} steers how changes are applied; labels under "
                f"{STEERING_LABEL_PREFIX} may be set only by an operator",
                reason="OPERATOR_LABEL",
                metadata={"label": key[:80]},
            )


def _check_metadata(system: common_pb2.System) -> None:
    if system.cpu_cores < 0:
        raise InvalidArgument.for_field("system.cpu_cores", "must not be negative")
    if system.memory_bytes < 0:
        raise InvalidArgument.for_field("system.memory_bytes", "must not be negative")
    for index, disk in enumerate(system.disks):
        if disk.size_bytes < 0:
            raise InvalidArgument.for_field(
                f"system.disks[{index}].size_bytes", "must not be negative"
            )
    if len(system.labels) > MAX_LABELS:
        raise InvalidArgument.for_field("system.labels", f"at most {MAX_LABELS} labels")
    for key in system.labels:
        if not key or len(key) > 63:
            raise InvalidArgument.for_field(
                "system.labels", f"label keys are 1-63 characters (got {quote(key)})"
            )


def _to_message(row: tuple[Any, ...]) -> common_pb2.System:
    (system_id, hostname, cpu_model, cpu_cores, memory_bytes, disks, os_name, kernel,
     architecture, labels, created_at, updated_at, last_sample) = row  # fmt: skip
    system = common_pb2.System(
        name=f"systems/{system_id}",
        hostname=hostname,
        cpu_model=cpu_model,
        cpu_cores=cpu_cores,
        memory_bytes=memory_bytes,
        disks=[common_pb2.Disk(**disk) for disk in disks],
        os=os_name,
        kernel=kernel,
        architecture=architecture,
        labels=labels,
    )
    system.create_time.FromDatetime(created_at)
    system.update_time.FromDatetime(updated_at)
    if isinstance(last_sample, datetime):
        system.last_sample_time.FromDatetime(last_sample)
    return system


UPDATABLE_FIELDS = (
    "hostname",
    "cpu_model",
    "cpu_cores",
    "memory_bytes",
    "disks",
    "os",
    "kernel",
    "architecture",
    "labels",
)
"""Fields of a system that RegisterSystem and UpdateSystem set; the rest are output only."""


def _params(
    system_id: str, system: common_pb2.System, *, by_operator: bool = True
) -> dict[str, Any]:
    return {
        "system_id": system_id,
        "hostname": system.hostname,
        "cpu_model": system.cpu_model,
        "cpu_cores": system.cpu_cores,
        "memory_bytes": system.memory_bytes,
        "disks": Jsonb(
            [
                {"device": d.device, "size_bytes": d.size_bytes, "rotational": d.rotational}
                for d in system.disks
            ]
        ),
        "os": system.os,
        "kernel": system.kernel,
        "architecture": system.architecture,
        "labels": Jsonb(dict(system.labels)),
        "keep_steering": not by_operator,
        "steering_prefix": STEERING_LABEL_PREFIX,
    }


async def register_system(
    store: Store, system: common_pb2.System, *, by_operator: bool = True
) -> common_pb2.System:
    """Create the system, or update a registered one with the fields ``system`` sets.

    Without ``by_operator`` (the system's own agent registering it) a label under
    :data:`STEERING_LABEL_PREFIX` is PERMISSION_DENIED, and the stored ones are kept.
    """
    system_id = system_id_from_name(system.name, "system.name")
    _check_metadata(system)
    _check_steering_labels(system, by_operator)
    params = _params(system_id, system, by_operator=by_operator)
    async with store.connection() as conn:
        cursor = await conn.execute(_QUERIES["upsert_system"], params)
        row = await cursor.fetchone()
    assert row is not None
    return _to_message(row)


def _mask_paths(system: common_pb2.System, mask: field_mask_pb2.FieldMask) -> list[str]:
    """The fields to update: the mask's, ``*`` for all, none given for those set."""
    if not mask.paths:
        return [f.name for f, _ in system.ListFields() if f.name in UPDATABLE_FIELDS]
    if list(mask.paths) == ["*"]:
        return list(UPDATABLE_FIELDS)
    for path in mask.paths:
        if path not in UPDATABLE_FIELDS:
            raise InvalidArgument.for_field(
                "update_mask",
                f"{path!r} cannot be updated; the fields are {', '.join(UPDATABLE_FIELDS)} or *",
            )
    return list(mask.paths)


async def update_system(
    store: Store,
    system: common_pb2.System,
    mask: field_mask_pb2.FieldMask,
    *,
    by_operator: bool = True,
) -> common_pb2.System:
    """Update the fields of a registered system named by ``mask`` (AIP-134).

    Without ``by_operator`` steering labels are refused and the stored ones kept, as
    in :func:`register_system`.
    """
    system_id = system_id_from_name(system.name, "system.name")
    paths = _mask_paths(system, mask)
    _check_metadata(system)
    _check_steering_labels(system, by_operator)
    async with store.connection() as conn, conn.transaction():
        cursor = await conn.execute(_QUERIES["lock_system"], {"system_id": system_id})
        row = await cursor.fetchone()
        if row is None:
            raise _not_registered(system.name)
        updated = _to_message(row)
        steering = {k: v for k, v in updated.labels.items() if k.startswith(STEERING_LABEL_PREFIX)}
        for path in paths:
            updated.ClearField(path)  # type: ignore[arg-type]
        field_mask_pb2.FieldMask(paths=paths).MergeMessage(
            system, updated, replace_message_field=True, replace_repeated_field=True
        )
        if not by_operator:
            updated.labels.update(steering)
        cursor = await conn.execute(_QUERIES["update_system"], _params(system_id, updated))
        row = await cursor.fetchone()
    assert row is not None
    return _to_message(row)


def _not_registered(name: str) -> NotFound:
    return NotFound(
        f"{name} is not registered; register it with RegisterSystem first",
        reason="SYSTEM_NOT_FOUND",
        metadata={"system": name},
    )


async def get_system(store: Store, name: str) -> common_pb2.System:
    """The system called ``name``; NOT_FOUND when it was never registered."""
    system_id = system_id_from_name(name)
    async with store.connection() as conn:
        cursor = await conn.execute(_QUERIES["get_system"], {"system_id": system_id})
        row = await cursor.fetchone()
    if row is None:
        raise _not_registered(name)
    return _to_message(row)


async def list_systems(
    store: Store, page: Page, labels: dict[str, str]
) -> tuple[list[common_pb2.System], str]:
    """One page of systems whose labels include ``labels``, and the next page's token."""
    async with store.connection() as conn:
        cursor = await conn.execute(
            _QUERIES["list_systems"],
            {"labels": Jsonb(labels), "limit": page.size + 1, "offset": page.offset},
        )
        rows = await cursor.fetchall()
    systems = [_to_message(row) for row in rows[: page.size]]
    return systems, page.next_token(len(systems), has_more=len(rows) > page.size)
