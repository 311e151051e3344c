"""Learned predictions through the service: no history is INCONCLUSIVE; a similar
system's history makes the verdict confident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from cfgclone.common.store import Store
from cfgclone.fingerprint import service as fingerprints
from cfgclone.fingerprint.settings import FingerprintSettings
from cfgclone.predictor import repository
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from tests.fingerprint.synthetic import hockey_system
from tests.predictor.support import (
    BASE_CONFIGURATION,
    configuration,
    running_predictor,
    with_configuration,
)
from tests.storage import store_samples

START_BUCKET = int((datetime.now(UTC) - timedelta(hours=3)).timestamp()) // 10


async def _fingerprinted(store: Store, system_id: str, seed: int) -> None:
    metrics = hockey_system(knee=40.0, buckets=720, seed=seed, start_bucket=START_BUCKET)
    await store_samples(store, system_id, {n: (s.ts_unix_ns, s.values) for n, s in metrics.items()})
    await fingerprints.build(
        store, FingerprintSettings(), fingerprints.BuildRequest(system_id=system_id)
    )


async def _history(store: Store, system_id: str, changes: int) -> None:
    """Verified outcomes on ``system_id``: debug logging slowed responses by about 30%,
    cache sizes moved them a little."""
    rng = np.random.default_rng(3)
    async with store.transaction() as conn:
        system = await repository.system(conn, system_id)
        latest = await repository.latest_fingerprint(conn, system)
        assert latest is not None
        embedding = latest.embedding
        for index in range(changes):
            debug = index % 2 == 0
            after = {
                **BASE_CONFIGURATION,
                "debug_logging": debug,
                "cache_mb": int(rng.choice([128, 256, 512])),
            }
            slower = 0.30 if debug else 0.0
            observed = {"app.response_time": slower + float(rng.normal(0.0, 0.02))}
            await repository.insert_example(
                conn,
                repository.NewExample(
                    system=system,
                    from_version=index + 1,
                    to_version=index + 2,
                    change_id=None,
                    embedding=embedding,
                    before=dict(BASE_CONFIGURATION),
                    after=after,
                    observed=observed,
                    origin="outcome",
                ),
            )


async def test_borrowing_a_similar_systems_history_turns_inconclusive_into_a_verdict(
    own_store: Store,
) -> None:
    await _fingerprinted(own_store, "learned-target", seed=1)
    await _fingerprinted(own_store, "learned-neighbour", seed=2)
    harmful = pb.ProposedChange(
        system="systems/learned-target",
        configuration=configuration({**BASE_CONFIGURATION, "debug_logging": True}),
    )
    async with running_predictor(own_store) as predictor:
        await with_configuration(predictor.stub, "learned-target")
        before = await predictor.stub.PredictImpact(pb.PredictImpactRequest(change=harmful))
        await _history(own_store, "learned-neighbour", changes=24)
        after = await predictor.stub.PredictImpact(pb.PredictImpactRequest(change=harmful))
    assert before.prediction.verdict == common_pb2.VERDICT_INCONCLUSIVE
    assert "no history" in before.prediction.explanation
    assert after.prediction.verdict == common_pb2.VERDICT_NEGATIVE
    response = {k.kpi: k for k in after.prediction.kpis}["app.response_time"]
    assert response.interval_low > 0.10
    assert 0.2 < response.relative_change < 0.4
    assert after.prediction.model_version.startswith("history/")
    assert after.prediction.model_version != before.prediction.model_version
