"""Learned predictions through the service: no history is INCONCLUSIVE; a similar
system's history makes the verdict confident."""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest

from cfgclone.common.store import Store
from cfgclone.fingerprint import service as fingerprints
from cfgclone.fingerprint.settings import FingerprintSettings
from cfgclone.predictor import repository
from cfgclone.predictor.history import FLEET, ModelCache
from cfgclone.predictor.learned import HistoryLearner
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from tests.behaviour.synthetic import hockey_system
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
            observed = {"http.server.request.duration": slower + float(rng.normal(0.0, 0.02))}
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
    assert [k.HasField("estimate") for k in before.prediction.kpis] == [False]
    assert after.prediction.verdict == common_pb2.VERDICT_NEGATIVE
    response = {k.kpi: k for k in after.prediction.kpis}["http.server.request.duration"]
    assert response.interval_low > 0.10
    assert 0.2 < response.relative_change < 0.4
    assert response.HasField("estimate")
    assert response.estimate.relative_change == response.relative_change
    assert response.estimate.interval_low == response.interval_low
    assert response.estimate.confidence == pytest.approx(0.9)
    assert after.prediction.model_version.startswith("history/")
    assert after.prediction.model_version != before.prediction.model_version


async def _workers_history(store: Store, system_id: str, changes: int) -> None:
    """Verified outcomes: each doubling of workers made responses 15% faster, give or
    take a noise of 6%."""
    rng = np.random.default_rng(11)
    async with store.transaction() as conn:
        system = await repository.system(conn, system_id)
        latest = await repository.latest_fingerprint(conn, system)
        assert latest is not None
        for index in range(changes):
            workers = int(rng.choice([1, 2, 3, 5, 6, 8, 12, 16]))
            change = -0.15 * np.log2(workers / 4) + float(rng.normal(0.0, 0.06))
            await repository.insert_example(
                conn,
                repository.NewExample(
                    system=system,
                    from_version=index + 1,
                    to_version=index + 2,
                    change_id=None,
                    embedding=latest.embedding,
                    before=dict(BASE_CONFIGURATION),
                    after={**BASE_CONFIGURATION, "workers": workers},
                    observed={"app.response_time": change},
                    origin="outcome",
                ),
            )


async def _policy(stub: object, confidence: float) -> str:
    name = f"policies/confidence-{int(confidence * 100)}"
    policy = common_pb2.Policy(
        name=name,
        thresholds=[
            common_pb2.KpiThreshold(
                kpi="app.response_time",
                direction=common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
                max_relative_change=0.05,
                critical=True,
                confidence=confidence,
            )
        ],
        min_confidence=0.9,
    )
    reply = await stub.CreatePolicy(pb.CreatePolicyRequest(policy=policy))  # type: ignore[attr-defined]
    return str(reply.policy.name)


async def test_a_policys_confidence_sets_the_interval_and_the_share_decided(
    own_store: Store,
) -> None:
    """At 60% confidence the intervals are narrow and most worker counts are decided;
    at 99% they are wide and fewer are. A confidence outside (0, 1) is refused."""
    await _fingerprinted(own_store, "confidence-target", seed=4)
    await _workers_history(own_store, "confidence-target", changes=60)
    decided: dict[float, int] = {}
    widths: dict[float, float] = {}
    async with running_predictor(own_store) as predictor:
        await with_configuration(predictor.stub, "confidence-target")
        for confidence in (0.6, 0.99):
            policy = await _policy(predictor.stub, confidence)
            decided[confidence] = 0
            for workers in (2, 3, 5, 6, 8, 12, 16):
                proposal = pb.ProposedChange(
                    system="systems/confidence-target",
                    configuration=configuration({**BASE_CONFIGURATION, "workers": workers}),
                )
                reply = await predictor.stub.PredictImpact(
                    pb.PredictImpactRequest(change=proposal, policy=policy)
                )
                kpi = {k.kpi: k for k in reply.prediction.kpis}["app.response_time"]
                assert kpi.estimate.confidence == pytest.approx(confidence)
                widths[confidence] = kpi.interval_high - kpi.interval_low
                decided[confidence] += reply.prediction.verdict != common_pb2.VERDICT_INCONCLUSIVE
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _policy(predictor.stub, 1.5)
    assert widths[0.99] > 1.5 * widths[0.6]
    assert decided[0.6] > decided[0.99]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "policy.thresholds[0].confidence" in str(refused.value.details())


class _CountedLearner(HistoryLearner):
    """The real learner, counting its fits per target."""

    def fit(self, history, *, target, embedding, similarity=None):  # type: ignore[no-untyped-def]
        FITS[target] = FITS.get(target, 0) + 1
        return super().fit(history, target=target, embedding=embedding, similarity=similarity)


FITS: dict[str, int] = {}


