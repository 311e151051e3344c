"""Fixtures of the orchestrator's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cfgclone.common.store import Store


@pytest.fixture
async def own_store(fresh_database: str) -> AsyncIterator[Store]:
    """The demo's fleet has fixed names, so a test that runs it gets a database of its own."""
    store = Store(fresh_database, min_size=1, max_size=8, name="demo-tests")
    await store.open(wait=True)
    await store.migrate()
    yield store
    await store.close()
