"""The clone workflow: similarity -> clone or adapt -> predict -> propose -> follow, in waves.

For each target the workflow scores how alike source and target behave, clones
the source's current configuration as is when they are alike enough and
adapts it to the target's hardware otherwise (several candidate adaptations
are ranked by their predicted impact on the policy's KPIs, harm first: see
:mod:`cfgclone.orchestrator.ranking`), then proposes the change to the
predictor, which predicts, applies, verifies and keeps or rolls back; the
workflow follows the change until it is final or held for an operator. Every
step is recorded as an event of the operation, so a person watching sees the
evidence as it arrives.

Targets go in waves with a failure budget, as Ansible's ``serial`` and
``max_fail_percentage`` do: when more than ``max_fail_fraction`` of a wave is
refused, rolled back or failed, the rollout stops and the remaining targets are
skipped, untouched. A service that cannot be reached stops the rollout too:
nothing more is proposed, and the operation fails with UNAVAILABLE.

How an operation ends:

* SUCCEEDED, with its ``clone`` result, when every target was worked on (some
  may have been refused, rolled back or held: that is the guard doing its job);
* FAILED when a target failed (its change could not be proposed, applied or rolled
  back: FAILED_PRECONDITION, reason ``TARGETS_FAILED``), or when the rollout could
  not run to its end: the source is not ready
  (FAILED_PRECONDITION), a service was unreachable (UNAVAILABLE) or the failure
  budget stopped it (ABORTED, reason ``FAILURE_BUDGET_EXCEEDED``);
* CANCELLED when cancelled; targets not started were left untouched.

A failed or cancelled operation carries its per-target results as a
``CloneResult`` among the details of its error (see
:func:`cfgclone.orchestrator.operations.clone_result_of`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

import grpc
from google.rpc import code_pb2
from grpc_status import rpc_status
from opentelemetry import trace

from cfgclone.common.errors import (
    CfgcloneError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    error_info,
)
from cfgclone.orchestrator import adaptation as engine
from cfgclone.orchestrator.display import plural
from cfgclone.orchestrator.operations import Progress
from cfgclone.orchestrator.ranking import PolicyKpis, best_prediction, predicted_effect
from cfgclone.orchestrator.settings import OrchestratorSettings
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

if TYPE_CHECKING:
    ChangeState: TypeAlias = common_pb2.ChangeState.ValueType

FINAL_STATES: frozenset[ChangeState] = frozenset(
    {
        common_pb2.CHANGE_STATE_KEPT,
        common_pb2.CHANGE_STATE_REJECTED,
        common_pb2.CHANGE_STATE_ROLLED_BACK,
        common_pb2.CHANGE_STATE_FAILED,
    }
)
"""States a change never leaves."""

FAILURE_STATES: frozenset[ChangeState] = frozenset(
    {
        common_pb2.CHANGE_STATE_REJECTED,
        common_pb2.CHANGE_STATE_ROLLED_BACK,
        common_pb2.CHANGE_STATE_FAILED,
    }
)
"""Outcomes that count against a wave's failure budget."""

DEFAULT_POLICY = "policies/default"
"""The policy a clone is judged by when its options name none (the predictor's default)."""

DEFAULT_CLONE_THRESHOLD = 0.9
"""Used only when neither the request, the setting nor the similarity service gives one."""

_FINGERPRINT_RETRY_SECONDS = 0.5
_DEMAND_BUCKET = timedelta(minutes=1)

_T = TypeVar("_T")
_Request = TypeVar("_Request")


def state_name(state: ChangeState) -> str:
    """``KEPT`` for ``CHANGE_STATE_KEPT``."""
    return common_pb2.ChangeState.Name(state).removeprefix("CHANGE_STATE_")


def verdict_name(verdict: common_pb2.Verdict.ValueType) -> str:
    return common_pb2.Verdict.Name(verdict).removeprefix("VERDICT_")


# --- waves and the failure budget -------------------------------------------------------


