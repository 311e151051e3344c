"""Configuration versions and policies: create, read, list, diff.

Versions are immutable and numbered per system. A version created with an
``apply_time`` is imported history: once a system has two applied versions, the
samples around each past change become training examples (in the background).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2

from cfgclone.common.errors import InvalidArgument, NotFound
from cfgclone.common.limits import MAX_SMALL_ID
from cfgclone.common.requests import Page, numeric_id, policy_id_from_name
from cfgclone.common.store import Store
from cfgclone.predictor import repository
from cfgclone.predictor.codec import (
    Content,
    StoredPolicy,
    VerificationRules,
    content_from_struct,
    content_hash,
    content_to_struct,
    policy_from_message,
    policy_to_message,
)
from cfgclone.predictor.parameters import check_content
from cfgclone.predictor.policy import DEFAULT_POLICY
from cfgclone.v1 import common_pb2

DEFAULT_POLICY_NAME = "policies/default"


def to_message(stored: repository.StoredConfiguration) -> common_pb2.Configuration:
    message = common_pb2.Configuration(
        name=stored.name,
        version=stored.version,
        kind=stored.kind,
        content=content_to_struct(stored.content),
        schema=[
            json_format.ParseDict(dict(spec), common_pb2.ParameterSpec()) for spec in stored.schema
        ],
        content_hash=stored.content_hash,
        author=stored.author,
        source=stored.source,  # type: ignore[arg-type]
        parent=stored.parent,
    )
    message.create_time.FromDatetime(stored.created_at)
    if stored.applied_at is not None:
        message.apply_time.FromDatetime(stored.applied_at)
    return message


def new_configuration(
    message: common_pb2.Configuration,
    *,
    field: str,
    author: str,
    inherited_schema: Sequence[Mapping[str, Any]] = (),
    request_id: str | None = None,
    parent_version: int | None = None,
) -> repository.NewConfiguration:
    """Validate a configuration message into a version to store; INVALID_ARGUMENT if bad."""
    if not message.kind:
        raise InvalidArgument.for_field(f"{field}.kind", "is required, for example `postgresql`")
    if not message.HasField("content"):
        raise InvalidArgument.for_field(f"{field}.content", "is required")
    content = content_from_struct(message.content, f"{field}.content")
    schema = [json_format.MessageToDict(spec) for spec in message.schema] or [
        dict(spec) for spec in inherited_schema
    ]
    check_content(message.kind, content, schema, field)
    return repository.NewConfiguration(
        kind=message.kind,
        content=content,
        schema=schema,
        content_hash=content_hash(content),
        author=author,
        source=message.source or common_pb2.CONFIGURATION_SOURCE_MANUAL,
        parent_version=parent_version,
        request_id=request_id,
        applied_at=(
            message.apply_time.ToDatetime(tzinfo=UTC) if message.HasField("apply_time") else None
        ),
    )


async def create(
    store: Store,
    system_id: str,
    message: common_pb2.Configuration,
    *,
    author: str,
    request_id: str | None,
) -> tuple[repository.StoredConfiguration, bool]:
    """Store a version the system runs (since ``apply_time`` when given, else from now).

    Proposed versions come from ProposeChange and are applied by it; this records what
    a system runs, or ran in the past (imported history). A repeated request id returns
    the first answer. True when new.
    """
    new = new_configuration(
        message,
        field="configuration",
        author=author,
        request_id=request_id or None,
        parent_version=_parent_version(message.parent, system_id),
    )
    if new.applied_at is None:
        new = replace(new, applied_at=datetime.now(UTC))
    async with store.transaction() as conn:
        if request_id:
            seen = await repository.configuration_by_request(conn, request_id)
            if seen is not None:
                system = await repository.system(conn, seen[0])
                return await repository.configuration(conn, system, seen[1]), False
        system = await repository.system(conn, system_id)
        return await repository.insert_configuration(conn, system, new), True


def _parent_version(parent: str, system_id: str) -> int | None:
    """The version number of a same-system parent; a parent on another system is kept as
    provenance in ``source`` and not linked."""
    prefix = f"systems/{system_id}/configurations/"
    if parent.startswith(prefix):
        return numeric_id(parent[len(prefix) :], "configuration.parent", "version", MAX_SMALL_ID)
    return None


async def get(store: Store, system_id: str, version: str) -> repository.StoredConfiguration:
    async with store.connection() as conn:
        system = await repository.system(conn, system_id)
        if version == "-":
            return await repository.current_configuration(conn, system)
        number = numeric_id(version, "name", "version (or `-`)", MAX_SMALL_ID)
        return await repository.configuration(conn, system, number)


async def list_page(
    store: Store, system_id: str, page: Page
) -> tuple[list[repository.StoredConfiguration], str]:
    async with store.connection() as conn:
        system = await repository.system(conn, system_id)
        rows = await repository.list_configurations(conn, system, page.size + 1, page.offset)
    return rows[: page.size], page.next_token(min(len(rows), page.size), len(rows) > page.size)


def diff(first: Content, second: Content) -> list[tuple[str, Any, Any]]:
    """(key, before, after) for every parameter that differs; None where absent."""
    keys = sorted(set(first) | set(second))
    return [(k, first.get(k), second.get(k)) for k in keys if first.get(k) != second.get(k)]


def value_message(value: Any) -> struct_pb2.Value | None:
    if value is None:
        return None
    return json_format.ParseDict(value, struct_pb2.Value())


# -- policies -------------------------------------------------------------------------


def default_policy() -> StoredPolicy:
    rules = VerificationRules()
    message = policy_to_message(DEFAULT_POLICY, rules, DEFAULT_POLICY_NAME)
    return StoredPolicy(DEFAULT_POLICY, rules, message)


async def create_policy(store: Store, message: common_pb2.Policy) -> StoredPolicy:
    ident = policy_id_from_name(message.name, "policy.name")
    policy_from_message(message, message.name)
    body = common_pb2.Policy()
    body.CopyFrom(message)
    body.ClearField("revision")
    body.ClearField("create_time")
    async with store.transaction() as conn:
        revision, created = await repository.insert_policy(conn, ident, body.SerializeToString())
    return _stored_policy(ident, revision, body.SerializeToString(), created)


def _stored_policy(ident: str, revision: int, body: bytes, created: Any) -> StoredPolicy:
    message = common_pb2.Policy.FromString(body)
    message.name = f"policies/{ident}"
    message.revision = revision
    message.create_time.FromDatetime(created)
    stored = policy_from_message(message, f"policies/{ident}/revisions/{revision}")
    return StoredPolicy(stored.policy, stored.rules, message)


async def load_policy(store: Store, name: str, field: str = "policy") -> StoredPolicy:
    """The newest revision of ``name`` (empty: the default); NOT_FOUND if unknown."""
    name = name or DEFAULT_POLICY_NAME
    ident = policy_id_from_name(name, field)
    async with store.connection() as conn:
        found = await repository.latest_policy(conn, ident)
    if found is None:
        if name == DEFAULT_POLICY_NAME:
            return default_policy()
        raise NotFound(
            f"{name} does not exist; create it with CreatePolicy or use policies/default",
            reason="POLICY_NOT_FOUND",
            metadata={"policy": name},
        )
    return _stored_policy(ident, *found)


async def list_policies(store: Store, page: Page) -> tuple[list[common_pb2.Policy], str]:
    async with store.connection() as conn:
        rows = await repository.list_policies(conn, page.size + 1, page.offset)
    policies = [_stored_policy(p, r, b, at).message for p, r, b, at in rows[: page.size]]
    if page.offset == 0 and not any(p.name == DEFAULT_POLICY_NAME for p in policies):
        policies.insert(0, default_policy().message)
    return policies, page.next_token(min(len(rows), page.size), len(rows) > page.size)
