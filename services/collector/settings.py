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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cfgclone.collector.sample_columns import BatchLimits
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

    @property
    def limits(self) -> BatchLimits:
        return BatchLimits(
            max_samples=self.max_batch_samples,
            max_future_ns=int(self.max_future_seconds * 1e9),
        )

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> CollectorSettings:
        """Settings from the service's options (``CFGCLONE_COLLECTOR_*`` without the prefix)."""
        env = {f"{_PREFIX}{key}": value for key, value in options.items()}
        defaults = cls()
        scrape = env.get(f"{_PREFIX}SCRAPE", "1").strip().lower()
        if scrape not in ("0", "1", "true", "false", "yes", "no", ""):
            raise SettingsError(f"{_PREFIX}SCRAPE must be 0 or 1 (got {scrape!r})")
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
            scrape=scrape not in ("0", "false", "no"),
            scrape_refresh_seconds=env_float(
                env, f"{_PREFIX}SCRAPE_REFRESH_SECONDS", defaults.scrape_refresh_seconds
            ),
        )
