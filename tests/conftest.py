"""Fixtures shared by every test: a real PostgreSQL database and real gRPC servers.

Tests use the PostgreSQL server named by ``CFGCLONE_TEST_DATABASE_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``). Each test session
creates a database of its own there and drops it at the end; ``fresh_database``
gives a test an empty one of its own.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager

import grpc
import psycopg
import pytest

from cfgclone.common import databases
from cfgclone.common.auth import Credentials
from cfgclone.common.server import RunningServer, ServiceDefinition, start_server
from cfgclone.common.settings import ServerSettings, ServiceSettings
from cfgclone.common.store import Store

ADMIN_URL = os.environ.get(
    "CFGCLONE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@functools.cache
def timescaledb_usable() -> bool:
    """Whether the migrations make ``samples`` a hypertable on the test server: TimescaleDB
    installed there and preloaded (``shared_preload_libraries``)."""
    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'), "
            "'timescaledb' = ANY (string_to_array("
            "replace(current_setting('shared_preload_libraries'), ' ', ''), ','))"
        ).fetchone()
    return bool(row and row[0] and row[1])


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests say which store they need: ``plain_postgres`` (native day partitions) or
    ``timescaledb`` (a hypertable with compression and retention policies)."""
    if item.get_closest_marker("timescaledb") and not timescaledb_usable():
        pytest.skip(
            "needs TimescaleDB installed and preloaded on the test server "
            "(CFGCLONE_TEST_DATABASE_URL); here samples are native day partitions"
        )
    if item.get_closest_marker("plain_postgres") and timescaledb_usable():
        pytest.skip("tests native day partitions; on this server samples is a hypertable")


def database_url_for(name: str) -> str:
    """The admin URL with its database replaced by ``name``."""
    return databases.database_url_for(ADMIN_URL, name)


def temporary_database() -> AbstractContextManager[str]:
    """An empty database of the test server, dropped afterwards."""
    return databases.temporary_database(ADMIN_URL, "cfgclone_test")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated-on-first-use database shared by the session."""
    with temporary_database() as url:
        yield url


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """An empty database for one test."""
    with temporary_database() as url:
        yield url


@pytest.fixture(scope="session")
async def store(database_url: str) -> AsyncIterator[Store]:
    """An open, migrated store on the session database."""
    store = Store(database_url, min_size=1, max_size=4, name="tests")
    await store.open(wait=True)
    await store.migrate()
    yield store
    await store.close()


ServerFactory = Callable[..., AbstractAsyncContextManager[tuple[RunningServer, grpc.aio.Channel]]]


@asynccontextmanager
async def serve_in_process(
    services: Sequence[ServiceDefinition],
    *,
    settings: ServerSettings | None = None,
    credentials: Credentials | None = None,
    tracer_provider: object | None = None,
    serving: bool = True,
    channel: grpc.aio.Channel | None = None,
    metrics_port: int | None = None,
) -> AsyncIterator[tuple[RunningServer, grpc.aio.Channel]]:
    """A real server on 127.0.0.1:0 and a real channel to it (and ``/metrics`` over HTTP
    with ``metrics_port``, 0 for a free port)."""
    running = await start_server(
        services,
        settings or ServerSettings(host="127.0.0.1", port=0),
        credentials=credentials,
        tracer_provider=tracer_provider,  # type: ignore[arg-type]
        serving=serving,
        metrics_port=metrics_port,
    )
    own_channel = channel is None
    channel = channel or grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield running, channel
    finally:
        if own_channel:
            await channel.close()
        await running.stop(0)


def service_settings(service: str, database_url: str) -> ServiceSettings:
    """Settings for a service under test, on ``database_url``."""
    from cfgclone.common.settings import DatabaseSettings

    return ServiceSettings(
        service=service,
        server=ServerSettings(host="127.0.0.1", port=0),
        database=DatabaseSettings(url=database_url),
    )
