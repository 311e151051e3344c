"""The learned predictor's history: training examples, and models kept fresh as it grows.

Examples come from two places: every verified outcome of a change (kept or rolled back,
with the KPI changes verification observed), and imported history, where a team's past
configuration versions and the samples around them give the load-matched KPI change of
each past change. A model is trained per target system (its own history weighted 1, its
neighbours' by similarity) and kept until new examples arrive; a background loop retrains
the models in use, so a prediction seldom waits for a fit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import numpy as np

from cfgclone import vocabulary
from cfgclone.behaviour.build import SampleSeries, build_fingerprint, resolve_load_metric
from cfgclone.behaviour.comparison import compare
from cfgclone.behaviour.embedding import embed
from cfgclone.behaviour.errors import FingerprintError
from cfgclone.behaviour.model import SystemProfile
from cfgclone.behaviour.regimes import LoadScale
from cfgclone.collector import reads
from cfgclone.collector.reads import MetricSamples, read_samples
from cfgclone.common.errors import CfgcloneError
from cfgclone.common.store import Store
from cfgclone.predictor import repository
from cfgclone.predictor.change import ConfigurationDelta
from cfgclone.predictor.codec import Content
from cfgclone.predictor.features import Resources, change_features
from cfgclone.predictor.learned import ChangeRecord, HistoryLearner, HistoryModel
from cfgclone.predictor.parameters import stored_schema
from cfgclone.predictor.verdict import KpiResult, Verdict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Cached:
    version: tuple[tuple[str, int, float], ...]
    """Example count and last change of each system the model learned from."""
    similarity: tuple[tuple[str, float], ...]
    model: HistoryModel


FLEET = "fleet"
"""The model of no system in particular: every system's history weighted alike."""

_SCORE_STEP = 0.05
"""Similarity scores are rounded to this before they decide whether a model is current,
so a refined fingerprint moving a neighbour's score by 0.001 does not refit the model."""


