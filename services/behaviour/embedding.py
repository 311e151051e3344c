"""A fixed-length embedding of a fingerprint for the similarity engine.

Every system gets a vector of the same length whatever KPIs it reports: positions
are fixed by an ordered list of standard KPIs and a fixed number of load bands
(consecutive regimes of the fleet-wide scale). What a system lacks is filled with
a neutral value, chosen so that it says "nothing known" rather than "small":

- a KPI the system does not report: all its entries 0.0 and its ``present`` flag 0.0;
- a load band a KPI was never seen in: 0.0, the same as "no different from its own
  average";
- no knee: ``has_knee`` 0.0 and knee position 0.0;
- unknown hardware: 0.0 for cores and memory and no one-hot flag set;
- a pair of KPIs never seen together: correlation 0.0.

Magnitudes go through ``slog(x) = sign(x) * log(1 + |x|)`` so that bytes per second
and percent sit on comparable scales; the similarity engine standardises each
group over the fleet on top of that.

Groups (name, offset, length): ``hardware``, ``curves``, ``distribution``,
``correlations``, laid out one after the other and covering the whole vector.
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
_OS_FAMILIES = {
    "debian": "debian",
    "ubuntu": "ubuntu",
    "rhel": "rhel",
    "red": "rhel",
    "centos": "rhel",
    "rocky": "rhel",
    "almalinux": "rhel",
    "alma": "rhel",
    "fedora": "rhel",
    "oracle": "rhel",
    "amzn": "rhel",
    "amazon": "rhel",
}
_OS_FLAGS = ("debian", "ubuntu", "rhel", "other")
_HARDWARE_LENGTH = 2 + len(_ARCHITECTURE_FLAGS) + len(_OS_FLAGS)
_CURVE_SCALARS = 4  # sensitivity, curvature, has_knee, knee position
_DISTRIBUTION_SCALARS = 4  # present, p50, p95, p99
_LOAD_SCALARS = 2  # the load's level (median) and spread (p95 over p5), on the log scale
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
            ("curves", kpi_count * (self.bands + _CURVE_SCALARS)),
            ("distribution", _LOAD_SCALARS + self.bands + kpi_count * _DISTRIBUTION_SCALARS),
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


def _hardware(system: SystemProfile) -> list[float]:
    cores = math.log2(system.cpu_cores) if system.cpu_cores > 0 else 0.0
    memory = math.log2(1.0 + system.memory_bytes / 2**30) if system.memory_bytes > 0 else 0.0
    architecture = system.architecture.strip().lower()
    arch = _ARCHITECTURES.get(architecture, "other") if architecture else ""
    words = system.os.strip().lower().replace("-", " ").split()
    family = _OS_FAMILIES.get(words[0], "other") if words else ""
    return (
        [cores, memory]
        + [1.0 if arch == flag else 0.0 for flag in _ARCHITECTURE_FLAGS]
        + [1.0 if family == flag else 0.0 for flag in _OS_FLAGS]
    )


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
    scale = fingerprint.scale
    for kpi in layout.kpis:
        profile = fingerprint.profiles.get(kpi)
        if profile is None or profile.count <= 0.0:
            entries.extend([0.0] * (layout.bands + _CURVE_SCALARS))
            continue
        overall = profile.overall()
        level = _slog(overall.mean)
        entries.extend(
            0.0 if mean is None else _slog(mean) - level for mean in _band_means(profile, layout)
        )
        curve = fingerprint.curves[kpi]
        spread = abs(overall.mean) + math.sqrt(overall.variance)
        if spread > 0.0:
            sensitivity = max(-_CURVE_LIMIT, min(_CURVE_LIMIT, curve.slope / spread))
            curvature = max(-_CURVE_LIMIT, min(_CURVE_LIMIT, curve.curvature / spread))
        else:
            sensitivity = curvature = 0.0
        if curve.knee_load is not None and curve.knee_load > 0.0:
            position = math.log2(curve.knee_load / scale.base) * scale.regimes_per_octave
            entries.extend(
                [sensitivity, curvature, 1.0, max(0.0, min(1.0, position / scale.regime_count))]
            )
        else:
            entries.extend([sensitivity, curvature, 0.0, 0.0])
    return entries


def _distribution(fingerprint: Fingerprint, layout: EmbeddingLayout) -> list[float]:
    load = fingerprint.load_profile
    total = load.count
    occupancy = [0.0] * layout.bands
    for regime, stats in load.regimes.items():
        band = min(regime // layout.regimes_per_band, layout.bands - 1)
        occupancy[band] += stats.count / total if total > 0.0 else 0.0
    # The workload's level and spread: regimes are positions in each system's own
    # range, so how busy a system is must be said here.
    p05, p50, p95 = load.overall().sketch.quantiles((0.05, 0.5, 0.95))
    spread = math.log2(p95 / p05) if p05 > 0.0 and p95 > 0.0 else 0.0
    entries = [_slog(p50), spread, *occupancy]
    for kpi in layout.kpis:
        profile = fingerprint.profiles.get(kpi)
        if profile is None or profile.count <= 0.0:
            entries.extend([0.0] * _DISTRIBUTION_SCALARS)
            continue
        p50, p95, p99 = profile.overall().sketch.quantiles((0.5, 0.95, 0.99))
        entries.extend([1.0, _slog(p50), _slog(p95), _slog(p99)])
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
