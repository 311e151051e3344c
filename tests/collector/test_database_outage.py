"""The database goes away under a running collector, and ingest resumes when it is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import grpc
import numpy as np
import pytest

from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc
from tests.collector.conftest import (
    SECOND,
    batch,
    recent_times,
    register,
    series,
    start_collector,
    stored,
    unique_metric,
)
from tests.common.helpers import CuttableProxy


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


@pytest.fixture
async def proxy(store: Store) -> AsyncIterator[CuttableProxy]:
    target = urlsplit(store.url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.cut()


async def _write(stub: pb_grpc.CollectorServiceStub, sent: pb.WriteSamplesRequest) -> int:
    reply = await stub.WriteSamples(sent, timeout=5)
    return reply.stored_samples


async def test_ingest_is_unavailable_while_the_database_is_gone_and_resumes_after(
    store: Store, proxy: CuttableProxy
) -> None:
    proxied = Store(_through(store.url, proxy.port), connect_timeout=1.0, name="outage")
    await proxied.open()
    try:
        async with start_collector(proxied) as collector:
            system = await register(collector.stub)
            metric = unique_metric()
            ts = recent_times(300, step_ns=SECOND // 10)
            first, during, after = (
                pb.WriteSamplesRequest(batch=batch(system, series(metric, part, np.ones(100))))
                for part in np.split(ts, 3)
            )
            assert await _write(collector.stub, first) == 100

            await proxy.cut()
            with pytest.raises(grpc.aio.AioRpcError) as down:
                await _write(collector.stub, during)
            await proxy.restore()

            deadline = time.monotonic() + 15
            while_reconnecting: list[grpc.StatusCode] = []
            while True:
                try:
                    resent = await _write(collector.stub, during)
                    break
                except grpc.aio.AioRpcError as error:
                    while_reconnecting.append(error.code())
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            assert await _write(collector.stub, after) == 100
    finally:
        await proxied.close()

    assert down.value.code() == grpc.StatusCode.UNAVAILABLE
    assert set(while_reconnecting) <= {grpc.StatusCode.UNAVAILABLE}
    assert resent == 100
    assert [t for t, _ in await stored(store, system, metric)] == (ts // 1000).tolist()
