"""The embedding: one length for every system, named groups, neutral values for what is missing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cfgclone import vocabulary
from cfgclone.behaviour import (
    DEFAULT_EMBEDDING_LAYOUT,
    STANDARD_KPIS,
    Embedding,
    EmbeddingLayout,
    IncompatibleFingerprint,
    LoadScale,
    SampleSeries,
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
        "workload",
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
    per_kpi = layout.bands + 3
    curves = embedding.group("curves")
    assert not curves[memory * per_kpi : (memory + 1) * per_kpi].any()
    assert curves[latency * per_kpi : (latency + 1) * per_kpi].any()
    distribution = embedding.group("distribution")
    start = memory * 4
    assert distribution[start : start + 4].tolist() == [0.0, 0.0, 0.0, 0.0]
    start = latency * 4
    assert distribution[start] == 1.0  # the present flag


def test_unknown_hardware_is_all_zeros_and_known_hardware_is_not() -> None:
    metrics = hockey_system(buckets=300)
    unknown = embed(build_fingerprint(metrics)).group("hardware")
    known = embed(build_fingerprint(metrics, system=SERVER)).group("hardware")
    assert not unknown.any()
    assert known[0] == pytest.approx(5.0)  # log2 of 32 cores
    assert known[1] == pytest.approx(np.log2(129.0))  # log2 of 1 + 128 GiB
    assert known[2:].tolist() == [1.0, 0.0, 0.0]  # x86_64


def test_the_os_is_not_part_of_the_hardware() -> None:
    metrics = hockey_system(buckets=300)
    fingerprint = build_fingerprint(metrics, system=SERVER)
    rhel = build_fingerprint(metrics, system=dataclasses.replace(SERVER, os="rocky 9"))
    np.testing.assert_array_equal(embed(fingerprint).vector, embed(rhel).vector)


def test_the_workload_group_says_the_level_spread_and_mix_of_the_load() -> None:
    quiet = hockey_system(buckets=600, seed=4, load_range=(2.0, 8.0))
    busy = hockey_system(buckets=600, seed=4, load_range=(20.0, 80.0))
    steady = hockey_system(buckets=600, seed=4, load_range=(18.0, 22.0))
    quiet_load = embed(build_fingerprint(quiet)).group("workload")
    busy_load = embed(build_fingerprint(busy)).group("workload")
    steady_load = embed(build_fingerprint(steady)).group("workload")
    # log-uniform loads: medians 4 and 40, on the slog scale
    assert busy_load[0] - quiet_load[0] == pytest.approx(np.log(41.0 / 5.0), abs=0.1)
    assert busy_load[1] > busy_load[0]  # the busy level above the typical one
    assert busy_load[2] == pytest.approx(quiet_load[2], abs=0.2)  # both span 4x
    assert steady_load[2] < busy_load[2] / 3
    assert not busy_load[3:].any()  # no network or disk KPIs: no mix
    received = vocabulary.NETWORK_RECEIVE.name
    loads = busy[LOAD]
    with_mix = dict(busy, **{received: SampleSeries(loads.ts_unix_ns, 2_048.0 * loads.values)})
    mix = embed(build_fingerprint(with_mix)).group("workload")
    assert mix[3] == pytest.approx(np.log1p(2_048.0), rel=0.01)  # bytes per unit of load
    np.testing.assert_allclose(mix[:3], busy_load[:3])


def test_a_configuration_that_slows_every_request_alike_leaves_the_curves_alone() -> None:
    metrics = hockey_system(buckets=800, seed=6)
    slower = dict(metrics)
    latency = metrics[LATENCY]
    slower[LATENCY] = SampleSeries(latency.ts_unix_ns, 1.3 * latency.values)
    before, after = (embed(build_fingerprint(m)) for m in (metrics, slower))
    np.testing.assert_allclose(before.group("curves"), after.group("curves"), atol=0.02)
    level = STANDARD_KPIS.index(LATENCY) * 4 + 1
    assert after.group("distribution")[level] > before.group("distribution")[level]


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
        "hardware": 5,
        "workload": 6,
        "curves": 2 * (4 + 3),
        "distribution": 2 * 4,
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
