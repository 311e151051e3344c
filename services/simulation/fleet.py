"""A simulated fleet, for tests and the demo: machines whose KPIs follow their configuration.

Each machine runs configuration kind ``simulated`` and behaves like the
predictor's simulated system (:class:`cfgclone.simulation.SimulatedSystem`,
a queue whose service time, CPU and capacity move with ``cache_mb``,
``workers`` and ``debug_logging``). Its live KPIs are computed from the
configuration currently applied to it, read from the predictor
(``systems/{id}/configurations/-``), and written through the collector like an
agent's: so a change the predictor applies shows in the metrics it verifies.

* ``cpu.utilization`` (share of the machine's cores busy, 0 to 1; the fingerprint's load metric),
* ``app.response_time`` (seconds, mean per sample),
* ``memory.utilization`` (share of memory in use, 0 to 1),
* ``throughput`` (transactions per second).

The offered load is stationary (log-normal around ``rate_tps``), so the past and
the present of an unchanged machine look alike, and history backfilled by
:meth:`SimulatedFleet.register` gives the fingerprint enough load regimes.

``regression`` makes a machine regress under any configuration other than its
initial one (its response time and CPU are multiplied by it): a machine on
which a change goes wrong although the prediction could not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf import timestamp_pb2

from cfgclone import vocabulary
from cfgclone.adaptation.codec import content_from_struct
from cfgclone.simulation.system import (
    KPI_CPU,
    KPI_LATENCY_MEAN,
    KPI_THROUGHPUT,
    OpenLoop,
    SimulatedSystem,
)
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as predictor_pb

if TYPE_CHECKING:
    from cfgclone.v1.collector_service_pb2_grpc import CollectorServiceAsyncStub
    from cfgclone.v1.predictor_service_pb2_grpc import PredictorServiceAsyncStub

__all__ = [
    "DEFAULT_CONFIGURATION",
    "KIND",
    "LOAD",
    "MEMORY",
    "RESPONSE_TIME",
    "THROUGHPUT",
    "SimulatedFleet",
    "SimulatedMachine",
    "machine_kpis",
]

KIND = "simulated"
"""Configuration kind of the simulated machines (the predictor applies it in memory)."""

LOAD = vocabulary.CPU_UTILIZATION.name
RESPONSE_TIME = vocabulary.HTTP_REQUEST_DURATION.name
MEMORY = vocabulary.MEMORY_UTILIZATION.name
THROUGHPUT = vocabulary.HTTP_REQUEST_RATE.name

_UNITS = {
    name: spec.unit
    for name, spec in vocabulary.METRICS.items()
    if name in (LOAD, RESPONSE_TIME, MEMORY, THROUGHPUT)
}

DEFAULT_CONFIGURATION: Mapping[str, Any] = MappingProxyType(
    {"workers": 4, "cache_mb": 256, "debug_logging": False, "request_timeout_s": 30}
)
"""The configuration a machine starts with unless told otherwise."""

GIB = 2**30
_MIB = 2**20
_BASE_MEMORY_BYTES = 2 * GIB
"""Memory the simulated software uses beside its cache."""
_NS = 1_000_000_000


@dataclass(frozen=True)
class SimulatedMachine:
    """One machine of the simulated fleet."""

    system_id: str
    cpu_cores: int = 8
    memory_bytes: int = 32 * GIB
    labels: Mapping[str, str] = field(default_factory=dict)
    configuration: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_CONFIGURATION))
    """Its configuration at the start (imported as version 1, applied)."""
    rate_tps: float = 400.0
    """Median offered load, transactions per second."""
    regression: float = 1.0
    """Factor on response time and CPU under any configuration but its initial one."""

    @property
    def name(self) -> str:
        return f"systems/{self.system_id}"


def machine_kpis(
    machine: SimulatedMachine,
    configuration: Mapping[str, Any],
    rates: npt.NDArray[np.float64],
    rng: np.random.Generator,
    system: SimulatedSystem,
) -> dict[str, npt.NDArray[np.float64]]:
    """The four KPIs of ``machine`` under ``configuration``, one sample per offered rate."""
    regressed = dict(configuration) != dict(machine.configuration)
    factor = machine.regression if regressed else 1.0
    surfaces = [system.expected(configuration, OpenLoop(rate_tps=float(r))) for r in rates]
    noise = system.noise

    def noisy(values: list[float]) -> npt.NDArray[np.float64]:
        array = np.asarray(values, dtype=np.float64)
        return array * rng.lognormal(0.0, noise, size=array.size)

    cores_busy = noisy([s[KPI_CPU] * factor for s in surfaces])
    cache = float(configuration.get("cache_mb", 0)) * _MIB
    memory = (_BASE_MEMORY_BYTES + cache) / machine.memory_bytes
    return {
        LOAD: np.clip(cores_busy / machine.cpu_cores, 0.0001, 1.0),
        RESPONSE_TIME: noisy([s[KPI_LATENCY_MEAN] * factor for s in surfaces]),
        MEMORY: np.clip(noisy([memory] * len(surfaces)), 0.0, 1.0),
        THROUGHPUT: noisy([s[KPI_THROUGHPUT] for s in surfaces]),
    }


def _stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class SimulatedFleet:
    """Registers simulated machines and feeds their live KPIs through the collector."""

    def __init__(
        self,
        collector: CollectorServiceAsyncStub,
        predictor: PredictorServiceAsyncStub,
        machines: Sequence[SimulatedMachine],
        *,
        system: SimulatedSystem | None = None,
        seed: int = 0,
        timeout: float = 10.0,
        history_spread: float = 0.5,
        live_spread: float = 0.5,
    ) -> None:
        """``history_spread`` and ``live_spread`` are the log-normal sigma of the offered
        load per sample in the backfilled history and in the live feed. History should
        cover many loads (the fingerprint's regimes); live load moves less within the
        seconds of a verification window than over hours."""
        self._spread = {"history": history_spread, "live": live_spread}
        self._collector = collector
        self._predictor = predictor
        self.machines = tuple(machines)
        self._system = system or SimulatedSystem()
        # One generator per machine, so what a machine reports does not depend on the
        # order in which concurrent writes happen to run.
        self._rngs = {
            m.name: np.random.default_rng([seed, zlib.crc32(m.name.encode())])
            for m in self.machines
        }
        self._timeout = timeout
        self._fed_until: dict[str, int] = {}

    def machine(self, name: str) -> SimulatedMachine:
        return next(m for m in self.machines if m.name == name)

    async def register(
        self,
        history: timedelta | None = timedelta(hours=2),
        interval: timedelta = timedelta(seconds=10),
        *,
        configure: bool = True,
    ) -> None:
        """Register every machine, import its initial configuration as applied at the
        start of ``history``, and backfill ``history`` of samples every ``interval``.

        ``history=None`` backfills nothing (a machine without metrics); ``configure=False``
        imports no configuration (a machine cfgclone knows nothing about yet).
        """
        now = datetime.now(UTC)
        start = now - (history or timedelta(0))
        step = int(interval.total_seconds() * _NS)
        times = np.arange(
            int(start.timestamp() * _NS), int(now.timestamp() * _NS), step, dtype=np.int64
        )
        await asyncio.gather(
            *(self._register(m, start, times, configure=configure) for m in self.machines)
        )

    async def _register(
        self,
        machine: SimulatedMachine,
        applied: datetime,
        times: npt.NDArray[np.int64],
        *,
        configure: bool,
    ) -> None:
        await self._collector.RegisterSystem(
            collector_pb.RegisterSystemRequest(
                system=common_pb2.System(
                    name=machine.name,
                    hostname=f"{machine.system_id}.simulated",
                    cpu_model="simulated",
                    cpu_cores=machine.cpu_cores,
                    memory_bytes=machine.memory_bytes,
                    architecture="x86_64",
                    os="debian 12",
                    labels=dict(machine.labels),
                )
            ),
            timeout=self._timeout,
        )
        # Samples first: the predictor fingerprints an imported configuration at once.
        if times.size:
            await self._write(machine, machine.configuration, times, self._spread["history"])
        if configure:
            await self._import_configuration(machine, applied)

    async def _import_configuration(self, machine: SimulatedMachine, applied: datetime) -> None:
        configuration = common_pb2.Configuration(
            kind=KIND,
            source=common_pb2.CONFIGURATION_SOURCE_IMPORT,
            apply_time=_stamp(applied),
        )
        configuration.content.update(dict(machine.configuration))
        await self._predictor.CreateConfiguration(
            predictor_pb.CreateConfigurationRequest(
                parent=machine.name,
                configuration=configuration,
                request_id=f"simulation/{machine.system_id}/initial",
            ),
            timeout=self._timeout,
        )

    async def current_configuration(self, machine: SimulatedMachine) -> dict[str, Any]:
        """The configuration the predictor says is applied to ``machine`` now."""
        reply = await self._predictor.GetConfiguration(
            predictor_pb.GetConfigurationRequest(name=f"{machine.name}/configurations/-"),
            timeout=self._timeout,
        )
        return content_from_struct(reply.configuration.content)

    async def feed(self, sample_interval: timedelta = timedelta(milliseconds=200)) -> None:
        """Write each machine's samples since its last feed (one every ``sample_interval``),
        under the configuration applied to it now."""
        now_ns = int(datetime.now(UTC).timestamp() * _NS)
        step = max(int(sample_interval.total_seconds() * _NS), 1)
        await asyncio.gather(*(self._feed(m, now_ns, step) for m in self.machines))

    async def _feed(self, machine: SimulatedMachine, now_ns: int, step: int) -> None:
        since = self._fed_until.get(machine.name, now_ns - step)
        times = np.arange(since + step, now_ns + 1, step, dtype=np.int64)
        if not times.size:
            return
        configuration = await self.current_configuration(machine)
        await self._write(machine, configuration, times, self._spread["live"])
        self._fed_until[machine.name] = int(times[-1])

    async def _write(
        self,
        machine: SimulatedMachine,
        configuration: Mapping[str, Any],
        times: npt.NDArray[np.int64],
        spread: float,
    ) -> None:
        rng = self._rngs[machine.name]
        rates = machine.rate_tps * rng.lognormal(0.0, spread, size=times.size)
        kpis = machine_kpis(machine, configuration, rates, rng, self._system)
        batch = common_pb2.SampleBatch(system=machine.name, batch_id=uuid.uuid4().hex)
        for metric, values in kpis.items():
            batch.series.add(
                metric=metric,
                unit=_UNITS[metric],
                kind=common_pb2.METRIC_KIND_GAUGE,
                ts_unix_ns=times.tolist(),
                values=values.tolist(),
            )
        await self._collector.WriteSamples(
            collector_pb.WriteSamplesRequest(batch=batch), timeout=self._timeout
        )

    async def run(
        self,
        tick: timedelta = timedelta(milliseconds=500),
        sample_interval: timedelta = timedelta(milliseconds=200),
    ) -> None:
        """Feed every ``tick`` until cancelled; a collector or predictor outage skips ticks."""
        while True:
            # Like an agent, try again at the next tick.
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.feed(sample_interval)
            await asyncio.sleep(tick.total_seconds())

    @contextlib.asynccontextmanager
    async def feeding(
        self,
        tick: timedelta = timedelta(milliseconds=500),
        sample_interval: timedelta = timedelta(milliseconds=200),
    ) -> AsyncIterator[SimulatedFleet]:
        """Feed live samples in the background while the block runs."""
        task = asyncio.create_task(self.run(tick, sample_interval))
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
