"""A simulated system whose live samples follow the configuration the applier set.

The feeder writes the system's KPIs into the samples table every ``interval_s``, each from
the simulated response surface of the configuration currently applied, as an agent on a
real target would report them; ``history`` backfills the hours before, with the base
configuration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import numpy as np

from cfgclone.common.store import Store
from cfgclone.predictor.shadow import WorkloadShape
from cfgclone.simulation import SimulatedSystem
from tests.storage import store_samples

LOAD = WorkloadShape(rate_tps=200.0)
SECOND_NS = 1_000_000_000


def _kpis(
    system: SimulatedSystem,
    configuration: Mapping[str, object],
    count: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    expected = system.expected(configuration, LOAD)  # type: ignore[arg-type]
    noise = lambda: rng.lognormal(0.0, system.noise, count)  # noqa: E731
    return {
        "http.server.request.duration": expected["db.client.operation.duration"] * noise(),
        "postgresql.commits": expected["postgresql.commits"] * noise(),
    }


async def history(
    store: Store,
    system_id: str,
    system: SimulatedSystem,
    configuration: Mapping[str, object],
    *,
    hours: float = 2.0,
    step_s: float = 10.0,
) -> None:
    """Samples of the ``hours`` before now, every ``step_s``."""
    rng = np.random.default_rng(11)
    now = time.time_ns()
    ts = np.arange(now - int(hours * 3600 * SECOND_NS), now, int(step_s * SECOND_NS))
    kpis = _kpis(system, configuration, ts.size, rng)
    await store_samples(store, system_id, {k: (ts, v) for k, v in kpis.items()})


async def feed(
    store: Store,
    system_id: str,
    system: SimulatedSystem,
    current: Callable[[], Mapping[str, object]],
    stop: asyncio.Event,
    *,
    interval_s: float = 0.05,
) -> None:
    """Write live samples of the applied configuration until ``stop`` is set."""
    rng = np.random.default_rng(12)
    while not stop.is_set():
        ts = np.array([time.time_ns()], dtype=np.int64)
        kpis = _kpis(system, current(), 1, rng)
        await store_samples(store, system_id, {k: (ts, v) for k, v in kpis.items()})
        await asyncio.sleep(interval_s)
