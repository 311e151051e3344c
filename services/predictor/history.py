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
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from cfgclone.common.samples import MetricSamples, read_samples
from cfgclone.common.store import Store
from cfgclone.fingerprint.build import SampleSeries, build_fingerprint
from cfgclone.fingerprint.embedding import embed
from cfgclone.fingerprint.errors import FingerprintError
from cfgclone.fingerprint.service import compare
from cfgclone.predictor import repository
from cfgclone.predictor.change import ConfigurationDelta
from cfgclone.predictor.codec import Content
from cfgclone.predictor.learned import ChangeRecord, HistoryLearner, HistoryModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Cached:
    version: tuple[int, int]
    embedding: tuple[float, ...]
    similarity: tuple[tuple[str, float], ...]
    model: HistoryModel


class ModelCache:
    """Trained models per target system, valid while the examples are unchanged."""

    def __init__(self, store: Store, learner: HistoryLearner | None = None) -> None:
        self._store = store
        self._learner = learner or HistoryLearner()
        self._models: dict[str, _Cached] = {}
        self._lock = asyncio.Lock()

    async def model_for(
        self,
        target: str,
        embedding: Sequence[float],
        similarity: Mapping[str, float] | None,
    ) -> HistoryModel:
        """The model of ``target``, trained again only when the inputs changed."""
        async with self._store.connection() as conn:
            version = await repository.examples_version(conn)
        scores = tuple(sorted((similarity or {}).items()))
        cached = self._models.get(target)
        if (
            cached is not None
            and cached.version == version
            and cached.embedding == tuple(embedding)
            and cached.similarity == scores
        ):
            return cached.model
        async with self._lock:
            model = await self._fit(target, embedding, similarity)
            self._models[target] = _Cached(version, tuple(embedding), scores, model)
        return model

    async def refresh(self) -> int:
        """Retrain the models in use whose examples changed; how many were retrained."""
        async with self._store.connection() as conn:
            version = await repository.examples_version(conn)
        stale = [(t, c) for t, c in self._models.items() if c.version != version]
        for target, cached in stale:
            await self.model_for(target, cached.embedding, dict(cached.similarity) or None)
        return len(stale)

    async def _fit(
        self, target: str, embedding: Sequence[float], similarity: Mapping[str, float] | None
    ) -> HistoryModel:
        async with self._store.connection() as conn:
            rows = await repository.examples(conn)
        size = len(embedding)
        records = [
            ChangeRecord(
                system=f"systems/{system_id}",
                embedding=tuple(float(v) for v in vector),
                delta=ConfigurationDelta.between(dict(before), dict(after)),
                observed={str(k): float(v) for k, v in dict(observed).items()},
            )
            for system_id, vector, before, after, observed in rows
            if len(vector) == size
        ]
        return await asyncio.to_thread(
            self._learner.fit, records, target=target, embedding=embedding, similarity=similarity
        )


VersionFingerprinter = Callable[[str, str, datetime, datetime], Awaitable[None]]
"""Asks the fingerprint service for the fingerprint of (system, configuration) over a
window; the predictor passes one that calls BuildFingerprint."""


async def import_examples(
    store: Store,
    system_id: str,
    min_regime_count: float = 5.0,
    fingerprinter: VersionFingerprinter | None = None,
) -> int:
    """Training examples from a system's applied versions and the samples around them.

    Each pair of consecutive applied versions is one past change: the fingerprints of
    the stretch before and after it are compared at the load regimes both saw, so a
    busier afternoon is not blamed on the change. With ``fingerprinter``, each past
    version's stretch also gets its stored fingerprint (the baseline of that version).
    Returns the examples stored.
    """
    async with store.connection() as conn:
        system = await repository.system(conn, system_id)
        versions = await repository.applied_versions(conn, system)
    stored = 0
    now = datetime.now(UTC)
    if fingerprinter is not None:
        await _fingerprint_closed_versions(store, system, versions, fingerprinter)
    for index in range(1, len(versions)):
        before_version, before, start = versions[index - 1]
        after_version, after, applied = versions[index]
        end = versions[index + 1][2] if index + 1 < len(versions) else now
        example = await _example(store, system, (start, applied, end), min_regime_count)
        if example is None:
            continue
        embedding, observed = example
        async with store.transaction() as conn:
            await repository.insert_example(
                conn,
                repository.NewExample(
                    system=system,
                    from_version=before_version,
                    to_version=after_version,
                    change_id=None,
                    embedding=embedding,
                    before=before,
                    after=after,
                    observed=observed,
                    origin="import",
                ),
            )
        stored += 1
    return stored


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
    for (version, _, applied), (_, _, ended) in pairwise(versions):
        if version not in done:
            name = f"{system.name}/configurations/{version}"
            await fingerprinter(system.name, name, applied, ended)


async def _example(
    store: Store,
    system: repository.SystemRow,
    bounds: tuple[datetime, datetime, datetime],
    min_regime_count: float,
) -> tuple[tuple[float, ...], dict[str, float]] | None:
    start, applied, end = bounds
    async with store.connection() as conn:
        earlier = await read_samples(conn, system.system_id, start, applied)
        later = await read_samples(conn, system.system_id, applied, end)
    try:
        first = build_fingerprint(_series(earlier), min_regime_count=min_regime_count)
        # Before and after on one scale, so they compare regime by regime.
        second = build_fingerprint(
            _series(later), min_regime_count=min_regime_count, scale=first.scale
        )
    except FingerprintError as error:
        logger.info("no example for %s at %s: %s", system.name, applied, error)
        return None
    observed = {d.kpi: d.relative_change for d in compare(first, second) if d.kpi}
    if not observed:
        return None
    return tuple(float(v) for v in embed(first).vector), observed


def _series(samples: Mapping[str, MetricSamples]) -> dict[str, SampleSeries]:
    return {name: SampleSeries(s.ts_unix_ns, s.values) for name, s in samples.items()}
