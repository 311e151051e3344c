"""Operations over their life: adapted clones, one trace per workflow, cancel, and restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import code_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cfgclone.common.store import Store
from cfgclone.orchestrator.operations import OperationStore, clone_result_of
from cfgclone.simulation.fleet import SimulatedMachine
from cfgclone.v1 import common_pb2
from cfgclone.v1 import orchestrator_service_pb2 as pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from tests.orchestrator.workflow_suite import (
    Suite,
    create_rollout_policy,
    running_services,
    unique,
    wait_done,
)
from tests.storage import store_samples

GIB = 2**30
BIG = {"workers": 8, "cache_mb": 512, "debug_logging": False, "request_timeout_s": 30}


async def _changes(suite: Suite, system: str) -> list[common_pb2.Change]:
    reply = await suite.predictor.ListChanges(predictor_pb.ListChangesRequest(parent=system))
    return list(reply.changes)


async def _adapted_dry_run(
    suite: Suite, source: SimulatedMachine, target: SimulatedMachine, policy: str
) -> tuple[common_pb2.Operation, common_pb2.CloneTargetResult, common_pb2.Configuration]:
    """A forced adaptation, predicted only: the operation, its one result, the proposal."""
    reply = await suite.orchestrator.CloneConfiguration(
        pb.CloneConfigurationRequest(
            source=source.name,
            targets=[target.name],
            options=pb.CloneOptions(dry_run=True, force_adapt=True, policy=policy),
        )
    )
    done = await wait_done(suite, reply.operation.name)
    [result] = done.clone.targets
    proposed = (
        await suite.predictor.GetConfiguration(
            predictor_pb.GetConfigurationRequest(name=result.configuration)
        )
    ).configuration
    return done, result, proposed


async def test_a_target_with_other_hardware_gets_the_best_predicted_adaptation(
    store: Store,
) -> None:
    source = SimulatedMachine(unique("big"), cpu_cores=8, memory_bytes=32 * GIB, configuration=BIG)
    target = SimulatedMachine(unique("small"), cpu_cores=4, memory_bytes=16 * GIB)
    async with running_services(store) as suite:
        await suite.fleet([source, target]).register()
        policy = await create_rollout_policy(suite, unique("adapt"))
        done, result, proposed = await _adapted_dry_run(suite, source, target, policy)

    assert done.state == common_pb2.OPERATION_STATE_SUCCEEDED
    assert result.adapted
    assert proposed.source == common_pb2.CONFIGURATION_SOURCE_ADAPT
    # The predictor links a parent of the same system only; the operation says where the
    # configuration came from.
    assert f"cloning {source.name}/configurations/1" in done.events[1].message
    content = json_format.MessageToDict(proposed.content)
    # Half the cores and half the memory: every candidate halves the cache (memory is
    # never kept above its share of a smaller host); the workers depend on the choice.
    assert content["cache_mb"] == 256
    assert content["workers"] in (4, 6, 8)
    messages = [e.message for e in done.events if e.system == target.name]
    assert any("candidate adaptations predicted" in m for m in messages), messages
    adapt = next(e.message for e in done.events if e.step == "adapt")
    assert "cache_mb: 512 -> 256" in adapt


async def test_an_adapted_cache_keeps_to_the_working_set_the_sources_data_shows(
    store: Store,
) -> None:
    source = SimulatedMachine(unique("big"), cpu_cores=8, memory_bytes=32 * GIB, configuration=BIG)
    target = SimulatedMachine(unique("small"), cpu_cores=4, memory_bytes=4 * GIB)
    async with running_services(store) as suite:
        await suite.fleet([source, target]).register()
        # The source's exporter says its busy hours reread about 300 MiB.
        now = time.time_ns()
        ts = np.arange(now - 3600 * 10**9, now, 60 * 10**9, dtype=np.int64)
        working_set = np.linspace(200.0, 300.0, ts.size) * 2**20
        await store_samples(
            store,
            source.system_id,
            {"cache.working_set": (ts, working_set)},
            cpu_cores=source.cpu_cores,
        )
        policy = await create_rollout_policy(suite, unique("floor"))
        done, _, proposed = await _adapted_dry_run(suite, source, target, policy)

    assert done.state == common_pb2.OPERATION_STATE_SUCCEEDED, done
    content = json_format.MessageToDict(proposed.content)
    # An eighth of the memory would make 512 MB a 64 MB cache; the source rereads ~295 MiB.
    assert 290 <= content["cache_mb"] <= 300, content
    adapt = next(e.message for e in done.events if e.step == "adapt")
    assert "scaling gave 64, below the source's working set" in adapt, adapt


async def test_one_clone_is_one_trace_across_every_service_it_calls(store: Store) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    source = SimulatedMachine(unique("src"), configuration=BIG)
    target = SimulatedMachine(unique("dst"), configuration=BIG | {"cache_mb": 256})
    async with running_services(store, tracer_provider=provider) as suite:
        await suite.fleet([source, target]).register()
        reply = await suite.orchestrator.CloneConfiguration(
            pb.CloneConfigurationRequest(
                source=source.name,
                targets=[target.name],
                options=pb.CloneOptions(dry_run=True),
            )
        )
        await wait_done(suite, reply.operation.name)
    provider.force_flush()
    spans = exporter.get_finished_spans()
    clone_rpc = next(
        s
        for s in spans
        if s.kind == SpanKind.SERVER
        and s.name == "/cfgclone.v1.OrchestratorService/CloneConfiguration"
    )
    assert clone_rpc.context is not None
    trace_id = clone_rpc.context.trace_id
    in_trace = [s for s in spans if s.context is not None and s.context.trace_id == trace_id]
    servers = {s.name for s in in_trace if s.kind == SpanKind.SERVER}
    for method in (
        "/cfgclone.v1.CollectorService/GetSystem",
        "/cfgclone.v1.FingerprintService/ListFingerprints",
        "/cfgclone.v1.SimilarityService/CompareSystems",
        "/cfgclone.v1.PredictorService/GetConfiguration",
        "/cfgclone.v1.PredictorService/ProposeChange",
        "/cfgclone.v1.PredictorService/GetChange",
    ):
        assert method in servers, sorted(servers)
    workflow = next(s for s in in_trace if s.name == "clone configuration")
    assert workflow.parent is not None
    assert workflow.parent.span_id == clone_rpc.context.span_id
    # Every span of the trace descends from the client's call.
    client_calls = [s for s in spans if s.kind == SpanKind.CLIENT and s.context is not None]
    roots = {s.context.span_id for s in in_trace if s.parent is None}
    assert len(roots) == 1
    assert roots <= {s.context.span_id for s in client_calls}


async def _first_event(
    suite: Suite, name: str, step: str, system: str, seconds: float = 90
) -> None:
    async def watch() -> None:
        call = suite.orchestrator.WatchOperation(pb.WatchOperationRequest(name=name))
        async for reply in call:
            if any(e.step == step and e.system == system for e in reply.operation.events):
                call.cancel()
                return
        raise AssertionError(f"the operation ended before step {step} of {system}")

    await asyncio.wait_for(watch(), seconds)


async def test_cancelling_stops_the_rollout_and_leaves_targets_not_started_untouched(
    store: Store,
) -> None:
    source = SimulatedMachine(unique("src"), configuration=BIG)
    targets = [SimulatedMachine(unique(f"dst{i}")) for i in range(3)]
    async with running_services(store) as suite:
        fleet = suite.fleet([source, *targets])
        await fleet.register()
        policy = await create_rollout_policy(suite, unique("slow"), verification_seconds=60)
        async with fleet.feeding():
            reply = await suite.orchestrator.CloneConfiguration(
                pb.CloneConfigurationRequest(
                    source=source.name,
                    targets=[t.name for t in targets],
                    options=pb.CloneOptions(wave_size=1, policy=policy),
                )
            )
            name = reply.operation.name
            await _first_event(suite, name, "verify", targets[0].name)
            cancelled = (
                await suite.orchestrator.CancelOperation(pb.CancelOperationRequest(name=name))
            ).operation
            [first] = await _changes(suite, targets[0].name)
            await suite.predictor.AbortChange(
                predictor_pb.AbortChangeRequest(name=first.name, reason="test cleanup")
            )
            untouched = [await _changes(suite, t.name) for t in targets[1:]]

    assert cancelled.done
    assert cancelled.state == common_pb2.OPERATION_STATE_CANCELLED
    assert cancelled.error.code == code_pb2.CANCELLED
    result = clone_result_of(cancelled)
    assert result is not None
    assert list(result.skipped) == [t.name for t in targets[1:]]
    [in_flight] = result.targets
    assert in_flight.state == common_pb2.CHANGE_STATE_VERIFYING
    assert "cancelled" in in_flight.explanation
    assert untouched == [[], []]


@pytest.fixture
async def fresh_store(fresh_database: str) -> AsyncIterator[Store]:
    """A store of its own, so that no other test's operations are there to take over."""
    store = Store(fresh_database, min_size=1, max_size=4, name="resume-test")
    await store.open(wait=True)
    await store.migrate()
    yield store
    await store.close()


