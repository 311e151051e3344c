"""Benchmark of the similarity engine, in process and through gRPC; prints one JSON object.

For each fleet size it builds synthetic embeddings (families of systems that share
hardware and workload, plus noise), rebuilds a `SimilarityIndex` from them with the
default settings (the approximate index from `ApproximateSettings.min_systems` on) and
measures:

- build time, and memory of the index's arrays (raw embeddings, label columns, the
  approximate index) and the process's resident growth while building;
- top-10 `SimilarityIndex.nearest` latency, p50 and p99 over the queries, with and
  without a label filter (the answers are explained, as the servicer returns them),
  and again while another process keeps one core busy;
- recall@10 with and without the label filter: the share of the exact scan's top 10
  (an index that never switches over, the reference) the answers hold, and the exact
  scan's own latency;
- the same queries as `SimilarityService.FindSimilarSystems` calls over a real gRPC
  channel to a real server on loopback, serving the same index (its database a
  temporary one made by bench_support), three ways: with the interceptors a service
  runs without an OTLP endpoint (metrics, auth, limits, errors, validation; no
  tracing), with tracing added as every service had it before (an SDK provider that
  exports nothing), and bare (no interceptor). Each call alternates with the same
  The calls come from a client in a process of its own, as every caller's are; the
  same queries are timed in process right before (`in_process_beside_grpc_ms`), and
  `grpc_added_ms` is the first way minus those in-process figures;
- the in-process latency again over five times the queries, with and without the
  garbage collector's generations frozen (`gc.freeze`, as the service does once its
  index is loaded), how many full collections ran meanwhile, and how long one full
  collection takes either way;
- scikit-learn's brute-force cosine `NearestNeighbors` p99 on the same prepared rows
  and the first 50 of the queries (a query reads every row: about a second each at a
  million), and the share of the top 10 both agree on;
- upsert latency (side-segment writes), and how long until a refined fingerprint is
  answered at its new place; clustering time and the cohorts found;
- a bare numpy matrix-vector product over the same rows, the floor under any exact
  search, and the machine's load average, since the cores may be shared.

Targets (quiet machine): at 1M top-10 p99 under 2 ms in process at recall@10 >= 0.99,
with and without a label filter; at 100k gRPC p99 within 1 ms of in process and under
3 ms; index memory at 1M under 800 MB; build of 1M under 120 s. Embeddings have the
layout fingerprints are built with.

    .venv/bin/python benchmarks/similarity.py --json [--sizes 100000 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
import psutil
from bench_support import temporary_database
from numpy.typing import NDArray
from opentelemetry.sdk.trace import TracerProvider
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from cfgclone.common.server import ServiceDefinition, start_server
from cfgclone.common.settings import DatabaseSettings, ServerSettings, ServiceSettings
from cfgclone.common.store import Store
from cfgclone.similarity import SimilarityIndex
from cfgclone.similarity.fleet import default_layout
from cfgclone.similarity.main import build_services
from cfgclone.similarity.settings import ApproximateSettings, SimilaritySettings
from cfgclone.v1 import similarity_service_pb2 as pb
from cfgclone.v1 import similarity_service_pb2_grpc as pb_grpc

LAYOUT = default_layout()
DIMENSION = LAYOUT.dimension
FAMILIES = 24
K = 10
ROLES = ({"role": "db"}, {"role": "web"}, {"role": "cache"}, {"role": "batch"})
TARGET_P99_MS = {100_000: 3.0, 1_000_000: 2.0}
TARGET_RECALL = 0.99
FILTER = {"role": "db"}
SKLEARN_QUERIES = 50
GC_ROUNDS = 5
EXACT = SimilaritySettings(approximate=ApproximateSettings(min_systems=2**62))

T = TypeVar("T")


def synthetic_fleet(
    size: int, seed: int
) -> tuple[list[str], NDArray[np.float32], NDArray[np.int64], list[dict[str, str]]]:
    """Ids, float32 embeddings, true family and labels of `size` systems."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((FAMILIES, DIMENSION)).astype(np.float32)
    units = (10.0 ** rng.uniform(-2.0, 4.0, DIMENSION)).astype(np.float32)
    families = rng.integers(0, FAMILIES, size)
    embeddings = rng.standard_normal((size, DIMENSION), dtype=np.float32)
    embeddings *= 0.35
    embeddings += centres[families]
    embeddings *= units
    ids = [f"sys-{i}" for i in range(size)]
    labels = [ROLES[i % len(ROLES)] for i in range(size)]
    return ids, embeddings, families, labels


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1e3
    return {
        "p50": round(float(np.percentile(values, 50)), 3),
        "p99": round(float(np.percentile(values, 99)), 3),
    }


