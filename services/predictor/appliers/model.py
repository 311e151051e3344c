"""What every applier shares: the system it changes, the result, the failure, the interface.

An applier is the predictor's only way to change a real system. It calls the
configuration management a team already runs (PostgreSQL ``ALTER SYSTEM``, an
Ansible playbook, any command) so that cfgclone adds a guard in front of the
team's tooling instead of replacing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Applier",
    "ApplyFailed",
    "ApplyResult",
    "ConfigValue",
    "Configuration",
    "ManagedSystem",
    "changed_parameters",
]

ConfigValue = str | int | float | bool
"""One parameter's value, as a configuration management tool would write it."""

Configuration = Mapping[str, ConfigValue]
"""Parameter name -> value."""


@dataclass(frozen=True)
class ManagedSystem:
    """A system as the appliers know it."""

    name: str
    """The system's resource name (``systems/db-01``), used in logs and results."""
    host: str
    """The name the team's tooling knows the machine by (an inventory host)."""
    endpoint: str | None = None
    """How an applier reaches the managed software directly, where it does (for
    PostgreSQL a libpq connection string); None for appliers that go through a tool."""


@dataclass(frozen=True)
class ApplyResult:
    """What one apply or rollback did."""

    system: str
    """The system's resource name."""
    applier: str
    """The applier that did it (``postgresql``, ``command``, ``ansible``, ``simulated``)."""
    changed: tuple[str, ...]
    """Parameters whose value changed, in sorted order. For appliers that cannot observe
    the effective value this is the difference from the last known configuration."""
    restart_required: tuple[str, ...]
    """Parameters written but not in effect until the managed software restarts."""
    output: str
    """What the tool printed (or the statements run), for the audit log."""
    duration_s: float
    """Wall time of the whole operation, check run included."""
    check_output: str = ""
    """Output of the check (dry-run, diff) run that preceded the real one, if any."""
    exit_status: int | None = None
    """Exit status of the tool, for appliers that run one."""


class ApplyFailed(Exception):
    """An apply, read or rollback did not succeed; carries what the tool said.

    The system may be partly changed when this is raised by a tool-based applier
    (a playbook that failed half way); the predictor answers with a rollback.
    """

    def __init__(
        self,
        message: str,
        *,
        output: str = "",
        exit_status: int | None = None,
        timed_out: bool = False,
        duration_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.output = output
        """What the tool printed before it failed."""
        self.exit_status = exit_status
        """The tool's exit status; None when it was killed or never ran."""
        self.timed_out = timed_out
        """True when the tool was killed at its time limit."""
        self.duration_s = duration_s
        """Wall time until the failure, when known."""


@runtime_checkable
class Applier(Protocol):
    """Changes a system's configuration through the team's configuration management.

    ``apply`` sets every parameter of the configuration it is given.
    ``read_current`` returns the configuration as the applier manages it, and
    ``rollback`` makes the system's configuration equal to a configuration read
    earlier, so ``previous = read_current(); apply(...); rollback(previous)``
    returns the system to where it was. Every method raises ``ApplyFailed``, with
    the tool's output, when it does not succeed.
    """

    @property
    def name(self) -> str:
        """Short name of the applier, recorded with every change."""
        ...

    async def apply(self, system: ManagedSystem, configuration: Configuration) -> ApplyResult:
        """Set every parameter of ``configuration`` on ``system``."""
        ...

    async def read_current(self, system: ManagedSystem) -> dict[str, ConfigValue]:
        """The configuration the applier manages on ``system`` now."""
        ...

    async def rollback(
        self, system: ManagedSystem, previous_configuration: Configuration
    ) -> ApplyResult:
        """Return ``system`` to ``previous_configuration`` (as ``read_current`` gave it)."""
        ...


def changed_parameters(before: Configuration | None, after: Configuration) -> tuple[str, ...]:
    """Parameters that differ between two configurations (all of ``after`` when
    ``before`` is unknown), in sorted order."""
    if before is None:
        return tuple(sorted(after))
    names = set(before) | set(after)
    return tuple(sorted(name for name in names if before.get(name) != after.get(name)))