class ModelCache:
    """Trained models per target system, fitted again only when their examples change.

    A target's model depends on the examples of the target and of the systems similar to
    it (all systems when no similarity is known), so a new example elsewhere leaves it
    alone. Fits run in a worker thread, one per target at a time: concurrent first
    requests for a system share one fit. A request that would wait longer than
    ``first_wait`` for its target's fit is answered by the target's previous model, or by
    the fleet model (every system's history, fitted in the background) when the target has
    none yet, while the target's model is fitted; only a request with no model of any
    history to answer from waits for the fit.

    With ``freeze_models`` (the service's choice) every fitted model is left out of the
    garbage collector's passes; see :func:`_kept_out_of_collections`. It is process-wide:
    introspection that looks for referrers among the collector's objects no longer sees
    what was frozen, so it is for a service's process, not for a library's caller.
    """

    def __init__(
        self,
        store: Store,
        learner: HistoryLearner | None = None,
        *,
        first_wait: float = 0.25,
        freeze_models: bool = False,
    ) -> None:
        self._store = store
        self._learner = learner or HistoryLearner()
        self._first_wait = first_wait
        self._freeze_models = freeze_models
        self._models: dict[str, _Cached] = {}
        self._fits: dict[str, asyncio.Task[HistoryModel]] = {}
        self._refreshing: asyncio.Task[int] | None = None
        self._refresh_again = False

    async def model_for(
        self,
        target: str,
        embedding: Sequence[float],
        similarity: Mapping[str, float] | None,
    ) -> HistoryModel:
        """The model of ``target`` for its current ``embedding``.

        Fitted again only when the examples it learns from changed; when that fit takes
        longer than ``first_wait``, the target's previous model or the fleet model answers.
        """
        async with self._store.connection() as conn:
            versions = await repository.examples_versions(conn)
        scores = _rounded(similarity)
        version = _relevant(versions, target, scores)
        cached = self._models.get(target)
        if cached is not None and cached.version == version and cached.similarity == scores:
            return cached.model.for_target(target, embedding)
        task = self._fit_task(target, embedding, similarity, (version, scores))
        fleet = self._models.get(FLEET)
        if fleet is None or fleet.version != _relevant(versions, FLEET, ()):
            self._fit_task(FLEET, embedding, None, (_relevant(versions, FLEET, ()), ()))
        # Meanwhile the target's last model answers, else the fleet's, even when the
        # examples that just arrived are not in them: better than a wait of many seconds,
        # and the next request after the fit gets the new model. A model of no history at
        # all cannot stand in for one of some.
        meanwhile = next((c for c in (cached, fleet) if c is not None and c.model.kpis), None)
        if meanwhile is not None:
            done, _ = await asyncio.wait({task}, timeout=self._first_wait)
            if not done:
                return meanwhile.model.for_target(target, embedding)
        return (await asyncio.shield(task)).for_target(target, embedding)

    def version_of(self, target: str) -> str:
        """Version of the model held for ``target``; empty when none is fitted yet."""
        cached = self._models.get(target)
        return cached.model.version if cached is not None else ""

    async def refresh(self) -> int:
        """Fit again the models in use (and the fleet model) whose examples changed;
        returns how many were fitted."""
        async with self._store.connection() as conn:
            versions = await repository.examples_versions(conn)
        stale = [
            (target, cached)
            for target, cached in self._models.items()
            if cached.version != _relevant(versions, target, cached.similarity)
        ]
        fits = [
            self._fit_task(
                target,
                cached.model.embedding,
                dict(cached.similarity) if cached.similarity else None,
                (_relevant(versions, target, cached.similarity), cached.similarity),
            )
            for target, cached in stale
        ]
        if FLEET not in self._models and versions:
            fits.append(self._fit_task(FLEET, (), None, (_relevant(versions, FLEET, ()), ())))
        for task in fits:
            await asyncio.shield(task)
        return len(fits)

    def _fit_task(
        self,
        target: str,
        embedding: Sequence[float],
        similarity: Mapping[str, float] | None,
        key: tuple[tuple[tuple[str, int, float], ...], tuple[tuple[str, float], ...]],
    ) -> asyncio.Task[HistoryModel]:
        """The running fit of ``target``, or a new one: one fit per target at a time."""
        running = self._fits.get(target)
        if running is not None and not running.done():
            return running

        async def fit() -> HistoryModel:
            try:
                model = await self._fit(target, embedding, similarity)
                self._models[target] = _Cached(key[0], key[1], model)
                if self._freeze_models:
                    _kept_out_of_collections()
                return model
            finally:
                self._fits.pop(target, None)

        task = asyncio.create_task(fit(), name=f"fit-{target}")
        self._fits[target] = task
        return task

    async def wait(self) -> None:
        """Until no fit runs."""
        while self._fits:
            await asyncio.gather(*self._fits.values(), return_exceptions=True)

    def refresh_soon(self) -> None:
        """Start :meth:`refresh` in the background unless one is running (examples changed)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh_logged(), name="refresh-models")
        else:
            self._refresh_again = True

    async def _refresh_logged(self) -> int:
        """Refresh, and again while examples changed meanwhile; problems are logged."""
        fitted = 0
        while True:
            self._refresh_again = False
            try:
                fitted += await self.refresh()
            except (CfgcloneError, ValueError) as error:
                logger.warning("models not refitted: %s", error)
            if not self._refresh_again:
                return fitted

    async def close(self) -> None:
        """Stop fits in progress."""
        tasks: list[asyncio.Task[Any]] = [*self._fits.values()]
        if self._refreshing is not None:
            tasks.append(self._refreshing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _fit(
        self, target: str, embedding: Sequence[float], similarity: Mapping[str, float] | None
    ) -> HistoryModel:
        async with self._store.connection() as conn:
            rows = await repository.examples(conn)
        if target == FLEET:
            # Every system alike, on the embedding length most examples have.
            lengths = Counter(len(row[1]) for row in rows)
            embedding = (0.0,) * (lengths.most_common(1)[0][0] if lengths else 0)
        size = len(embedding)
        records = [
            ChangeRecord(
                system=f"systems/{system_id}",
                embedding=tuple(float(v) for v in vector),
                delta=ConfigurationDelta.between(dict(before), dict(after)),
                observed={str(k): float(v) for k, v in dict(observed).items()},
                context={str(k): float(v) for k, v in dict(features or {}).items()},
            )
            for system_id, vector, before, after, observed, features in rows
            if len(vector) == size
        ]
        if target == FLEET:
            similarity = {record.system: 1.0 for record in records}
        return await asyncio.to_thread(
            self._learner.fit, records, target=target, embedding=embedding, similarity=similarity
        )


def _kept_out_of_collections() -> None:
    """Leave every object alive now, the models just fitted among them, out of the garbage
    collector's future passes (``gc.freeze``).

    A model is hundreds of thousands of objects (every tree of every fold of every KPI),
    and a full collection walks every object it tracks: with a fleet's models held, one
    takes hundreds of milliseconds, and it stops every thread, a prediction answered
    meanwhile too. A model holds no reference cycle, so when it is replaced reference
    counting frees it whether or not it was frozen; what is left frozen is only the odd
    cycle that was garbage already at the moment of the freeze.
    """
    gc.freeze()


def _rounded(similarity: Mapping[str, float] | None) -> tuple[tuple[str, float], ...]:
    return tuple(
        sorted(
            (name, round(score / _SCORE_STEP) * _SCORE_STEP)
            for name, score in (similarity or {}).items()
        )
    )


def _relevant(
    versions: Mapping[str, tuple[int, float]], target: str, scores: Sequence[tuple[str, float]]
) -> tuple[tuple[str, int, float], ...]:
    """The example versions of the systems a model of ``target`` learns from: the target
    and its similar systems, or every system when no similarity is known."""
    if target == FLEET or not scores:
        names = sorted(versions)
    else:
        names = sorted({target, *(name for name, _ in scores)} & set(versions))
    return tuple((name, *versions[name]) for name in names)


async def training_status(store: Store, system_id: str | None) -> list[repository.TrainingRow]:
    """Examples and history imports of every system with either, or of one system
    (NOT_FOUND when it does not exist)."""
    async with store.connection() as conn:
        if system_id is not None:
            await repository.system(conn, system_id)
        return await repository.training_status(conn, system_id)


VersionFingerprinter = Callable[[str, str, datetime, datetime], Awaitable[None]]
"""Asks the fingerprint service for the fingerprint of (system, configuration) over a
window; the predictor passes one that calls BuildFingerprint."""


@dataclass(frozen=True)
class PastChange:
    """One change in a system's applied history and the windows that measure it.

    ``before`` runs from the earlier version's apply time to this one's; ``after`` from
    this one's to the next version's, or is open (``end`` None) while it still runs.
    """

    from_version: int
    to_version: int
    before: Content
    after: Content
    start: datetime
    applied: datetime
    end: datetime | None


def past_changes(versions: Sequence[tuple[int, Content, datetime]]) -> list[PastChange]:
    """The changes between consecutive applied versions, in apply-time order.

    The order is the apply times', not the version numbers': history imported newest
    first, or a version imported late into the middle, gives the same changes.
    """
    ordered = sorted(versions, key=lambda v: (v[2], v[0]))
    changes = []
    for index in range(1, len(ordered)):
        before_version, before, start = ordered[index - 1]
        after_version, after, applied = ordered[index]
        end = ordered[index + 1][2] if index + 1 < len(ordered) else None
        changes.append(
            PastChange(before_version, after_version, before, after, start, applied, end)
        )
    return changes


async def import_examples(
    store: Store,
    system_id: str,
    min_regime_count: float = 5.0,
    fingerprinter: VersionFingerprinter | None = None,
) -> int:
    """Training examples from a system's applied versions and the samples around them.

    Each pair of consecutive applied versions is one past change: the fingerprints of
    the stretch before and after it are compared at the load regimes both saw, so a
    busier afternoon is not blamed on the change. The "after" stretch ends where the next
    version begins. An example is measured again when its windows moved (a version was
    added after or between) or their sample counts changed (samples arrived late), and
    an example whose versions are no longer consecutive is dropped, so the examples are
    the same whatever order versions and samples were imported in. With
    ``fingerprinter``, each closed version's stretch also gets its stored fingerprint.
    Returns the imported examples the system has afterwards.
    """
    async with store.connection() as conn:
        system = await repository.system(conn, system_id)
        versions = await repository.applied_versions(conn, system)
        changes = past_changes(versions)
        bounds = sorted(applied for _, _, applied in versions)
        counts = await reads.window_counts(conn, system.key, bounds)
        known = await repository.imported_examples(conn, system)
        profile = (await reads.system(conn, system_id)).profile
    if fingerprinter is not None:
        await _fingerprint_closed_versions(store, system, versions, fingerprinter)
    samples_from = dict(zip(bounds, counts, strict=True))
    kept = 0
    wanted = {(c.from_version, c.to_version) for c in changes}
    for pair in set(known) - wanted:
        async with store.transaction() as conn:
            await repository.delete_imported_example(conn, system, pair)
    for change in changes:
        windows = repository.MeasuredWindows(
            change.start,
            change.applied,
            change.end,
            samples_from.get(change.start, 0),
            samples_from.get(change.applied, 0),
        )
        pair = (change.from_version, change.to_version)
        if pair in known and known[pair] == windows:
            kept += 1
            continue
        example = await _example(store, system, change, profile, min_regime_count)
        async with store.transaction() as conn:
            if example is None:
                if pair in known:
                    await repository.delete_imported_example(conn, system, pair)
                continue
            stored = await repository.configuration(conn, system, change.to_version)
            resources = Resources(
                profile.cpu_cores,
                profile.memory_bytes,
                example.load_level,
                example.load_peak,
                example.utilization,
            )
            features = change_features(
                change.before,
                change.after,
                stored_schema(stored.kind, stored.schema),
                resources,
            )
            await repository.insert_example(
                conn,
                repository.NewExample(
                    system=system,
                    from_version=change.from_version,
                    to_version=change.to_version,
                    change_id=None,
                    embedding=example.embedding,
                    before=change.before,
                    after=change.after,
                    observed=example.observed,
                    origin="import",
                    windows=windows,
                    features=features,
                ),
            )
        kept += 1
    return kept


class HistoryImports:
    """Imports of systems' history, one at a time per system, in the background.

    A request while the system's import runs is remembered and runs once after it, so
    a burst of imported versions costs one or two imports, not one each. Requests and
    completions are stored, so any replica can tell which imports are pending.
    """

    def __init__(
        self,
        store: Store,
        fingerprinter: VersionFingerprinter | None = None,
        on_imported: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._fingerprinter = fingerprinter
        self._on_imported = on_imported
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()

    async def request(self, system_id: str) -> None:
        """Import ``system_id``'s history soon; returns once the request is recorded."""
        async with self._store.transaction() as conn:
            system = await repository.system(conn, system_id)
            await repository.request_import(conn, system)
        self._start(system_id)

    def _start(self, system_id: str) -> None:
        if system_id in self._running:
            self._again.add(system_id)
            return
        task = asyncio.create_task(self._run(system_id), name=f"import-{system_id}")
        self._running[system_id] = task
        task.add_done_callback(lambda _: self._done(system_id))

    def _done(self, system_id: str) -> None:
        self._running.pop(system_id, None)
        if system_id in self._again:
            self._again.discard(system_id)
            self._start(system_id)

    async def _run(self, system_id: str) -> None:
        started = datetime.now(UTC)
        try:
            examples = await import_examples(
                self._store, system_id, fingerprinter=self._fingerprinter
            )
            async with self._store.transaction() as conn:
                system = await repository.system(conn, system_id)
                await repository.finish_import(conn, system, started, examples)
        except (CfgcloneError, OSError) as error:
            # Not pending any more: the next sweep or version tries again.
            logger.warning("history of %s not imported: %s", system_id, error)
            await self._finish_failed(system_id, started)
            return
        if self._on_imported is not None:
            self._on_imported(system_id)

    async def _finish_failed(self, system_id: str, started: datetime) -> None:
        try:
            async with self._store.transaction() as conn:
                system = await repository.system(conn, system_id)
                examples = len(await repository.imported_examples(conn, system))
                await repository.finish_import(conn, system, started, examples)
        except (CfgcloneError, OSError) as error:
            logger.warning("import of %s not recorded as finished: %s", system_id, error)

    async def sweep(self) -> int:
        """Look again at every system with history (late samples change examples);
        returns the imports started."""
        async with self._store.connection() as conn:
            systems = await repository.systems_with_history(conn)
        for system_id in systems:
            self._start(system_id)
        return len(systems)

    async def wait(self) -> None:
        """Until no import runs or is waiting to run."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def close(self) -> None:
        self._again.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _fingerprint_closed_versions(
    store: Store,
    system: repository.SystemRow,
    versions: Sequence[tuple[int, Content, datetime]],
    fingerprinter: VersionFingerprinter,
) -> None:
    """The baseline fingerprint of each past version whose stretch has ended and has none.

    The version still running is left to the fingerprint service's own refinement.
    """
    async with store.connection() as conn:
        done = await repository.fingerprinted_versions(conn, system)
    ordered = sorted(versions, key=lambda v: (v[2], v[0]))
    for (version, _, applied), (_, _, ended) in pairwise(ordered):
        if version not in done:
            name = f"{system.name}/configurations/{version}"
            await fingerprinter(system.name, name, applied, ended)


@dataclass(frozen=True)
class _Measured:
    embedding: tuple[float, ...]
    """Of the stretch before the change, with the system's hardware."""
    observed: dict[str, float]
    load_level: float
    """Mean offered load before the change."""
    load_peak: float
    """Largest offered load before the change."""
    utilization: float | None
    """Mean CPU utilisation before the change; None without CPU samples."""


