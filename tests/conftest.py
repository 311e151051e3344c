"""Fixtures shared by every test: a real PostgreSQL database and real gRPC servers.

Tests use the PostgreSQL server named by ``CFGCLONE_TEST_DATABASE_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``). Each test session
creates a database of its own there and drops it at the end; ``fresh_database``
gives a test an empty one of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager

import grpc
import psycopg
import pytest
from psycopg import sql

from cfgclone.common.auth import Credentials
from cfgclone.common.server import RunningServer, ServiceDefinition, start_server
from cfgclone.common.settings import ServerSettings, ServiceSettings
from cfgclone.common.store import Store

ADMIN_URL = os.environ.get(
    "CFGCLONE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def database_url_for(name: str) -> str:
    """The admin URL with its database replaced by ``name``."""
    base, _, query = ADMIN_URL.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


@contextmanager
def temporary_database() -> Iterator[str]:
    """Create an empty database, yield its URL, drop it afterwards."""
    name = f"cfgclone_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url_for(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


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
