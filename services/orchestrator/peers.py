"""The clone workflow's calls to the other services, with their errors made one kind."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import grpc
from grpc_status import rpc_status

from cfgclone import adaptation as engine
from cfgclone.common.errors import (
    CfgcloneError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    error_info,
)
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import collector_service_pb2_grpc as collector_grpc
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import fingerprint_service_pb2_grpc as fingerprint_grpc
from cfgclone.v1 import orchestrator_service_pb2 as pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from cfgclone.v1 import predictor_service_pb2_grpc as predictor_grpc
from cfgclone.v1 import similarity_service_pb2 as similarity_pb
from cfgclone.v1 import similarity_service_pb2_grpc as similarity_grpc

if TYPE_CHECKING:
    from cfgclone.v1.collector_service_pb2_grpc import CollectorServiceAsyncStub
    from cfgclone.v1.fingerprint_service_pb2_grpc import FingerprintServiceAsyncStub
    from cfgclone.v1.predictor_service_pb2_grpc import PredictorServiceAsyncStub
    from cfgclone.v1.similarity_service_pb2_grpc import SimilarityServiceAsyncStub

logger = logging.getLogger(__name__)

DEFAULT_POLICY = "policies/default"
"""The policy a clone is judged by when its options name none (the predictor's default)."""

_DEMAND_BUCKET = timedelta(minutes=1)
_T = TypeVar("_T")
_Request = TypeVar("_Request")

# --- calls to the other services ---------------------------------------------------------

_SERVICE_ERRORS: Mapping[grpc.StatusCode, type[CfgcloneError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}


class PeerError(Exception):
    """A call to another cfgclone service failed; ``reason`` is its ErrorInfo reason."""

    def __init__(
        self,
        service: str,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{service}: {code.name}: {message}")
        self.service = service
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})

    @classmethod
    def of(cls, service: str, error: grpc.aio.AioRpcError) -> PeerError:
        reason, metadata = "", {}
        try:
            status = rpc_status.from_call(error)  # type: ignore[arg-type]
        except ValueError:
            status = None
        info = error_info(status) if status is not None else None
        if info is not None:
            reason, metadata = info.reason, dict(info.metadata)
        return cls(service, error.code(), error.details() or "", reason, metadata)

    @property
    def unavailable(self) -> bool:
        """Whether the service could not be reached (after the channel's retries)."""
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

    def describe(self) -> str:
        """The failure in words a user can act on."""
        if self.unavailable:
            return f"the {self.service} service is unavailable ({self.code.name}: {self.message})"
        if self.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return f"the {self.service} service refused the orchestrator's call: {self.message}"
        return self.message

    def as_error(self) -> CfgcloneError:
        """The project error to report to the orchestrator's own caller."""
        if self.unavailable:
            return Unavailable(
                self.describe(),
                reason="DEPENDENCY_UNAVAILABLE",
                metadata={"service": self.service},
            )
        kind = _SERVICE_ERRORS.get(self.code)
        if kind is None:
            return CfgcloneError(
                self.describe(), reason=self.reason or "DEPENDENCY_FAILED", metadata=self.metadata
            )
        return kind(self.describe(), reason=self.reason or None, metadata=self.metadata)


@dataclass(frozen=True)
class Peers:
    """The services a clone calls, each call bounded by ``timeout`` seconds.

    The channels carry the retry policy for UNAVAILABLE and the tracing
    interceptors (see :func:`cfgclone.common.clients.open_channel`); a failed call
    raises :class:`PeerError`.
    """

    collector: CollectorServiceAsyncStub
    fingerprint: FingerprintServiceAsyncStub
    similarity: SimilarityServiceAsyncStub
    predictor: PredictorServiceAsyncStub
    timeout: float

    @classmethod
    def over(cls, channels: Mapping[str, grpc.aio.Channel], timeout: float) -> Peers:
        """Stubs on the channels to each service, by service name."""
        return cls(
            collector=collector_grpc.CollectorServiceStub(channels["collector"]),
            fingerprint=fingerprint_grpc.FingerprintServiceStub(channels["fingerprint"]),
            similarity=similarity_grpc.SimilarityServiceStub(channels["similarity"]),
            predictor=predictor_grpc.PredictorServiceStub(channels["predictor"]),
            timeout=timeout,
        )

    async def _call(self, service: str, rpc: Callable[..., Awaitable[_T]], request: _Request) -> _T:
        try:
            return await rpc(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise PeerError.of(service, error) from None

    async def system(self, name: str) -> common_pb2.System:
        request = collector_pb.GetSystemRequest(name=name)
        return (await self._call("collector", self.collector.GetSystem, request)).system

    async def systems(self, label_selector: str) -> list[common_pb2.System]:
        """Every system whose labels match ``label_selector``."""
        found: list[common_pb2.System] = []
        token = ""
        while True:
            request = collector_pb.ListSystemsRequest(
                page_size=1000, page_token=token, label_selector=label_selector
            )
            reply = await self._call("collector", self.collector.ListSystems, request)
            found.extend(reply.systems)
            token = reply.next_page_token
            if not token:
                return found

    async def cohort(self, name: str) -> similarity_pb.Cohort:
        request = similarity_pb.GetCohortRequest(name=name)
        return (await self._call("similarity", self.similarity.GetCohort, request)).cohort

    async def compare(self, first: str, second: str) -> similarity_pb.SimilarityScore:
        request = similarity_pb.CompareSystemsRequest(first=first, second=second)
        reply = await self._call("similarity", self.similarity.CompareSystems, request)
        return reply.similarity

    async def has_fingerprint(self, system: str) -> bool:
        request = fingerprint_pb.ListFingerprintsRequest(parent=system, page_size=1)
        reply = await self._call("fingerprint", self.fingerprint.ListFingerprints, request)
        return bool(reply.fingerprints)

    async def build_fingerprint(self, system: str) -> fingerprint_pb.BuildFingerprintResponse:
        """The fingerprint built, and its build (whose name the operation's event gives)."""
        request = fingerprint_pb.BuildFingerprintRequest(system=system)
        reply: fingerprint_pb.BuildFingerprintResponse = await self._call(
            "fingerprint", self.fingerprint.BuildFingerprint, request
        )
        return reply

    async def current_configuration(self, system: str) -> common_pb2.Configuration:
        request = predictor_pb.GetConfigurationRequest(name=f"{system}/configurations/-")
        reply = await self._call("predictor", self.predictor.GetConfiguration, request)
        return reply.configuration

    async def predict(
        self, change: predictor_pb.ProposedChange, options: pb.CloneOptions
    ) -> common_pb2.Prediction:
        request = predictor_pb.PredictImpactRequest(
            change=change, mode=options.mode, policy=options.policy
        )
        reply = await self._call("predictor", self.predictor.PredictImpact, request)
        return reply.prediction

    async def propose(
        self, change: predictor_pb.ProposedChange, options: pb.CloneOptions, request_id: str
    ) -> common_pb2.Change:
        request = predictor_pb.ProposeChangeRequest(
            change=change,
            mode=options.mode,
            policy=options.policy,
            dry_run=options.dry_run,
            request_id=request_id,
        )
        return (await self._call("predictor", self.predictor.ProposeChange, request)).change

    async def policy(self, name: str) -> common_pb2.Policy:
        """The policy a clone is judged by (empty: the predictor's default)."""
        request = predictor_pb.GetPolicyRequest(name=name or DEFAULT_POLICY)
        return (await self._call("predictor", self.predictor.GetPolicy, request)).policy

    async def observed_demand(
        self, source: str, target: str, window: timedelta
    ) -> engine.ObservedDemand:
        """What ``source``'s samples over the last ``window`` show a configuration needs,
        at ``target``'s own offered load when it has one (per-minute buckets)."""
        pairs = engine.CONCURRENCY_PAIRS
        names = {engine.WORKING_SET_SERIES, *(n for pair in pairs for n in pair)}
        return engine.observed_demand(
            await self._buckets(source, names, window),
            await self._buckets(target, {rate for rate, _ in pairs}, window),
        )

    async def _buckets(
        self, system: str, names: set[str], window: timedelta
    ) -> dict[str, engine.demand.Buckets]:
        end = datetime.now(UTC)
        buckets: dict[str, engine.demand.Buckets] = {}
        for name in sorted(names):
            request = collector_pb.QueryDownsampledRequest(system=system, metric=name)
            request.start_time.FromDatetime(end - window)
            request.end_time.FromDatetime(end)
            request.bucket.FromTimedelta(_DEMAND_BUCKET)
            try:
                reply = await self._call("collector", self.collector.QueryDownsampled, request)
            except PeerError as error:
                if error.unavailable:
                    raise
                continue  # a metric the system does not report shows nothing
            if reply.bucket_start_unix_ns:
                buckets[name] = (list(reply.bucket_start_unix_ns), list(reply.avg))
        return buckets

    async def change(self, name: str) -> common_pb2.Change:
        request = predictor_pb.GetChangeRequest(name=name)
        return (await self._call("predictor", self.predictor.GetChange, request)).change
