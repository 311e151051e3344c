"""FingerprintService: translation between protobuf and the fingerprint operations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from cfgclone.common.auth import Role, require_role
from cfgclone.common.errors import InvalidArgument
from cfgclone.common.limits import MAX_SMALL_ID
from cfgclone.common.requests import (
    child_id_from_name,
    numeric_id,
    page_request,
    require,
    sample_time,
    system_id_from_name,
)
from cfgclone.common.store import Store
from cfgclone.fingerprint import service
from cfgclone.fingerprint.builds import Build, BuildPhase, Builds, Tracker, build_id_of
from cfgclone.fingerprint.counters import FingerprintCounters
from cfgclone.fingerprint.settings import FingerprintSettings
from cfgclone.v1 import fingerprint_service_pb2 as pb
from cfgclone.v1 import fingerprint_service_pb2_grpc as pb_grpc


def _time(stamp: timestamp_pb2.Timestamp, present: bool, field: str) -> datetime | None:
    return sample_time(stamp.ToDatetime(tzinfo=UTC), field) if present else None


_PHASES = {
    BuildPhase.READING_SAMPLES: pb.FINGERPRINT_BUILD_PHASE_READING_SAMPLES,
    BuildPhase.REGIMES: pb.FINGERPRINT_BUILD_PHASE_REGIMES,
    BuildPhase.CURVES: pb.FINGERPRINT_BUILD_PHASE_CURVES,
    BuildPhase.EMBEDDING: pb.FINGERPRINT_BUILD_PHASE_EMBEDDING,
    BuildPhase.STORING: pb.FINGERPRINT_BUILD_PHASE_STORING,
    BuildPhase.SUCCEEDED: pb.FINGERPRINT_BUILD_PHASE_SUCCEEDED,
    BuildPhase.FAILED: pb.FINGERPRINT_BUILD_PHASE_FAILED,
}


def _build_message(build: Build) -> pb.FingerprintBuild:
    message = pb.FingerprintBuild(
        name=build.name,
        phase=_PHASES[build.phase],
        progress_percent=build.phase.percent,
        fingerprint=build.fingerprint,
        error=build.error,
        samples=build.samples,
    )
    message.create_time.FromDatetime(build.create_time)
    message.update_time.FromDatetime(build.update_time)
    return message


def _configuration_version(name: str, system_id: str) -> int | None:
    if not name:
        return None
    owner, version = child_id_from_name(name, "configurations", "configuration")
    if owner != system_id:
        raise InvalidArgument.for_field(
            "configuration", f"belongs to systems/{owner}, not systems/{system_id}"
        )
    return numeric_id(version, "configuration", "version", MAX_SMALL_ID)


class FingerprintServicer(pb_grpc.FingerprintServiceServicer):
    """Builds, refines, reads and compares fingerprints."""

    def __init__(
        self,
        store: Store,
        settings: FingerprintSettings,
        counters: FingerprintCounters | None = None,
        builds: Builds | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._counters = counters or FingerprintCounters()
        self._builds = builds or Builds()

    async def BuildFingerprint(
        self, request: pb.BuildFingerprintRequest, context: Any
    ) -> pb.BuildFingerprintResponse:
        require_role(Role.OPERATOR, "BuildFingerprint")
        require(request.system, "system")
        system_id = system_id_from_name(request.system, "system")
        build = service.BuildRequest(
            system_id=system_id,
            configuration_version=_configuration_version(request.configuration, system_id),
            start=_time(request.start_time, request.HasField("start_time"), "start_time"),
            end=_time(request.end_time, request.HasField("end_time"), "end_time"),
            load_metric=request.load_metric or None,
        )
        build_id = build_id_of(request.build_id)
        tracker = Tracker(self._builds, self._builds.start(system_id, build_id))
        fingerprint = await service.build(self._store, self._settings, build, tracker)
        self._counters.built.labels("build").inc()
        assert tracker.build is not None
        return pb.BuildFingerprintResponse(
            fingerprint=fingerprint, build=_build_message(tracker.build)
        )

    async def GetFingerprintBuild(
        self, request: pb.GetFingerprintBuildRequest, context: Any
    ) -> pb.GetFingerprintBuildResponse:
        require_role(Role.READER, "GetFingerprintBuild")
        require(request.name, "name")
        system_id, build_id = child_id_from_name(request.name, "fingerprintBuilds")
        build = self._builds.get(system_id, build_id_of(build_id, "name"))
        return pb.GetFingerprintBuildResponse(build=_build_message(build))

    async def RefineFingerprint(
        self, request: pb.RefineFingerprintRequest, context: Any
    ) -> pb.RefineFingerprintResponse:
        require_role(Role.OPERATOR, "RefineFingerprint")
        require(request.name, "name")
        system_id, fingerprint_id = child_id_from_name(request.name, "fingerprints")
        end = _time(request.end_time, request.HasField("end_time"), "end_time")
        fingerprint, merged = await service.refine(
            self._store, self._settings, system_id, fingerprint_id, end
        )
        if merged:
            self._counters.built.labels("refine").inc()
        return pb.RefineFingerprintResponse(fingerprint=fingerprint, merged_samples=merged)

    async def GetFingerprint(
        self, request: pb.GetFingerprintRequest, context: Any
    ) -> pb.GetFingerprintResponse:
        require_role(Role.READER, "GetFingerprint")
        require(request.name, "name")
        system_id, fingerprint_id = child_id_from_name(request.name, "fingerprints")
        fingerprint = await service.get(self._store, system_id, fingerprint_id)
        return pb.GetFingerprintResponse(fingerprint=fingerprint)

    async def ListFingerprints(
        self, request: pb.ListFingerprintsRequest, context: Any
    ) -> pb.ListFingerprintsResponse:
        require_role(Role.READER, "ListFingerprints")
        require(request.parent, "parent")
        system_id = (
            None if request.parent == "systems/-" else system_id_from_name(request.parent, "parent")
        )
        page = page_request(request.page_size, request.page_token, query=request.parent)
        found, token = await service.list_page(self._store, system_id, page)
        return pb.ListFingerprintsResponse(fingerprints=found, next_page_token=token)

    async def CompareFingerprints(
        self, request: pb.CompareFingerprintsRequest, context: Any
    ) -> pb.CompareFingerprintsResponse:
        require_role(Role.READER, "CompareFingerprints")
        require(request.first, "first")
        require(request.second, "second")
        first = child_id_from_name(request.first, "fingerprints", "first")
        second = child_id_from_name(request.second, "fingerprints", "second")
        differences = await service.compare_stored(self._store, first, second)
        return pb.CompareFingerprintsResponse(
            kpis=[
                pb.KpiComparison(
                    kpi=d.kpi,
                    relative_change=d.relative_change,
                    shared_regimes=d.shared_regimes,
                    distance=d.distance,
                )
                for d in differences
            ]
        )
