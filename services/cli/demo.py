"""``cfgclone demo``: four stories on a small simulated fleet, told as a person would read them.

The fleet is eight simulated machines (their KPIs follow the configuration applied to
them, written through the collector as agents would): ``db-01`` runs a tuned
configuration, ``db-02`` and ``db-03`` are its look-alikes, ``db-small`` has a quarter
of its cores and memory, and web and batch machines serve other workloads. Every
machine brings six hours of history, so each has a fingerprint and a place among its
look-alikes.

1. Cloning db-01's configuration to db-02: alike enough, so it is cloned as is,
   predicted, applied, verified on live metrics and kept.
2. Cloning it to db-small: too different to copy, so it is adapted (workers follow
   cores, the cache follows memory), and the best predicted adaptation is applied.
3. Turning on debug logging on db-02: the shadow run predicts 30% slower responses, so
   the change is refused before it lands, and the refusal is logged with its evidence.
4. The same change on two machines: a 24 GB cache, predicted by a shadow of each. The
   shadow honours each machine's memory and recorded load, so it is fine on db-02
   (64 GiB) and would page db-small (16 GiB).

The stories are plain functions of the services' stubs, so the end-to-end test runs
the same stories against servers of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2, json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cfgclone.cli.suite import RunningSuite
from cfgclone.common.clients import open_channel
from cfgclone.simulation.fleet import SimulatedFleet, SimulatedMachine
from cfgclone.v1 import collector_service_pb2_grpc as collector_grpc
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import fingerprint_service_pb2_grpc as fingerprint_grpc
from cfgclone.v1 import orchestrator_service_pb2 as orchestrator_pb
from cfgclone.v1 import orchestrator_service_pb2_grpc as orchestrator_grpc
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from cfgclone.v1 import predictor_service_pb2_grpc as predictor_grpc
from cfgclone.v1 import similarity_service_pb2 as similarity_pb
from cfgclone.v1 import similarity_service_pb2_grpc as similarity_grpc

GIB = 2**30
TUNED = {"workers": 16, "cache_mb": 16384, "debug_logging": False, "request_timeout_s": 30}
SOURCE = SimulatedMachine(
    "db-01",
    cpu_cores=16,
    memory_bytes=64 * GIB,
    labels={"role": "db"},
    configuration=TUNED,
    rate_tps=4000.0,
)
LOOKALIKE = SimulatedMachine(
    "db-02",
    cpu_cores=16,
    memory_bytes=64 * GIB,
    labels={"role": "db"},
    configuration={**TUNED, "cache_mb": 12288, "request_timeout_s": 60},
    rate_tps=4000.0,
)
SMALL = SimulatedMachine(
    "db-small",
    cpu_cores=4,
    memory_bytes=16 * GIB,
    labels={"role": "db"},
    configuration={"workers": 4, "cache_mb": 1024, "debug_logging": False},
    rate_tps=1000.0,
)
FLEET = (
    SOURCE,
    LOOKALIKE,
    SimulatedMachine(
        "db-03",
        cpu_cores=16,
        memory_bytes=64 * GIB,
        labels={"role": "db"},
        configuration=TUNED,
        rate_tps=4000.0,
    ),
    SMALL,
    SimulatedMachine(
        "db-small-2",
        cpu_cores=4,
        memory_bytes=16 * GIB,
        labels={"role": "db"},
        configuration={"workers": 4, "cache_mb": 1024, "debug_logging": False},
        rate_tps=1000.0,
    ),
    SimulatedMachine(
        "web-01", cpu_cores=8, memory_bytes=16 * GIB, labels={"role": "web"}, rate_tps=1500.0
    ),
    SimulatedMachine(
        "web-02", cpu_cores=8, memory_bytes=16 * GIB, labels={"role": "web"}, rate_tps=1500.0
    ),
    SimulatedMachine(
        "batch-01", cpu_cores=32, memory_bytes=128 * GIB, labels={"role": "batch"}, rate_tps=300.0
    ),
)
POLICY = "policies/demo"
CLONE_THRESHOLD = 0.8
"""Clone as is at this similarity or more. The service's default (0.9) suits fleets of
hundreds, whose standardisation is settled; among these eight machines the look-alikes
measure about 0.9 and the smaller database host about 0.55."""
HARMFUL = {"debug_logging": True}
BIG_CACHE = {"cache_mb": 24576}
"""Fits db-02's 64 GiB; three quarters of db-small's 16 GiB is 12 GiB."""

Say = Callable[[str], None]


@dataclass(frozen=True)
class Stubs:
    """One stub per service, on channels the caller owns."""

    collector: Any
    fingerprint: Any
    similarity: Any
    predictor: Any
    orchestrator: Any

    @classmethod
    def on(cls, channels: dict[str, grpc.aio.Channel]) -> Stubs:
        return cls(
            collector=collector_grpc.CollectorServiceStub(channels["collector"]),
            fingerprint=fingerprint_grpc.FingerprintServiceStub(channels["fingerprint"]),
            similarity=similarity_grpc.SimilarityServiceStub(channels["similarity"]),
            predictor=predictor_grpc.PredictorServiceStub(channels["predictor"]),
            orchestrator=orchestrator_grpc.OrchestratorServiceStub(channels["orchestrator"]),
        )


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=seconds))
    return duration


def demo_policy() -> common_pb2.Policy:
    """What users feel is critical; verification judges a few seconds of live samples."""

    def threshold(kpi: str, higher_is_better: bool, limit: float, critical: bool) -> Any:
        direction = (
            common_pb2.KPI_DIRECTION_HIGHER_IS_BETTER
            if higher_is_better
            else common_pb2.KPI_DIRECTION_LOWER_IS_BETTER
        )
        return common_pb2.KpiThreshold(
            kpi=kpi, direction=direction, max_relative_change=limit, critical=critical
        )

    return common_pb2.Policy(
        name=POLICY,
        thresholds=[
            # Patterns, so that the shadow run's KPIs (db.client.operation.duration,
            # postgresql.commits) and the live ones (http.server.request.duration and
            # .rate) are both read; CPU and memory have the same names in both.
            threshold("*.duration", False, 0.15, True),
            threshold("*.request.rate", True, 0.15, True),
            threshold("*.commits", True, 0.15, True),
            # Resources are sized on purpose: a bigger cache uses more memory.
            threshold("system.cpu.*", False, 0.5, False),
            threshold("system.memory.*", False, 2.0, False),
        ],
        min_confidence=0.9,
        on_inconclusive=common_pb2.POLICY_ACTION_HOLD,
        on_nodata=common_pb2.POLICY_ACTION_REJECT,
        verification_delay=_duration(1.0),
        verification_window=_duration(10.0),
        min_samples=10,
    )


async def prepare(stubs: Stubs, say: Say) -> SimulatedFleet:
    """Register the fleet with six hours of history, fingerprint it, add the policy."""
    fleet = SimulatedFleet(
        stubs.collector, stubs.predictor, FLEET, seed=1, history_spread=0.5, live_spread=0.1
    )
    await fleet.register(history=timedelta(hours=6))
    for machine in FLEET:
        reply = await stubs.fingerprint.BuildFingerprint(
            fingerprint_pb.BuildFingerprintRequest(system=machine.name), timeout=30
        )
        quality = reply.fingerprint.quality
        say(
            f"   {machine.name:<17} {machine.cpu_cores:>2} cores {machine.memory_bytes // GIB:>3}"
            f" GiB  {quality.samples:>6} samples, {quality.load_min:.0f}-"
            f"{quality.load_max:.0f} requests/s"
        )
    await stubs.predictor.CreatePolicy(predictor_pb.CreatePolicyRequest(policy=demo_policy()))
    await _until_indexed(stubs, [m.name for m in FLEET])
    return fleet


async def _until_indexed(stubs: Stubs, systems: list[str], seconds: float = 30.0) -> None:
    """Wait until the similarity index holds every system's fingerprint."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    for system in systems:
        while True:
            try:
                await stubs.similarity.CompareSystems(
                    similarity_pb.CompareSystemsRequest(first=systems[0], second=system),
                    timeout=5,
                )
                break
            except grpc.aio.AioRpcError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.25)


