"""A collector served in process on the session database, and helpers to build batches."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from cfgclone.collector.agent_client import Backoff, CollectorClient
from cfgclone.collector.agent_runner import Agent
from cfgclone.collector.agent_sources import Source
from cfgclone.collector.agent_spool import Spool
from cfgclone.collector.main import build_services
from cfgclone.common.auth import Credentials
from cfgclone.common.server import RunningServer
from cfgclone.common.settings import ServerSettings, ServerTls
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc
from cfgclone.v1 import common_pb2
from tests.conftest import serve_in_process, service_settings

SECOND = 1_000_000_000


@dataclass
class Collector:
    """A running collector: its server, a channel and a stub on it, and its store."""

    running: RunningServer
    channel: grpc.aio.Channel
    stub: pb_grpc.CollectorServiceStub
    store: Store

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"


@asynccontextmanager
async def start_collector(
    store: Store,
    *,
    options: Mapping[str, str] | None = None,
    credentials: Credentials | None = None,
    port: int = 0,
    tls: ServerTls | None = None,
) -> AsyncIterator[Collector]:
    """A collector served in process on ``store``; scraper off unless ``options`` turn it on.
    With ``tls`` it serves TLS (and the test's own plaintext channel cannot call it)."""
    settings = dataclasses.replace(
        service_settings("collector", store.url), options={"SCRAPE": "0", **(options or {})}
    )
    services = await build_services(settings, store)
    async with serve_in_process(
        services,
        credentials=credentials,
        settings=ServerSettings(host="127.0.0.1", port=port, tls=tls),
    ) as (running, channel):
        yield Collector(running, channel, pb_grpc.CollectorServiceStub(channel), store)


@pytest.fixture
async def collector(store: Store) -> AsyncIterator[Collector]:
    """A collector (scraper off) on the session database."""
    async with start_collector(store) as running:
        yield running


def unique_system() -> str:
    """A system name no other test uses."""
    return f"systems/t-{uuid.uuid4().hex[:12]}"


def unique_metric(prefix: str = "test") -> str:
    return f"{prefix}.m_{uuid.uuid4().hex[:10]}"


async def register(stub: pb_grpc.CollectorServiceStub, name: str | None = None) -> str:
    name = name or unique_system()
    await stub.RegisterSystem(
        pb.RegisterSystemRequest(system=common_pb2.System(name=name, cpu_cores=2))
    )
    return name


def series(
    metric: str,
    ts_unix_ns: Sequence[int] | npt.NDArray[np.int64],
    values: Sequence[float] | npt.NDArray[np.float64],
    *,
    unit: str = "",
    kind: int = common_pb2.METRIC_KIND_GAUGE,
) -> common_pb2.SampleSeries:
    message = common_pb2.SampleSeries(metric=metric, unit=unit, kind=kind)  # type: ignore[arg-type]
    message.ts_unix_ns.extend([int(t) for t in ts_unix_ns])
    message.values.extend([float(v) for v in values])
    return message


def batch(
    system: str, *parts: common_pb2.SampleSeries, batch_id: str = ""
) -> common_pb2.SampleBatch:
    return common_pb2.SampleBatch(
        system=system, batch_id=batch_id or uuid.uuid4().hex, series=list(parts)
    )


def recent_times(
    count: int, step_ns: int = SECOND, end_ns: int | None = None
) -> npt.NDArray[np.int64]:
    """``count`` timestamps ``step_ns`` apart, the last one a minute before ``end_ns`` (now)."""
    end = (end_ns or time.time_ns()) - 60 * SECOND
    return end - np.arange(count, dtype=np.int64)[::-1] * step_ns


async def stored(store: Store, system: str, metric: str | None = None) -> list[tuple[int, float]]:
    """``(ts in microseconds since the Unix epoch, value)`` of what is stored, in time order."""
    async with store.connection() as conn:
        cursor = await conn.execute(
            """
            SELECT (extract(epoch FROM s.ts) * 1000000)::bigint, s.value
            FROM samples s
            JOIN systems y ON y.id = s.system_id
            JOIN metrics m ON m.id = s.metric_id
            WHERE y.system_id = %(system)s AND (%(metric)s::text IS NULL OR m.name = %(metric)s)
            ORDER BY 1, 2
            """,
            {"system": system.removeprefix("systems/"), "metric": metric},
        )
        return [(int(ts), float(value)) for ts, value in await cursor.fetchall()]


async def batch_recorded(store: Store, batch_id: str) -> bool:
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT 1 FROM ingested_batches WHERE batch_id = %s", (batch_id,)
        )
        return await cursor.fetchone() is not None


async def metric_known(store: Store, name: str) -> bool:
    async with store.connection() as conn:
        cursor = await conn.execute("SELECT 1 FROM metrics WHERE name = %s", (name,))
        return await cursor.fetchone() is not None


def agent_for(
    system: str,
    address: str,
    spool: Spool,
    source: Source,
    *,
    batch_max_samples: int,
    batch_max_seconds: float,
    drain_seconds: float,
) -> Agent:
    """An agent of ``source`` alone, with short batches and retries, sending to ``address``."""
    return Agent(
        system,
        [source],
        spool,
        CollectorClient(address, call_timeout=2.0),
        describe=lambda: common_pb2.System(name=system),
        batch_max_samples=batch_max_samples,
        batch_max_seconds=batch_max_seconds,
        backoff=Backoff(initial=0.05, maximum=0.3),
        drain_seconds=drain_seconds,
    )


async def until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Wait for ``condition``; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)
