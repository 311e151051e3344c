"""The space systems are compared in: standardised, group-weighted, unit-length rows.

Each group of a standardised embedding gets an anchor coordinate, is scaled to unit
length and then multiplied by the square root of its share of the total weight. A
row is therefore of unit length, and the dot product of two rows is exactly the
weighted mean of the per-group cosines, which is what lets an answer split its
score into per-group contributions that add up.
"""

from __future__ import annotations

from dataclasses import dataclass
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
        rows = raw.shape[0]
        out = np.empty((rows, self.dimension), dtype=np.float32)
        for start in range(0, rows, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, rows)
            scaled = self.scaler.transform(raw[start:stop], np.float32)
            column = 0
            for group, weight in zip(self.layout.groups, self.weights, strict=True):
                if weight <= 0:
                    continue
                block = out[start:stop, column : column + group.length + 1]
                block[:, :-1] = scaled[:, group.offset : group.stop]
                block[:, -1] = self.anchor_of(group)
                norms = np.sqrt(np.einsum("ij,ij->i", block, block))
                block *= (np.sqrt(weight) / norms)[:, None]
                column += group.length + 1
        return out

    def group_cosines(
        self, first: NDArray[np.floating[Any]], others: NDArray[np.floating[Any]]
    ) -> NDArray[np.float64]:
        """Cosine of every group between one raw embedding (d,) and raw rows (m, d) -> (m, G).

        Computed in float64 from the raw embeddings, so groups of weight 0 are reported
        too; columns follow the layout's group order.
        """
        one = self.scaler.transform(first[None, :], np.float64)[0]
        many = self.scaler.transform(others, np.float64)
        cosines = np.empty((many.shape[0], len(self.layout.groups)), dtype=np.float64)
        for column, group in enumerate(self.layout.groups):
            anchor_sq = self.anchor_of(group) ** 2
            a = one[group.offset : group.stop]
            b = many[:, group.offset : group.stop]
            dots = b @ a + anchor_sq
            norms = np.sqrt(np.einsum("ij,ij->i", b, b) + anchor_sq) * np.sqrt(a @ a + anchor_sq)
            cosines[:, column] = dots / norms
        np.clip(cosines, -1.0, 1.0, out=cosines)
        return cosines


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
