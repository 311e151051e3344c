"""Fingerprints in PostgreSQL: a versioned protobuf message plus its embedding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cfgclone.behaviour.model import SystemProfile
from cfgclone.behaviour.regimes import LoadScale
from cfgclone.collector import reads
from cfgclone.common.errors import FailedPrecondition, NotFound
from cfgclone.common.queries import load_queries
from cfgclone.common.requests import Page
from cfgclone.common.store import Connection
from cfgclone.v1 import common_pb2

_QUERIES = load_queries("cfgclone.fingerprint", "fingerprints.sql")


LOAD_METRIC_LABEL = "cfgclone.dev/load-metric"
"""The system label that names the load metric a system's fingerprints bin by."""


@dataclass(frozen=True)
class SystemRecord:
    """A registered system: its internal key, id and hardware."""

    key: int
    system_id: str
    profile: SystemProfile
    load_metric: str | None = None
    """The load metric the system's ``cfgclone.dev/load-metric`` label names, if any."""

    @property
    def name(self) -> str:
        return f"systems/{self.system_id}"


@dataclass(frozen=True)
class ConfigurationRecord:
    """A configuration version of a system and when it was applied."""

    version: int
    applied_at: datetime | None


@dataclass(frozen=True)
class StoredFingerprint:
    """A fingerprint row: the message, and the end of the samples merged into it."""

    id: int
    system_id: str
    configuration_version: int | None
    window_start: datetime
    window_end: datetime
    message: common_pb2.Fingerprint

    @property
    def name(self) -> str:
        return f"systems/{self.system_id}/fingerprints/{self.id}"


async def system(conn: Connection, system_id: str) -> SystemRecord:
    """The registered system, read through the collector's read interface; NOT_FOUND otherwise."""
    row = await reads.system(conn, system_id)
    return SystemRecord(
        row.key, row.system_id, row.profile, row.labels.get(LOAD_METRIC_LABEL) or None
    )


async def configuration(
    conn: Connection, system: SystemRecord, version: int | None
) -> ConfigurationRecord | None:
    """A named configuration version (NOT_FOUND when absent) or the current one (may be None)."""
    if version is None:
        cursor = await conn.execute(_QUERIES["current_configuration"], {"system": system.key})
        row = await cursor.fetchone()
        return ConfigurationRecord(row[0], row[1]) if row else None
    cursor = await conn.execute(
        _QUERIES["configuration_version"], {"system": system.key, "version": version}
    )
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(
            f"{system.name}/configurations/{version} does not exist",
            reason="CONFIGURATION_NOT_FOUND",
            metadata={"configuration": f"{system.name}/configurations/{version}"},
        )
    return ConfigurationRecord(row[0], row[1])


def _stored(row: tuple[Any, ...]) -> StoredFingerprint:
    fid, system_id, version, window_start, window_end, model, created, updated = row
    message = common_pb2.Fingerprint.FromString(bytes(model))
    stored = StoredFingerprint(fid, system_id, version, window_start, window_end, message)
    message.name = stored.name
    message.create_time.FromDatetime(created)
    message.update_time.FromDatetime(updated)
    return stored


