"""The curve of a KPI against load: sensitivity, curvature and the knee.

Curves are derived from the mergeable per-regime statistics, never stored as state:
after a merge they are fitted again from the merged regimes.

- Slope and curvature come from a quadratic in ``u = log2(load) - mean log2(load)``,
  fitted to the regime means weighted by their counts. The slope is the KPI's change
  per doubling of load at the system's typical load; the curvature is the second-order
  coefficient.
- The knee is where a latency-like KPI stops being flat: a hockey stick
  ``a + s * max(0, load - knee)`` is fitted to the regime means. Each regime's
  prediction is the stick averaged over the loads seen in that regime (read from
  the load metric's own sketch), so a regime that straddles the knee is not mistaken
  for a flat or a rising one. The knee is reported only when the stick explains the
  means clearly better than a straight line, rises after at least two flat regimes,
  and the rise is material.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cfgclone.behaviour.regimes import LoadScale, RegimeStats

__all__ = ["LoadCurve", "fit_load_curve"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

KNEE_MIN_REGIMES = 4
"""Fewer regimes cannot show a flat part and a rise."""
KNEE_MAX_ERROR_RATIO = 0.5
"""The stick's weighted squared error must be at most this fraction of a straight line's."""
KNEE_MIN_RELATIVE_RISE = 0.05
"""The rise after the knee must reach 5% of the flat level (when that level is not zero)."""
KNEE_MIN_STANDARD_ERRORS = 4.0
"""...and exceed this many standard errors of the busiest regime's mean."""
_KNEE_GRID = 160
_KNEE_REFINE_GRID = 64


@dataclass(frozen=True)
class LoadCurve:
    """A KPI against load."""

    slope: float
    """Change of the KPI per doubling of load, at the system's typical load."""
    curvature: float
    """Second-order coefficient of the KPI against log2 load."""
    knee_load: float | None
    """Load at which the KPI starts to rise; ``None`` when no knee was seen."""


def fit_load_curve(
    kpi: Mapping[int, RegimeStats], load: Mapping[int, RegimeStats], scale: LoadScale
) -> LoadCurve:
    """Fits the curve of a KPI's regime statistics against the load metric's.

    ``load`` is the load metric's own profile: its per-regime means place each regime
    on the load axis and its sketches give the spread of load within a regime.
    """
    regimes = sorted(kpi)
    if not regimes:
        return LoadCurve(0.0, 0.0, None)
    weights = np.array([kpi[r].count for r in regimes])
    means = np.array([kpi[r].mean for r in regimes])
    loads = np.array([_representative_load(r, load, scale) for r in regimes])
    slope, curvature = _quadratic(np.log2(loads), means, weights)
    knee = _knee(regimes, kpi, load, loads, means, weights)
    return LoadCurve(slope, curvature, knee)


def _representative_load(regime: int, load: Mapping[int, RegimeStats], scale: LoadScale) -> float:
    stats = load.get(regime)
    value = stats.mean if stats is not None else scale.center(regime)
    # Regime 0 also holds idle (zero) load; keep it on the log axis, below regime 1.
    return max(value, scale.base / 2.0)


def _quadratic(x: FloatArray, y: FloatArray, w: FloatArray) -> tuple[float, float]:
    if x.size < 2 or w.sum() <= 0.0:
        return 0.0, 0.0
    u = x - np.average(x, weights=w)
    columns = [np.ones_like(u), u] + ([u * u] if x.size >= 3 else [])
    design = np.stack(columns, axis=1)
    root = np.sqrt(w)
    coefficients = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)[0]
    slope = float(coefficients[1])
    curvature = float(coefficients[2]) if coefficients.size > 2 else 0.0
    if not (math.isfinite(slope) and math.isfinite(curvature)):
        return 0.0, 0.0
    return slope, curvature


