"""Benchmark of the pure fingerprint model: build from 1,000,000 samples, refine with 100,000.

Runs in process (no database, no gRPC) and prints one JSON object:

- ``build_s``: median time to build a fingerprint from ``samples`` samples;
- ``refine_s``: median time to merge ``refine_samples`` new samples into it, with decay;
- ``to_proto_s`` and ``embed_s``: encoding the result and computing its embedding (both
  fit the curves afresh);
- ``sort_s``: the time to sort the same number of int64 timestamps once, the ceiling
  a vectorised build is measured against (``build_per_sort``).

The targets are ``build_s`` well under 0.4 s and ``refine_s`` well under 0.1 s.

    .venv/bin/python benchmarks/fingerprint_model.py [--samples N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from cfgclone.behaviour import (
    SampleSeries,
    SystemProfile,
    build_fingerprint,
    embed,
    refine_fingerprint,
)
from cfgclone.behaviour.codec import fingerprint_to_proto

SECOND_NS = 1_000_000_000
KPIS = ("http.server.request.duration", "system.memory.utilization", "db.client.operation.duration")


def synthetic_window(samples: int, start_ns: int, seed: int) -> dict[str, SampleSeries]:
    """A load metric and three KPIs, equal shares of ``samples``, at 1 s with offset clocks.

    The load level changes every 10 s and spans 2-95 % log-uniformly; latency is flat
    until 40 % and rises after it, memory follows load, network latency is noise.
    """
    rng = np.random.default_rng(seed)
    per_metric = samples // (1 + len(KPIS))
    steps = np.arange(per_metric, dtype=np.int64)
    levels = np.exp(rng.uniform(np.log(2.0), np.log(95.0), per_metric // 10 + 1))[steps // 10]
    load_ts = start_ns + steps * SECOND_NS
    kpi_ts = load_ts + rng.integers(1, SECOND_NS // 2, per_metric)
    return {
        "system.cpu.utilization": SampleSeries(load_ts, levels + rng.normal(0.0, 0.05, per_metric)),
        "http.server.request.duration": SampleSeries(
            kpi_ts, 5.0 + 0.5 * np.maximum(levels - 40.0, 0.0) + rng.normal(0, 0.3, per_metric)
        ),
        "system.memory.utilization": SampleSeries(
            kpi_ts, 30.0 + 0.1 * levels + rng.normal(0, 1.0, per_metric)
        ),
        "db.client.operation.duration": SampleSeries(kpi_ts, rng.lognormal(0.0, 1.0, per_metric)),
    }


def median_time(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` runs, after one warm-up run."""
    action()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--refine-samples", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()

    system = SystemProfile(cpu_cores=8, memory_bytes=32 * 2**30, architecture="x86_64")
    window = synthetic_window(arguments.samples, 0, seed=1)
    later = synthetic_window(arguments.refine_samples, 10**9 * SECOND_NS, seed=2)
    fingerprint = build_fingerprint(window, system=system)
    timestamps = np.random.default_rng(3).integers(0, 10**18, arguments.samples)

    build_s = median_time(lambda: build_fingerprint(window, system=system), arguments.repeats)
    sort_s = median_time(lambda: np.sort(timestamps), arguments.repeats)
    result = {
        "samples": sum(len(series) for series in window.values()),
        "refine_samples": sum(len(series) for series in later.values()),
        "build_s": build_s,
        "refine_s": median_time(
            lambda: refine_fingerprint(fingerprint, later, decay=0.9), arguments.repeats
        ),
        # decayed(1.0) is a fresh copy, so curves are fitted again in every run.
        "to_proto_s": median_time(
            lambda: fingerprint_to_proto(fingerprint.decayed(1.0)), arguments.repeats
        ),
        "embed_s": median_time(lambda: embed(fingerprint.decayed(1.0)), arguments.repeats),
        "sort_s": sort_s,
        "build_per_sort": build_s / sort_s,
        "knee_load": fingerprint.curves["http.server.request.duration"].knee_load,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
