"""Samples as senders see them, and their grouping into ``SampleBatch`` messages.

The agent, the collector's own scraper and the ingest benchmark all build batches
here, so every sender closes a batch by the same rules: when it holds
``max_samples`` samples or its oldest sample is ``max_age_seconds`` old. A batch
gets a fresh id when it is closed; that id is what makes a resend harmless.

This module stays free of numpy so that the agent keeps a small footprint;
columns may still be numpy arrays, which protobuf copies without Python loops.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from cfgclone.v1 import common_pb2
from cfgclone.vocabulary import parse_series

GAUGE = common_pb2.METRIC_KIND_GAUGE
COUNTER = common_pb2.METRIC_KIND_COUNTER

__all__ = [
    "COUNTER",
    "GAUGE",
    "MAX_METRIC_NAME_LENGTH",
    "METRIC_NAME",
    "BatchBuilder",
    "Sample",
    "is_metric_name",
    "new_batch_id",
]

METRIC_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:]*")
"""What a metric name may look like: Prometheus names, plus dots."""
MAX_METRIC_NAME_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_metric_name(name: str) -> bool:
    """Whether ``name`` is a series the collector accepts: a metric name, or a metric
    name with labels in Prometheus' text form (``queue_depth{queue="orders"}``)."""
    if len(name) > MAX_METRIC_NAME_LENGTH or _CONTROL.search(name) is not None:
        return False
    if METRIC_NAME.fullmatch(name) is not None:
        return True
    try:
        parse_series(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement of one metric at one instant."""

    metric: str
    """Metric name, ``[a-zA-Z_][a-zA-Z0-9_.:]*``."""
    value: float
    """Finite value; a counter is sent as its rate per second."""
    ts_unix_ns: int
    """When it was measured, in nanoseconds since the Unix epoch."""
    unit: str = ""
    """Unit recorded in the metric dictionary the first time the name is seen."""
    kind: int = GAUGE
    """``GAUGE`` or ``COUNTER`` (sent as a rate)."""


def new_batch_id() -> str:
    """A random batch id; unique enough that two senders never collide."""
    return uuid.uuid4().hex


def _as_list(column: Sequence[Any]) -> Sequence[Any]:
    """A numpy column as a list, which protobuf copies faster than it iterates an array."""
    tolist = getattr(column, "tolist", None)
    return column if tolist is None else cast("Sequence[Any]", tolist())


@dataclass
class _OpenBatch:
    series: dict[str, common_pb2.SampleSeries] = field(default_factory=dict)
    samples: int = 0
    opened_at: float = 0.0


class BatchBuilder:
    """Accumulates samples of one system and closes batches by size and by age.

    ``add`` and ``add_series`` return the batches their samples closed (usually
    none); the caller hands those to the spool or the collector. ``due`` says
    when the open batch has waited long enough to be closed by ``flush`` even
    though it is not full.
    """

    def __init__(
        self,
        system: str,
        *,
        max_samples: int = 5_000,
        max_age_seconds: float = 10.0,
        batch_id: Callable[[], str] = new_batch_id,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_samples < 1:
            raise ValueError("max_samples must be at least 1")
        if max_age_seconds <= 0:
            raise ValueError("max_age_seconds must be positive")
        self.system = system
        self.max_samples = max_samples
        self.max_age_seconds = max_age_seconds
        self._batch_id = batch_id
        self._clock = clock
        self._open = _OpenBatch()

    @property
    def pending_samples(self) -> int:
        """Samples in the open batch."""
        return self._open.samples

    def _series(self, metric: str, unit: str, kind: int) -> common_pb2.SampleSeries:
        series = self._open.series.get(metric)
        if series is None:
            if not self._open.series:
                self._open.opened_at = self._clock()
            series = common_pb2.SampleSeries(metric=metric, unit=unit, kind=kind)  # type: ignore[arg-type]
            self._open.series[metric] = series
        return series

    def add(self, sample: Sample) -> list[common_pb2.SampleBatch]:
        """Add one sample; returns the batch it filled, if it filled one."""
        series = self._series(sample.metric, sample.unit, sample.kind)
        series.ts_unix_ns.append(sample.ts_unix_ns)
        series.values.append(sample.value)
        self._open.samples += 1
        if self._open.samples >= self.max_samples:
            return [self._close()]
        return []

    def add_many(self, samples: Sequence[Sample]) -> list[common_pb2.SampleBatch]:
        """Add samples in order; returns the batches they filled."""
        closed: list[common_pb2.SampleBatch] = []
        for sample in samples:
            closed += self.add(sample)
        return closed

    def add_series(
        self,
        metric: str,
        ts_unix_ns: Sequence[int],
        values: Sequence[float],
        *,
        unit: str = "",
        kind: int = GAUGE,
    ) -> list[common_pb2.SampleBatch]:
        """Add a column of samples of one metric, split over as many batches as it fills."""
        if len(ts_unix_ns) != len(values):
            raise ValueError("ts_unix_ns and values must have the same length")
        closed: list[common_pb2.SampleBatch] = []
        start = 0
        while start < len(values):
            room = self.max_samples - self._open.samples
            end = min(len(values), start + room)
            series = self._series(metric, unit, kind)
            series.ts_unix_ns.extend(_as_list(ts_unix_ns[start:end]))
            series.values.extend(_as_list(values[start:end]))
            self._open.samples += end - start
            start = end
            if self._open.samples >= self.max_samples:
                closed.append(self._close())
        return closed

    def due(self) -> bool:
        """Whether the open batch holds samples and has reached its age limit."""
        return bool(self._open.samples) and self.seconds_until_due() <= 0

    def seconds_until_due(self) -> float:
        """How long until the open batch is due; infinite when it is empty."""
        if not self._open.samples:
            return float("inf")
        return self._open.opened_at + self.max_age_seconds - self._clock()

    def flush(self) -> common_pb2.SampleBatch | None:
        """Close the open batch whatever its size; None when it is empty."""
        return self._close() if self._open.samples else None

    def _close(self) -> common_pb2.SampleBatch:
        batch = common_pb2.SampleBatch(
            system=self.system,
            batch_id=self._batch_id(),
            series=list(self._open.series.values()),
        )
        self._open = _OpenBatch()
        return batch
