"""PredictImpact: a change's per-KPI effect, learned from history or measured on a shadow.

Learned: the target's model (its own history, and its neighbours' weighted by
similarity) predicts each KPI's relative change with an interval. Shadow: a copy of
the target runs its load under the current and the proposed configuration, and the
judge compares the two. Both: each KPI takes the decisive answer where only one is
decisive, and the worse of the two where both are. The policy turns the per-KPI
results into the verdict.

A shadow run starts a throw-away copy of the target and its load for tens of
seconds, so at most ``max_shadow_runs`` run at once. A caller waiting on the answer
(PredictImpact) is refused at once with RESOURCE_EXHAUSTED when every slot is busy:
queued, it would hold its call for minutes and most likely pass its deadline with
no answer, while RESOURCE_EXHAUSTED says to retry later. A proposed change, which the
guard predicts in the background, waits for a slot instead: it is already accepted
and stays PREDICTING until its turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cfgclone import vocabulary
from cfgclone.collector.reads import read_samples
from cfgclone.common.errors import ResourceExhausted
from cfgclone.common.store import Store
from cfgclone.predictor import repository
from cfgclone.predictor.change import (
    DEFAULT_DIRECTIONS,
    ConfigurationDelta,
    KpiDirection,
    UnknownKpiDirection,
)
from cfgclone.predictor.codec import Content, StoredPolicy, mode_to_proto, prediction_message
from cfgclone.predictor.features import Resources, change_features
from cfgclone.predictor.history import ModelCache
from cfgclone.predictor.judge import Judge
from cfgclone.predictor.load_profile import load_profile
from cfgclone.predictor.outcomes import OutcomeCounters
from cfgclone.predictor.parameters import stored_schema
from cfgclone.predictor.settings import PredictorSettings
from cfgclone.predictor.shadow import (
    KpiSamples,
    ShadowOutcome,
    ShadowProvider,
    ShadowTarget,
    WorkloadShape,
    run_shadow_comparison,
    workload_at,
)
from cfgclone.predictor.states import PredictionMode
from cfgclone.predictor.verdict import KpiResult, Verdict
from cfgclone.v1 import common_pb2

logger = logging.getLogger(__name__)

SimilarityLookup = Callable[[str], Awaitable[Mapping[str, float] | None]]
"""Similarity scores of a system's nearest systems by name; None when unreachable."""

_SEVERITY = {
    Verdict.NEGATIVE: 4,
    Verdict.INCONCLUSIVE: 3,
    Verdict.NODATA: 2,
    Verdict.NEUTRAL: 1,
    Verdict.POSITIVE: 0,
}


@dataclass(frozen=True)
class ProposedConfiguration:
    """What a prediction is about: a system, its current configuration and the proposal."""

    system: repository.SystemRow
    current: repository.StoredConfiguration
    kind: str
    content: Content


@dataclass(frozen=True)
class Evidence:
    """Per-KPI results of one way of predicting, with what made them."""

    results: tuple[KpiResult, ...]
    model_version: str = ""
    note: str = ""


