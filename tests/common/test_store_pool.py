"""The pool fails fast when the database cannot be reached, and waits when it is only busy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from cfgclone.common.errors import Unavailable
from cfgclone.common.store import Store
from tests.common.helpers import CuttableProxy


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
async def proxied(database_url: str) -> AsyncIterator[tuple[Store, CuttableProxy]]:
    target = urlsplit(database_url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    store = Store(_through(database_url, proxy.port), min_size=1, max_size=2, busy_timeout=20)
    await store.open(wait=True)
    try:
        yield store, proxy
    finally:
        await store.close()
        await proxy.cut()


async def _one(store: Store) -> int:
    async with store.connection() as conn:
        cursor = await conn.execute("SELECT 1")
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_database_that_went_away_is_unavailable_before_a_2_s_deadline(
    proxied: tuple[Store, CuttableProxy],
) -> None:
    store, proxy = proxied
    assert await _one(store) == 1
    await proxy.cut()
    # A caller with a 2 s deadline hears UNAVAILABLE, not its own deadline passing
    # (the pool's connect timeout is 5 s).
    for _ in range(3):
        with pytest.raises(Unavailable) as down:
            await asyncio.wait_for(_one(store), timeout=2.0)
        assert down.value.reason == "DATABASE_UNAVAILABLE"
    await proxy.restore()
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        try:
            assert await _one(store) == 1
            break
        except Unavailable:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)


async def test_a_busy_pool_makes_callers_wait_rather_than_fail(
    proxied: tuple[Store, CuttableProxy],
) -> None:
    store, _ = proxied
    release = asyncio.Event()
    held = [asyncio.Event(), asyncio.Event()]

    async def hold(taken: asyncio.Event) -> None:
        async with store.connection() as conn:
            await conn.execute("SELECT 1")
            taken.set()
            await release.wait()

    holders = [asyncio.create_task(hold(taken)) for taken in held]
    await asyncio.wait_for(asyncio.gather(*(taken.wait() for taken in held)), timeout=10)
    waiting = asyncio.create_task(_one(store))
    await asyncio.sleep(1.5)  # past the 1 s in which an unreachable database is reported
    still_waiting = not waiting.done()
    release.set()
    await asyncio.gather(*holders)

    assert still_waiting
    assert await waiting == 1
