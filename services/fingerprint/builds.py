"""Fingerprint builds in progress and recently ended, so a caller can follow one.

A build runs inside one BuildFingerprint call; this registry lets a second call
(GetFingerprintBuild) read its phase and percent done meanwhile. It is memory of
the serving replica only, bounded to the most recent builds: progress is for people
watching a build, not a record (the fingerprint itself is the record).
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cfgclone.common.errors import AlreadyExists, InvalidArgument, NotFound
from cfgclone.common.message_checks import quote
from cfgclone.common.requests import SYSTEM_ID_PATTERN

__all__ = ["DEFAULT_KEPT_BUILDS", "Build", "BuildPhase", "Builds", "Tracker", "build_id_of"]

DEFAULT_KEPT_BUILDS = 1000
"""Builds remembered by a replica; the oldest ended ones are forgotten first."""


class BuildPhase(enum.Enum):
    """Where a build is, in the order it goes."""

    READING_SAMPLES = "reading samples"
    REGIMES = "load regimes"
    CURVES = "curves"
    EMBEDDING = "embedding"
    STORING = "storing"
    SUCCEEDED = "stored"
    FAILED = "failed"

    @property
    def percent(self) -> float:
        """Percent of the build done on reaching this phase (by the share of time the
        phases before it take on a million samples: reading dominates)."""
        return _PERCENT_AT[self]

    @property
    def ended(self) -> bool:
        return self in (BuildPhase.SUCCEEDED, BuildPhase.FAILED)


_PERCENT_AT = {
    BuildPhase.READING_SAMPLES: 0.0,
    BuildPhase.REGIMES: 50.0,
    BuildPhase.CURVES: 75.0,
    BuildPhase.EMBEDDING: 80.0,
    BuildPhase.STORING: 90.0,
    BuildPhase.SUCCEEDED: 100.0,
    BuildPhase.FAILED: 100.0,
}


@dataclass(frozen=True)
class Build:
    """One build as a caller sees it."""

    system_id: str
    build_id: str
    phase: BuildPhase
    create_time: datetime
    update_time: datetime
    samples: int = 0
    """Samples read, once they are."""
    fingerprint: str = ""
    """Name of the fingerprint stored, once the build has succeeded."""
    error: str = ""
    """Why the build failed."""

    @property
    def name(self) -> str:
        return f"systems/{self.system_id}/fingerprintBuilds/{self.build_id}"


def build_id_of(requested: str, field: str = "build_id") -> str:
    """The id a build runs under: the caller's, checked (INVALID_ARGUMENT naming
    ``field``), or a new one when the caller gave none."""
    if not requested:
        return f"b{uuid.uuid4().hex}"
    if SYSTEM_ID_PATTERN.fullmatch(requested) is None:
        raise InvalidArgument.for_field(
            field,
            "a build id must be 1-63 lower-case letters, digits and '-', starting with a "
            f"letter (got {quote(requested)})",
        )
    return requested


class Builds:
    """The builds of one replica: running ones, and the most recent ``kept`` in all."""

    def __init__(self, kept: int = DEFAULT_KEPT_BUILDS) -> None:
        if kept < 1:
            raise ValueError(f"kept must be at least 1, got {kept}")
        self._kept = kept
        self._builds: OrderedDict[tuple[str, str], Build] = OrderedDict()

    def start(self, system_id: str, build_id: str) -> Build:
        """Record a new build in its first phase; ALREADY_EXISTS while one of that id runs."""
        key = (system_id, build_id)
        running = self._builds.get(key)
        if running is not None and not running.phase.ended:
            raise AlreadyExists(
                f"{running.name} is running; choose another build_id",
                reason="BUILD_RUNNING",
                metadata={"build": running.name},
            )
        now = datetime.now(UTC)
        build = Build(system_id, build_id, BuildPhase.READING_SAMPLES, now, now)
        self._builds.pop(key, None)
        self._builds[key] = build
        self._forget_oldest()
        return build

    def advance(
        self,
        build: Build,
        phase: BuildPhase,
        *,
        samples: int | None = None,
        fingerprint: str = "",
        error: str = "",
    ) -> Build:
        """``build`` moved on to ``phase``, having read ``samples``, stored ``fingerprint``
        or failed with ``error``."""
        moved = replace(
            build,
            phase=phase,
            update_time=datetime.now(UTC),
            samples=build.samples if samples is None else samples,
            fingerprint=fingerprint or build.fingerprint,
            error=error or build.error,
        )
        key = (build.system_id, build.build_id)
        if key in self._builds:
            self._builds[key] = moved
        return moved

    def get(self, system_id: str, build_id: str) -> Build:
        """A build this replica remembers; NOT_FOUND otherwise."""
        build = self._builds.get((system_id, build_id))
        if build is None:
            name = f"systems/{system_id}/fingerprintBuilds/{build_id}"
            raise NotFound(
                f"{name} is not known here: it never ran on this replica or ended long ago",
                reason="BUILD_NOT_FOUND",
                metadata={"build": name},
            )
        return build

    def __len__(self) -> int:
        return len(self._builds)

    def _forget_oldest(self) -> None:
        """Drop the oldest ended builds beyond ``kept``; running ones stay while they run."""
        excess = len(self._builds) - self._kept
        if excess <= 0:
            return
        for key in [k for k, b in self._builds.items() if b.phase.ended][:excess]:
            del self._builds[key]


class Tracker:
    """One running build's progress, as the build reports it phase by phase; without
    ``builds`` nobody watches (a build the service starts by itself)."""

    def __init__(self, builds: Builds | None = None, build: Build | None = None) -> None:
        self._builds = builds
        self.build = build

    async def reached(self, phase: BuildPhase, *, samples: int | None = None) -> None:
        """The build has reached ``phase``; lets the event loop answer those who watch it
        (the work between two phases runs without a pause). Progress never goes back: a
        build that starts over on another's load scale stays where it was until it passes."""
        if self._builds is not None and self.build is not None:
            if phase.percent >= self.build.phase.percent:
                self.build = self._builds.advance(self.build, phase, samples=samples)
            await asyncio.sleep(0)

    def succeeded(self, fingerprint: str) -> None:
        if self._builds is not None and self.build is not None:
            self.build = self._builds.advance(
                self.build, BuildPhase.SUCCEEDED, fingerprint=fingerprint
            )

    def failed(self, error: str) -> None:
        if self._builds is not None and self.build is not None:
            self.build = self._builds.advance(self.build, BuildPhase.FAILED, error=error)
