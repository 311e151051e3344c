"""Cohorts: groups of systems that behave alike, found by clustering the fleet.

Clustering runs on the prepared rows (unit length), where Euclidean k-means is
k-means on cosine distance. The number of cohorts comes from the data: k-means is
tried for each k in a range on a sample and the k with the best silhouette wins;
a fleet whose best silhouette is poor has no structure and is one cohort. The final
model is fitted on a larger sample and every system joins the cohort whose centre
direction is nearest, the same rule a new system is assigned by.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from .errors import InvalidQuery, UnknownCohort, UnknownSystem
from .settings import CohortSettings
from .space import EmbeddingSpace

__all__ = ["Cohort", "CohortAssignment", "Cohorts"]

_ASSIGN_CHUNK = 131_072


@dataclass(frozen=True, slots=True)
class Cohort:
    """A group of systems that behave alike."""

    cohort_id: str
    """Id within one clustering: "0" is the largest cohort, then by size."""
    members: tuple[str, ...]
    """Member system ids, sorted."""
    centre: tuple[float, ...]
    """Mean raw embedding of the members, in the fingerprints' own units."""
    spread: float
    """Mean distance of members from the cohort's centre direction, on the score scale:
    1 - similarity, so 0 is a cohort of identical systems."""


@dataclass(frozen=True, slots=True)
class CohortAssignment:
    """Which cohort a system joins and how alike it is to the cohort's centre."""

    cohort: Cohort
    """The cohort with the nearest centre direction."""
    similarity: float
    """Similarity to that centre in [0, 1], on the same scale as pair scores."""


class Cohorts:
    """One clustering of the fleet. Immutable; cohorts are ordered by size."""

    __slots__ = ("_by_id", "_centroids", "_cohorts", "_member_of", "_silhouette", "_space")

    def __init__(
        self,
        cohorts: Sequence[Cohort],
        centroids: NDArray[np.float32],
        space: EmbeddingSpace,
        silhouette: float | None,
    ) -> None:
        self._cohorts = tuple(cohorts)
        self._centroids = centroids
        self._space = space
        self._silhouette = silhouette
        self._by_id = {cohort.cohort_id: index for index, cohort in enumerate(self._cohorts)}
        member_of: dict[str, int] = {}
        for index, cohort in enumerate(self._cohorts):
            member_of.update(dict.fromkeys(cohort.members, index))
        self._member_of: Mapping[str, int] = MappingProxyType(member_of)

    @classmethod
    def empty(cls, space: EmbeddingSpace) -> Cohorts:
        """The cohorts of an empty fleet: none."""
        return cls((), np.zeros((0, space.dimension), dtype=np.float32), space, None)

    @classmethod
    def fit(
        cls,
        system_ids: Sequence[str],
        rows: NDArray[np.float32],
        raw: NDArray[np.float32],
        space: EmbeddingSpace,
        settings: CohortSettings,
    ) -> Cohorts:
        """Clusters prepared rows (one per system id) and describes each cluster."""
        size = len(system_ids)
        if size == 0:
            return cls.empty(space)
        rng = np.random.default_rng(settings.random_state)
        order = rng.permutation(size) if size > settings.selection_sample else np.arange(size)
        selection = np.sort(order[: settings.selection_sample])
        fitting = np.sort(order[: settings.fit_sample])
        # The limit applies to the calling thread's OpenMP pool only, so queries running
        # in other threads keep their BLAS threads.
        with threadpool_limits(limits=settings.threads, user_api="openmp"):
            k, silhouette = _choose_k(rows[selection], settings)
            if k == 1:
                centroids = _unit(rows.mean(axis=0, dtype=np.float64)[None, :])
            else:
                model = KMeans(
                    n_clusters=k,
                    n_init=settings.n_init,
                    random_state=settings.random_state,
                ).fit(rows[fitting])
                centroids = _unit(np.asarray(model.cluster_centers_, dtype=np.float64))
        labels, cosines = _assign(rows, centroids)
        return cls._describe(system_ids, raw, labels, cosines, centroids, space, silhouette)

    @classmethod
    def _describe(
        cls,
        system_ids: Sequence[str],
        raw: NDArray[np.float32],
        labels: NDArray[np.intp],
        cosines: NDArray[np.float32],
        centroids: NDArray[np.float32],
        space: EmbeddingSpace,
        silhouette: float | None,
    ) -> Cohorts:
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=centroids.shape[0])
        bounds = np.concatenate(([0], np.cumsum(counts)))
        found: list[tuple[tuple[str, ...], tuple[float, ...], float, int]] = []
        for cluster in range(centroids.shape[0]):
            positions = order[bounds[cluster] : bounds[cluster + 1]]
            if positions.size == 0:
                continue
            members = tuple(sorted(system_ids[int(i)] for i in positions))
            centre = raw[positions].mean(axis=0, dtype=np.float64)
            spread = float(np.mean(1.0 - space.score(cosines[positions])))
            found.append((members, tuple(float(v) for v in centre), spread, cluster))
        found.sort(key=lambda item: (-len(item[0]), item[0][0]))
        cohorts = [
            Cohort(str(index), members, centre, spread)
            for index, (members, centre, spread, _) in enumerate(found)
        ]
        kept = np.array([cluster for *_, cluster in found], dtype=np.intp)
        return cls(cohorts, np.ascontiguousarray(centroids[kept]), space, silhouette)

    def __iter__(self) -> Iterator[Cohort]:
        return iter(self._cohorts)

    def __len__(self) -> int:
        return len(self._cohorts)

    @property
    def cohorts(self) -> tuple[Cohort, ...]:
        """All cohorts, largest first."""
        return self._cohorts

    @property
    def silhouette(self) -> float | None:
        """Silhouette of the chosen clustering on the selection sample; None for one cohort."""
        return self._silhouette

    def get(self, cohort_id: str) -> Cohort:
        """The cohort with this id; `UnknownCohort` if there is none."""
        index = self._by_id.get(cohort_id)
        if index is None:
            raise UnknownCohort(cohort_id)
        return self._cohorts[index]

    def cohort_of(self, system_id: str) -> Cohort:
        """The cohort a member of the clustered fleet belongs to."""
        index = self._member_of.get(system_id)
        if index is None:
            raise UnknownSystem(system_id)
        return self._cohorts[index]

    def assign(self, embedding: NDArray[np.floating[Any]]) -> CohortAssignment:
        """The cohort a system with this raw embedding joins (nearest centre direction)."""
        if not self._cohorts:
            raise InvalidQuery("the fleet has no cohorts to join; it is empty")
        row = self._space.prepare(np.asarray(embedding, dtype=np.float64)[None, :])
        cosines = (self._centroids @ row[0]).astype(np.float64)
        best = int(np.argmax(cosines))
        similarity = float(self._space.score(float(cosines[best])))
        return CohortAssignment(self._cohorts[best], similarity)