def timed(call: Callable[[int], T], items: Sequence[int]) -> tuple[list[float], list[T]]:
    """Seconds spent on, and answers of, `call(item)` for each item, one at a time."""
    spent: list[float] = []
    answers: list[T] = []
    for item in items:
        start = time.perf_counter()
        answers.append(call(item))
        spent.append(time.perf_counter() - start)
    return spent, answers


def baselines(
    prepared: NDArray[np.float32], chosen: Sequence[int]
) -> tuple[list[float], list[float], list[list[int]]]:
    """Timings of a bare matrix-vector product per chosen row (the floor under any exact
    search), and of scikit-learn's brute-force cosine top K with its answers (the row
    itself left out)."""
    floor, _ = timed(lambda i: prepared @ prepared[i], chosen)
    chosen = chosen[:SKLEARN_QUERIES]
    model = NearestNeighbors(n_neighbors=K + 1, metric="cosine", algorithm="brute").fit(prepared)
    model.kneighbors(prepared[chosen[0]][None, :])  # warm up

    def query(i: int) -> list[int]:
        found = model.kneighbors(prepared[i][None, :], return_distance=False)[0]
        return [int(j) for j in found if j != i][:K]

    spent, answers = timed(query, chosen)
    return floor, spent, answers


def recall(answers: Sequence[list[Any]], reference: Sequence[list[Any]]) -> float:
    """Mean share of the reference's top K that the answers hold."""
    return float(
        np.mean(
            [
                len({a.second for a in ours} & {r.second for r in theirs}) / max(1, len(theirs))
                for ours, theirs in zip(answers, reference, strict=True)
            ]
        )
    )


def exact_reference(
    ids: list[str],
    embeddings: NDArray[np.float32],
    labels: list[dict[str, str]],
    chosen: Sequence[int],
) -> tuple[list[float], list[list[Any]], list[list[Any]]]:
    """Timings and answers of the exact scan (an index that never switches over), and its
    answers with the label filter: the reference recall is measured against."""
    exact = SimilarityIndex(LAYOUT, EXACT)
    exact.rebuild_from_matrix(ids, embeddings, labels)
    timed(lambda i: exact.nearest(ids[i], K), chosen[:20])
    spent, answers = timed(lambda i: exact.nearest(ids[i], K), chosen)
    _, filtered = timed(lambda i: exact.nearest(ids[i], K, labels=FILTER), chosen)
    return spent, answers, filtered


