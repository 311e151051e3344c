"""Simulated applier: systems in memory, with switches to make it fail or hang.

For tests of the guarded apply workflow: it behaves like the PostgreSQL
applier (``apply`` sets the given parameters, ``rollback`` replaces the whole
configuration) and records every call, and a test can make apply or rollback
fail or never return to prove that the workflow copes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from cfgclone.predictor.appliers.model import (
    ApplyFailed,
    ApplyResult,
    Configuration,
    ConfigValue,
    ManagedSystem,
    changed_parameters,
)

__all__ = ["AppliedCall", "SimulatedApplier"]


@dataclass(frozen=True)
class AppliedCall:
    """One call the simulated applier received."""

    action: str
    """``apply``, ``rollback`` or ``read``."""
    system: str
    configuration: dict[str, ConfigValue]
    """The configuration passed in (empty for reads)."""


class SimulatedApplier:
    """An in-memory applier.

    The switches are plain attributes a test flips: ``fail_apply`` and
    ``fail_rollback`` raise ``ApplyFailed``; ``hang_apply`` and
    ``hang_rollback`` wait until cancelled, which is what a stuck tool looks
    like to a caller that bounds it with a timeout.
    """

    def __init__(
        self,
        systems: dict[str, dict[str, ConfigValue]] | None = None,
        *,
        restart_parameters: Iterable[str] = (),
        delay_s: float = 0.0,
    ) -> None:
        self.systems: dict[str, dict[str, ConfigValue]] = {
            name: dict(configuration) for name, configuration in (systems or {}).items()
        }
        """Each system's configuration by resource name."""
        self.restart_parameters = frozenset(restart_parameters)
        self.delay_s = delay_s
        """Time each call takes."""
        self.fail_apply = False
        self.fail_rollback = False
        self.hang_apply = False
        self.hang_rollback = False
        self.calls: list[AppliedCall] = []
        """Every call, in order."""

    @property
    def name(self) -> str:
        return "simulated"

    async def apply(self, system: ManagedSystem, configuration: Configuration) -> ApplyResult:
        started = time.monotonic()
        self.calls.append(AppliedCall("apply", system.name, dict(configuration)))
        await self._act(fail=self.fail_apply, hang=self.hang_apply, what="apply", system=system)
        before = self.systems.get(system.name, {})
        after = {**before, **configuration}
        return self._store(system, before, after, started)

    async def read_current(self, system: ManagedSystem) -> dict[str, ConfigValue]:
        self.calls.append(AppliedCall("read", system.name, {}))
        return dict(self.systems.get(system.name, {}))

    async def rollback(
        self, system: ManagedSystem, previous_configuration: Configuration
    ) -> ApplyResult:
        started = time.monotonic()
        self.calls.append(AppliedCall("rollback", system.name, dict(previous_configuration)))
        await self._act(
            fail=self.fail_rollback, hang=self.hang_rollback, what="rollback", system=system
        )
        before = self.systems.get(system.name, {})
        return self._store(system, before, dict(previous_configuration), started)

    async def _act(self, *, fail: bool, hang: bool, what: str, system: ManagedSystem) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if hang:
            await asyncio.Event().wait()
        if fail:
            raise ApplyFailed(
                f"simulated {what} of {system.name} failed",
                output=f"simulated tool: {what} refused",
                exit_status=1,
            )

    def _store(
        self,
        system: ManagedSystem,
        before: dict[str, ConfigValue],
        after: dict[str, ConfigValue],
        started: float,
    ) -> ApplyResult:
        self.systems[system.name] = after
        changed = changed_parameters(before, after)
        return ApplyResult(
            system=system.name,
            applier=self.name,
            changed=changed,
            restart_required=tuple(name for name in changed if name in self.restart_parameters),
            output="\n".join(f"{name} = {after.get(name, '<reset>')}" for name in changed),
            duration_s=time.monotonic() - started,
        )
