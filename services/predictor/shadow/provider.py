"""The shadow provider plugin interface.

A provider makes a throw-away copy of a target; a copy takes configurations
and runs workloads. Providers guarantee the cleanup: the copy is an async
context manager that destroys everything it made when the block ends, by
error, by cancellation (a timeout) or normally.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from cfgclone.predictor.shadow.model import (
    Configuration,
    ShadowTarget,
    WorkloadResult,
    WorkloadShape,
)

__all__ = ["ShadowCopy", "ShadowProvider"]


@runtime_checkable
class ShadowCopy(Protocol):
    """A live, throw-away copy of a target."""

    @property
    def details(self) -> Mapping[str, str]:
        """What a reader of the evidence should know about the copy."""
        ...

    async def apply(self, configuration: Configuration) -> None:
        """Make the copy run with the target's settings overlaid by ``configuration``.

        Replaces the previous configuration entirely (parameters of the previous
        one that ``configuration`` lacks return to the target's values), restarting
        the copy when a parameter needs it. Raises ``ShadowFailed`` when the
        configuration is refused or the copy does not come back.
        """
        ...

    async def run_workload(self, load: WorkloadShape, duration_s: float) -> WorkloadResult:
        """Run the synthetic workload for ``duration_s`` seconds and sample the KPIs.

        A workload that fails is reported in ``WorkloadResult.error``; the run is
        bounded in time by the provider.
        """
        ...


@runtime_checkable
class ShadowProvider(Protocol):
    """Makes throw-away copies of targets."""

    @property
    def name(self) -> str:
        """Short name recorded with every shadow run (``postgresql``, ``simulated``)."""
        ...

    def copy_of(self, target: ShadowTarget) -> AbstractAsyncContextManager[ShadowCopy]:
        """A copy of ``target``, destroyed when the context ends, however it ends.

        Entering raises ``ShadowFailed`` when no copy can be made (and leaves
        nothing behind).
        """
        ...
