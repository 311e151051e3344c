"""Simulated shadow provider: a system with known response surfaces, for tests.

The simulated system is a queue: each transaction takes a service time, a
number of workers serve them, and the latency follows the utilisation as in an
M/M/1 queue per worker (mean = service time / (1 - utilisation), p95 about
three times the mean). It runs on the target's hardware and at its load: workers
beyond the target's cores wait for a core (they add no capacity), a cache larger
than three quarters of the target's memory pages (service time grows with the
square of the overcommit), and the workload is the target's recorded rate. So the
same change can be harmless on one machine and harmful on another, as on real ones.
Parameters move the service time, the capacity and the
CPU per transaction through declared effects, so a test knows the true effect
of a change before the shadow run measures it. Samples carry log-normal noise
from a seeded generator, so a run is repeatable; an optional drift per run
shows why baseline and candidate runs are interleaved.

Known changes: ``HARMFUL_CHANGE`` (debug logging: 30% more service time, so
about 30% more latency, and 10% more CPU) and ``HARMLESS_CHANGE`` (a timeout
the model does not depend on).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import numpy as np

from cfgclone.predictor.shadow.model import (
    KPI_CPU,
    KPI_LATENCY_MEAN,
    KPI_LATENCY_P95,
    KPI_THROUGHPUT,
    Configuration,
    ConfigValue,
    ShadowFailed,
    ShadowTarget,
    WorkloadResult,
    WorkloadShape,
)

__all__ = [
    "DEFAULT_EFFECTS",
    "HARMFUL_CHANGE",
    "HARMLESS_CHANGE",
    "MEMORY_FOR_CACHE",
    "ParameterEffect",
    "ResponseFactors",
    "SimulatedShadowCopy",
    "SimulatedShadowProvider",
    "SimulatedSystem",
]

MEMORY_FOR_CACHE = 0.75
"""Share of a machine's memory a cache can take before the machine pages."""
_MIB = 2**20
_P95_OVER_MEAN = math.log(20.0)
"""p95 / mean of an exponential response time, as in an M/M/1 queue."""
_MAX_UTILISATION = 0.95


@dataclass(frozen=True)
class ResponseFactors:
    """How a parameter value scales the system, relative to its defaults (1.0: no effect)."""

    service_time: float = 1.0
    """Time one transaction takes, so latency and (inversely) capacity."""
    cpu: float = 1.0
    """CPU one transaction uses."""
    workers: float = 1.0
    """Transactions served at once."""


@dataclass(frozen=True)
class ParameterEffect:
    """The effect of one parameter, as a function of its value."""

    parameter: str
    factors: Callable[[ConfigValue], ResponseFactors]


def _as_float(value: ConfigValue) -> float:
    return float(value) if not isinstance(value, str) else float(value.strip() or 0)


def _as_bool(value: ConfigValue) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "on", "true", "yes"}
    return bool(value)


def _debug_logging(value: ConfigValue) -> ResponseFactors:
    return ResponseFactors(service_time=1.3, cpu=1.1) if _as_bool(value) else ResponseFactors()


def _cache_mb(value: ConfigValue) -> ResponseFactors:
    # A smaller cache misses more; normalised to 1.0 at the default of 256 MB.
    miss = 1.0 + 0.5 * math.exp(-_as_float(value) / 256.0)
    return ResponseFactors(service_time=miss / (1.0 + 0.5 * math.exp(-1.0)))


def _workers(value: ConfigValue) -> ResponseFactors:
    return ResponseFactors(workers=max(_as_float(value), 1.0) / 4.0)


DEFAULT_EFFECTS: tuple[ParameterEffect, ...] = (
    ParameterEffect("debug_logging", _debug_logging),
    ParameterEffect("cache_mb", _cache_mb),
    ParameterEffect("workers", _workers),
)
"""The parameters the default simulated system depends on; every other is harmless."""

HARMFUL_CHANGE: Mapping[str, ConfigValue] = {"debug_logging": True}
"""Raises latency by about 30% at a light load (more near saturation) and CPU by 10%."""

HARMLESS_CHANGE: Mapping[str, ConfigValue] = {"request_timeout_s": 60}
"""A parameter the simulated system does not depend on."""


@dataclass(frozen=True)
class SimulatedSystem:
    """The response surfaces of a simulated system."""

    service_time_ms: float = 2.0
    """Time one transaction takes with the default configuration."""
    workers: int = 4
    """Transactions served at once with the default configuration."""
    cpu_seconds_per_transaction: float = 0.0008
    idle_cpu: float = 0.02
    """CPU seconds per second used with no load."""
    noise: float = 0.05
    """Standard deviation of the log-normal noise of each sample."""
    drift_per_run: float = 0.0
    """Relative rise of latency and CPU from one workload run to the next (0.01: 1%)."""
    effects: tuple[ParameterEffect, ...] = DEFAULT_EFFECTS

    def __post_init__(self) -> None:
        if self.service_time_ms <= 0 or self.workers < 1:
            raise ValueError("the service time must be positive and there must be a worker")
        if self.noise < 0:
            raise ValueError("noise must not be negative")

    def factors(self, configuration: Mapping[str, ConfigValue]) -> ResponseFactors:
        """The combined factors of every modelled parameter in ``configuration``."""
        service_time = cpu = workers = 1.0
        for effect in self.effects:
            if effect.parameter in configuration:
                factors = effect.factors(configuration[effect.parameter])
                service_time *= factors.service_time
                cpu *= factors.cpu
                workers *= factors.workers
        return ResponseFactors(service_time=service_time, cpu=cpu, workers=workers)

    def expected(
        self,
        configuration: Mapping[str, ConfigValue],
        load: WorkloadShape,
        hardware: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """The noiseless KPIs of ``configuration`` under ``load`` on ``hardware``.

        ``hardware`` (``cpu_cores``, ``memory_bytes``) bounds the parallelism by the
        cores and makes a cache beyond ``MEMORY_FOR_CACHE`` of the memory page;
        without it the machine is as large as the configuration wants. The CPU is
        the share of the machine's cores kept busy, or the cores busy when the
        machine's cores are unknown.
        """
        factors = self.factors(configuration)
        service_ms = self.service_time_ms * factors.service_time
        parallel = self.workers * factors.workers
        cores = (hardware or {}).get("cpu_cores", 0.0)
        if cores > 0:
            parallel = min(parallel, cores)
        memory = (hardware or {}).get("memory_bytes", 0.0)
        if memory > 0 and "cache_mb" in configuration:
            overcommit = _as_float(configuration["cache_mb"]) * _MIB / (MEMORY_FOR_CACHE * memory)
            service_ms *= max(1.0, overcommit) ** 2
        capacity = parallel * 1000.0 / service_ms
        if load.rate_tps is None:
            # Closed loop: every client sends its next transaction as soon as one ends.
            throughput = min(load.clients * 1000.0 / service_ms, capacity) * _MAX_UTILISATION
            mean_ms = load.clients * 1000.0 / throughput
        else:
            throughput = min(load.rate_tps, capacity * _MAX_UTILISATION)
            utilisation = throughput / capacity
            mean_ms = service_ms / (1.0 - utilisation)
        busy = self.idle_cpu + throughput * self.cpu_seconds_per_transaction * factors.cpu
        return {
            KPI_THROUGHPUT: throughput,
            KPI_LATENCY_MEAN: mean_ms / 1e3,
            KPI_LATENCY_P95: mean_ms * _P95_OVER_MEAN / 1e3,
            KPI_CPU: busy / cores if cores > 0 else busy,
        }


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