def _choose_k(sample: NDArray[np.float32], settings: CohortSettings) -> tuple[int, float | None]:
    """Best k by silhouette on the sample, or 1 when the sample shows no structure.

    Every candidate costs a k-means fit and a quadratic silhouette, so ks are not all
    tried: a grid growing by about a quarter each step is walked upwards (stopping
    `patience` grid steps past the best so far), then the best grid point is refined
    by climbing to whichever neighbouring k scores higher.
    """
    # As many cohorts as distinct rows is fine (a family of identical machines is one
    # row many times over); the silhouette needs fewer clusters than rows.
    distinct = np.unique(sample, axis=0).shape[0]
    highest = min(settings.max_clusters, distinct, sample.shape[0] - 1)
    if highest < settings.min_clusters:
        return 1, None
    scores: dict[int, float] = {}

    def score(k: int) -> float:
        if k not in scores:
            labels = KMeans(
                n_clusters=k, n_init=settings.selection_n_init, random_state=settings.random_state
            ).fit_predict(sample)
            scores[k] = (
                float(silhouette_score(sample, labels)) if np.unique(labels).size > 1 else -1.0
            )
        return scores[k]

    best, since_best = settings.min_clusters, 0
    for k in _grid(settings.min_clusters, highest):
        if score(k) > score(best):
            best, since_best = k, 0
        else:
            since_best += 1
            if since_best > settings.patience:
                break
    while True:
        neighbours = [k for k in (best - 1, best + 1) if settings.min_clusters <= k <= highest]
        better = [k for k in neighbours if score(k) > score(best)]
        if not better:
            break
        best = max(better, key=score)
    if score(best) < settings.min_silhouette:
        return 1, None
    return best, score(best)


def _grid(low: int, high: int) -> list[int]:
    """low, then steps of about a quarter (at least one) up to high, inclusive."""
    grid = [low]
    while grid[-1] < high:
        grid.append(min(high, max(grid[-1] + 1, round(grid[-1] * 1.25))))
    return grid


def _unit(centres: NDArray[np.float64]) -> NDArray[np.float32]:
    norms = np.linalg.norm(centres, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(centres / norms, dtype=np.float32)


def _assign(
    rows: NDArray[np.float32], centroids: NDArray[np.float32]
) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Nearest centre direction of every row, and the cosine to it."""
    labels = np.empty(rows.shape[0], dtype=np.intp)
    cosines = np.empty(rows.shape[0], dtype=np.float32)
    for start in range(0, rows.shape[0], _ASSIGN_CHUNK):
        block = rows[start : start + _ASSIGN_CHUNK] @ centroids.T
        best = np.argmax(block, axis=1)
        labels[start : start + block.shape[0]] = best
        cosines[start : start + block.shape[0]] = block[np.arange(block.shape[0]), best]
    return labels, cosines
