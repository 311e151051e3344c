"""The predictor's storage: configurations, policies, changes, rollbacks, training examples.

Every function takes an open connection, so the caller decides what one transaction
covers; SQL lives in ``sql/predictor.sql``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cfgclone import vocabulary
from cfgclone.common.errors import FailedPrecondition, NotFound, system_not_found
from cfgclone.common.queries import load_queries
from cfgclone.common.store import Connection
from cfgclone.predictor.codec import Content
from cfgclone.predictor.states import ChangeState
from cfgclone.v1 import common_pb2

Q = load_queries("cfgclone.predictor", "predictor.sql")


@dataclass(frozen=True)
class SystemRow:
    key: int
    system_id: str
    hostname: str
    labels: Mapping[str, str]
    flagged_reason: str | None
    cpu_cores: int = 0
    memory_bytes: int = 0

    @property
    def name(self) -> str:
        return f"systems/{self.system_id}"


@dataclass(frozen=True)
class StoredConfiguration:
    system_id: str
    version: int
    kind: str
    content: Content
    schema: Sequence[Mapping[str, Any]]
    content_hash: str
    author: str
    source: int
    parent: str
    created_at: datetime
    applied_at: datetime | None

    @property
    def name(self) -> str:
        return f"systems/{self.system_id}/configurations/{self.version}"


@dataclass(frozen=True)
class ChangeRow:
    id: int
    system_id: str
    system_key: int
    state: int
    from_version: int | None
    to_version: int
    dry_run: bool
    mode: int
    policy: str
    prediction: bytes | None
    verification: bytes | None
    requested_by: str
    state_reason: str
    override: Mapping[str, str] | None
    created_at: datetime
    updated_at: datetime
    request_id: str | None
    applied_at: datetime | None
    kind: str

    @property
    def name(self) -> str:
        return f"systems/{self.system_id}/changes/{self.id}"


async def system(conn: Connection, system_id: str) -> SystemRow:
    """The registered system; NOT_FOUND otherwise."""
    cursor = await conn.execute(Q["system_row"], {"system_id": system_id})
    row = await cursor.fetchone()
    if row is None:
        raise system_not_found(system_id)
    return SystemRow(
        int(row[0]),
        str(row[1]),
        str(row[2]),
        dict(row[3] or {}),
        row[4],
        int(row[5] or 0),
        int(row[6] or 0),
    )


async def system_hardware(conn: Connection, system: SystemRow) -> dict[str, float]:
    """The system's recorded cores and memory; a field the collector does not know is left out."""
    cursor = await conn.execute(Q["system_hardware"], {"system": system.key})
    row = await cursor.fetchone()
    if row is None:
        return {}
    found = {"cpu_cores": float(row[0] or 0), "memory_bytes": float(row[1] or 0)}
    return {name: value for name, value in found.items() if value > 0}


async def flag_system(conn: Connection, key: int, reason: str) -> None:
    await conn.execute(Q["flag_system"], {"system": key, "reason": reason})


def _configuration(system_id: str, row: Sequence[Any]) -> StoredConfiguration:
    parent = f"systems/{system_id}/configurations/{row[7]}" if row[7] is not None else ""
    return StoredConfiguration(
        system_id=system_id,
        version=int(row[0]),
        kind=str(row[1]),
        content=dict(row[2]),
        schema=list(row[3] or []),
        content_hash=str(row[4]),
        author=str(row[5]),
        source=int(row[6]),
        parent=parent,
        created_at=row[8],
        applied_at=row[9],
    )


@dataclass(frozen=True)
class NewConfiguration:
    kind: str
    content: Content
    schema: Sequence[Mapping[str, Any]]
    content_hash: str
    author: str
    source: int
    parent_version: int | None = None
    request_id: str | None = None
    applied_at: datetime | None = None


