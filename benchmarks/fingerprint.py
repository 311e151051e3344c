"""Fingerprint service benchmark: build from 1,000,000 stored samples, refine with 100,000.

Unlike ``fingerprint_model.py`` this goes through the service functions, so the
times include reading the samples out of PostgreSQL (binary COPY into numpy),
fitting the curves, encoding the result and storing it. In one temporary database
(created on ``CFGCLONE_BENCH_DATABASE_URL`` and dropped at the end):

1. one system is registered and ``--samples`` samples of the load metric and four
   standard KPIs are written by binary COPY, one per second per metric, ending
   ``--refine-samples`` seconds-worth before the present; the collector's daily
   partitions are then made for them, as a running collector would;
2. ``--refine-samples`` newer samples are written after that window;
3. each round builds a fresh fingerprint of the window (``build_s``) and refines
   it with the newer samples (``refine_s``); ``read_s`` times reading the window
   alone. One warm-up round runs first; the median of ``--repeats`` rounds is
   reported.

Prints one JSON object::

    {"samples": N, "refine_samples": M, "build_s": ..., "refine_s": ..., "read_s": ...,
     "repeats": R}

The targets are ``build_s`` under 1 s and ``refine_s`` under 0.15 s.

    .venv/bin/python benchmarks/fingerprint.py --json [--samples N] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from bench_support import temporary_database

from cfgclone.collector.copy_format import sample_rows_payload
from cfgclone.collector.reads import read_samples
from cfgclone.collector.retention import SampleRetention
from cfgclone.collector.systems import register_system
from cfgclone.common.store import Store
from cfgclone.fingerprint import service
from cfgclone.fingerprint.settings import FingerprintSettings
from cfgclone.v1 import common_pb2

SYSTEM = "bench-fingerprint-01"
SECOND_NS = 1_000_000_000
LOAD = "system.cpu.utilization"
KPIS = (
    "system.memory.utilization",
    "network.receive.bytes_per_second",
    "disk.write.bytes_per_second",
    "http.server.request.duration",
)
"""Standard KPIs written beside the load metric (the settings' default load metric)."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Window:
    """Samples of every metric over one stretch of time, as columns ready for COPY."""

    names: tuple[str, ...]
    ts_unix_ns: tuple[IntArray, ...]
    values: tuple[FloatArray, ...]

    @property
    def count(self) -> int:
        return sum(int(v.size) for v in self.values)


def busy_machine(per_metric: int, start_ns: int, seed: int) -> Window:
    """One sample per second of each metric, on a machine whose load follows the day.

    CPU utilisation follows a daily cycle between about 10% and 85% with a level
    that changes every minute and noise on top. Response time behaves like a queue,
    ``base / (1 - utilisation)``, so it is flat at low load and climbs past 70%;
    memory and network grow with load; disk writes come in bursts. KPI agents read
    their clocks independently of the load's, a fraction of a second apart.
    """
    rng = np.random.default_rng(seed)
    steps = np.arange(per_metric, dtype=np.int64)
    load_ts = start_ns + steps * SECOND_NS
    day = 2.0 * np.pi * (load_ts / SECOND_NS) / 86_400.0
    minute_levels = rng.normal(0.0, 6.0, per_metric // 60 + 1)[steps // 60]
    load = np.clip(
        47.5 + 37.5 * np.sin(day) + minute_levels + rng.normal(0, 1.5, per_metric), 0.5, 99.5
    )
    busy = np.minimum(load / 100.0, 0.97)
    kpi_ts = load_ts + rng.integers(1, SECOND_NS // 2, per_metric)
    kpis = {
        "system.memory.utilization": 35.0 + 0.25 * load + rng.normal(0.0, 1.0, per_metric),
        "network.receive.bytes_per_second": load * 2.0e5 * rng.lognormal(0.0, 0.3, per_metric),
        "disk.write.bytes_per_second": rng.gamma(0.5, 4.0e6, per_metric)
        * (rng.random(per_metric) < 0.3),
        "http.server.request.duration": 0.004 / (1.0 - busy) * rng.lognormal(0.0, 0.2, per_metric),
    }
    return Window(
        (LOAD, *KPIS),
        (load_ts, *(kpi_ts for _ in KPIS)),
        (load, *(kpis[name] for name in KPIS)),
    )


async def register(store: Store) -> tuple[int, dict[str, int]]:
    """Register the system and its metrics; their internal keys."""
    await register_system(
        store,
        common_pb2.System(
            name=f"systems/{SYSTEM}",
            cpu_cores=16,
            memory_bytes=64 * 2**30,
            architecture="x86_64",
            os="debian 12",
        ),
    )
    async with store.connection() as conn:
        cursor = await conn.execute("SELECT id FROM systems WHERE system_id = %s", (SYSTEM,))
        row = await cursor.fetchone()
        assert row is not None
        metric_ids = {}
        for name in (LOAD, *KPIS):
            cursor = await conn.execute(
                "INSERT INTO metrics (name) VALUES (%s) RETURNING id", (name,)
            )
            metric = await cursor.fetchone()
            assert metric is not None
            metric_ids[name] = int(metric[0])
    return int(row[0]), metric_ids


async def write(store: Store, window: Window, system_key: int, metric_ids: dict[str, int]) -> None:
    """All samples of a window in one binary COPY."""
    ids = np.concatenate(
        [
            np.full(ts.size, metric_ids[name], dtype=np.int32)
            for name, ts in zip(window.names, window.ts_unix_ns, strict=True)
        ]
    )
    payload = sample_rows_payload(
        np.concatenate(window.ts_unix_ns), system_key, ids, np.concatenate(window.values)
    )
    async with (
        store.transaction() as conn,
        conn.cursor().copy(
            "COPY samples (ts, system_id, metric_id, value) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        await copy.write(payload)


async def median_time(action: Callable[[], Awaitable[object]], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def run(samples: int, refine_samples: int, repeats: int) -> dict[str, float | int]:
    metrics = 1 + len(KPIS)
    per_metric, per_metric_new = samples // metrics, refine_samples // metrics
    # Windows on whole minutes, ending a minute before the present.
    now_s = time.time_ns() // SECOND_NS // 60 * 60 - 60
    refine_end_s = now_s
    build_end_s = refine_end_s - per_metric_new
    start_s = build_end_s - per_metric
    window = busy_machine(per_metric, start_s * SECOND_NS, seed=1)
    newer = busy_machine(per_metric_new, build_end_s * SECOND_NS, seed=2)
    start, build_end, refine_end = (
        datetime.fromtimestamp(s, UTC) for s in (start_s, build_end_s, refine_end_s)
    )
    settings = FingerprintSettings()
    request = service.BuildRequest(SYSTEM, start=start, end=build_end)

    with temporary_database() as url:
        store = Store(url, min_size=1, max_size=2)
        await store.open(wait=True)
        try:
            await store.migrate()
            system_key, metric_ids = await register(store)
            await write(store, window, system_key, metric_ids)
            await write(store, newer, system_key, metric_ids)
            await SampleRetention(store, timedelta(days=30)).run_once()
            async with store.connection() as conn:
                await conn.execute("VACUUM ANALYZE samples")

            async def read() -> None:
                async with store.connection() as conn:
                    await read_samples(conn, SYSTEM, start, build_end)

            async def build() -> str:
                fingerprint = await service.build(store, settings, request)
                if fingerprint.quality.samples != window.count:
                    raise SystemExit(
                        f"the build used {fingerprint.quality.samples} of {window.count} samples"
                    )
                return fingerprint.name

            builds: list[float] = []
            refines: list[float] = []
            merged = 0
            for round_ in range(repeats + 1):
                started = time.perf_counter()
                name = await build()
                built = time.perf_counter()
                fingerprint_id = name.rsplit("/", 1)[1]
                _, merged = await service.refine(
                    store, settings, SYSTEM, fingerprint_id, end=refine_end
                )
                refined = time.perf_counter()
                if round_:  # the first round warms up
                    builds.append(built - started)
                    refines.append(refined - built)
            read_s = await median_time(read, repeats)
        finally:
            await store.close()
    if merged != newer.count:
        raise SystemExit(f"refinement merged {merged} samples, expected {newer.count}")
    return {
        "samples": window.count,
        "refine_samples": newer.count,
        "build_s": round(statistics.median(builds), 4),
        "refine_s": round(statistics.median(refines), 4),
        "read_s": round(read_s, 4),
        "repeats": repeats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000, help="samples in the window")
    parser.add_argument("--refine-samples", type=int, default=100_000, help="newer samples")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; the median counts")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    result = asyncio.run(run(args.samples, args.refine_samples, args.repeats))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