class Predictor:
    """Makes predictions; holds the models, the judge and the shadow providers."""

    def __init__(
        self,
        store: Store,
        settings: PredictorSettings,
        *,
        models: ModelCache,
        shadow_providers: Mapping[str, ShadowProvider],
        similarity: SimilarityLookup | None = None,
        judge: Judge | None = None,
        counters: OutcomeCounters | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._models = models
        self._providers = dict(shadow_providers)
        self._similarity = similarity
        self._judge = judge or Judge()
        self._counters = counters or OutcomeCounters()
        self._shadow_slots = asyncio.Semaphore(settings.max_shadow_runs)

    @property
    def models(self) -> ModelCache:
        """The learned models this predictor holds."""
        return self._models

    async def predict(
        self,
        proposal: ProposedConfiguration,
        mode: PredictionMode,
        policy: StoredPolicy,
        *,
        wait_for_shadow: bool = False,
    ) -> common_pb2.Prediction:
        """The verdict of ``policy`` on the predicted effect of ``proposal``.

        A shadow run needs a free slot: without ``wait_for_shadow`` RESOURCE_EXHAUSTED
        when there is none, with it the prediction waits for one."""
        mode = mode or PredictionMode.LEARNED
        delta = ConfigurationDelta.between(proposal.current.content, proposal.content)
        if not delta:
            return self._counted(self._unchanged(mode, policy))
        parts: list[Evidence] = []
        if mode in (PredictionMode.LEARNED, PredictionMode.BOTH):
            parts.append(await self._learned(proposal, delta, policy))
        if mode in (PredictionMode.SHADOW, PredictionMode.BOTH):
            parts.append(await self._shadow(proposal, policy, wait_for_shadow))
        results = combine([p.results for p in parts])
        reading = policy.policy.verdict(results)
        return self._counted(
            prediction_message(
                results,
                reading,
                mode=mode,
                policy_name=policy.message.name,
                model_version=next((p.model_version for p in parts if p.model_version), ""),
                note="; ".join(p.note for p in parts if p.note),
            )
        )

    def _counted(self, prediction: common_pb2.Prediction) -> common_pb2.Prediction:
        verdict = common_pb2.Verdict.Name(prediction.verdict).removeprefix("VERDICT_").lower()
        self._counters.predictions.labels(verdict).inc()
        return prediction

    def _unchanged(self, mode: PredictionMode, policy: StoredPolicy) -> common_pb2.Prediction:
        return common_pb2.Prediction(
            verdict=common_pb2.VERDICT_NEUTRAL,
            mode=mode_to_proto(mode),
            explanation="the proposed configuration equals the current one: nothing changes",
            policy=policy.message.name,
        )

    async def _learned(
        self, proposal: ProposedConfiguration, delta: ConfigurationDelta, policy: StoredPolicy
    ) -> Evidence:
        async with self._store.connection() as conn:
            latest = await repository.latest_fingerprint(conn, proposal.system)
        if latest is None:
            why = (
                f"{proposal.system.name} has no fingerprint, so no history can be matched "
                "to it; collect its metrics and build a fingerprint first"
            )
            return Evidence(self._inconclusive_all(why))
        scores, note = None, ""
        if self._similarity is not None:
            scores = await self._similarity(proposal.system.name)
            if scores is None:
                note = "similarity service unreachable: neighbours weighted by embedding cosine"
        model = await self._models.model_for(proposal.system.name, latest.embedding, scores)
        if not model.kpis:
            why = "no history of changes on this system or any similar one"
            return Evidence(self._inconclusive_all(why), model.version, note)
        system = proposal.system
        context = change_features(
            proposal.current.content,
            proposal.content,
            stored_schema(proposal.kind, proposal.current.schema),
            Resources(
                system.cpu_cores,
                system.memory_bytes,
                latest.load_level,
                latest.load_peak,
                latest.utilization,
            ),
        )
        confidence = {kpi: policy.policy.confidence_for(kpi) for kpi in model.kpis}
        prediction = model.predict(delta, context=context, confidence=confidence)
        return Evidence(prediction.kpis, prediction.model_version, note)

    def _inconclusive_all(self, why: str) -> tuple[KpiResult, ...]:
        kpi = vocabulary.HTTP_REQUEST_DURATION.name
        return (
            KpiResult(
                kpi=kpi,
                direction=DEFAULT_DIRECTIONS.direction(kpi),
                verdict=Verdict.INCONCLUSIVE,
                explanation=f"{kpi}: too little evidence: {why}",
            ),
        )

    async def _shadow(
        self, proposal: ProposedConfiguration, policy: StoredPolicy, wait: bool
    ) -> Evidence:
        provider = self._providers.get(proposal.kind)
        if provider is None:
            known = ", ".join(sorted(self._providers)) or "none"
            why = f"no shadow provider for configuration kind {proposal.kind!r} (known: {known})"
            return Evidence(self._inconclusive_all(why))
        target = await self._shadow_target(proposal)
        s = self._settings
        if not wait and self._shadow_slots.locked():
            raise ResourceExhausted(
                f"{s.max_shadow_runs} shadow runs are running, the most at once "
                "(CFGCLONE_PREDICTOR_MAX_SHADOW_RUNS); retry when one has finished",
                reason="SHADOW_RUNS_BUSY",
                metadata={"max_shadow_runs": str(s.max_shadow_runs)},
            )
        async with self._shadow_slots:
            run = await run_shadow_comparison(
                provider,
                target,
                proposal.current.content,
                proposal.content,
                rounds=s.shadow_rounds,
                duration=s.shadow_seconds,
                timeout=s.shadow_timeout.total_seconds(),
                min_samples=self._judge.settings.min_samples,
                decided=lambda baseline, candidate: self._decided(policy, baseline, candidate),
            )
        if run.outcome is not ShadowOutcome.COMPLETED:
            why = f"shadow run {run.outcome.value}: {run.failure_reason or 'no reason given'}"
            return Evidence(self._inconclusive_all(why), note=why)
        results, unjudged = self._judged(policy, run.baseline, run.candidate)
        notes = [f"shadow: {run.provider}, {len(run.rounds)} runs in {run.elapsed_s:.1f} s"]
        notes.append(_load_note(target))
        notes += sorted(
            {note for r in run.rounds for key, note in r.details.items() if key.startswith("load.")}
        )
        if unjudged:
            notes.append(f"not judged (no direction known): {', '.join(sorted(unjudged))}")
        return Evidence(results, note="; ".join(notes))

    def _judged(
        self, policy: StoredPolicy, baseline: KpiSamples, candidate: KpiSamples
    ) -> tuple[tuple[KpiResult, ...], set[str]]:
        """The judge's results on the KPIs with a known direction, and the others' names."""
        kpis = set(baseline) | set(candidate)
        directions, unjudged = _directions(policy, kpis)
        results = self._judge.compare_all(
            {kpi: v for kpi, v in baseline.items() if kpi in directions},
            {kpi: v for kpi, v in candidate.items() if kpi in directions},
            directions=directions,
            tolerances=_tolerances(policy, kpis),
        )
        return results, unjudged

    def _decided(self, policy: StoredPolicy, baseline: KpiSamples, candidate: KpiSamples) -> bool:
        """Whether the policy's verdict on the samples so far is settled (more runs cannot
        turn an undecided KPI into a decision otherwise)."""
        results, _ = self._judged(policy, baseline, candidate)
        verdict = policy.policy.verdict(results).verdict
        return verdict not in (Verdict.INCONCLUSIVE, Verdict.NODATA)

    async def _shadow_target(self, proposal: ProposedConfiguration) -> ShadowTarget:
        """The target as a shadow reproduces it: its hardware and its recorded busy load."""
        end = datetime.now(UTC)
        start = end - self._settings.shadow_load_window
        async with self._store.connection() as conn:
            hardware = await repository.system_hardware(conn, proposal.system)
            samples = await read_samples(conn, proposal.system.system_id, start, end)
        profile = load_profile(samples)
        return ShadowTarget(
            system=proposal.system.name,
            load=workload_at(profile, WorkloadShape()),
            load_profile=profile,
            hardware=hardware,
        )


def _directions(policy: StoredPolicy, kpis: set[str]) -> tuple[dict[str, KpiDirection], set[str]]:
    """Each KPI's direction, the policy's first; KPIs no one gives a direction for apart."""
    directions: dict[str, KpiDirection] = {}
    unknown: set[str] = set()
    for kpi in kpis:
        threshold = policy.policy.threshold_for(kpi)
        if threshold is not None:
            directions[kpi] = threshold.direction
            continue
        try:
            directions[kpi] = DEFAULT_DIRECTIONS.direction(kpi)
        except UnknownKpiDirection:
            unknown.add(kpi)
    return directions, unknown


def _load_note(target: ShadowTarget) -> str:
    if not target.load_profile:
        return "no offered load recorded for the target: the shadow ran at its own pace"
    profile = sorted(target.load_profile.items())
    rates = ", ".join(f"{series} {rate:.4g}/s" for series, rate in profile)
    return f"target's busy-period load: {rates}"


def _tolerances(policy: StoredPolicy, kpis: set[str]) -> dict[str, float]:
    tolerances = {}
    for kpi in kpis:
        threshold = policy.policy.threshold_for(kpi)
        if threshold is not None:
            tolerances[kpi] = threshold.max_relative_change
    return tolerances


def combine(parts: Sequence[Sequence[KpiResult]]) -> tuple[KpiResult, ...]:
    """One result per KPI: the decisive one, or the worse of two decisive ones."""
    chosen: dict[str, KpiResult] = {}
    for results in parts:
        for result in results:
            held = chosen.get(result.kpi)
            chosen[result.kpi] = result if held is None else _pick(held, result)
    return tuple(chosen[kpi] for kpi in sorted(chosen))


def _decisive(result: KpiResult) -> bool:
    return result.verdict not in (Verdict.INCONCLUSIVE, Verdict.NODATA)


def _pick(first: KpiResult, second: KpiResult) -> KpiResult:
    if _decisive(first) != _decisive(second):
        return first if _decisive(first) else second
    worse = first if _SEVERITY[first.verdict] >= _SEVERITY[second.verdict] else second
    other = second if worse is first else first
    return replace(worse, explanation=f"{worse.explanation}; also: {other.explanation}")
