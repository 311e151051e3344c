"""Building a fingerprint from a window of samples, and refining one with a new window.

Input is one pair of numpy arrays per metric, as the collector stores them
(timestamps in int64 ns, float64 values). KPI samples and load samples are taken
at different instants, so each KPI sample is aligned to the load of its time
bucket, ``floor(ts / align_ns)``: the mean of the load samples in that bucket. A
KPI sample whose bucket holds no load sample is left out. Cut windows at
multiples of ``align_ns`` so that merging windows equals building from their union.

Everything is vectorised: the load samples are sorted once (only when they are not
sorted already), KPI samples find their bucket by a table lookup (or a binary search), and every
statistic is a ``bincount``; no Python loop runs per sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cfgclone import vocabulary
from cfgclone.behaviour.correlation import pair_moments_from_buckets
from cfgclone.behaviour.errors import InsufficientData, InvalidSamples
from cfgclone.behaviour.model import (
    DEFAULT_LOAD_METRIC,
    DEFAULT_MIN_REGIME_COUNT,
    Fingerprint,
    KpiProfile,
    SystemProfile,
)
from cfgclone.behaviour.regimes import LoadScale, regime_stats_by_group
from cfgclone.behaviour.sketch import DEFAULT_RELATIVE_ACCURACY

__all__ = [
    "DEFAULT_ALIGN_NS",
    "SampleSeries",
    "build_fingerprint",
    "refine_fingerprint",
    "resolve_load_metric",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_ALIGN_NS = 10_000_000_000
"""Alignment buckets of 10 s: long enough to hold a load sample at 1-5 s sampling."""


@dataclass(frozen=True, eq=False)
class SampleSeries:
    """Samples of one metric: ``values[i]`` was measured at ``ts_unix_ns[i]``. Any order."""

    ts_unix_ns: IntArray
    """Sample times, ns since the Unix epoch."""
    values: FloatArray
    """Finite sample values."""

    def __post_init__(self) -> None:
        ts = np.asarray(self.ts_unix_ns)
        values = np.asarray(self.values, dtype=np.float64)
        if ts.ndim != 1 or values.ndim != 1:
            raise InvalidSamples("timestamps and values must be one-dimensional arrays")
        if ts.shape != values.shape:
            raise InvalidSamples(
                f"{ts.size} timestamps but {values.size} values: each value needs one timestamp"
            )
        if ts.size and not np.issubdtype(ts.dtype, np.integer):
            raise InvalidSamples(f"timestamps must be integers (ns), got {ts.dtype}")
        if not np.isfinite(values).all():
            raise InvalidSamples("sample values must be finite numbers")
        object.__setattr__(self, "ts_unix_ns", ts.astype(np.int64, copy=False))
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.values.size)


def resolve_load_metric(
    metrics: Mapping[str, SampleSeries],
    load_metric: str | None,
    preferred: Sequence[str] = (),
) -> str:
    """The load metric to use: the one named; else the first of ``preferred`` present,
    else the vocabulary's offered load (requests or transactions per second), else
    ``system.cpu.utilization``; else a lone metric.

    Offered load comes first because CPU moves with the configuration: at equal CPU
    a change's effect on capacity is invisible. When none is named and the window has
    none of those but exactly one metric, that metric is the load (a single-metric
    system). Anything else raises ``InsufficientData`` naming what is missing.
    """
    present = sorted(name for name, series in metrics.items() if len(series))
    if not present:
        raise InsufficientData("the window has no samples: no metric has any value in it")
    if load_metric is not None:
        if load_metric not in present:
            raise InsufficientData(
                f"the window has no samples of the load metric {load_metric!r}; "
                f"metrics with samples: {present}"
            )
        return load_metric
    chosen = vocabulary.choose_load_metric(present, preferred)
    if chosen is not None:
        return chosen
    if len(present) == 1:
        return present[0]
    raise InsufficientData(
        f"no load metric named and the window has no samples of the offered load "
        f"({', '.join(vocabulary.OFFERED_LOAD)}) nor of {DEFAULT_LOAD_METRIC!r}; "
        f"name one of {present}"
    )


def build_fingerprint(
    metrics: Mapping[str, SampleSeries],
    *,
    load_metric: str | None = None,
    preferred_load_metrics: Sequence[str] = (),
    system: SystemProfile | None = None,
    scale: LoadScale | None = None,
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
    align_ns: int = DEFAULT_ALIGN_NS,
    min_regime_count: float = DEFAULT_MIN_REGIME_COUNT,
) -> Fingerprint:
    """The fingerprint of one window of samples, by metric name.

    ``scale`` defaults to one spanning the window's load (:meth:`LoadScale.spanning`);
    windows to be merged later must share one. Raises ``InsufficientData`` when the
    window has no samples, none of the load metric, or no load regime with at least
    ``min_regime_count`` load samples.
    """
    load = resolve_load_metric(metrics, load_metric, preferred_load_metrics)
    fingerprint = _window(
        metrics,
        load_metric=load,
        system=system or SystemProfile(),
        scale=scale or LoadScale.spanning(metrics[load].values),
        relative_accuracy=relative_accuracy,
        align_ns=align_ns,
    )
    _require_a_supported_regime(fingerprint, min_regime_count)
    return fingerprint


def refine_fingerprint(
    fingerprint: Fingerprint,
    metrics: Mapping[str, SampleSeries],
    *,
    decay: float = 1.0,
    system: SystemProfile | None = None,
    align_ns: int = DEFAULT_ALIGN_NS,
    min_regime_count: float = DEFAULT_MIN_REGIME_COUNT,
) -> Fingerprint:
    """``fingerprint.decayed(decay).merge(new window)``: work proportional to the new data.

    The new window uses the fingerprint's load metric, scale and sketch accuracy;
    ``system`` replaces the hardware metadata when given. Raises
    ``InsufficientData`` when the new window has no load samples, or when even the
    merged fingerprint has no regime with ``min_regime_count`` load samples.
    """
    window = _window(
        metrics,
        load_metric=resolve_load_metric(metrics, fingerprint.load_metric),
        system=system or SystemProfile(),
        scale=fingerprint.scale,
        relative_accuracy=fingerprint.relative_accuracy,
        align_ns=align_ns,
    )
    refined = fingerprint.decayed(decay).merge(window)
    _require_a_supported_regime(refined, min_regime_count)
    return refined


def _require_a_supported_regime(fingerprint: Fingerprint, min_regime_count: float) -> None:
    regimes = fingerprint.load_profile.regimes
    best = max(regimes.values(), key=lambda stats: stats.count)
    if best.count < min_regime_count:
        low = fingerprint.scale.lower_edge(best.regime)
        high = fingerprint.scale.upper_edge(best.regime)
        raise InsufficientData(
            f"no load regime has {min_regime_count:g} samples of the load metric "
            f"{fingerprint.load_metric!r}; the best, regime {best.regime} "
            f"[{low:.6g}, {high:.6g}), has {best.count:g}: widen the window",
            progress=f"{best.count:g} of {min_regime_count:g} samples of "
            f"{fingerprint.load_metric} in the busiest load regime",
        )


@dataclass(frozen=True)
class _LoadBuckets:
    """The load metric grouped by alignment bucket, in bucket order."""

    buckets: IntArray
    """Bucket numbers, ascending and distinct."""
    means: FloatArray
    """Mean load in each bucket."""
    counts: FloatArray
    """Load samples in each bucket."""
    regimes: IntArray
    """Regime of each bucket's mean load."""

    def positions_of(self, buckets: IntArray) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """Index of each bucket number in ``self.buckets``, and whether it is there at all.

        A window is usually one stretch of time, so a direct lookup table over the span
        of bucket numbers is small and beats a binary search; sparse spans fall back
        to ``searchsorted``.
        """
        first = int(self.buckets[0])
        span = int(self.buckets[-1]) - first + 1
        if span <= 4 * self.buckets.size + 4096:
            table = np.full(span, -1, dtype=np.int64)
            table[self.buckets - first] = np.arange(self.buckets.size)
            offsets = buckets - first
            inside = (offsets >= 0) & (offsets < span)
            positions = table[np.clip(offsets, 0, span - 1)]
            return positions, inside & (positions >= 0)
        positions = np.searchsorted(self.buckets, buckets)
        np.minimum(positions, self.buckets.size - 1, out=positions)
        return positions.astype(np.int64, copy=False), self.buckets[positions] == buckets


