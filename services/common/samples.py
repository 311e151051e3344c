"""Reading samples back fast: binary COPY out of PostgreSQL, parsed with numpy.

The fingerprint service reads millions of samples per build; fetching rows one
by one through the driver would dominate the build. A binary COPY of the three
columns it needs has a fixed row size, so the whole payload is one numpy
structured array, split per metric with a single stable sort.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from cfgclone.common.errors import NotFound
from cfgclone.common.queries import load_queries
from cfgclone.common.store import Connection

_QUERIES = load_queries("cfgclone.common", "samples.sql")

_HEADER = b"PGCOPY\n\xff\r\n\x00"
_HEADER_BYTES = len(_HEADER) + 8  # signature, flags, header extension length
_TRAILER_BYTES = 2
_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("ts_len", ">i4"),
        ("ts", ">i8"),
        ("metric_len", ">i4"),
        ("metric", ">i4"),
        ("value_len", ">i4"),
        ("value", ">f8"),
    ]
)
POSTGRES_EPOCH_UNIX_US = 946_684_800_000_000
"""PostgreSQL counts timestamps in microseconds from 2000-01-01 UTC."""


@dataclass(frozen=True)
class MetricSamples:
    """Samples of one metric in time order."""

    ts_unix_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.values.size)


def parse_binary_copy(payload: bytes | bytearray | memoryview) -> npt.NDArray[np.void]:
    """Rows of a binary COPY of ``(timestamptz, int4, float8)`` as a structured array."""
    view = memoryview(payload)
    if len(view) < _HEADER_BYTES + _TRAILER_BYTES or bytes(view[: len(_HEADER)]) != _HEADER:
        raise ValueError("not a PostgreSQL binary COPY payload")
    body = view[_HEADER_BYTES : len(view) - _TRAILER_BYTES]
    if len(body) % _ROW.itemsize:
        raise ValueError("binary COPY rows are not (timestamptz, int4, float8)")
    rows = np.frombuffer(body, dtype=_ROW)
    if rows.size and not (rows["fields"] == 3).all():
        raise ValueError("binary COPY rows are not (timestamptz, int4, float8)")
    return rows


def split_by_metric(rows: npt.NDArray[np.void]) -> dict[int, MetricSamples]:
    """Group rows by metric id, each group in time order."""
    if rows.size == 0:
        return {}
    metric = rows["metric"].astype(np.int32)
    ts_ns = (rows["ts"].astype(np.int64) + POSTGRES_EPOCH_UNIX_US) * 1000
    order = np.lexsort((ts_ns, metric))
    metric, ts_ns = metric[order], ts_ns[order]
    values = rows["value"].astype(np.float64)[order]
    ids, starts = np.unique(metric, return_index=True)
    ends = [*starts[1:], metric.size]
    return {
        int(mid): MetricSamples(ts_ns[a:b], values[a:b])
        for mid, a, b in zip(ids, starts, ends, strict=True)
    }


async def system_key(conn: Connection, system_id: str) -> int:
    """Internal key of a registered system; NOT_FOUND otherwise."""
    cursor = await conn.execute(_QUERIES["system_key"], {"system_id": system_id})
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(
            f"systems/{system_id} is not registered",
            reason="SYSTEM_NOT_FOUND",
            metadata={"system": f"systems/{system_id}"},
        )
    return int(row[0])


async def read_samples(
    conn: Connection, system_id: str, start: datetime, end: datetime
) -> dict[str, MetricSamples]:
    """Every sample of a system in ``[start, end)``, by metric name, in time order."""
    key = await system_key(conn, system_id)
    payload = bytearray()
    async with conn.cursor() as cursor:
        params = {"system": key, "start": start, "end": end}
        async with cursor.copy(_QUERIES["copy_samples_out"], params) as copy:
            async for chunk in copy:
                payload += chunk
    by_id = split_by_metric(parse_binary_copy(payload))
    if not by_id:
        return {}
    cursor = await conn.execute(_QUERIES["metric_names"], {"ids": list(by_id)})
    names = {int(mid): str(name) for mid, name in await cursor.fetchall()}
    return {names[mid]: samples for mid, samples in by_id.items()}
