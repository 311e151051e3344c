"""Synthetic systems with known behaviour under load, for the fingerprint tests.

The load (CPU utilisation, percent) holds one level for each 10 s alignment bucket and
is sampled every second; KPIs are sampled on their own clocks, offset from the load's,
so every test exercises the alignment. Latency is flat until a known knee load and
rises linearly after it; memory follows load; network latency is noise.
"""

from __future__ import annotations

import numpy as np

from cfgclone.behaviour import DEFAULT_ALIGN_NS, SampleSeries

SECOND_NS = 1_000_000_000
BUCKET_SECONDS = DEFAULT_ALIGN_NS // SECOND_NS
LOAD = "system.cpu.utilization"
LATENCY = "http.server.request.duration"
MEMORY = "system.memory.utilization"
NETWORK = "db.client.operation.duration"


def latency_at(
    load: np.ndarray, knee: float, *, flat: float = 5.0, rise: float = 0.5
) -> np.ndarray:
    """The true latency curve: ``flat`` below the knee, rising by ``rise`` per load unit after."""
    return flat + rise * np.maximum(load - knee, 0.0)


def hockey_system(
    *,
    knee: float = 40.0,
    buckets: int = 2_000,
    seed: int = 0,
    start_bucket: int = 0,
    load_range: tuple[float, float] = (2.0, 95.0),
    noise: float = 0.3,
) -> dict[str, SampleSeries]:
    """A system observed for ``buckets`` 10 s buckets, starting at bucket ``start_bucket``."""
    rng = np.random.default_rng(seed)
    low, high = load_range
    levels = np.exp(rng.uniform(np.log(low), np.log(high), buckets))
    seconds = np.arange(buckets * BUCKET_SECONDS, dtype=np.int64)
    level = levels[seconds // BUCKET_SECONDS]
    start_ns = start_bucket * BUCKET_SECONDS * SECOND_NS
    load_ts = start_ns + seconds * SECOND_NS
    kpi_ts = load_ts + rng.integers(SECOND_NS // 5, SECOND_NS // 2, seconds.size)
    count = seconds.size
    return {
        LOAD: SampleSeries(load_ts, level + rng.normal(0.0, 0.05, count)),
        LATENCY: SampleSeries(kpi_ts, latency_at(level, knee) + rng.normal(0.0, noise, count)),
        MEMORY: SampleSeries(kpi_ts, 30.0 + 0.1 * level + rng.normal(0.0, 1.0, count)),
        NETWORK: SampleSeries(kpi_ts[::2], rng.lognormal(0.0, 1.0, count)[::2]),
    }


def split_at(
    metrics: dict[str, SampleSeries], cut_ns: int
) -> tuple[dict[str, SampleSeries], dict[str, SampleSeries]]:
    """The samples before ``cut_ns`` and those from it on."""
    before: dict[str, SampleSeries] = {}
    after: dict[str, SampleSeries] = {}
    for name, series in metrics.items():
        early = series.ts_unix_ns < cut_ns
        before[name] = SampleSeries(series.ts_unix_ns[early], series.values[early])
        after[name] = SampleSeries(series.ts_unix_ns[~early], series.values[~early])
    return before, after


def shuffled(metrics: dict[str, SampleSeries], seed: int) -> dict[str, SampleSeries]:
    """The same samples in a random order."""
    rng = np.random.default_rng(seed)
    result = {}
    for name, series in metrics.items():
        order = rng.permutation(len(series))
        result[name] = SampleSeries(series.ts_unix_ns[order], series.values[order])
    return result
