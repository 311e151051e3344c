"""Synthetic fleets for the similarity tests.

Families share hardware and workload, so their embeddings sit around one centre;
each member adds its own noise. Dimensions get wildly different units and offsets
(bytes next to coefficients), which the robust standardisation must undo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cfgclone.similarity import FleetEntry, GroupLayout, SimilarityIndex

LAYOUT = GroupLayout.consecutive(
    [("hardware", 8), ("curves", 16), ("distribution", 12), ("correlations", 6)]
)
ROLES = ("db", "web", "cache")


@dataclass(frozen=True)
class SyntheticFleet:
    """Ids, raw embeddings, true family and labels of each system, in the same order."""

    ids: list[str]
    embeddings: NDArray[np.float32]
    families: NDArray[np.int64]
    labels: list[dict[str, str]]

    def entries(self) -> list[FleetEntry]:
        return [
            FleetEntry(system_id, self.embeddings[i], self.labels[i])
            for i, system_id in enumerate(self.ids)
        ]

    def family_of(self, system_id: str) -> int:
        return int(self.families[self.ids.index(system_id)])


@dataclass(frozen=True)
class FamilyModel:
    """How a fleet's families are drawn; kept to draw new members later."""

    centres: NDArray[np.float64]
    units: NDArray[np.float64]
    offsets: NDArray[np.float64]
    noise: float

    def member(self, family: int, rng: np.random.Generator) -> NDArray[np.float32]:
        unit_free = self.centres[family] + self.noise * rng.standard_normal(self.centres.shape[1])
        member: NDArray[np.float32] = (unit_free * self.units + self.offsets).astype(np.float32)
        return member


def family_model(families: int, *, noise: float = 0.25, seed: int = 0) -> FamilyModel:
    rng = np.random.default_rng(seed)
    dimension = LAYOUT.dimension
    return FamilyModel(
        centres=rng.standard_normal((families, dimension)),
        units=10.0 ** rng.uniform(-2.0, 4.0, dimension),
        offsets=rng.uniform(-1e3, 1e3, dimension),
        noise=noise,
    )


def family_fleet(
    families: int = 8, members: int = 20, *, noise: float = 0.25, seed: int = 0
) -> tuple[SyntheticFleet, FamilyModel]:
    """`families * members` systems named `f{family}-{member}`, roles cycling db/web/cache."""
    model = family_model(families, noise=noise, seed=seed)
    rng = np.random.default_rng(seed + 1)
    ids: list[str] = []
    rows: list[NDArray[np.float32]] = []
    truth: list[int] = []
    labels: list[dict[str, str]] = []
    for family in range(families):
        for member in range(members):
            ids.append(f"f{family}-{member}")
            rows.append(model.member(family, rng))
            truth.append(family)
            labels.append({"role": ROLES[member % len(ROLES)], "family": str(family)})
    fleet = SyntheticFleet(ids, np.stack(rows), np.array(truth, dtype=np.int64), labels)
    return fleet, model


def random_fleet(size: int, dimension: int, *, seed: int = 0) -> NDArray[np.float32]:
    """Unstructured embeddings, for checks of exactness rather than of grouping."""
    return np.random.default_rng(seed).standard_normal((size, dimension)).astype(np.float32)


# Load grid of the curves group: 12 bands of half an octave from 50 requests/s.
_LOADS = 50.0 * 2.0 ** (np.arange(12) / 2.0)


def curves_group(knee_load: float) -> NDArray[np.float64]:
    """A latency-versus-load curve that rises past `knee_load`, as the curves group has it:
    the level in each load band, then slope, curvature, has-knee and knee position."""
    levels = np.log1p((_LOADS / knee_load) ** 3)
    log_loads = np.log(_LOADS)
    curvature, slope, _ = np.polyfit(log_loads, levels, 2)
    return np.concatenate((levels, [slope, curvature, 1.0, np.log2(knee_load / 50.0)]))


def tier_system(
    hardware: NDArray[np.float64],
    knee_load: float,
    workload: NDArray[np.float64],
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    """An embedding from hardware (8), a knee (curves, 16) and workload (distribution 12,
    correlations 6), with a little measurement noise on the behaviour groups."""
    curves = curves_group(knee_load) + 0.01 * rng.standard_normal(16)
    behaviour = workload + 0.01 * rng.standard_normal(18)
    return np.concatenate((hardware, curves, behaviour)).astype(np.float32)


def tier_fleet(size: int, *, seed: int = 0) -> tuple[list[str], NDArray[np.float32]]:
    """A fleet of systems of varied hardware, knee and workload, named `tier-{i}`."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(size):
        hardware = np.concatenate(
            (
                [2.0 ** rng.integers(1, 7), 2.0 ** rng.integers(32, 40), rng.uniform(1e2, 1e4)],
                np.eye(5)[rng.integers(0, 5)],
            )
        )
        knee = float(np.exp(rng.uniform(np.log(100.0), np.log(2_000.0))))
        workload = rng.standard_normal(18)
        rows.append(tier_system(hardware, knee, workload, rng))
    return [f"tier-{i}" for i in range(size)], np.stack(rows)


def precision_at_5(index: SimilarityIndex, ids: list[str], families: Sequence[object]) -> float:
    """Share of each system's 5 nearest that are of its family."""
    family = dict(zip(ids, families, strict=True))
    hits = [
        family[answer.second] == family[system_id]
        for system_id in ids
        for answer in index.nearest(system_id, 5)
    ]
    return float(np.mean(hits))
