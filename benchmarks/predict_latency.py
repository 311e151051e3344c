"""Latency of a learned PredictImpact call through gRPC.

In a temporary database (created on ``CFGCLONE_BENCH_DATABASE_URL`` and dropped at the
end): ``--systems`` systems with a fingerprint each (built by the fingerprint service's
own code from two hours of synthetic samples), and ``--examples`` verified outcomes of
past changes spread over them. The similarity and predictor services run in processes
of their own, as deployed; the benchmark calls PredictImpact for one target system with
a proposed change, ``--calls`` times after ``--warmup`` calls (the first trains the
target's model, which is then kept until new examples arrive).

Prints one JSON object::

    {"calls": N, "examples": M, "p50_ms": ..., "p99_ms": ..., "verdicts": {...}}

The target is ``p99_ms`` under 20.

    .venv/bin/python benchmarks/predict_latency.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
from bench_support import service_process, temporary_database

from cfgclone.common.store import Store
from cfgclone.fingerprint import service as fingerprints
from cfgclone.fingerprint.settings import FingerprintSettings
from cfgclone.predictor import repository
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from cfgclone.v1 import predictor_service_pb2_grpc as pb_grpc

BASE = {"workers": 4, "cache_mb": 256, "debug_logging": False, "request_timeout_s": 30}


async def _samples(store: Store, system_id: str, seed: int) -> None:
    """Two hours of a load metric and a response time that rises past a knee."""
    rng = np.random.default_rng(seed)
    end = datetime.now(UTC)
    seconds = 7200
    ts = [end - timedelta(seconds=seconds - i) for i in range(0, seconds, 5)]
    load = np.exp(rng.uniform(np.log(2.0), np.log(95.0), len(ts)))
    latency = 5.0 + 0.5 * np.maximum(load - 40.0 + seed % 7, 0.0) + rng.normal(0, 0.3, len(ts))
    async with store.transaction() as conn:
        cursor = await conn.execute(
            "INSERT INTO systems (system_id, cpu_cores, memory_bytes, architecture, os) "
            "VALUES (%s, 8, 34359738368, 'x86_64', 'debian 12') RETURNING id",
            (system_id,),
        )
        key = (await cursor.fetchone())[0]  # type: ignore[index]
        ids = {}
        for name in ("system.cpu.utilization", "http.server.request.duration"):
            cursor = await conn.execute(
                "INSERT INTO metrics (name) VALUES (%s) ON CONFLICT (name) "
                "DO UPDATE SET name = EXCLUDED.name RETURNING id",
                (name,),
            )
            ids[name] = (await cursor.fetchone())[0]  # type: ignore[index]
        async with (
            conn.cursor() as cur,
            cur.copy("COPY samples (ts, system_id, metric_id, value) FROM STDIN") as copy,
        ):
            for moment, lo, la in zip(ts, load.tolist(), latency.tolist(), strict=True):
                await copy.write_row((moment, key, ids["system.cpu.utilization"], lo))
                await copy.write_row((moment, key, ids["http.server.request.duration"], la))


async def _history(store: Store, systems: list[str], examples: int) -> None:
    """Verified outcomes: debug logging slows responses by ~30%, cache size a little."""
    rng = np.random.default_rng(1)
    async with store.transaction() as conn:
        rows = {s: await repository.system(conn, s) for s in systems}
        latest = {s: await repository.latest_fingerprint(conn, rows[s]) for s in systems}
        vectors = {s: f.embedding for s, f in latest.items() if f is not None}
        for index in range(examples):
            system_id = systems[index % len(systems)]
            debug = bool(rng.random() < 0.5)
            cache = int(rng.choice([64, 128, 256, 512, 1024]))
            after = {**BASE, "debug_logging": debug, "cache_mb": cache}
            slower = (0.3 if debug else 0.0) + 0.05 * np.log2(256 / cache)
            await repository.insert_example(
                conn,
                repository.NewExample(
                    system=rows[system_id],
                    from_version=index + 1,
                    to_version=index + 2,
                    change_id=None,
                    embedding=vectors.get(system_id, ()),
                    before=BASE,
                    after=after,
                    observed={
                        "http.server.request.duration": float(slower + rng.normal(0, 0.02)),
                        "system.cpu.utilization": float(0.1 * debug + rng.normal(0, 0.02)),
                    },
                    origin="outcome",
                ),
            )


async def _prepare(url: str, systems: int, examples: int) -> list[str]:
    store = Store(url, min_size=1, max_size=4, name="bench")
    await store.open(wait=True)
    try:
        await store.migrate()
        names = [f"bench-{i:03d}" for i in range(systems)]
        for seed, name in enumerate(names):
            await _samples(store, name, seed)
            await fingerprints.build(
                store, FingerprintSettings(), fingerprints.BuildRequest(system_id=name)
            )
        await _history(store, names[1:], examples)
        async with store.transaction() as conn:
            target = await repository.system(conn, names[0])
            await conn.execute(
                "INSERT INTO configurations (system_id, version, kind, content, content_hash, "
                "applied_at) VALUES (%s, 1, 'simulated', %s::jsonb, 'x', now())",
                (target.key, json.dumps(BASE)),
            )
        return names
    finally:
        await store.close()


async def _measure(address: str, target: str, calls: int, warmup: int) -> dict[str, object]:
    proposal = common_pb2.Configuration(kind="simulated")
    proposal.content.update({**BASE, "debug_logging": True, "cache_mb": 128})
    request = pb.PredictImpactRequest(
        change=pb.ProposedChange(system=f"systems/{target}", configuration=proposal)
    )
    latencies = []
    verdicts: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.PredictorServiceStub(channel)
        for index in range(warmup + calls):
            started = time.perf_counter()
            reply = await stub.PredictImpact(request, timeout=60)
            elapsed = (time.perf_counter() - started) * 1000
            if index >= warmup:
                latencies.append(elapsed)
                verdicts[common_pb2.Verdict.Name(reply.prediction.verdict)] += 1
    return {
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "verdicts": dict(verdicts),
        "model_version": reply.prediction.model_version,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--systems", type=int, default=12)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    with temporary_database() as url:
        names = asyncio.run(_prepare(url, args.systems, args.examples))
        with service_process("similarity", url) as similarity:
            options = {
                "CFGCLONE_SIMILARITY_ADDRESS": similarity,
                "CFGCLONE_PREDICTOR_RETRAIN_INTERVAL_SECONDS": "0",
            }
            with service_process("predictor", url, options) as predictor:
                result = asyncio.run(_measure(predictor, names[0], args.calls, args.warmup))
    output = {"calls": args.calls, "examples": args.examples, **result}
    print(json.dumps(output) if args.json else json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
