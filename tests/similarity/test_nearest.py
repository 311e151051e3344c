"""Nearest systems: right neighbours, exact top k, label filters and bad queries."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.neighbors import NearestNeighbors

from cfgclone.similarity import (
    GroupLayout,
    InvalidQuery,
    SimilarityIndex,
    SimilaritySettings,
    UnknownSystem,
)
from cfgclone.similarity.settings import ApproximateSettings

from .fleet import LAYOUT, family_fleet, precision_at_5, random_fleet

Families = tuple[SimilarityIndex, list[str], NDArray[np.int64]]


@pytest.fixture(scope="module")
def families() -> Families:
    fleet, _ = family_fleet(families=8, members=20)
    index = SimilarityIndex(LAYOUT)
    index.rebuild(fleet.entries())
    return index, fleet.ids, fleet.families


def test_top_five_come_from_the_systems_own_family(families: Families) -> None:
    index, ids, truth = families
    assert all(len(index.nearest(system_id, 5)) == 5 for system_id in ids)
    assert precision_at_5(index, ids, list(truth)) >= 0.9


def test_answers_are_ordered_scored_and_decided(families: Families) -> None:
    index, ids, _ = families
    answers = index.nearest(ids[0], 25)
    scores = [answer.score for answer in answers]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert ids[0] not in {answer.second for answer in answers}
    assert {answer.first for answer in answers} == {ids[0]}
    # The family's own members clone, other families adapt.
    assert answers[0].decision == "clone"
    assert answers[-1].decision == "adapt"
    for answer in answers:
        expected = "clone" if answer.score >= answer.threshold else "adapt"
        assert answer.decision == expected


def test_top_k_matches_brute_force_cosine_neighbours_from_sklearn(families: Families) -> None:
    index, ids, _ = families
    snapshot = index.snapshot()
    embeddings = np.stack([snapshot.embedding(system_id) for system_id in ids])
    prepared = snapshot.space.prepare(embeddings)
    k = 10
    model = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(prepared)
    distances, neighbours = model.kneighbors(prepared)
    for row, system_id in enumerate(ids):
        expected = [(ids[j], d) for j, d in zip(neighbours[row], distances[row], strict=True)]
        expected = [(other, d) for other, d in expected if other != system_id][:k]
        answers = index.nearest(system_id, k)
        assert {answer.second for answer in answers} == {other for other, _ in expected}
        # Rows are of unit length: cosine distance d is a dot product of 1 - d, which the
        # space turns into the score.
        np.testing.assert_allclose(
            [answer.score for answer in answers],
            [snapshot.space.score(1.0 - d) for _, d in expected],
            atol=1e-5,
        )


def test_top_k_is_exact_on_a_fleet_large_enough_to_be_presampled() -> None:
    layout = GroupLayout.consecutive([("hardware", 6), ("curves", 10)])
    embeddings = random_fleet(20_000, layout.dimension, seed=3)
    ids = [f"s{i}" for i in range(len(embeddings))]
    # The exact scan, even where the approximate index would take over.
    settings = SimilaritySettings(
        group_weights={"hardware": 1.0}, approximate=ApproximateSettings(min_systems=10**9)
    )
    index = SimilarityIndex(layout, settings)
    index.rebuild_from_matrix(ids, embeddings)
    assert not index.snapshot().approximate
    prepared = index.snapshot().space.prepare(embeddings)
    model = NearestNeighbors(n_neighbors=20, metric="cosine", algorithm="brute").fit(prepared)
    queries = np.random.default_rng(4).standard_normal((15, layout.dimension))
    _, neighbours = model.kneighbors(index.snapshot().space.prepare(queries))
    for query, expected in zip(queries, neighbours, strict=True):
        answers = index.nearest_to_embedding(query, 20)
        assert [answer.second for answer in answers] == [ids[j] for j in expected]
        assert {answer.first for answer in answers} == {"query"}


def test_label_filter_returns_only_matching_systems_best_first(families: Families) -> None:
    index, ids, _ = families
    snapshot = index.snapshot()
    query = ids[0]
    answers = index.nearest(query, 15, labels={"role": "db"})
    assert len(answers) == 15
    assert all(snapshot.labels(answer.second)["role"] == "db" for answer in answers)
    everyone = index.nearest(query, len(ids) - 1)
    best_dbs = [a.second for a in everyone if snapshot.labels(a.second)["role"] == "db"][:15]
    assert [answer.second for answer in answers] == best_dbs


def test_label_filter_with_several_pairs_requires_all_of_them(families: Families) -> None:
    index, ids, _ = families
    snapshot = index.snapshot()
    answers = index.nearest(ids[0], 50, labels={"role": "web", "family": "3"})
    expected = {s for s in ids if snapshot.labels(s) == {"role": "web", "family": "3"}}
    assert {answer.second for answer in answers} == expected
    assert index.nearest(ids[0], 5, labels={"role": "mainframe"}) == []
    assert index.nearest(ids[0], 5, labels={"rack": "a1"}) == []


def test_label_filter_gives_the_same_answer_without_precomputed_masks(families: Families) -> None:
    index, ids, _ = families
    fleet, _ = family_fleet(families=8, members=20)
    unmasked = SimilarityIndex(LAYOUT, SimilaritySettings(label_mask_max_values=0))
    unmasked.rebuild(fleet.entries())
    selector = {"role": "cache", "family": "5"}
    assert [a.second for a in unmasked.nearest(ids[7], 10, labels=selector)] == [
        a.second for a in index.nearest(ids[7], 10, labels=selector)
    ]


def test_k_above_the_fleet_returns_every_other_system(families: Families) -> None:
    index, ids, _ = families
    assert len(index.nearest(ids[0], 1000)) == len(ids) - 1
    assert len(index.nearest_to_embedding(index.snapshot().embedding(ids[0]), 1000)) == len(ids)


@pytest.mark.parametrize("k", [0, -1, 1001, True, 2.5, "3", None])
def test_k_outside_one_to_the_limit_is_an_invalid_query(families: Families, k: object) -> None:
    index, ids, _ = families
    with pytest.raises(InvalidQuery, match="k must"):
        index.nearest(ids[0], k)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery, match="k must"):
        index.nearest_to_embedding(index.snapshot().embedding(ids[0]), k)  # type: ignore[arg-type]


def test_the_k_limit_is_a_setting() -> None:
    fleet, _ = family_fleet(families=2, members=5)
    index = SimilarityIndex(LAYOUT, SimilaritySettings(max_k=3))
    index.rebuild(fleet.entries())
    assert len(index.nearest(fleet.ids[0], 3)) == 3
    with pytest.raises(InvalidQuery, match="from 1 to 3"):
        index.nearest(fleet.ids[0], 4)


def test_empty_fleet_gives_empty_answers_not_errors() -> None:
    index = SimilarityIndex(LAYOUT)
    assert len(index) == 0
    assert index.nearest("web-01", 5) == []
    assert index.nearest_to_embedding(np.zeros(LAYOUT.dimension), 5) == []
    assert index.nearest_to_embedding(np.zeros(LAYOUT.dimension), 5, labels={"role": "db"}) == []
    assert len(index.cohorts()) == 0
    with pytest.raises(InvalidQuery):
        index.nearest("web-01", 0)


def test_unknown_system_is_named_in_the_error(families: Families) -> None:
    index, ids, _ = families
    with pytest.raises(UnknownSystem, match="web-99") as raised:
        index.nearest("web-99", 5)
    assert raised.value.system_id == "web-99"
    with pytest.raises(UnknownSystem, match="web-99"):
        index.compare(ids[0], "web-99")


@pytest.mark.parametrize(
    "embedding",
    [
        np.zeros(LAYOUT.dimension - 1),
        np.full(LAYOUT.dimension, np.nan),
        np.full(LAYOUT.dimension, 1e40),
        "abc",
    ],
)
def test_a_malformed_query_embedding_is_an_invalid_query(
    families: Families, embedding: object
) -> None:
    index, _, _ = families
    with pytest.raises(InvalidQuery, match="embedding"):
        index.nearest_to_embedding(embedding, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("selector", [{"role": 1}, {2: "db"}])
def test_a_selector_that_is_not_strings_is_an_invalid_query(
    families: Families, selector: object
) -> None:
    index, ids, _ = families
    with pytest.raises(InvalidQuery, match="label selector"):
        index.nearest(ids[0], 5, labels=selector)  # type: ignore[arg-type]
