"""Servers bound what callers make them hold: bytes in flight, message size, idle streams."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np
import pytest

from cfgclone.collector.main import build_services
from cfgclone.collector.servicer import CollectorServicer
from cfgclone.common.server import RunningServer, ServiceDefinition
from cfgclone.common.settings import ServerSettings, SettingsError, load_settings
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc
from tests.collector.conftest import batch, recent_times, register, series, unique_metric
from tests.conftest import serve_in_process, service_settings

MIB = 1024 * 1024


class HeldCollector(CollectorServicer):
    """The real collector, whose WriteSamples waits for ``release`` before it stores."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.release = asyncio.Event()
        self.held = asyncio.Event()
        self.holding = 0

    async def WriteSamples(self, request: pb.WriteSamplesRequest, context: Any) -> Any:
        self.holding += 1
        self.held.set()
        await self.release.wait()
        return await super().WriteSamples(request, context)


@asynccontextmanager
async def collector(
    store: Store, servicer: CollectorServicer | None = None, **limits: Any
) -> AsyncIterator[tuple[RunningServer, pb_grpc.CollectorServiceStub]]:
    settings = ServerSettings(host="127.0.0.1", port=0, **limits)
    if servicer is None:
        services = await build_services(
            dataclasses.replace(service_settings("collector", store.url), options={"SCRAPE": "0"}),
            store,
        )
    else:
        services = [
            ServiceDefinition(
                "cfgclone.v1.CollectorService",
                servicer,
                pb_grpc.add_CollectorServiceServicer_to_server,
            )
        ]
    async with serve_in_process(services, settings=settings) as (running, channel):
        yield running, pb_grpc.CollectorServiceStub(channel)


def _big_batch(system: str, samples: int) -> Any:
    times = recent_times(samples, step_ns=1_000_000)
    return batch(system, series(unique_metric(), times, np.arange(samples, dtype=np.float64)))


async def test_requests_past_the_bytes_in_flight_are_refused_until_room_is_made(
    store: Store,
) -> None:
    servicer = HeldCollector(store)
    async with collector(
        store, servicer, max_message_bytes=2 * MIB, max_inflight_bytes=2 * MIB
    ) as (_, stub):
        system = await register(stub)
        first_batch, second_batch = _big_batch(system, 80_000), _big_batch(system, 80_000)
        assert first_batch.ByteSize() > MIB
        first = asyncio.ensure_future(stub.WriteSamples(pb.WriteSamplesRequest(batch=first_batch)))
        await asyncio.wait_for(servicer.held.wait(), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.WriteSamples(pb.WriteSamplesRequest(batch=second_batch))
        servicer.release.set()
        stored_first = await first
        stored_second = await stub.WriteSamples(pb.WriteSamplesRequest(batch=second_batch))

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "CFGCLONE_MAX_INFLIGHT_BYTES" in (refused.value.details() or "")
    assert stored_first.stored_samples == 80_000
    assert stored_second.stored_samples == 80_000
    assert servicer.holding == 2  # the refused request never reached the servicer


async def test_a_message_larger_than_the_bound_is_refused(store: Store) -> None:
    async with collector(store, max_message_bytes=MIB, max_inflight_bytes=4 * MIB) as (_, stub):
        system = await register(stub)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.WriteSamples(pb.WriteSamplesRequest(batch=_big_batch(system, 100_000)))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_streams_that_never_send_are_closed(store: Store) -> None:
    async with collector(store, stream_idle_seconds=0.5) as (_, stub):
        silent = asyncio.Event()

        async def nothing() -> AsyncIterator[pb.StreamSamplesRequest]:
            await silent.wait()
            yield pb.StreamSamplesRequest()

        calls = [stub.StreamSamples(nothing()) for _ in range(40)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        silent.set()

    codes = [o.code() for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 40
    assert all("no message on the stream" in (o.details() or "") for o in outcomes)  # type: ignore[union-attr]


class CountingStreams(CollectorServicer):
    """The real collector, counting the StreamSamples calls open at once."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.open = 0
        self.most_open = 0

    async def StreamSamples(self, request_iterator: Any, context: Any) -> Any:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            return await super().StreamSamples(request_iterator, context)
        finally:
            self.open -= 1


async def test_one_connection_holds_at_most_so_many_streams(store: Store) -> None:
    servicer = CountingStreams(store)
    async with collector(
        store, servicer, stream_idle_seconds=0.5, max_streams_per_connection=4
    ) as (_, stub):
        silent = asyncio.Event()

        async def nothing() -> AsyncIterator[pb.StreamSamplesRequest]:
            await silent.wait()
            yield pb.StreamSamplesRequest()

        outcomes = await asyncio.gather(
            *(stub.StreamSamples(nothing()) for _ in range(20)), return_exceptions=True
        )
        silent.set()

    codes = collections.Counter(o.code() for o in outcomes if isinstance(o, grpc.aio.AioRpcError))
    # Every stream ended: closed when idle, or refused past the bound (REFUSED_STREAM).
    assert sum(codes.values()) == 20
    assert set(codes) <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE}
    assert 1 <= servicer.most_open <= 4


def test_the_limits_are_settings() -> None:
    settings = load_settings(
        "collector",
        [],
        {
            "CFGCLONE_MAX_MESSAGE_BYTES": "1048576",
            "CFGCLONE_MAX_INFLIGHT_BYTES": "8388608",
            "CFGCLONE_STREAM_IDLE_SECONDS": "5",
            "CFGCLONE_MAX_STREAMS_PER_CONNECTION": "16",
        },
    )
    assert settings.server.max_message_bytes == MIB
    assert settings.server.max_inflight_bytes == 8 * MIB
    assert settings.server.stream_idle_seconds == 5.0
    assert settings.server.max_streams_per_connection == 16
    with pytest.raises(SettingsError, match="CFGCLONE_MAX_INFLIGHT_BYTES"):
        ServerSettings(max_message_bytes=4 * MIB, max_inflight_bytes=MIB)
