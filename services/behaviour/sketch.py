"""A mergeable quantile sketch with relative accuracy (DDSketch-style logarithmic buckets).

Why this sketch: a fingerprint is refined by merging windows, never by rereading
history, so its quantiles must come from a summary whose merge is exact. Bucket
``i`` holds the magnitudes in ``(gamma**(i-1), gamma**i]`` with
``gamma = (1 + alpha) / (1 - alpha)``; merging adds bucket weights, so a merged
sketch is the sketch of the union, bucket for bucket. A quantile answered from
a bucket is within ``alpha`` relative error of the true order statistic, which
keeps a p99 meaningful whether latency is 1 ms or 10 s. Negative values use a
mirrored set of buckets; zero (and magnitudes below the smallest normal float)
has a bucket of its own.

Quantiles follow the inverted-CDF convention: the answer approximates the smallest
value whose cumulative weight reaches ``q * n``, as
``numpy.quantile(..., method="inverted_cdf")``. Unlike rank ``q * (n - 1)``, that rank
scales with the weights, so decay (which scales every weight) leaves quantiles alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_RELATIVE_ACCURACY",
    "QuantileSketch",
    "sketches_by_group",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_RELATIVE_ACCURACY = 0.01
"""Relative accuracy of quantiles: 1% keeps a sketch of a regime to a few hundred buckets."""

MIN_INDEXABLE = float(np.finfo(np.float64).tiny)
"""Magnitudes below the smallest normal float are counted as zero."""

_MAX_FLOAT = float(np.finfo(np.float64).max)
_EMPTY = np.zeros(0, dtype=np.float64)
_EMPTY.setflags(write=False)
_DENSE_TABLE_LIMIT = 1 << 22
"""Above this many (group, bucket) cells, bucket keys are counted by sorting instead."""


def _frozen(counts: npt.ArrayLike) -> FloatArray:
    array = np.array(counts, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError("sketch bucket counts must be one-dimensional")
    array.setflags(write=False)
    return array


def _log_gamma(relative_accuracy: float) -> float:
    return math.log((1.0 + relative_accuracy) / (1.0 - relative_accuracy))


def _add_buckets(
    offset_a: int, counts_a: FloatArray, offset_b: int, counts_b: FloatArray
) -> tuple[int, FloatArray]:
    """Adds two runs of bucket weights that start at different bucket indexes."""
    if counts_a.size == 0:
        return offset_b, counts_b
    if counts_b.size == 0:
        return offset_a, counts_a
    start = min(offset_a, offset_b)
    stop = max(offset_a + counts_a.size, offset_b + counts_b.size)
    total = np.zeros(stop - start, dtype=np.float64)
    total[offset_a - start : offset_a - start + counts_a.size] += counts_a
    total[offset_b - start : offset_b - start + counts_b.size] += counts_b
    return start, _frozen(total)


def _trimmed(first_index: int, row: FloatArray) -> tuple[int, FloatArray]:
    """The non-empty stretch of a row of bucket weights, with its first bucket index."""
    filled = np.flatnonzero(row)
    if filled.size == 0:
        return 0, _EMPTY
    low, high = int(filled[0]), int(filled[-1])
    return first_index + low, _frozen(row[low : high + 1])


@dataclass(frozen=True, eq=False)
class QuantileSketch:
    """Bucketed weights of values: positive and negative magnitudes in log buckets, and zero.

    Weights are floats, not integers, because a decayed sketch weighs old values less.
    Instances are immutable; their arrays are read-only.
    """

    relative_accuracy: float
    """Quantiles are within this relative error of the true order statistic."""
    positive_offset: int = 0
    """Bucket index of ``positive_counts[0]``."""
    positive_counts: FloatArray = field(default_factory=lambda: _EMPTY)
    """Weights of consecutive positive buckets."""
    negative_offset: int = 0
    """Bucket index (of the magnitude) of ``negative_counts[0]``."""
    negative_counts: FloatArray = field(default_factory=lambda: _EMPTY)
    """Weights of consecutive negative buckets, by magnitude."""
    zero_count: float = 0.0
    """Weight of values equal to zero."""
    minimum: float = math.inf
    """The smallest value sketched (``inf`` when unknown: empty, or read from a sketch
    stored before extremes were kept)."""
    maximum: float = -math.inf
    """The largest value sketched (``-inf`` when unknown)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.relative_accuracy < 1.0:
            raise ValueError(f"relative accuracy must be in (0, 1), got {self.relative_accuracy!r}")
        object.__setattr__(self, "positive_counts", _frozen(self.positive_counts))
        object.__setattr__(self, "negative_counts", _frozen(self.negative_counts))
        weights = (self.positive_counts, self.negative_counts, np.array([self.zero_count]))
        for array in weights:
            if array.size and not (np.isfinite(array).all() and (array >= 0.0).all()):
                raise ValueError("sketch bucket weights must be finite and non-negative")
        if math.isnan(self.minimum) or math.isnan(self.maximum):
            raise ValueError("a sketch's minimum and maximum must be numbers")

    @classmethod
    def from_values(
        cls, values: npt.ArrayLike, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    ) -> QuantileSketch:
        """The sketch of a batch of finite values."""
        array = np.asarray(values, dtype=np.float64).ravel()
        groups = np.zeros(array.size, dtype=np.int64)
        sketch = sketches_by_group(array, groups, 1, relative_accuracy)[0]
        return sketch if sketch is not None else cls(relative_accuracy)

    @property
    def gamma(self) -> float:
        """Ratio of the upper to the lower edge of a bucket."""
        return (1.0 + self.relative_accuracy) / (1.0 - self.relative_accuracy)

    @property
    def count(self) -> float:
        """Total weight of the values sketched."""
        return float(self.positive_counts.sum() + self.negative_counts.sum() + self.zero_count)

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """The sketch of both sketches' values; exact, bucket for bucket."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                "cannot merge sketches of relative accuracy "
                f"{self.relative_accuracy} and {other.relative_accuracy}"
            )
        positive_offset, positive = _add_buckets(
            self.positive_offset, self.positive_counts, other.positive_offset, other.positive_counts
        )
        negative_offset, negative = _add_buckets(
            self.negative_offset, self.negative_counts, other.negative_offset, other.negative_counts
        )
        return QuantileSketch(
            self.relative_accuracy,
            positive_offset,
            positive,
            negative_offset,
            negative,
            self.zero_count + other.zero_count,
            min(self.minimum, other.minimum),
            max(self.maximum, other.maximum),
        )

    def decayed(self, factor: float) -> QuantileSketch:
        """The same shape with every weight multiplied by ``factor`` (quantiles and
        extremes are unchanged)."""
        return QuantileSketch(
            self.relative_accuracy,
            self.positive_offset,
            self.positive_counts * factor,
            self.negative_offset,
            self.negative_counts * factor,
            self.zero_count * factor,
            self.minimum,
            self.maximum,
        )

    def buckets(self) -> tuple[FloatArray, FloatArray]:
        """Representative values of the non-empty buckets in ascending order, and their weights."""
        log_gamma = _log_gamma(self.relative_accuracy)
        scale = math.log(2.0 / (1.0 + self.gamma))
        negative_index = self.negative_offset + np.arange(self.negative_counts.size)
        positive_index = self.positive_offset + np.arange(self.positive_counts.size)
        negative = -np.minimum(np.exp(negative_index * log_gamma + scale), _MAX_FLOAT)
        positive = np.minimum(np.exp(positive_index * log_gamma + scale), _MAX_FLOAT)
        values = np.concatenate([negative[::-1], [0.0], positive])
        weights = np.concatenate(
            [self.negative_counts[::-1], [self.zero_count], self.positive_counts]
        )
        filled = weights > 0.0
        return values[filled], weights[filled]

    def quantiles(self, qs: Sequence[float]) -> tuple[float, ...]:
        """Several quantiles at once; each ``q`` in [0, 1]. An empty sketch answers 0.0.

        Answers rise with ``q`` and lie within the values sketched: a bucket's
        representative value may lie beyond the largest (or smallest) value in it, by up
        to the relative accuracy, so it is clamped to the extremes when they are known
        (a CPU busy all the time has a p99 of 1, not 1.005).
        """
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        values, weights = self.buckets()
        if values.size == 0:
            return tuple(0.0 for _ in qs)
        cumulative = np.cumsum(weights)
        ranks = np.asarray(qs, dtype=np.float64) * float(cumulative[-1])
        positions = np.searchsorted(cumulative, ranks, side="left")
        positions = np.minimum(positions, values.size - 1)
        answers = values[positions]
        qs_array = np.asarray(qs, dtype=np.float64)
        if math.isfinite(self.minimum):
            answers = np.maximum(answers, self.minimum)
            answers[qs_array == 0.0] = self.minimum  # the smallest value, exactly
        if math.isfinite(self.maximum):
            answers = np.minimum(answers, self.maximum)
            answers[qs_array == 1.0] = self.maximum  # the largest value, exactly
        return tuple(float(value) for value in answers)

    def quantile(self, q: float) -> float:
        """The smallest value with cumulative weight ``q * n``, within the relative accuracy."""
        return self.quantiles((q,))[0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        return (
            self.relative_accuracy == other.relative_accuracy
            and self.zero_count == other.zero_count
            and self.minimum == other.minimum
            and self.maximum == other.maximum
            and _same_run(
                self.positive_offset,
                self.positive_counts,
                other.positive_offset,
                other.positive_counts,
            )
            and _same_run(
                self.negative_offset,
                self.negative_counts,
                other.negative_offset,
                other.negative_counts,
            )
        )

    __hash__ = None  # type: ignore[assignment]


def _same_run(offset_a: int, counts_a: FloatArray, offset_b: int, counts_b: FloatArray) -> bool:
    if counts_a.size == 0 or counts_b.size == 0:
        return counts_a.size == counts_b.size
    return offset_a == offset_b and bool(np.array_equal(counts_a, counts_b))


def sketches_by_group(
    values: FloatArray,
    groups: IntArray,
    group_count: int,
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
) -> list[QuantileSketch | None]:
    """One sketch per group (``None`` for an empty group), from a single pass over the values.

    ``groups[i]`` in ``[0, group_count)`` is the group of ``values[i]``. The bucket key
    of every value is computed at once and all (group, bucket) cells are counted
    with one ``bincount`` (or one sort when the table of cells would be huge), which is
    what makes building from a million samples cheap.
    """
    if not 0.0 < relative_accuracy < 1.0:
        raise ValueError(f"relative accuracy must be in (0, 1), got {relative_accuracy!r}")
    result: list[QuantileSketch | None] = [None] * group_count
    if values.size == 0:
        return result
    magnitudes = np.abs(values)
    nonzero = magnitudes >= MIN_INDEXABLE
    inverse_log_gamma = 1.0 / _log_gamma(relative_accuracy)
    keys = np.ceil(np.log(np.maximum(magnitudes, MIN_INDEXABLE)) * inverse_log_gamma).astype(
        np.int64
    )
    smallest = float(np.min(magnitudes, where=nonzero, initial=np.inf))
    if math.isinf(smallest):
        low = high = 0
    else:
        low = math.ceil(math.log(smallest) * inverse_log_gamma) - 1
        high = math.ceil(math.log(float(magnitudes.max())) * inverse_log_gamma) + 1
    width = high - low + 1
    # Cells of one group: negative buckets [0, width), zero at width, positive after it.
    row = 2 * width + 1
    slots = keys - low
    slots += (width + 1) * (values > 0.0)
    slots[~nonzero] = width
    cells = groups * row + slots
    if group_count * row <= max(_DENSE_TABLE_LIMIT, 4 * values.size):
        table = np.bincount(cells, minlength=group_count * row).astype(np.float64)
    else:
        table = np.zeros(group_count * row, dtype=np.float64)
        occupied, counts = np.unique(cells, return_counts=True)
        table[occupied] = counts
    table = table.reshape(group_count, row)
    minima = np.full(group_count, np.inf)
    maxima = np.full(group_count, -np.inf)
    np.minimum.at(minima, groups, values)
    np.maximum.at(maxima, groups, values)
    for group in np.flatnonzero(table.any(axis=1)):
        cells_of_group = table[group]
        negative_offset, negative = _trimmed(low, cells_of_group[:width])
        positive_offset, positive = _trimmed(low, cells_of_group[width + 1 :])
        result[int(group)] = QuantileSketch(
            relative_accuracy,
            positive_offset,
            positive,
            negative_offset,
            negative,
            float(cells_of_group[width]),
            float(minima[group]),
            float(maxima[group]),
        )
    return result
