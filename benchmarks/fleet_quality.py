"""Similarity and learned prediction on a generated fleet with known ground truth.

A fleet of ``--families`` families of ``--per-family`` systems is generated here, with its
own response models (not the demo's simulation): within a family the hardware, the
workload (level, daily swing, request mix) and the way the system responds are alike, and
the current configurations differ. Three response models: an M/M/1-like queue whose
latency grows as ``1 / (1 - utilisation)``; a saturating "knee" whose latency is flat
until 70% of capacity and rises quadratically after it; and "retries", where requests
that time out past 80% of capacity are retried and the retries add load of their own.
Some families stall now and then (latency plus a Pareto-distributed pause, as a garbage
collector or a lock does). Capacity depends on the configuration: ``workers`` per core
(too few leave cores idle, too many thrash), ``cache_mb`` against the family's working set
(hit ratio) and against memory (paging past 70% of it), and ``debug_logging`` (12%
slower, 20% more CPU). Samples carry noise; errors appear past 95% of capacity.

Everything goes through the public gRPC API of the four services, each started as its
own process on a temporary database: systems are registered and their samples written
to the collector, ``--versions`` past configuration versions per system are imported with
``apply_time`` (samples first, then the versions one by one, the natural order),
fingerprints are built, and then:

- ``precision_at_5``: share of each system's 5 nearest (FindSimilarSystems) in its family;
- ``cohort_ari``: adjusted Rand index of ListCohorts against the families;
- ``--proposals`` proposed changes per system are predicted (PredictImpact, learned, the
  default policy). A change is HARMFUL when, at the system's busy-hour load, it makes
  latency 10% worse, CPU 20% worse, or makes errors appear. ``harmful_auc`` ranks the
  changes by the predicted latency change; ``decided_share`` is the share not
  INCONCLUSIVE; ``harmful_precision`` and ``harmful_recall`` count NEGATIVE as "harmful"
  among the decided changes;
- ``clone_improved_share``: share of systems whose nearest neighbour's configuration,
  cloned as it is, would truly lower their busy-hour latency;
- ``first_predict_p99_ms`` (first PredictImpact on each system after the history import
  finished) and ``warm_predict_p99_ms`` (later ones, once the system's own model is
  fitted, as GetTrainingStatus shows).

``--skip-predictions`` measures similarity and cohorts only (no history import wait, no
PredictImpact), which is what the similarity weights are tuned with.

The suite runs as ``cfgclone up`` runs it (every service in its own process, on a
temporary database). Prints one JSON object. Measured on a shared, busy 2-core machine:
the default fleet (6 families of 6 systems) takes 20-40 minutes there, a few with
``--skip-predictions``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import grpc
import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from benchmarks.bench_support import temporary_database
from cfgclone import vocabulary
from cfgclone.adaptation.builtin import SIMULATED
from cfgclone.cli import suite
from cfgclone.common.settings import DatabaseSettings
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import collector_service_pb2_grpc as collector_grpc
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import fingerprint_service_pb2_grpc as fingerprint_grpc
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from cfgclone.v1 import predictor_service_pb2_grpc as predictor_grpc
from cfgclone.v1 import similarity_service_pb2 as similarity_pb
from cfgclone.v1 import similarity_service_pb2_grpc as similarity_grpc

LOAD = vocabulary.HTTP_REQUEST_RATE.name
LATENCY = vocabulary.HTTP_REQUEST_DURATION.name
CPU = vocabulary.CPU_UTILIZATION.name
ERRORS = vocabulary.HTTP_ERROR_RATIO.name
RECEIVE = vocabulary.NETWORK_RECEIVE.name
TRANSMIT = vocabulary.NETWORK_TRANSMIT.name
STEP_S = 10
GIB = 1 << 30


@dataclass(frozen=True)
class Family:
    """What the systems of one family share."""

    name: str
    cores: int
    memory_gib: int
    load: float
    """Mean offered load, requests per second."""
    swing: float
    """Relative amplitude of the daily load cycle."""
    service_ms: float
    """Service time of one request with a cold cache."""
    working_set_gib: float
    model: str
    """``queue``, ``knee`` or ``retries``."""
    request_kib: float
    """Mean request size; responses are ``response_ratio`` times larger (the mix)."""
    response_ratio: float
    stalls: float
    """Share of samples that catch a stall (a Pareto-distributed pause); 0 for none."""


FAMILIES = (
    Family("web-small", 4, 8, 120.0, 0.5, 12.0, 2.0, "queue", 2.0, 20.0, 0.0),
    Family("db-large", 32, 256, 900.0, 0.3, 25.0, 96.0, "knee", 8.0, 4.0, 0.02),
    Family("api-medium", 8, 32, 300.0, 0.7, 15.0, 8.0, "retries", 1.0, 6.0, 0.0),
    Family("batch-arm", 16, 64, 200.0, 0.2, 60.0, 24.0, "queue", 64.0, 0.5, 0.01),
    Family("cache-mem", 8, 128, 700.0, 0.4, 6.0, 80.0, "knee", 0.5, 30.0, 0.0),
    Family("edge-tiny", 2, 4, 40.0, 0.6, 20.0, 1.0, "retries", 4.0, 8.0, 0.03),
)


@dataclass(frozen=True)
class Machine:
    name: str
    family: Family
    cores: int
    memory_gib: int
    load: float
    seed: int


def _capacity(machine: Machine, config: dict[str, object]) -> tuple[float, float]:
    """Requests per second the machine can serve with ``config``, and the service time."""
    workers = float(config["workers"])  # type: ignore[arg-type]
    cache_gib = float(config["cache_mb"]) / 1024.0  # type: ignore[arg-type]
    per_core = workers / machine.cores
    busy = min(per_core, 1.0) * machine.cores
    thrash = 1.0 + 0.15 * max(per_core - 2.0, 0.0) ** 2
    hit = cache_gib / (cache_gib + machine.family.working_set_gib)
    service = machine.family.service_ms / 1000.0 * (0.35 + 0.65 * (1.0 - hit))
    pressure = cache_gib / machine.memory_gib
    if pressure > 0.7:
        service *= 1.0 + 6.0 * (pressure - 0.7)
    if config["debug_logging"]:
        service *= 1.12
    return busy / (service * thrash), service * thrash


def truth(machine: Machine, config: dict[str, object], load: float) -> dict[str, float]:
    """The machine's true KPIs at ``load`` with ``config``."""
    capacity, service = _capacity(machine, config)
    rho = load / capacity
    if machine.family.model == "queue":
        latency = service / (1.0 - min(rho, 0.97))
    elif machine.family.model == "retries":
        # Requests time out past 80% of capacity and are retried; the retries are load
        # too, so the share retried is a fixed point, found by a few rounds.
        retried = 0.0
        for _ in range(4):
            retried = min(1.0, 2.5 * max(rho * (1.0 + retried) - 0.8, 0.0))
        rho *= 1.0 + retried
        latency = service * (1.0 + 3.0 * retried) / (1.0 - min(rho, 0.97))
    else:
        latency = service * (1.0 + 12.0 * max(rho - 0.7, 0.0) ** 2)
    cpu_factor = 1.2 if config["debug_logging"] else 1.0
    cpu = min(1.0, 0.03 + cpu_factor * min(rho, 1.0) * 0.85)
    errors = max(rho - 0.95, 0.0) * 2.0
    return {LATENCY: latency, CPU: cpu, ERRORS: errors}


