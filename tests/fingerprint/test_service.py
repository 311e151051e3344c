"""The fingerprint service on a real server and database: build, refine, read, compare."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from cfgclone.common.settings import ServiceSettings
from cfgclone.common.store import Store
from cfgclone.fingerprint import service
from cfgclone.fingerprint.main import build_services
from cfgclone.fingerprint.settings import FingerprintSettings
from cfgclone.v1 import fingerprint_service_pb2 as pb
from cfgclone.v1 import fingerprint_service_pb2_grpc as pb_grpc
from tests.behaviour.synthetic import LATENCY, LOAD, SECOND_NS, hockey_system
from tests.conftest import serve_in_process, service_settings
from tests.storage import store_samples

# 2026-01-01T00:00:00Z, so windows sit on 10 s boundaries.
EPOCH_BUCKET = 1_767_225_600 // 10
START = datetime.fromtimestamp(EPOCH_BUCKET * 10, UTC)
HOUR = timedelta(hours=1)


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _settings(database_url: str) -> ServiceSettings:
    base = service_settings("fingerprint", database_url)
    # No decay within a test: refining must equal building from the union.
    return ServiceSettings(
        service="fingerprint",
        server=base.server,
        database=base.database,
        options={"HALF_LIFE_HOURS": "0", "REFINE_INTERVAL_SECONDS": "0"},
    )


async def _system_with_knee(store: Store, system_id: str, knee: float, seed: int) -> int:
    """Two hours of samples of a system whose latency rises past ``knee``; returns the count."""
    metrics = hockey_system(knee=knee, buckets=720, seed=seed, start_bucket=EPOCH_BUCKET)
    await store_samples(store, system_id, {n: (s.ts_unix_ns, s.values) for n, s in metrics.items()})
    return sum(int(s.values.size) for s in metrics.values())


async def test_build_recovers_the_knee_and_reports_what_it_used(store: Store) -> None:
    total = await _system_with_knee(store, "fp-knee-01", knee=40.0, seed=1)
    services = await build_services(_settings(store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.FingerprintServiceStub(channel)
        reply = await stub.BuildFingerprint(
            pb.BuildFingerprintRequest(
                system="systems/fp-knee-01",
                start_time=_stamp(START),
                end_time=_stamp(START + 2 * HOUR),
            )
        )
        fingerprint = reply.fingerprint
        assert fingerprint.name.startswith("systems/fp-knee-01/fingerprints/")
        assert fingerprint.load_metric == LOAD
        assert fingerprint.quality.samples == total
        latency = next(k for k in fingerprint.kpis if k.kpi == LATENCY)
        assert latency.curve.knee_load == pytest.approx(40.0, rel=0.1)
        assert len(fingerprint.embedding) == sum(g.length for g in fingerprint.embedding_groups)
        assert fingerprint.system_snapshot.cpu_cores == 8

        got = await stub.GetFingerprint(pb.GetFingerprintRequest(name=fingerprint.name))
        assert got.fingerprint == fingerprint
        newest = await stub.GetFingerprint(
            pb.GetFingerprintRequest(name="systems/fp-knee-01/fingerprints/-")
        )
        assert newest.fingerprint.name == fingerprint.name
        listed = await stub.ListFingerprints(
            pb.ListFingerprintsRequest(parent="systems/fp-knee-01")
        )
        assert [f.name for f in listed.fingerprints] == [fingerprint.name]


async def test_refining_merges_only_new_samples_and_equals_building_from_the_union(
    store: Store,
) -> None:
    await _system_with_knee(store, "fp-refine-01", knee=30.0, seed=2)
    services = await build_services(_settings(store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.FingerprintServiceStub(channel)
        first = await stub.BuildFingerprint(
            pb.BuildFingerprintRequest(
                system="systems/fp-refine-01",
                start_time=_stamp(START),
                end_time=_stamp(START + HOUR),
            )
        )
        refined = await stub.RefineFingerprint(
            pb.RefineFingerprintRequest(
                name=first.fingerprint.name, end_time=_stamp(START + 2 * HOUR)
            )
        )
        whole = await stub.BuildFingerprint(
            pb.BuildFingerprintRequest(
                system="systems/fp-refine-01",
                start_time=_stamp(START),
                end_time=_stamp(START + 2 * HOUR),
            )
        )
    assert refined.merged_samples == whole.fingerprint.quality.samples - (
        first.fingerprint.quality.samples
    )
    assert refined.fingerprint.name == first.fingerprint.name
    assert refined.fingerprint.quality.samples == whole.fingerprint.quality.samples
    for got, expected in zip(refined.fingerprint.kpis, whole.fingerprint.kpis, strict=True):
        assert got.kpi == expected.kpi
        for a, b in zip(got.regimes, expected.regimes, strict=True):
            assert a.count == pytest.approx(b.count)
            assert a.mean == pytest.approx(b.mean, rel=1e-9)
            assert a.variance == pytest.approx(b.variance, rel=1e-6)
            assert a.p95 == b.p95


async def test_the_refinement_loop_finds_fingerprints_with_newer_samples(store: Store) -> None:
    await _system_with_knee(store, "fp-loop-01", knee=50.0, seed=3)
    settings = FingerprintSettings(half_life=None)
    built = await service.build(
        store,
        settings,
        service.BuildRequest("fp-loop-01", start=START, end=START + HOUR),
    )
    assert await service.refine_stale(store, settings) >= 1
    system_id, fingerprint_id = built.name.split("/")[1], built.name.split("/")[3]
    again = await service.get(store, system_id, fingerprint_id)
    assert again.quality.samples > built.quality.samples
    assert again.window_end.ToDatetime(tzinfo=UTC) > START + HOUR


async def test_compare_reports_the_change_at_shared_loads(store: Store) -> None:
    metrics = hockey_system(knee=200.0, buckets=360, seed=4, start_bucket=EPOCH_BUCKET)
    base = {n: (s.ts_unix_ns, s.values) for n, s in metrics.items()}
    slower = dict(base)
    ts, values = base[LATENCY]
    slower[LATENCY] = (ts, values * 1.5)
    await store_samples(store, "fp-cmp-base", base)
    await store_samples(store, "fp-cmp-slow", slower)
    services = await build_services(_settings(store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.FingerprintServiceStub(channel)
        names = []
        for system in ("fp-cmp-base", "fp-cmp-slow"):
            reply = await stub.BuildFingerprint(
                pb.BuildFingerprintRequest(
                    system=f"systems/{system}",
                    start_time=_stamp(START),
                    end_time=_stamp(START + HOUR),
                )
            )
            names.append(reply.fingerprint.name)
        compared = await stub.CompareFingerprints(
            pb.CompareFingerprintsRequest(first=names[0], second=names[1])
        )
    by_kpi = {k.kpi: k for k in compared.kpis}
    assert by_kpi[LATENCY].relative_change == pytest.approx(0.5, rel=0.02)
    assert by_kpi[LATENCY].distance > 0.5
    assert by_kpi[LOAD].relative_change == pytest.approx(0.0, abs=1e-9)
    assert by_kpi[LOAD].distance == pytest.approx(0.0, abs=1e-9)


async def test_bad_requests_say_what_is_missing_and_store_nothing(store: Store) -> None:
    await store_samples(
        store,
        "fp-empty-01",
        {LOAD: (np.array([EPOCH_BUCKET * 10 * SECOND_NS]), np.array([10.0]))},
    )
    services = await build_services(_settings(store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.FingerprintServiceStub(channel)
        cases = [
            (
                pb.BuildFingerprintRequest(
                    system="systems/fp-empty-01",
                    start_time=_stamp(START + 10 * HOUR),
                    end_time=_stamp(START + 11 * HOUR),
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
                "no samples",
            ),
            (
                pb.BuildFingerprintRequest(
                    system="systems/fp-empty-01",
                    start_time=_stamp(START),
                    end_time=_stamp(START + HOUR),
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
                "fp-empty-01",
            ),
            (
                pb.BuildFingerprintRequest(system="systems/fp-nobody"),
                grpc.StatusCode.NOT_FOUND,
                "not registered",
            ),
            (
                pb.BuildFingerprintRequest(
                    system="systems/fp-empty-01",
                    configuration="systems/fp-empty-01/configurations/9",
                ),
                grpc.StatusCode.NOT_FOUND,
                "configurations/9",
            ),
            (
                pb.BuildFingerprintRequest(
                    system="systems/fp-empty-01", configuration="systems/other/configurations/1"
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "systems/other",
            ),
            (pb.BuildFingerprintRequest(), grpc.StatusCode.INVALID_ARGUMENT, "system"),
        ]
        for request, code, words in cases:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.BuildFingerprint(request)
            assert caught.value.code() == code, request
            assert words in (caught.value.details() or "")
        listed = await stub.ListFingerprints(
            pb.ListFingerprintsRequest(parent="systems/fp-empty-01")
        )
        assert list(listed.fingerprints) == []
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetFingerprint(
                pb.GetFingerprintRequest(name="systems/fp-empty-01/fingerprints/-")
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def _applied_version(store: Store, system_id: str, version: int, applied: datetime) -> None:
    async with store.transaction() as conn:
        await conn.execute(
            "INSERT INTO configurations (system_id, version, kind, content, content_hash, "
            "author, source, applied_at) SELECT id, %s, 'simulated', '{}'::jsonb, %s, 'test', "
            "1, %s FROM systems WHERE system_id = %s",
            (version, f"hash-{version}", applied, system_id),
        )


async def test_a_closed_versions_fingerprint_takes_no_samples_past_its_window(
    store: Store,
) -> None:
    """Version 1 ran for the first hour, version 2 since: the fingerprint of version 1,
    built after version 2's, is neither refined into version 2's samples nor the newest."""
    await _system_with_knee(store, "fp-closed-01", knee=50.0, seed=4)
    await _applied_version(store, "fp-closed-01", 1, START)
    await _applied_version(store, "fp-closed-01", 2, START + HOUR)
    settings = FingerprintSettings(half_life=None)
    current = await service.build(
        store,
        settings,
        service.BuildRequest("fp-closed-01", 2, start=START + HOUR, end=START + HOUR + HOUR / 2),
    )
    closed = await service.build(
        store, settings, service.BuildRequest("fp-closed-01", 1, start=START, end=START + HOUR)
    )
    closed_id, current_id = closed.name.split("/")[3], current.name.split("/")[3]

    refined, merged = await service.refine(store, settings, "fp-closed-01", closed_id)
    assert merged == 0
    assert refined.window_end.ToDatetime(tzinfo=UTC) == START + HOUR
    assert refined.quality.samples == closed.quality.samples

    await service.refine_stale(store, settings)
    again = await service.get(store, "fp-closed-01", closed_id)
    assert again.quality.samples == closed.quality.samples
    assert again.window_end.ToDatetime(tzinfo=UTC) == START + HOUR
    grown = await service.get(store, "fp-closed-01", current_id)
    assert grown.window_end.ToDatetime(tzinfo=UTC) > START + HOUR + HOUR / 2
    newest = await service.get(store, "fp-closed-01", "-")
    assert newest.name == current.name


async def test_a_system_with_enough_samples_gets_its_first_fingerprint_with_no_call(
    fresh_database: str,
) -> None:
    store = Store(fresh_database, min_size=1, max_size=4, name="tests")
    await store.open(wait=True)
    try:
        await store.migrate()
        await _first_fingerprint_builds_itself(store)
    finally:
        await store.close()


async def _first_fingerprint_builds_itself(store: Store) -> None:
    now_bucket = int(datetime.now(UTC).timestamp()) // 10
    thin = hockey_system(buckets=3, seed=8, start_bucket=now_bucket - 30)
    await store_samples(store, "fp-auto-01", {n: (s.ts_unix_ns, s.values) for n, s in thin.items()})
    settings = FingerprintSettings(min_regime_count=30)

    assert await service.build_missing(store, settings) == 0
    services = await build_services(_settings(store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.FingerprintServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetFingerprint(
                pb.GetFingerprintRequest(name="systems/fp-auto-01/fingerprints/-")
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        # What "enough" is, while it is not reached.
        assert f"of 30 samples of {LOAD} in the busiest load regime" in (
            missing.value.details() or ""
        )

        more = hockey_system(buckets=360, seed=9, start_bucket=now_bucket - 400)
        await store_samples(
            store, "fp-auto-01", {n: (s.ts_unix_ns, s.values) for n, s in more.items()}
        )
        assert await service.build_missing(store, settings) == 1
        built = await stub.GetFingerprint(
            pb.GetFingerprintRequest(name="systems/fp-auto-01/fingerprints/-")
        )
        assert built.fingerprint.load_metric == LOAD
        # Built once: the next round finds nothing to build.
        assert await service.build_missing(store, settings) == 0


async def test_the_load_metric_is_the_offered_load_unless_the_system_names_another(
    store: Store,
) -> None:
    metrics = hockey_system(buckets=360, seed=21, start_bucket=EPOCH_BUCKET)
    series = {n: (s.ts_unix_ns, s.values) for n, s in metrics.items()}
    # The same behaviour, plus the requests offered to it.
    series["http.server.request.rate"] = (metrics[LOAD].ts_unix_ns, metrics[LOAD].values * 40.0)
    for system_id in ("fp-offered-01", "fp-chosen-01"):
        await store_samples(store, system_id, series)
    async with store.transaction() as conn:
        await conn.execute(
            "UPDATE systems SET labels = %s::jsonb WHERE system_id = 'fp-chosen-01'",
            ('{"cfgclone.dev/load-metric": "' + LOAD + '"}',),
        )
    settings = FingerprintSettings()
    window = {"start": START, "end": START + HOUR}

    offered = await service.build(store, settings, service.BuildRequest("fp-offered-01", **window))
    chosen = await service.build(store, settings, service.BuildRequest("fp-chosen-01", **window))

    assert offered.load_metric == "http.server.request.rate"
    assert chosen.load_metric == LOAD
    # Each scale follows its own load's range: rates forty times the CPU share.
    assert offered.load_scale.base == pytest.approx(chosen.load_scale.base * 40.0, rel=0.2)
