"""A fingerprint build can be followed while it runs: GetFingerprintBuild gives its phase
and percent done, under a build id the caller chose or the service assigned."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import pytest
from grpc_status import rpc_status

from cfgclone.common.errors import AlreadyExists, error_info, field_violations
from cfgclone.common.store import Store
from cfgclone.fingerprint.builds import BuildPhase, Builds
from cfgclone.fingerprint.main import build_services
from cfgclone.v1 import fingerprint_service_pb2 as pb
from cfgclone.v1 import fingerprint_service_pb2_grpc as pb_grpc
from tests.conftest import serve_in_process
from tests.fingerprint.test_service import HOUR, START, _settings, _stamp, _system_with_knee

PHASE_ORDER = [
    pb.FINGERPRINT_BUILD_PHASE_READING_SAMPLES,
    pb.FINGERPRINT_BUILD_PHASE_REGIMES,
    pb.FINGERPRINT_BUILD_PHASE_CURVES,
    pb.FINGERPRINT_BUILD_PHASE_EMBEDDING,
    pb.FINGERPRINT_BUILD_PHASE_STORING,
    pb.FINGERPRINT_BUILD_PHASE_SUCCEEDED,
]


def _system_id() -> str:
    return f"fp-progress-{uuid.uuid4().hex[:6]}"


async def test_a_build_is_followed_phase_by_phase_to_its_fingerprint(store: Store) -> None:
    system_id = _system_id()
    total = await _system_with_knee(store, system_id, knee=40.0, seed=3)
    services = await build_services(_settings(store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.FingerprintServiceStub(channel)
        name = f"systems/{system_id}/fingerprintBuilds/watched-1"
        building = asyncio.ensure_future(
            stub.BuildFingerprint(
                pb.BuildFingerprintRequest(
                    system=f"systems/{system_id}",
                    start_time=_stamp(START),
                    end_time=_stamp(START + 2 * HOUR),
                    build_id="watched-1",
                )
            )
        )
        seen: list[pb.FingerprintBuild] = []
        missing: list[grpc.StatusCode] = []
        while not building.done():
            try:
                got = await stub.GetFingerprintBuild(pb.GetFingerprintBuildRequest(name=name))
            except grpc.aio.AioRpcError as error:
                missing.append(error.code())  # NOT_FOUND until the build has started
                continue
            seen.append(got.build)
        reply = await building
        assert set(missing) <= {grpc.StatusCode.NOT_FOUND}

        assert reply.build.name == name
        assert reply.build.phase == pb.FINGERPRINT_BUILD_PHASE_SUCCEEDED
        assert reply.build.progress_percent == 100.0
        assert reply.build.fingerprint == reply.fingerprint.name
        assert reply.build.samples == total
        final = (await stub.GetFingerprintBuild(pb.GetFingerprintBuildRequest(name=name))).build
        assert final == reply.build

        # What a watcher saw only ever moved forward, phase and percent alike.
        for build in [*seen, final]:
            assert build.name == name
            assert build.phase in PHASE_ORDER
        phases = [PHASE_ORDER.index(b.phase) for b in [*seen, final]]
        assert phases == sorted(phases)
        percents = [b.progress_percent for b in [*seen, final]]
        assert percents == sorted(percents)
        assert all(0.0 <= p <= 100.0 for p in percents)


async def test_a_build_without_an_id_is_given_one_that_can_be_read_back(store: Store) -> None:
    system_id = _system_id()
    await _system_with_knee(store, system_id, knee=30.0, seed=4)
    services = await build_services(_settings(store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.FingerprintServiceStub(channel)
        request = pb.BuildFingerprintRequest(
            system=f"systems/{system_id}",
            start_time=_stamp(START),
            end_time=_stamp(START + HOUR),
        )
        first = await stub.BuildFingerprint(request)
        second = await stub.BuildFingerprint(request)
        assert first.build.name.startswith(f"systems/{system_id}/fingerprintBuilds/")
        assert first.build.name != second.build.name
        got = await stub.GetFingerprintBuild(pb.GetFingerprintBuildRequest(name=first.build.name))
        assert got.build.fingerprint == first.fingerprint.name

        # An id that ended may be used again: it names the newer build.
        request.build_id = "again"
        await stub.BuildFingerprint(request)
        again = await stub.BuildFingerprint(request)
        assert again.build.name == f"systems/{system_id}/fingerprintBuilds/again"
        assert again.build.fingerprint == again.fingerprint.name


async def test_a_failed_build_says_why_when_read_back(store: Store) -> None:
    system_id = _system_id()
    await _system_with_knee(store, system_id, knee=30.0, seed=5)
    services = await build_services(_settings(store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.FingerprintServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.BuildFingerprint(
                pb.BuildFingerprintRequest(
                    system=f"systems/{system_id}",
                    start_time=_stamp(START - 10 * HOUR),
                    end_time=_stamp(START - 9 * HOUR),
                    build_id="empty-window",
                )
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        got = await stub.GetFingerprintBuild(
            pb.GetFingerprintBuildRequest(
                name=f"systems/{system_id}/fingerprintBuilds/empty-window"
            )
        )
        assert got.build.phase == pb.FINGERPRINT_BUILD_PHASE_FAILED
        assert got.build.progress_percent == 100.0
        assert got.build.fingerprint == ""
        assert got.build.error == refused.value.details()


async def test_bad_build_ids_and_names_are_refused_naming_the_field(store: Store) -> None:
    system_id = _system_id()
    await _system_with_knee(store, system_id, knee=30.0, seed=6)
    services = await build_services(_settings(store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.FingerprintServiceStub(channel)
        for bad in ("Upper", "-dash", "a/b", "x" * 64, "1abc"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.BuildFingerprint(
                    pb.BuildFingerprintRequest(system=f"systems/{system_id}", build_id=bad)
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            status = rpc_status.from_call(refused.value)
            assert status is not None
            assert [v.field for v in field_violations(status)] == ["build_id"]

        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.GetFingerprintBuild(
                pb.GetFingerprintBuildRequest(
                    name=f"systems/{system_id}/fingerprintBuilds/never-ran"
                )
            )
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        status = rpc_status.from_call(unknown.value)
        assert status is not None
        info = error_info(status)
        assert info is not None
        assert info.reason == "BUILD_NOT_FOUND"

        for bad_name in (
            "",
            f"systems/{system_id}/fingerprints/1",
            "fingerprintBuilds/x",
            f"systems/{system_id}/fingerprintBuilds/{'x' * 100_000}",
            f"systems/{system_id}/fingerprintBuilds/a\x00b",
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetFingerprintBuild(pb.GetFingerprintBuildRequest(name=bad_name))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            status = rpc_status.from_call(refused.value)
            assert status is not None
            assert [v.field for v in field_violations(status)] == ["name"]


def test_a_replica_remembers_running_builds_and_only_the_newest_ended_ones() -> None:
    builds = Builds(kept=2)
    running = builds.start("s", "running")
    ended = [builds.start("s", f"ended-{i}") for i in range(3)]
    for build in ended:
        builds.advance(build, BuildPhase.SUCCEEDED, fingerprint="systems/s/fingerprints/1")
    builds.start("s", "newest")
    assert len(builds) == 2
    assert builds.get("s", "running").phase == BuildPhase.READING_SAMPLES
    assert builds.get("s", "newest").phase == BuildPhase.READING_SAMPLES
    with pytest.raises(AlreadyExists):
        builds.start("s", running.build_id)  # one build of an id at a time
    later = builds.advance(running, BuildPhase.REGIMES, samples=10)
    assert later.samples == 10
    assert later.update_time >= running.update_time
    assert BuildPhase.REGIMES.percent < BuildPhase.CURVES.percent < BuildPhase.SUCCEEDED.percent
    assert timedelta(0) <= later.update_time - later.create_time
