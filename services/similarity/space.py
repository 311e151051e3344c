"""The space systems are compared in: standardised, group-weighted, unit-length rows.

Each group of a standardised embedding becomes a block of unit length, multiplied by
the square root of its part of the total weight, so a row is of unit length. An answer
splits its score into per-group contributions that add up: the score is the weighted
mean of the group similarities.

A group is compared in one of two ways:

- by direction (most groups): the group gets an anchor coordinate and is scaled to
  unit length; its similarity is ``(1 + cosine) / 2`` of the two standardised vectors;
- value by value (`SimilaritySettings.value_groups`): each standardised value is clipped
  to `value_clip` spreads and spread over a grid of Gaussian bumps (one coordinate per
  grid point, scaled to unit length), so the dot product of two values' coordinates is
  ``exp(-ln 2 * (distance / value_range) ** 2)``: 1 for equal values, 0.5 a
  `value_range` apart, near 0 three ranges apart, whether the values sit in the middle
  of the fleet or at its edge. The group's similarity is the mean over its values;
  values the whole fleet shares (every machine x86_64) do not count, so they do not
  make every pair look more alike.

Blocks are scaled so that the dot product of two rows is an increasing affine function
of that score (`EmbeddingSpace.score` turns one into the other): the nearest rows are
the most alike systems, so exact scans, the approximate index and k-means cohorts work
on rows as they are.
"""

from __future__ import annotations