async def insert(
    conn: Connection,
    system: SystemRecord,
    version: int | None,
    window_start: datetime,
    window_end: datetime,
    message: common_pb2.Fingerprint,
) -> StoredFingerprint:
    """Store a new fingerprint; the message gets its name and times."""
    cursor = await conn.execute(
        _QUERIES["insert_fingerprint"],
        {
            "system": system.key,
            "version": version,
            "model_version": message.model_version,
            "load_metric": message.load_metric,
            "window_start": window_start,
            "window_end": window_end,
            "model": message.SerializeToString(deterministic=True),
            "embedding": list(message.embedding),
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    fid, created, updated = row
    return _stored((fid, system.system_id, version, window_start, window_end,
                    message.SerializeToString(), created, updated))  # fmt: skip


async def update(
    conn: Connection,
    previous: StoredFingerprint,
    window_end: datetime,
    message: common_pb2.Fingerprint,
) -> StoredFingerprint:
    """Replace a fingerprint by its refinement, unless another refinement got there first."""
    message.ClearField("name")
    message.ClearField("create_time")
    message.ClearField("update_time")
    cursor = await conn.execute(
        _QUERIES["update_fingerprint"],
        {
            "id": previous.id,
            "previous_end": previous.window_end,
            "window_end": window_end,
            "model": message.SerializeToString(deterministic=True),
            "embedding": list(message.embedding),
        },
    )
    row = await cursor.fetchone()
    if row is None:
        raise FailedPrecondition(
            f"{previous.name} was refined by another call meanwhile; read it again",
            reason="CONCURRENT_REFINEMENT",
            metadata={"fingerprint": previous.name},
        )
    created, updated = row
    return _stored((previous.id, previous.system_id, previous.configuration_version,
                    previous.window_start, window_end, message.SerializeToString(),
                    created, updated))  # fmt: skip


async def get(conn: Connection, system_id: str, fingerprint_id: str) -> StoredFingerprint:
    """One fingerprint by id, or the system's newest for ``-``; NOT_FOUND otherwise."""
    name = f"systems/{system_id}/fingerprints/{fingerprint_id}"
    if fingerprint_id == "-":
        cursor = await conn.execute(_QUERIES["newest_fingerprint"], {"system_id": system_id})
    elif fingerprint_id.isascii() and fingerprint_id.isdigit() and len(fingerprint_id) <= 18:
        cursor = await conn.execute(
            _QUERIES["get_fingerprint"], {"system_id": system_id, "id": int(fingerprint_id)}
        )
    else:
        raise NotFound(f"{name} does not exist", reason="FINGERPRINT_NOT_FOUND")
    row = await cursor.fetchone()
    if row is None:
        what = (
            f"systems/{system_id} has no fingerprint"
            if fingerprint_id == "-"
            else f"{name} does not exist"
        )
        if fingerprint_id == "-":
            found = await progress(conn, system_id)
            if found is not None:
                what += f" yet: {found[0]}"
        raise NotFound(
            f"{what}; it builds itself once there are enough samples, or build one with "
            "BuildFingerprint (cfgclone fingerprint build)",
            reason="FINGERPRINT_NOT_FOUND",
            metadata={"fingerprint": name},
        )
    return _stored(row)


async def page(
    conn: Connection, system_id: str | None, page: Page
) -> tuple[list[StoredFingerprint], bool]:
    """One page of fingerprints (of one system or all), and whether more follow."""
    cursor = await conn.execute(
        _QUERIES["list_fingerprints"],
        {"system_id": system_id, "limit": page.size + 1, "offset": page.offset},
    )
    rows = await cursor.fetchall()
    return [_stored(row) for row in rows[: page.size]], len(rows) > page.size


async def closing_time(
    conn: Connection, system: SystemRecord, version: int | None
) -> datetime | None:
    """When ``version`` stopped running (the next applied version's apply time), or None."""
    if version is None:
        return None
    cursor = await conn.execute(
        _QUERIES["closing_time"], {"system": system.key, "version": version}
    )
    row = await cursor.fetchone()
    return row[0] if row else None


async def newest_on(
    conn: Connection, system: SystemRecord, load_metric: str
) -> common_pb2.Fingerprint | None:
    """The system's newest fingerprint on ``load_metric``, if it has one."""
    cursor = await conn.execute(
        _QUERIES["newest_on_load_metric"], {"system": system.key, "load_metric": load_metric}
    )
    row = await cursor.fetchone()
    return common_pb2.Fingerprint.FromString(bytes(row[0])) if row else None


async def kept_load_scale(
    conn: Connection, system: SystemRecord, load_metric: str
) -> LoadScale | None:
    """The system's kept scale on ``load_metric``, if a fingerprint on it was stored."""
    cursor = await conn.execute(
        _QUERIES["load_scale"], {"system": system.key, "load_metric": load_metric}
    )
    row = await cursor.fetchone()
    return LoadScale(float(row[0]), float(row[1]), int(row[2])) if row else None


async def load_scale(
    conn: Connection, system: SystemRecord, load_metric: str, proposed: LoadScale
) -> LoadScale:
    """The system's scale on ``load_metric``: the one kept before, else ``proposed``,
    kept from now on. The first of concurrent callers wins; the others get its scale."""
    values = {"system": system.key, "load_metric": load_metric}
    await conn.execute(
        _QUERIES["keep_load_scale"],
        {
            **values,
            "base": proposed.base,
            "regimes_per_octave": proposed.regimes_per_octave,
            "regime_count": proposed.regime_count,
        },
    )
    kept = await kept_load_scale(conn, system, load_metric)
    assert kept is not None  # kept just now, or before
    return kept


async def without_fingerprint(conn: Connection) -> list[str]:
    """Systems with samples and no fingerprint of their current configuration."""
    cursor = await conn.execute(_QUERIES["systems_without_fingerprint"])
    return [str(row[0]) for row in await cursor.fetchall()]


async def record_progress(
    conn: Connection, system: SystemRecord, version: int | None, message: str | None
) -> None:
    """Remember why a system's fingerprint could not be built yet; None forgets it."""
    if message is None:
        await conn.execute(_QUERIES["clear_progress"], {"system": system.key})
    else:
        await conn.execute(
            _QUERIES["record_progress"],
            {"system": system.key, "version": version, "message": message},
        )


async def progress(conn: Connection, system_id: str) -> tuple[str, datetime] | None:
    """What the last attempt to build a system's first fingerprint lacked, and when."""
    cursor = await conn.execute(_QUERIES["progress"], {"system_id": system_id})
    row = await cursor.fetchone()
    return (str(row[0]), row[1]) if row else None


async def stale(conn: Connection) -> list[tuple[str, int]]:
    """``(system_id, fingerprint_id)`` of newest fingerprints with newer samples to merge."""
    cursor = await conn.execute(_QUERIES["stale_fingerprints"])
    return [(str(sid), int(fid)) for sid, fid in await cursor.fetchall()]
