"""A simulated system with known response surfaces: a queue whose KPIs follow its configuration.

The simulated system is a queue: each transaction takes a service time, a
number of workers serve them, and the latency follows the utilisation as in an
M/M/1 queue per worker (mean = service time / (1 - utilisation), p95 about
three times the mean). It runs on the target's hardware and at its load: workers
beyond the target's cores wait for a core (they add no capacity), a cache larger
than three quarters of the target's memory pages (service time grows with the
square of the overcommit), and the workload is the target's recorded rate. So the
same change can be harmless on one machine and harmful on another, as on real ones.
Parameters move the service time, the capacity and the CPU per transaction through
declared effects, so a test knows the true effect of a change before anything
measures it. The predictor's simulated shadow provider and the demo's simulated
fleet both run on it.

Known changes: ``HARMFUL_CHANGE`` (debug logging: 30% more service time, so
about 30% more latency, and 10% more CPU) and ``HARMLESS_CHANGE`` (a timeout
the model does not depend on).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cfgclone import vocabulary
from cfgclone.adaptation.spec import ParameterValue as ConfigValue

__all__ = [
    "DEFAULT_EFFECTS",
    "HARMFUL_CHANGE",
    "HARMLESS_CHANGE",
    "KPI_CPU",
    "KPI_LATENCY_MEAN",
    "KPI_LATENCY_P95",
    "KPI_THROUGHPUT",
    "MEMORY_FOR_CACHE",
    "Load",
    "OpenLoop",
    "ParameterEffect",
    "ResponseFactors",
    "SimulatedSystem",
]

KPI_THROUGHPUT = vocabulary.POSTGRESQL_COMMITS.name
KPI_LATENCY_MEAN = vocabulary.DB_OPERATION_DURATION.name
KPI_LATENCY_P95 = vocabulary.DB_OPERATION_DURATION_P95.name
KPI_CPU = vocabulary.CPU_UTILIZATION.name


class Load(Protocol):
    """The offered load: an open loop at ``rate_tps``, or ``clients`` in a closed loop."""

    @property
    def rate_tps(self) -> float | None: ...

    @property
    def clients(self) -> int: ...


@dataclass(frozen=True)
class OpenLoop:
    """Transactions arriving at ``rate_tps`` whatever the system's speed."""

    rate_tps: float
    clients: int = 0


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
        load: Load,
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