def busy_core() -> subprocess.Popen[bytes]:
    """Another process spinning on one core until it is terminated."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(size: int, queries: int, seed: int) -> dict[str, Any]:
    process = psutil.Process()
    ids, embeddings, families, labels = synthetic_fleet(size, seed)
    rss_before = process.memory_info().rss
    index = SimilarityIndex(LAYOUT, SimilaritySettings())
    start = time.perf_counter()
    index.rebuild_from_matrix(ids, embeddings, labels)
    build_s = time.perf_counter() - start
    rss_growth = process.memory_info().rss - rss_before
    memory_mb = index.memory_bytes() / 1e6

    rng = np.random.default_rng(seed + 1)
    chosen = [int(i) for i in rng.choice(size, size=queries, replace=False)]
    timed(lambda i: index.nearest(ids[i], K), chosen[:20])  # warm caches, page the rows in
    timed(lambda i: index.nearest(ids[i], K, labels=FILTER), chosen[:20])
    spent, answers = timed(lambda i: index.nearest(ids[i], K), chosen)
    filtered, filtered_answers = timed(lambda i: index.nearest(ids[i], K, labels=FILTER), chosen)
    spinner = busy_core()
    try:
        time.sleep(0.5)
        busy, _ = timed(lambda i: index.nearest(ids[i], K), chosen)
    finally:
        spinner.terminate()
        spinner.wait()

    collected, frozen_collected = [0], [0]
    unfrozen_spent = full_collections(
        collected, lambda: timed(lambda i: index.nearest(ids[i], K), chosen * GC_ROUNDS)[0]
    )
    gc.collect()
    pauses = [full_collection_s()]
    gc.freeze()
    try:
        pauses.append(full_collection_s())
        frozen_spent = full_collections(
            frozen_collected,
            lambda: timed(lambda i: index.nearest(ids[i], K), chosen * GC_ROUNDS)[0],
        )
    finally:
        gc.unfreeze()

    gc.freeze()  # as the service does once its index is loaded
    try:
        grpc_spent = asyncio.run(grpc_latencies(index, ids, chosen))
    finally:
        gc.unfreeze()

    exact_spent, exact_answers, exact_filtered = exact_reference(ids, embeddings, labels, chosen)

    floor, sklearn_spent, sklearn_answers = baselines(
        index.snapshot().space.prepare(embeddings), chosen
    )
    agreement = np.mean(
        [
            len({a.second for a in ours} & {ids[j] for j in theirs}) / K
            for ours, theirs in zip(answers, sklearn_answers, strict=False)
        ]
    )

    upsert_rng = np.random.default_rng(seed + 2)
    jitter = 1.0 + 0.01 * upsert_rng.standard_normal(DIMENSION)
    upsert_spent, _ = timed(
        lambda i: index.upsert(ids[i], embeddings[i] * jitter, labels[i]),
        [int(i) for i in upsert_rng.choice(size, size=50, replace=False)],
    )
    refined_spent, _ = timed(
        lambda i: refine(index, ids, embeddings, labels, i, int(families[i]), families),
        [int(i) for i in upsert_rng.choice(size, size=20, replace=False)],
    )

    start = time.perf_counter()
    cohorts = index.cohorts()
    clustering_s = time.perf_counter() - start
    found = {system_id: c.cohort_id for c in cohorts for system_id in c.members}
    cohort_ari = adjusted_rand_score(families, [found[system_id] for system_id in ids])

    latency = percentiles_ms(spent)
    grpc_latency = percentiles_ms(grpc_spent["interceptors"])
    beside = percentiles_ms(grpc_spent["in_process"])
    filtered_latency = percentiles_ms(filtered)
    recall_all = recall(answers, exact_answers)
    recall_filtered = recall(filtered_answers, exact_filtered)
    return {
        "grpc_find_similar_ms": grpc_latency,
        "in_process_beside_grpc_ms": beside,
        "grpc_added_ms": {key: round(grpc_latency[key] - beside[key], 3) for key in ("p50", "p99")},
        "grpc_traced_find_similar_ms": percentiles_ms(grpc_spent["traced"]),
        "grpc_bare_find_similar_ms": percentiles_ms(grpc_spent["bare"]),
        "nearest_gc_unfrozen_ms": percentiles_ms(unfrozen_spent),
        "nearest_gc_frozen_ms": percentiles_ms(frozen_spent),
        "full_collections_unfrozen_frozen": [collected[0], frozen_collected[0]],
        "full_collection_pause_unfrozen_frozen_ms": [round(p * 1e3, 2) for p in pauses],
        "systems": size,
        "approximate": index.snapshot().approximate,
        "build_s": round(build_s, 2),
        "nearest_ms": latency,
        "nearest_with_label_filter_ms": filtered_latency,
        "nearest_with_one_core_busy_ms": percentiles_ms(busy),
        "recall": round(recall_all, 4),
        "recall_with_label_filter": round(recall_filtered, 4),
        "exact_scan_ms": percentiles_ms(exact_spent),
        "bare_matvec_ms": percentiles_ms(floor),
        "sklearn_brute_cosine_ms": percentiles_ms(sklearn_spent),
        "top10_agreement_with_sklearn": round(float(agreement), 4),
        "upsert_ms": percentiles_ms(upsert_spent),
        "refined_fingerprint_visible_ms": percentiles_ms(refined_spent),
        "clustering_s": round(clustering_s, 2),
        "cohorts": len(cohorts),
        "cohorts_adjusted_rand_vs_families": round(float(cohort_ari), 3),
        "index_arrays_mb": round(memory_mb, 1),
        "rss_growth_during_build_mb": round(rss_growth / 1e6, 1),
        "target_p99_ms": TARGET_P99_MS.get(size),
        "meets_target": (
            None
            if size not in TARGET_P99_MS
            else latency["p99"] < TARGET_P99_MS[size]
            and filtered_latency["p99"] < TARGET_P99_MS[size]
            and min(recall_all, recall_filtered) >= TARGET_RECALL
        ),
    }


def refine(
    index: SimilarityIndex,
    ids: list[str],
    embeddings: NDArray[np.float32],
    labels: list[dict[str, str]],
    i: int,
    family: int,
    families: NDArray[np.int64],
) -> None:
    """Moves system i to another family's place and waits until a query finds it there."""
    target = int(np.flatnonzero(families == (family + 1) % FAMILIES)[0])
    index.upsert(ids[i], embeddings[target], labels[i])
    while ids[i] not in {a.second for a in index.nearest(ids[target], K)}:
        time.sleep(0.001)


