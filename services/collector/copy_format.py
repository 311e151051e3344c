"""PostgreSQL's binary COPY format for sample rows, written and read with numpy.

A binary COPY stream is a fixed header, then per row a big-endian int16 field
count and each field as an int32 length followed by its bytes, then an int16
-1 trailer. Sample rows have fixed-size fields, so a row is a numpy structured
record and a whole payload is one array: no Python runs per row. ``timestamptz``
travels as int64 microseconds since 2000-01-01 UTC.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "COPY_HEADER",
    "COPY_TRAILER",
    "POSTGRES_EPOCH_US",
    "SAMPLE_ROW",
    "pg_micros_to_unix_ns",
    "sample_rows_payload",
    "unix_ns_to_pg_micros",
]

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
"""Signature, flags (no OIDs) and an empty header extension."""
COPY_TRAILER = b"\xff\xff"
POSTGRES_EPOCH_US = 946_684_800_000_000
"""2000-01-01T00:00:00Z in microseconds since the Unix epoch."""

SAMPLE_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("ts_length", ">i4"),
        ("ts", ">i8"),
        ("system_length", ">i4"),
        ("system_id", ">i4"),
        ("metric_length", ">i4"),
        ("metric_id", ">i4"),
        ("value_length", ">i4"),
        ("value", ">f8"),
    ]
)
"""One row of ``COPY samples (ts, system_id, metric_id, value) FROM STDIN (FORMAT BINARY)``."""


def unix_ns_to_pg_micros(ts_unix_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Unix nanoseconds to PostgreSQL's microseconds since 2000 (floored, as PostgreSQL rounds
    only on text input)."""
    return np.floor_divide(ts_unix_ns, 1000) - POSTGRES_EPOCH_US


def pg_micros_to_unix_ns(micros: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """PostgreSQL's microseconds since 2000 to Unix nanoseconds."""
    return (micros.astype(np.int64) + POSTGRES_EPOCH_US) * 1000


def sample_rows_payload(
    ts_unix_ns: npt.NDArray[np.int64],
    system_id: int,
    metric_ids: npt.NDArray[np.int32],
    values: npt.NDArray[np.float64],
) -> memoryview:
    """The whole COPY stream for these rows: header, rows and trailer in one buffer."""
    rows = int(values.shape[0])
    start = len(COPY_HEADER)
    buffer = np.empty(start + rows * SAMPLE_ROW.itemsize + len(COPY_TRAILER), dtype=np.uint8)
    buffer[:start] = np.frombuffer(COPY_HEADER, dtype=np.uint8)
    buffer[buffer.shape[0] - len(COPY_TRAILER) :] = np.frombuffer(COPY_TRAILER, dtype=np.uint8)
    table = buffer[start : start + rows * SAMPLE_ROW.itemsize].view(SAMPLE_ROW)
    table["fields"] = 4
    table["ts_length"] = 8
    table["ts"] = unix_ns_to_pg_micros(ts_unix_ns)
    table["system_length"] = 4
    table["system_id"] = system_id
    table["metric_length"] = 4
    table["metric_id"] = metric_ids
    table["value_length"] = 8
    table["value"] = values
    return memoryview(buffer.data)
