"""Settings of the orchestrator, read once at start from ``CFGCLONE_ORCHESTRATOR_*``.

* ``CLONE_THRESHOLD``: clone as is when the similarity of source and target is at
  least this, adapt below it. Unset follows the threshold the similarity service
  reports with each score (its ``CFGCLONE_SIMILARITY_CLONE_THRESHOLD``, 0.9 by
  default), so that ``cfgclone similar`` and a clone never disagree about the same
  pair; a request's ``options.similarity_threshold`` overrides both.
* ``CALL_TIMEOUT_SECONDS``: deadline of each call to another service (default: the
  client setting ``CFGCLONE_CALL_TIMEOUT_SECONDS``, 10).
* ``POLL_INTERVAL_SECONDS``: how often a change in flight is polled (default 1).
* ``CHANGE_TIMEOUT_SECONDS``: longest wait for one change to end or be held; past it
  the target is reported with the state it had (default 1800, which covers a
  verification window of many minutes).
* ``SIMILARITY_WAIT_SECONDS``: how long to wait for a freshly built fingerprint to
  reach the similarity index (default 15).
* ``MAX_PARALLEL_TARGETS``: targets of one wave worked on at once (default 16).
* ``ADAPTATION_SCRIPTS``: user adaptation scripts run on every adapted configuration,
  in order, separated by ``os.pathsep`` (JSON in, JSON out).
* ``ADAPTATION_SCRIPT_TIMEOUT_SECONDS``: bound of one script run (default 10).
* ``DEMAND_WINDOW_SECONDS``: the source's recent history whose busy period shows what
  an adapted value must not go below (working set, requests in flight; default 86400).
* ``RESUME_INTERRUPTED``: ``true`` (default) resumes the operations a stopped
  orchestrator left running; ``false`` marks them failed.
* ``LEASE_SECONDS``: an operation whose runner has not reported for this long is
  taken over by another orchestrator process (default 30).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cfgclone.common.settings import SettingsError, env_float, env_int

_PREFIX = "CFGCLONE_ORCHESTRATOR_"


def _seconds(options: Mapping[str, str], key: str, default: float) -> timedelta:
    value = env_float(options, key, default)
    if value < 0:
        raise SettingsError(f"{_PREFIX}{key} must not be negative (got {value})")
    return timedelta(seconds=value)


def _flag(options: Mapping[str, str], key: str, default: bool) -> bool:
    raw = (options.get(key) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{_PREFIX}{key} must be true or false (got {raw!r})")


def _threshold(options: Mapping[str, str]) -> float | None:
    if not options.get("CLONE_THRESHOLD"):
        return None
    return env_float(options, "CLONE_THRESHOLD", 0.9)


@dataclass(frozen=True)
class OrchestratorSettings:
    """How clone operations run; see the module docstring for the variables."""

    clone_threshold: float | None = None
    """Clone as is at or above this similarity; None follows the similarity service."""
    call_timeout: timedelta = timedelta(seconds=10)
    """Deadline of each call to another service."""
    poll_interval: timedelta = timedelta(seconds=1)
    """Pause between two reads of a change in flight."""
    change_timeout: timedelta = timedelta(minutes=30)
    """Longest wait for one change to reach a final state or be held."""
    similarity_wait: timedelta = timedelta(seconds=15)
    """Longest wait for a new fingerprint to be indexed by the similarity service."""
    max_parallel_targets: int = 16
    """Targets of one wave worked on at once."""
    adaptation_scripts: tuple[Path, ...] = ()
    """User adaptation scripts, run in order on every adapted configuration."""
    adaptation_script_timeout: timedelta = timedelta(seconds=10)
    """Bound of one adaptation script run."""
    demand_window: timedelta = timedelta(days=1)
    """Source history read for the working set and concurrency adaptation keeps to."""
    resume_interrupted: bool = True
    """Resume operations a stopped process left running (else mark them failed)."""
    lease: timedelta = timedelta(seconds=30)
    """Silence after which another process takes a running operation over."""

    def __post_init__(self) -> None:
        if self.clone_threshold is not None and not 0.0 <= self.clone_threshold <= 1.0:
            raise SettingsError(f"{_PREFIX}CLONE_THRESHOLD must be within 0-1")
        if self.call_timeout <= timedelta(0) or self.poll_interval <= timedelta(0):
            raise SettingsError(
                f"{_PREFIX}CALL_TIMEOUT_SECONDS and POLL_INTERVAL_SECONDS must be positive"
            )
        if self.lease <= self.poll_interval:
            raise SettingsError(f"{_PREFIX}LEASE_SECONDS must be longer than the poll interval")
        if self.demand_window <= timedelta(0):
            raise SettingsError(f"{_PREFIX}DEMAND_WINDOW_SECONDS must be positive")
        if self.max_parallel_targets < 1:
            raise SettingsError(f"{_PREFIX}MAX_PARALLEL_TARGETS must be at least 1")
        for script in self.adaptation_scripts:
            if not script.is_file():
                raise SettingsError(f"{_PREFIX}ADAPTATION_SCRIPTS: no such file: {script}")

    @classmethod
    def from_options(
        cls, options: Mapping[str, str], call_timeout_seconds: float = 10.0
    ) -> OrchestratorSettings:
        """Read from the ``CFGCLONE_ORCHESTRATOR_*`` variables (prefix removed)."""
        defaults = cls()
        scripts = tuple(
            Path(part).expanduser()
            for part in (options.get("ADAPTATION_SCRIPTS") or "").split(os.pathsep)
            if part.strip()
        )
        return cls(
            clone_threshold=_threshold(options),
            call_timeout=_seconds(options, "CALL_TIMEOUT_SECONDS", call_timeout_seconds),
            poll_interval=_seconds(
                options, "POLL_INTERVAL_SECONDS", defaults.poll_interval.total_seconds()
            ),
            change_timeout=_seconds(
                options, "CHANGE_TIMEOUT_SECONDS", defaults.change_timeout.total_seconds()
            ),
            similarity_wait=_seconds(
                options, "SIMILARITY_WAIT_SECONDS", defaults.similarity_wait.total_seconds()
            ),
            max_parallel_targets=env_int(
                options, "MAX_PARALLEL_TARGETS", defaults.max_parallel_targets
            ),
            adaptation_scripts=scripts,
            adaptation_script_timeout=_seconds(
                options,
                "ADAPTATION_SCRIPT_TIMEOUT_SECONDS",
                defaults.adaptation_script_timeout.total_seconds(),
            ),
            demand_window=_seconds(
                options, "DEMAND_WINDOW_SECONDS", defaults.demand_window.total_seconds()
            ),
            resume_interrupted=_flag(options, "RESUME_INTERRUPTED", defaults.resume_interrupted),
            lease=_seconds(options, "LEASE_SECONDS", defaults.lease.total_seconds()),
        )
