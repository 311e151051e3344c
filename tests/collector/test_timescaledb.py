"""Samples on TimescaleDB: a hypertable with compression, and the retention policy.

These run when the test server has TimescaleDB installed and preloaded, and skip with
the reason otherwise (the native-partition tests in test_retention.py cover that store).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from cfgclone.collector.retention import SampleRetention
from cfgclone.common.store import Store

pytestmark = pytest.mark.timescaledb


async def test_samples_is_a_compressed_hypertable_by_day(store: Store) -> None:
    assert await store.has_timescaledb()
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'samples'"
        )
        assert await cursor.fetchone() == (True,)
        cursor = await conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_name = 'samples' AND column_name = 'ts'"
        )
        assert await cursor.fetchone() == (timedelta(days=1),)
        cursor = await conn.execute(
            "SELECT count(*) FROM timescaledb_information.jobs "
            "WHERE hypertable_name = 'samples' AND proc_name = 'policy_compression'"
        )
        assert await cursor.fetchone() == (1,)


async def test_retention_sets_one_timescaledb_retention_policy(store: Store) -> None:
    for days in (30, 7):  # a changed retention replaces the policy, never adds a second
        await SampleRetention(store, timedelta(days=days)).run_once()
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT config ->> 'drop_after' FROM timescaledb_information.jobs "
            "WHERE hypertable_name = 'samples' AND proc_name = 'policy_retention'"
        )
        rows = await cursor.fetchall()
    assert [row[0] for row in rows] == ["7 days"]
