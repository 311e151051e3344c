"""Imported history is right in any order: samples before versions, versions before
samples, versions newest first, a version arriving after the examples around it were
measured, and samples arriving late.

One system runs three configuration versions for 100 minutes each; version 2 makes
responses 30% slower than version 1, version 3 makes them 0.8 of version 1's. Versions
are imported through CreateConfiguration with ``apply_time``, as a team would.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest

from cfgclone.behaviour import SampleSeries
from cfgclone.behaviour.build import build_fingerprint
from cfgclone.behaviour.embedding import DEFAULT_EMBEDDING_LAYOUT, embed
from cfgclone.behaviour.model import SystemProfile
from cfgclone.common.store import Store
from cfgclone.v1 import predictor_service_pb2 as pb
from tests.behaviour.synthetic import BUCKET_SECONDS, LATENCY, LOAD, hockey_system
from tests.predictor.support import BASE_CONFIGURATION, configuration, running_predictor
from tests.storage import store_samples

BUCKETS_PER_VERSION = 600
FACTORS = (1.0, 1.3, 0.8)
"""Response time of each version relative to version 1's."""
TRUTH = {(1, 2): 1.3 - 1.0, (2, 3): 0.8 / 1.3 - 1.0}


def _start_bucket() -> int:
    span = len(FACTORS) * BUCKETS_PER_VERSION * BUCKET_SECONDS
    return int((datetime.now(UTC) - timedelta(seconds=span + 600)).timestamp()) // BUCKET_SECONDS


def _apply_times(start_bucket: int) -> list[datetime]:
    return [
        datetime.fromtimestamp((start_bucket + i * BUCKETS_PER_VERSION) * BUCKET_SECONDS, UTC)
        for i in range(len(FACTORS))
    ]


