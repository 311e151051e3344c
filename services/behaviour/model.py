"""The fingerprint: how a system behaves under different loads with one configuration.

Everything a fingerprint stores is mergeable state (per-regime statistics and
sketches, pair moments, totals), so ``a.merge(b)`` is the fingerprint of the
union of both windows and refinement never rereads history. What is derived
(curves, correlation coefficients, the quality report, the embedding) is
computed from that state on demand.

The load metric is profiled like every KPI: its per-regime counts say how long
the system spent in each regime and its per-regime means and sketches place the
regimes on the load axis for the curve fits. A system that reports only its load
metric therefore still has a fingerprint, with the load metric as its only KPI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from cfgclone import vocabulary
from cfgclone.behaviour.correlation import PairMoments
from cfgclone.behaviour.curves import LoadCurve, fit_load_curve
from cfgclone.behaviour.errors import IncompatibleFingerprint
from cfgclone.behaviour.regimes import DEFAULT_LOAD_SCALE, LoadScale, RegimeStats
from cfgclone.behaviour.sketch import DEFAULT_RELATIVE_ACCURACY, QuantileSketch

__all__ = [
    "DEFAULT_LOAD_METRIC",
    "DEFAULT_MIN_REGIME_COUNT",
    "MODEL_VERSION",
    "Fingerprint",
    "FingerprintQuality",
    "KpiProfile",
    "SystemProfile",
]

MODEL_VERSION = 1
"""Version of the model format, stored in ``Fingerprint.model_version``."""

DEFAULT_LOAD_METRIC = vocabulary.CPU_UTILIZATION.name
"""Load metric used when none is named (CPU utilisation in percent, which every agent sends)."""

DEFAULT_MIN_REGIME_COUNT = 30.0
"""Fewest samples of a KPI in a regime for the regime's statistics to be trusted."""


@dataclass(frozen=True)
class SystemProfile:
    """Hardware and OS of the system when its samples were taken; empty fields are unknown."""

    cpu_cores: int = 0
    """Logical CPU cores."""
    memory_bytes: int = 0
    """Physical memory."""
    architecture: str = ""
    """As ``uname -m`` prints it, for example ``x86_64``."""
    os: str = ""
    """Operating system, for example ``debian 12``."""
    kernel: str = ""
    """Kernel release."""
    cpu_model: str = ""
    """CPU model string."""

    @property
    def is_known(self) -> bool:
        """Whether any field is filled in."""
        return self != SystemProfile()


@dataclass(frozen=True)
class KpiProfile:
    """One KPI's statistics per load regime."""

    kpi: str
    """Metric name."""
    regimes: Mapping[int, RegimeStats]
    """Statistics by regime index; only regimes with samples are present."""

    def merge(self, other: KpiProfile) -> KpiProfile:
        """Regime by regime merge of two profiles of the same KPI."""
        merged = dict(self.regimes)
        for regime, stats in other.regimes.items():
            mine = merged.get(regime)
            merged[regime] = stats if mine is None else mine.merge(stats)
        return KpiProfile(self.kpi, dict(sorted(merged.items())))

    def decayed(self, factor: float) -> KpiProfile:
        """Every regime's weight multiplied by ``factor``."""
        return KpiProfile(
            self.kpi, {regime: stats.decayed(factor) for regime, stats in self.regimes.items()}
        )

    @property
    def count(self) -> float:
        """Weight of all samples of the KPI."""
        return sum(stats.count for stats in self.regimes.values())

    def overall(self) -> RegimeStats:
        """Statistics over all regimes together (reported as regime -1)."""
        stats = list(self.regimes.values())
        if not stats:
            raise ValueError(f"KPI {self.kpi!r} has no samples")
        total = RegimeStats(-1, stats[0].count, stats[0].mean, stats[0].variance, stats[0].sketch)
        for regime in stats[1:]:
            total = total.merge(
                RegimeStats(-1, regime.count, regime.mean, regime.variance, regime.sketch)
            )
        return total