def _spread_of_load(
    regimes: list[int], load: Mapping[int, RegimeStats], loads: FloatArray
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Load values regime after regime, their share of their regime, and where each begins."""
    values: list[FloatArray] = []
    weights: list[FloatArray] = []
    for position, regime in enumerate(regimes):
        stats = load.get(regime)
        if stats is not None and stats.sketch.count > 0.0:
            v, w = stats.sketch.buckets()
        else:
            v, w = loads[position : position + 1], np.ones(1)
        values.append(v)
        weights.append(w / w.sum())
    starts = np.cumsum([0] + [v.size for v in values[:-1]]).astype(np.int64)
    return np.concatenate(values), np.concatenate(weights), starts


def _stick_fit(
    knees: FloatArray,
    values: FloatArray,
    shares: FloatArray,
    starts: IntArray,
    means: FloatArray,
    weights: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Weighted least squares of ``a + s * E[max(0, load - knee)]`` for every candidate knee."""
    excess = np.maximum(values[None, :] - knees[:, None], 0.0) * shares[None, :]
    # candidates x regimes: the excess load expected in each regime
    h = np.add.reduceat(excess, starts, axis=1)
    total = weights.sum()
    sum_h = np.einsum("gr,r->g", h, weights)
    sum_hh = np.einsum("gr,r->g", h * h, weights)
    sum_y = float(np.dot(weights, means))
    sum_hy = np.einsum("gr,r->g", h, weights * means)
    determinant = total * sum_hh - sum_h * sum_h
    usable = determinant > 1e-12 * np.maximum(total * sum_hh, 1e-300)
    safe = np.where(usable, determinant, 1.0)
    s = (total * sum_hy - sum_h * sum_y) / safe
    a = (sum_y - s * sum_h) / total
    residuals = means[None, :] - a[:, None] - s[:, None] * h
    errors = np.einsum("gr,r->g", residuals * residuals, weights)
    errors = np.where(usable & (s > 0.0), errors, np.inf)
    return errors, a, s, h


def _knee(
    regimes: list[int],
    kpi: Mapping[int, RegimeStats],
    load: Mapping[int, RegimeStats],
    loads: FloatArray,
    means: FloatArray,
    weights: FloatArray,
) -> float | None:
    if len(regimes) < KNEE_MIN_REGIMES:
        return None
    ordered = np.sort(loads)
    # At least two regimes before the knee (the flat part) and two after it (the rise).
    low, high = float(ordered[1]), float(ordered[-2])
    if not high > low:
        return None
    values, shares, starts = _spread_of_load(regimes, load, loads)
    candidates = np.geomspace(low, high, _KNEE_GRID)
    errors, _, _, _ = _stick_fit(candidates, values, shares, starts, means, weights)
    best = int(np.argmin(errors))
    if not math.isfinite(float(errors[best])):
        return None
    finer = np.geomspace(
        float(candidates[max(best - 1, 0)]),
        float(candidates[min(best + 1, _KNEE_GRID - 1)]),
        _KNEE_REFINE_GRID,
    )
    errors, a, s, h = _stick_fit(finer, values, shares, starts, means, weights)
    best = int(np.argmin(errors))
    stick_error = float(errors[best])
    if not math.isfinite(stick_error):
        return None
    line_error = _line_error(loads, means, weights)
    if not stick_error < KNEE_MAX_ERROR_RATIO * line_error:
        return None
    busiest = int(np.argmax(loads))
    rise = float(s[best] * h[best, busiest])
    flat_level = abs(float(a[best]))
    top = kpi[regimes[busiest]]
    standard_error = math.sqrt(top.variance / top.count) if top.count > 0.0 else 0.0
    if rise < KNEE_MIN_RELATIVE_RISE * flat_level or rise <= KNEE_MIN_STANDARD_ERRORS * (
        standard_error
    ):
        return None
    knee = float(finer[best])
    return knee if math.isfinite(knee) else None


def _line_error(x: FloatArray, y: FloatArray, w: FloatArray) -> float:
    design = np.stack([np.ones_like(x), x], axis=1)
    root = np.sqrt(w)
    coefficients = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)[0]
    residuals = y - design @ coefficients
    return float(residuals * residuals @ w)
