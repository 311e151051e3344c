"""A ``SampleBatch`` decoded into numpy columns, and refused whole when any row is bad.

Ingest must keep pace with a bare binary COPY, so nothing here loops over rows
in Python: the packed protobuf columns become numpy arrays in one call each,
and every row check is a vector operation. Loops run over series (one per
metric), which a batch has few of.

A refused batch raises :class:`InvalidArgument` naming the first bad row as a
field path (``batch.series[2].values[17]``), so a sender can find it, and
nothing of the batch is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from cfgclone.collector.batching import MAX_METRIC_NAME_LENGTH, is_metric_name
from cfgclone.common.errors import FieldViolation, InvalidArgument
from cfgclone.common.message_checks import quote
from cfgclone.common.requests import system_id_from_name
from cfgclone.v1 import common_pb2

__all__ = [
    "MAX_BATCH_ID_LENGTH",
    "MAX_UNIT_LENGTH",
    "BatchLimits",
    "DecodedBatch",
    "MetricSpec",
    "decode_batch",
]

MAX_UNIT_LENGTH = 64
MAX_BATCH_ID_LENGTH = 128
_KNOWN_KINDS = frozenset(common_pb2.MetricKind.values())


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What the collector accepts in one batch."""

    max_samples: int = 200_000
    """Most samples in one batch; larger ones must be split by the sender."""
    max_series: int = 10_000
    """Most series (metrics) in one batch."""
    max_future_ns: int = 5 * 60 * 1_000_000_000
    """How far ahead of the collector's clock a sample may be (clock skew)."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric as a batch names it: the dictionary entry made if the name is new."""

    name: str
    unit: str
    kind: int


@dataclass(frozen=True)
class DecodedBatch:
    """A valid batch as columns: row ``i`` is ``(ts_unix_ns[i], metric_of_row[i], values[i])``."""

    system_id: str
    """The system's id, ``db-01`` of ``systems/db-01``."""
    batch_id: str
    metrics: tuple[MetricSpec, ...]
    """The distinct metrics of the batch, in order of first appearance."""
    series_metric: npt.NDArray[np.int32]
    """For each series of the batch, the index of its metric in ``metrics``."""
    series_offsets: npt.NDArray[np.int64]
    """Row where each series starts, plus the row count at the end."""
    ts_unix_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    def metric_of_row(self) -> npt.NDArray[np.int32]:
        """Index into ``metrics`` of every row."""
        return np.repeat(self.series_metric, np.diff(self.series_offsets))


def _refuse(path: str, description: str, reason: str, **metadata: str) -> InvalidArgument:
    return InvalidArgument(
        f"{path}: {description}; nothing of the batch was stored",
        violations=[FieldViolation(path, description)],
        reason=reason,
        metadata=metadata,
    )


def _check_series_shape(
    batch: common_pb2.SampleBatch, limits: BatchLimits
) -> tuple[list[int], tuple[MetricSpec, ...], list[int]]:
    """Lengths, distinct metrics and the metric of each series; refuses bad names and shapes."""
    if len(batch.series) > limits.max_series:
        raise _refuse(
            "batch.series",
            f"holds {len(batch.series)} series; at most {limits.max_series} per batch",
            "BATCH_TOO_LARGE",
        )
    lengths: list[int] = []
    metrics: dict[str, int] = {}
    specs: list[MetricSpec] = []
    series_metric: list[int] = []
    total = 0
    for index, series in enumerate(batch.series):
        path = f"batch.series[{index}]"
        name = series.metric
        if not is_metric_name(name):
            problem = (
                f"is {len(name)} characters long; at most {MAX_METRIC_NAME_LENGTH}"
                if len(name) > MAX_METRIC_NAME_LENGTH
                else f"{quote(name)} does not match [a-zA-Z_][a-zA-Z0-9_.:]*"
            )
            raise _refuse(f"{path}.metric", problem, "INVALID_METRIC_NAME", series=str(index))
        if len(series.unit) > MAX_UNIT_LENGTH:
            raise _refuse(f"{path}.unit", f"at most {MAX_UNIT_LENGTH} characters", "INVALID_UNIT")
        if series.kind not in _KNOWN_KINDS:
            raise _refuse(f"{path}.kind", f"unknown kind {series.kind}", "INVALID_KIND")
        rows = len(series.values)
        if len(series.ts_unix_ns) != rows:
            raise _refuse(
                path,
                f"ts_unix_ns has {len(series.ts_unix_ns)} entries but values has {rows}; "
                "the columns must have equal lengths",
                "COLUMN_LENGTH_MISMATCH",
                series=str(index),
            )
        total += rows
        if total > limits.max_samples:
            raise _refuse(
                "batch.series",
                f"holds more than {limits.max_samples} samples; split it into smaller batches",
                "BATCH_TOO_LARGE",
            )
        lengths.append(rows)
        position = metrics.get(name)
        if position is None:
            position = metrics[name] = len(specs)
            specs.append(MetricSpec(name, series.unit, int(series.kind)))
        series_metric.append(position)
    return lengths, tuple(specs), series_metric