async def _example(
    store: Store,
    system: repository.SystemRow,
    change: PastChange,
    profile: SystemProfile,
    min_regime_count: float,
) -> _Measured | None:
    end = change.end or datetime.now(UTC)
    async with store.connection() as conn:
        earlier = await read_samples(conn, system.system_id, change.start, change.applied)
        later = await read_samples(conn, system.system_id, change.applied, end)
    before, after = _series(earlier), _series(later)
    try:
        # Both stretches on one load metric and one scale spanning both, so that their
        # regimes are the same loads and can be compared.
        load = resolve_load_metric(before, None)
        loads = [s.values for s in (before.get(load), after.get(load)) if s is not None]
        scale = LoadScale.spanning(np.concatenate(loads)) if loads else None
        first = build_fingerprint(
            before,
            load_metric=load,
            system=profile,
            scale=scale,
            min_regime_count=min_regime_count,
        )
        second = build_fingerprint(
            after,
            load_metric=load,
            system=profile,
            scale=scale,
            min_regime_count=min_regime_count,
        )
    except FingerprintError as error:
        logger.info("no example for %s at %s: %s", system.name, change.applied, error)
        return None
    # The load metric is what the two stretches are matched on, not an effect.
    observed = {
        d.kpi: d.relative_change
        for d in compare(first, second)
        if d.kpi and d.kpi != first.load_metric
    }
    if not observed:
        return None
    embedding = tuple(float(v) for v in embed(first).vector)
    cpu = first.profiles.get(vocabulary.CPU_UTILIZATION.name)
    utilization = cpu.overall().mean if cpu is not None and cpu.count > 0 else None
    return _Measured(
        embedding, observed, first.load_profile.overall().mean, first.load_max, utilization
    )