def full_collections(count: list[int], run: Callable[[], T]) -> T:
    """`run()`, with the number of full (generation 2) collections it caused added to count."""
    before = gc.get_stats()[2]["collections"]
    result = run()
    count[0] += gc.get_stats()[2]["collections"] - before
    return result


def full_collection_s() -> float:
    """Seconds one full collection takes: the pause a query waits out when one runs."""
    start = time.perf_counter()
    gc.collect()
    return time.perf_counter() - start


async def grpc_latencies(
    index: SimilarityIndex, ids: list[str], chosen: Sequence[int]
) -> dict[str, list[float]]:
    """Seconds per top-10 FindSimilarSystems call through a real channel to a real server
    serving `index`: with the service's interceptors (no OTLP endpoint: no tracing), with
    tracing added (a provider exporting nothing), and with no interceptor at all."""
    with temporary_database() as url:
        store = Store(url)
        await store.open(wait=True)
        await store.migrate()
        settings = ServiceSettings(
            service="similarity",
            database=DatabaseSettings(url=url),
            options={"SYNC_INTERVAL_SECONDS": "3600"},
        )
        services = await build_services(settings, store)
        services[0].servicer._fleet.index = index  # type: ignore[attr-defined]
        spent: dict[str, list[float]] = {"in_process": []}
        spent["interceptors"] = await _served(services, chosen, ids, None, spent["in_process"])
        spent["traced"] = await _served(services, chosen, ids, TracerProvider(), [])
        spent["bare"] = await _served_bare(services[0], chosen, ids)
        await store.close()
        return spent


async def _served(
    services: Sequence[ServiceDefinition],
    chosen: Sequence[int],
    ids: list[str],
    provider: TracerProvider | None,
    in_process: list[float],
) -> list[float]:
    server = await start_server(
        services, ServerSettings(port=0), serving=True, tracer_provider=provider
    )
    index: SimilarityIndex = services[0].servicer._fleet.index  # type: ignore[attr-defined]
    try:
        return await _calls(server.port, chosen, ids, index, in_process)
    finally:
        await server.stop(0)