def waves(targets: Sequence[str], wave_size: int) -> list[tuple[str, ...]]:
    """The targets in rollout order, cut into waves of ``wave_size`` (0: one wave)."""
    if wave_size < 0:
        raise ValueError("wave_size must not be negative")
    size = wave_size or max(len(targets), 1)
    return [tuple(targets[i : i + size]) for i in range(0, len(targets), size)]


def is_failure(result: common_pb2.CloneTargetResult) -> bool:
    """Whether a target's outcome counts against the failure budget."""
    return result.state in FAILURE_STATES


def exceeds_failure_budget(
    results: Sequence[common_pb2.CloneTargetResult], max_fail_fraction: float
) -> bool:
    """Whether more than ``max_fail_fraction`` of a wave was refused, rolled back or failed."""
    if not results:
        return False
    failures = sum(1 for result in results if is_failure(result))
    # A small tolerance, so that a budget of 1/3 lets exactly one target of three fail.
    return failures > max_fail_fraction * len(results) + 1e-9


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

    async def build_fingerprint(self, system: str) -> common_pb2.Fingerprint:
        request = fingerprint_pb.BuildFingerprintRequest(system=system)
        reply = await self._call("fingerprint", self.fingerprint.BuildFingerprint, request)
        return reply.fingerprint

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


# --- adaptation --------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptationInput:
    """What an adaptation works from: the source's configuration and both machines."""

    configuration: common_pb2.Configuration
    """The source's configuration; the declarations it carries override its kind's schema."""
    source: common_pb2.System
    target: common_pb2.System
    demand: engine.ObservedDemand | None = None
    """What the source's own data shows its configuration must carry."""


@dataclass(frozen=True)
class Candidate:
    """One adapted configuration and what was done to produce it."""

    content: Mapping[str, Any]
    notes: tuple[str, ...] = ()
    """Each decision in words: ``shared_buffers: 16GB -> 4GB (memory 16 GiB / 64 GiB)``."""
    warned: bool = False
    """Whether the engine warned about it (memory beyond its share of a smaller host)."""


class AdaptationRefused(Exception):
    """No usable adapted configuration: the message says why and what to fix."""


class Adapter(Protocol):
    """Adapts a configuration to another machine (the adaptation engine behind it)."""

    async def candidates(self, adaptation: AdaptationInput) -> Sequence[Candidate]:
        """Adapted configurations, the preferred first; raises :class:`AdaptationRefused`."""
        ...


@dataclass(frozen=True)
class EngineAdapter:
    """The adaptation engine: candidate scalings of the configuration by the schema of its
    kind, each passed through the user's adaptation scripts in order."""

    scripts: tuple[Path, ...] = ()
    script_timeout: timedelta = timedelta(seconds=10)

    async def candidates(self, adaptation: AdaptationInput) -> Sequence[Candidate]:
        configuration = adaptation.configuration
        try:
            schema = engine.schema_of(configuration)
            source = engine.host_from_system(adaptation.source)
            target = engine.host_from_system(adaptation.target)
            content = engine.content_from_struct(configuration.content)
            found = engine.candidates(content, schema, source, target, adaptation.demand)
            adapted = [await self._scripted(c, schema, source, target) for c in found]
        except (engine.AdaptationError, ValueError) as error:
            raise AdaptationRefused(str(error)) from error
        unique: dict[str, Candidate] = {}
        for candidate in adapted:
            unique.setdefault(json.dumps(dict(candidate.content), sort_keys=True), candidate)
        return list(unique.values())

    async def _scripted(
        self,
        candidate: engine.Candidate,
        schema: engine.Schema,
        source: engine.HostResources,
        target: engine.HostResources,
    ) -> Candidate:
        adaptation = candidate.adaptation
        notes = [f"{candidate.name} ({candidate.description})"]
        notes += [str(change) for change in adaptation.changes]
        content = dict(adaptation.content)
        for script in self.scripts:
            scripted = await engine.run_adaptation_script(
                script, content, source, target, schema, self.script_timeout.total_seconds()
            )
            notes += [f"{script.name}: {change}" for change in scripted.changes]
            content = dict(scripted.content)
        notes += [f"warning: {warning}" for warning in candidate.warnings]
        return Candidate(content, tuple(notes), warned=bool(candidate.warnings))


