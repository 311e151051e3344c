"""What the source's own data shows its configuration must carry: working set, concurrency.

Scaling by the hardware ratio is blind to the workload: a cache sized for memory
may fall below the data the source reads again and again, and a worker count sized
for cores below the requests the source has in flight at its busy hours. When the
source's samples show either, adaptation never goes below it (nor above the source's
own value: the floor only stops a shrink), and says so.

* **working set**: the custom series ``cache.working_set`` (bytes the system's busy
  period reads repeatedly, reported by the team's exporter; for PostgreSQL, for
  instance, the buffers ``pg_buffercache`` shows used more than once, times 8 kB),
  its 95th percentile over the window;
* **concurrency**: Little's law on the vocabulary's offered load and its duration
  (``http.server.request.rate`` x ``http.server.request.duration``, or
  ``postgresql.commits`` x ``db.client.operation.duration``), per minute, its 95th
  percentile: the requests in flight when the source is busy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cfgclone import vocabulary

from .spec import Floor

__all__ = [
    "CONCURRENCY_PAIRS",
    "WORKING_SET_SERIES",
    "ObservedDemand",
    "observed_demand",
]

WORKING_SET_SERIES = "cache.working_set"
"""Bytes of data the system's busy period reads repeatedly (a custom series)."""
CONCURRENCY_PAIRS: tuple[tuple[str, str], ...] = (
    (vocabulary.HTTP_REQUEST_RATE.name, vocabulary.HTTP_REQUEST_DURATION.name),
    (vocabulary.POSTGRESQL_COMMITS.name, vocabulary.DB_OPERATION_DURATION.name),
)
"""(offered load per second, its mean duration in seconds) series whose product is the
number of requests in flight."""
DEMAND_QUANTILE = 0.95
"""Quantile of the window's per-bucket demand the floor takes: the busy period."""

Buckets = tuple[Sequence[int], Sequence[float]]
"""Bucket start times (Unix ns) and the bucket means of one series."""


@dataclass(frozen=True)
class ObservedDemand:
    """What the source's data shows; None where it shows nothing."""

    working_set_bytes: float | None = None
    concurrency: float | None = None
    evidence: Mapping[str, str] | None = None
    """How each figure was found, by floor name, for the explanations."""

    def amount(self, floor: Floor) -> float | None:
        if floor is Floor.WORKING_SET:
            return self.working_set_bytes
        if floor is Floor.CONCURRENCY:
            return self.concurrency
        return None

    def describe(self, floor: Floor) -> str:
        return (self.evidence or {}).get(floor.value, floor.value.replace("_", " "))


def observed_demand(buckets: Mapping[str, Buckets]) -> ObservedDemand:
    """The demand in per-minute (or any fixed) buckets of the source's series."""
    evidence: dict[str, str] = {}
    working_set = None
    found = buckets.get(WORKING_SET_SERIES)
    if found is not None and len(found[1]):
        working_set = float(np.quantile(np.asarray(found[1], dtype=np.float64), DEMAND_QUANTILE))
        evidence[Floor.WORKING_SET.value] = (
            f"the source's working set ({WORKING_SET_SERIES}, p95) {working_set / 2**20:.0f} MiB"
        )
    concurrency = None
    for rate_series, duration_series in CONCURRENCY_PAIRS:
        in_flight = _little(buckets.get(rate_series), buckets.get(duration_series))
        if in_flight is None:
            continue
        concurrency = in_flight
        evidence[Floor.CONCURRENCY.value] = (
            f"the source's busy-period concurrency ({rate_series} x {duration_series}, p95) "
            f"{in_flight:.3g} in flight"
        )
        break
    return ObservedDemand(working_set, concurrency, evidence)


def _little(rate: Buckets | None, duration: Buckets | None) -> float | None:
    """The 95th percentile of rate x duration over the buckets both series have."""
    if rate is None or duration is None:
        return None
    durations = dict(zip(duration[0], duration[1], strict=True))
    products = [
        r * durations[t]
        for t, r in zip(rate[0], rate[1], strict=True)
        if t in durations and math.isfinite(r * durations[t])
    ]
    if not products:
        return None
    return float(np.quantile(np.asarray(products, dtype=np.float64), DEMAND_QUANTILE))