def _busy_load(machine: Machine) -> float:
    return machine.load * (1.0 + machine.family.swing)


def _harmful(machine: Machine, before: dict[str, object], after: dict[str, object]) -> bool:
    load = _busy_load(machine)
    a, b = truth(machine, before, load), truth(machine, after, load)
    return (
        b[LATENCY] > 1.10 * a[LATENCY]
        or b[CPU] > 1.20 * a[CPU]
        or (b[ERRORS] > 0.001 and a[ERRORS] <= 0.001)
    )


def fleet_of(families: int, per_family: int, seed: int) -> list[Machine]:
    rng = np.random.default_rng(seed)
    fleet = []
    for family in FAMILIES[:families]:
        for index in range(per_family):
            fleet.append(
                Machine(
                    name=f"{family.name}-{index:02d}-{uuid.uuid4().hex[:4]}",
                    family=family,
                    cores=family.cores,
                    memory_gib=family.memory_gib,
                    load=family.load * float(rng.uniform(0.85, 1.15)),
                    seed=int(rng.integers(1 << 30)),
                )
            )
    return fleet


def start_config(machine: Machine, rng: np.random.Generator) -> dict[str, object]:
    workers = max(1, round(machine.cores * float(rng.choice([0.75, 1.0, 1.5, 2.0]))))
    cache = int(machine.memory_gib * 1024 * float(rng.choice([0.1, 0.2, 0.3, 0.4])))
    return {"workers": workers, "cache_mb": cache, "debug_logging": False}


