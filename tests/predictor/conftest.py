"""Fixtures of the predictor's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cfgclone.common.store import Store


@pytest.fixture
async def own_store(fresh_database: str) -> AsyncIterator[Store]:
    """A database of its own: the learned model reads every training example there is."""
    store = Store(fresh_database, min_size=1, max_size=4, name="predictor-own")
    await store.open(wait=True)
    await store.migrate()
    yield store
    await store.close()
