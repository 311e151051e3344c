"""Samples read back by binary COPY are exactly what was stored, per metric, in time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cfgclone.collector.reads import read_samples
from cfgclone.common.errors import NotFound
from cfgclone.common.store import Store


async def test_read_samples_returns_each_metric_in_time_order(store: Store) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    rng = np.random.default_rng(7)
    offsets = rng.permutation(500)  # stored out of order
    async with store.transaction() as conn:
        cursor = await conn.execute(
            "INSERT INTO systems (system_id) VALUES ('samples-read-01') RETURNING id"
        )
        row = await cursor.fetchone()
        assert row is not None
        system = row[0]
        cursor = await conn.execute(
            "INSERT INTO metrics (name) VALUES ('t.cpu'), ('t.latency') "
            "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id"
        )
        cpu, latency = [r[0] for r in await cursor.fetchall()]
        rows = [
            (start + timedelta(seconds=int(o)), system, metric, float(o) * factor)
            for o in offsets
            for metric, factor in ((cpu, 0.5), (latency, 2.0))
        ]
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO samples (ts, system_id, metric_id, value) VALUES (%s, %s, %s, %s)",
                rows,
            )
    async with store.connection() as conn:
        found = await read_samples(conn, "samples-read-01", start, start + timedelta(seconds=400))
    assert set(found) == {"t.cpu", "t.latency"}
    expected_seconds = np.arange(400)
    for name, factor in (("t.cpu", 0.5), ("t.latency", 2.0)):
        series = found[name]
        seconds = (series.ts_unix_ns - int(start.timestamp() * 1e9)) // 1_000_000_000
        np.testing.assert_array_equal(seconds, expected_seconds)
        np.testing.assert_allclose(series.values, expected_seconds * factor)


async def test_reading_an_unknown_system_is_not_found(store: Store) -> None:
    now = datetime.now(UTC)
    async with store.connection() as conn:
        with pytest.raises(NotFound, match="systems/nobody"):
            await read_samples(conn, "nobody", now - timedelta(hours=1), now)
