"""The approximate index of large fleets: exact top k, label filters and refined fingerprints.

The switch-over size is lowered so that a fleet of a few thousand systems gets the
approximate index; an index that always scans exactly is the reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.common.settings import SettingsError
from cfgclone.similarity import SimilarityIndex, SimilaritySettings
from cfgclone.similarity.main import similarity_settings
from cfgclone.similarity.settings import ApproximateSettings

from .fleet import LAYOUT, FamilyModel, SyntheticFleet, family_fleet

FAMILIES = 300
MEMBERS = 11  # each system's 10 nearest are the other members of its family
APPROXIMATE = SimilaritySettings(approximate=ApproximateSettings(min_systems=500, probes=8))
EXACT = SimilaritySettings(approximate=ApproximateSettings(min_systems=10**9))

Indexes = tuple[SimilarityIndex, SimilarityIndex, SyntheticFleet, FamilyModel]


@pytest.fixture(scope="module")
def indexes() -> Indexes:
    fleet, model = family_fleet(families=FAMILIES, members=MEMBERS, noise=0.05)
    approximate = SimilarityIndex(LAYOUT, APPROXIMATE)
    approximate.rebuild(fleet.entries())
    exact = SimilarityIndex(LAYOUT, EXACT)
    exact.rebuild(fleet.entries())
    assert approximate.snapshot().approximate
    assert not exact.snapshot().approximate
    return approximate, exact, fleet, model


def _family(system_id: str) -> str:
    return system_id.split("-")[0]


def test_the_top_ten_are_the_known_neighbours_with_exact_scores(indexes: Indexes) -> None:
    approximate, exact, fleet, _ = indexes
    for system_id in fleet.ids[::7]:
        answers = approximate.nearest(system_id, 10)
        mates = {other for other in fleet.ids if _family(other) == _family(system_id)}
        assert {answer.second for answer in answers} == mates - {system_id}
        # Re-ranked exactly: the same scores, order and explanations as the exact scan.
        assert answers == exact.nearest(system_id, 10)


def test_a_new_embedding_finds_its_family(indexes: Indexes) -> None:
    approximate, exact, _, model = indexes
    newcomer = model.member(123, np.random.default_rng(5))
    answers = approximate.nearest_to_embedding(newcomer, 10)
    assert {_family(answer.second) for answer in answers} == {"f123"}
    assert answers == exact.nearest_to_embedding(newcomer, 10)


@pytest.mark.parametrize(
    "selector",
    [
        {"role": "db"},  # a third of the fleet: filtered inside the approximate index
        {"family": "42"},  # eleven systems: fewer than the switch-over size, scanned exactly
        {"family": "42", "role": "web"},
        {"role": "none-has-it"},
    ],
)
def test_label_filters_hold(indexes: Indexes, selector: dict[str, str]) -> None:
    approximate, exact, fleet, _ = indexes
    labels = dict(zip(fleet.ids, fleet.labels, strict=True))
    for system_id in [*fleet.ids[::37], "f42-0", "f42-5"]:
        answers = approximate.nearest(system_id, 10, labels=selector)
        assert all(
            labels[answer.second][key] == value
            for answer in answers
            for key, value in selector.items()
        )
        assert system_id not in {answer.second for answer in answers}
        # The known neighbours that pass the filter (the family's members carrying the
        # labels) come first, exactly as the exact scan ranks and scores them.
        known = [
            other
            for other in fleet.ids
            if _family(other) == _family(system_id)
            and other != system_id
            and all(labels[other].get(key) == value for key, value in selector.items())
        ]
        assert {answer.second for answer in answers[: len(known)]} == set(known)
        reference = exact.nearest(system_id, 10, labels=selector)
        assert answers[: len(known)] == reference[: len(known)]
        if "family" in selector or not known:  # fewer rows than the switch-over: exact
            assert answers == reference


def test_a_refined_fingerprint_moves_in_the_index() -> None:
    fleet, model = family_fleet(families=FAMILIES, members=MEMBERS, noise=0.05)
    index = SimilarityIndex(LAYOUT, APPROXIMATE)
    index.rebuild(fleet.entries())
    mover, rng = "f10-3", np.random.default_rng(11)
    assert {_family(answer.second) for answer in index.nearest(mover, 10)} == {"f10"}
    assert mover in {answer.second for answer in index.nearest("f10-4", 10)}

    index.upsert(mover, model.member(200, rng), {"role": "db", "family": "200"})

    snapshot = index.snapshot()
    assert snapshot.approximate
    assert {_family(answer.second) for answer in snapshot.nearest(mover, 10)} == {"f200"}
    assert mover in {answer.second for answer in snapshot.nearest("f200-0", 11)}
    assert mover not in {answer.second for answer in snapshot.nearest("f10-4", 10)}
    assert [a.second for a in snapshot.nearest("f200-0", 11, labels={"family": "200"})].count(
        mover
    ) == 1
    # Removed: gone from every answer, filtered or not.
    index.remove(mover)
    assert mover not in {answer.second for answer in index.nearest("f200-0", 20)}
    assert mover not in {
        answer.second for answer in index.nearest("f200-0", 20, labels={"role": "db"})
    }


def test_refinements_made_while_a_large_fleet_merges_are_kept() -> None:
    fleet, model = family_fleet(families=FAMILIES, members=MEMBERS, noise=0.05)
    index = SimilarityIndex(LAYOUT, APPROXIMATE)
    index.rebuild(fleet.entries())
    fitted = index.snapshot().space
    labels = dict(zip(fleet.ids, fleet.labels, strict=True))
    rng = np.random.default_rng(3)
    moved: dict[str, tuple[int, np.ndarray]] = {}
    # A change of 1% of the fleet (33 systems) starts a merge in the background; the
    # refinements after it land while it runs and must survive it.
    for n in range(80):
        system_id = fleet.ids[n * 13]
        family = (fleet.family_of(system_id) + 1 + n % 7) % FAMILIES
        embedding = model.member(family, rng)
        index.upsert(system_id, embedding, labels[system_id])
        moved[system_id] = (family, embedding)
        assert np.array_equal(index.snapshot().embedding(system_id), embedding)  # at once
    index.remove(fleet.ids[1])

    assert index.wait_for_merge(timeout=120)
    snapshot = index.snapshot()
    assert snapshot.space is not fitted  # merged: the fleet's statistics were refitted
    assert snapshot.approximate
    assert len(snapshot) == len(fleet.ids) - 1
    assert fleet.ids[1] not in snapshot

    def family_now(system_id: str) -> int:
        return moved[system_id][0] if system_id in moved else fleet.family_of(system_id)

    for system_id, (family, embedding) in moved.items():
        assert np.array_equal(snapshot.embedding(system_id), embedding)
        nearest = snapshot.nearest(system_id, 3)
        assert {family_now(answer.second) for answer in nearest} == {family}


def test_the_switch_over_is_a_setting_of_the_service() -> None:
    settings, _ = similarity_settings(
        {"APPROXIMATE_MIN_SYSTEMS": "5000", "APPROXIMATE_PROBES": "64"}
    )
    assert (settings.approximate.min_systems, settings.approximate.probes) == (5000, 64)
    assert similarity_settings({})[0].approximate == ApproximateSettings()
    for options in ({"APPROXIMATE_PROBES": "0"}, {"APPROXIMATE_MIN_SYSTEMS": "many"}):
        with pytest.raises(SettingsError, match="APPROXIMATE_"):
            similarity_settings(options)
