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
  (``http.server.request.rate`` and ``http.server.request.duration``, or
  ``postgresql.commits`` and ``db.client.operation.duration``): the busy offered load
  (95th percentile per minute) of the target, or of the source when the target has
  none, times the source's request time when nothing queues (5th percentile): the
  requests being worked on at once, which fewer workers cannot serve.
"""

from __future__ import annotations

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
UNQUEUED_QUANTILE = 0.05
"""Quantile of the per-bucket request duration taken as the time of one request when
nothing queues (the light-load end)."""

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


def observed_demand(
    source: Mapping[str, Buckets], target: Mapping[str, Buckets] | None = None
) -> ObservedDemand:
    """The demand shown by per-minute (or any fixed) buckets of the source's series.

    The workers needed are the target's busy offered load (the source's when the
    target has recorded none: it takes the source's role) times the time one request
    takes on the source when nothing queues (its light-load duration, the 5th
    percentile of the buckets): the workers busy at once, by Little's law.
    """
    evidence: dict[str, str] = {}
    working_set = None
    found = source.get(WORKING_SET_SERIES)
    if found is not None and len(found[1]):
        working_set = float(np.quantile(np.asarray(found[1], dtype=np.float64), DEMAND_QUANTILE))
        evidence[Floor.WORKING_SET.value] = (
            f"the source's working set ({WORKING_SET_SERIES}, p95) {working_set / 2**20:.0f} MiB"
        )
    concurrency = None
    for rate_series, duration_series in CONCURRENCY_PAIRS:
        request_time = _quantile(source.get(duration_series), UNQUEUED_QUANTILE)
        own = _quantile((target or {}).get(rate_series), DEMAND_QUANTILE)
        whose = "the target's" if own is not None else "the source's"
        rate = own if own is not None else _quantile(source.get(rate_series), DEMAND_QUANTILE)
        if request_time is None or rate is None:
            continue
        concurrency = rate * request_time
        evidence[Floor.CONCURRENCY.value] = (
            f"{whose} busy load ({rate_series}, p95) {rate:.4g}/s x the source's unqueued "
            f"{duration_series} {request_time * 1e3:.3g} ms = {concurrency:.3g} busy at once"
        )
        break
    return ObservedDemand(working_set, concurrency, evidence)


def _quantile(buckets: Buckets | None, q: float) -> float | None:
    if buckets is None:
        return None
    values = np.asarray(buckets[1], dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.quantile(values, q)) if values.size else None