def _within_schema(name: str, value: int) -> int:
    """``value`` kept within the simulated kind's bounds, which the predictor enforces."""
    spec = SIMULATED.spec(name)
    high = spec.maximum if spec is not None and spec.maximum is not None else value
    return int(min(value, high))


def changed_config(config: dict[str, object], rng: np.random.Generator) -> dict[str, object]:
    """One plausible change an operator makes."""
    what = int(rng.integers(3))
    if what == 0:
        factor = float(rng.choice([0.5, 0.75, 1.5, 2.0, 3.0]))
        workers = max(1, round(int(config["workers"]) * factor))  # type: ignore[call-overload]
        return {**config, "workers": _within_schema("workers", workers)}
    if what == 1:
        factor = float(rng.choice([0.25, 0.5, 2.0, 3.0]))
        cache = max(64, int(int(config["cache_mb"]) * factor))  # type: ignore[call-overload]
        return {**config, "cache_mb": _within_schema("cache_mb", cache)}
    return {**config, "debug_logging": not config["debug_logging"]}


def machine_series(
    machine: Machine,
    config: dict[str, object],
    start: datetime,
    end: datetime,
    rng: np.random.Generator,
) -> dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]]:
    """The samples the machine sends from ``start`` to ``end`` with ``config``: by metric,
    timestamps (ns since the epoch) and values."""
    first = int(start.timestamp())
    ts = np.arange(first, int(end.timestamp()), STEP_S, dtype=np.int64)
    phase = 2.0 * math.pi * (ts % 86_400) / 86_400.0
    offered = machine.load * (1.0 + machine.family.swing * np.sin(phase))
    offered = offered * rng.lognormal(0.0, 0.08, ts.size)
    values: dict[str, list[float]] = {LATENCY: [], CPU: [], ERRORS: []}
    family = machine.family
    for load in offered:
        kpis = truth(machine, config, float(load))
        stall = 0.0
        if family.stalls > 0.0 and rng.random() < family.stalls:
            stall = family.service_ms / 1000.0 * float(rng.pareto(1.5) + 1.0) * 5.0
        values[LATENCY].append(kpis[LATENCY] * float(rng.lognormal(0.0, 0.05)) + stall)
        values[CPU].append(min(1.0, max(0.0, kpis[CPU] + float(rng.normal(0.0, 0.01)))))
        values[ERRORS].append(kpis[ERRORS])
    stamps = ts * 1_000_000_000
    found = {LOAD: (stamps, offered)}
    found.update({name: (stamps, np.asarray(series)) for name, series in values.items()})
    # The request mix: bytes in and out per request, the family's, with noise.
    received = offered * family.request_kib * 1024.0 * rng.lognormal(0.0, 0.1, ts.size)
    sent = received * family.response_ratio * rng.lognormal(0.0, 0.1, ts.size)
    found[RECEIVE] = (stamps, received)
    found[TRANSMIT] = (stamps, sent)
    return found