# --- the workflow ------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The source system and the configuration cloned from it."""

    system: common_pb2.System
    configuration: common_pb2.Configuration


@dataclass(frozen=True)
class TargetOutcome:
    """What became of one target of a wave."""

    system: str
    result: common_pb2.CloneTargetResult | None
    """None when the target was left untouched (cancelled before anything was proposed)."""
    unreachable: PeerError | None = None
    """Set when a service could not be reached: the rollout stops."""


@dataclass(frozen=True)
class _Stop:
    code: int
    reason: str
    message: str
    by_budget: bool = False


class SourceNotReady(Exception):
    """The source cannot be cloned from yet; the message says what to do first."""


@dataclass(frozen=True)
class CloneWorkflow:
    """One clone operation's run (or resumption: targets with a result are not redone)."""

    peers: Peers
    adapter: Adapter
    settings: OrchestratorSettings
    progress: Progress
    request: pb.CloneConfigurationRequest
    tracer: trace.Tracer = field(default_factory=lambda: trace.get_tracer(__name__))

    @property
    def _options(self) -> pb.CloneOptions:
        return self.request.options

    def _cancelled(self) -> bool:
        return self.progress.cancel_requested.is_set()

    async def run(self) -> None:
        """Run the rollout to its end and record how it ended."""
        attributes: dict[str, str | int] = {
            "cfgclone.operation": self.progress.operation.name,
            "cfgclone.source": self.request.source,
            "cfgclone.targets": len(self.request.targets),
        }
        with self.tracer.start_as_current_span("clone configuration", attributes=attributes):
            try:
                source = await self._source()
            except PeerError as error:
                await self._end(_stop_for(error), [])
                return
            except SourceNotReady as error:
                not_ready = _Stop(code_pb2.FAILED_PRECONDITION, "SOURCE_NOT_READY", str(error))
                await self._end(not_ready, [])
                return
            stop, results = await self._rollout(source)
            await self._end(stop, results)

    async def _source(self) -> Source:
        name = self.request.source
        system = await self.peers.system(name)
        try:
            configuration = await self.peers.current_configuration(name)
        except PeerError as error:
            if error.code != grpc.StatusCode.NOT_FOUND and error.reason != "NO_CONFIGURATION":
                raise
            raise SourceNotReady(
                f"{name} has no configuration: create or import a configuration of {name} first"
            ) from None
        await self.progress.event(
            "source", f"cloning {configuration.name} ({configuration.kind}) from {name}"
        )
        if not await self.peers.has_fingerprint(name):
            try:
                fingerprint = await self.peers.build_fingerprint(name)
            except PeerError as error:
                if error.unavailable:
                    raise
                raise SourceNotReady(
                    f"{name} has no fingerprint and none can be built ({error.message}): "
                    f"collect metrics of {name} first"
                ) from None
            await self.progress.event("fingerprint", f"built {fingerprint.name}", name)
        return Source(system, configuration)

    async def _rollout(
        self, source: Source
    ) -> tuple[_Stop | None, list[common_pb2.CloneTargetResult]]:
        done = {result.system: result for result in self.progress.results}
        planned = waves(list(self.request.targets), self._options.wave_size)
        results: list[common_pb2.CloneTargetResult] = []
        for number, wave in enumerate(planned, start=1):
            if self._cancelled():
                return _cancel_stop(), results
            await self.progress.event("wave", f"wave {number} of {len(planned)}: {', '.join(wave)}")
            outcomes = await self._wave(source, [t for t in wave if t not in done])
            by_system = {o.system: o.result for o in outcomes if o.result is not None}
            wave_results = [
                r for r in (done.get(t) or by_system.get(t) for t in wave) if r is not None
            ]
            results.extend(wave_results)
            unreachable = next((o.unreachable for o in outcomes if o.unreachable), None)
            if unreachable is not None:
                return _stop_for(unreachable), results
            if self._cancelled():
                return _cancel_stop(), results
            if number < len(planned) and exceeds_failure_budget(
                wave_results, self._options.max_fail_fraction
            ):
                return self._budget_stop(number, wave_results), results
        return None, results

    def _budget_stop(self, number: int, wave: Sequence[common_pb2.CloneTargetResult]) -> _Stop:
        failed = sum(1 for result in wave if is_failure(result))
        return _Stop(
            code_pb2.ABORTED,
            "FAILURE_BUDGET_EXCEEDED",
            f"wave {number}: {failed} of {plural(len(wave), 'target')} refused, rolled back "
            "or failed, "
            f"more than the failure budget of {self._options.max_fail_fraction:.0%}; "
            "the rollout stopped",
            by_budget=True,
        )

    async def _wave(self, source: Source, targets: Sequence[str]) -> list[TargetOutcome]:
        limit = asyncio.Semaphore(self.settings.max_parallel_targets)

        async def bounded(target: str) -> TargetOutcome:
            async with limit:
                return await self._target(source, target)

        # Every target of the wave runs to its end before an error (the database gone, the
        # operation taken over) ends the run: no target is left running unwatched.
        outcomes = await asyncio.gather(
            *(bounded(target) for target in targets), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [outcome for outcome in outcomes if isinstance(outcome, TargetOutcome)]

    async def _target(self, source: Source, target: str) -> TargetOutcome:
        if self._cancelled():
            return TargetOutcome(target, None)
        result = common_pb2.CloneTargetResult(system=target)
        with self.tracer.start_as_current_span(
            "clone to target", attributes={"cfgclone.target": target}
        ):
            try:
                proposed = await self._clone_to(source, target, result)
            except PeerError as error:
                await self._target_failed(result, error.describe())
                return TargetOutcome(target, result, error if error.unavailable else None)
            except AdaptationRefused as error:
                await self._target_failed(result, f"not adapted: {error}")
                return TargetOutcome(target, result)
        if not proposed:
            return TargetOutcome(target, None)
        return TargetOutcome(target, result)

    async def _target_failed(self, result: common_pb2.CloneTargetResult, why: str) -> None:
        if result.change:
            # The change exists and goes on in the predictor: report what was last seen.
            result.explanation = f"{why}; {result.change} was {state_name(result.state)} when "
            result.explanation += "contact was lost: see GetChange"
        else:
            result.state = common_pb2.CHANGE_STATE_FAILED
            result.explanation = f"{why}; nothing was applied"
        await self.progress.target_done(result, f"{state_name(result.state)}: {result.explanation}")

    async def _clone_to(
        self, source: Source, target: str, result: common_pb2.CloneTargetResult
    ) -> bool:
        """Clone or adapt, propose, follow; False when cancelled before proposing."""
        system = await self.peers.system(target)
        score = await self._similarity(source, target)
        if score is not None:
            result.similarity = score.score
        adapt, why = self._decide(score)
        await self.progress.event("similarity", why, target)
        if adapt:
            configuration = await self._adapted(source, system, result)
        else:
            configuration = _derived(source.configuration, common_pb2.CONFIGURATION_SOURCE_CLONE)
        if self._cancelled():
            return False
        change = await self.peers.propose(
            predictor_pb.ProposedChange(system=target, configuration=configuration),
            self._options,
            request_id=_change_request_id(self.progress.operation.name, target),
        )
        result.change = change.name
        result.configuration = change.to_configuration
        result.state = change.state
        await self.progress.event(
            "propose", f"proposed {change.to_configuration} as {change.name}", target
        )
        change = await self._follow(change, result)
        result.prediction.CopyFrom(change.prediction)
        result.explanation = result.explanation or _explanation(change)
        await self.progress.target_done(result, f"{state_name(result.state)}: {result.explanation}")
        return True

    def _threshold(self, score: similarity_pb.SimilarityScore | None) -> float:
        if self._options.similarity_threshold > 0:
            return self._options.similarity_threshold
        if self.settings.clone_threshold is not None:
            return self.settings.clone_threshold
        if score is not None and score.threshold > 0:
            return score.threshold
        return DEFAULT_CLONE_THRESHOLD

    def _decide(self, score: similarity_pb.SimilarityScore | None) -> tuple[bool, str]:
        """Whether to adapt, and why in words."""
        if score is None:
            return True, "no similarity score: adapting to the target's hardware"
        threshold = self._threshold(score)
        said = f"similarity {score.score:.2f}"
        if score.groups:
            # The groups rather than the service's explanation: that one reads the pair
            # against the service's threshold, which a request may replace.
            groups = ", ".join(f"{g.group} {g.similarity:.2f}" for g in score.groups)
            said += f" ({groups} alike)"
        if self._options.force_adapt:
            return True, f"{said}; adapting as asked (force_adapt)"
        if score.score >= threshold:
            return False, f"{said} >= threshold {threshold:.2f}: cloning as is"
        return True, f"{said} < threshold {threshold:.2f}: adapting"

    async def _similarity(
        self, source: Source, target: str
    ) -> similarity_pb.SimilarityScore | None:
        """The score of source and target; None when the target cannot be scored."""
        if not await self.peers.has_fingerprint(target):
            try:
                fingerprint = await self.peers.build_fingerprint(target)
            except PeerError as error:
                if error.unavailable:
                    raise
                await self.progress.event(
                    "fingerprint",
                    f"{target} has no fingerprint and none can be built ({error.message})",
                    target,
                )
                return None
            await self.progress.event("fingerprint", f"built {fingerprint.name}", target)
        try:
            return await self.peers.compare(source.system.name, target)
        except PeerError as error:
            if error.reason != "NO_FINGERPRINT":
                raise
        return await self._indexed_similarity(source, target)

    async def _indexed_similarity(
        self, source: Source, target: str
    ) -> similarity_pb.SimilarityScore | None:
        """Compare again once the similarity index has the new fingerprints."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.similarity_wait.total_seconds()
        while loop.time() < deadline:
            await asyncio.sleep(_FINGERPRINT_RETRY_SECONDS)
            try:
                return await self.peers.compare(source.system.name, target)
            except PeerError as error:
                if error.reason != "NO_FINGERPRINT":
                    raise
        await self.progress.event(
            "similarity",
            f"the similarity index has no fingerprint of {target} after "
            f"{self.settings.similarity_wait.total_seconds():g} s",
            target,
        )
        return None

    async def _adapted(
        self, source: Source, target: common_pb2.System, result: common_pb2.CloneTargetResult
    ) -> common_pb2.Configuration:
        configuration = source.configuration
        demand = await self.peers.observed_demand(
            source.system.name, target.name, self.settings.demand_window
        )
        adaptation = AdaptationInput(configuration, source.system, target, demand)
        candidates = list(await self.adapter.candidates(adaptation))
        if not candidates:
            raise AdaptationRefused(f"the adaptation of {configuration.kind} gave no candidate")
        proposals = [_adapted_configuration(configuration, c) for c in candidates]
        best = await self._choose(candidates, proposals, target.name)
        result.adapted = True
        notes = "; ".join(candidates[best].notes) or "no parameter needed a change"
        await self.progress.event("adapt", notes, target.name)
        return proposals[best]

    async def _choose(
        self,
        candidates: Sequence[Candidate],
        proposals: Sequence[common_pb2.Configuration],
        target: str,
    ) -> int:
        """Index of the candidate with the best predicted impact (0 when alone)."""
        if len(candidates) == 1:
            return 0
        predictions = await asyncio.gather(
            *(
                self.peers.predict(
                    predictor_pb.ProposedChange(system=target, configuration=proposal),
                    self._options,
                )
                for proposal in proposals
            )
        )
        policy = PolicyKpis.of(await self.peers.policy(self._options.policy))
        best = best_prediction(predictions, policy, [c.warned for c in candidates])
        ranked = ", ".join(
            f"#{i + 1} {verdict_name(p.verdict)} ({predicted_effect(p, policy)})"
            + (" with a warning" if candidates[i].warned else "")
            for i, p in enumerate(predictions)
        )
        await self.progress.event(
            "predict",
            f"{len(candidates)} candidate adaptations predicted: {ranked}; chose #{best + 1}",
            target,
        )
        return best

    async def _follow(
        self, change: common_pb2.Change, result: common_pb2.CloneTargetResult
    ) -> common_pb2.Change:
        """Poll the change until it is final or held; each new state is an event."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.change_timeout.total_seconds()
        seen = common_pb2.CHANGE_STATE_PROPOSED
        while True:
            if change.state != seen:
                seen = change.state
                result.state = change.state
                step, message = change_event(change)
                await self.progress.event(step, message, result.system)
            if change.state in FINAL_STATES or change.state == common_pb2.CHANGE_STATE_HELD:
                return change
            if loop.time() >= deadline:
                result.explanation = (
                    f"{change.name} was still {state_name(change.state)} after "
                    f"{self.settings.change_timeout.total_seconds():g} s; the predictor "
                    "finishes it: see GetChange"
                )
                return change
            if await self._pause():
                result.explanation = (
                    f"operation cancelled while {change.name} was {state_name(change.state)}; "
                    "the predictor finishes it: see GetChange"
                )
                return change
            change = await self.peers.change(change.name)

    async def _pause(self) -> bool:
        """Wait one poll interval; True when the operation was cancelled meanwhile."""
        try:
            await asyncio.wait_for(
                self.progress.cancel_requested.wait(),
                self.settings.poll_interval.total_seconds(),
            )
        except TimeoutError:
            return False
        return True

    async def _end(
        self, stop: _Stop | None, results: Sequence[common_pb2.CloneTargetResult]
    ) -> None:
        order = {target: i for i, target in enumerate(self.request.targets)}
        touched = {result.system for result in results}
        clone = common_pb2.CloneResult(
            targets=sorted(results, key=lambda r: order.get(r.system, len(order))),
            skipped=[t for t in self.request.targets if t not in touched],
            stopped_by_failure_budget=stop is not None and stop.by_budget,
        )
        failed = [r for r in clone.targets if r.state == common_pb2.CHANGE_STATE_FAILED]
        if stop is None and failed:
            stop = _Stop(
                code_pb2.FAILED_PRECONDITION,
                "TARGETS_FAILED",
                f"{len(failed)} of {len(clone.targets)} targets failed: "
                + "; ".join(f"{r.system}: {r.explanation[:200]}" for r in failed[:3])
                + ("; ..." if len(failed) > 3 else ""),
            )
        if stop is None:
            await self.progress.succeed(clone, _summary(clone))
        elif stop.code == code_pb2.CANCELLED:
            message = (
                f"cancelled; {plural(len(clone.skipped), 'target')} not started left untouched"
            )
            await self.progress.cancel(message, clone)
        else:
            message = stop.message
            if clone.skipped:
                message += f"; {plural(len(clone.skipped), 'target')} skipped, untouched"
            await self.progress.fail(stop.code, stop.reason, message, clone)


def _cancel_stop() -> _Stop:
    return _Stop(code_pb2.CANCELLED, "OPERATION_CANCELLED", "cancelled")


def _stop_for(error: PeerError) -> _Stop:
    if error.unavailable:
        return _Stop(
            code_pb2.UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
            f"{error.describe()}; nothing more was proposed",
        )
    status = error.as_error()
    return _Stop(status.code.value[0], status.reason, status.message)


def _summary(clone: common_pb2.CloneResult) -> str:
    counts: dict[str, int] = {}
    for result in clone.targets:
        counts[state_name(result.state)] = counts.get(state_name(result.state), 0) + 1
    said = ", ".join(f"{count} {state.lower()}" for state, count in sorted(counts.items()))
    return f"done: {said or 'no target'}"


def _derived(
    configuration: common_pb2.Configuration, source: common_pb2.ConfigurationSource.ValueType
) -> common_pb2.Configuration:
    """A configuration for a target derived from the source's (its parent)."""
    return common_pb2.Configuration(
        kind=configuration.kind,
        content=configuration.content,
        schema=configuration.schema,
        source=source,
        parent=configuration.name,
    )


def _adapted_configuration(
    configuration: common_pb2.Configuration, candidate: Candidate
) -> common_pb2.Configuration:
    adapted = _derived(configuration, common_pb2.CONFIGURATION_SOURCE_ADAPT)
    adapted.content.Clear()
    adapted.content.update(dict(candidate.content))
    return adapted


def _change_request_id(operation: str, target: str) -> str:
    """The idempotency key of a target's change: a resumed operation finds its change again."""
    return f"{operation}/{target}"


def change_event(change: common_pb2.Change) -> tuple[str, str]:
    """The step and the message of a change's state, with its evidence."""
    prediction = change.prediction
    predicted = (
        f"predicted {verdict_name(prediction.verdict)}: {prediction.explanation}"
        if prediction.verdict
        else "no prediction"
    )
    state = change.state
    if state == common_pb2.CHANGE_STATE_PREDICTING:
        return "predict", "predicting the impact"
    if state == common_pb2.CHANGE_STATE_HELD:
        return "hold", f"held for an operator ({predicted}): approve or abort {change.name}"
    if state == common_pb2.CHANGE_STATE_APPLYING:
        return "apply", f"{predicted}; applying {change.to_configuration}"
    if state == common_pb2.CHANGE_STATE_VERIFYING:
        return "verify", f"{predicted}; applied, verifying against live metrics"
    if state == common_pb2.CHANGE_STATE_KEPT:
        if change.dry_run:
            return "keep", f"dry run, nothing applied: {predicted}"
        verification = change.verification
        verified = (
            f"verified {verdict_name(verification.verdict)}: {verification.explanation}"
            if verification.verdict
            else change.state_reason or "kept"
        )
        return "keep", f"kept: {verified}"
    if state == common_pb2.CHANGE_STATE_REJECTED:
        return "reject", f"not applied: {change.state_reason or predicted}"
    if state == common_pb2.CHANGE_STATE_ROLLED_BACK:
        return "rollback", f"rolled back: {change.state_reason or 'verification failed'}"
    if state == common_pb2.CHANGE_STATE_FAILED:
        return "fail", f"failed: {change.state_reason or 'see the predictor log'}"
    return "propose", f"{change.name} is {state_name(state)}"


def _explanation(change: common_pb2.Change) -> str:
    if change.state_reason:
        return change.state_reason
    return change_event(change)[1]


# --- the targets of a request ------------------------------------------------------------


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


async def _require_systems(peers: Peers, names: Sequence[str], field: str) -> None:
    """NOT_FOUND naming every system of ``names`` the collector does not know."""
    limit = asyncio.Semaphore(16)

    async def known(name: str) -> bool:
        async with limit:
            try:
                await peers.system(name)
            except PeerError as error:
                if error.code != grpc.StatusCode.NOT_FOUND:
                    raise error.as_error() from None
                return False
        return True

    found = await asyncio.gather(*(known(name) for name in names))
    missing = [name for name, ok in zip(names, found, strict=True) if not ok]
    if missing:
        raise NotFound(
            f"{field}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
            "registered; register with the collector first (agents do at start)",
            reason="SYSTEM_NOT_FOUND",
            metadata={"systems": ",".join(missing)},
        )


async def resolve_targets(peers: Peers, request: pb.CloneConfigurationRequest) -> list[str]:
    """The target systems of a validated request, by name, in rollout order.

    A selector or cohort gives every matching system but the source. Raises
    NOT_FOUND for an unknown source, target or cohort, INVALID_ARGUMENT when no
    target is left, and UNAVAILABLE when a service cannot be asked.
    """
    await _require_systems(peers, [request.source], "source")
    try:
        if request.targets:
            targets = _unique(list(request.targets))
            await _require_systems(peers, targets, "targets")
            return targets
        if request.target_selector:
            systems = await peers.systems(request.target_selector)
            field_name, found = "target_selector", [s.name for s in systems]
        else:
            cohort = await peers.cohort(request.target_cohort)
            field_name, found = "target_cohort", list(cohort.members)
    except PeerError as error:
        raise error.as_error() from None
    targets = [name for name in _unique(found) if name != request.source]
    if not targets:
        raise InvalidArgument.for_field(field_name, "matches no system other than the source")
    return targets
