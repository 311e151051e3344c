"""CloneConfiguration through the five services: requests, operations and the clone itself."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2

from cfgclone.common.store import Store
from cfgclone.orchestrator.operations import clone_result_of
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

GIB = 2**30


async def _operation_count(store: Store) -> int:
    async with store.connection() as conn:
        cursor = await conn.execute("SELECT count(*) FROM operations")
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _changes_of(store: Store, system: str) -> int:
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM changes c JOIN systems s ON s.id = c.system_id "
            "WHERE s.system_id = %s",
            (system.removeprefix("systems/"),),
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _clone(suite: Suite, **fields: object) -> common_pb2.Operation:
    reply = await suite.orchestrator.CloneConfiguration(pb.CloneConfigurationRequest(**fields))
    return reply.operation


async def _refused(suite: Suite, **fields: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _clone(suite, **fields)
    return refused.value


async def test_bad_requests_are_refused_before_any_operation_exists(store: Store) -> None:
    async with running_services(store) as suite:
        source = unique("src")
        target = unique("dst")
        fleet = suite.fleet([SimulatedMachine(source), SimulatedMachine(target)])
        await fleet.register()
        before = await _operation_count(store)
        source_name, target_name = f"systems/{source}", f"systems/{target}"

        cases = [
            ({"targets": [target_name]}, grpc.StatusCode.INVALID_ARGUMENT, "source"),
            (
                {"source": "web 01", "targets": [target_name]},
                grpc.StatusCode.INVALID_ARGUMENT,
                "source",
            ),
            ({"source": source_name}, grpc.StatusCode.INVALID_ARGUMENT, "targets"),
            (
                {"source": source_name, "targets": ["systems/Bad Name"]},
                grpc.StatusCode.INVALID_ARGUMENT,
                "targets[0]",
            ),
            (
                {"source": source_name, "targets": [source_name]},
                grpc.StatusCode.INVALID_ARGUMENT,
                "is the source",
            ),
            (
                {"source": source_name, "targets": [target_name], "target_selector": "role=db"},
                grpc.StatusCode.INVALID_ARGUMENT,
                "only one of",
            ),
            (
                {
                    "source": source_name,
                    "targets": [target_name],
                    "options": pb.CloneOptions(wave_size=-1),
                },
                grpc.StatusCode.INVALID_ARGUMENT,
                "wave_size",
            ),
            (
                {
                    "source": source_name,
                    "targets": [target_name],
                    "options": pb.CloneOptions(max_fail_fraction=1.5),
                },
                grpc.StatusCode.INVALID_ARGUMENT,
                "max_fail_fraction",
            ),
            (
                {"source": "systems/nowhere-src", "targets": [target_name]},
                grpc.StatusCode.NOT_FOUND,
                "systems/nowhere-src",
            ),
            (
                {"source": source_name, "targets": [target_name, "systems/nowhere-dst"]},
                grpc.StatusCode.NOT_FOUND,
                "systems/nowhere-dst",
            ),
            (
                {"source": source_name, "target_selector": f"fleet={unique('none')}"},
                grpc.StatusCode.INVALID_ARGUMENT,
                "matches no system",
            ),
            (
                {"source": source_name, "target_cohort": "cohorts/no-such-cohort"},
                grpc.StatusCode.NOT_FOUND,
                "cohorts/no-such-cohort",
            ),
        ]
        for fields, code, mentioned in cases:
            error = await _refused(suite, **fields)
            assert error.code() == code, (fields, error.details())
            assert mentioned in (error.details() or ""), (fields, error.details())
        assert await _operation_count(store) == before


async def test_a_dry_run_clone_predicts_and_keeps_without_applying(store: Store) -> None:
    async with running_services(store) as suite:
        source = SimulatedMachine(unique("src"), configuration={"workers": 4, "cache_mb": 512})
        target = SimulatedMachine(unique("dst"))
        fleet = suite.fleet([source, target])
        await fleet.register()
        policy = await create_rollout_policy(suite, unique("dry-run"))

        operation = await _clone(
            suite,
            source=source.name,
            targets=[target.name],
            options=pb.CloneOptions(dry_run=True, policy=policy),
        )
        assert operation.name.startswith("operations/")
        assert operation.state == common_pb2.OPERATION_STATE_RUNNING
        assert not operation.done

        done = await wait_done(suite, operation.name)
        assert done.state == common_pb2.OPERATION_STATE_SUCCEEDED, done
        [result] = done.clone.targets
        assert result.system == target.name
        assert result.state == common_pb2.CHANGE_STATE_KEPT
        assert result.change.startswith(f"{target.name}/changes/")
        change = (
            await suite.predictor.GetChange(predictor_pb.GetChangeRequest(name=result.change))
        ).change
        assert change.dry_run
        steps = [event.step for event in done.events]
        assert steps[0] == "accepted"
        for step in ("source", "wave", "similarity", "propose", "keep", "result", "done"):
            assert step in steps, steps
        # Nothing was applied: the target still runs its own configuration.
        assert await fleet.current_configuration(target) == {
            key: float(value) if isinstance(value, int) and not isinstance(value, bool) else value
            for key, value in target.configuration.items()
        }


async def test_a_repeated_request_id_returns_the_first_operation(store: Store) -> None:
    async with running_services(store) as suite:
        source, target = SimulatedMachine(unique("src")), SimulatedMachine(unique("dst"))
        await suite.fleet([source, target]).register()
        request_id = unique("once")
        fields = {
            "source": source.name,
            "targets": [target.name],
            "options": pb.CloneOptions(dry_run=True),
            "request_id": request_id,
        }
        first = await _clone(suite, **fields)
        second = await _clone(suite, **fields)
        assert second.name == first.name
        await wait_done(suite, first.name)
        third = await _clone(suite, **fields)
        assert third.name == first.name
        assert third.done
        assert await _changes_of(store, target.name) == 1


async def test_operations_are_listed_newest_first_page_by_page(store: Store) -> None:
    async with running_services(store) as suite:
        source, target = SimulatedMachine(unique("src")), SimulatedMachine(unique("dst"))
        await suite.fleet([source, target]).register()
        names = []
        for _ in range(3):
            operation = await _clone(
                suite,
                source=source.name,
                targets=[target.name],
                options=pb.CloneOptions(dry_run=True),
            )
            names.append(operation.name)
            await wait_done(suite, operation.name)
        first = await suite.orchestrator.ListOperations(pb.ListOperationsRequest(page_size=2))
        assert [o.name for o in first.operations] == names[::-1][:2]
        assert first.next_page_token
        second = await suite.orchestrator.ListOperations(
            pb.ListOperationsRequest(page_size=2, page_token=first.next_page_token)
        )
        assert second.operations[0].name == names[0]
        with pytest.raises(grpc.aio.AioRpcError) as negative:
            await suite.orchestrator.ListOperations(pb.ListOperationsRequest(page_size=-1))
        assert negative.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await suite.orchestrator.GetOperation(
                pb.GetOperationRequest(name="operations/does-not-exist")
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_source_without_configuration_fails_the_operation_with_what_to_do(
    store: Store,
) -> None:
    async with running_services(store) as suite:
        bare, target = unique("bare"), SimulatedMachine(unique("dst"))
        await suite.fleet([target]).register()
        await suite.fleet([SimulatedMachine(bare)]).register(history=None, configure=False)
        operation = await _clone(suite, source=f"systems/{bare}", targets=[target.name])
        done = await wait_done(suite, operation.name)
        assert done.state == common_pb2.OPERATION_STATE_FAILED
        assert done.error.code == code_pb2.FAILED_PRECONDITION
        assert f"create or import a configuration of systems/{bare} first" in done.error.message
        result = clone_result_of(done)
        assert result is not None
        assert list(result.skipped) == [target.name]
        assert await _changes_of(store, target.name) == 0


async def test_a_source_without_metrics_fails_the_operation_with_what_to_do(store: Store) -> None:
    async with running_services(store) as suite:
        quiet, target = SimulatedMachine(unique("quiet")), SimulatedMachine(unique("dst"))
        fleet = suite.fleet([target])
        await fleet.register()
        await suite.fleet([quiet]).register(history=None)
        operation = await _clone(suite, source=quiet.name, targets=[target.name])
        done = await wait_done(suite, operation.name)
        assert done.state == common_pb2.OPERATION_STATE_FAILED
        assert done.error.code == code_pb2.FAILED_PRECONDITION
        assert f"collect metrics of {quiet.name} first" in done.error.message
        assert await _changes_of(store, target.name) == 0


async def test_an_unreachable_predictor_fails_the_operation_and_applies_nothing(
    store: Store,
) -> None:
    async with running_services(store) as suite:
        source, target = SimulatedMachine(unique("src")), SimulatedMachine(unique("dst"))
        await suite.fleet([source, target]).register()
    async with running_services(store, down=("predictor",)) as suite:
        operation = await _clone(suite, source=source.name, targets=[target.name])
        done = await wait_done(suite, operation.name, seconds=60)
    assert done.state == common_pb2.OPERATION_STATE_FAILED
    assert done.error.code == code_pb2.UNAVAILABLE
    assert "predictor service is unavailable" in done.error.message
    assert await _changes_of(store, target.name) == 0


async def test_watching_streams_each_change_until_the_operation_is_done(store: Store) -> None:
    async with running_services(store) as suite:
        source, target = SimulatedMachine(unique("src")), SimulatedMachine(unique("dst"))
        await suite.fleet([source, target]).register()
        operation = await _clone(
            suite, source=source.name, targets=[target.name], options=pb.CloneOptions(dry_run=True)
        )
        seen = []
        call = suite.orchestrator.WatchOperation(pb.WatchOperationRequest(name=operation.name))
        async for reply in call:
            seen.append(reply.operation)
        assert seen[-1].done
        assert all(not o.done for o in seen[:-1])
        counts = [len(o.events) for o in seen]
        assert counts == sorted(counts)
        assert len(seen) > 2
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            async for _ in suite.orchestrator.WatchOperation(
                pb.WatchOperationRequest(name="operations/none")
            ):
                pass
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cancelling_a_finished_operation_changes_nothing(store: Store) -> None:
    async with running_services(store) as suite:
        source, target = SimulatedMachine(unique("src")), SimulatedMachine(unique("dst"))
        await suite.fleet([source, target]).register()
        operation = await _clone(
            suite, source=source.name, targets=[target.name], options=pb.CloneOptions(dry_run=True)
        )
        done = await wait_done(suite, operation.name)
        reply = await suite.orchestrator.CancelOperation(
            pb.CancelOperationRequest(name=operation.name)
        )
        assert reply.operation.state == done.state
        assert reply.operation.events == done.events
