"""The embedding: one length for every system, named groups, neutral values for what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.behaviour import (
    DEFAULT_EMBEDDING_LAYOUT,
    STANDARD_KPIS,
    Embedding,
    EmbeddingLayout,
    IncompatibleFingerprint,
    LoadScale,
    SystemProfile,
    build_fingerprint,
    embed,
)

from .synthetic import LATENCY, LOAD, MEMORY, hockey_system

SERVER = SystemProfile(
    cpu_cores=32, memory_bytes=128 * 2**30, architecture="x86_64", os="debian 12"
)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_every_system_gets_the_same_length_whatever_kpis_it_has() -> None:
    full = hockey_system(buckets=300)
    only_load = {LOAD: full[LOAD]}
    with_custom = dict(full, **{"jvm.gc.pause": full[LATENCY]})
    lengths = {
        len(embed(build_fingerprint(metrics)).vector) for metrics in (full, only_load, with_custom)
    }
    assert lengths == {DEFAULT_EMBEDDING_LAYOUT.length}


def test_groups_are_named_and_cover_the_vector_without_overlap() -> None:
    embedding = embed(build_fingerprint(hockey_system(buckets=300), system=SERVER))
    assert [g.name for g in embedding.groups] == [
        "hardware",
        "curves",
        "distribution",
        "correlations",
    ]
    covered = np.zeros(embedding.vector.size, dtype=int)
    for group in embedding.groups:
        assert group.length >= 1
        covered[group.offset : group.offset + group.length] += 1
    assert (covered == 1).all()
    assert embedding.vector.dtype == np.float32
    assert np.isfinite(embedding.vector).all()


def test_a_missing_kpi_is_filled_with_neutral_zeros() -> None:
    metrics = hockey_system(buckets=300)
    del metrics[MEMORY]
    embedding = embed(build_fingerprint(metrics))
    layout = DEFAULT_EMBEDDING_LAYOUT
    memory = STANDARD_KPIS.index(MEMORY)
    latency = STANDARD_KPIS.index(LATENCY)
    per_kpi = layout.bands + 4
    curves = embedding.group("curves")
    assert not curves[memory * per_kpi : (memory + 1) * per_kpi].any()
    assert curves[latency * per_kpi : (latency + 1) * per_kpi].any()
    distribution = embedding.group("distribution")
    start = 2 + layout.bands + memory * 4  # after the load level and spread
    assert distribution[start : start + 4].tolist() == [0.0, 0.0, 0.0, 0.0]
    start = 2 + layout.bands + latency * 4
    assert distribution[start] == 1.0  # the present flag


def test_unknown_hardware_is_all_zeros_and_known_hardware_is_not() -> None:
    metrics = hockey_system(buckets=300)
    unknown = embed(build_fingerprint(metrics)).group("hardware")
    known = embed(build_fingerprint(metrics, system=SERVER)).group("hardware")
    assert not unknown.any()
    assert known[0] == pytest.approx(5.0)  # log2 of 32 cores
    assert known.sum() > 5.0


def test_systems_with_the_same_knee_are_closer_in_curves_than_ones_with_another() -> None:
    def curves_of(knee: float, seed: int) -> np.ndarray:
        metrics = hockey_system(knee=knee, buckets=800, seed=seed)
        return embed(build_fingerprint(metrics)).group("curves")

    a, twin, other = curves_of(40.0, 1), curves_of(40.0, 2), curves_of(12.0, 3)
    assert cosine(a, twin) > cosine(a, other)
    assert np.abs(a - twin).sum() < np.abs(a - other).sum()


def test_embedding_on_a_scale_with_other_regimes_is_refused() -> None:
    coarse = LoadScale(base=1.0, regime_count=10)
    fingerprint = build_fingerprint(hockey_system(buckets=300), scale=coarse)
    with pytest.raises(IncompatibleFingerprint, match="load scale"):
        embed(fingerprint)
    layout = EmbeddingLayout(scale=coarse)
    assert isinstance(embed(fingerprint, layout), Embedding)


def test_a_layout_with_other_kpis_changes_the_length_predictably() -> None:
    layout = EmbeddingLayout(kpis=(LOAD, LATENCY), regimes_per_band=5)
    lengths = {g.name: g.length for g in layout.groups}
    assert layout.bands == 4
    assert lengths == {
        "hardware": 9,
        "curves": 2 * (4 + 4),
        "distribution": 2 + 4 + 2 * 4,
        "correlations": 1,
    }
    metrics = hockey_system(buckets=300)
    vector = embed(build_fingerprint(metrics), layout).vector
    assert vector.size == layout.length
    # The only correlation slot is the load-latency correlation.
    assert vector[-1] == pytest.approx(
        build_fingerprint(metrics).correlation(LOAD, LATENCY), rel=1e-6
    )


def test_embedding_is_read_only() -> None:
    embedding = embed(build_fingerprint({LOAD: hockey_system(buckets=100)[LOAD]}))
    with pytest.raises(ValueError, match="read-only"):
        embedding.vector[0] = 1.0
