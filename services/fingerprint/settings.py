"""Settings of the fingerprint service (``CFGCLONE_FINGERPRINT_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from cfgclone.behaviour.build import DEFAULT_ALIGN_NS
from cfgclone.behaviour.model import DEFAULT_MIN_REGIME_COUNT
from cfgclone.common.settings import SettingsError, env_float


@dataclass(frozen=True)
class FingerprintSettings:
    """How fingerprints are built and refined."""

    load_metrics: tuple[str, ...] = ()
    """Load metrics in order of preference when neither the request nor the system's
    ``cfgclone.dev/load-metric`` label names one (``LOAD_METRICS``, comma-separated);
    after them the vocabulary's offered load, then ``system.cpu.utilization``."""
    align: timedelta = timedelta(microseconds=DEFAULT_ALIGN_NS // 1000)
    """Buckets in which KPI samples meet load samples (``ALIGN_SECONDS``)."""
    min_regime_count: float = DEFAULT_MIN_REGIME_COUNT
    """Samples a load regime needs before it is trusted (``MIN_REGIME_COUNT``)."""
    refine_interval: timedelta = timedelta(seconds=60)
    """How often the background loop refines fingerprints with new samples
    (``REFINE_INTERVAL_SECONDS``; 0 turns the loop off)."""
    half_life: timedelta | None = timedelta(days=7)
    """Old behaviour weighs half as much after this long (``HALF_LIFE_HOURS``; 0 keeps
    all history at full weight)."""
    default_window: timedelta = timedelta(days=1)
    """Window of a build that names no start and has no configuration apply time."""

    def __post_init__(self) -> None:
        if self.align <= timedelta(0):
            raise SettingsError("CFGCLONE_FINGERPRINT_ALIGN_SECONDS must be positive")
        if self.min_regime_count < 1:
            raise SettingsError("CFGCLONE_FINGERPRINT_MIN_REGIME_COUNT must be at least 1")
        if self.refine_interval < timedelta(0):
            raise SettingsError("CFGCLONE_FINGERPRINT_REFINE_INTERVAL_SECONDS must not be negative")
        if self.half_life is not None and self.half_life <= timedelta(0):
            raise SettingsError("CFGCLONE_FINGERPRINT_HALF_LIFE_HOURS must not be negative")

    @property
    def align_ns(self) -> int:
        return int(self.align.total_seconds() * 1e9)

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> FingerprintSettings:
        """Read from the service's ``CFGCLONE_FINGERPRINT_*`` variables (prefix removed)."""
        defaults = cls()
        return cls(
            load_metrics=tuple(
                name.strip() for name in options.get("LOAD_METRICS", "").split(",") if name.strip()
            ),
            align=timedelta(
                seconds=env_float(options, "ALIGN_SECONDS", defaults.align.total_seconds())
            ),
            min_regime_count=env_float(options, "MIN_REGIME_COUNT", defaults.min_regime_count),
            refine_interval=timedelta(
                seconds=env_float(
                    options, "REFINE_INTERVAL_SECONDS", defaults.refine_interval.total_seconds()
                )
            ),
            half_life=_half_life(env_float(options, "HALF_LIFE_HOURS", 24 * 7)),
        )


def _half_life(hours: float) -> timedelta | None:
    if hours < 0:
        raise SettingsError("CFGCLONE_FINGERPRINT_HALF_LIFE_HOURS must not be negative")
    return timedelta(hours=hours) if hours else None