async def insert_configuration(
    conn: Connection, system: SystemRow, new: NewConfiguration
) -> StoredConfiguration:
    """Store the next version of ``system``'s configuration (versions never collide)."""
    await conn.execute(Q["lock_system"], {"system": system.key})
    cursor = await conn.execute(
        Q["insert_configuration"],
        {
            "system": system.key,
            "kind": new.kind,
            "content": Jsonb(new.content),
            "schema": Jsonb(list(new.schema)),
            "hash": new.content_hash,
            "author": new.author,
            "source": new.source,
            "parent": new.parent_version,
            "request_id": new.request_id,
            "applied_at": new.applied_at,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    return await configuration(conn, system, int(row[0]))


async def configuration_by_request(conn: Connection, request_id: str) -> tuple[str, int] | None:
    cursor = await conn.execute(Q["configuration_by_request"], {"request_id": request_id})
    row = await cursor.fetchone()
    return (str(row[1]), int(row[0])) if row else None


async def configuration(conn: Connection, system: SystemRow, version: int) -> StoredConfiguration:
    """One version; NOT_FOUND naming it otherwise."""
    cursor = await conn.execute(Q["configuration"], {"system": system.key, "version": version})
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(
            f"{system.name}/configurations/{version} does not exist",
            reason="CONFIGURATION_NOT_FOUND",
            metadata={"configuration": f"{system.name}/configurations/{version}"},
        )
    return _configuration(system.system_id, row)


async def current_configuration(conn: Connection, system: SystemRow) -> StoredConfiguration:
    """The version in effect: the last applied, else the newest; FAILED_PRECONDITION if none."""
    cursor = await conn.execute(Q["current_configuration"], {"system": system.key})
    row = await cursor.fetchone()
    if row is None:
        raise FailedPrecondition(
            f"{system.name} has no configuration; create or import one first",
            reason="NO_CONFIGURATION",
            metadata={"system": system.name},
        )
    return _configuration(system.system_id, row)


async def list_configurations(
    conn: Connection, system: SystemRow, limit: int, offset: int
) -> list[StoredConfiguration]:
    cursor = await conn.execute(
        Q["list_configurations"], {"system": system.key, "limit": limit, "offset": offset}
    )
    return [_configuration(system.system_id, row) for row in await cursor.fetchall()]


async def mark_applied(conn: Connection, system: SystemRow, version: int, at: datetime) -> None:
    await conn.execute(
        Q["mark_applied"], {"system": system.key, "version": version, "applied_at": at}
    )


async def applied_versions(
    conn: Connection, system: SystemRow
) -> list[tuple[int, Content, datetime]]:
    cursor = await conn.execute(Q["applied_versions"], {"system": system.key})
    return [(int(v), dict(c), at) for v, c, at in await cursor.fetchall()]


async def insert_policy(conn: Connection, policy_id: str, body: bytes) -> tuple[int, datetime]:
    cursor = await conn.execute(Q["insert_policy"], {"policy_id": policy_id, "body": body})
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), row[1]


async def latest_policy(conn: Connection, policy_id: str) -> tuple[int, bytes, datetime] | None:
    cursor = await conn.execute(Q["latest_policy"], {"policy_id": policy_id})
    row = await cursor.fetchone()
    return (int(row[0]), bytes(row[1]), row[2]) if row else None


async def list_policies(
    conn: Connection, limit: int, offset: int
) -> list[tuple[str, int, bytes, datetime]]:
    cursor = await conn.execute(Q["list_policies"], {"limit": limit, "offset": offset})
    return [(str(p), int(r), bytes(b), at) for p, r, b, at in await cursor.fetchall()]


@dataclass(frozen=True)
class NewChange:
    system: SystemRow
    request_id: str | None
    from_version: int | None
    to_version: int
    dry_run: bool
    mode: int
    policy: str
    requested_by: str
    kind: str


class DuplicateRequest(Exception):
    """A proposal's request id was stored by a concurrent resend; answer with that one."""

    def __init__(self, request_id: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id


async def ensure_idle(conn: Connection, system: SystemRow) -> None:
    """FAILED_PRECONDITION naming the change when ``system`` has one in flight."""
    cursor = await conn.execute(Q["in_flight_change"], {"system": system.key})
    busy = await cursor.fetchone()
    if busy is not None:
        raise _in_flight(system, int(busy[0]))


async def insert_change(conn: Connection, new: NewChange) -> int:
    """Store a proposed change; FAILED_PRECONDITION when the system has one in flight."""
    await ensure_idle(conn, new.system)
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                Q["insert_change"],
                {
                    "system": new.system.key,
                    "request_id": new.request_id,
                    "state": ChangeState.PROPOSED,
                    "from_version": new.from_version,
                    "to_version": new.to_version,
                    "dry_run": new.dry_run,
                    "mode": new.mode,
                    "policy": new.policy,
                    "requested_by": new.requested_by,
                    "reason": "proposed",
                    "kind": new.kind,
                },
            )
    except psycopg.errors.UniqueViolation as error:
        if error.diag.constraint_name == "changes_request_id_key":
            # A resend raced the first proposal with the same request id.
            raise DuplicateRequest(new.request_id or "") from None
        # The partial unique index is the lock: another proposal won the race.
        cursor = await conn.execute(Q["in_flight_change"], {"system": new.system.key})
        busy = await cursor.fetchone()
        raise _in_flight(new.system, int(busy[0]) if busy else 0) from None
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


def _in_flight(system: SystemRow, change_id: int) -> FailedPrecondition:
    name = f"{system.name}/changes/{change_id}"
    return FailedPrecondition(
        f"{system.name} already has a change in flight: {name}; wait for it to finish, "
        "or approve or abort it",
        reason="CHANGE_IN_FLIGHT",
        metadata={"system": system.name, "change": name},
    )


async def change_by_request(conn: Connection, request_id: str) -> tuple[str, int] | None:
    cursor = await conn.execute(Q["change_by_request"], {"request_id": request_id})
    row = await cursor.fetchone()
    return (str(row[1]), int(row[0])) if row else None


async def change(conn: Connection, change_id: int, *, for_system: str | None = None) -> ChangeRow:
    """One change; NOT_FOUND otherwise (also when it belongs to another system)."""
    cursor = await conn.execute(Q["change"], {"id": change_id})
    row = await cursor.fetchone()
    if row is None or (for_system is not None and row[1] != for_system):
        owner = for_system or "-"
        raise NotFound(
            f"systems/{owner}/changes/{change_id} does not exist",
            reason="CHANGE_NOT_FOUND",
            metadata={"change": f"systems/{owner}/changes/{change_id}"},
        )
    return ChangeRow(
        id=int(row[0]),
        system_id=str(row[1]),
        state=int(row[2]),
        from_version=row[3],
        to_version=int(row[4]),
        dry_run=bool(row[5]),
        mode=int(row[6]),
        policy=str(row[7]),
        prediction=bytes(row[8]) if row[8] is not None else None,
        verification=bytes(row[9]) if row[9] is not None else None,
        requested_by=str(row[10]),
        state_reason=str(row[11]),
        override=row[12],
        created_at=row[13],
        updated_at=row[14],
        request_id=row[15],
        applied_at=row[16],
        kind=str(row[17]),
        system_key=int(row[18]),
    )


async def lock_change(conn: Connection, change_id: int) -> int:
    """Lock a change's row for this transaction; its current state."""
    cursor = await conn.execute(Q["change_for_update"], {"id": change_id})
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class StateUpdate:
    state: int
    reason: str
    prediction: bytes | None = None
    verification: bytes | None = None
    override: Mapping[str, str] | None = None
    applied_at: datetime | None = None


async def update_change(conn: Connection, change_id: int, update: StateUpdate) -> None:
    await conn.execute(
        Q["update_change"],
        {
            "id": change_id,
            "state": update.state,
            "reason": update.reason,
            "prediction": update.prediction,
            "verification": update.verification,
            "override": Jsonb(dict(update.override)) if update.override else None,
            "applied_at": update.applied_at,
        },
    )


@dataclass(frozen=True)
class TimeFilter:
    system_id: str | None
    start: datetime | None
    end: datetime | None


async def list_change_ids(
    conn: Connection, where: TimeFilter, limit: int, offset: int
) -> list[int]:
    cursor = await conn.execute(
        Q["list_changes"],
        {
            "system_id": where.system_id,
            "start": where.start,
            "end": where.end,
            "limit": limit,
            "offset": offset,
        },
    )
    return [int(row[0]) for row in await cursor.fetchall()]


async def unfinished_change_ids(conn: Connection) -> list[int]:
    cursor = await conn.execute(Q["unfinished_changes"])
    return [int(row[0]) for row in await cursor.fetchall()]


@dataclass(frozen=True)
class NewRollback:
    change: ChangeRow
    reason: int
    explanation: str
    predicted: bytes | None
    observed: bytes | None


async def insert_rollback(conn: Connection, new: NewRollback) -> int:
    cursor = await conn.execute(
        Q["insert_rollback"],
        {
            "change": new.change.id,
            "system": new.change.system_key,
            "reason": new.reason,
            "explanation": new.explanation,
            "predicted": new.predicted,
            "observed": new.observed,
            "from_version": new.change.from_version,
            "to_version": new.change.to_version,
            "requested_by": new.change.requested_by,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def list_rollbacks(
    conn: Connection, where: TimeFilter, limit: int, offset: int
) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(
        Q["list_rollbacks"],
        {
            "system_id": where.system_id,
            "start": where.start,
            "end": where.end,
            "limit": limit,
            "offset": offset,
        },
    )
    return list(await cursor.fetchall())


@dataclass(frozen=True)
class LatestFingerprint:
    """What the learned predictor needs of a system's newest fingerprint."""

    embedding: tuple[float, ...]
    load_level: float | None
    """Mean offered load over its window (its load metric's mean)."""
    load_peak: float | None = None
    """Largest offered load seen in its window."""
    utilization: float | None = None
    """Mean CPU utilisation over its window."""


async def latest_fingerprint(conn: Connection, system: SystemRow) -> LatestFingerprint | None:
    """The system's newest fingerprint's embedding and load level; None when it has none."""
    cursor = await conn.execute(Q["latest_embedding"], {"system": system.key})
    row = await cursor.fetchone()
    if row is None:
        return None
    message = common_pb2.Fingerprint.FromString(bytes(row[1]))
    return LatestFingerprint(
        tuple(float(v) for v in row[0]),
        _mean(message, message.load_metric),
        message.quality.load_max if message.quality.load_max > 0 else None,
        _mean(message, vocabulary.CPU_UTILIZATION.name),
    )


def _mean(message: common_pb2.Fingerprint, metric: str) -> float | None:
    """A KPI's mean over every regime of the fingerprint; None when it has no samples."""
    for kpi in message.kpis:
        if kpi.kpi == metric:
            total = sum(r.count for r in kpi.regimes)
            if total > 0:
                return sum(r.count * r.mean for r in kpi.regimes) / total
    return None


@dataclass(frozen=True)
class MeasuredWindows:
    """Where an imported example was measured: before ``[start, applied)``, after
    ``[applied, end)`` (``end`` None while the version still runs), and the samples each
    window held, so a later version or late samples show that it must be measured again."""

    start: datetime
    applied: datetime
    end: datetime | None
    before_samples: int
    after_samples: int


@dataclass(frozen=True)
class NewExample:
    system: SystemRow
    from_version: int
    to_version: int
    change_id: int | None
    embedding: Sequence[float]
    before: Content
    after: Content
    observed: Mapping[str, float]
    origin: str
    windows: MeasuredWindows | None = None
    features: Mapping[str, float] = field(default_factory=dict)
    """Transferable features of the change (see :mod:`cfgclone.predictor.features`)."""


async def insert_example(conn: Connection, new: NewExample) -> None:
    """Store a training example.

    An imported example replaces the imported one of the same versions (it was measured
    again); nothing replaces a verified outcome.
    """
    windows = new.windows
    await conn.execute(
        Q["insert_example"],
        {
            "system": new.system.key,
            "from_version": new.from_version,
            "to_version": new.to_version,
            "change": new.change_id,
            "embedding": list(new.embedding),
            "before": Jsonb(new.before),
            "after": Jsonb(new.after),
            "observed": Jsonb(dict(new.observed)),
            "origin": new.origin,
            "window_start": windows.start if windows else None,
            "applied_at": windows.applied if windows else None,
            "window_end": windows.end if windows else None,
            "before_samples": windows.before_samples if windows else None,
            "after_samples": windows.after_samples if windows else None,
            "features": Jsonb(dict(new.features)),
        },
    )


async def imported_examples(
    conn: Connection, system: SystemRow
) -> dict[tuple[int, int], MeasuredWindows | None]:
    """The system's imported examples by (from, to) version, with where they were measured."""
    cursor = await conn.execute(Q["imported_examples"], {"system": system.key})
    found: dict[tuple[int, int], MeasuredWindows | None] = {}
    for first, second, start, applied, end, before_n, after_n in await cursor.fetchall():
        measured = (
            MeasuredWindows(start, applied, end, int(before_n), int(after_n))
            if start is not None and applied is not None
            else None
        )
        found[(int(first), int(second))] = measured
    return found


async def delete_imported_example(
    conn: Connection, system: SystemRow, pair: tuple[int, int]
) -> None:
    """Forget an imported example whose versions are no longer consecutive or measurable."""
    await conn.execute(
        Q["delete_imported_example"],
        {"system": system.key, "from_version": pair[0], "to_version": pair[1]},
    )


async def request_import(conn: Connection, system: SystemRow) -> None:
    await conn.execute(Q["request_import"], {"system": system.key})


async def finish_import(
    conn: Connection, system: SystemRow, started: datetime, examples: int
) -> None:
    await conn.execute(
        Q["finish_import"], {"system": system.key, "started": started, "examples": examples}
    )


async def systems_with_history(conn: Connection) -> list[str]:
    """Systems with at least two applied versions: those imported history can teach."""
    cursor = await conn.execute(Q["systems_with_history"])
    return [str(row[0]) for row in await cursor.fetchall()]


@dataclass(frozen=True)
class TrainingRow:
    system_id: str
    examples: int
    import_pending: bool
    last_import: datetime | None


async def training_status(conn: Connection, system_id: str | None) -> list[TrainingRow]:
    """Examples and import state of every system with either (or of one system)."""
    cursor = await conn.execute(Q["training_status"], {"system_id": system_id})
    return [
        TrainingRow(str(sid), int(n), bool(pending), finished)
        for sid, n, pending, finished in await cursor.fetchall()
    ]


async def examples(conn: Connection) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(Q["examples"])
    return list(await cursor.fetchall())


async def examples_versions(conn: Connection) -> dict[str, tuple[int, float]]:
    """Per system name with examples: their count and the time of the last change; any
    example added or measured again changes its system's entry."""
    cursor = await conn.execute(Q["examples_versions"])
    return {f"systems/{sid}": (int(n), float(t)) for sid, n, t in await cursor.fetchall()}


async def fingerprinted_versions(conn: Connection, system: SystemRow) -> set[int]:
    """Configuration versions of ``system`` that have a stored fingerprint."""
    cursor = await conn.execute(Q["fingerprinted_versions"], {"system": system.key})
    return {int(row[0]) for row in await cursor.fetchall()}
