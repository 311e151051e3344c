"""Pair scores: the groups explain the score, and the threshold decides clone or adapt."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from cfgclone.similarity import (
    CloneDecision,
    InvalidQuery,
    SimilarityIndex,
    SimilaritySettings,
)

from .fleet import LAYOUT, family_fleet, tier_fleet, tier_system


@pytest.fixture(scope="module")
def tier() -> SimilarityIndex:
    """A varied fleet plus `fast-knee` and `slow-knee`: identical hardware and workload,
    but the first's latency knee sits at half the load of the second's; `slow-twin` is
    the second measured again with its knee 5% later."""
    ids, embeddings = tier_fleet(200)
    rng = np.random.default_rng(5)
    hardware = np.concatenate(([16.0, 2.0**36, 3_000.0], np.eye(5)[2]))
    workload = rng.standard_normal(18)
    extra: list[tuple[str, NDArray[np.float32], dict[str, str]]] = [
        ("slow-knee", tier_system(hardware, 800.0, workload, rng), {}),
        ("fast-knee", tier_system(hardware, 400.0, workload, rng), {}),
        ("slow-twin", tier_system(hardware, 840.0, workload, rng), {}),
    ]
    # Weights that let the curves decide: the default ones let hardware and workload
    # decide, under which a knee the configuration may have moved only breaks ties.
    settings = SimilaritySettings(
        group_weights={"hardware": 1.0, "curves": 2.0, "distribution": 1.0, "correlations": 0.5}
    )
    index = SimilarityIndex(LAYOUT, settings)
    index.rebuild([*zip(ids, embeddings, [{}] * len(ids), strict=True), *extra])
    return index


def test_a_knee_at_half_the_load_is_told_apart_by_the_curves_group(tier: SimilarityIndex) -> None:
    answer = tier.compare("slow-knee", "fast-knee")
    assert answer.group("hardware").similarity > 0.99
    assert answer.least_alike.group == "curves"
    assert answer.group("curves").similarity < 0.75
    assert answer.decision is CloneDecision.ADAPT
    curves = answer.group("curves").similarity
    assert f"least alike: curves {curves:.2f} alike" in answer.explanation
    assert "hardware 1.00 alike" in answer.explanation
    assert "adapt" in answer.explanation


def test_the_same_knee_measured_twice_is_a_clone(tier: SimilarityIndex) -> None:
    twin = tier.compare("slow-knee", "slow-twin")
    different = tier.compare("slow-knee", "fast-knee")
    assert twin.group("curves").similarity > 0.9
    assert twin.score > different.score
    assert twin.decision is CloneDecision.CLONE
    assert "at or above the clone threshold 0.90" in twin.explanation


def test_group_contributions_add_up_to_the_score_of_the_prepared_rows(
    tier: SimilarityIndex,
) -> None:
    snapshot = tier.snapshot()
    answer = snapshot.compare("tier-3", "tier-17")
    assert math.isclose(sum(g.contribution for g in answer.groups), answer.score, abs_tol=1e-12)
    assert math.isclose(sum(g.weight for g in answer.groups), 1.0)
    rows = snapshot.space.prepare(
        np.stack([snapshot.embedding("tier-3"), snapshot.embedding("tier-17")])
    )
    assert math.isclose(snapshot.space.score(float(rows[0] @ rows[1])), answer.score, abs_tol=1e-5)
    assert math.isclose(float(rows[0] @ rows[0]), 1.0, abs_tol=1e-5)
    for group in answer.groups:
        assert math.isclose(group.contribution, group.weight * group.similarity)
        assert math.isclose(group.share, group.contribution / answer.score)
    assert math.isclose(sum(g.share for g in answer.groups), 1.0)
    assert [g.group for g in answer.groups] == list(LAYOUT.names)


def test_a_system_compared_with_itself_scores_one(tier: SimilarityIndex) -> None:
    answer = tier.compare("tier-5", "tier-5")
    assert answer.score == pytest.approx(1.0)
    assert all(group.similarity == pytest.approx(1.0) for group in answer.groups)


def test_the_threshold_decides_either_side_of_a_score(tier: SimilarityIndex) -> None:
    score = tier.compare("tier-1", "tier-2").score
    assert tier.compare("tier-1", "tier-2", threshold=score).decision is CloneDecision.CLONE
    above = min(1.0, score + 1e-9)
    assert tier.compare("tier-1", "tier-2", threshold=above).decision is CloneDecision.ADAPT
    answer = tier.compare("tier-1", "tier-2", threshold=0.25)
    assert answer.threshold == 0.25
    assert "clone threshold 0.25" in answer.explanation
    neighbours = tier.nearest("tier-1", 3, threshold=0.0)
    assert {a.decision for a in neighbours} == {CloneDecision.CLONE}


@pytest.mark.parametrize("threshold", [-0.1, 1.5, math.nan, "0.5", True])
def test_a_threshold_outside_zero_to_one_is_an_invalid_query(
    tier: SimilarityIndex, threshold: object
) -> None:
    with pytest.raises(InvalidQuery, match="threshold"):
        tier.compare("tier-1", "tier-2", threshold=threshold)  # type: ignore[arg-type]


def test_the_default_threshold_is_a_setting() -> None:
    fleet, _ = family_fleet(families=2, members=5)
    lenient = SimilarityIndex(LAYOUT, SimilaritySettings(clone_threshold=0.0))
    lenient.rebuild(fleet.entries())
    strict = SimilarityIndex(LAYOUT, SimilaritySettings(clone_threshold=1.0))
    strict.rebuild(fleet.entries())
    assert lenient.compare("f0-0", "f1-0").decision is CloneDecision.CLONE
    assert strict.compare("f0-0", "f0-1").decision is CloneDecision.ADAPT


def test_weights_move_the_score_towards_the_heavier_group(tier: SimilarityIndex) -> None:
    fleet_ids, embeddings = tier_fleet(200)
    entries: list[tuple[str, NDArray[np.float32], dict[str, str]]] = list(
        zip(fleet_ids, embeddings, [{}] * 200, strict=True)
    )
    snapshot = tier.snapshot()
    entries += [(s, snapshot.embedding(s), {}) for s in ("slow-knee", "fast-knee")]
    curves_only = SimilarityIndex(
        LAYOUT,
        SimilaritySettings(
            group_weights={"hardware": 0.0, "curves": 1.0, "distribution": 0.0, "correlations": 0.0}
        ),
    )
    curves_only.rebuild(entries)
    answer = curves_only.compare("slow-knee", "fast-knee")
    assert answer.score == pytest.approx(answer.group("curves").similarity)
    # A group of weight 0 is still reported, contributing nothing.
    assert answer.group("hardware").similarity > 0.99
    assert answer.group("hardware").contribution == 0.0


def test_weights_must_name_groups_of_the_layout() -> None:
    with pytest.raises(ValueError, match="network"):
        SimilarityIndex(LAYOUT, SimilaritySettings(group_weights={"network": 1.0}))
    with pytest.raises(ValueError, match="finite and >= 0"):
        SimilaritySettings(group_weights={"curves": -1.0})
