"""Conversion between the domain fingerprint and ``cfgclone.v1.Fingerprint``.

The only module of the model that imports protobuf. Everything mergeable that the
message has a field for round-trips exactly: per-regime count, mean, variance and
sketch buckets, window, sample count, load range, hardware. Derived fields
(quantiles, curves, correlation coefficients, embedding, quality) are written from
the state and recomputed, not read, on the way back.

The pair moments behind each correlation are stored too, so merging new data into
a fingerprint read back gives exactly the correlation of the union. A message
written without them (``moments`` unset) gets them rebuilt from the coefficient
and the two KPIs' overall count, mean and variance (weight ``min(count_a,
count_b)``): the coefficient read back is the one written, but merges into it are
then approximate.
"""

from __future__ import annotations

import math

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from cfgclone import vocabulary
from cfgclone.behaviour.correlation import PairMoments
from cfgclone.behaviour.embedding import DEFAULT_EMBEDDING_LAYOUT, EmbeddingLayout, embed
from cfgclone.behaviour.errors import IncompatibleFingerprint
from cfgclone.behaviour.model import (
    DEFAULT_MIN_REGIME_COUNT,
    MODEL_VERSION,
    Fingerprint,
    KpiProfile,
    SystemProfile,
)
from cfgclone.behaviour.regimes import REGIME_COUNT, LoadScale, RegimeStats
from cfgclone.behaviour.sketch import QuantileSketch
from cfgclone.v1 import common_pb2

__all__ = ["fingerprint_from_proto", "fingerprint_to_proto"]

_EDGE_TOLERANCE = 1e-9