def _samples(
    machine: Machine,
    config: dict[str, object],
    start: datetime,
    end: datetime,
    rng: np.random.Generator,
) -> common_pb2.SampleBatch:
    batch = common_pb2.SampleBatch(system=f"systems/{machine.name}", batch_id=uuid.uuid4().hex)
    for name, (stamps, values) in machine_series(machine, config, start, end, rng).items():
        batch.series.add(metric=name, ts_unix_ns=stamps.tolist(), values=values.tolist())
    return batch


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@dataclass
class _Run:
    args: argparse.Namespace
    collector: collector_grpc.CollectorServiceStub
    fingerprint: fingerprint_grpc.FingerprintServiceStub
    similarity: similarity_grpc.SimilarityServiceStub
    predictor: predictor_grpc.PredictorServiceStub


def _prepare(run: _Run, fleet: list[Machine]) -> dict[str, dict[str, object]]:
    """Register, write history, import versions; the current configuration per system."""
    args = run.args
    window = timedelta(minutes=args.version_minutes)
    now = datetime.now(UTC).replace(microsecond=0)
    begin = now - window * args.versions
    current: dict[str, dict[str, object]] = {}
    for machine in fleet:
        rng = np.random.default_rng(machine.seed)
        system = common_pb2.System(
            name=f"systems/{machine.name}",
            hostname=machine.name,
            cpu_cores=machine.cores,
            memory_bytes=machine.memory_gib * GIB,
            os="debian 12",
            architecture="x86_64",
        )
        run.collector.RegisterSystem(collector_pb.RegisterSystemRequest(system=system))
        configs = [start_config(machine, rng)]
        for _ in range(args.versions - 1):
            configs.append(changed_config(configs[-1], rng))
        for index, config in enumerate(configs):
            start = begin + window * index
            end = start + window if index + 1 < len(configs) else now
            run.collector.WriteSamples(
                collector_pb.WriteSamplesRequest(batch=_samples(machine, config, start, end, rng))
            )
        for index, config in enumerate(configs):
            message = common_pb2.Configuration(kind="simulated")
            message.content.update(config)
            message.apply_time.FromDatetime(begin + window * index)
            run.predictor.CreateConfiguration(
                predictor_pb.CreateConfigurationRequest(
                    parent=f"systems/{machine.name}", configuration=message
                )
            )
        current[machine.name] = configs[-1]
    return current


def _wait_for_imports(run: _Run, within_s: float) -> tuple[int, float]:
    started = time.monotonic()
    while True:
        status = run.predictor.GetTrainingStatus(predictor_pb.GetTrainingStatusRequest())
        if status.pending_imports == 0:
            return int(status.examples), time.monotonic() - started
        if time.monotonic() - started > within_s:
            raise SystemExit(f"history imports still pending after {within_s} s")
        time.sleep(0.5)


def _wait_for_model(run: _Run, system_id: str, within_s: float = 120.0) -> None:
    """Until the predictor holds the system's own model (the first answer may have come
    from the fleet model while it was fitted)."""
    deadline = time.monotonic() + within_s
    request = predictor_pb.GetTrainingStatusRequest(system=f"systems/{system_id}")
    while time.monotonic() < deadline:
        status = run.predictor.GetTrainingStatus(request)
        if any(s.model_version for s in status.systems):
            return
        time.sleep(0.1)


def _fingerprints(run: _Run, fleet: list[Machine], minutes: int) -> None:
    now = datetime.now(UTC)
    for machine in fleet:
        request = fingerprint_pb.BuildFingerprintRequest(system=f"systems/{machine.name}")
        request.start_time.FromDatetime(now - timedelta(minutes=minutes))
        run.fingerprint.BuildFingerprint(request)


