"""The collector's published read interface: systems and samples, read in place.

The collector owns ``systems``, ``metrics``, ``series`` and ``samples``. Other services
that share its database read them only through this module (and the read-only views
its migrations publish, ``docs/architecture.md``), never by their own SQL: a gRPC read
of a million samples could not meet the one-second fingerprint bar, so this read stays
in process, in the owner's package, with the owner's SQL.

Samples come back fast: binary COPY out of PostgreSQL, parsed with numpy. The
fingerprint service reads millions of samples per build. Each row of a COPY
is a message the driver hands over one at a time, which costs about a
microsecond of Python per row; so the query aggregates each metric's samples
into two arrays (times and values) and the COPY carries one row per metric. A
binary array of fixed-size elements is a numpy structured array as it stands,
so nothing runs per sample in Python.

A metric's samples in one window travel as one array, so they must stay under
PostgreSQL's 1 GB limit on a value: about 89 million samples of one metric.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from cfgclone.behaviour.model import SystemProfile
from cfgclone.common.errors import system_not_found
from cfgclone.common.queries import load_queries
from cfgclone.common.store import Connection

_QUERIES = load_queries("cfgclone.collector", "reads.sql")

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_ARRAY_HEADER = struct.Struct(">iiiii")  # dimensions, has nulls, element type, length, lower bound
_TIMESTAMPS = np.dtype([("length", ">i4"), ("value", ">i8")])
_VALUES = np.dtype([("length", ">i4"), ("value", ">f8")])
_FIELDS_PER_ROW = 3  # metric name, times, values
POSTGRES_EPOCH_UNIX_US = 946_684_800_000_000
"""PostgreSQL counts timestamps in microseconds from 2000-01-01 UTC."""


@dataclass(frozen=True)
class SystemRow:
    """A registered system as other services read it: its keys, hardware and labels."""

    key: int
    """The row's key, which other services' tables reference."""
    system_id: str
    hostname: str
    cpu_model: str
    cpu_cores: int
    memory_bytes: int
    os: str
    kernel: str
    architecture: str
    labels: dict[str, str]

    @property
    def profile(self) -> SystemProfile:
        """The hardware and software a fingerprint is taken on."""
        return SystemProfile(
            cpu_cores=self.cpu_cores,
            memory_bytes=self.memory_bytes,
            architecture=self.architecture,
            os=self.os,
            kernel=self.kernel,
            cpu_model=self.cpu_model,
        )


@dataclass(frozen=True)
class MetricSamples:
    """Samples of one metric in time order."""

    ts_unix_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.values.size)


class _CopyReader:
    """Walks the fields of a binary COPY payload from its first row to its trailer."""

    def __init__(self, payload: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(payload)
        header = len(_SIGNATURE) + 8  # signature, flags, length of the header extension
        if len(self._view) < header + 2 or bytes(self._view[: len(_SIGNATURE)]) != _SIGNATURE:
            raise ValueError("not a PostgreSQL binary COPY payload")
        self._position = header + self._int(_INT32, header - 4)

    def _int(self, layout: struct.Struct, position: int) -> int:
        if position + layout.size > len(self._view):
            raise ValueError("binary COPY payload ends in the middle of a row")
        return int(layout.unpack_from(self._view, position)[0])

    def next_row(self) -> bool:
        """Step into the next row; False at the trailer."""
        fields = self._int(_INT16, self._position)
        self._position += _INT16.size
        if fields == -1:
            return False
        if fields != _FIELDS_PER_ROW:
            raise ValueError("binary COPY rows are not (text, timestamptz[], float8[])")
        return True

    def field(self) -> memoryview:
        """The bytes of the next field of the current row."""
        length = self._int(_INT32, self._position)
        start = self._position + _INT32.size
        if length < 0 or start + length > len(self._view):
            raise ValueError("binary COPY field is NULL or runs past the payload")
        self._position = start + length
        return self._view[start : start + length]


def _array(field: memoryview, element: np.dtype[np.void]) -> npt.NDArray[np.void]:
    """Elements of a one-dimensional binary array without NULLs, each 8 bytes of data."""
    dimensions = _INT32.unpack_from(field, 0)[0] if len(field) >= _INT32.size else -1
    if dimensions == 0:
        return np.zeros(0, dtype=element)
    if dimensions != 1 or len(field) < _ARRAY_HEADER.size:
        raise ValueError("binary COPY field is not a one-dimensional array")
    _, has_nulls, _, count, _ = _ARRAY_HEADER.unpack_from(field, 0)
    if has_nulls or len(field) != _ARRAY_HEADER.size + count * element.itemsize:
        raise ValueError("binary COPY array holds NULLs or elements that are not 8 bytes")
    elements = np.frombuffer(field, dtype=element, count=count, offset=_ARRAY_HEADER.size)
    if not (elements["length"] == 8).all():
        raise ValueError("binary COPY array holds elements that are not 8 bytes")
    return elements


def _in_time_order(
    ts_unix_ns: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
) -> MetricSamples:
    if ts_unix_ns.size > 1 and bool((ts_unix_ns[1:] < ts_unix_ns[:-1]).any()):
        order = np.argsort(ts_unix_ns, kind="stable")
        return MetricSamples(ts_unix_ns[order], values[order])
    return MetricSamples(ts_unix_ns, values)


def parse_metric_rows(payload: bytes | bytearray | memoryview) -> dict[str, MetricSamples]:
    """Rows of a binary COPY of ``(name, timestamptz[], float8[])``, by name, in time order."""
    reader = _CopyReader(payload)
    found: dict[str, MetricSamples] = {}
    while reader.next_row():
        name = bytes(reader.field()).decode("utf-8")
        micros = _array(reader.field(), _TIMESTAMPS)["value"].astype(np.int64)
        values = _array(reader.field(), _VALUES)["value"].astype(np.float64)
        if micros.size != values.size:
            raise ValueError(f"metric {name!r} has {micros.size} times but {values.size} values")
        found[name] = _in_time_order((micros + POSTGRES_EPOCH_UNIX_US) * 1000, values)
    return found


async def system(conn: Connection, system_id: str) -> SystemRow:
    """The registered system; NOT_FOUND otherwise."""
    cursor = await conn.execute(_QUERIES["system_row"], {"system_id": system_id})
    row = await cursor.fetchone()
    if row is None:
        raise system_not_found(system_id)
    key, sid, hostname, cpu_model, cores, memory, os_name, kernel, arch, labels = row
    return SystemRow(
        key, sid, hostname, cpu_model, cores, memory, os_name, kernel, arch, dict(labels or {})
    )


async def system_key(conn: Connection, system_id: str) -> int:
    """Internal key of a registered system; NOT_FOUND otherwise."""
    cursor = await conn.execute(_QUERIES["system_key"], {"system_id": system_id})
    row = await cursor.fetchone()
    if row is None:
        raise system_not_found(system_id)
    return int(row[0])


async def metric_known(conn: Connection, name: str) -> bool:
    """Whether samples of metric ``name`` were ever stored, for any system."""
    cursor = await conn.execute(_QUERIES["metric_known"], {"name": name})
    row = await cursor.fetchone()
    return bool(row and row[0])


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
    return parse_metric_rows(payload)


async def window_counts(conn: Connection, system_key: int, bounds: Sequence[datetime]) -> list[int]:
    """Samples of the system in each window between consecutive ``bounds`` (sorted), the
    last window open-ended: ``len(bounds)`` counts."""
    if not bounds:
        return []
    cursor = await conn.execute(
        _QUERIES["window_counts"],
        {"system": system_key, "bounds": list(bounds), "first": bounds[0]},
    )
    counts = [0] * len(bounds)
    for bucket, count in await cursor.fetchall():
        if 1 <= int(bucket) <= len(bounds):
            counts[int(bucket) - 1] = int(count)
    return counts
