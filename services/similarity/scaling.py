"""Robust standardisation of embeddings over the fleet.

Embedding entries come in wildly different units (bytes of memory next to a
correlation coefficient), and fleets have outliers (one machine with 4 TB of RAM),
so each dimension is centred on the fleet median and divided by a robust spread
rather than by mean and standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["RobustScaler"]

# Makes the interquartile range and the median absolute deviation estimate the
# standard deviation of a normal distribution, so all spreads share one unit.
_IQR_TO_SIGMA = 1.0 / 1.3489795003921634
_MAD_TO_SIGMA = 1.482602218505602


@dataclass(frozen=True, slots=True, eq=False)
class RobustScaler:
    """Per-dimension median and robust spread of the fleet, with a clip."""

    centre: NDArray[np.float64]
    """Median of each dimension."""
    spread: NDArray[np.float64]
    """Robust spread of each dimension; always positive."""
    clip: float
    """Standardised values are clipped to [-clip, clip]."""

    @classmethod
    def identity(cls, dimension: int, clip: float) -> RobustScaler:
        """The scaler of an empty fleet: no centring, unit spread."""
        return cls(np.zeros(dimension), np.ones(dimension), clip)

    @classmethod
    def fit(
        cls, raw: NDArray[np.floating[Any]], *, clip: float, sample: int, seed: int = 0
    ) -> RobustScaler:
        """Estimates centre and spread from the fleet's raw embeddings (one row each).

        The spread is the IQR; where half the fleet shares a value the IQR is zero, so
        it falls back to the median absolute deviation, then to the standard deviation,
        then to 1 (a dimension nobody varies on contributes nothing, but a system that
        does differ there is still measured in the dimension's own units, clipped).
        Large fleets are sampled: quantiles of 200k rows are as good as of 1M.
        """
        rows = raw.shape[0]
        if rows == 0:
            return cls.identity(raw.shape[1], clip)
        if rows > sample:
            chosen = np.sort(np.random.default_rng(seed).choice(rows, size=sample, replace=False))
            raw = raw[chosen]
        values = np.asarray(raw, dtype=np.float64)
        low, centre, high = np.percentile(values, [25.0, 50.0, 75.0], axis=0)
        spread = (high - low) * _IQR_TO_SIGMA
        negligible = 1e-12 * np.maximum(1.0, np.abs(centre))
        flat = spread <= negligible
        if flat.any():
            mad = np.median(np.abs(values[:, flat] - centre[flat]), axis=0) * _MAD_TO_SIGMA
            spread[flat] = mad
            flat = spread <= negligible
        if flat.any():
            spread[flat] = values[:, flat].std(axis=0)
            flat = spread <= negligible
        spread[flat] = 1.0
        return cls(centre, spread, clip)

    def transform(
        self, raw: NDArray[np.floating[Any]], dtype: type[np.floating[Any]] = np.float32
    ) -> NDArray[np.floating[Any]]:
        """Standardises rows of raw embeddings: (x - median) / spread, clipped.

        The arithmetic is done in float64 whatever `dtype` is asked for: a dimension
        with a large offset and a small spread (1000.00 +/- 0.01) loses its digits if
        the median is first rounded to float32.
        """
        scaled = np.asarray(raw, dtype=np.float64) - self.centre
        scaled /= self.spread
        np.clip(scaled, -self.clip, self.clip, out=scaled)
        return scaled.astype(dtype, copy=False)