def _window(
    metrics: Mapping[str, SampleSeries],
    *,
    load_metric: str,
    system: SystemProfile,
    scale: LoadScale,
    relative_accuracy: float,
    align_ns: int,
) -> Fingerprint:
    if align_ns < 1:
        raise ValueError(f"align_ns must be a positive number of nanoseconds, got {align_ns}")
    load = metrics[load_metric]
    buckets = load.ts_unix_ns // align_ns
    load_values = load.values
    if buckets.size > 1 and bool((buckets[1:] < buckets[:-1]).any()):
        order = np.argsort(buckets, kind="stable")
        buckets, load_values = buckets[order], load_values[order]
    starts = np.flatnonzero(np.concatenate(([True], buckets[1:] != buckets[:-1])))
    counts = np.diff(np.append(starts, buckets.size)).astype(np.float64)
    means = np.add.reduceat(load_values, starts) / counts
    grid = _LoadBuckets(buckets[starts], means, counts, scale.regime_of(means))

    profiles = {
        load_metric: KpiProfile(
            load_metric,
            regime_stats_by_group(
                load_values,
                np.repeat(grid.regimes, counts.astype(np.int64)),
                scale.regime_count,
                relative_accuracy,
            ),
        )
    }
    names = [load_metric]
    bucket_means = [grid.means]
    bucket_counts = [grid.counts]
    start, end = int(load.ts_unix_ns.min()), int(load.ts_unix_ns.max())
    samples = int(load_values.size)

    for name, series in sorted(metrics.items()):
        if name == load_metric or not len(series):
            continue
        aligned = _align(series, grid, align_ns)
        if aligned is None:
            continue
        positions, values, first, last = aligned
        profiles[name] = KpiProfile(
            name,
            regime_stats_by_group(
                values, grid.regimes[positions], scale.regime_count, relative_accuracy
            ),
        )
        in_bucket = np.bincount(positions, minlength=grid.buckets.size).astype(np.float64)
        sums = np.bincount(positions, weights=values, minlength=grid.buckets.size)
        names.append(name)
        bucket_means.append(
            np.divide(sums, in_bucket, out=np.zeros_like(sums), where=in_bucket > 0.0)
        )
        bucket_counts.append(in_bucket)
        start, end = min(start, first), max(end, last)
        samples += int(values.size)

    correlations = pair_moments_from_buckets(names, np.stack(bucket_means), np.stack(bucket_counts))
    return Fingerprint(
        load_metric=load_metric,
        profiles=dict(sorted(profiles.items())),
        correlations=dict(sorted(correlations.items())),
        system=system,
        window_start_ns=start,
        window_end_ns=end,
        samples=samples,
        load_min=float(load_values.min()),
        load_max=float(load_values.max()),
        scale=scale,
        relative_accuracy=relative_accuracy,
    )


def _align(
    series: SampleSeries, grid: _LoadBuckets, align_ns: int
) -> tuple[IntArray, FloatArray, int, int] | None:
    """Bucket position of each KPI sample that has a load, its value, and the time span."""
    positions, found = grid.positions_of(series.ts_unix_ns // align_ns)
    ts = series.ts_unix_ns
    values = series.values
    if not found.all():
        positions, values, ts = positions[found], values[found], ts[found]
    if values.size == 0:
        return None
    return positions, values, int(ts.min()), int(ts.max())