async def clone(
    stubs: Stubs, source: SimulatedMachine, target: SimulatedMachine, say: Say
) -> common_pb2.Operation:
    """Clone ``source``'s configuration to ``target`` and follow the operation to its end."""
    reply = await stubs.orchestrator.CloneConfiguration(
        orchestrator_pb.CloneConfigurationRequest(
            source=source.name,
            targets=[target.name],
            options=orchestrator_pb.CloneOptions(
                mode=common_pb2.PREDICTION_MODE_SHADOW,
                policy=POLICY,
                similarity_threshold=CLONE_THRESHOLD,
            ),
        ),
        timeout=10,
    )
    seen = 0
    operation: common_pb2.Operation = reply.operation
    async for update in stubs.orchestrator.WatchOperation(
        orchestrator_pb.WatchOperationRequest(name=operation.name)
    ):
        operation = update.operation
        for event in operation.events[seen:]:
            say(f"   [{event.step}] {event.message}")
        seen = len(operation.events)
    return operation


async def _current_with(
    stubs: Stubs, target: SimulatedMachine, change: dict[str, Any]
) -> common_pb2.Configuration:
    """The configuration ``target`` runs now, with ``change`` made to it."""
    current = await stubs.predictor.GetConfiguration(
        predictor_pb.GetConfigurationRequest(name=f"{target.name}/configurations/-"), timeout=10
    )
    proposed = common_pb2.Configuration(kind=current.configuration.kind)
    proposed.content.CopyFrom(current.configuration.content)
    proposed.content.update(change)
    return proposed