def _timestamp(ns: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


def _sketch_to_proto(sketch: QuantileSketch) -> common_pb2.QuantileSketch:
    message = common_pb2.QuantileSketch(
        relative_accuracy=sketch.relative_accuracy,
        positive_offset=sketch.positive_offset,
        positive_counts=sketch.positive_counts.tolist(),
        negative_offset=sketch.negative_offset,
        negative_counts=sketch.negative_counts.tolist(),
        zero_count=sketch.zero_count,
    )
    if math.isfinite(sketch.minimum):
        message.minimum = sketch.minimum
    if math.isfinite(sketch.maximum):
        message.maximum = sketch.maximum
    return message


def _regime_to_proto(
    stats: RegimeStats, scale: LoadScale, bounds: vocabulary.Bounds
) -> common_pb2.RegimeStats:
    p50, p95, p99 = (bounds.clamp(q) for q in stats.sketch.quantiles((0.5, 0.95, 0.99)))
    return common_pb2.RegimeStats(
        regime=stats.regime,
        load_low=scale.lower_edge(stats.regime),
        load_high=scale.upper_edge(stats.regime),
        count=stats.count,
        mean=stats.mean,
        variance=stats.variance,
        p50=p50,
        p95=p95,
        p99=p99,
        sketch=_sketch_to_proto(stats.sketch),
    )


def fingerprint_to_proto(
    fingerprint: Fingerprint,
    *,
    name: str = "",
    configuration: str = "",
    min_regime_count: float = DEFAULT_MIN_REGIME_COUNT,
    layout: EmbeddingLayout = DEFAULT_EMBEDDING_LAYOUT,
) -> common_pb2.Fingerprint:
    """The message for a fingerprint, with embedding, groups and quality filled in.

    ``create_time`` and ``update_time`` are left to the caller, who knows them.
    """
    message = common_pb2.Fingerprint(
        name=name,
        configuration=configuration,
        model_version=MODEL_VERSION,
        load_metric=fingerprint.load_metric,
        window_start=_timestamp(fingerprint.window_start_ns),
        window_end=_timestamp(fingerprint.window_end_ns),
        load_scale=common_pb2.LoadScale(
            base=fingerprint.scale.base,
            regimes_per_octave=fingerprint.scale.regimes_per_octave,
            regime_count=fingerprint.scale.regime_count,
        ),
    )
    for kpi in fingerprint.kpis:
        profile = fingerprint.profiles[kpi]
        curve = fingerprint.curves[kpi]
        bounds = vocabulary.bounds_of(kpi)
        entry = message.kpis.add(kpi=kpi)
        entry.regimes.extend(
            _regime_to_proto(profile.regimes[r], fingerprint.scale, bounds)
            for r in sorted(profile.regimes)
        )
        entry.curve.slope = curve.slope
        entry.curve.curvature = curve.curvature
        if curve.knee_load is not None:
            entry.curve.knee_load = curve.knee_load
    for (kpi_a, kpi_b), moments in sorted(fingerprint.correlations.items()):
        message.correlations.add(
            kpi_a=kpi_a,
            kpi_b=kpi_b,
            coefficient=moments.coefficient,
            moments=common_pb2.PairMoments(
                count=moments.count,
                mean_a=moments.mean_a,
                mean_b=moments.mean_b,
                m2_a=moments.m2_a,
                m2_b=moments.m2_b,
                comoment=moments.comoment,
            ),
        )
    embedding = embed(fingerprint, layout)
    message.embedding.extend(embedding.vector.tolist())
    for group in embedding.groups:
        message.embedding_groups.add(name=group.name, offset=group.offset, length=group.length)
    quality = fingerprint.quality(min_regime_count)
    message.quality.samples = quality.samples
    message.quality.load_min = quality.load_min
    message.quality.load_max = quality.load_max
    message.quality.sparse_regimes.extend(quality.sparse_regimes)
    message.quality.notes.extend(quality.notes)
    system = fingerprint.system
    snapshot = message.system_snapshot
    snapshot.cpu_cores = system.cpu_cores
    snapshot.memory_bytes = system.memory_bytes
    snapshot.architecture = system.architecture
    snapshot.os = system.os
    snapshot.kernel = system.kernel
    snapshot.cpu_model = system.cpu_model
    return message


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise IncompatibleFingerprint(f"stored fingerprint has a non-finite {what}")
    return value


def _regime_from_proto(message: common_pb2.RegimeStats, kpi: str, scale: LoadScale) -> RegimeStats:
    regime = message.regime
    if not 0 <= regime < scale.regime_count:
        raise IncompatibleFingerprint(
            f"KPI {kpi!r} has regime {regime}, outside the scale's 0-{scale.regime_count - 1}"
        )
    low, high = scale.lower_edge(regime), scale.upper_edge(regime)
    if not (
        math.isclose(message.load_low, low, rel_tol=_EDGE_TOLERANCE)
        and math.isclose(message.load_high, high, rel_tol=_EDGE_TOLERANCE)
    ):
        raise IncompatibleFingerprint(
            f"KPI {kpi!r} regime {regime} spans [{message.load_low}, {message.load_high}), "
            f"but the load scale {scale} puts it at [{low}, {high}): "
            "the fingerprint was built on another scale"
        )
    count = _finite(message.count, f"count in KPI {kpi!r}")
    variance = _finite(message.variance, f"variance in KPI {kpi!r}")
    if count <= 0.0 or variance < 0.0:
        raise IncompatibleFingerprint(
            f"KPI {kpi!r} regime {regime} has count {count} and variance {variance}"
        )
    stored = message.sketch
    try:
        sketch = QuantileSketch(
            stored.relative_accuracy,
            stored.positive_offset,
            np.array(stored.positive_counts, dtype=np.float64),
            stored.negative_offset,
            np.array(stored.negative_counts, dtype=np.float64),
            stored.zero_count,
            stored.minimum if stored.HasField("minimum") else math.inf,
            stored.maximum if stored.HasField("maximum") else -math.inf,
        )
    except ValueError as error:
        raise IncompatibleFingerprint(f"KPI {kpi!r} regime {regime}: {error}") from error
    return RegimeStats(
        regime, count, _finite(message.mean, f"mean in KPI {kpi!r}"), variance, sketch
    )


def _moments_from_coefficient(
    coefficient: float, profile_a: KpiProfile, profile_b: KpiProfile
) -> PairMoments:
    a, b = profile_a.overall(), profile_b.overall()
    count = min(a.count, b.count)
    m2_a, m2_b = a.variance * count, b.variance * count
    r = max(-1.0, min(1.0, _finite(coefficient, "correlation")))
    return PairMoments(count, a.mean, b.mean, m2_a, m2_b, r * math.sqrt(m2_a * m2_b))


def _moments_from_proto(message: common_pb2.PairMoments) -> PairMoments:
    values = [
        _finite(v, "correlation moments")
        for v in (
            message.count,
            message.mean_a,
            message.mean_b,
            message.m2_a,
            message.m2_b,
            message.comoment,
        )
    ]
    if values[0] < 0 or values[3] < 0 or values[4] < 0:
        raise IncompatibleFingerprint("correlation moments have a negative count or spread")
    return PairMoments(*values)


def _swapped(moments: PairMoments) -> PairMoments:
    return PairMoments(
        moments.count, moments.mean_b, moments.mean_a, moments.m2_b, moments.m2_a, moments.comoment
    )


def scale_of(message: common_pb2.Fingerprint) -> LoadScale:
    """The load scale a message was built on: its ``load_scale``, or, in a message from
    before it had one, the scale its load metric's regime edges show."""
    if message.HasField("load_scale"):
        stored = message.load_scale
        try:
            return LoadScale(stored.base, stored.regimes_per_octave, stored.regime_count)
        except ValueError as error:
            raise IncompatibleFingerprint(f"load_scale: {error}") from None
    for entry in message.kpis:
        if entry.kpi == message.load_metric and entry.regimes:
            first = entry.regimes[0]
            try:
                return LoadScale.from_edges(
                    first.regime, first.load_low, first.load_high, REGIME_COUNT
                )
            except ValueError as error:
                raise IncompatibleFingerprint(f"load metric regime edges: {error}") from None
    raise IncompatibleFingerprint(
        f"fingerprint has no profile of its load metric {message.load_metric!r}"
    )


def fingerprint_from_proto(
    message: common_pb2.Fingerprint, *, scale: LoadScale | None = None
) -> Fingerprint:
    """The domain fingerprint stored in a message, on ``scale`` (default: the scale its
    regime edges show).

    Raises ``IncompatibleFingerprint`` for another model version, a message built on
    another scale, or stored state that is not a valid fingerprint.
    """
    if message.model_version != MODEL_VERSION:
        raise IncompatibleFingerprint(
            f"fingerprint model version {message.model_version} cannot be read; "
            f"this service reads version {MODEL_VERSION}"
        )
    scale = scale or scale_of(message)
    profiles: dict[str, KpiProfile] = {}
    accuracies: set[float] = set()
    for entry in message.kpis:
        regimes = {r.regime: _regime_from_proto(r, entry.kpi, scale) for r in entry.regimes}
        if not regimes:
            raise IncompatibleFingerprint(f"KPI {entry.kpi!r} has no regime statistics")
        accuracies.update(stats.sketch.relative_accuracy for stats in regimes.values())
        profiles[entry.kpi] = KpiProfile(entry.kpi, dict(sorted(regimes.items())))
    if message.load_metric not in profiles:
        raise IncompatibleFingerprint(
            f"fingerprint has no profile of its load metric {message.load_metric!r}"
        )
    if len(accuracies) != 1:
        raise IncompatibleFingerprint(
            f"fingerprint sketches mix relative accuracies {sorted(accuracies)}"
        )
    correlations: dict[tuple[str, str], PairMoments] = {}
    for stored in message.correlations:
        if stored.kpi_a not in profiles or stored.kpi_b not in profiles:
            raise IncompatibleFingerprint(
                f"correlation of {stored.kpi_a!r} and {stored.kpi_b!r} names an unknown KPI"
            )
        pair = tuple(sorted((stored.kpi_a, stored.kpi_b)))
        if stored.HasField("moments") and stored.moments.count > 0:
            moments = _moments_from_proto(stored.moments)
            if pair[0] != stored.kpi_a:
                moments = _swapped(moments)
        else:
            moments = _moments_from_coefficient(
                stored.coefficient, profiles[pair[0]], profiles[pair[1]]
            )
        correlations[(pair[0], pair[1])] = moments
    snapshot = message.system_snapshot
    return Fingerprint(
        load_metric=message.load_metric,
        profiles=dict(sorted(profiles.items())),
        correlations=dict(sorted(correlations.items())),
        system=SystemProfile(
            cpu_cores=snapshot.cpu_cores,
            memory_bytes=snapshot.memory_bytes,
            architecture=snapshot.architecture,
            os=snapshot.os,
            kernel=snapshot.kernel,
            cpu_model=snapshot.cpu_model,
        ),
        window_start_ns=message.window_start.ToNanoseconds(),
        window_end_ns=message.window_end.ToNanoseconds(),
        samples=message.quality.samples,
        load_min=_finite(message.quality.load_min, "load_min"),
        load_max=_finite(message.quality.load_max, "load_max"),
        scale=scale,
        relative_accuracy=accuracies.pop(),
    )
