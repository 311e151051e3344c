"""The fleet at a glance: where each system's fingerprint sits, its cohort, its nearest
systems, and the history of changes; gathered through the services' APIs.

The map is a principal component projection of the fingerprints' embeddings, each entry
standardised first (the groups of an embedding have different scales), so systems that
behave alike lie close together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from cfgclone.v1 import similarity_service_pb2 as similarity_pb

NEAREST = 3
"""Nearest systems listed for each system."""

PAGE_SIZE = 500


@dataclass(frozen=True)
class FleetSources:
    """Stubs of the services a fleet report reads."""

    collector: Any
    fingerprint: Any
    similarity: Any
    predictor: Any
    timeout: float = 30.0


@dataclass(frozen=True)
class PlacedSystem:
    """A system on the map."""

    name: str
    labels: str
    cohort: str
    fingerprint: str
    fingerprint_updated: datetime | None
    x: float | None
    """Position on the map; None without a fingerprint."""
    y: float | None
    nearest: tuple[tuple[str, float], ...]
    """The most similar systems and their scores, best first."""


@dataclass(frozen=True)
class ChangeEvent:
    name: str
    system: str
    state: str
    reason: str
    requested_by: str
    created: datetime | None


@dataclass(frozen=True)
class FleetReport:
    systems: tuple[PlacedSystem, ...]
    changes: tuple[ChangeEvent, ...]
    explained_variance: tuple[float, ...]
    """Share of the embeddings' variance each map axis carries."""
    notes: tuple[str, ...] = ()


async def _pages(call: Any, request: Any, field: str, deadline: float) -> list[Any]:
    """Every item of a List call, page after page; ``deadline`` is each call's, in seconds."""
    found: list[Any] = []
    while True:
        reply = await call(request, timeout=deadline)
        found += getattr(reply, field)
        if not reply.next_page_token:
            return found
        request.page_token = reply.next_page_token


def project(embeddings: Sequence[Sequence[float]]) -> tuple[np.ndarray, tuple[float, ...]]:
    """Two map coordinates per embedding, and the variance share of each axis."""
    matrix = np.asarray(embeddings, dtype=np.float64)
    if len(matrix) == 0:
        return np.zeros((0, 2)), ()
    scaled = StandardScaler().fit_transform(matrix)
    components = min(2, *scaled.shape)
    if components == 0 or len(matrix) < 2:
        return np.zeros((len(matrix), 2)), ()
    pca = PCA(n_components=components)
    placed = pca.fit_transform(scaled)
    if components == 1:
        placed = np.column_stack([placed, np.zeros(len(placed))])
    return placed, tuple(float(v) for v in pca.explained_variance_ratio_)


def _time(stamp: Any) -> datetime | None:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, UTC)


async def gather_fleet(sources: FleetSources) -> FleetReport:
    """Every registered system, placed, with its cohort and nearest systems; every change."""
    notes: list[str] = []
    timeout = sources.timeout
    systems = await _pages(
        sources.collector.ListSystems,
        collector_pb.ListSystemsRequest(page_size=PAGE_SIZE),
        "systems",
        timeout,
    )
    cohort_of: dict[str, str] = {}
    try:
        cohorts = await _pages(
            sources.similarity.ListCohorts,
            similarity_pb.ListCohortsRequest(page_size=PAGE_SIZE),
            "cohorts",
            timeout,
        )
        cohort_of = {member: c.name for c in cohorts for member in c.members}
    except grpc.aio.AioRpcError as error:
        notes.append(f"cohorts unavailable: {error.details()}")
    prints: dict[str, common_pb2.Fingerprint] = {}
    nearest: dict[str, tuple[tuple[str, float], ...]] = {}
    for system in systems:
        found = await _pages(
            sources.fingerprint.ListFingerprints,
            fingerprint_pb.ListFingerprintsRequest(parent=system.name, page_size=100),
            "fingerprints",
            timeout,
        )
        usable = [f for f in found if f.embedding]
        if usable:
            prints[system.name] = max(usable, key=lambda f: f.update_time.ToNanoseconds())
        else:
            notes.append(f"{system.name} has no fingerprint yet, so it is not on the map")
            continue
        try:
            reply = await sources.similarity.FindSimilarSystems(
                similarity_pb.FindSimilarSystemsRequest(system=system.name, page_size=NEAREST),
                timeout=timeout,
            )
            nearest[system.name] = tuple((s.second, s.score) for s in reply.similar_systems)
        except grpc.aio.AioRpcError as error:
            notes.append(f"nearest systems of {system.name} unavailable: {error.details()}")
    placed_names = [s.name for s in systems if s.name in prints]
    lengths = {len(prints[n].embedding) for n in placed_names}
    if len(lengths) > 1:
        # Fingerprints of different model versions do not share a space.
        common = max(lengths, key=lambda n: sum(len(prints[m].embedding) == n for m in prints))
        dropped = [n for n in placed_names if len(prints[n].embedding) != common]
        notes += [f"{n}: fingerprint of another model version, not on the map" for n in dropped]
        placed_names = [n for n in placed_names if n not in dropped]
    coordinates, variance = project([list(prints[n].embedding) for n in placed_names])
    position = {
        n: (float(x), float(y)) for n, (x, y) in zip(placed_names, coordinates, strict=True)
    }
    changes = await _pages(
        sources.predictor.ListChanges,
        predictor_pb.ListChangesRequest(parent="systems/-", page_size=PAGE_SIZE),
        "changes",
        timeout,
    )
    return FleetReport(
        systems=tuple(
            PlacedSystem(
                name=s.name,
                labels=", ".join(f"{k}={v}" for k, v in sorted(s.labels.items())),
                cohort=cohort_of.get(s.name, ""),
                fingerprint=prints[s.name].name if s.name in prints else "",
                fingerprint_updated=_time(prints[s.name].update_time) if s.name in prints else None,
                x=position[s.name][0] if s.name in position else None,
                y=position[s.name][1] if s.name in position else None,
                nearest=nearest.get(s.name, ()),
            )
            for s in systems
        ),
        changes=tuple(
            ChangeEvent(
                name=c.name,
                system=c.name.split("/changes/")[0],
                state=common_pb2.ChangeState.Name(c.state).removeprefix("CHANGE_STATE_"),
                reason=c.state_reason,
                requested_by=c.requested_by,
                created=_time(c.create_time),
            )
            for c in changes
        ),
        explained_variance=variance,
        notes=tuple(notes),
    )
