"""Explained similarity of two systems: a score, its split by group, and a decision."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .distribution import DistributionComparison
from .errors import InvalidQuery

__all__ = [
    "CloneDecision",
    "GroupSimilarity",
    "Similarity",
    "check_threshold",
    "explain_pair",
    "explain_rows",
]


class CloneDecision(StrEnum):
    """Which side of the clone-versus-adapt threshold a pair falls on."""

    CLONE = "clone"
    """Alike enough to copy the configuration as is."""
    ADAPT = "adapt"
    """Too different: the configuration must be adapted to the target."""

    @classmethod
    def for_score(cls, score: float, threshold: float) -> CloneDecision:
        """CLONE if `score >= threshold`, else ADAPT."""
        return cls.CLONE if score >= threshold else cls.ADAPT


@dataclass(frozen=True, slots=True)
class GroupSimilarity:
    """How alike one embedding group is, and how much of the overall score it makes."""

    group: str
    """Group name."""
    similarity: float
    """Cosine of the group mapped to [0, 1]: 1 same direction, 0.5 unrelated, 0 opposite."""
    weight: float
    """Share of the group in the overall score; the shares sum to 1."""
    contribution: float
    """`weight * similarity`: the points of the overall score this group makes; the
    contributions sum to the score."""
    share: float
    """`contribution / score`: the fraction of the overall score this group makes; the
    shares sum to 1. This is the proto's `GroupSimilarity.contribution`."""


@dataclass(frozen=True, slots=True)
class Similarity:
    """The answer about a pair: score in [0, 1], per-group split, decision and why."""

    first: str
    """The system asked about (or `query` for a raw embedding)."""
    second: str
    """The system compared with it."""
    score: float
    """Overall similarity in [0, 1]: the weighted mean of the group similarities."""
    groups: tuple[GroupSimilarity, ...]
    """Per-group similarities in layout order."""
    decision: CloneDecision
    """CLONE when `score >= threshold`, else ADAPT."""
    threshold: float
    """The clone-versus-adapt threshold used."""
    explanation: str
    """Why, in words: the score, the decision, the most and least alike groups."""
    distribution: DistributionComparison | None = None
    """KPI distribution comparison at shared loads, when the fingerprints were at hand."""

    @property
    def most_alike(self) -> GroupSimilarity:
        """The group the two systems agree on most."""
        return max(self.groups, key=lambda group: group.similarity)

    @property
    def least_alike(self) -> GroupSimilarity:
        """The group the two systems differ on most."""
        return min(self.groups, key=lambda group: group.similarity)

    @property
    def distribution_distance(self) -> float | None:
        """Distance of the KPI distributions in [0, 1], or None when not compared or
        when the two systems share no load regime."""
        return None if self.distribution is None else self.distribution.distance

    def group(self, name: str) -> GroupSimilarity:
        """The similarity of one named group."""
        for group in self.groups:
            if group.group == name:
                return group
        raise KeyError(name)

    def with_distribution(self, comparison: DistributionComparison) -> Similarity:
        """This answer with the KPI distribution comparison added to it and its explanation.

        The index holds embeddings only; a caller that has the two fingerprints runs
        `compare_distributions` and attaches the result here.
        """
        return dataclasses.replace(
            self,
            distribution=comparison,
            explanation=f"{self.explanation} {comparison.explanation}",
        )


def check_threshold(threshold: object) -> float:
    """Validates a clone-versus-adapt threshold given with a query."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise InvalidQuery(f"threshold must be a number in [0, 1], not {threshold!r}")
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        raise InvalidQuery(f"threshold must lie in [0, 1], not {threshold}")
    return value


def explain_pair(
    first: str,
    second: str,
    group_names: Sequence[str],
    weights: NDArray[np.float64],
    cosines: NDArray[np.floating[Any]],
    threshold: float,
) -> Similarity:
    """Builds the answer for one pair from its per-group cosines (layout order)."""
    cosines = np.asarray(cosines, dtype=np.float64)[None, :]
    return explain_rows(first, [second], group_names, weights, cosines, threshold)[0]


def explain_rows(
    first: str,
    seconds: Sequence[str],
    group_names: Sequence[str],
    weights: NDArray[np.float64],
    cosines: NDArray[np.floating[Any]],
    threshold: float,
) -> list[Similarity]:
    """Answers for `first` against each of `seconds`, from their per-group cosines (m, G).

    The arithmetic runs on the whole batch at once; only the objects and the words are
    made per answer (a nearest-systems query explains ten of them per call).
    """
    similarities = (1.0 + np.asarray(cosines, dtype=np.float64)) / 2.0
    contributions = weights * similarities
    totals = contributions.sum(axis=1)
    positive = totals > 0
    shares = np.where(
        positive[:, None], contributions / np.where(positive, totals, 1.0)[:, None], weights
    )
    scores = np.clip(totals, 0.0, 1.0).tolist()
    answers: list[Similarity] = []
    for second, score, row, parts, split in zip(
        seconds,
        scores,
        similarities.tolist(),
        contributions.tolist(),
        shares.tolist(),
        strict=True,
    ):
        groups = tuple(
            GroupSimilarity(name, similarity, weight, contribution, share)
            for name, similarity, weight, contribution, share in zip(
                group_names, row, weights.tolist(), parts, split, strict=True
            )
        )
        decision = CloneDecision.for_score(score, threshold)
        answers.append(
            Similarity(
                first=first,
                second=second,
                score=score,
                groups=groups,
                decision=decision,
                threshold=threshold,
                explanation=_explanation(first, second, score, groups, decision, threshold),
            )
        )
    return answers


def _explanation(
    first: str,
    second: str,
    score: float,
    groups: tuple[GroupSimilarity, ...],
    decision: CloneDecision,
    threshold: float,
) -> str:
    side = "at or above" if decision is CloneDecision.CLONE else "below"
    action = "clone as is" if decision is CloneDecision.CLONE else "adapt"
    text = (
        f"{first} and {second} are {score:.2f} alike, {side} the clone threshold "
        f"{threshold:.2f}, so {action}."
    )
    ranked = sorted(groups, key=lambda group: (-group.similarity, group.group))
    if len(ranked) > 1:
        most, least = ranked[0], ranked[-1]
        text += (
            f" Most alike: {most.group} {most.similarity:.2f} alike;"
            f" least alike: {least.group} {least.similarity:.2f} alike."
        )
    listed = ", ".join(f"{group.group} {group.similarity:.2f} alike" for group in groups)
    return f"{text} By group: {listed}."
