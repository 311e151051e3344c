"""Cohorts: clusters of the fleet that match its families, and where newcomers go."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from cfgclone.similarity import (
    CohortSettings,
    GroupLayout,
    InvalidQuery,
    SimilarityIndex,
    SimilaritySettings,
    UnknownCohort,
    UnknownSystem,
)

from .fleet import LAYOUT, FamilyModel, SyntheticFleet, family_fleet

Clustered = tuple[SimilarityIndex, SyntheticFleet, FamilyModel]


@pytest.fixture(scope="module")
def clustered() -> Clustered:
    fleet, model = family_fleet(families=7, members=20, seed=2)
    index = SimilarityIndex(LAYOUT)
    index.rebuild(fleet.entries())
    return index, fleet, model


def test_cohorts_match_the_families(clustered: Clustered) -> None:
    index, fleet, _ = clustered
    cohorts = index.cohorts()
    found = {system_id: c.cohort_id for c in cohorts for system_id in c.members}
    assert sorted(found) == sorted(fleet.ids)  # everyone, once
    predicted = [found[system_id] for system_id in fleet.ids]
    assert adjusted_rand_score(fleet.families, predicted) >= 0.8
    assert len(cohorts) == 7
    assert cohorts.silhouette is not None
    assert cohorts.silhouette > 0.5


def test_a_cohort_reports_its_centre_and_spread(clustered: Clustered) -> None:
    index, fleet, _ = clustered
    cohort = index.cohort_of("f3-0").cohort
    members = [fleet.ids.index(m) for m in cohort.members]
    assert len(cohort.centre) == LAYOUT.dimension
    np.testing.assert_allclose(
        cohort.centre, fleet.embeddings[members].mean(axis=0, dtype=np.float64), rtol=1e-5
    )
    assert 0.0 < cohort.spread < 0.05
    sizes = [len(c.members) for c in index.cohorts()]
    assert sizes == sorted(sizes, reverse=True)
    assert index.cohorts().get(cohort.cohort_id) == cohort
    with pytest.raises(UnknownCohort, match="99"):
        index.cohorts().get("99")


def test_a_new_system_joins_its_familys_cohort(clustered: Clustered) -> None:
    index, fleet, model = clustered
    rng = np.random.default_rng(21)
    for family in range(7):
        assignment = index.assign_cohort(model.member(family, rng))
        members = assignment.cohort.members
        assert all(fleet.family_of(m) == family for m in members)
        assert assignment.similarity > 0.9
    with pytest.raises(InvalidQuery):
        index.assign_cohort(np.zeros(3))


def test_cohorts_are_computed_once_per_snapshot_and_follow_changes(clustered: Clustered) -> None:
    _, fleet, model = clustered
    index = SimilarityIndex(LAYOUT)
    index.rebuild(fleet.entries())
    first = index.cohorts()
    assert index.cohorts() is first
    index.upsert("newcomer", model.member(2, np.random.default_rng(3)))
    joined = index.cohort_of("newcomer")
    assert (
        joined.cohort.members
        == index.assign_cohort(index.snapshot().embedding("newcomer")).cohort.members
    )
    assert {fleet.family_of(m) for m in joined.cohort.members if m != "newcomer"} == {2}
    with pytest.raises(UnknownSystem):
        index.cohort_of("nobody")


def test_a_fleet_without_structure_is_one_cohort() -> None:
    layout = GroupLayout.consecutive([("hardware", 3), ("curves", 3)])
    settings = SimilaritySettings(group_weights={"hardware": 1.0, "curves": 1.0})
    same = SimilarityIndex(layout, settings)
    same.rebuild([(f"s{i}", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], {}) for i in range(30)])
    assert [len(c.members) for c in same.cohorts()] == [30]
    lonely = SimilarityIndex(layout, settings)
    lonely.upsert("only", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert [c.members for c in lonely.cohorts()] == [("only",)]


def test_large_fleets_are_clustered_on_samples(clustered: Clustered) -> None:
    _, _, model = clustered
    rng = np.random.default_rng(8)
    families = np.repeat(np.arange(7), 300)
    embeddings = np.stack([model.member(int(f), rng) for f in families])
    settings = SimilaritySettings(
        cohorts=CohortSettings(selection_sample=300, fit_sample=600, max_clusters=10)
    )
    index = SimilarityIndex(LAYOUT, settings)
    index.rebuild_from_matrix([f"s{i}" for i in range(len(families))], embeddings)
    found = {s: c.cohort_id for c in index.cohorts() for s in c.members}
    predicted = [found[f"s{i}"] for i in range(len(families))]
    assert adjusted_rand_score(families, predicted) >= 0.8
