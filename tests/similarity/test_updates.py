"""Upserts and removals: the index follows the fleet and never shows half a write."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from cfgclone.similarity import (
    FleetEntry,
    InvalidEmbedding,
    SimilarityIndex,
    SimilaritySettings,
    UnknownSystem,
)

from .fleet import LAYOUT, FamilyModel, SyntheticFleet, family_fleet


def _families_index(
    settings: SimilaritySettings | None = None,
) -> tuple[SimilarityIndex, SyntheticFleet, FamilyModel]:
    fleet, model = family_fleet(families=6, members=20)
    index = SimilarityIndex(LAYOUT, settings)
    index.rebuild(fleet.entries())
    return index, fleet, model


def test_an_upserted_system_is_found_near_its_family() -> None:
    index, _, model = _families_index()
    newcomer = model.member(4, np.random.default_rng(9))
    index.upsert("newcomer", newcomer, {"role": "db"})
    assert "newcomer" in index
    neighbours = index.nearest("newcomer", 5)
    assert {answer.second.split("-")[0] for answer in neighbours} == {"f4"}
    assert index.snapshot().labels("newcomer") == {"role": "db"}


def test_an_upsert_replaces_the_embedding_and_labels_of_a_known_system() -> None:
    index, fleet, model = _families_index()
    moved = fleet.ids[0]  # of family 0
    index.upsert(moved, model.member(3, np.random.default_rng(2)), {"role": "web"})
    assert len(index) == len(fleet.ids)
    assert {answer.second.split("-")[0] for answer in index.nearest(moved, 5)} == {"f3"}
    assert index.snapshot().labels(moved) == {"role": "web"}
    assert moved not in {a.second for a in index.nearest(fleet.ids[1], 19)}


def test_a_removed_system_is_gone_and_removing_it_again_says_so() -> None:
    index, fleet, _ = _families_index()
    gone = fleet.ids[1]
    assert index.remove(gone) is True
    assert gone not in index
    assert gone not in {answer.second for answer in index.nearest(fleet.ids[0], 119)}
    with pytest.raises(UnknownSystem):
        index.nearest(gone, 5)
    assert index.remove(gone) is False
    assert len(index) == len(fleet.ids) - 1


def test_a_snapshot_keeps_answering_for_the_fleet_it_was_taken_from() -> None:
    index, fleet, model = _families_index()
    before = index.snapshot()
    index.remove(fleet.ids[1])
    index.upsert("newcomer", model.member(0, np.random.default_rng(1)))
    old = {answer.second for answer in before.nearest(fleet.ids[0], 119)}
    new = {answer.second for answer in index.nearest(fleet.ids[0], 119)}
    assert fleet.ids[1] in old
    assert "newcomer" not in old
    assert fleet.ids[1] not in new
    assert "newcomer" in new
    assert index.snapshot().generation == before.generation + 2


def test_small_changes_go_to_the_side_segment_and_stay_exact() -> None:
    index, fleet, model = _families_index(SimilaritySettings(delta_fraction=0.2))
    space = index.snapshot().space
    rng = np.random.default_rng(5)
    index.update(
        upserts=[(f"new-{i}", model.member(i % 6, rng), {"role": "db"}) for i in range(6)],
        removals=[fleet.ids[2], fleet.ids[40]],
    )
    snapshot = index.snapshot()
    # Within the side segment the fleet statistics are not refitted...
    assert snapshot.space is space
    # ...and every system, old or new, is still ranked exactly.
    live = list(snapshot.system_ids())
    assert len(live) == len(fleet.ids) + 6 - 2
    prepared = space.prepare(np.stack([snapshot.embedding(s) for s in live]))
    model_nn = NearestNeighbors(n_neighbors=11, metric="cosine", algorithm="brute").fit(prepared)
    for query in ("new-0", fleet.ids[3], fleet.ids[41]):
        _, found = model_nn.kneighbors(prepared[live.index(query)][None, :])
        expected = {live[j] for j in found[0] if live[j] != query}
        assert {answer.second for answer in index.nearest(query, 10)} == expected
    dbs = index.nearest(fleet.ids[0], 200, labels={"role": "db"})
    assert {f"new-{i}" for i in range(6)} <= {answer.second for answer in dbs}
    assert all(snapshot.labels(answer.second)["role"] == "db" for answer in dbs)


def test_many_changes_rebuild_the_index_and_refit_the_fleet_statistics() -> None:
    index, fleet, model = _families_index(SimilaritySettings(delta_fraction=0.05))
    space = index.snapshot().space
    rng = np.random.default_rng(6)
    for i in range(7):  # the seventh new system passes 5% of 120
        index.upsert(f"new-{i}", model.member(5, rng))
        refitted = index.snapshot().space is not space
        assert refitted == (i == 6)
    assert len(index) == len(fleet.ids) + 7
    assert {answer.second.split("-")[0] for answer in index.nearest("new-0", 5)} <= {"f5", "new"}


def test_a_batch_with_a_bad_embedding_changes_nothing() -> None:
    index, _fleet, model = _families_index()
    before = index.snapshot()
    good = FleetEntry("fine", model.member(0, np.random.default_rng(0)), {})
    with pytest.raises(InvalidEmbedding, match="bad"):
        index.update(upserts=[good, FleetEntry("bad", np.full(LAYOUT.dimension, np.inf), {})])
    assert index.snapshot() is before
    with pytest.raises(InvalidEmbedding, match="shape"):
        index.upsert("short", [1.0, 2.0])
    with pytest.raises(InvalidEmbedding, match="system id"):
        index.upsert("", model.member(0, np.random.default_rng(0)))


def test_rebuild_from_a_matrix_equals_rebuild_from_entries() -> None:
    fleet, _ = family_fleet(families=3, members=10)
    by_entries = SimilarityIndex(LAYOUT)
    by_entries.rebuild(fleet.entries())
    by_matrix = SimilarityIndex(LAYOUT)
    by_matrix.rebuild_from_matrix(fleet.ids, fleet.embeddings, fleet.labels)
    for system_id in fleet.ids[:5]:
        assert by_matrix.nearest(system_id, 5, labels={"role": "db"}) == by_entries.nearest(
            system_id, 5, labels={"role": "db"}
        )
    with pytest.raises(InvalidEmbedding, match="shape"):
        by_matrix.rebuild_from_matrix(fleet.ids, fleet.embeddings[:, :-1])


def test_queries_during_writes_see_a_batch_entirely_or_not_at_all() -> None:
    """A writer adds and removes ten family-0 systems as one batch while readers query.

    Family 0 has 19 other members; with k=30 the movers rank right after them, so a
    query sees all ten movers or none. Other upserts of unrelated systems make the
    index alternate between side-segment writes and full rebuilds meanwhile.
    """
    index, fleet, model = _families_index(SimilaritySettings(delta_fraction=0.1))
    rng = np.random.default_rng(11)
    movers = [FleetEntry(f"mover-{i}", model.member(0, rng), {}) for i in range(10)]
    mover_ids = {entry.system_id for entry in movers}
    anchor = fleet.ids[0]
    stop = threading.Event()
    failures: list[BaseException] = []
    seen: list[int] = []

    def write() -> None:
        writer_rng = np.random.default_rng(12)
        rounds = 0
        try:
            while not stop.is_set():
                other = fleet.ids[20 + rounds % 100]
                moved = FleetEntry(other, model.member(fleet.family_of(other), writer_rng), {})
                if rounds % 2 == 0:
                    index.update(upserts=[*movers, moved])
                else:
                    index.update(upserts=[moved], removals=mover_ids)
                rounds += 1
                time.sleep(0.002)
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    def read() -> None:
        try:
            while not stop.is_set():
                answers = index.nearest(anchor, 30)
                names = [answer.second for answer in answers]
                assert len(names) == len(set(names)) == 30
                scores = [answer.score for answer in answers]
                assert scores == sorted(scores, reverse=True)
                count = len(mover_ids.intersection(names))
                assert count in (0, 10), f"saw {count} of 10 movers"
                seen.append(count)
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    writer = threading.Thread(target=write)
    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in (writer, *readers):
        thread.start()
    time.sleep(1.5)
    stop.set()
    for thread in (writer, *readers):
        thread.join()
    if failures:
        raise failures[0]
    assert len(seen) > 20
    assert 0 in seen
    assert 10 in seen
