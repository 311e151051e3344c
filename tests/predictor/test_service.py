"""The predictor service on a real server and database: predictions and guarded changes.

The simulated shadow provider knows its response surfaces (``debug_logging`` makes every
transaction 30% slower; ``request_timeout_s`` changes nothing), so each verdict here has a
known right answer.
"""

from __future__ import annotations

import grpc
import pytest

from cfgclone.common.store import Store
from cfgclone.simulation import HARMFUL_CHANGE, HARMLESS_CHANGE
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from tests.predictor.support import (
    BASE_CONFIGURATION,
    configuration,
    create_policy,
    register,
    running_predictor,
    settle,
    with_configuration,
)

SHADOW = common_pb2.PREDICTION_MODE_SHADOW
HARMFUL = {**BASE_CONFIGURATION, **HARMFUL_CHANGE}
HARMLESS = {**BASE_CONFIGURATION, **HARMLESS_CHANGE}


def _proposal(system_id: str, content: dict[str, object]) -> pb.ProposedChange:
    return pb.ProposedChange(system=f"systems/{system_id}", configuration=configuration(content))


async def test_a_shadow_run_finds_the_harmful_change_negative_and_the_harmless_one_not(
    store: Store,
) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "shadow")
        await with_configuration(predictor.stub, system_id)
        harmful = await predictor.stub.PredictImpact(
            pb.PredictImpactRequest(change=_proposal(system_id, HARMFUL), mode=SHADOW)
        )
        harmless = await predictor.stub.PredictImpact(
            pb.PredictImpactRequest(change=_proposal(system_id, HARMLESS), mode=SHADOW)
        )
    assert harmful.prediction.verdict == common_pb2.VERDICT_NEGATIVE
    latency = {k.kpi: k for k in harmful.prediction.kpis}["db.client.operation.duration"]
    assert latency.verdict == common_pb2.VERDICT_NEGATIVE
    assert 0.2 < latency.relative_change < 0.4
    assert latency.interval_low <= latency.relative_change <= latency.interval_high
    assert "db.client.operation.duration" in harmful.prediction.explanation
    assert harmless.prediction.verdict in (common_pb2.VERDICT_NEUTRAL, common_pb2.VERDICT_POSITIVE)
    assert predictor.provider.live_copies == 0


async def test_no_history_and_no_fingerprint_is_inconclusive_with_the_reason(
    store: Store,
) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "lonely")
        await with_configuration(predictor.stub, system_id)
        reply = await predictor.stub.PredictImpact(
            pb.PredictImpactRequest(change=_proposal(system_id, HARMFUL))
        )
    assert reply.prediction.verdict == common_pb2.VERDICT_INCONCLUSIVE
    assert "no fingerprint" in reply.prediction.explanation


async def test_a_change_predicted_negative_is_refused_never_applied_and_logged(
    store: Store,
) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "refused")
        await with_configuration(predictor.stub, system_id)
        proposed = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(change=_proposal(system_id, HARMFUL), mode=SHADOW)
        )
        change = await settle(predictor.stub, proposed.change.name)
        rollbacks = await predictor.stub.ListRollbacks(
            pb.ListRollbacksRequest(parent=f"systems/{system_id}")
        )
        current = await predictor.stub.GetConfiguration(
            pb.GetConfigurationRequest(name=f"systems/{system_id}/configurations/-")
        )
        refused = predictor.guard.counters.value(
            predictor.guard.counters.rollbacks, "predicted_negative"
        )
    assert change.state == common_pb2.CHANGE_STATE_REJECTED
    assert change.prediction.verdict == common_pb2.VERDICT_NEGATIVE
    assert not [c for c in predictor.applier.calls if c.action == "apply"]
    assert [r.reason for r in rollbacks.rollbacks] == [
        common_pb2.ROLLBACK_REASON_PREDICTED_NEGATIVE
    ]
    rollback = rollbacks.rollbacks[0]
    assert rollback.change == change.name
    assert rollback.to_configuration == change.to_configuration
    assert any(k.kpi == "db.client.operation.duration" for k in rollback.predicted)
    assert current.configuration.name == f"systems/{system_id}/configurations/1"
    assert refused >= 1


async def test_a_dry_run_predicts_and_applies_nothing(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "dry")
        await with_configuration(predictor.stub, system_id)
        proposed = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(
                change=_proposal(system_id, HARMLESS), mode=SHADOW, dry_run=True
            )
        )
        change = await settle(predictor.stub, proposed.change.name)
    assert change.state == common_pb2.CHANGE_STATE_KEPT
    assert change.dry_run
    assert "nothing applied" in change.state_reason
    assert predictor.applier.calls == []


