"""Sample ingest: validated batches into ``samples`` by binary COPY, each all or nothing.

A batch is first decoded and checked as columns (:mod:`.sample_columns`), its
system and metric names are resolved to ids (the metric dictionary grows as new
names arrive, cached in memory), and its COPY payload is built with numpy.
Then one transaction claims the batch id in ``ingested_batches``, copies the
rows and widens the ``series`` summary: a batch id the same system sent before
makes the claim insert nothing, and the batch is reported as a duplicate with
nothing stored. Batch ids are scoped by system, so one system's ids never make
another's batches duplicates.

A metric's unit and kind are kept per system (in ``series``), so one writer
cannot redefine another system's metric; and each system may define at most
``max_metrics_per_system`` metrics, so no writer grows the dictionary without bound.

A stream is pipelined: the next batch is decoded and prepared while the
previous ones are copied and committed on the database (two transactions at a
time by default, so one's COPY overlaps the other's commit and its wait for the
disk), so the database is kept busy and the collector's own work hides behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cfgclone.collector.copy_format import sample_rows_payload, unix_ns_to_pg_micros
from cfgclone.collector.counters import IngestCounters
from cfgclone.collector.sample_columns import BatchLimits, DecodedBatch, MetricSpec, decode_batch
from cfgclone.common.errors import (
    CfgcloneError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
)
from cfgclone.common.queries import load_queries
from cfgclone.common.store import Store
from cfgclone.v1 import common_pb2

__all__ = ["IngestResult", "Ingestor", "MetricDictionary", "PreparedBatch", "StreamTotals"]

logger = logging.getLogger(__name__)

_QUERIES = load_queries("cfgclone.collector", "samples.sql")


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What became of one batch."""

    stored_samples: int
    duplicate: bool


@dataclass(slots=True)
class StreamTotals:
    """What became of a stream of batches."""

    batches: int = 0
    stored_samples: int = 0
    duplicate_batches: int = 0

    def add(self, result: IngestResult) -> None:
        self.batches += 1
        self.stored_samples += result.stored_samples
        self.duplicate_batches += int(result.duplicate)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch ready for its transaction: ids resolved and the COPY payload built."""

    batch_id: str
    system_key: int
    rows: int
    payload: memoryview
    series_metric_ids: list[int]
    series_first_us: list[int]
    series_last_us: list[int]
    series_units: list[str]
    series_kinds: list[int]


class MetricDictionary:
    """Metric names to ids, growing as new names arrive.

    Ids never change once given, so they are cached for the life of the
    process; only names not seen before cost a round trip, and concurrent
    collectors adding the same name agree through ``ON CONFLICT``.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ids: dict[str, int] = {}

    async def ids(self, metrics: Sequence[MetricSpec]) -> list[int]:
        """The id of each metric, adding the names not in the dictionary yet."""
        missing = [m for m in metrics if m.name not in self._ids]
        if missing:
            names = [m.name for m in missing]
            async with self._store.connection() as conn:
                await conn.execute(
                    _QUERIES["add_metrics"],
                    {
                        "names": names,
                        "units": [m.unit for m in missing],
                        "kinds": [m.kind for m in missing],
                    },
                )
                cursor = await conn.execute(_QUERIES["metric_ids"], {"names": names})
                self._ids.update({name: key for name, key in await cursor.fetchall()})
        return [self._ids[m.name] for m in metrics]


def _unknown_system(system_id: str) -> InvalidArgument:
    path = "batch.system"
    description = f"systems/{system_id} is not registered; call RegisterSystem first"
    return InvalidArgument(
        f"{path}: {description}; nothing of the batch was stored",
        violations=[FieldViolation(path, description)],
        reason="UNKNOWN_SYSTEM",
        metadata={"system": f"systems/{system_id}"},
    )


def _too_many_metrics(system_id: str, defined: int, new: int, limit: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"systems/{system_id} has {defined} metrics and the batch adds {new}; a system may "
        f"have at most {limit} (CFGCLONE_COLLECTOR_MAX_METRICS_PER_SYSTEM); nothing of the "
        "batch was stored",
        reason="TOO_MANY_METRICS",
        metadata={"system": f"systems/{system_id}", "limit": str(limit)},
    )


