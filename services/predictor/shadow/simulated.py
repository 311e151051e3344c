"""Simulated shadow provider: copies of a simulated system, for tests and the demo.

A copy runs :class:`cfgclone.simulation.SimulatedSystem` on the target's hardware and at
its load. Samples carry log-normal noise from a seeded generator, so a run is repeatable;
an optional drift per run shows why baseline and candidate runs are interleaved.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Mapping

import numpy as np

from cfgclone.predictor.shadow.model import (
    KPI_THROUGHPUT,
    Configuration,
    ConfigValue,
    ShadowFailed,
    ShadowTarget,
    WorkloadResult,
    WorkloadShape,
)
from cfgclone.simulation.system import SimulatedSystem

__all__ = ["SimulatedShadowCopy", "SimulatedShadowProvider"]


class SimulatedShadowCopy:
    """A copy of the simulated system; made by ``SimulatedShadowProvider.copy_of``."""

    def __init__(
        self, provider: SimulatedShadowProvider, target: ShadowTarget, rng: np.random.Generator
    ) -> None:
        self._provider = provider
        self._target = target
        self._rng = rng
        self._configuration: dict[str, ConfigValue] = dict(target.settings)
        self._runs = 0

    @property
    def details(self) -> Mapping[str, str]:
        hardware = self._target.hardware
        return {
            "model": "queue per worker",
            "seed": str(self._provider.seed),
            "cpu_cores": f"{hardware.get('cpu_cores', 0):g}" if hardware else "unbounded",
            "memory_bytes": f"{hardware.get('memory_bytes', 0):g}" if hardware else "unbounded",
        }

    async def apply(self, configuration: Configuration) -> None:
        refused = sorted(set(configuration) & self._provider.refuse_parameters)
        if refused:
            raise ShadowFailed(f"the simulated system refuses {', '.join(refused)}")
        self._configuration = {**self._target.settings, **configuration}

    async def run_workload(self, load: WorkloadShape, duration_s: float) -> WorkloadResult:
        provider = self._provider
        if set(self._configuration) & provider.hang_parameters:
            await asyncio.Event().wait()  # a stuck benchmark: only a timeout ends it
        count = max(1, math.floor(duration_s / provider.interval_s))
        if provider.pace > 0:
            await asyncio.sleep(duration_s * provider.pace)
        if set(self._configuration) & provider.fail_workload_parameters:
            return WorkloadResult(samples={}, error="the simulated workload failed")
        expected = provider.system.expected(self._configuration, load, self._target.hardware)
        drift = (1.0 + provider.system.drift_per_run) ** self._runs
        self._runs += 1
        samples: dict[str, tuple[float, ...]] = {}
        for kpi, value in expected.items():
            scale = drift if kpi != KPI_THROUGHPUT else 1.0
            noise = self._rng.lognormal(0.0, provider.system.noise, size=count)
            samples[kpi] = tuple(float(sample) for sample in value * scale * noise)
        return WorkloadResult(samples=samples, details={"samples": str(count)})


class SimulatedShadowProvider:
    """Makes copies of a simulated system; deterministic for a given seed.

    Switches for tests: ``refuse_parameters`` makes ``apply`` refuse a
    configuration naming them, ``hang_parameters`` makes the workload never
    end, ``fail_workload_parameters`` makes it report a failure, and
    ``fail_on_create`` makes no copy. ``live_copies`` and ``destroyed`` let a
    test check the cleanup.
    """

    def __init__(
        self,
        system: SimulatedSystem | None = None,
        *,
        seed: int = 0,
        interval_s: float = 1.0,
        pace: float = 0.0,
        refuse_parameters: frozenset[str] = frozenset(),
        hang_parameters: frozenset[str] = frozenset(),
        fail_workload_parameters: frozenset[str] = frozenset(),
        fail_on_create: bool = False,
    ) -> None:
        if interval_s <= 0 or pace < 0:
            raise ValueError("interval_s must be positive and pace not negative")
        self.system = system or SimulatedSystem()
        self.seed = seed
        self.interval_s = interval_s
        """Seconds each sample covers."""
        self.pace = pace
        """Wall seconds a workload takes per second of its duration (0: instant)."""
        self.refuse_parameters = refuse_parameters
        self.hang_parameters = hang_parameters
        self.fail_workload_parameters = fail_workload_parameters
        self.fail_on_create = fail_on_create
        self.live_copies = 0
        self.created = 0
        self.destroyed = 0

    @property
    def name(self) -> str:
        return "simulated"

    @contextlib.asynccontextmanager
    async def copy_of(self, target: ShadowTarget) -> AsyncIterator[SimulatedShadowCopy]:
        if self.fail_on_create:
            raise ShadowFailed("the simulated copy could not be created")
        rng = np.random.default_rng([self.seed, self.created])
        self.created += 1
        self.live_copies += 1
        try:
            yield SimulatedShadowCopy(self, target, rng)
        finally:
            self.live_copies -= 1
            self.destroyed += 1
