"""The audit trail: changes and rollbacks as messages, with their evidence."""

from __future__ import annotations

from typing import Any

from cfgclone.common.requests import Page
from cfgclone.common.store import Store
from cfgclone.predictor import repository
from cfgclone.v1 import common_pb2


def _configuration(system_id: str, version: int | None) -> str:
    return f"systems/{system_id}/configurations/{version}" if version else ""


def change_message(row: repository.ChangeRow) -> common_pb2.Change:
    message = common_pb2.Change(
        name=row.name,
        from_configuration=_configuration(row.system_id, row.from_version),
        to_configuration=_configuration(row.system_id, row.to_version),
        state=row.state,  # type: ignore[arg-type]
        dry_run=row.dry_run,
        requested_by=row.requested_by,
        request_id=row.request_id or "",
        state_reason=row.state_reason,
    )
    if row.prediction:
        message.prediction.ParseFromString(row.prediction)
    if row.verification:
        message.verification.ParseFromString(row.verification)
    if row.override:
        message.override.actor = row.override.get("actor", "")
        message.override.reason = row.override.get("reason", "")
        if row.override.get("time"):
            message.override.time.FromJsonString(row.override["time"].replace("+00:00", "Z"))
    message.create_time.FromDatetime(row.created_at)
    message.update_time.FromDatetime(row.updated_at)
    return message


async def change(store: Store, system_id: str, change_id: int) -> common_pb2.Change:
    async with store.connection() as conn:
        row = await repository.change(conn, change_id, for_system=system_id)
    return change_message(row)


async def list_changes(
    store: Store, where: repository.TimeFilter, page: Page
) -> tuple[list[common_pb2.Change], str]:
    async with store.connection() as conn:
        if where.system_id is not None:
            await repository.system(conn, where.system_id)
        ids = await repository.list_change_ids(conn, where, page.size + 1, page.offset)
        rows = [await repository.change(conn, i) for i in ids[: page.size]]
    token = page.next_token(len(rows), len(ids) > page.size)
    return [change_message(r) for r in rows], token


def rollback_message(row: tuple[Any, ...]) -> common_pb2.Rollback:
    (ident, system_id, change_id, reason, explanation, predicted, observed) = row[:7]
    from_version, to_version, requested_by, created = row[7:]
    message = common_pb2.Rollback(
        name=f"systems/{system_id}/rollbacks/{ident}",
        change=f"systems/{system_id}/changes/{change_id}",
        reason=reason,
        explanation=explanation,
        from_configuration=_configuration(system_id, from_version),
        to_configuration=_configuration(system_id, to_version),
        requested_by=requested_by,
    )
    if predicted:
        message.predicted.extend(common_pb2.Prediction.FromString(bytes(predicted)).kpis)
    if observed:
        message.observed.extend(common_pb2.Prediction.FromString(bytes(observed)).kpis)
    message.create_time.FromDatetime(created)
    return message


async def list_rollbacks(
    store: Store, where: repository.TimeFilter, page: Page
) -> tuple[list[common_pb2.Rollback], str]:
    async with store.connection() as conn:
        if where.system_id is not None:
            await repository.system(conn, where.system_id)
        rows = await repository.list_rollbacks(conn, where, page.size + 1, page.offset)
    token = page.next_token(min(len(rows), page.size), len(rows) > page.size)
    return [rollback_message(r) for r in rows[: page.size]], token