async def refuse(stubs: Stubs, target: SimulatedMachine) -> common_pb2.Change:
    """Propose the harmful change on ``target``; the change once settled."""
    proposed = await _current_with(stubs, target, HARMFUL)
    reply = await stubs.predictor.ProposeChange(
        predictor_pb.ProposeChangeRequest(
            change=predictor_pb.ProposedChange(system=target.name, configuration=proposed),
            mode=common_pb2.PREDICTION_MODE_SHADOW,
            policy=POLICY,
        ),
        timeout=10,
    )
    change: common_pb2.Change = reply.change
    while change.state in (
        common_pb2.CHANGE_STATE_PROPOSED,
        common_pb2.CHANGE_STATE_PREDICTING,
    ):
        await asyncio.sleep(0.2)
        change = (
            await stubs.predictor.GetChange(
                predictor_pb.GetChangeRequest(name=change.name), timeout=10
            )
        ).change
    return change


async def predict_on(
    stubs: Stubs, target: SimulatedMachine, change: dict[str, Any]
) -> common_pb2.Prediction:
    """A shadow prediction of ``change`` on ``target``; nothing is proposed or applied."""
    proposed = await _current_with(stubs, target, change)
    reply = await stubs.predictor.PredictImpact(
        predictor_pb.PredictImpactRequest(
            change=predictor_pb.ProposedChange(system=target.name, configuration=proposed),
            mode=common_pb2.PREDICTION_MODE_SHADOW,
            policy=POLICY,
        ),
        timeout=60,
    )
    prediction: common_pb2.Prediction = reply.prediction
    return prediction


def _outcome(operation: common_pb2.Operation, say: Say) -> common_pb2.CloneTargetResult | None:
    if operation.HasField("error"):
        say(f"   operation failed: {operation.error.message}")
        return None
    [result] = operation.clone.targets
    state = common_pb2.ChangeState.Name(result.state).removeprefix("CHANGE_STATE_")
    how = "adapted" if result.adapted else "cloned as is"
    say(f"   => {how} (similarity {result.similarity:.2f}); change {state}")
    return result


