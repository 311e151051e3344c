"""Dry runs are free (no applier, nothing that blocks, only their own record), and the
policy's no-data action holds in live verification as it does in prediction."""

from __future__ import annotations

import grpc
import pytest

from cfgclone.common.store import Store
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

LEARNED = common_pb2.PREDICTION_MODE_LEARNED


async def _audit(stub: object, system_id: str) -> tuple[list[str], list[str]]:
    parent = f"systems/{system_id}"
    changes = await stub.ListChanges(pb.ListChangesRequest(parent=parent))  # type: ignore[attr-defined]
    rollbacks = await stub.ListRollbacks(pb.ListRollbacksRequest(parent=parent))  # type: ignore[attr-defined]
    return [c.name for c in changes.changes], [r.name for r in rollbacks.rollbacks]


async def test_a_dry_run_blocks_nothing_and_leaves_only_its_own_record(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "dry")
        await with_configuration(predictor.stub, system_id)
        # No history anywhere: the learned prediction is undecided, which the policy holds.
        policy = await create_policy(predictor.stub)
        before = await _audit(predictor.stub, system_id)

        dry = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(
                change=pb.ProposedChange(
                    system=f"systems/{system_id}",
                    configuration=configuration({**BASE_CONFIGURATION, "workers": 8}),
                ),
                mode=LEARNED,
                policy=policy,
                dry_run=True,
            )
        )
        dry_change = await settle(predictor.stub, dry.change.name)
        after = await _audit(predictor.stub, system_id)
        current = await predictor.stub.GetConfiguration(
            pb.GetConfigurationRequest(name=f"systems/{system_id}/configurations/-")
        )

        # The next real change of the system proceeds.
        real = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(
                change=pb.ProposedChange(
                    system=f"systems/{system_id}",
                    configuration=configuration({**BASE_CONFIGURATION, "workers": 6}),
                ),
                mode=LEARNED,
                policy=policy,
            )
        )

    assert dry_change.dry_run
    assert dry_change.state == common_pb2.CHANGE_STATE_HELD
    assert dry_change.state_reason.startswith("dry run: would be held for an operator")
    assert after[0] == [dry.change.name, *before[0]] or set(after[0]) == {
        dry.change.name,
        *before[0],
    }
    assert after[1] == before[1], "a dry run logs no rollback"
    assert current.configuration.name != dry_change.to_configuration, "nothing applied"
    assert predictor.applier.calls == []
    assert real.change.name != dry.change.name
    assert not real.change.dry_run


async def test_a_dry_run_needs_no_applier(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "dry-noapplier")
        await with_configuration(predictor.stub, system_id)
        policy = await create_policy(predictor.stub)
        unapplicable = configuration({"threads": 4}, kind="no-such-tool")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await predictor.stub.ProposeChange(
                pb.ProposeChangeRequest(
                    change=pb.ProposedChange(
                        system=f"systems/{system_id}", configuration=unapplicable
                    ),
                    mode=LEARNED,
                    policy=policy,
                )
            )
        dry = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(
                change=pb.ProposedChange(system=f"systems/{system_id}", configuration=unapplicable),
                mode=LEARNED,
                policy=policy,
                dry_run=True,
            )
        )
        settled = await settle(predictor.stub, dry.change.name)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert settled.dry_run
    assert settled.state in (common_pb2.CHANGE_STATE_HELD, common_pb2.CHANGE_STATE_KEPT)


async def test_no_data_after_a_change_is_held_when_the_policy_says_hold(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "nodata")
        await with_configuration(predictor.stub, system_id)
        # Undecided predictions proceed; no sample ever arrives, so verification has no data.
        policy = await create_policy(
            predictor.stub,
            delay_s=0.2,
            window_s=1.0,
            on_inconclusive=common_pb2.POLICY_ACTION_PROCEED,
            on_nodata=common_pb2.POLICY_ACTION_HOLD,
        )
        proposed = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(
                change=pb.ProposedChange(
                    system=f"systems/{system_id}",
                    configuration=configuration({**BASE_CONFIGURATION, "workers": 8}),
                ),
                mode=LEARNED,
                policy=policy,
            )
        )
        held = await settle(predictor.stub, proposed.change.name)
        await predictor.stub.ApproveChange(
            pb.ApproveChangeRequest(name=held.name, reason="checked by hand")
        )
        kept = await settle(predictor.stub, held.name)
        rollbacks = await predictor.stub.ListRollbacks(
            pb.ListRollbacksRequest(parent=f"systems/{system_id}")
        )

    assert held.state == common_pb2.CHANGE_STATE_HELD, held.state_reason
    assert held.verification.verdict == common_pb2.VERDICT_NODATA
    assert "held for an operator after live verification" in held.state_reason
    assert kept.state == common_pb2.CHANGE_STATE_KEPT, kept.state_reason
    assert [c.action for c in predictor.applier.calls] == ["apply"]
    assert list(rollbacks.rollbacks) == []