async def test_concurrent_first_requests_share_one_fit_and_the_fleet_model_answers_meanwhile(
    own_store: Store,
) -> None:
    await _fingerprinted(own_store, "latency-target", seed=5)
    await _workers_history(own_store, "latency-target", changes=30)
    async with own_store.connection() as conn:
        system = await repository.system(conn, "latency-target")
        latest = await repository.latest_fingerprint(conn, system)
    assert latest is not None
    FITS.clear()
    models = ModelCache(own_store, _CountedLearner(), first_wait=0.0)
    assert await models.refresh() == 1
    fleet_version = models.version_of(FLEET)
    assert fleet_version
    first = await models.model_for("systems/latency-target", latest.embedding, None)
    assert first.version == fleet_version
    assert first.target == "systems/latency-target"
    together = await asyncio.gather(
        *(models.model_for("systems/latency-target", latest.embedding, None) for _ in range(5))
    )
    await models.wait()
    own = await models.model_for("systems/latency-target", latest.embedding, None)
    await models.close()
    assert FITS == {FLEET: 1, "systems/latency-target": 1}
    assert {m.version for m in together} <= {fleet_version, own.version}
    assert own.version != fleet_version


async def _one_more_example(store: Store, system_id: str, version: int) -> None:
    async with store.transaction() as conn:
        system = await repository.system(conn, system_id)
        latest = await repository.latest_fingerprint(conn, system)
        assert latest is not None
        await repository.insert_example(
            conn,
            repository.NewExample(
                system=system,
                from_version=version,
                to_version=version + 1,
                change_id=None,
                embedding=latest.embedding,
                before=dict(BASE_CONFIGURATION),
                after={**BASE_CONFIGURATION, "workers": 8},
                observed={"app.response_time": -0.15},
                origin="outcome",
            ),
        )


async def test_a_new_example_refits_only_the_models_that_learn_from_it(own_store: Store) -> None:
    await _fingerprinted(own_store, "refit-target", seed=6)
    await _fingerprinted(own_store, "refit-stranger", seed=7)
    await _workers_history(own_store, "refit-target", changes=12)
    await _workers_history(own_store, "refit-stranger", changes=12)
    async with own_store.connection() as conn:
        latest = await repository.latest_fingerprint(
            conn, await repository.system(conn, "refit-target")
        )
    assert latest is not None
    target = "systems/refit-target"
    # The similarity engine finds no neighbour: the target learns from its own history.
    alone = {target: 1.0}
    FITS.clear()
    models = ModelCache(own_store, _CountedLearner(), first_wait=60.0)
    first = await models.model_for(target, latest.embedding, alone)
    await models.wait()
    fits = FITS.get(target, 0)

    await _one_more_example(own_store, "refit-stranger", 100)
    unchanged = await models.model_for(target, latest.embedding, alone)
    await models.wait()
    after_stranger = FITS.get(target, 0)
    await _one_more_example(own_store, "refit-target", 100)
    refitted = await models.model_for(target, latest.embedding, alone)
    await models.wait()
    await models.close()

    assert fits == 1
    assert after_stranger == 1
    assert unchanged.version == first.version
    assert FITS[target] == 2
    assert refitted.version != first.version


async def test_while_a_system_is_refitted_its_previous_model_answers(own_store: Store) -> None:
    await _fingerprinted(own_store, "stale-target", seed=8)
    await _workers_history(own_store, "stale-target", changes=12)
    async with own_store.connection() as conn:
        latest = await repository.latest_fingerprint(
            conn, await repository.system(conn, "stale-target")
        )
    assert latest is not None
    target = "systems/stale-target"
    alone = {target: 1.0}
    models = ModelCache(own_store, HistoryLearner(), first_wait=0.0)
    first = await models.model_for(target, latest.embedding, alone)
    await models.wait()

    await _one_more_example(own_store, "stale-target", 100)
    meanwhile = await models.model_for(target, latest.embedding, alone)
    await models.wait()
    refitted = await models.model_for(target, latest.embedding, alone)
    await models.close()

    assert meanwhile.version == first.version
    assert refitted.version != first.version


async def test_a_fitted_model_is_left_out_of_garbage_collections(own_store: Store) -> None:
    """A model is hundreds of thousands of objects; a full garbage collection walking a
    fleet's models would pause a prediction for hundreds of milliseconds, so once fitted
    they are frozen out of the collector's passes."""
    await _fingerprinted(own_store, "frozen-target", seed=10)
    await _workers_history(own_store, "frozen-target", changes=12)
    async with own_store.connection() as conn:
        latest = await repository.latest_fingerprint(
            conn, await repository.system(conn, "frozen-target")
        )
    assert latest is not None
    target = "systems/frozen-target"
    models = ModelCache(own_store, HistoryLearner(), first_wait=60.0, freeze_models=True)
    try:
        model = await models.model_for(target, latest.embedding, {target: 1.0})
        await models.close()
        fitted = model.models["app.response_time"].fitted
        assert fitted is not None
        tracked = gc.get_objects()
        assert gc.get_freeze_count() > 0
        assert not any(obj is fitted for obj in tracked)
    finally:
        gc.unfreeze()
