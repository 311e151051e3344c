"""An unexpected failure is INTERNAL with an error id that is in the log; page tokens are
signed with the deployment's key, bounded and versioned."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import struct
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from cfgclone.collector.main import build_services
from cfgclone.common import page_tokens
from cfgclone.common.errors import InvalidArgument, error_info
from cfgclone.common.page_tokens import TokenKind, open_token, query_digest, seal_token
from cfgclone.common.requests import page_request
from cfgclone.common.server import ServiceDefinition, watch_readiness
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc
from tests.conftest import serve_in_process, service_settings


class _BrokenCollector(pb_grpc.CollectorServiceServicer):
    """A collector whose GetSystem has a bug: it raises an exception nobody expects."""

    async def GetSystem(self, request: pb.GetSystemRequest, context: Any) -> pb.GetSystemResponse:
        raise KeyError("a bug")


async def test_an_unexpected_error_is_internal_with_an_error_id_that_is_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    definition = ServiceDefinition(
        "cfgclone.v1.CollectorService",
        _BrokenCollector(),
        pb_grpc.add_CollectorServiceServicer_to_server,
    )
    caplog.set_level(logging.ERROR, logger="cfgclone.common.incidents")
    async with serve_in_process([definition]) as (_, channel):
        call = pb_grpc.CollectorServiceStub(channel).GetSystem(
            pb.GetSystemRequest(name="systems/db-01")
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    status = await rpc_status.aio.from_call(call)
    assert status is not None
    info = error_info(status)
    assert info is not None
    error_id = info.metadata["error_id"]
    assert len(error_id) == 32
    assert error_id in (caught.value.details() or "")
    assert "a bug" not in (caught.value.details() or "")
    [record] = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
    assert error_id in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError


OFFSET = TokenKind(1, struct.Struct(">q"))


def test_a_token_round_trips_and_every_changed_byte_is_refused() -> None:
    digest = query_digest(["systems/-", "env=prod"])
    token = seal_token(OFFSET, digest, 1234)
    assert open_token(OFFSET, digest, token) == (1234,)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for index in range(len(raw)):
        changed = bytearray(raw)
        changed[index] ^= 0x40
        forged = base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("=")
        with pytest.raises(InvalidArgument) as caught:
            open_token(OFFSET, digest, forged)
        assert caught.value.violations[0].field == "page_token"


def test_a_token_serves_only_its_own_query_and_kind() -> None:
    token = seal_token(OFFSET, query_digest("systems/a"), 10)
    with pytest.raises(InvalidArgument, match="different query"):
        open_token(OFFSET, query_digest("systems/b"), token)
    other_kind = TokenKind(3, struct.Struct(">q"))
    with pytest.raises(InvalidArgument, match="not a token this service issued"):
        open_token(other_kind, query_digest("systems/a"), token)


@pytest.fixture
def restored_key() -> Iterator[None]:
    """Put back the process's page-token key after a test that changes it."""
    saved = page_tokens._KEY.value
    yield
    page_tokens.use_page_token_key(saved)


@pytest.mark.usefixtures("restored_key")
def test_tokens_of_another_deployment_key_or_version_are_refused() -> None:
    digest = query_digest(None)
    page_tokens.use_page_token_key(b"k" * 32)
    token = seal_token(OFFSET, digest, 5)
    page_tokens.use_page_token_key(b"j" * 32)
    with pytest.raises(InvalidArgument, match="not a token this service issued"):
        open_token(OFFSET, digest, token)
    page_tokens.use_page_token_key(b"k" * 32)
    assert open_token(OFFSET, digest, token) == (5,)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[0] = page_tokens.VERSION + 1
    with pytest.raises(InvalidArgument):
        open_token(OFFSET, digest, base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("="))


def test_a_signed_negative_or_huge_offset_is_still_refused() -> None:
    digest = query_digest(None)
    for offset in (-1, 2**62 + 1):
        token = seal_token(OFFSET, digest, offset)
        with pytest.raises(InvalidArgument, match="out of range"):
            page_request(10, token)


def test_tokens_are_short_and_bounded() -> None:
    token = page_request(10, "").next_token(10, True)
    assert len(token) < 80
    with pytest.raises(InvalidArgument):
        page_request(10, token + "A" * 1_000_000)


async def test_replicas_on_one_database_share_the_generated_key(store: Store) -> None:
    first = await store.deployment_key(page_tokens.PAGE_TOKEN_KEY_NAME)
    second_replica = Store(store.url, min_size=1, max_size=1, name="replica")
    await second_replica.open(wait=True)
    try:
        assert await second_replica.deployment_key(page_tokens.PAGE_TOKEN_KEY_NAME) == first
    finally:
        await second_replica.close()
    assert len(first) == 32


@pytest.mark.usefixtures("restored_key")
async def test_a_service_signs_with_the_database_key_once_it_reports_serving(
    store: Store,
) -> None:
    page_tokens.use_page_token_key(b"process-only-key" * 2)
    services = await build_services(service_settings("collector", store.url), store)
    async with serve_in_process(services, serving=False) as (running, channel):
        readiness = asyncio.create_task(
            watch_readiness(running, store, interval=0.1, page_token_key_from_database=True)
        )
        try:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(100):
                reply = await health.Check(health_pb2.HealthCheckRequest())
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.05)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            readiness.cancel()
    key = await store.deployment_key(page_tokens.PAGE_TOKEN_KEY_NAME)
    digest = query_digest(None)
    assert seal_token(OFFSET, digest, 1) == _sealed_with(key, digest, 1)


def _sealed_with(key: bytes, digest: bytes, offset: int) -> str:
    body = bytes([page_tokens.VERSION, OFFSET.ident]) + digest + OFFSET.layout.pack(offset)
    mac = hmac.new(key, body, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")