async def _abandoned_operation(
    store: Store, source: SimulatedMachine, targets: list[SimulatedMachine]
) -> tuple[str, pb.CloneConfigurationRequest]:
    """An operation a stopped orchestrator left running an hour ago."""
    gone = OperationStore(store, runner="a-process-that-stopped")
    request = pb.CloneConfigurationRequest(
        source=source.name,
        targets=[t.name for t in targets],
        options=pb.CloneOptions(dry_run=True),
    )
    operation, _ = await gone.create(
        common_pb2.Operation(
            name=f"operations/{uuid.uuid4().hex}",
            kind=common_pb2.OPERATION_KIND_CLONE,
            state=common_pb2.OPERATION_STATE_RUNNING,
        ),
        request,
        "",
    )
    async with store.connection() as conn:
        await conn.execute(
            "UPDATE operations SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
            (operation.name.removeprefix("operations/"),),
        )
    return operation.name, request


# The first orchestrator must not take the operation over before the test is ready.
PATIENT = {"orchestrator": {"LEASE_SECONDS": "7200"}}


async def test_a_restarted_orchestrator_resumes_what_a_stopped_one_left_running(
    fresh_store: Store,
) -> None:
    source = SimulatedMachine(unique("src"), configuration=BIG)
    targets = [SimulatedMachine(unique(f"dst{i}")) for i in range(2)]
    async with running_services(fresh_store, options=PATIENT) as suite:
        await suite.fleet([source, *targets]).register()
        name, _ = await _abandoned_operation(fresh_store, source, targets)
        # The stopped process had already proposed the first target's change.
        await suite.predictor.ProposeChange(
            predictor_pb.ProposeChangeRequest(
                change=predictor_pb.ProposedChange(
                    system=targets[0].name,
                    configuration=common_pb2.Configuration(kind="simulated", content=_struct(BIG)),
                ),
                dry_run=True,
                request_id=f"{name}/{targets[0].name}",
            )
        )
    async with running_services(fresh_store) as suite:
        done = await wait_done(suite, name)
        changes = [await _changes(suite, t.name) for t in targets]

    assert done.state == common_pb2.OPERATION_STATE_SUCCEEDED, done.error
    assert [r.system for r in done.clone.targets] == [t.name for t in targets]
    assert any(e.step == "resume" for e in done.events)
    # Resuming found the change proposed before the restart instead of proposing again.
    assert [len(c) for c in changes] == [1, 1]


async def test_with_resuming_off_an_interrupted_operation_fails_and_says_why(
    fresh_store: Store,
) -> None:
    source = SimulatedMachine(unique("src"), configuration=BIG)
    targets = [SimulatedMachine(unique("dst"))]
    async with running_services(fresh_store, options=PATIENT) as suite:
        await suite.fleet([source, *targets]).register()
        name, _ = await _abandoned_operation(fresh_store, source, targets)
    options = {"orchestrator": {"RESUME_INTERRUPTED": "false"}}
    async with running_services(fresh_store, options=options) as suite:
        done = await wait_done(suite, name)
        changes = await _changes(suite, targets[0].name)

    assert done.state == common_pb2.OPERATION_STATE_FAILED
    assert done.error.code == code_pb2.ABORTED
    assert "RESUME_INTERRUPTED" in done.error.message
    result = clone_result_of(done)
    assert result is not None
    assert list(result.skipped) == [targets[0].name]
    assert changes == []


def _struct(content: dict[str, object]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(content)
    return struct
