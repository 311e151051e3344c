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
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from google.rpc import code_pb2
from opentelemetry import trace

from cfgclone.common.display import plural
from cfgclone.orchestrator.adapter import (
    AdaptationInput,
    AdaptationRefused,
    AdaptedConfiguration,
    Adapter,
)
from cfgclone.orchestrator.events import (
    FINAL_STATES,
    change_event,
    explanation_of,
    state_name,
    verdict_name,
)
from cfgclone.orchestrator.operations import Progress
from cfgclone.orchestrator.peers import PeerError, Peers
from cfgclone.orchestrator.ranking import PolicyKpis, best_prediction, predicted_effect
from cfgclone.orchestrator.settings import OrchestratorSettings
from cfgclone.orchestrator.waves import exceeds_failure_budget, is_failure, waves
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import orchestrator_service_pb2 as pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from cfgclone.v1 import similarity_service_pb2 as similarity_pb

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


DEFAULT_CLONE_THRESHOLD = 0.9
"""Used only when neither the request, the setting nor the similarity service gives one."""

_FINGERPRINT_RETRY_SECONDS = 0.5


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
                built = await self.peers.build_fingerprint(name)
            except PeerError as error:
                if error.unavailable:
                    raise
                raise SourceNotReady(
                    f"{name} has no fingerprint and none can be built ({error.message}): "
                    f"collect metrics of {name} first"
                ) from None
            await self.progress.event("fingerprint", _built(built), name)
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
            _proposed(target, configuration),
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
        result.explanation = result.explanation or explanation_of(change)
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
                built = await self.peers.build_fingerprint(target)
            except PeerError as error:
                if error.unavailable:
                    raise
                await self.progress.event(
                    "fingerprint",
                    f"{target} has no fingerprint and none can be built ({error.message})",
                    target,
                )
                return None
            await self.progress.event("fingerprint", _built(built), target)
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
        candidates: Sequence[AdaptedConfiguration],
        proposals: Sequence[common_pb2.Configuration],
        target: str,
    ) -> int:
        """Index of the candidate with the best predicted impact (0 when alone)."""
        if len(candidates) == 1:
            return 0
        predictions = await asyncio.gather(
            *(
                self.peers.predict(
                    _proposed(target, proposal),
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


def _built(reply: fingerprint_pb.BuildFingerprintResponse) -> str:
    """The event of a fingerprint built on the way: the fingerprint, and the build that
    GetFingerprintBuild tells about."""
    return f"built {reply.fingerprint.name} ({reply.build.name})"


def _proposed(target: str, configuration: common_pb2.Configuration) -> predictor_pb.ProposedChange:
    """The change that puts ``configuration`` on ``target``. Its parameters come from the
    source's configuration, which a running system has: one the target lacks is new to
    it on purpose, not a typo, so the predictor is told to take it."""
    return predictor_pb.ProposedChange(
        system=target, configuration=configuration, allow_new_parameters=True
    )


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
    configuration: common_pb2.Configuration, candidate: AdaptedConfiguration
) -> common_pb2.Configuration:
    adapted = _derived(configuration, common_pb2.CONFIGURATION_SOURCE_ADAPT)
    adapted.content.Clear()
    adapted.content.update(dict(candidate.content))
    return adapted


def _change_request_id(operation: str, target: str) -> str:
    """The idempotency key of a target's change: a resumed operation finds its change again."""
    return f"{operation}/{target}"
