"""The target's recorded load over its recent busy period, which a shadow run reproduces.

A change is tried on a shadow at the load the target carries when it matters: its
busy hours, not its nightly lull and not an arbitrary benchmark point. From the recent
samples of each offered-load series (``postgresql.commits``,
``http.server.request.rate``) the busy period is the samples at or above the series'
upper quartile, and its rate is their median: robust to a single burst, and near the
peak a change has to survive.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cfgclone.collector.reads import MetricSamples
from cfgclone.predictor.shadow.load import OFFERED_LOAD_SERIES

__all__ = ["BUSY_QUANTILE", "MIN_LOAD_SAMPLES", "busy_rate", "load_profile"]

BUSY_QUANTILE = 0.75
"""Samples at or above this quantile of the window's offered load are the busy period."""
MIN_LOAD_SAMPLES = 5
"""Fewest finite samples of a series for its busy rate to mean anything."""


def busy_rate(values: np.ndarray) -> float | None:
    """The median of the busy period's samples; None when there are too few samples."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size < MIN_LOAD_SAMPLES:
        return None
    busy = finite[finite >= np.quantile(finite, BUSY_QUANTILE)]
    return float(np.median(busy))


def load_profile(samples: Mapping[str, MetricSamples]) -> dict[str, float]:
    """Each offered-load series of ``samples`` with its busy-period rate per second."""
    profile: dict[str, float] = {}
    for series in OFFERED_LOAD_SERIES:
        found = samples.get(series)
        if found is None:
            continue
        rate = busy_rate(found.values)
        if rate is not None and rate > 0:
            profile[series] = rate
    return profile
