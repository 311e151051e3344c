"""The collector's own settings, from ``CFGCLONE_COLLECTOR_*`` variables.

* ``CFGCLONE_COLLECTOR_MAX_BATCH_SAMPLES``: most samples one batch may hold (200000).
* ``CFGCLONE_COLLECTOR_MAX_FUTURE_SECONDS``: how far ahead of the collector's clock a
  sample may be (300).
* ``CFGCLONE_COLLECTOR_PARTITIONS_AHEAD_DAYS``: daily partitions kept ready beyond today (2).
* ``CFGCLONE_COLLECTOR_MAINTENANCE_SECONDS``: how often partitions and retention are
  maintained (600).
* ``CFGCLONE_COLLECTOR_SCRAPE``: ``0`` turns the agentless scraper off in this replica (1).
* ``CFGCLONE_COLLECTOR_SCRAPE_REFRESH_SECONDS``: how soon a new or removed scrape target
  is noticed (5).
* ``CFGCLONE_COLLECTOR_SCRAPE_ALLOW_LOOPBACK``: ``1`` lets scrape targets be on loopback
  (127.0.0.0/8, ::1), for a collector scraping exporters on its own machine (0).
  Link-local and cloud metadata addresses are refused whatever this says.
* ``CFGCLONE_COLLECTOR_MAX_METRICS_PER_SYSTEM``: most distinct metrics one system may
  define; a batch that would add more is refused with FAILED_PRECONDITION (10000).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cfgclone.collector.sample_columns import BatchLimits
from cfgclone.collector.scrape_addresses import AddressPolicy
from cfgclone.common.settings import SettingsError, env_float, env_int

__all__ = ["CollectorSettings"]

_PREFIX = "CFGCLONE_COLLECTOR_"


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """How the collector ingests, keeps and scrapes samples."""

    max_batch_samples: int = 200_000
    """Most samples in one batch; larger batches are refused, senders split them."""
    max_future_seconds: float = 300.0
    """How far ahead of the collector's clock a sample may be (clock skew allowance)."""
    partitions_ahead_days: int = 2
    """Daily partitions kept ready beyond today, so ingest never waits for one."""
    maintenance_seconds: float = 600.0
    """Interval of partition and retention maintenance."""
    scrape: bool = True
    """Whether this replica runs the agentless scraper."""
    scrape_refresh_seconds: float = 5.0
    """How often the scraper reloads the list of targets."""
    scrape_allow_loopback: bool = False
    """Whether scrape targets may be on loopback; link-local and metadata never may."""
    max_metrics_per_system: int = 10_000
    """Most distinct metric names one system may define."""

    def __post_init__(self) -> None:
        if self.max_batch_samples < 1:
            raise SettingsError("CFGCLONE_COLLECTOR_MAX_BATCH_SAMPLES must be at least 1")
        if self.max_future_seconds < 0:
            raise SettingsError("CFGCLONE_COLLECTOR_MAX_FUTURE_SECONDS must not be negative")
        if self.partitions_ahead_days < 0:
            raise SettingsError("CFGCLONE_COLLECTOR_PARTITIONS_AHEAD_DAYS must not be negative")
        if self.maintenance_seconds < 1:
            raise SettingsError("CFGCLONE_COLLECTOR_MAINTENANCE_SECONDS must be at least 1")
        if self.scrape_refresh_seconds <= 0:
            raise SettingsError("CFGCLONE_COLLECTOR_SCRAPE_REFRESH_SECONDS must be positive")
        if self.max_metrics_per_system < 1:
            raise SettingsError("CFGCLONE_COLLECTOR_MAX_METRICS_PER_SYSTEM must be at least 1")

    @property
    def limits(self) -> BatchLimits:
        return BatchLimits(
            max_samples=self.max_batch_samples,
            max_future_ns=int(self.max_future_seconds * 1e9),
        )

    @property
    def scrape_addresses(self) -> AddressPolicy:
        return AddressPolicy(allow_loopback=self.scrape_allow_loopback)

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> CollectorSettings:
        """Settings from the service's options (``CFGCLONE_COLLECTOR_*`` without the prefix)."""
        env = {f"{_PREFIX}{key}": value for key, value in options.items()}
        defaults = cls()
        return cls(
            max_batch_samples=env_int(
                env, f"{_PREFIX}MAX_BATCH_SAMPLES", defaults.max_batch_samples
            ),
            max_future_seconds=env_float(
                env, f"{_PREFIX}MAX_FUTURE_SECONDS", defaults.max_future_seconds
            ),
            partitions_ahead_days=env_int(
                env, f"{_PREFIX}PARTITIONS_AHEAD_DAYS", defaults.partitions_ahead_days
            ),
            maintenance_seconds=env_float(
                env, f"{_PREFIX}MAINTENANCE_SECONDS", defaults.maintenance_seconds
            ),
            scrape=_flag(env, f"{_PREFIX}SCRAPE", default=True),
            scrape_refresh_seconds=env_float(
                env, f"{_PREFIX}SCRAPE_REFRESH_SECONDS", defaults.scrape_refresh_seconds
            ),
            scrape_allow_loopback=_flag(env, f"{_PREFIX}SCRAPE_ALLOW_LOOPBACK", default=False),
            max_metrics_per_system=env_int(
                env, f"{_PREFIX}MAX_METRICS_PER_SYSTEM", defaults.max_metrics_per_system
            ),
        )


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("0", "1", "true", "false", "yes", "no", ""):
        raise SettingsError(f"{name} must be 0 or 1 (got {raw!r})")
    return default if raw == "" else raw in ("1", "true", "yes")