@dataclass(frozen=True)
class FingerprintQuality:
    """What a fingerprint was built from and where it is thin."""

    samples: int
    """Samples used: the load metric's and every KPI's that found a load."""
    load_min: float
    """Smallest load seen."""
    load_max: float
    """Largest load seen."""
    sparse_regimes: tuple[int, ...]
    """Regimes within the covered load range where some KPI has fewer samples than the minimum."""
    notes: tuple[str, ...]
    """Remarks for a reader."""


def _validate_factor(factor: float) -> None:
    if not (math.isfinite(factor) and 0.0 < factor <= 1.0):
        raise ValueError(f"decay factor must be in (0, 1], got {factor!r}")


@dataclass(frozen=True)
class Fingerprint:
    """A mergeable statistical model of one system's behaviour under load.

    Build one with ``build_fingerprint``; refine it with ``merge`` (and ``decayed`` so
    old behaviour fades) or ``refine_fingerprint``.
    """

    load_metric: str
    """Metric whose values place samples in load regimes."""
    profiles: Mapping[str, KpiProfile]
    """Per-KPI regime statistics, the load metric's included, by metric name."""
    correlations: Mapping[tuple[str, str], PairMoments]
    """Pair moments by pair of KPI names in sorted order."""
    system: SystemProfile
    """Hardware and OS metadata."""
    window_start_ns: int
    """Earliest sample time used, in ns since the Unix epoch."""
    window_end_ns: int
    """Latest sample time used."""
    samples: int
    """Samples used, not decayed (the load metric's and every aligned KPI sample)."""
    load_min: float
    """Smallest load value seen."""
    load_max: float
    """Largest load value seen."""
    scale: LoadScale = field(default=DEFAULT_LOAD_SCALE)
    """Fleet-wide regime edges."""
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    """Relative accuracy of every quantile sketch."""

    def __post_init__(self) -> None:
        if self.load_metric not in self.profiles:
            raise ValueError(f"the load metric {self.load_metric!r} needs a profile")

    @property
    def kpis(self) -> tuple[str, ...]:
        """KPI names in sorted order; the load metric is one of them."""
        return tuple(sorted(self.profiles))

    @property
    def load_profile(self) -> KpiProfile:
        """The load metric's own profile."""
        return self.profiles[self.load_metric]

    def merge(self, other: Fingerprint) -> Fingerprint:
        """The fingerprint of both windows' data (within the sketches' relative accuracy).

        Merge is associative. Hardware metadata is taken from ``other`` when it is
        known there, since refinement merges the newer window on the right.
        """
        if other.load_metric != self.load_metric:
            raise IncompatibleFingerprint(
                f"cannot merge fingerprints of load metric {self.load_metric!r} "
                f"and {other.load_metric!r}"
            )
        if not other.scale.same_as(self.scale):
            raise IncompatibleFingerprint(
                f"cannot merge fingerprints on load scales {self.scale} and {other.scale}"
            )
        if other.relative_accuracy != self.relative_accuracy:
            raise IncompatibleFingerprint(
                "cannot merge fingerprints whose sketches have relative accuracy "
                f"{self.relative_accuracy} and {other.relative_accuracy}"
            )
        profiles = dict(self.profiles)
        for name, profile in other.profiles.items():
            mine = profiles.get(name)
            profiles[name] = profile if mine is None else mine.merge(profile)
        correlations = dict(self.correlations)
        for pair, moments in other.correlations.items():
            known = correlations.get(pair)
            correlations[pair] = moments if known is None else known.merge(moments)
        return Fingerprint(
            load_metric=self.load_metric,
            profiles=dict(sorted(profiles.items())),
            correlations=dict(sorted(correlations.items())),
            system=other.system if other.system.is_known else self.system,
            window_start_ns=min(self.window_start_ns, other.window_start_ns),
            window_end_ns=max(self.window_end_ns, other.window_end_ns),
            samples=self.samples + other.samples,
            load_min=min(self.load_min, other.load_min),
            load_max=max(self.load_max, other.load_max),
            scale=self.scale,
            relative_accuracy=self.relative_accuracy,
        )

    def decayed(self, factor: float) -> Fingerprint:
        """Every weight multiplied by ``factor`` in (0, 1], so merged newer data counts more.

        Means, variances, quantiles and correlations are unchanged by decay alone; they
        shift towards the newer window when it is merged in.
        """
        _validate_factor(factor)
        return Fingerprint(
            load_metric=self.load_metric,
            profiles={name: p.decayed(factor) for name, p in self.profiles.items()},
            correlations={pair: m.decayed(factor) for pair, m in self.correlations.items()},
            system=self.system,
            window_start_ns=self.window_start_ns,
            window_end_ns=self.window_end_ns,
            samples=self.samples,
            load_min=self.load_min,
            load_max=self.load_max,
            scale=self.scale,
            relative_accuracy=self.relative_accuracy,
        )

    @cached_property
    def curves(self) -> Mapping[str, LoadCurve]:
        """Each KPI against load, fitted from the regime statistics."""
        load = self.load_profile.regimes
        return {
            name: fit_load_curve(profile.regimes, load, self.scale)
            for name, profile in sorted(self.profiles.items())
        }

    def correlation(self, kpi_a: str, kpi_b: str) -> float:
        """Pearson's r of two KPIs over the buckets they share; 0.0 when unknown or constant."""
        if kpi_a == kpi_b:
            return 1.0
        pair = (kpi_a, kpi_b) if kpi_a <= kpi_b else (kpi_b, kpi_a)
        moments = self.correlations.get(pair)
        return moments.coefficient if moments is not None else 0.0

    def covered_regimes(self) -> range:
        """Regimes from the lowest to the highest one the load was seen in."""
        seen = [regime for regime, stats in self.load_profile.regimes.items() if stats.count > 0]
        if not seen:
            return range(0)
        return range(min(seen), max(seen) + 1)

    def regime_support(self, regime: int) -> float:
        """Weight of the thinnest KPI in a regime (0.0 where some KPI has no sample)."""
        counts = []
        for profile in self.profiles.values():
            stats = profile.regimes.get(regime)
            counts.append(stats.count if stats is not None else 0.0)
        return min(counts)

    def quality(self, min_regime_count: float = DEFAULT_MIN_REGIME_COUNT) -> FingerprintQuality:
        """Samples used, load range covered and the regimes too thin to trust."""
        covered = self.covered_regimes()
        sparse = tuple(r for r in covered if self.regime_support(r) < min_regime_count)
        notes: list[str] = []
        if len(self.profiles) == 1:
            notes.append(
                f"single-metric system: the load metric {self.load_metric!r} is the only KPI"
            )
        if covered:
            notes.append(
                f"load {self.load_metric!r} covers regimes {covered.start}-{covered.stop - 1} "
                f"of 0-{self.scale.regime_count - 1} ({self.load_min:.6g} to {self.load_max:.6g})"
            )
        if sparse:
            notes.append(
                f"{len(sparse)} of {len(covered)} covered regimes have fewer than "
                f"{min_regime_count:g} samples of some KPI"
            )
        thin = [name for name, p in sorted(self.profiles.items()) if p.count < min_regime_count]
        if thin:
            notes.append(f"KPIs with fewer than {min_regime_count:g} samples in all: {thin}")
        return FingerprintQuality(
            samples=self.samples,
            load_min=self.load_min,
            load_max=self.load_max,
            sparse_regimes=sparse,
            notes=tuple(notes),
        )

    def sketch_of(self, kpi: str) -> QuantileSketch:
        """The KPI's quantile sketch over all regimes."""
        return self.profiles[kpi].overall().sketch