def _similarity(run: _Run, fleet: list[Machine]) -> dict[str, object]:
    family = {f"systems/{m.name}": m.family.name for m in fleet}
    hits, nearest = [], {}
    deadline = time.monotonic() + 60
    for machine in fleet:
        name = f"systems/{machine.name}"
        while True:
            try:
                reply = run.similarity.FindSimilarSystems(
                    similarity_pb.FindSimilarSystemsRequest(system=name, page_size=5)
                )
            except grpc.RpcError as error:
                # The similarity index loads new fingerprints every few seconds.
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:  # type: ignore[attr-defined]
                    raise
                reply = similarity_pb.FindSimilarSystemsResponse()
            if len(reply.similar_systems) >= min(5, len(fleet) - 1) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        others = [s.second for s in reply.similar_systems][:5]
        hits.extend(family.get(o) == machine.family.name for o in others)
        if others:
            nearest[machine.name] = others[0].removeprefix("systems/")
    cohorts = run.similarity.ListCohorts(similarity_pb.ListCohortsRequest(page_size=1000))
    assigned = {m: c.name for c in cohorts.cohorts for m in c.members}
    names = [f"systems/{m.name}" for m in fleet]
    ari = adjusted_rand_score(
        [family[n] for n in names], [assigned.get(n, f"alone-{n}") for n in names]
    )
    return {
        "precision_at_5": float(np.mean(hits)) if hits else 0.0,
        "cohort_ari": float(ari),
        "cohorts": len(cohorts.cohorts),
        "nearest": nearest,
    }


def _predictions(
    run: _Run, fleet: list[Machine], current: dict[str, dict[str, object]]
) -> dict[str, object]:
    harmful, predicted, verdicts, first_ms, warm_ms = [], [], [], [], []
    # Per KPI, how its verdicts fell on truly harmful and harmless changes: which KPI
    # decides, and which one leaves changes undecided.
    by_kpi: dict[str, dict[str, dict[str, int]]] = {}
    for machine in fleet:
        rng = np.random.default_rng(machine.seed + 1)
        before = current[machine.name]
        for index in range(run.args.proposals):
            after = changed_config(before, rng)
            while after == before:
                after = changed_config(before, rng)
            content = common_pb2.Configuration(kind="simulated")
            content.content.update(after)
            request = predictor_pb.PredictImpactRequest(
                change=predictor_pb.ProposedChange(
                    system=f"systems/{machine.name}", configuration=content
                )
            )
            started = time.perf_counter()
            reply = run.predictor.PredictImpact(request)
            elapsed = (time.perf_counter() - started) * 1000.0
            if index == 0:
                first_ms.append(elapsed)
                _wait_for_model(run, machine.name)
            else:
                warm_ms.append(elapsed)
            for _ in range(run.args.repeats):
                started = time.perf_counter()
                run.predictor.PredictImpact(request)
                warm_ms.append((time.perf_counter() - started) * 1000.0)
            kpis = {k.kpi: k for k in reply.prediction.kpis}
            latency = kpis.get(LATENCY)
            estimate = (
                latency.estimate.relative_change
                if latency is not None and latency.HasField("estimate")
                else 0.0
            )
            harmful.append(_harmful(machine, before, after))
            side = "harmful" if harmful[-1] else "harmless"
            for kpi in reply.prediction.kpis:
                name = common_pb2.Verdict.Name(kpi.verdict).removeprefix("VERDICT_").lower()
                counts = by_kpi.setdefault(kpi.kpi, {}).setdefault(side, {})
                counts[name] = counts.get(name, 0) + 1
            predicted.append(estimate)
            verdicts.append(reply.prediction.verdict)
    truth_array = np.asarray(harmful)
    decided = np.asarray([v != common_pb2.VERDICT_INCONCLUSIVE for v in verdicts])
    flagged = np.asarray([v == common_pb2.VERDICT_NEGATIVE for v in verdicts])
    true_positive = int(np.sum(flagged & truth_array & decided))
    auc = (
        float(roc_auc_score(truth_array, predicted))
        if 0 < truth_array.sum() < truth_array.size
        else float("nan")
    )
    return {
        "changes": int(truth_array.size),
        "harmful_changes": int(truth_array.sum()),
        "harmful_auc": auc,
        "decided_share": float(decided.mean()),
        "harmful_precision": true_positive / max(int(flagged.sum()), 1),
        "harmful_recall": true_positive / max(int(np.sum(truth_array & decided)), 1),
        "first_predict_p99_ms": _percentile(first_ms, 99),
        "warm_predict_p99_ms": _percentile(warm_ms, 99),
        "warm_predict_p50_ms": _percentile(warm_ms, 50),
        "kpi_verdicts": by_kpi,
    }


