"""A shadow prediction depends on the target: its hardware and its recorded load.

Through PredictImpact on a real predictor with the simulated provider: the same
change gets a different verdict on machines that differ only in memory, and on
machines that differ only in the load their agents recorded.
"""

from __future__ import annotations

import time

import numpy as np

from cfgclone.common.store import Store
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from tests.predictor.support import (
    BASE_CONFIGURATION,
    configuration,
    register,
    running_predictor,
    with_configuration,
)
from tests.storage import store_samples

SHADOW = common_pb2.PREDICTION_MODE_SHADOW
GIB = 2**30


async def _machine(store: Store, prefix: str, cores: int, memory_gib: int) -> str:
    system_id = await register(store, prefix)
    async with store.transaction() as conn:
        await conn.execute(
            "UPDATE systems SET cpu_cores = %s, memory_bytes = %s WHERE system_id = %s",
            (cores, memory_gib * GIB, system_id),
        )
    return system_id


async def _recorded_rate(store: Store, system_id: str, rate: float, cores: int) -> None:
    now = time.time_ns()
    ts = np.arange(now - 3600 * 10**9, now, 10 * 10**9, dtype=np.int64)
    values = rate * np.random.default_rng(5).normal(1.0, 0.03, ts.size)
    await store_samples(
        store, system_id, {"http.server.request.rate": (ts, values)}, cpu_cores=cores
    )


async def _predict(stub: object, system_id: str, change: dict[str, object]) -> object:
    proposal = pb.ProposedChange(
        system=f"systems/{system_id}", configuration=configuration({**BASE_CONFIGURATION, **change})
    )
    reply = await stub.PredictImpact(  # type: ignore[attr-defined]
        pb.PredictImpactRequest(change=proposal, mode=SHADOW)
    )
    return reply.prediction


async def test_a_cache_that_fits_one_machines_memory_is_harmful_on_a_smaller_one(
    store: Store,
) -> None:
    bigger_cache = {"cache_mb": 8192}
    async with running_predictor(store) as predictor:
        large = await _machine(store, "large", cores=8, memory_gib=64)
        small = await _machine(store, "small", cores=8, memory_gib=8)
        for system_id in (large, small):
            await _recorded_rate(store, system_id, 400.0, cores=8)
            await with_configuration(predictor.stub, system_id)
        on_large = await _predict(predictor.stub, large, bigger_cache)
        on_small = await _predict(predictor.stub, small, bigger_cache)
    assert on_large.verdict in (common_pb2.VERDICT_POSITIVE, common_pb2.VERDICT_NEUTRAL), (  # type: ignore[attr-defined]
        on_large.explanation  # type: ignore[attr-defined]
    )
    assert on_small.verdict == common_pb2.VERDICT_NEGATIVE, on_small.explanation  # type: ignore[attr-defined]
    assert "busy-period load: http.server.request.rate 4" in on_small.explanation  # type: ignore[attr-defined]


async def test_fewer_workers_are_harmless_at_a_light_recorded_load_and_harmful_at_a_heavy_one(
    store: Store,
) -> None:
    fewer_workers = {"workers": 2}
    async with running_predictor(store) as predictor:
        quiet = await _machine(store, "quiet", cores=8, memory_gib=32)
        busy = await _machine(store, "busy", cores=8, memory_gib=32)
        await _recorded_rate(store, quiet, 20.0, cores=8)
        await _recorded_rate(store, busy, 900.0, cores=8)
        for system_id in (quiet, busy):
            await with_configuration(predictor.stub, system_id)
        on_quiet = await _predict(predictor.stub, quiet, fewer_workers)
        on_busy = await _predict(predictor.stub, busy, fewer_workers)
    assert on_busy.verdict == common_pb2.VERDICT_NEGATIVE, on_busy.explanation  # type: ignore[attr-defined]
    assert on_quiet.verdict != common_pb2.VERDICT_NEGATIVE, on_quiet.explanation  # type: ignore[attr-defined]