import math
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
    by_value: tuple[bool, ...] = ()
    """Per layout group: compared value by value (True) or by direction (False). Empty:
    every group by direction."""
    value_range: float = 1.0
    """Distance, in robust spreads, at which two values are 0.5 alike."""
    value_clip: float = 2.5
    """Values are clipped to +/- this many robust spreads before they are compared."""
    value_shares: NDArray[np.float64] | None = None
    """Per embedding entry, its share of its value-compared group: 1/n for each of the
    n values the fleet varies on, 0 for the others (uniform when the fleet varies on
    none). None: uniform in every group."""
    _grid: NDArray[np.float64] = field(init=False, repr=False)
    _width: float = field(init=False, repr=False)
    _blocks: tuple[float, ...] = field(init=False, repr=False)
    _offset: float = field(init=False, repr=False)
    _gain: float = field(init=False, repr=False)
    _plan: _Plan = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.by_value:
            object.__setattr__(self, "by_value", (False,) * len(self.layout.groups))
        if len(self.by_value) != len(self.layout.groups):
            raise ValueError("by_value needs one flag per layout group")
        if self.value_shares is None:
            object.__setattr__(self, "value_shares", _value_shares(self.layout, None))
        # Bumps of width w give exp(-d**2 / (4 w**2)) as the dot product of two values'
        # coordinates: 0.5 at d = value_range for w = value_range / (2 sqrt(ln 2)). A
        # grid spaced 1.25 w apart, reaching w past the clip, reproduces that within
        # 0.0024 with 10 coordinates a value by default (reaching 1.5 w: 0.0014 with 11;
        # spaced 1.5 w: 0.019 with 9). Each coordinate is a byte per system in the
        # approximate index: 11 values a system, a million systems, 11 MB a coordinate.
        width = self.value_range / (2.0 * math.sqrt(math.log(2.0)))
        reach = self.value_clip + width
        steps = math.ceil(2.0 * reach / (1.25 * width))
        object.__setattr__(self, "_width", width)
        object.__setattr__(self, "_grid", np.linspace(-reach, reach, steps + 1))
        # A direction group's similarity is (1 + cosine) / 2, a value group's is its dot
        # product: blocks scaled by sqrt(weight / 2) and sqrt(weight), then the row by
        # the total, make the row dot product (score - offset) / gain.
        parts = [w if v else w / 2.0 for w, v in zip(self.weights, self.by_value, strict=True)]
        gain = float(sum(parts))
        offset = float(
            sum(w / 2.0 for w, v in zip(self.weights, self.by_value, strict=True) if not v)
        )
        object.__setattr__(
            self, "_blocks", tuple(math.sqrt(part / gain) if gain > 0 else 0.0 for part in parts)
        )
        object.__setattr__(self, "_offset", offset)
        object.__setattr__(self, "_gain", gain)
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
        by_value = tuple(name in settings.value_groups for name in layout.names)
        varies = np.ptp(raw, axis=0) > 0 if raw.shape[0] > 0 else None
        return cls(
            layout,
            scaler,
            weights / total,
            settings.group_anchor,
            by_value,
            settings.value_range,
            settings.value_clip,
            _value_shares(layout, varies),
        )

    @property
    def dimension(self) -> int:
        """Length of a prepared row: each weighted group plus its anchor, or a grid of
        coordinates per value of a group compared value by value."""
        return self._plan.dimension

    def score(self, dot: float | NDArray[np.floating[Any]]) -> Any:
        """The overall score of two systems from the dot product of their rows."""
        return np.clip(self._offset + self._gain * np.asarray(dot, dtype=np.float64), 0.0, 1.0)

    def _bumps(self, values: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """Standardised values (m, k) -> (m, k, grid) coordinates of unit length per value:
        the dot product of two values' coordinates is their similarity."""
        clipped = np.clip(np.asarray(values, dtype=np.float64), -self.value_clip, self.value_clip)
        bumps = np.exp(-0.5 * ((clipped[..., None] - self._grid) / self._width) ** 2)
        bumps /= np.sqrt(np.einsum("ijk,ijk->ij", bumps, bumps))[..., None]
        return bumps

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
            if plan.sources.size:
                direction = np.empty((stop - start, plan.direction_width), dtype=np.float32)
                direction[:, plan.value_columns] = scaled[:, plan.sources]
                direction[:, plan.anchor_columns] = plan.anchors
                norms = np.sqrt(np.add.reduceat(direction * direction, plan.starts, axis=1))
                direction *= (plan.scales / norms)[:, plan.group_of_column]
                block[:, plan.direction_columns] = direction
            if plan.bump_sources.size:
                bumps = self._bumps(scaled[:, plan.bump_sources])
                bumps *= plan.bump_factors[None, :, None]
                block[:, plan.bump_columns] = bumps.reshape(stop - start, -1)
        return out

    def group_cosines(
        self, first: NDArray[np.floating[Any]], others: NDArray[np.floating[Any]]
    ) -> NDArray[np.float64]:
        """Cosine of every group between one raw embedding (d,) and raw rows (m, d) -> (m, G).

        Computed in float64 from the raw embeddings, so groups of weight 0 are reported
        too; columns follow the layout's group order. For a group compared value by
        value, the "cosine" is ``2 * similarity - 1``, so that ``(1 + cosine) / 2`` is its
        similarity as for every group.
        """
        plan = self._plan
        one = self.scaler.transform(first[None, :], np.float64)[0]
        many = self.scaler.transform(others, np.float64)
        cosines = np.empty((many.shape[0], len(self.layout.groups)), dtype=np.float64)
        if plan.all_sources.size:
            a = one[plan.all_sources]
            b = many[:, plan.all_sources]
            squares = plan.anchor_squares
            dots = np.add.reduceat(b * a, plan.all_starts, axis=1) + squares
            norms = np.sqrt(np.add.reduceat(b * b, plan.all_starts, axis=1) + squares)
            norms *= np.sqrt(np.add.reduceat(a * a, plan.all_starts) + squares)
            cosines[:, plan.direction_groups] = dots / norms
        if plan.all_bump_sources.size:
            mine = self._bumps(one[None, plan.all_bump_sources])[0]
            theirs = self._bumps(many[:, plan.all_bump_sources])
            alike = np.einsum("ijk,jk->ij", theirs, mine) * plan.all_bump_shares
            similarity = np.add.reduceat(alike, plan.all_bump_starts, axis=1)
            cosines[:, plan.value_groups] = 2.0 * similarity - 1.0
        np.clip(cosines, -1.0, 1.0, out=cosines)
        return cosines


@dataclass(frozen=True, slots=True, eq=False)
class _Plan:
    """Where each group's values go, so a whole batch of rows is prepared (or compared)
    with a fixed handful of numpy calls instead of a few per group: on the query path
    the rows are few and the calls' overhead is most of the cost.

    Direction groups are prepared side by side in a scratch block (values, then the
    anchor, per group) and scattered to their columns; the values of value-compared
    groups become one (rows, values, grid) array of bumps, scattered likewise.
    """

    dimension: int
    direction_width: int
    """Columns of the scratch block of direction groups."""
    direction_columns: NDArray[np.intp]
    """Row column of each scratch column."""
    sources: NDArray[np.intp]
    """Raw column of each value column of the scratch block."""
    value_columns: NDArray[np.intp]
    anchor_columns: NDArray[np.intp]
    anchors: NDArray[np.float32]
    starts: NDArray[np.intp]
    """First scratch column of each weighted direction group."""
    scales: NDArray[np.float32]
    """Block factor of each weighted direction group."""
    group_of_column: NDArray[np.intp]
    bump_sources: NDArray[np.intp]
    """Raw column of each counted value of a weighted value group."""
    bump_factors: NDArray[np.float32]
    """Block factor times the square root of the value's share."""
    bump_columns: NDArray[np.intp]
    """Row columns of the values' bumps, value by value, grid point by grid point."""
    direction_groups: NDArray[np.intp]
    """Layout index of every direction group, weighted or not."""
    all_sources: NDArray[np.intp]
    """Raw columns of every direction group, in layout order."""
    all_starts: NDArray[np.intp]
    anchor_squares: NDArray[np.float64]
    value_groups: NDArray[np.intp]
    """Layout index of every value group, weighted or not."""
    all_bump_sources: NDArray[np.intp]
    """Raw columns of the counted values of every value group, in layout order."""
    all_bump_shares: NDArray[np.float64]
    all_bump_starts: NDArray[np.intp]


def _plan_of(space: EmbeddingSpace) -> _Plan:
    """Columns of the space's prepared rows, from its layout, weights and flags."""
    assert space.value_shares is not None
    grid = space._grid.size
    direction_columns: list[int] = []
    sources: list[int] = []
    value_columns: list[int] = []
    anchor_columns: list[int] = []
    anchors: list[float] = []
    starts: list[int] = []
    scales: list[float] = []
    group_of_column: list[int] = []
    bump_sources: list[int] = []
    bump_factors: list[float] = []
    bump_columns: list[int] = []
    direction_groups: list[int] = []
    all_sources: list[int] = []
    all_starts: list[int] = []
    anchor_squares: list[float] = []
    value_groups: list[int] = []
    all_bump_sources: list[int] = []
    all_bump_shares: list[float] = []
    all_bump_starts: list[int] = []
    column = 0
    scratch = 0
    for index, (group, weight, by_value, factor) in enumerate(
        zip(space.layout.groups, space.weights, space.by_value, space._blocks, strict=True)
    ):
        shares = space.value_shares[group.offset : group.stop]
        counted = [group.offset + int(i) for i in np.flatnonzero(shares > 0)]
        if by_value:
            value_groups.append(index)
            all_bump_starts.append(len(all_bump_sources))
            all_bump_sources.extend(counted)
            all_bump_shares.extend(float(space.value_shares[c]) for c in counted)
        else:
            direction_groups.append(index)
            all_starts.append(len(all_sources))
            all_sources.extend(range(group.offset, group.stop))
            anchor_squares.append(space.anchor_of(group) ** 2)
        if weight <= 0:
            continue
        if by_value:
            bump_sources.extend(counted)
            bump_factors.extend(factor * math.sqrt(space.value_shares[c]) for c in counted)
            length = len(counted) * grid
            bump_columns.extend(range(column, column + length))
        else:
            length = group.length + 1
            starts.append(scratch)
            scales.append(factor)
            sources.extend(range(group.offset, group.stop))
            value_columns.extend(range(scratch, scratch + group.length))
            anchor_columns.append(scratch + group.length)
            anchors.append(space.anchor_of(group))
            group_of_column.extend([len(starts) - 1] * length)
            direction_columns.extend(range(column, column + length))
            scratch += length
        column += length

    def ints(values: list[int]) -> NDArray[np.intp]:
        return np.asarray(values, dtype=np.intp)

    return _Plan(
        dimension=column,
        direction_width=scratch,
        direction_columns=ints(direction_columns),
        sources=ints(sources),
        value_columns=ints(value_columns),
        anchor_columns=ints(anchor_columns),
        anchors=np.asarray(anchors, dtype=np.float32),
        starts=ints(starts),
        scales=np.asarray(scales, dtype=np.float32),
        group_of_column=ints(group_of_column),
        bump_sources=ints(bump_sources),
        bump_factors=np.asarray(bump_factors, dtype=np.float32),
        bump_columns=ints(bump_columns),
        direction_groups=ints(direction_groups),
        all_sources=ints(all_sources),
        all_starts=ints(all_starts),
        anchor_squares=np.asarray(anchor_squares, dtype=np.float64),
        value_groups=ints(value_groups),
        all_bump_sources=ints(all_bump_sources),
        all_bump_shares=np.asarray(all_bump_shares, dtype=np.float64),
        all_bump_starts=ints(all_bump_starts),
    )


def _value_shares(layout: GroupLayout, varies: NDArray[np.bool_] | None) -> NDArray[np.float64]:
    """Each entry's share of its group: 1/n over the n entries the fleet varies on."""
    shares = np.zeros(layout.dimension, dtype=np.float64)
    for group in layout.groups:
        counted = np.ones(group.length, dtype=np.bool_)
        if varies is not None and varies[group.offset : group.stop].any():
            counted = varies[group.offset : group.stop]
        shares[group.offset : group.stop] = counted / counted.sum()
    return shares


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