async def test_a_second_proposal_while_one_is_in_flight_names_it(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "busy")
        await with_configuration(predictor.stub, system_id)
        # No fingerprint, so the learned prediction is INCONCLUSIVE and the change is held.
        first = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(change=_proposal(system_id, HARMLESS))
        )
        held = await settle(predictor.stub, first.change.name)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await predictor.stub.ProposeChange(
                pb.ProposeChangeRequest(change=_proposal(system_id, HARMFUL))
            )
        versions = await predictor.stub.ListConfigurations(
            pb.ListConfigurationsRequest(parent=f"systems/{system_id}")
        )
    assert held.state == common_pb2.CHANGE_STATE_HELD
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert first.change.name in (refused.value.details() or "")
    # The refused proposal stored nothing: versions 1 (base) and 2 (the held change) only.
    assert [c.version for c in versions.configurations] == [2, 1]


async def test_a_resent_proposal_returns_the_first_answer(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "resend")
        await with_configuration(predictor.stub, system_id)
        request = pb.ProposeChangeRequest(
            change=_proposal(system_id, HARMLESS), dry_run=True, mode=SHADOW, request_id="r-1"
        )
        first = await predictor.stub.ProposeChange(request)
        again = await predictor.stub.ProposeChange(request)
        changes = await predictor.stub.ListChanges(
            pb.ListChangesRequest(parent=f"systems/{system_id}")
        )
    assert again.change.name == first.change.name
    assert len(changes.changes) == 1


async def test_a_held_change_is_approved_then_applied_and_an_abort_rolls_it_back(
    store: Store,
) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "held")
        await with_configuration(predictor.stub, system_id)
        policy = await create_policy(predictor.stub, delay_s=30.0)
        proposed = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(change=_proposal(system_id, HARMLESS), policy=policy)
        )
        held = await settle(predictor.stub, proposed.change.name)
        approved = await predictor.stub.ApproveChange(
            pb.ApproveChangeRequest(name=held.name, reason="reviewed the diff")
        )
        verifying = await _wait_for(predictor, held.name, common_pb2.CHANGE_STATE_VERIFYING)
        aborted = await predictor.stub.AbortChange(
            pb.AbortChangeRequest(name=held.name, reason="maintenance window ended")
        )
        rollbacks = await predictor.stub.ListRollbacks(
            pb.ListRollbacksRequest(parent=f"systems/{system_id}")
        )
    assert held.state == common_pb2.CHANGE_STATE_HELD
    assert approved.change.override.actor == "anonymous"
    assert approved.change.override.reason == "reviewed the diff"
    assert verifying.state == common_pb2.CHANGE_STATE_VERIFYING
    assert aborted.change.state == common_pb2.CHANGE_STATE_ROLLED_BACK
    assert [c.action for c in predictor.applier.calls] == ["apply", "rollback"]
    assert predictor.applier.systems[f"systems/{system_id}"] == BASE_CONFIGURATION
    assert rollbacks.rollbacks[0].reason == common_pb2.ROLLBACK_REASON_ABORTED
    assert "maintenance window ended" in rollbacks.rollbacks[0].explanation


async def test_forcing_past_a_negative_verdict_records_who_and_why(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "forced")
        await with_configuration(predictor.stub, system_id)
        policy = await create_policy(predictor.stub, delay_s=30.0)
        proposed = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(
                change=_proposal(system_id, HARMFUL), mode=SHADOW, policy=policy
            )
        )
        rejected = await settle(predictor.stub, proposed.change.name)
        with pytest.raises(grpc.aio.AioRpcError) as no_reason:
            await predictor.stub.ForceChange(pb.ForceChangeRequest(name=rejected.name))
        forced = await predictor.stub.ForceChange(
            pb.ForceChangeRequest(name=rejected.name, reason="debug logging needed for INC-7")
        )
        await _wait_for(predictor, rejected.name, common_pb2.CHANGE_STATE_VERIFYING)
        await predictor.stub.AbortChange(pb.AbortChangeRequest(name=rejected.name))
    assert rejected.state == common_pb2.CHANGE_STATE_REJECTED
    assert no_reason.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert forced.change.override.reason == "debug logging needed for INC-7"
    assert forced.change.override.actor == "anonymous"
    assert [c.action for c in predictor.applier.calls] == ["apply", "rollback"]


async def _wait_for(predictor: object, name: str, state: int) -> common_pb2.Change:
    import asyncio

    stub = predictor.stub  # type: ignore[attr-defined]
    for _ in range(400):
        change = (await stub.GetChange(pb.GetChangeRequest(name=name))).change
        if change.state == state:
            return change
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never reached state {state}: {change}")


