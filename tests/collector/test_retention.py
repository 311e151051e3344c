"""Daily partitions made ahead, rows moved out of the default partition, retention enforced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from cfgclone.collector.ingest import Ingestor
from cfgclone.collector.retention import SampleRetention, partition_name, plan_partitions
from cfgclone.common.store import Store
from tests.collector.conftest import SECOND, batch, series, stored

DAY = 86_400 * SECOND


@pytest.fixture
async def fresh_store(fresh_database: str) -> AsyncIterator[Store]:
    """A migrated store on an empty database of its own, with one system."""
    store = Store(fresh_database, min_size=1, max_size=3, name="retention-tests")
    await store.open(wait=True)
    await store.migrate()
    async with store.connection() as conn:
        await conn.execute("INSERT INTO systems (system_id) VALUES ('keeper-01')")
    yield store
    await store.close()


async def _where(store: Store) -> dict[str, int]:
    """Rows per table holding samples."""
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM samples GROUP BY 1"
        )
        return {name: int(count) for name, count in await cursor.fetchall()}


async def _partitions(store: Store) -> set[str]:
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'samples'::regclass"
        )
        return {row[0] for row in await cursor.fetchall()}


async def _ingest_days_ago(store: Store, *days_ago: int) -> None:
    """Ten samples on each of those days: at noon UTC, or the last ten seconds for today."""
    now = datetime.now(UTC)
    ingestor = Ingestor(store)
    for days in days_ago:
        if days == 0:
            last = now - timedelta(seconds=1)
        else:
            last = (now - timedelta(days=days)).replace(hour=12, minute=0, second=0)
        ts = int(last.timestamp()) * SECOND - np.arange(10, dtype=np.int64) * SECOND
        values = np.full(ts.shape, float(days))
        await ingestor.write(batch("systems/keeper-01", series("disk.used", ts, values)))


def test_the_plan_makes_today_and_the_days_ahead_and_drops_expired_days() -> None:
    today = date(2025, 3, 10)
    cutoff = datetime(2025, 3, 1, 6, tzinfo=UTC)  # 1 March is only partly expired

    plan = plan_partitions(
        ["samples_default", "samples_p20250227", "samples_p20250301", "samples_p20250310"],
        [date(2025, 3, 5), date(2025, 2, 20)],
        today,
        2,
        cutoff,
    )

    assert plan.create == (date(2025, 3, 5), date(2025, 3, 11), date(2025, 3, 12))
    assert plan.drop == ("samples_p20250227",)


@pytest.mark.plain_postgres
async def test_rows_of_a_day_move_out_of_the_default_partition_into_its_own(
    fresh_store: Store,
) -> None:
    await _ingest_days_ago(fresh_store, 0, 3)
    before = await stored(fresh_store, "systems/keeper-01")
    assert set(await _where(fresh_store)) == {"samples_default"}

    report = await SampleRetention(fresh_store, timedelta(days=30), ahead_days=2).run_once()

    today = datetime.now(UTC).date()
    expected = {partition_name(today + timedelta(days=n)) for n in (-3, 0, 1, 2)}
    assert expected <= await _partitions(fresh_store)
    assert report.moved_rows == len(before)
    assert "samples_default" not in await _where(fresh_store)
    assert await stored(fresh_store, "systems/keeper-01") == before
    # Ingest goes on into the new partitions.
    await _ingest_days_ago(fresh_store, 1)
    assert "samples_default" in await _where(fresh_store)
    second = await SampleRetention(fresh_store, timedelta(days=30)).run_once()
    assert second.created == (partition_name(today - timedelta(days=1)),)
    assert "samples_default" not in await _where(fresh_store)


@pytest.mark.plain_postgres
async def test_samples_past_retention_are_dropped_and_the_rest_kept(fresh_store: Store) -> None:
    await _ingest_days_ago(fresh_store, 20, 10, 3)
    # A collector that ran ten days ago would have made partitions for those days.
    ten_days_ago = datetime.now(UTC) - timedelta(days=9, hours=12)
    await SampleRetention(fresh_store, timedelta(days=15), clock=lambda: ten_days_ago).run_once()
    partitioned = await _partitions(fresh_store)
    assert partition_name((datetime.now(UTC) - timedelta(days=10)).date()) in partitioned
    await _ingest_days_ago(fresh_store, 40)  # late data, long expired: lands in the default

    report = await SampleRetention(fresh_store, timedelta(days=7)).run_once()

    remaining = {int(value) for _, value in await stored(fresh_store, "systems/keeper-01")}
    assert remaining == {3}
    assert partition_name((datetime.now(UTC) - timedelta(days=10)).date()) in report.dropped
    assert report.expired_default_rows == 10
    assert "samples_default" not in await _where(fresh_store)