def _first_bad_row(
    ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64], now_ns: int, limits: BatchLimits
) -> tuple[int, str] | None:
    """Index of the first bad row and which column is bad, or None when all are good."""
    bad_value = ~np.isfinite(values)
    bad_time = (ts > now_ns + limits.max_future_ns) | (ts < 0)
    bad = bad_value | bad_time
    if not bad.any():
        return None
    row = int(np.argmax(bad))
    return row, "values" if bad_value[row] else "ts_unix_ns"


def _as_time(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="seconds")


def decode_batch(
    batch: common_pb2.SampleBatch, now_ns: int, limits: BatchLimits | None = None
) -> DecodedBatch:
    """Columns of a batch; INVALID_ARGUMENT naming its first bad field or row.

    Refused: a malformed system name or batch id, a metric name outside
    ``[a-zA-Z_][a-zA-Z0-9_.:]*`` or over 200 characters, columns of unequal
    length, more samples or series than ``limits`` allow, a value that is NaN or
    infinite, a timestamp before 1970 or more than ``limits.max_future_ns``
    ahead of ``now_ns``. Whether the system is registered is the store's to say.
    """
    limits = limits or BatchLimits()
    system_id = system_id_from_name(batch.system, "batch.system")
    if not batch.batch_id:
        raise _refuse("batch.batch_id", "is required (a UUID is fine)", "BATCH_ID_REQUIRED")
    if len(batch.batch_id) > MAX_BATCH_ID_LENGTH:
        raise _refuse(
            "batch.batch_id", f"at most {MAX_BATCH_ID_LENGTH} characters", "INVALID_BATCH_ID"
        )
    lengths, metrics, series_metric = _check_series_shape(batch, limits)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if batch.series:
        ts = np.concatenate([np.asarray(s.ts_unix_ns, dtype=np.int64) for s in batch.series])
        values = np.concatenate([np.asarray(s.values, dtype=np.float64) for s in batch.series])
    else:
        ts = np.zeros(0, dtype=np.int64)
        values = np.zeros(0, dtype=np.float64)
    bad = _first_bad_row(ts, values, now_ns, limits)
    if bad is not None:
        row, column = bad
        series = int(np.searchsorted(offsets, row, side="right")) - 1
        position = row - int(offsets[series])
        path = f"batch.series[{series}].{column}[{position}]"
        if column == "values":
            problem, reason = f"must be a finite number (got {values[row]})", "NON_FINITE_VALUE"
        elif ts[row] < 0:
            problem, reason = (
                "lies before 1970; timestamps are Unix epoch nanoseconds",
                ("TIMESTAMP_OUT_OF_RANGE"),
            )
        else:
            problem = (
                f"{_as_time(int(ts[row]))} is more than {limits.max_future_ns // 10**9} s "
                f"ahead of the collector's clock ({_as_time(now_ns)}); check the sender's clock"
            )
            reason = "FUTURE_TIMESTAMP"
        raise _refuse(path, problem, reason, series=str(series), row=str(position))
    return DecodedBatch(
        system_id=system_id,
        batch_id=batch.batch_id,
        metrics=metrics,
        series_metric=np.asarray(series_metric, dtype=np.int32),
        series_offsets=offsets,
        ts_unix_ns=ts,
        values=values,
    )