@pytest.mark.parametrize(
    ("request_", "code", "words"),
    [
        (
            pb.CreateConfigurationRequest(parent="systems/nobody-here", configuration=None),
            grpc.StatusCode.INVALID_ARGUMENT,
            "configuration",
        ),
        (
            pb.CreateConfigurationRequest(
                parent="systems/nobody-here", configuration=configuration({"a": 1})
            ),
            grpc.StatusCode.NOT_FOUND,
            "systems/nobody-here",
        ),
        (
            pb.CreateConfigurationRequest(
                parent="systems/nobody-here", configuration=configuration({"a": 1}, kind="")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "kind",
        ),
    ],
)
async def test_bad_configurations_are_refused_with_what_to_fix(
    store: Store, request_: pb.CreateConfigurationRequest, code: grpc.StatusCode, words: str
) -> None:
    async with running_predictor(store) as predictor:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await predictor.stub.CreateConfiguration(request_)
    assert refused.value.code() == code
    assert words in (refused.value.details() or "")


async def test_an_unknown_policy_and_a_system_without_configuration_are_refused(
    store: Store,
) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "bare")
        with pytest.raises(grpc.aio.AioRpcError) as no_configuration:
            await predictor.stub.ProposeChange(
                pb.ProposeChangeRequest(change=_proposal(system_id, HARMLESS))
            )
        await with_configuration(predictor.stub, system_id)
        with pytest.raises(grpc.aio.AioRpcError) as no_policy:
            await predictor.stub.ProposeChange(
                pb.ProposeChangeRequest(
                    change=_proposal(system_id, HARMLESS), policy="policies/missing"
                )
            )
        changes = await predictor.stub.ListChanges(
            pb.ListChangesRequest(parent=f"systems/{system_id}")
        )
    assert no_configuration.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "create or import one first" in (no_configuration.value.details() or "")
    assert no_policy.value.code() == grpc.StatusCode.NOT_FOUND
    assert not changes.changes


async def test_versions_are_listed_newest_first_and_diffed(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "diff")
        first = await with_configuration(predictor.stub, system_id)
        second = await with_configuration(
            predictor.stub, system_id, {**BASE_CONFIGURATION, "workers": 8, "new_flag": True}
        )
        diff = await predictor.stub.DiffConfigurations(
            pb.DiffConfigurationsRequest(first=first.name, second=second.name)
        )
        page = await predictor.stub.ListConfigurations(
            pb.ListConfigurationsRequest(parent=f"systems/{system_id}", page_size=1)
        )
        rest = await predictor.stub.ListConfigurations(
            pb.ListConfigurationsRequest(
                parent=f"systems/{system_id}", page_size=1, page_token=page.next_page_token
            )
        )
    changed = {d.key: (d.before, d.after) for d in diff.differences}
    assert set(changed) == {"workers", "new_flag"}
    assert changed["workers"][0].number_value == 4
    assert changed["workers"][1].number_value == 8
    assert not diff.differences[0].HasField("before") or diff.differences[0].key == "workers"
    assert [c.version for c in page.configurations] == [2]
    assert [c.version for c in rest.configurations] == [1]
    assert second.content_hash != first.content_hash
    assert len(second.content_hash) == 64


async def test_an_out_of_bounds_value_or_an_unknown_type_is_refused_and_nothing_stored(
    store: Store,
) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "bounds")
        await with_configuration(predictor.stub, system_id)
        with pytest.raises(grpc.aio.AioRpcError) as too_many:
            await predictor.stub.ProposeChange(
                pb.ProposeChangeRequest(
                    change=_proposal(system_id, {**BASE_CONFIGURATION, "workers": 0})
                )
            )
        bad_type = configuration(BASE_CONFIGURATION)
        bad_type.schema.add(key="workers", type=common_pb2.PARAMETER_TYPE_UNSPECIFIED)
        with pytest.raises(grpc.aio.AioRpcError) as unknown_type:
            await predictor.stub.ProposeChange(
                pb.ProposeChangeRequest(
                    change=pb.ProposedChange(system=f"systems/{system_id}", configuration=bad_type)
                )
            )
        versions = await predictor.stub.ListConfigurations(
            pb.ListConfigurationsRequest(parent=f"systems/{system_id}")
        )
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "workers" in (too_many.value.details() or "")
    assert unknown_type.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "schema" in (unknown_type.value.details() or "")
    assert [c.version for c in versions.configurations] == [1]


async def test_both_modes_take_the_decisive_answer_where_the_history_has_none(
    store: Store,
) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "both")
        await with_configuration(predictor.stub, system_id)
        reply = await predictor.stub.PredictImpact(
            pb.PredictImpactRequest(
                change=_proposal(system_id, HARMFUL), mode=common_pb2.PREDICTION_MODE_BOTH
            )
        )
    # No fingerprint: the learned half cannot say anything; the shadow run can.
    assert reply.prediction.mode == common_pb2.PREDICTION_MODE_BOTH
    assert reply.prediction.verdict == common_pb2.VERDICT_NEGATIVE
    assert "db.client.operation.duration" in {k.kpi for k in reply.prediction.kpis}
