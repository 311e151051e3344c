"""Conversion to and from the cfgclone.v1.Fingerprint message."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.behaviour import (
    DEFAULT_ALIGN_NS,
    DEFAULT_EMBEDDING_LAYOUT,
    MODEL_VERSION,
    Fingerprint,
    IncompatibleFingerprint,
    LoadScale,
    SampleSeries,
    SystemProfile,
    build_fingerprint,
    embed,
)
from cfgclone.behaviour.codec import fingerprint_from_proto, fingerprint_to_proto
from cfgclone.v1 import common_pb2

from .synthetic import LATENCY, LOAD, MEMORY, hockey_system, split_at

SYSTEM = SystemProfile(
    cpu_cores=8,
    memory_bytes=32 * 2**30,
    architecture="x86_64",
    os="ubuntu 24.04",
    kernel="6.8.0-45-generic",
    cpu_model="AMD EPYC 7B13",
)


@pytest.fixture(scope="module")
def fingerprint() -> Fingerprint:
    return build_fingerprint(hockey_system(buckets=600, seed=11), system=SYSTEM)


def without_correlations(message: common_pb2.Fingerprint) -> common_pb2.Fingerprint:
    copy = common_pb2.Fingerprint()
    copy.CopyFrom(message)
    del copy.correlations[:]
    return copy


def test_the_message_round_trips_through_bytes_and_the_domain(fingerprint: Fingerprint) -> None:
    message = fingerprint_to_proto(
        fingerprint,
        name="systems/db-1/fingerprints/1",
        configuration="systems/db-1/configurations/3",
    )
    parsed = common_pb2.Fingerprint.FromString(message.SerializeToString())
    again = fingerprint_to_proto(
        fingerprint_from_proto(parsed), name=message.name, configuration=message.configuration
    )
    # Correlations are rebuilt from their coefficient, which may move by a rounding error.
    assert without_correlations(again) == without_correlations(message)
    assert [(c.kpi_a, c.kpi_b) for c in again.correlations] == [
        (c.kpi_a, c.kpi_b) for c in message.correlations
    ]
    for got, wrote in zip(again.correlations, message.correlations, strict=True):
        assert got.coefficient == pytest.approx(wrote.coefficient, abs=1e-12)


def test_the_domain_round_trips_its_mergeable_state_exactly(fingerprint: Fingerprint) -> None:
    back = fingerprint_from_proto(fingerprint_to_proto(fingerprint))
    assert back.profiles == fingerprint.profiles
    assert back.system == fingerprint.system
    assert (back.window_start_ns, back.window_end_ns) == (
        fingerprint.window_start_ns,
        fingerprint.window_end_ns,
    )
    assert (back.samples, back.load_min, back.load_max) == (
        fingerprint.samples,
        fingerprint.load_min,
        fingerprint.load_max,
    )
    assert back.relative_accuracy == fingerprint.relative_accuracy
    assert back.curves == fingerprint.curves


def test_the_message_carries_every_part_of_the_model(fingerprint: Fingerprint) -> None:
    message = fingerprint_to_proto(fingerprint)
    assert message.model_version == MODEL_VERSION
    assert message.load_metric == LOAD
    assert message.window_start.ToNanoseconds() == fingerprint.window_start_ns
    assert [k.kpi for k in message.kpis] == list(fingerprint.kpis)
    latency = next(k for k in message.kpis if k.kpi == LATENCY)
    assert latency.curve.HasField("knee_load")
    assert latency.curve.knee_load == pytest.approx(40.0, rel=0.1)
    memory = next(k for k in message.kpis if k.kpi == MEMORY)
    assert not memory.curve.HasField("knee_load")
    for regime in latency.regimes:
        assert regime.load_low == fingerprint.scale.lower_edge(regime.regime)
        assert regime.load_high == fingerprint.scale.upper_edge(regime.regime)
        assert regime.p50 <= regime.p95 <= regime.p99
        assert regime.sketch.relative_accuracy == 0.01
    assert len(message.embedding) == DEFAULT_EMBEDDING_LAYOUT.length
    assert list(message.embedding) == pytest.approx(embed(fingerprint).vector.tolist())
    assert [(g.name, g.offset, g.length) for g in message.embedding_groups] == [
        (g.name, g.offset, g.length) for g in DEFAULT_EMBEDDING_LAYOUT.groups
    ]
    assert message.quality.samples == fingerprint.samples
    assert message.quality.load_max == fingerprint.load_max
    assert message.quality.notes
    assert message.system_snapshot.cpu_cores == 8
    assert message.system_snapshot.architecture == "x86_64"
    assert message.system_snapshot.os == "ubuntu 24.04"


def test_a_fingerprint_read_back_can_be_refined_like_the_original() -> None:
    metrics = hockey_system(buckets=600, seed=12)
    first, second = split_at(metrics, 300 * DEFAULT_ALIGN_NS)
    stored = fingerprint_from_proto(fingerprint_to_proto(build_fingerprint(first)))
    # The stored scale comes back as it was built, so later windows build on it.
    refined = stored.merge(build_fingerprint(second, scale=stored.scale))
    union = build_fingerprint(metrics, scale=stored.scale)
    for kpi in union.kpis:
        for regime, expected in union.profiles[kpi].regimes.items():
            got = refined.profiles[kpi].regimes[regime]
            assert got.count == expected.count
            assert got.mean == pytest.approx(expected.mean, rel=1e-9)
            assert got.variance == pytest.approx(expected.variance, rel=1e-7)
            assert got.sketch == expected.sketch
    # The stored pair moments make the merged correlation that of the union.
    assert refined.correlation(LOAD, LATENCY) == pytest.approx(
        union.correlation(LOAD, LATENCY), abs=1e-9
    )


def test_a_message_without_pair_moments_still_reads_its_coefficient() -> None:
    metrics = hockey_system(buckets=300, seed=5)
    fingerprint = build_fingerprint(metrics)
    message = fingerprint_to_proto(fingerprint)
    for correlation in message.correlations:
        correlation.ClearField("moments")
    stored = fingerprint_from_proto(message)
    assert stored.correlation(LOAD, LATENCY) == pytest.approx(
        fingerprint.correlation(LOAD, LATENCY), abs=1e-9
    )


def test_an_unknown_model_version_is_refused(fingerprint: Fingerprint) -> None:
    message = fingerprint_to_proto(fingerprint)
    message.model_version = MODEL_VERSION + 1
    with pytest.raises(IncompatibleFingerprint, match="model version"):
        fingerprint_from_proto(message)


def test_a_message_built_on_another_load_scale_is_refused(fingerprint: Fingerprint) -> None:
    message = fingerprint_to_proto(fingerprint)
    with pytest.raises(IncompatibleFingerprint, match="another scale"):
        fingerprint_from_proto(message, scale=LoadScale(base=1.0))


def test_a_message_without_its_load_profile_is_refused(fingerprint: Fingerprint) -> None:
    message = fingerprint_to_proto(fingerprint)
    message.load_metric = "requests.rate"
    with pytest.raises(IncompatibleFingerprint, match="no profile of its load metric"):
        fingerprint_from_proto(message)


def test_shown_quantiles_are_ordered_and_a_share_never_exceeds_one() -> None:
    # An agent that rounds up: CPU utilisation samples a hair above 1, as 1.004.
    metrics = hockey_system(buckets=300, seed=12)
    load = metrics[LOAD]
    shares = np.clip(load.values / 80.0, 0.0, 1.004)  # busy all the time past 80%
    metrics[LOAD] = SampleSeries(load.ts_unix_ns, shares)
    memory = metrics[MEMORY]  # the synthetic system's memory is in percent: as a share
    metrics[MEMORY] = SampleSeries(memory.ts_unix_ns, memory.values / 100.0)
    message = fingerprint_to_proto(build_fingerprint(metrics, system=SYSTEM))
    for profile in message.kpis:
        for regime in profile.regimes:
            assert regime.p50 <= regime.p95 <= regime.p99, (profile.kpi, regime)
            if regime.sketch.HasField("maximum"):
                assert regime.p99 <= regime.sketch.maximum
                assert regime.p50 >= regime.sketch.minimum
    cpu = next(p for p in message.kpis if p.kpi == LOAD)
    assert max(r.sketch.maximum for r in cpu.regimes) == pytest.approx(1.004)
    assert max(r.p99 for r in cpu.regimes) == 1.0  # a share: clamped to its bounds


def test_extremes_round_trip_and_a_message_without_them_still_reads(
    fingerprint: Fingerprint,
) -> None:
    message = fingerprint_to_proto(fingerprint)
    again = fingerprint_from_proto(message)
    for kpi, profile in fingerprint.profiles.items():
        for regime, stats in profile.regimes.items():
            read = again.profiles[kpi].regimes[regime].sketch
            assert (read.minimum, read.maximum) == (stats.sketch.minimum, stats.sketch.maximum)
    for profile in message.kpis:
        for regime in profile.regimes:
            regime.sketch.ClearField("minimum")
            regime.sketch.ClearField("maximum")
    older = fingerprint_from_proto(message)
    sketch = next(iter(older.profiles[LATENCY].regimes.values())).sketch
    assert (sketch.minimum, sketch.maximum) == (float("inf"), float("-inf"))