async def _served_bare(
    service: ServiceDefinition, chosen: Sequence[int], ids: list[str]
) -> list[float]:
    server = grpc.aio.server()
    service.add_to_server(service.servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        return await _calls(port, chosen, ids, None, [])
    finally:
        await server.stop(0)


async def _calls(
    port: int,
    chosen: Sequence[int],
    ids: list[str],
    index: SimilarityIndex | None,
    in_process: list[float],
) -> list[float]:
    """Seconds per call, timed by a client in a process of its own, as every caller of
    the service is: a client in the server's process would share its interpreter and
    event loop and count its own work as the server's. With `index`, the same queries
    (k + 1, as the servicer asks for one more to know whether a next page exists) are
    timed in process right before, into `in_process`, so both see the same load."""
    names = [f"systems/{ids[i]}" for i in chosen]
    if index is not None:
        for i in chosen:
            start = time.perf_counter()
            index.nearest(ids[i], K + 1)
            in_process.append(time.perf_counter() - start)
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client-port",
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await client.communicate(json.dumps(names).encode())
    if client.returncode != 0:
        raise RuntimeError(f"the gRPC client exited with {client.returncode}")
    spent: list[float] = json.loads(out)
    return spent


def client_timings(port: int, names: Sequence[str]) -> list[float]:
    """Seconds per top-10 FindSimilarSystems call to `port`, after 20 calls to warm up."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.SimilarityServiceStub(channel)
        for name in names[:20]:
            stub.FindSimilarSystems(pb.FindSimilarSystemsRequest(system=name, page_size=K))
        spent = []
        for name in names:
            start = time.perf_counter()
            stub.FindSimilarSystems(pb.FindSimilarSystemsRequest(system=name, page_size=K))
            spent.append(time.perf_counter() - start)
    return spent


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the issue names, by fleet size."""
    out: dict[str, Any] = {}
    for result in results:
        out[f"n_{result['systems']}"] = {
            "p50_ms": result["nearest_ms"]["p50"],
            "p99_ms": result["nearest_ms"]["p99"],
            "label_filter_p99_ms": result["nearest_with_label_filter_ms"]["p99"],
            "one_core_busy_p99_ms": result["nearest_with_one_core_busy_ms"]["p99"],
            "recall": result["recall"],
            "recall_with_label_filter": result["recall_with_label_filter"],
            "exact_scan_p99_ms": result["exact_scan_ms"]["p99"],
            "grpc_p50_ms": result["grpc_find_similar_ms"]["p50"],
            "grpc_p99_ms": result["grpc_find_similar_ms"]["p99"],
            "in_process_beside_grpc_p50_ms": result["in_process_beside_grpc_ms"]["p50"],
            "grpc_added_p50_ms": result["grpc_added_ms"]["p50"],
            "grpc_added_p99_ms": result["grpc_added_ms"]["p99"],
            "grpc_traced_p50_ms": result["grpc_traced_find_similar_ms"]["p50"],
            "grpc_bare_p50_ms": result["grpc_bare_find_similar_ms"]["p50"],
            "gc_frozen_p99_ms": result["nearest_gc_frozen_ms"]["p99"],
            "gc_unfrozen_p99_ms": result["nearest_gc_unfrozen_ms"]["p99"],
            "sklearn_p99_ms": result["sklearn_brute_cosine_ms"]["p99"],
            "agreement": result["top10_agreement_with_sklearn"],
            "index_mb": result["index_arrays_mb"],
            "build_s": result["build_s"],
            "refined_visible_p99_ms": result["refined_fingerprint_visible_ms"]["p99"],
            "cluster_s": result["clustering_s"],
        }
    out["cluster_s"] = max(r["clustering_s"] for r in results)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark of the similarity engine.")
    parser.add_argument("--json", action="store_true", help="print one JSON object (default)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--client-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client_port is not None:  # the gRPC client of `_calls`, in its own process
        json.dump(client_timings(args.client_port, json.load(sys.stdin)), sys.stdout)
        return 0
    if args.queries < 1:
        parser.error("--queries must be at least 1")
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    results = [measure(size, args.queries, args.seed) for size in args.sizes]
    report = {
        **summary(results),
        "benchmark": "similarity",
        "dimension": DIMENSION,
        "groups": list(LAYOUT.names),
        "k": K,
        "queries": args.queries,
        "cpu_count": psutil.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "results": results,
        "total_s": round(time.perf_counter() - started, 1),
    }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