async def _configuration(stubs: Stubs, name: str) -> dict[str, Any]:
    reply = await stubs.predictor.GetConfiguration(
        predictor_pb.GetConfigurationRequest(name=name), timeout=10
    )
    return dict(json_format.MessageToDict(reply.configuration.content))


async def tell_stories(stubs: Stubs, say: Say) -> bool:
    """Prepare the fleet and tell the four stories; True when each ended as it should."""
    say(f"A fleet of {len(FLEET)} simulated machines, each with six hours of history:")
    fleet = await prepare(stubs, say)
    async with fleet.feeding():
        say(f"\n1. Clone {SOURCE.name} to its look-alike {LOOKALIKE.name}:")
        first = _outcome(await clone(stubs, SOURCE, LOOKALIKE, say), say)
        say(f"\n2. Clone {SOURCE.name} to {SMALL.name}, a quarter of its size:")
        second = _outcome(await clone(stubs, SOURCE, SMALL, say), say)
        if second is not None and second.configuration:
            adapted = await _configuration(stubs, second.configuration)
            say(f"   {SMALL.name} now runs: {_plain(adapted)}")
        say(f"\n3. Turn on debug logging on {LOOKALIKE.name}:")
        change = await refuse(stubs, LOOKALIKE)
        state = common_pb2.ChangeState.Name(change.state).removeprefix("CHANGE_STATE_")
        say(f"   => {state}: {change.state_reason}")
        _negatives(change.prediction, say)
        say(f"\n4. The same {_plain(BIG_CACHE)} on {LOOKALIKE.name} and on {SMALL.name}:")
        verdicts = {}
        for machine in (LOOKALIKE, SMALL):
            prediction = await predict_on(stubs, machine, BIG_CACHE)
            verdicts[machine.name] = prediction.verdict
            verdict = common_pb2.Verdict.Name(prediction.verdict).removeprefix("VERDICT_")
            say(f"   {machine.name} ({machine.memory_bytes // GIB} GiB) => {verdict}")
            _negatives(prediction, say)
    return (
        verdicts[LOOKALIKE.name] in (common_pb2.VERDICT_NEUTRAL, common_pb2.VERDICT_POSITIVE)
        and verdicts[SMALL.name] == common_pb2.VERDICT_NEGATIVE
        and first is not None
        and not first.adapted
        and first.state == common_pb2.CHANGE_STATE_KEPT
        and second is not None
        and second.adapted
        and second.state == common_pb2.CHANGE_STATE_KEPT
        and change.state == common_pb2.CHANGE_STATE_REJECTED
    )


def _negatives(prediction: common_pb2.Prediction, say: Say) -> None:
    for kpi in prediction.kpis:
        if kpi.verdict == common_pb2.VERDICT_NEGATIVE:
            say(
                f"      {kpi.kpi}: {kpi.relative_change:+.0%} "
                f"[{kpi.interval_low:+.0%}, {kpi.interval_high:+.0%}]"
            )


def _plain(content: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={int(v) if isinstance(v, float) and v.is_integer() else v}"
        for k, v in sorted(content.items())
    )


async def _health(address: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def run(up: RunningSuite) -> int:
    """Tell the stories against a running suite; 0 when each ended as it should."""
    print("Every service answers gRPC health checks and reflection:")
    for service in up.services:
        print(f"   {service.name:<13} {service.address:<16} {await _health(service.address)}")
    print()
    channels = {s.name: open_channel(s.address) for s in up.services}
    try:
        ok = await tell_stories(Stubs.on(channels), lambda line: print(line, flush=True))
    finally:
        for channel in channels.values():
            await channel.close(None)
    if not ok:
        print("\nThe demo did not end as expected; the services' logs are in", up.log_dir)
        return 1
    print(
        "\nDone. `cfgclone up` keeps the suite running; `cfgclone changes` and "
        "`cfgclone rollbacks` show the audit trail; see README.md for grpcurl calls."
    )
    return 0
