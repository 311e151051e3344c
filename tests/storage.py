"""Putting samples straight into the database, for tests of the services that read them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from cfgclone.common.store import Store


async def store_samples(
    store: Store,
    system_id: str,
    metrics: Mapping[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]],
    *,
    cpu_cores: int = 8,
    memory_bytes: int = 32 * 2**30,
) -> None:
    """Register ``system_id`` if needed and store its samples, as the collector would."""
    async with store.transaction() as conn:
        cursor = await conn.execute(
            "INSERT INTO systems (system_id, cpu_cores, memory_bytes, architecture, os) "
            "VALUES (%s, %s, %s, 'x86_64', 'debian 12') "
            "ON CONFLICT (system_id) DO UPDATE SET cpu_cores = EXCLUDED.cpu_cores "
            "RETURNING id",
            (system_id, cpu_cores, memory_bytes),
        )
        row = await cursor.fetchone()
        assert row is not None
        system = row[0]
        for name, (ts_ns, values) in metrics.items():
            cursor = await conn.execute(
                "INSERT INTO metrics (name) VALUES (%s) "
                "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                (name,),
            )
            metric_row = await cursor.fetchone()
            assert metric_row is not None
            metric = metric_row[0]
            async with (
                conn.cursor() as cur,
                cur.copy("COPY samples (ts, system_id, metric_id, value) FROM STDIN") as copy,
            ):
                for ts, value in zip(ts_ns.tolist(), values.tolist(), strict=True):
                    await copy.write_row(
                        (datetime.fromtimestamp(ts / 1e9, UTC), system, metric, value)
                    )
            first = datetime.fromtimestamp(int(ts_ns.min()) / 1e9, UTC)
            last = datetime.fromtimestamp(int(ts_ns.max()) / 1e9, UTC)
            await conn.execute(
                "INSERT INTO series (system_id, metric_id, first_ts, last_ts) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (system_id, metric_id) DO UPDATE SET "
                "first_ts = LEAST(series.first_ts, EXCLUDED.first_ts), "
                "last_ts = GREATEST(series.last_ts, EXCLUDED.last_ts)",
                (system, metric, first, last),
            )
