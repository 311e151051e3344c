"""Waves and the failure budget: which targets are touched, and when a rollout stops.

The rules are checked directly, then through the workflow with stand-in services
whose changes end as each test says (the operations are stored in the real
database); tests/orchestrator/test_workflow_rollout.py proves the same on the
real services with a regression measured on live metrics.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import grpc
import pytest
from google.rpc import code_pb2

from cfgclone.common.store import Store
from cfgclone.orchestrator.adapter import AdaptedConfiguration
from cfgclone.orchestrator.operations import (
    OperationStore,
    Progress,
    clone_result_of,
    error_status,
)
from cfgclone.orchestrator.peers import PeerError
from cfgclone.orchestrator.ranking import PolicyKpis, best_prediction
from cfgclone.orchestrator.settings import OrchestratorSettings
from cfgclone.orchestrator.waves import exceeds_failure_budget, waves
from cfgclone.orchestrator.workflow import CloneWorkflow
from cfgclone.v1 import common_pb2
from cfgclone.v1 import orchestrator_service_pb2 as pb
from cfgclone.v1 import similarity_service_pb2 as similarity_pb

KEPT = common_pb2.CHANGE_STATE_KEPT
REJECTED = common_pb2.CHANGE_STATE_REJECTED
ROLLED_BACK = common_pb2.CHANGE_STATE_ROLLED_BACK
FAILED = common_pb2.CHANGE_STATE_FAILED
HELD = common_pb2.CHANGE_STATE_HELD


def _results(*states: int) -> list[common_pb2.CloneTargetResult]:
    return [
        common_pb2.CloneTargetResult(system=f"systems/t{i}", state=s) for i, s in enumerate(states)
    ]


def test_waves_keep_the_rollout_order_and_zero_means_all_at_once() -> None:
    targets = [f"systems/t{i}" for i in range(1, 11)]
    assert waves(targets, 3) == [
        ("systems/t1", "systems/t2", "systems/t3"),
        ("systems/t4", "systems/t5", "systems/t6"),
        ("systems/t7", "systems/t8", "systems/t9"),
        ("systems/t10",),
    ]
    assert waves(targets, 0) == [tuple(targets)]
    assert waves(targets, 50) == [tuple(targets)]


def test_a_budget_of_a_third_lets_one_target_of_three_fail_but_not_two() -> None:
    assert not exceeds_failure_budget(_results(KEPT, ROLLED_BACK, KEPT), 1 / 3)
    assert exceeds_failure_budget(_results(KEPT, ROLLED_BACK, REJECTED), 1 / 3)
    assert exceeds_failure_budget(_results(FAILED, KEPT, KEPT), 0.0)
    assert not exceeds_failure_budget(_results(FAILED, FAILED), 1.0)


def test_held_and_kept_targets_do_not_count_against_the_budget() -> None:
    assert not exceeds_failure_budget(_results(HELD, HELD, KEPT), 0.0)


def _prediction(verdict: int, response_time_change: float) -> common_pb2.Prediction:
    return common_pb2.Prediction(
        verdict=verdict,
        kpis=[
            common_pb2.KpiPrediction(
                kpi="http.server.request.duration",
                direction=common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
                relative_change=response_time_change,
            )
        ],
    )


def test_the_best_predicted_candidate_wins_by_verdict_then_by_benefit() -> None:
    negative = _prediction(common_pb2.VERDICT_NEGATIVE, -0.5)
    neutral_slower = _prediction(common_pb2.VERDICT_NEUTRAL, 0.02)
    neutral_faster = _prediction(common_pb2.VERDICT_NEUTRAL, -0.04)
    positive = _prediction(common_pb2.VERDICT_POSITIVE, -0.2)
    policy = PolicyKpis((("*.duration", common_pb2.KPI_DIRECTION_LOWER_IS_BETTER),))
    assert best_prediction([negative, neutral_slower, neutral_faster], policy) == 2
    assert best_prediction([neutral_faster, positive], policy) == 1
    # A tie goes to the engine's preferred (first) candidate.
    assert best_prediction([neutral_faster, neutral_faster], policy) == 0
    # A candidate the engine warned about wins only on a better verdict.
    assert best_prediction([neutral_slower, neutral_faster], policy, [False, True]) == 0
    assert best_prediction([neutral_faster, positive], policy, [False, True]) == 1


# --- the workflow over stand-in services ---------------------------------------------


@dataclass
class StandInServices:
    """The calls the workflow makes, answered from tables; every proposal is recorded."""

    outcomes: Mapping[str, int] = field(default_factory=dict)
    """Final change state by target; KEPT when not listed."""
    unreachable_on_propose: frozenset[str] = frozenset()
    proposed: list[str] = field(default_factory=list)
    timeout: float = 1.0

    async def system(self, name: str) -> common_pb2.System:
        return common_pb2.System(name=name, cpu_cores=8, memory_bytes=32 * 2**30)

    async def current_configuration(self, system: str) -> common_pb2.Configuration:
        configuration = common_pb2.Configuration(
            name=f"{system}/configurations/1", kind="simulated"
        )
        configuration.content.update({"workers": 4})
        return configuration

    async def has_fingerprint(self, system: str) -> bool:
        return True

    async def compare(self, first: str, second: str) -> similarity_pb.SimilarityScore:
        return similarity_pb.SimilarityScore(first=first, second=second, score=0.97, threshold=0.9)

    async def propose(
        self, change: object, options: pb.CloneOptions, request_id: str
    ) -> common_pb2.Change:
        target = change.system  # type: ignore[attr-defined]
        if target in self.unreachable_on_propose:
            raise PeerError("predictor", grpc.StatusCode.UNAVAILABLE, "connection refused")
        self.proposed.append(target)
        return common_pb2.Change(
            name=f"{target}/changes/1",
            to_configuration=f"{target}/configurations/2",
            state=common_pb2.CHANGE_STATE_PROPOSED,
        )

    async def change(self, name: str) -> common_pb2.Change:
        target = name.rsplit("/changes/", 1)[0]
        state = self.outcomes.get(target, KEPT)
        return common_pb2.Change(name=name, state=state, state_reason="as the test says")


class NoAdaptation:
    async def candidates(self, adaptation: object) -> list[AdaptedConfiguration]:
        raise AssertionError("every target is similar: nothing is adapted")


TEN = [f"systems/t{i}" for i in range(1, 11)]


async def _run(
    store: Store,
    services: StandInServices,
    *,
    wave_size: int,
    max_fail_fraction: float,
    cancel_after: float | None = None,
) -> common_pb2.Operation:
    operations = OperationStore(store)
    request = pb.CloneConfigurationRequest(
        source="systems/origin",
        targets=TEN,
        options=pb.CloneOptions(wave_size=wave_size, max_fail_fraction=max_fail_fraction),
    )
    operation, _ = await operations.create(
        common_pb2.Operation(
            name=f"operations/{uuid.uuid4().hex}",
            kind=common_pb2.OPERATION_KIND_CLONE,
            state=common_pb2.OPERATION_STATE_RUNNING,
        ),
        request,
        "",
    )
    progress = Progress(operations, operation, len(TEN))
    settings = OrchestratorSettings(poll_interval=timedelta(milliseconds=20))
    workflow = CloneWorkflow(services, NoAdaptation(), settings, progress, request)  # type: ignore[arg-type]
    run = asyncio.create_task(workflow.run())
    if cancel_after is not None:
        await asyncio.sleep(cancel_after)
        progress.cancel_requested.set()
    await asyncio.wait_for(run, 30)
    return await operations.get(operation.name.removeprefix("operations/"))


async def test_two_regressions_in_the_second_wave_stop_the_rollout_before_the_third(
    store: Store,
) -> None:
    services = StandInServices(outcomes={"systems/t4": ROLLED_BACK, "systems/t5": ROLLED_BACK})
    operation = await _run(store, services, wave_size=3, max_fail_fraction=1 / 3)

    assert operation.state == common_pb2.OPERATION_STATE_FAILED
    assert operation.error.code == code_pb2.ABORTED
    result = clone_result_of(operation)
    assert result is not None
    assert result.stopped_by_failure_budget
    assert list(result.skipped) == TEN[6:]
    assert [t.system for t in result.targets] == TEN[:6]
    assert [t.state for t in result.targets] == [KEPT] * 3 + [ROLLED_BACK] * 2 + [KEPT]
    assert sorted(services.proposed) == sorted(TEN[:6])


async def test_one_failure_per_wave_stays_within_a_third_and_the_rollout_completes(
    store: Store,
) -> None:
    services = StandInServices(outcomes={"systems/t2": REJECTED, "systems/t5": FAILED})
    operation = await _run(store, services, wave_size=3, max_fail_fraction=1 / 3)

    # Every target was worked on, but one failed: the operation does not succeed.
    assert operation.state == common_pb2.OPERATION_STATE_FAILED
    assert operation.error.code == code_pb2.FAILED_PRECONDITION
    assert "1 of 10 targets failed: systems/t5" in operation.error.message
    result = clone_result_of(operation)
    assert result is not None
    assert not result.stopped_by_failure_budget
    assert not result.skipped
    assert len(result.targets) == 10
    assert sorted(services.proposed) == sorted(TEN)


async def test_a_rollout_whose_targets_were_refused_or_rolled_back_succeeds(
    store: Store,
) -> None:
    services = StandInServices(outcomes={"systems/t2": REJECTED})
    operation = await _run(store, services, wave_size=5, max_fail_fraction=1 / 3)

    assert operation.state == common_pb2.OPERATION_STATE_SUCCEEDED
    assert len(operation.clone.targets) == 10


async def test_an_unreachable_predictor_stops_the_rollout_and_fails_the_operation(
    store: Store,
) -> None:
    services = StandInServices(unreachable_on_propose=frozenset({"systems/t2"}))
    operation = await _run(store, services, wave_size=3, max_fail_fraction=1.0)

    assert operation.state == common_pb2.OPERATION_STATE_FAILED
    assert operation.error.code == code_pb2.UNAVAILABLE
    result = clone_result_of(operation)
    assert result is not None
    unreachable = next(t for t in result.targets if t.system == "systems/t2")
    assert unreachable.state == FAILED
    assert "unavailable" in unreachable.explanation
    assert "nothing was applied" in unreachable.explanation
    assert list(result.skipped) == TEN[3:]
    assert "systems/t4" not in services.proposed


async def test_cancelling_leaves_the_targets_not_started_untouched(store: Store) -> None:
    slow = SlowServices()
    operation = await _run(store, slow, wave_size=2, max_fail_fraction=0.0, cancel_after=0.3)

    assert operation.state == common_pb2.OPERATION_STATE_CANCELLED
    assert operation.error.code == code_pb2.CANCELLED
    result = clone_result_of(operation)
    assert result is not None
    assert slow.proposed == ["systems/t1", "systems/t2"]
    assert list(result.skipped) == TEN[2:]
    for target in result.targets:
        assert "cancelled" in target.explanation


class SlowServices(StandInServices):
    """Changes that stay in verification until the test cancels."""

    async def change(self, name: str) -> common_pb2.Change:
        return common_pb2.Change(name=name, state=common_pb2.CHANGE_STATE_VERIFYING)


def test_a_failed_operation_carries_its_targets_in_the_error() -> None:
    result = common_pb2.CloneResult(skipped=["systems/t9"])
    operation = common_pb2.Operation(error=error_status(code_pb2.ABORTED, "X", "why", result))
    assert clone_result_of(operation) == result


@pytest.mark.parametrize("wave_size", [-1])
def test_a_negative_wave_size_is_refused(wave_size: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        waves(TEN, wave_size)
