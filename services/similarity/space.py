"""The space systems are compared in: standardised, group-weighted, unit-length rows.

Each group of a standardised embedding gets an anchor coordinate, is scaled to unit
length and then multiplied by the square root of its share of the total weight. A
row is therefore of unit length, and the dot product of two rows is exactly the
weighted mean of the per-group cosines, which is what lets an answer split its
score into per-group contributions that add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .layout import GroupLayout
from .scaling import RobustScaler
from .settings import SimilaritySettings

__all__ = ["EmbeddingSpace", "as_embedding", "fits_float32"]

# Rows are prepared in chunks so standardising a million systems needs no
# full-size temporary beyond the output itself.
_CHUNK_ROWS = 65_536
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, slots=True, eq=False)
class EmbeddingSpace:
    """A fitted standardisation plus the group weights; turns raw embeddings into rows."""

    layout: GroupLayout
    """Groups of the raw embedding."""
    scaler: RobustScaler
    """Fleet medians and spreads."""
    weights: NDArray[np.float64]
    """Share of each layout group in the overall score; sums to 1."""
    anchor: float
    """Length of the constant coordinate added to each group (see `SimilaritySettings`)."""
    _plan: _Plan = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plan", _plan_of(self))

    @classmethod
    def fit(
        cls, layout: GroupLayout, raw: NDArray[np.floating[Any]], settings: SimilaritySettings
    ) -> EmbeddingSpace:
        """Fits the standardisation to the fleet's raw embeddings (one row per system)."""
        weights = np.array([settings.weight_of(name) for name in layout.names], dtype=np.float64)
        total = weights.sum()
        if total <= 0:
            raise ValueError("at least one embedding group needs a positive weight")
        scaler = RobustScaler.fit(raw, clip=settings.spread_clip, sample=settings.scaler_sample)
        return cls(layout, scaler, weights / total, settings.group_anchor)

    @property
    def dimension(self) -> int:
        """Length of a prepared row: each weighted group plus its anchor."""
        return sum(
            group.length + 1
            for group, weight in zip(self.layout.groups, self.weights, strict=True)
            if weight > 0
        )

    def anchor_of(self, group: Any) -> float:
        """The anchor coordinate of ``group``: ``anchor`` robust spreads per dimension.

        Scaled with the group's length, so the noise of many dimensions near the median
        (each a fraction of a spread) cannot turn two alike systems into strangers.
        """
        return float(self.anchor * np.sqrt(group.length))

    def prepare(self, raw: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """Raw embeddings (m, d) -> C-contiguous float32 rows (m, `dimension`) of unit length.

        Groups of weight 0 are left out of the rows; they cannot change a dot product.
        """
        plan = self._plan
        rows = raw.shape[0]
        out = np.empty((rows, plan.dimension), dtype=np.float32)
        for start in range(0, rows, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, rows)
            scaled = self.scaler.transform(raw[start:stop], np.float32)
            block = out[start:stop]
            block[:, plan.value_columns] = scaled[:, plan.sources]
            block[:, plan.anchor_columns] = plan.anchors
            norms = np.sqrt(np.add.reduceat(block * block, plan.starts, axis=1))
            block *= (plan.scales / norms)[:, plan.group_of_column]
        return out

    def group_cosines(
        self, first: NDArray[np.floating[Any]], others: NDArray[np.floating[Any]]
    ) -> NDArray[np.float64]:
        """Cosine of every group between one raw embedding (d,) and raw rows (m, d) -> (m, G).

        Computed in float64 from the raw embeddings, so groups of weight 0 are reported
        too; columns follow the layout's group order.
        """
        plan = self._plan
        one = self.scaler.transform(first[None, :], np.float64)[0, plan.all_sources]
        many = self.scaler.transform(others, np.float64)[:, plan.all_sources]
        dots = np.add.reduceat(many * one, plan.all_starts, axis=1) + plan.anchor_squares
        norms = np.sqrt(np.add.reduceat(many * many, plan.all_starts, axis=1) + plan.anchor_squares)
        norms *= np.sqrt(np.add.reduceat(one * one, plan.all_starts) + plan.anchor_squares)
        cosines: NDArray[np.float64] = dots / norms
        np.clip(cosines, -1.0, 1.0, out=cosines)
        return cosines


@dataclass(frozen=True, slots=True, eq=False)
class _Plan:
    """Where each group's values and anchor go, so that a whole batch of rows is prepared
    (or compared) with a fixed handful of numpy calls instead of a few per group: on the
    query path the rows are few and the calls' overhead is most of the cost."""

    dimension: int
    sources: NDArray[np.intp]
    """Raw column of each value column of a prepared row."""
    value_columns: NDArray[np.intp]
    anchor_columns: NDArray[np.intp]
    anchors: NDArray[np.float32]
    starts: NDArray[np.intp]
    """First column of each weighted group in a prepared row."""
    scales: NDArray[np.float32]
    """Square root of each weighted group's weight."""
    group_of_column: NDArray[np.intp]
    all_sources: NDArray[np.intp]
    """Raw columns of every group, weighted or not, in layout order."""
    all_starts: NDArray[np.intp]
    anchor_squares: NDArray[np.float64]


def _plan_of(space: EmbeddingSpace) -> _Plan:
    """Columns of the space's prepared rows, from its layout, weights and anchor."""
    sources: list[int] = []
    value_columns: list[int] = []
    anchor_columns: list[int] = []
    anchors: list[float] = []
    starts: list[int] = []
    scales: list[float] = []
    group_of_column: list[int] = []
    column = 0
    for group, weight in zip(space.layout.groups, space.weights, strict=True):
        if weight <= 0:
            continue
        starts.append(column)
        scales.append(float(np.sqrt(weight)))
        sources.extend(range(group.offset, group.stop))
        value_columns.extend(range(column, column + group.length))
        anchor_columns.append(column + group.length)
        anchors.append(space.anchor_of(group))
        group_of_column.extend([len(starts) - 1] * (group.length + 1))
        column += group.length + 1
    lengths = [group.length for group in space.layout.groups]
    plan = _Plan(
        dimension=column,
        sources=np.asarray(sources, dtype=np.intp),
        value_columns=np.asarray(value_columns, dtype=np.intp),
        anchor_columns=np.asarray(anchor_columns, dtype=np.intp),
        anchors=np.asarray(anchors, dtype=np.float32),
        starts=np.asarray(starts, dtype=np.intp),
        scales=np.asarray(scales, dtype=np.float32),
        group_of_column=np.asarray(group_of_column, dtype=np.intp),
        all_sources=np.concatenate(
            [np.arange(group.offset, group.stop) for group in space.layout.groups]
        ).astype(np.intp),
        all_starts=np.cumsum([0, *lengths[:-1]]).astype(np.intp),
        anchor_squares=np.asarray(
            [space.anchor_of(group) ** 2 for group in space.layout.groups], dtype=np.float64
        ),
    )
    return plan


def as_embedding(
    values: object, dimension: int, error: type[ValueError], what: str = "embedding"
) -> NDArray[np.float32]:
    """Validates one raw embedding: a flat sequence of `dimension` finite floats.

    Stored as float32, as the fingerprint carries it; values beyond float32's range
    are rejected rather than turned into infinities.
    """
    try:
        vector = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise error(f"{what} is not a sequence of numbers") from exc
    if vector.ndim != 1 or vector.shape[0] != dimension:
        raise error(f"{what} has shape {vector.shape}; the layout needs {dimension} floats")
    if not fits_float32(vector):
        raise error(f"{what} has NaN, infinite or out-of-range values")
    return vector.astype(np.float32)


def fits_float32(values: NDArray[np.float64]) -> bool:
    """Whether every value is finite and within float32's range."""
    return bool(np.isfinite(values).all() and (np.abs(values) <= _FLOAT32_MAX).all())
