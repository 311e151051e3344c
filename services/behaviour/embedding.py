"""A fixed-length embedding of a fingerprint for the similarity engine.

It says what decides whether a configuration behaves the same on another machine: the
hardware it runs on, the workload it serves (level, shape and mix of the offered load),
and how the system responds to load with the configuration's own effect taken out
(curves relative to the KPI's own level, distributions as a level and tail ratios), so
two machines of one kind running different configurations still look alike.

Every system gets a vector of the same length whatever KPIs it reports: positions
are fixed by an ordered list of standard KPIs and a fixed number of load bands
(consecutive regimes of the fleet-wide scale). What a system lacks is filled with
a neutral value, chosen so that it says "nothing known" rather than "small":

- a KPI the system does not report: all its entries 0.0 and its ``present`` flag 0.0;
- a load band a KPI was never seen in: 0.0, the same as "no different from its own
  average";
- no knee: ``has_knee`` 0.0 and knee position 0.0;
- unknown hardware: 0.0 for cores and memory and no architecture flag set;
- a mix KPI (network, disk writes) the system does not report: 0.0 per unit of load;
- a pair of KPIs never seen together: correlation 0.0.

Magnitudes go through ``slog(x) = sign(x) * log(1 + |x|)`` so that bytes per second
and percent sit on comparable scales; the similarity engine standardises each
group over the fleet on top of that.

Groups (name, offset, length), laid out one after the other and covering the whole
vector:

- ``hardware``: log2 cores, log2 memory (GiB), architecture flags. The OS is left out: it
  rarely decides how a configuration performs, and fleets mix distributions freely.
- ``workload``: the offered load's typical and busy level, its spread (busy over quiet)
  and its mix (network bytes in and out, disk bytes written, per unit of load).
- ``curves``: per KPI, its mean in each load band relative to its own overall level,
  its sensitivity and curvature against load (relative to its level), whether it has a
  knee. Where the knee falls is left out: that moves with the capacity a configuration
  gives, and so does the KPI's level.
- ``distribution``: per KPI, whether it is reported, its typical level and its tail
  (p95 and p99 over p50, as log ratios).
- ``correlations``: Pearson's r of every pair of standard KPIs.

The similarity engine compares ``hardware`` and ``workload`` value by value and the other
groups by direction (see ``cfgclone.similarity``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import numpy.typing as npt

from cfgclone import vocabulary
from cfgclone.behaviour.errors import IncompatibleFingerprint
from cfgclone.behaviour.model import Fingerprint, KpiProfile, SystemProfile
from cfgclone.behaviour.regimes import DEFAULT_LOAD_SCALE, LoadScale

__all__ = [
    "DEFAULT_EMBEDDING_LAYOUT",
    "STANDARD_KPIS",
    "Embedding",
    "EmbeddingGroup",
    "EmbeddingLayout",
    "embed",
]

STANDARD_KPIS: tuple[str, ...] = vocabulary.STANDARD_KPIS
"""KPIs with a place in the embedding, in embedding order (the vocabulary's). Other KPIs
are not embedded."""

_ARCHITECTURES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
}
_ARCHITECTURE_FLAGS = ("x86_64", "aarch64", "other")
_HARDWARE_LENGTH = 2 + len(_ARCHITECTURE_FLAGS)
_MIX_KPIS: tuple[str, ...] = (
    vocabulary.NETWORK_RECEIVE.name,
    vocabulary.NETWORK_TRANSMIT.name,
    vocabulary.DISK_WRITE.name,
)
"""KPIs that say what the workload is made of, per unit of load: bytes a request brings
and takes away, and writes it causes. A configuration changes them little (unlike disk
reads, which a cache takes away)."""
_WORKLOAD_LENGTH = 3 + len(_MIX_KPIS)  # typical level, busy level, spread, then the mix
_CURVE_SCALARS = 3  # sensitivity, curvature, has_knee
_DISTRIBUTION_SCALARS = 4  # present, p50, p95 over p50, p99 over p50
_CURVE_LIMIT = 10.0


@dataclass(frozen=True)
class EmbeddingGroup:
    """A named slice of the embedding: entries ``offset`` to ``offset + length - 1``."""

    name: str
    offset: int
    length: int


@dataclass(frozen=True)
class EmbeddingLayout:
    """Which KPIs and load bands an embedding has: one layout for the whole fleet."""

    kpis: tuple[str, ...] = STANDARD_KPIS
    """Standard KPIs in embedding order."""
    scale: LoadScale = field(default=DEFAULT_LOAD_SCALE)
    """Regime scale the fingerprints are built on."""
    regimes_per_band: int = 4
    """Consecutive regimes per load band (4 regimes = two doublings of load by default)."""

    def __post_init__(self) -> None:
        if not self.kpis or len(set(self.kpis)) != len(self.kpis):
            raise ValueError("an embedding layout needs distinct KPI names")
        if self.regimes_per_band < 1:
            raise ValueError(f"regimes per band must be at least 1, got {self.regimes_per_band}")

    @property
    def bands(self) -> int:
        """Number of load bands."""
        return math.ceil(self.scale.regime_count / self.regimes_per_band)

    @property
    def groups(self) -> tuple[EmbeddingGroup, ...]:
        """The named groups, consecutive from offset 0."""
        kpi_count = len(self.kpis)
        lengths = (
            ("hardware", _HARDWARE_LENGTH),
            ("workload", _WORKLOAD_LENGTH),
            ("curves", kpi_count * (self.bands + _CURVE_SCALARS)),
            ("distribution", kpi_count * _DISTRIBUTION_SCALARS),
            ("correlations", max(kpi_count * (kpi_count - 1) // 2, 1)),
        )
        groups: list[EmbeddingGroup] = []
        offset = 0
        for name, length in lengths:
            groups.append(EmbeddingGroup(name, offset, length))
            offset += length
        return tuple(groups)

    @property
    def length(self) -> int:
        """Length of every embedding with this layout."""
        last = self.groups[-1]
        return last.offset + last.length


DEFAULT_EMBEDDING_LAYOUT = EmbeddingLayout()


@dataclass(frozen=True, eq=False)
class Embedding:
    """A fingerprint's vector and the groups that split it."""

    vector: npt.NDArray[np.float32]
    """Finite float32 entries, read-only."""
    groups: tuple[EmbeddingGroup, ...]

    def group(self, name: str) -> npt.NDArray[np.float32]:
        """The entries of one group."""
        for group in self.groups:
            if group.name == name:
                return self.vector[group.offset : group.offset + group.length]
        raise KeyError(name)


def _slog(value: float) -> float:
    return math.copysign(math.log1p(abs(value)), value)


def _log_ratio(value: float, reference: float) -> float:
    """``ln(value / reference)`` for positive values: a relative difference, whatever the
    unit (latency in seconds is far below 1, where ``slog`` is nearly linear); the
    difference of ``slog`` otherwise."""
    if value > 0.0 and reference > 0.0:
        return math.log(value / reference)
    return _slog(value) - _slog(reference)


def _hardware(system: SystemProfile) -> list[float]:
    cores = math.log2(system.cpu_cores) if system.cpu_cores > 0 else 0.0
    memory = math.log2(1.0 + system.memory_bytes / 2**30) if system.memory_bytes > 0 else 0.0
    architecture = system.architecture.strip().lower()
    arch = _ARCHITECTURES.get(architecture, "other") if architecture else ""
    return [cores, memory] + [1.0 if arch == flag else 0.0 for flag in _ARCHITECTURE_FLAGS]


def _workload(fingerprint: Fingerprint) -> list[float]:
    """Level, spread and mix of the offered load.

    Regimes are positions in each system's own range, so how busy a system is must be
    said here: the typical (p50) and busy (p95) load on the log scale, and the spread
    as doublings from quiet (p5) to busy. The mix is each mix KPI's mean per unit of
    mean load, on the log scale.
    """
    load = fingerprint.load_profile.overall()
    p05, p50, p95 = load.sketch.quantiles((0.05, 0.5, 0.95))
    spread = math.log2(p95 / p05) if p05 > 0.0 and p95 > 0.0 else 0.0
    entries = [_slog(p50), _slog(p95), spread]
    for kpi in _MIX_KPIS:
        profile = fingerprint.profiles.get(kpi)
        if profile is None or profile.count <= 0.0 or load.mean <= 0.0:
            entries.append(0.0)
            continue
        entries.append(_slog(max(profile.overall().mean, 0.0) / load.mean))
    return entries


def _band_means(profile: KpiProfile, layout: EmbeddingLayout) -> list[float | None]:
    weights = [0.0] * layout.bands
    sums = [0.0] * layout.bands
    for regime, stats in profile.regimes.items():
        band = min(regime // layout.regimes_per_band, layout.bands - 1)
        weights[band] += stats.count
        sums[band] += stats.count * stats.mean
    return [s / w if w > 0.0 else None for s, w in zip(sums, weights, strict=True)]


def _curves(fingerprint: Fingerprint, layout: EmbeddingLayout) -> list[float]:
    entries: list[float] = []
    for kpi in layout.kpis:
        profile = fingerprint.profiles.get(kpi)
        if profile is None or profile.count <= 0.0:
            entries.extend([0.0] * (layout.bands + _CURVE_SCALARS))
            continue
        overall = profile.overall()
        entries.extend(
            0.0 if mean is None else _log_ratio(mean, overall.mean)
            for mean in _band_means(profile, layout)
        )
        curve = fingerprint.curves[kpi]
        spread = abs(overall.mean) + math.sqrt(overall.variance)
        if spread > 0.0:
            sensitivity = max(-_CURVE_LIMIT, min(_CURVE_LIMIT, curve.slope / spread))
            curvature = max(-_CURVE_LIMIT, min(_CURVE_LIMIT, curve.curvature / spread))
        else:
            sensitivity = curvature = 0.0
        has_knee = 1.0 if curve.knee_load is not None and curve.knee_load > 0.0 else 0.0
        entries.extend([sensitivity, curvature, has_knee])
    return entries


def _distribution(fingerprint: Fingerprint, layout: EmbeddingLayout) -> list[float]:
    entries: list[float] = []
    for kpi in layout.kpis:
        profile = fingerprint.profiles.get(kpi)
        if profile is None or profile.count <= 0.0:
            entries.extend([0.0] * _DISTRIBUTION_SCALARS)
            continue
        p50, p95, p99 = profile.overall().sketch.quantiles((0.5, 0.95, 0.99))
        entries.extend([1.0, _slog(p50), _log_ratio(p95, p50), _log_ratio(p99, p50)])
    return entries


def _correlations(fingerprint: Fingerprint, kpis: Sequence[str]) -> list[float]:
    entries = [fingerprint.correlation(a, b) for a, b in combinations(kpis, 2)]
    return entries or [0.0]


def embed(
    fingerprint: Fingerprint, layout: EmbeddingLayout = DEFAULT_EMBEDDING_LAYOUT
) -> Embedding:
    """The fixed-length embedding of a fingerprint; never NaN.

    Regimes are positions in the system's own load range (see
    :mod:`cfgclone.behaviour.regimes`). Raises ``IncompatibleFingerprint`` when the
    fingerprint's scale has another number of regimes than the layout's (its regimes
    would land in the wrong bands).
    """
    if fingerprint.scale.regime_count != layout.scale.regime_count:
        raise IncompatibleFingerprint(
            f"fingerprint load scale has {fingerprint.scale.regime_count} regimes, the "
            f"embedding's {layout.scale.regime_count}"
        )
    entries = (
        _hardware(fingerprint.system)
        + _workload(fingerprint)
        + _curves(fingerprint, layout)
        + _distribution(fingerprint, layout)
        + _correlations(fingerprint, layout.kpis)
    )
    values = np.asarray(entries, dtype=np.float64)
    vector = np.where(np.isfinite(values), values, 0.0).astype(np.float32)
    if vector.size != layout.length:
        raise AssertionError(f"embedding has {vector.size} entries, layout {layout.length}")
    vector.setflags(write=False)
    return Embedding(vector, layout.groups)
