"""Shadow predictions start a copy of the target and its load: operators only, a few at once.

A PredictImpact that finds every shadow slot busy is RESOURCE_EXHAUSTED at once; a
proposed change, predicted in the background, waits for a slot and completes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest

from cfgclone.common.store import Store
from cfgclone.predictor.shadow import ShadowTarget, SimulatedShadowProvider
from cfgclone.predictor.shadow.simulated import SimulatedShadowCopy
from cfgclone.simulation import HARMFUL_CHANGE
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from tests.predictor.support import (
    BASE_CONFIGURATION,
    FINAL,
    configuration,
    register,
    running_predictor,
    settle,
    with_configuration,
)
from tests.predictor.test_audit_and_access import CREDENTIALS

SHADOW = common_pb2.PREDICTION_MODE_SHADOW
HARMFUL = {**BASE_CONFIGURATION, **HARMFUL_CHANGE}


class GatedShadowProvider(SimulatedShadowProvider):
    """The simulated provider, whose copies wait for ``gate`` before they run."""

    def __init__(self) -> None:
        super().__init__(seed=7)
        self.gate = asyncio.Event()
        self.waiting = 0

    @asynccontextmanager
    async def copy_of(self, target: ShadowTarget) -> AsyncIterator[SimulatedShadowCopy]:
        self.waiting += 1
        await self.gate.wait()
        self.waiting -= 1
        async with super().copy_of(target) as copy:
            yield copy


def _request(system_id: str, mode: int = SHADOW) -> pb.PredictImpactRequest:
    return pb.PredictImpactRequest(
        change=pb.ProposedChange(
            system=f"systems/{system_id}", configuration=configuration(HARMFUL)
        ),
        mode=mode,  # type: ignore[arg-type]
    )


async def _until(condition: object, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("mode", [SHADOW, common_pb2.PREDICTION_MODE_BOTH])
async def test_a_reader_may_not_run_a_shadow_prediction(store: Store, mode: int) -> None:
    system_id = await register(store, "shadow-reader")
    async with running_predictor(store, credentials=CREDENTIALS, token="operator-token") as op:
        await with_configuration(op.stub, system_id)
    async with running_predictor(store, credentials=CREDENTIALS, token="reader-token") as reader:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await reader.stub.PredictImpact(_request(system_id, mode))
        learned = await reader.stub.PredictImpact(
            _request(system_id, common_pb2.PREDICTION_MODE_LEARNED)
        )
        started = reader.provider.created
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "operator" in (refused.value.details() or "")
    assert learned.prediction.mode == common_pb2.PREDICTION_MODE_LEARNED
    assert started == 0


async def test_shadow_runs_past_the_cap_are_refused_and_proposals_wait(store: Store) -> None:
    system_id = await register(store, "shadow-cap")
    other_id = await register(store, "shadow-queue")
    provider = GatedShadowProvider()
    async with running_predictor(store, shadow=provider, MAX_SHADOW_RUNS="1") as predictor:
        await with_configuration(predictor.stub, system_id)
        await with_configuration(predictor.stub, other_id)
        first = asyncio.ensure_future(predictor.stub.PredictImpact(_request(system_id)))
        await _until(lambda: provider.waiting == 1)
        with pytest.raises(grpc.aio.AioRpcError) as busy:
            await predictor.stub.PredictImpact(_request(system_id))
        proposed = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(change=_request(other_id).change, mode=SHADOW)
        )
        await asyncio.sleep(0.3)
        queued = await predictor.stub.GetChange(pb.GetChangeRequest(name=proposed.change.name))
        waiting_while_busy = provider.waiting
        provider.gate.set()
        answered = await first
        change = await settle(predictor.stub, proposed.change.name)
        after = await predictor.stub.PredictImpact(_request(system_id))

    assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "MAX_SHADOW_RUNS" in (busy.value.details() or "")
    assert waiting_while_busy == 1  # the proposal did not start a second copy
    assert queued.change.state == common_pb2.CHANGE_STATE_PREDICTING
    assert answered.prediction.verdict == common_pb2.VERDICT_NEGATIVE
    assert change.state in FINAL
    assert change.HasField("prediction")
    assert after.prediction.verdict == common_pb2.VERDICT_NEGATIVE
    assert provider.created == 3
    assert provider.live_copies == 0
