"""Reads of stored samples: raw pages, downsampled buckets and the metrics of a system.

Raw pages come back from PostgreSQL as two packed binary columns that numpy
reads in one call each, so a page of 100,000 samples costs no Python loop.
Pages are keyed on ``(ts, value)`` rather than an offset: a client paging
through a long series costs the database one index range scan per page.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from cfgclone.collector.copy_format import pg_micros_to_unix_ns
from cfgclone.common.errors import InvalidArgument, NotFound
from cfgclone.common.message_checks import quote
from cfgclone.common.page_tokens import TokenKind, open_token, query_digest, seal_token
from cfgclone.common.queries import load_queries
from cfgclone.common.requests import Page, system_id_from_name
from cfgclone.common.store import Connection, Store

__all__ = [
    "DEFAULT_SAMPLE_PAGE",
    "MAX_BUCKETS",
    "MAX_SAMPLE_PAGE",
    "Downsampled",
    "MetricInfo",
    "SamplePage",
    "TimeRange",
    "list_metrics",
    "query_downsampled",
    "query_samples",
]

_QUERIES = load_queries("cfgclone.collector", "timeseries.sql")

DEFAULT_SAMPLE_PAGE = 10_000
MAX_SAMPLE_PAGE = 100_000
MAX_BUCKETS = 100_000
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """A metric dictionary entry, with the newest sample of the system asked about."""

    name: str
    unit: str
    kind: int
    last_sample: datetime | None = None


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``[start, end)``, both timezone-aware."""

    start: datetime
    end: datetime

    @classmethod
    def from_unix_ns(cls, start_ns: int, end_ns: int) -> TimeRange:
        """The range of samples sent with ``start_ns <= ts < end_ns``.

        Samples are stored to the microsecond (truncated), so the start is
        truncated and the exclusive end rounded up to whole microseconds.
        """
        return cls(_unix_time(start_ns // 1000), _unix_time(-(-end_ns // 1000)))

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidArgument.for_field(
                "end_time", f"must be after start_time ({self.start.isoformat()})"
            )


@dataclass(frozen=True)
class SamplePage:
    """One page of a metric's samples in time order."""

    metric: MetricInfo
    ts_unix_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    next_page_token: str


@dataclass(frozen=True)
class Downsampled:
    """Buckets of a metric's samples; the arrays align."""

    bucket_start_unix_ns: npt.NDArray[np.int64]
    avg: npt.NDArray[np.float64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]


async def _system_key(conn: Connection, system: str, field: str) -> int:
    system_id = system_id_from_name(system, field)
    cursor = await conn.execute(_QUERIES["system_key"], {"system_id": system_id})
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(
            f"{system} is not registered", reason="SYSTEM_NOT_FOUND", metadata={"system": system}
        )
    return int(row[0])


async def _metric(conn: Connection, system_key: int, metric: str) -> tuple[int, MetricInfo]:
    name = metric.removeprefix("metrics/")
    if not name:
        raise InvalidArgument.for_field("metric", "is required")
    cursor = await conn.execute(_QUERIES["metric_by_name"], {"name": name, "system": system_key})
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(
            f"no samples of metric {quote(name)} were ever stored",
            reason="METRIC_NOT_FOUND",
            metadata={"metric": name},
        )
    return int(row[0]), MetricInfo(name=name, unit=row[1], kind=int(row[2]))


@dataclass(frozen=True, slots=True)
class _PageKey:
    """Where the next page starts: after ``skip`` rows equal to ``(micros, value)``."""

    micros: int
    value: float
    skip: int


_SAMPLE_TOKEN = TokenKind(2, struct.Struct(">qdq"))


def _encode_key(key: _PageKey, query: bytes) -> str:
    return seal_token(_SAMPLE_TOKEN, query, key.micros, key.value, key.skip)


def _decode_key(token: str, query: bytes) -> _PageKey:
    micros, value, skip = open_token(_SAMPLE_TOKEN, query, token)
    key = _PageKey(int(micros), float(value), int(skip))
    if not 0 <= key.skip <= MAX_SAMPLE_PAGE:
        raise InvalidArgument.for_field("page_token", "holds a position out of range")
    return key


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument.for_field("page_size", f"must not be negative (got {page_size})")
    return min(page_size or DEFAULT_SAMPLE_PAGE, MAX_SAMPLE_PAGE)


def _unix_time(micros: int) -> datetime:
    return _UNIX_EPOCH + timedelta(microseconds=micros)


def _pg_time(micros: int) -> datetime:
    return _POSTGRES_EPOCH + timedelta(microseconds=micros)


def _next_key(
    micros: npt.NDArray[np.int64], values: npt.NDArray[np.float64], previous: _PageKey | None
) -> _PageKey:
    """The key after the last row of a page, counting the rows equal to it."""
    last_micros, last_value = int(micros[-1]), float(values[-1])
    equal = (micros == last_micros) & (values == last_value)
    # Rows equal to the last one sit at the end of the page (it is sorted).
    trailing = equal.shape[0] if equal.all() else int(np.argmin(equal[::-1]))
    if (
        previous is not None
        and equal.all()
        and (previous.micros, previous.value) == (last_micros, last_value)
    ):
        trailing += previous.skip
    return _PageKey(last_micros, last_value, trailing)


async def query_samples(
    store: Store, system: str, metric: str, span: TimeRange, page_size: int, page_token: str
) -> SamplePage:
    """One page of the raw samples of ``metric`` of ``system`` in ``span``."""
    size = _page_size(page_size)
    query = query_digest([system, metric, span.start.isoformat(), span.end.isoformat()])
    previous = _decode_key(page_token, query) if page_token else None
    async with store.connection() as conn:
        system_key = await _system_key(conn, system, "system")
        metric_key, info = await _metric(conn, system_key, metric)
        if previous is None:
            from_ts, from_value, skip = span.start, float("-inf"), 0
        else:
            from_ts, from_value, skip = _pg_time(previous.micros), previous.value, previous.skip
        cursor = await conn.execute(
            _QUERIES["sample_page"],
            {
                "system": system_key,
                "metric": metric_key,
                "from_ts": from_ts,
                "from_value": from_value,
                "end": span.end,
                "limit": size + skip + 1,
            },
        )
        row = await cursor.fetchone()
    assert row is not None
    micros = np.frombuffer(row[1], dtype=">i8").astype(np.int64)[skip:]
    values = np.frombuffer(row[2], dtype=">f8").astype(np.float64)[skip:]
    has_more = micros.shape[0] > size
    micros, values = micros[:size], values[:size]
    token = ""
    if has_more and micros.shape[0]:
        token = _encode_key(_next_key(micros, values, previous), query)
    return SamplePage(info, pg_micros_to_unix_ns(micros), values, token)


async def query_downsampled(
    store: Store, system: str, metric: str, span: TimeRange, bucket: timedelta
) -> Downsampled:
    """avg, min, max and count of ``metric`` per ``bucket``, buckets aligned on the Unix epoch."""
    if bucket < timedelta(seconds=1):
        raise InvalidArgument.for_field("bucket", "must be at least one second")
    buckets = (span.end - span.start) / bucket
    if buckets > MAX_BUCKETS:
        raise InvalidArgument.for_field(
            "bucket",
            f"gives {int(buckets)} buckets over the range; at most {MAX_BUCKETS}, "
            "use a wider bucket or a shorter range",
        )
    async with store.connection() as conn:
        system_key = await _system_key(conn, system, "system")
        metric_key, _ = await _metric(conn, system_key, metric)
        cursor = await conn.execute(
            _QUERIES["downsampled"],
            {
                "system": system_key,
                "metric": metric_key,
                "start": span.start,
                "end": span.end,
                "bucket": bucket,
            },
        )
        rows = await cursor.fetchall()
    columns = list(zip(*rows, strict=True)) or [(), (), (), (), ()]
    return Downsampled(
        bucket_start_unix_ns=np.asarray(columns[0], dtype=np.int64) * 1000,
        avg=np.asarray(columns[1], dtype=np.float64),
        min=np.asarray(columns[2], dtype=np.float64),
        max=np.asarray(columns[3], dtype=np.float64),
        count=np.asarray(columns[4], dtype=np.int64),
    )


async def list_metrics(store: Store, system: str, page: Page) -> tuple[list[MetricInfo], str]:
    """One page of the metrics ``system`` has samples of, by name, and the next token."""
    async with store.connection() as conn:
        system_key = await _system_key(conn, system, "parent")
        cursor = await conn.execute(
            _QUERIES["list_metrics"],
            {"system": system_key, "limit": page.size + 1, "offset": page.offset},
        )
        rows = await cursor.fetchall()
    metrics = [
        MetricInfo(name=name, unit=unit, kind=int(kind), last_sample=last)
        for name, unit, kind, last in rows[: page.size]
    ]
    return metrics, page.next_token(len(metrics), has_more=len(rows) > page.size)
