"""The acceptance rollout: ten simulated targets in waves of three with a budget of one
failure per wave, where the fourth and fifth targets really regress once changed.

The regression is measured, not scripted: targets 4 and 5 answer slower under any
configuration but their own, their live samples (fed through the collector) show it
after the change is applied, the predictor's verification sees it and rolls them back,
and the second wave's two failures exceed the budget, so targets 7-10 are never touched.
"""

from __future__ import annotations

from google.rpc import code_pb2

from cfgclone.common.store import Store
from cfgclone.orchestrator.operations import clone_result_of
from cfgclone.simulation.fleet import SimulatedMachine
from cfgclone.v1 import common_pb2
from cfgclone.v1 import orchestrator_service_pb2 as pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from tests.orchestrator.workflow_suite import (
    create_rollout_policy,
    running_services,
    unique,
    wait_done,
)

TUNED = {"workers": 4, "cache_mb": 512, "debug_logging": False, "request_timeout_s": 30}
"""The source's configuration: a bigger cache than the fleet's default (faster)."""


async def test_two_regressions_in_the_second_wave_stop_the_rollout_after_it(
    store: Store,
) -> None:
    fleet_id = unique("wave")
    source = SimulatedMachine(f"{fleet_id}-src", configuration=TUNED)
    targets = [
        SimulatedMachine(
            f"{fleet_id}-t{number:02d}",
            labels={"fleet": fleet_id},
            regression=1.8 if number in (4, 5) else 1.0,
        )
        for number in range(1, 11)
    ]
    async with running_services(store) as suite:
        fleet = suite.fleet([source, *targets], seed=11)
        await fleet.register()
        policy = await create_rollout_policy(suite, unique("rollout"))
        async with fleet.feeding():
            reply = await suite.orchestrator.CloneConfiguration(
                pb.CloneConfigurationRequest(
                    source=source.name,
                    targets=[t.name for t in targets],
                    options=pb.CloneOptions(
                        wave_size=3, max_fail_fraction=1 / 3, policy=policy, force_adapt=False
                    ),
                )
            )
            done = await wait_done(suite, reply.operation.name, seconds=240)
            changes = await suite.predictor.ListChanges(
                predictor_pb.ListChangesRequest(parent="systems/-", page_size=1000)
            )

    assert done.state == common_pb2.OPERATION_STATE_FAILED
    assert done.error.code == code_pb2.ABORTED
    result = clone_result_of(done)
    assert result is not None
    assert result.stopped_by_failure_budget
    states = {r.system: r.state for r in result.targets}
    names = [t.name for t in targets]
    assert list(states) == names[:6]
    assert [states[n] for n in names[:3]] == [common_pb2.CHANGE_STATE_KEPT] * 3
    assert [states[n] for n in names[3:5]] == [common_pb2.CHANGE_STATE_ROLLED_BACK] * 2
    assert states[names[5]] == common_pb2.CHANGE_STATE_KEPT
    assert list(result.skipped) == names[6:]
    # Untouched: no change was ever proposed for the skipped targets.
    changed = {c.name.split("/changes/")[0] for c in changes.changes}
    assert not changed & set(names[6:])
    assert set(names[:6]) <= changed
    rolled_back = next(r for r in result.targets if r.system == names[3])
    assert rolled_back.explanation
    steps = [(e.step, e.system) for e in done.events]
    assert ("rollback", names[3]) in steps
    assert ("verify", names[0]) in steps
