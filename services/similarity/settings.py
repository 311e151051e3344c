"""Settings of the similarity engine, read once at start and passed down explicitly."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "DEFAULT_GROUP_WEIGHTS",
    "DEFAULT_VALUE_GROUPS",
    "ApproximateSettings",
    "CohortSettings",
    "SimilaritySettings",
]

DEFAULT_GROUP_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        # What decides whether a configuration behaves the same on another machine: the
        # machine (a configuration is sized for its cores and memory) and the workload it
        # serves. Neither depends on the configuration a system runs today, so they tell
        # alike machines apart even when their configurations differ. docs/similarity.md
        # has the measurements these weights were chosen on.
        "hardware": 1.0,
        "workload": 1.0,
        # Behaviour under load still tells systems of one kind from another, but part of
        # it is the current configuration's doing (how soon latency rises, how long the
        # tail is), so it breaks ties rather than decides.
        "curves": 0.25,
        "distribution": 0.25,
        "correlations": 0.25,
    }
)

DEFAULT_VALUE_GROUPS: frozenset[str] = frozenset({"hardware", "workload"})
"""Groups compared value by value rather than by direction (see `SimilaritySettings`)."""


@dataclass(frozen=True, slots=True)
class CohortSettings:
    """How the fleet is clustered into cohorts."""

    min_clusters: int = 2
    """Fewest cohorts tried when the fleet has structure."""
    max_clusters: int = 32
    """Most cohorts tried; bounds the work of choosing k."""
    selection_sample: int = 2_000
    """Systems sampled to choose k by silhouette; silhouette is quadratic in this."""
    fit_sample: int = 50_000
    """Systems the final clustering is fitted on; the rest of the fleet is assigned to it."""
    min_silhouette: float = 0.1
    """Below this best silhouette the fleet has no cluster structure and is one cohort."""
    patience: int = 6
    """Grid steps of k tried past the best so far before the search stops. A fleet of
    families that are alike in pairs (two sizes of one role) shows a silhouette peak at
    the pairs, a dip, and a higher peak at the families; six steps see past the dip, and
    each try costs one fit on the selection sample."""
    selection_n_init: int = 4
    """k-means restarts per candidate k while choosing k: with few restarts one unlucky
    start merges two families and splits a third, and that k loses to a worse one."""
    n_init: int = 4
    """k-means restarts of the final clustering."""
    random_state: int = 0
    """Seed of sampling and k-means, so the same fleet gives the same cohorts."""
    threads: int = 1
    """OpenMP threads k-means may use. Clustering is background work; one thread keeps it
    from competing with latency-sensitive queries for the cores (and k-means threads that
    wait on busy cores are slower than one thread)."""

    def __post_init__(self) -> None:
        if not 2 <= self.min_clusters <= self.max_clusters:
            raise ValueError("cohorts need 2 <= min_clusters <= max_clusters")
        if self.selection_sample < 3 or self.fit_sample < self.selection_sample:
            raise ValueError("cohorts need 3 <= selection_sample <= fit_sample")
        if not -1.0 <= self.min_silhouette <= 1.0:
            raise ValueError("min_silhouette lies in [-1, 1]")
        if self.n_init < 1 or self.selection_n_init < 1:
            raise ValueError("n_init and selection_n_init must be at least 1")
        if self.threads < 1:
            raise ValueError("threads must be at least 1")
        if self.patience < 1:
            raise ValueError("patience must be at least 1")


@dataclass(frozen=True, slots=True)
class ApproximateSettings:
    """When and how nearest-system queries use an approximate index instead of a full scan.

    The approximate index (FAISS inverted lists over 8-bit scalar-quantised rows) only
    proposes a short list; the short list is re-ranked exactly, so every score and
    explanation returned is the exact one and only recall is at stake.
    """

    min_systems: int = 20_000
    """Switch-over size: a fleet (or the rows a label filter keeps) smaller than this is
    scanned exactly. Measured CPU per top-10 query, exact scan vs approximate: 0.7 vs
    1.0 ms at 5k systems, 0.9 vs 0.7 ms at 10k, 2.2 vs 0.9 ms at 20k, 2.8 vs 0.9 ms at
    40k; below 20k the exact scan costs at most about twice as much, loses nothing and
    needs no training (2 s at 10k)."""
    lists_per_sqrt: float = 4.0
    """Inverted lists per square root of the fleet size (4000 lists at a million)."""
    probes: int = 112
    """Lists searched per query; recall rises and speed falls with it, about linearly.
    Measured recall@10 at a million systems of benchmarks/similarity.py (4000 lists,
    re-ranked from 50): 0.848 with 32, 0.957 with 64, 0.991 with 96, 0.9997 with 128;
    FAISS time per query 0.38, 0.65, 1.04 and 1.45 ms (p50, machine loaded)."""
    shortlist: int = 50
    """Candidates the approximate search proposes for exact re-ranking; raised to k + 1
    when a query asks for more. Recall@10 at a million systems was the same with 50 as
    with 100 (the probes bound it), and each candidate is prepared and scored exactly."""
    quantiser: str = "SQ8"
    """How rows are stored in the lists, as a FAISS factory suffix: `SQ8` (8-bit, a
    quarter of float32), `SQfp16` or `Flat` (float32, no loss)."""
    train_per_list: int = 64
    """Rows sampled per list to train the lists and the quantiser."""
    build_threads: int = 2
    """Threads used to build the index (queries use one)."""

    def __post_init__(self) -> None:
        if self.min_systems < 1:
            raise ValueError("approximate min_systems must be at least 1")
        if not (math.isfinite(self.lists_per_sqrt) and self.lists_per_sqrt > 0):
            raise ValueError("approximate lists_per_sqrt must be positive")
        if self.probes < 1 or self.shortlist < 1 or self.train_per_list < 1:
            raise ValueError("approximate probes, shortlist and train_per_list must be >= 1")
        if self.quantiser not in ("SQ8", "SQfp16", "Flat"):
            raise ValueError("approximate quantiser is one of SQ8, SQfp16, Flat")
        if self.build_threads < 1:
            raise ValueError("approximate build_threads must be at least 1")


def _default_weights() -> Mapping[str, float]:
    return DEFAULT_GROUP_WEIGHTS


def _default_value_groups() -> frozenset[str]:
    return DEFAULT_VALUE_GROUPS


@dataclass(frozen=True, slots=True)
class SimilaritySettings:
    """Everything a deployment may tune about scoring, search and cohorts."""

    group_weights: Mapping[str, float] = field(default_factory=_default_weights)
    """Weight of each embedding group in the overall score. Every name must be a group of
    the layout; a layout group missing here gets `default_group_weight`; 0 leaves a group
    out of the score (it is still reported)."""
    default_group_weight: float = 1.0
    """Weight of a layout group that `group_weights` does not name."""
    value_groups: frozenset[str] = field(default_factory=_default_value_groups)
    """Groups compared value by value: each standardised value counts on its own, by how
    far apart two systems are on it (`value_range`), and the group's similarity is the
    mean over its values. The cosine of a group of a few values says little (two
    machines of 4 and 64 cores point the same way once centred if their memory does);
    a distance per value says how far apart they are. Names the layout lacks are
    ignored; the other groups are compared by cosine."""
    value_range: float = 1.0
    """Distance between two values of a value group, in robust spreads of the fleet, at
    which they are 0.5 alike; equal values are 1.0 alike, values three ranges apart
    nearly 0. A difference counts the same anywhere in the fleet's range (2 against 4
    cores as 16 against 32, on the log scale the embedding keeps them on)."""
    value_clip: float = 2.5
    """Values of a value group are clipped to +/- this many robust spreads: beyond it two
    values are far from each other and from everything in between anyway. Each value
    the fleet varies on takes `1 + ceil((2 * value_clip + 1.8 * value_range) / (0.75 *
    value_range))` coordinates of a prepared row (11 by default), so a smaller range or
    a larger clip costs memory and scan time."""
    clone_threshold: float = 0.9
    """Scores at or above it mean CLONE (copy the configuration as is), below it ADAPT."""
    max_k: int = 1000
    """Largest number of neighbours one query may ask for."""
    spread_clip: float = 8.0
    """Standardised values are clipped to +/- this many robust spreads, so one wild
    dimension cannot outvote the rest of its group."""
    group_anchor: float = 0.25
    """Length, in robust spreads, of a constant coordinate added to every group before it
    is normalised. A group sitting exactly on the fleet median then still has a direction
    (two such systems are identical there, not undefined), and tiny deviations from the
    median, where direction is mostly noise, count for little. Must be positive."""
    scaler_sample: int = 200_000
    """Systems sampled to estimate the fleet's medians and spreads; more adds no accuracy."""
    delta_fraction: float = 0.01
    """Changes (upserts plus removals) kept in a small side segment before the index is
    rebuilt and re-standardised, as a fraction of the fleet. Small fleets rebuild on every
    change; a fleet of a million rebuilds every ten thousand."""
    label_mask_max_values: int = 64
    """A label key with at most this many distinct values gets a boolean mask per value,
    precomputed; keys with more values are filtered by comparing a code column."""
    cohorts: CohortSettings = field(default_factory=CohortSettings)
    """How cohorts are found."""
    approximate: ApproximateSettings = field(default_factory=ApproximateSettings)
    """When nearest-system queries use the approximate index, and how it is built."""

    def __post_init__(self) -> None:
        weights = dict(self.group_weights)
        for name, weight in weights.items():
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of group {name!r} must be finite and >= 0, not {weight}")
        object.__setattr__(self, "group_weights", MappingProxyType(weights))
        if not math.isfinite(self.default_group_weight) or self.default_group_weight < 0:
            raise ValueError("default_group_weight must be finite and >= 0")
        if not 0.0 <= self.clone_threshold <= 1.0:
            raise ValueError("clone_threshold lies in [0, 1]")
        if self.max_k < 1:
            raise ValueError("max_k must be at least 1")
        if not self.spread_clip > 0:
            raise ValueError("spread_clip must be positive")
        if not (math.isfinite(self.group_anchor) and self.group_anchor > 0):
            raise ValueError("group_anchor must be positive")
        object.__setattr__(self, "value_groups", frozenset(self.value_groups))
        if not (math.isfinite(self.value_range) and self.value_range > 0):
            raise ValueError("value_range must be positive")
        if not (math.isfinite(self.value_clip) and self.value_clip > 0):
            raise ValueError("value_clip must be positive")
        if self.scaler_sample < 1:
            raise ValueError("scaler_sample must be at least 1")
        if not 0.0 <= self.delta_fraction <= 1.0:
            raise ValueError("delta_fraction lies in [0, 1]")
        if self.label_mask_max_values < 0:
            raise ValueError("label_mask_max_values must be >= 0")

    def weight_of(self, group: str) -> float:
        """The weight a group gets, falling back to `default_group_weight`."""
        return self.group_weights.get(group, self.default_group_weight)

    def unknown_groups(self, names: Iterable[str]) -> list[str]:
        """Groups given a weight that a layout of these group names lacks, sorted.

        The default weights name the groups of the fingerprint service's layout; a
        layout without some of them (an older one, a test's) is not an error for them.
        """
        weighted = set(self.group_weights)
        if dict(self.group_weights) == dict(DEFAULT_GROUP_WEIGHTS):
            weighted = set()
        return sorted(weighted - set(names))