def _samples(start_bucket: int) -> dict[str, SampleSeries]:
    """The whole history; each version's stretch has its response-time factor."""
    metrics = hockey_system(
        knee=60.0, buckets=len(FACTORS) * BUCKETS_PER_VERSION, seed=5, start_bucket=start_bucket
    )
    latency = metrics[LATENCY]
    first_ns = start_bucket * BUCKET_SECONDS * 1_000_000_000
    stretch_ns = BUCKETS_PER_VERSION * BUCKET_SECONDS * 1_000_000_000
    version = np.minimum((latency.ts_unix_ns - first_ns) // stretch_ns, len(FACTORS) - 1)
    metrics[LATENCY] = SampleSeries(
        latency.ts_unix_ns, latency.values * np.asarray(FACTORS)[version]
    )
    return metrics


def _between(
    metrics: Mapping[str, SampleSeries], start: datetime, end: datetime
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    low, high = int(start.timestamp() * 1e9), int(end.timestamp() * 1e9)
    chosen = {}
    for name, series in metrics.items():
        keep = (series.ts_unix_ns >= low) & (series.ts_unix_ns < high)
        chosen[name] = (series.ts_unix_ns[keep], series.values[keep])
    return chosen


async def _import_version(stub: object, system_id: str, index: int, applied: datetime) -> None:
    message = configuration({**BASE_CONFIGURATION, "workers": 4 * (index + 1)})
    message.apply_time.FromDatetime(applied)
    await stub.CreateConfiguration(  # type: ignore[attr-defined]
        pb.CreateConfigurationRequest(parent=f"systems/{system_id}", configuration=message)
    )


async def _examples(store: Store, system_id: str) -> dict[tuple[int, int], float]:
    """Observed response-time change of each imported example, by (from, to) version."""
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT e.from_version, e.to_version, e.observed FROM training_examples e "
            "JOIN systems s ON s.id = e.system_id WHERE s.system_id = %s AND origin = 'import'",
            (system_id,),
        )
        rows = await cursor.fetchall()
    return {(int(a), int(b)): float(observed[LATENCY]) for a, b, observed in rows}


async def _after_samples(store: Store, system_id: str) -> int:
    """Samples in the "after" window of the example of version 1 -> 2."""
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT after_samples FROM training_examples e JOIN systems s "
            "ON s.id = e.system_id WHERE s.system_id = %s AND from_version = 1",
            (system_id,),
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


def _assert_true_examples(found: Mapping[tuple[int, int], float]) -> None:
    assert set(found) == set(TRUTH)
    for pair, truth in TRUTH.items():
        assert found[pair] == pytest.approx(truth, abs=0.03), pair


async def test_samples_first_then_versions_one_by_one(own_store: Store) -> None:
    """The natural order: each version's example is measured before the next version
    exists, so its "after" window first runs to now; the next version corrects it."""
    system_id = f"natural-{uuid.uuid4().hex[:6]}"
    start = _start_bucket()
    applied = _apply_times(start)
    await store_samples(
        own_store, system_id, {n: (s.ts_unix_ns, s.values) for n, s in _samples(start).items()}
    )
    async with running_predictor(own_store) as predictor:
        await _import_version(predictor.stub, system_id, 0, applied[0])
        await _import_version(predictor.stub, system_id, 1, applied[1])
        await predictor.guard.imports.wait()
        early = await _examples(own_store, system_id)
        await _import_version(predictor.stub, system_id, 2, applied[2])
        await predictor.guard.imports.wait()
        final = await _examples(own_store, system_id)
    # Before version 3 exists, 1 -> 2 is measured over versions 2 and 3 together.
    assert early[(1, 2)] < TRUTH[(1, 2)] - 0.05
    _assert_true_examples(final)


async def test_versions_first_then_samples(own_store: Store) -> None:
    system_id = f"versions-first-{uuid.uuid4().hex[:6]}"
    start = _start_bucket()
    applied = _apply_times(start)
    await store_samples(own_store, system_id, {})
    async with running_predictor(own_store) as predictor:
        for index, moment in enumerate(applied):
            await _import_version(predictor.stub, system_id, index, moment)
        await predictor.guard.imports.wait()
        assert await _examples(own_store, system_id) == {}
        metrics = _samples(start)
        await store_samples(
            own_store, system_id, {n: (s.ts_unix_ns, s.values) for n, s in metrics.items()}
        )
        await predictor.guard.imports.sweep()
        await predictor.guard.imports.wait()
        _assert_true_examples(await _examples(own_store, system_id))
        status = await predictor.stub.GetTrainingStatus(
            pb.GetTrainingStatusRequest(system=f"systems/{system_id}")
        )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await predictor.stub.GetTrainingStatus(
                pb.GetTrainingStatusRequest(system="systems/no-such-system")
            )
    assert [(s.system, s.examples, s.import_pending) for s in status.systems] == [
        (f"systems/{system_id}", 2, False)
    ]
    assert status.systems[0].HasField("last_import_time")
    assert status.pending_imports == 0
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_versions_newest_first(own_store: Store) -> None:
    """Version numbers follow import order, apply times do not: pairs follow apply times."""
    system_id = f"newest-first-{uuid.uuid4().hex[:6]}"
    start = _start_bucket()
    applied = _apply_times(start)
    await store_samples(
        own_store, system_id, {n: (s.ts_unix_ns, s.values) for n, s in _samples(start).items()}
    )
    async with running_predictor(own_store) as predictor:
        for index in reversed(range(len(applied))):
            await _import_version(predictor.stub, system_id, index, applied[index])
            await predictor.guard.imports.wait()
        found = await _examples(own_store, system_id)
    # Imported newest first, apply order is version 3, 2, 1.
    renamed = {(4 - a, 4 - b): change for (a, b), change in found.items()}
    _assert_true_examples(renamed)


async def test_late_samples_measure_an_example_again(own_store: Store) -> None:
    system_id = f"late-samples-{uuid.uuid4().hex[:6]}"
    start = _start_bucket()
    applied = _apply_times(start)
    metrics = _samples(start)
    half = applied[1] + timedelta(seconds=BUCKETS_PER_VERSION * BUCKET_SECONDS / 8)
    await store_samples(own_store, system_id, _between(metrics, applied[0], half))
    await store_samples(own_store, system_id, _between(metrics, applied[2], datetime.now(UTC)))
    async with running_predictor(own_store) as predictor:
        for index, moment in enumerate(applied):
            await _import_version(predictor.stub, system_id, index, moment)
        await predictor.guard.imports.wait()
        early_count = await _after_samples(own_store, system_id)
        await store_samples(own_store, system_id, _between(metrics, half, applied[2]))
        await predictor.guard.imports.sweep()
        await predictor.guard.imports.wait()
        late_count = await _after_samples(own_store, system_id)
        final = await _examples(own_store, system_id)
    assert late_count > 4 * early_count
    _assert_true_examples(final)


async def test_a_version_imported_between_two_others_replaces_their_example(
    own_store: Store,
) -> None:
    """Versions 1 and 3 imported first give one example over both changes; version 2
    imported late splits it into the two true ones."""
    system_id = f"between-{uuid.uuid4().hex[:6]}"
    start = _start_bucket()
    applied = _apply_times(start)
    await store_samples(
        own_store, system_id, {n: (s.ts_unix_ns, s.values) for n, s in _samples(start).items()}
    )
    async with running_predictor(own_store) as predictor:
        await _import_version(predictor.stub, system_id, 0, applied[0])
        await _import_version(predictor.stub, system_id, 2, applied[2])
        await predictor.guard.imports.wait()
        skipping = await _examples(own_store, system_id)
        await _import_version(predictor.stub, system_id, 1, applied[1])
        await predictor.guard.imports.wait()
        found = await _examples(own_store, system_id)
    assert set(skipping) == {(1, 2)}
    # Versions are numbered by import: the late one is 3, between 1 and 2 in time.
    assert set(found) == {(1, 3), (3, 2)}
    assert found[(1, 3)] == pytest.approx(TRUTH[(1, 2)], abs=0.03)
    assert found[(3, 2)] == pytest.approx(TRUTH[(2, 3)], abs=0.03)


async def test_imported_examples_carry_the_systems_hardware_and_load(own_store: Store) -> None:
    """The example's embedding has the hardware group of the system (8 cores, 32 GiB),
    not zeros, and its features say workers per core, the hardware and the load level."""
    system_id = f"hardware-{uuid.uuid4().hex[:6]}"
    start = _start_bucket()
    applied = _apply_times(start)
    metrics = _samples(start)
    await store_samples(own_store, system_id, _between(metrics, applied[0], datetime.now(UTC)))
    async with running_predictor(own_store) as predictor:
        for index, moment in enumerate(applied):
            await _import_version(predictor.stub, system_id, index, moment)
        await predictor.guard.imports.wait()
    async with own_store.connection() as conn:
        cursor = await conn.execute(
            "SELECT e.embedding, e.features FROM training_examples e JOIN systems s "
            "ON s.id = e.system_id WHERE s.system_id = %s AND from_version = 1",
            (system_id,),
        )
        row = await cursor.fetchone()
    assert row is not None
    embedding, features = np.asarray(row[0], dtype=np.float32), row[1]
    hardware = next(g for g in DEFAULT_EMBEDDING_LAYOUT.groups if g.name == "hardware")
    got = embedding[hardware.offset : hardware.offset + hardware.length]
    profile = SystemProfile(
        cpu_cores=8, memory_bytes=32 * 2**30, architecture="x86_64", os="debian 12"
    )
    expected = embed(
        build_fingerprint(
            {n: SampleSeries(*_between(metrics, applied[0], applied[1])[n]) for n in metrics},
            system=profile,
        )
    ).group("hardware")
    assert np.any(got != 0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert features["hardware:log_cores"] == pytest.approx(math.log(8))
    assert features["hardware:log_memory_gib"] == pytest.approx(math.log(32))
    assert features["workers:per_core:before"] == pytest.approx(math.log(4 / 8))
    assert features["workers:per_core:after"] == pytest.approx(math.log(8 / 8))
    level = metrics[LOAD].values[(metrics[LOAD].ts_unix_ns < int(applied[1].timestamp() * 1e9))]
    assert features["load:log_level"] == pytest.approx(math.log1p(level.mean()), rel=0.05)
    assert features["load:log_peak_ratio"] == pytest.approx(
        math.log(level.max() / level.mean()), rel=0.05
    )