def _series_spans(
    decoded: DecodedBatch, metric_ids: npt.NDArray[np.int32]
) -> tuple[list[int], list[int], list[int]]:
    """First and last timestamp (PostgreSQL microseconds) of each distinct metric of a batch."""
    lengths = np.diff(decoded.series_offsets)
    filled = lengths > 0
    if not filled.any():
        return [], [], []
    starts = decoded.series_offsets[:-1][filled]
    micros = unix_ns_to_pg_micros(decoded.ts_unix_ns)
    firsts = np.minimum.reduceat(micros, starts)
    lasts = np.maximum.reduceat(micros, starts)
    series_ids = metric_ids[decoded.series_metric[filled]]
    unique, inverse = np.unique(series_ids, return_inverse=True)
    first = np.full(unique.shape[0], np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(unique.shape[0], np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, inverse, firsts)
    np.maximum.at(last, inverse, lasts)
    return unique.tolist(), first.tolist(), last.tolist()


async def _settle_one(
    in_flight: set[asyncio.Task[IngestResult]], totals: StreamTotals
) -> set[asyncio.Task[IngestResult]]:
    """Wait for at least one commit, count the finished ones and return those still running;
    the first failure is raised once every finished commit has been looked at."""
    done, pending = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
    failures = [task.exception() for task in done]
    for task, failure in zip(done, failures, strict=True):
        if failure is None:
            totals.add(task.result())
    first = next((f for f in failures if f is not None), None)
    if first is not None:
        in_flight.clear()
        in_flight.update(pending)  # the caller's finally waits for these
        raise first
    return pending


class Ingestor:
    """Stores sample batches; one per collector process, shared by every call."""

    def __init__(
        self,
        store: Store,
        *,
        limits: BatchLimits | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        commits_in_flight: int = 2,
        max_metrics_per_system: int = 10_000,
        counters: IngestCounters | None = None,
    ) -> None:
        if commits_in_flight < 1:
            raise ValueError("commits_in_flight must be at least 1")
        if max_metrics_per_system < 1:
            raise ValueError("max_metrics_per_system must be at least 1")
        self._store = store
        self._commits_in_flight = commits_in_flight
        self._limits = limits or BatchLimits()
        self._clock_ns = clock_ns
        self._metrics = MetricDictionary(store)
        self._system_keys: dict[str, int] = {}
        self._max_metrics = max_metrics_per_system
        self._system_metrics: dict[int, set[str]] = {}
        self.counters = counters or IngestCounters()

    async def _system_key(self, system_id: str) -> int:
        key = self._system_keys.get(system_id)
        if key is None:
            async with self._store.connection() as conn:
                cursor = await conn.execute(_QUERIES["system_key"], {"system_id": system_id})
                row = await cursor.fetchone()
            if row is None:
                raise _unknown_system(system_id)
            key = self._system_keys[system_id] = int(row[0])
        return key

    async def _admit_metrics(
        self, system_id: str, system_key: int, metrics: Sequence[MetricSpec]
    ) -> None:
        """FAILED_PRECONDITION when the batch would take the system past its metric bound."""
        defined = self._system_metrics.get(system_key)
        if defined is None:
            async with self._store.connection() as conn:
                cursor = await conn.execute(_QUERIES["system_metrics"], {"system": system_key})
                defined = {name for (name,) in await cursor.fetchall()}
            defined = self._system_metrics.setdefault(system_key, defined)
        new = {m.name for m in metrics} - defined
        if not new:
            return
        if len(defined) + len(new) > self._max_metrics:
            raise _too_many_metrics(system_id, len(defined), len(new), self._max_metrics)
        defined.update(new)

    async def prepare(self, batch: common_pb2.SampleBatch) -> PreparedBatch:
        """Check a batch and build its COPY payload; INVALID_ARGUMENT when it is refused."""
        try:
            decoded = decode_batch(batch, self._clock_ns(), self._limits)
            system_key = await self._system_key(decoded.system_id)
            await self._admit_metrics(decoded.system_id, system_key, decoded.metrics)
        except CfgcloneError:
            self.counters.batches.labels("refused").inc()
            self.counters.refused.inc(sum(len(series.values) for series in batch.series))
            raise
        metric_ids = np.asarray(await self._metrics.ids(decoded.metrics), dtype=np.int32)
        row_metric_ids = metric_ids[decoded.metric_of_row()]
        payload = sample_rows_payload(
            decoded.ts_unix_ns, system_key, row_metric_ids, decoded.values
        )
        series_ids, firsts, lasts = _series_spans(decoded, metric_ids)
        spec_of = {int(key): spec for key, spec in zip(metric_ids, decoded.metrics, strict=True)}
        return PreparedBatch(
            batch_id=decoded.batch_id,
            system_key=system_key,
            rows=decoded.rows,
            payload=payload,
            series_metric_ids=series_ids,
            series_first_us=firsts,
            series_last_us=lasts,
            series_units=[spec_of[key].unit for key in series_ids],
            series_kinds=[spec_of[key].kind for key in series_ids],
        )

    async def commit(self, prepared: PreparedBatch) -> IngestResult:
        """Store a prepared batch in one transaction, unless its id was stored before."""
        async with self._store.transaction() as conn:
            cursor = await conn.execute(
                _QUERIES["claim_batch"],
                {
                    "batch_id": prepared.batch_id,
                    "system": prepared.system_key,
                    "samples": prepared.rows,
                },
            )
            if await cursor.fetchone() is None:
                self.counters.batches.labels("duplicate").inc()
                return IngestResult(stored_samples=0, duplicate=True)
            if prepared.rows:
                async with conn.cursor().copy(_QUERIES["copy_samples"]) as copy:
                    await copy.write(prepared.payload)
                # Last, so that another batch of the system waits for these
                # series rows only between this statement and the commit.
                await conn.execute(
                    _QUERIES["extend_series"],
                    {
                        "system": prepared.system_key,
                        "metric_ids": prepared.series_metric_ids,
                        "first_us": prepared.series_first_us,
                        "last_us": prepared.series_last_us,
                        "units": prepared.series_units,
                        "kinds": prepared.series_kinds,
                    },
                )
        self.counters.batches.labels("stored").inc()
        self.counters.ingested.inc(prepared.rows)
        return IngestResult(stored_samples=prepared.rows, duplicate=False)

    async def write(self, batch: common_pb2.SampleBatch) -> IngestResult:
        """Check and store one batch."""
        return await self.commit(await self.prepare(batch))

    async def write_stream(
        self,
        batches: AsyncIterable[common_pb2.SampleBatch],
        authorize: Callable[[common_pb2.SampleBatch], None] = lambda batch: None,
    ) -> StreamTotals:
        """Store a stream of batches, preparing each while earlier ones are committed.

        Each batch is its own transaction, and up to ``commits_in_flight`` of
        them run at once on their own connections, so one batch's COPY overlaps
        the previous one's commit. A refused batch ends the stream with its
        error once the batches in flight have finished; the batches before it
        stay stored, which a resend of the whole stream finds as duplicates.
        """
        totals = StreamTotals()
        in_flight: set[asyncio.Task[IngestResult]] = set()
        try:
            async for batch in batches:
                authorize(batch)
                prepared = await self.prepare(batch)
                while len(in_flight) >= self._commits_in_flight:
                    in_flight = await _settle_one(in_flight, totals)
                in_flight.add(asyncio.create_task(self.commit(prepared)))
            while in_flight:
                in_flight = await _settle_one(in_flight, totals)
        finally:
            if in_flight:
                # The stream failed while commits ran: let them finish (their own
                # errors yield to the stream's), so a resend finds clean
                # duplicates rather than racing them.
                await asyncio.gather(*in_flight, return_exceptions=True)
        return totals
