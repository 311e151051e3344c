"""Ingest benchmark: the collector against a bare binary COPY of the same rows.

In one run, on one temporary database (created on the PostgreSQL server at
``CFGCLONE_BENCH_DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``,
and dropped at the end) and into the same ``samples`` table:

1. ``copy``: the rows as one binary COPY payload built with numpy, sent in one
   COPY in one transaction: the ceiling. Building the payload is not timed.
2. ``grpc``: the same rows given to the agent's batching client
   (:class:`BatchBuilder` columns into batches of ``--batch-samples``, streamed by
   :class:`CollectorClient` over one StreamSamples call) and stored by a collector
   running as its own process, with validation, idempotency and the metric
   dictionary. Timed from the first batch built to the collector's answer.

The table is emptied before each run and each is repeated ``--rounds`` times;
the best rate of each is reported, so both get the same treatment. Prints::

    {"rows": N, "copy_rows_per_s": ..., "grpc_rows_per_s": ..., "ratio": ...}

The target is ``ratio >= 0.9``.

    .venv/bin/python benchmarks/ingest.py --json [--rows N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt
import psycopg
from bench_support import collector_process, temporary_database

from cfgclone.collector.agent_client import CollectorClient
from cfgclone.collector.batching import GAUGE, BatchBuilder
from cfgclone.collector.copy_format import sample_rows_payload
from cfgclone.collector.retention import SampleRetention
from cfgclone.common.store import Store
from cfgclone.v1 import common_pb2

SYSTEM = "bench-01"
METRICS = 10


@dataclass(frozen=True)
class Rows:
    """The benchmark rows as one column set per metric."""

    names: list[str]
    ts_unix_ns: npt.NDArray[np.int64]
    values: list[npt.NDArray[np.float64]]

    @property
    def count(self) -> int:
        return len(self.names) * int(self.ts_unix_ns.shape[0])


def make_rows(rows: int) -> Rows:
    """``rows`` samples over ``METRICS`` metrics, one per millisecond, ending a minute ago."""
    per_metric = rows // METRICS
    end = time.time_ns() - 60 * 10**9
    ts = end - (np.arange(per_metric, dtype=np.int64)[::-1] * 1_000_000)
    generator = np.random.default_rng(7)
    return Rows(
        [f"bench.metric_{i}" for i in range(METRICS)],
        ts,
        [generator.random(per_metric) * 100 for _ in range(METRICS)],
    )


async def prepare_database(url: str, rows: Rows) -> tuple[int, list[int]]:
    """Migrate, make today's partitions, register the system and the metrics."""
    store = Store(url, min_size=1, max_size=2)
    await store.open(wait=True)
    try:
        await store.migrate()
        await SampleRetention(store, timedelta(days=30)).run_once()
        async with store.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO systems (system_id) VALUES (%s) RETURNING id", (SYSTEM,)
            )
            row = await cursor.fetchone()
            assert row is not None
            metric_ids = []
            for name in rows.names:
                cursor = await conn.execute(
                    "INSERT INTO metrics (name, unit, kind) VALUES (%s, '', %s) RETURNING id",
                    (name, GAUGE),
                )
                metric = await cursor.fetchone()
                assert metric is not None
                metric_ids.append(int(metric[0]))
        return int(row[0]), metric_ids
    finally:
        await store.close()


async def empty_samples(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("TRUNCATE samples, series, ingested_batches")
        await conn.execute("VACUUM ANALYZE samples")


async def bare_copy(url: str, rows: Rows, system_key: int, metric_ids: list[int]) -> float:
    """Seconds to COPY every row in one binary COPY."""
    per_metric = rows.ts_unix_ns.shape[0]
    payload = sample_rows_payload(
        np.tile(rows.ts_unix_ns, METRICS),
        system_key,
        np.repeat(np.asarray(metric_ids, dtype=np.int32), per_metric),
        np.concatenate(rows.values),
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        async with (
            conn.transaction(),
            conn.cursor().copy(
                "COPY samples (ts, system_id, metric_id, value) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            await copy.write(payload)
        return time.perf_counter() - started


def batches(rows: Rows, batch_samples: int) -> Iterator[common_pb2.SampleBatch]:
    """The agent's batching of the rows, made lazily as the stream asks for them."""
    builder = BatchBuilder(f"systems/{SYSTEM}", max_samples=batch_samples)
    for name, values in zip(rows.names, rows.values, strict=True):
        yield from builder.add_series(name, rows.ts_unix_ns, values, kind=GAUGE)
    last = builder.flush()
    if last is not None:
        yield last


async def through_collector(address: str, rows: Rows, batch_samples: int) -> float:
    """Seconds for the agent's client to stream every row and the collector to store them."""
    client = CollectorClient(address, call_timeout=600)
    try:
        started = time.perf_counter()
        response = await client.stream(batches(rows, batch_samples))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    if response.stored_samples != rows.count:
        raise SystemExit(f"the collector stored {response.stored_samples} of {rows.count} rows")
    return elapsed


async def run(rows_wanted: int, rounds: int, batch_samples: int) -> dict[str, float | int]:
    rows = make_rows(rows_wanted)
    with temporary_database() as url:
        system_key, metric_ids = await prepare_database(url, rows)
        with collector_process(url) as address:
            copy_times, grpc_times = [], []
            for _ in range(rounds):
                await empty_samples(url)
                copy_times.append(await bare_copy(url, rows, system_key, metric_ids))
                await empty_samples(url)
                grpc_times.append(await through_collector(address, rows, batch_samples))
    copy_rate = rows.count / min(copy_times)
    grpc_rate = rows.count / min(grpc_times)
    return {
        "rows": rows.count,
        "copy_rows_per_s": round(copy_rate),
        "grpc_rows_per_s": round(grpc_rate),
        "ratio": round(grpc_rate / copy_rate, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each; the best counts")
    parser.add_argument("--batch-samples", type=int, default=100_000, help="samples per batch")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    result = asyncio.run(run(args.rows, args.rounds, args.batch_samples))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