def _series(samples: Mapping[str, MetricSamples]) -> dict[str, SampleSeries]:
    return {name: SampleSeries(s.ts_unix_ns, s.values) for name, s in samples.items()}


async def learn_from_outcome(
    store: Store, row: repository.ChangeRow, results: tuple[KpiResult, ...]
) -> None:
    """A verified outcome becomes a training example of the learned predictor."""
    observed = {
        r.kpi: r.relative_change
        for r in results
        if r.relative_change is not None and r.verdict is not Verdict.NODATA
    }
    if not observed:
        return
    async with store.transaction() as conn:
        system = await repository.system(conn, row.system_id)
        latest = await repository.latest_fingerprint(conn, system)
        if latest is None:
            return
        before = await repository.configuration(conn, system, row.from_version or 0)
        after = await repository.configuration(conn, system, row.to_version)
        resources = Resources(
            system.cpu_cores,
            system.memory_bytes,
            latest.load_level,
            latest.load_peak,
            latest.utilization,
        )
        schema = stored_schema(after.kind, after.schema)
        await repository.insert_example(
            conn,
            repository.NewExample(
                system=system,
                from_version=before.version,
                to_version=after.version,
                change_id=row.id,
                embedding=latest.embedding,
                before=before.content,
                after=after.content,
                observed=observed,
                origin="outcome",
                features=change_features(before.content, after.content, schema, resources),
            ),
        )