def _clone_improved(
    fleet: list[Machine], current: dict[str, dict[str, object]], nearest: dict[str, str]
) -> float:
    improved = []
    for machine in fleet:
        source = nearest.get(machine.name)
        if source is None:
            continue
        load = _busy_load(machine)
        mine = truth(machine, current[machine.name], load)[LATENCY]
        cloned = truth(machine, current[source], load)[LATENCY]
        improved.append(cloned < mine)
    return float(np.mean(improved)) if improved else 0.0


def _suite(stack: ExitStack, url: str) -> dict[str, str]:
    """The suite as ``cfgclone up`` starts it, on the database at ``url``; its addresses."""
    settings = DatabaseSettings(url=url, data_dir=Path(stack.enter_context(TemporaryDirectory())))
    up = stack.enter_context(
        suite.running_suite(settings, suite.free_base_port(), "127.0.0.1", 120.0)
    )
    return {service.name: service.address for service in up.services}


def _channels(stack: ExitStack, addresses: dict[str, str]) -> Iterator[grpc.Channel]:
    for name in ("collector", "fingerprint", "similarity", "predictor"):
        yield stack.enter_context(grpc.insecure_channel(addresses[name]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default)")
    parser.add_argument("--families", type=int, default=6, help=f"at most {len(FAMILIES)}")
    parser.add_argument("--per-family", type=int, default=6)
    parser.add_argument("--versions", type=int, default=7)
    parser.add_argument("--version-minutes", type=int, default=120)
    parser.add_argument("--proposals", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--skip-predictions",
        action="store_true",
        help="similarity and cohorts only: no wait for the history import, no PredictImpact",
    )
    args = parser.parse_args()
    if not 1 <= args.families <= len(FAMILIES):
        parser.error(f"--families is from 1 to {len(FAMILIES)}")
    fleet = fleet_of(args.families, args.per_family, args.seed)
    started = time.monotonic()
    with temporary_database() as url, ExitStack() as stack:
        addresses = _suite(stack, url)
        collector, fingerprint, similarity, predictor = _channels(stack, addresses)
        run = _Run(
            args,
            collector_grpc.CollectorServiceStub(collector),
            fingerprint_grpc.FingerprintServiceStub(fingerprint),
            similarity_grpc.SimilarityServiceStub(similarity),
            predictor_grpc.PredictorServiceStub(predictor),
        )
        current = _prepare(run, fleet)
        examples, import_s = (0, 0.0)
        if not args.skip_predictions:
            examples, import_s = _wait_for_imports(run, within_s=900)
        _fingerprints(run, fleet, args.version_minutes)
        found = _similarity(run, fleet)
        nearest = found.pop("nearest")
        quality = {} if args.skip_predictions else _predictions(run, fleet, current)
    result = {
        "benchmark": "fleet_quality",
        "systems": len(fleet),
        "families": args.families,
        "versions": args.versions,
        "seed": args.seed,
        "training_examples": examples,
        "import_wait_s": round(import_s, 1),
        **found,
        **quality,
        "clone_improved_share": _clone_improved(fleet, current, nearest),  # type: ignore[arg-type]
        "elapsed_s": round(time.monotonic() - started, 1),
        "note": "shared, busy 2-core machine",
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    os.environ.setdefault("CFGCLONE_LOG_LEVEL", "ERROR")
    main()
