"""Guarded apply with live verification: kept when the live KPIs hold, rolled back with
the evidence when they regress, even though the prediction passed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from cfgclone.common.store import Store
from cfgclone.predictor.shadow import SimulatedShadowProvider
from cfgclone.simulation import SimulatedSystem
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from tests.predictor.live import feed, history
from tests.predictor.support import (
    BASE_CONFIGURATION,
    RunningPredictor,
    configuration,
    create_policy,
    register,
    running_predictor,
    settle,
    with_configuration,
)

SHADOW = common_pb2.PREDICTION_MODE_SHADOW
LIVE = SimulatedSystem(noise=0.03)
"""The live system: debug logging makes it 30% slower, as in the shadow model."""


def _applied(predictor: RunningPredictor, system_id: str) -> Mapping[str, object]:
    return predictor.applier.systems.get(f"systems/{system_id}", BASE_CONFIGURATION)


async def _propose_and_watch(
    store: Store, predictor: RunningPredictor, system_id: str, content: Mapping[str, object]
) -> common_pb2.Change:
    await with_configuration(predictor.stub, system_id)
    await history(store, system_id, LIVE, BASE_CONFIGURATION)
    policy = await create_policy(predictor.stub, delay_s=0.5, window_s=2.0, min_samples=10)
    stop = asyncio.Event()
    feeder = asyncio.create_task(
        feed(store, system_id, LIVE, lambda: _applied(predictor, system_id), stop)
    )
    try:
        proposed = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(
                change=pb.ProposedChange(
                    system=f"systems/{system_id}", configuration=configuration(content)
                ),
                mode=SHADOW,
                policy=policy,
            )
        )
        return await settle(predictor.stub, proposed.change.name, within=60)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder


async def test_a_harmless_change_is_applied_verified_and_kept(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "kept")
        change = await _propose_and_watch(
            store, predictor, system_id, {**BASE_CONFIGURATION, "request_timeout_s": 60}
        )
        current = await predictor.stub.GetConfiguration(
            pb.GetConfigurationRequest(name=f"systems/{system_id}/configurations/-")
        )
    assert change.state == common_pb2.CHANGE_STATE_KEPT, change.state_reason
    assert change.verification.verdict in (common_pb2.VERDICT_NEUTRAL, common_pb2.VERDICT_POSITIVE)
    observed = {k.kpi for k in change.verification.kpis}
    assert "http.server.request.duration" in observed
    assert current.configuration.name == change.to_configuration
    assert [c.action for c in predictor.applier.calls] == ["apply"]


async def test_a_change_that_passes_prediction_but_regresses_live_is_rolled_back(
    store: Store,
) -> None:
    # The shadow model does not know debug logging, so the prediction passes; the live
    # system is 30% slower with it.
    blind = SimulatedShadowProvider(SimulatedSystem(effects=()), seed=3)
    async with running_predictor(store, shadow=blind) as predictor:
        system_id = await register(store, "regress")
        change = await _propose_and_watch(
            store, predictor, system_id, {**BASE_CONFIGURATION, "debug_logging": True}
        )
        rollbacks = await predictor.stub.ListRollbacks(
            pb.ListRollbacksRequest(parent=f"systems/{system_id}")
        )
        current = await predictor.stub.GetConfiguration(
            pb.GetConfigurationRequest(name=f"systems/{system_id}/configurations/-")
        )
    assert change.prediction.verdict in (common_pb2.VERDICT_NEUTRAL, common_pb2.VERDICT_POSITIVE)
    assert change.state == common_pb2.CHANGE_STATE_ROLLED_BACK, change.state_reason
    assert change.verification.verdict == common_pb2.VERDICT_NEGATIVE
    rollback = rollbacks.rollbacks[0]
    assert rollback.reason == common_pb2.ROLLBACK_REASON_VERIFICATION_FAILED
    response = {k.kpi: k for k in rollback.observed}["http.server.request.duration"]
    assert response.verdict == common_pb2.VERDICT_NEGATIVE
    assert response.relative_change > 0.15
    assert rollback.predicted, "the passing prediction is kept beside the observation"
    assert [c.action for c in predictor.applier.calls] == ["apply", "rollback"]
    assert predictor.applier.systems[f"systems/{system_id}"] == BASE_CONFIGURATION
    assert current.configuration.source == common_pb2.CONFIGURATION_SOURCE_ROLLBACK
    assert dict(current.configuration.content) == {
        k: float(v) if not isinstance(v, bool) else v for k, v in BASE_CONFIGURATION.items()
    }
    await asyncio.sleep(0)
