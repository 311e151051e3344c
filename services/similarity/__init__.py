"""cfgclone similarity: which systems behave alike, and why.

A pure engine, free of gRPC and databases: fingerprint embeddings are standardised
over the fleet, their named groups weighted and compared by cosine similarity, so
every answer carries a score in [0, 1], each group's share of it and a clone or
adapt decision. `SimilarityIndex` finds the nearest systems and the cohorts of the
fleet and takes updates without blocking queries; `compare_distributions` compares
two fingerprints' KPI distributions at the loads both have seen.
"""

from __future__ import annotations

from .cohorts import Cohort, CohortAssignment, Cohorts
from .distribution import DistributionComparison, RegimeDistance, compare_distributions
from .errors import (
    InvalidEmbedding,
    InvalidFingerprint,
    InvalidQuery,
    SimilarityError,
    UnknownCohort,
    UnknownSystem,
)
from .index import FleetEntry, FleetSnapshot, SimilarityIndex
from .labels import Labels, parse_label_selector
from .layout import GroupLayout, GroupSpan
from .scores import CloneDecision, GroupSimilarity, Similarity
from .settings import (
    DEFAULT_GROUP_WEIGHTS,
    DEFAULT_VALUE_GROUPS,
    ApproximateSettings,
    CohortSettings,
    SimilaritySettings,
)
from .space import EmbeddingSpace

__all__ = [
    "DEFAULT_GROUP_WEIGHTS",
    "DEFAULT_VALUE_GROUPS",
    "ApproximateSettings",
    "CloneDecision",
    "Cohort",
    "CohortAssignment",
    "CohortSettings",
    "Cohorts",
    "DistributionComparison",
    "EmbeddingSpace",
    "FleetEntry",
    "FleetSnapshot",
    "GroupLayout",
    "GroupSimilarity",
    "GroupSpan",
    "InvalidEmbedding",
    "InvalidFingerprint",
    "InvalidQuery",
    "Labels",
    "RegimeDistance",
    "Similarity",
    "SimilarityError",
    "SimilarityIndex",
    "SimilaritySettings",
    "UnknownCohort",
    "UnknownSystem",
    "compare_distributions",
    "parse_label_selector",
]
