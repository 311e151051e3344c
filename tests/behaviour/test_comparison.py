"""Comparing two fingerprints of one system: the relative change of each KPI."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone import vocabulary
from cfgclone.behaviour.build import SampleSeries, build_fingerprint
from cfgclone.behaviour.comparison import compare
from cfgclone.behaviour.model import Fingerprint
from cfgclone.behaviour.regimes import LoadScale

LOAD = vocabulary.HTTP_REQUEST_RATE.name
LATENCY = vocabulary.HTTP_REQUEST_DURATION.name
ERRORS = vocabulary.HTTP_ERROR_RATIO.name
SAMPLES = 720


def _load() -> np.ndarray:
    return 100.0 + 40.0 * np.sin(np.arange(SAMPLES) / 40.0)


def _fingerprint(latency: float, errors: float) -> Fingerprint:
    ts = np.arange(SAMPLES, dtype=np.int64) * 10_000_000_000
    metrics = {
        LOAD: SampleSeries(ts, _load()),
        LATENCY: SampleSeries(ts, np.full(SAMPLES, latency)),
        ERRORS: SampleSeries(ts, np.full(SAMPLES, errors)),
    }
    return build_fingerprint(metrics, load_metric=LOAD, scale=LoadScale.spanning(_load()))


def _changes(before: Fingerprint, after: Fingerprint) -> dict[str, float]:
    return {d.kpi: d.relative_change for d in compare(before, after)}


def test_a_change_is_relative_to_the_first_level() -> None:
    changes = _changes(_fingerprint(0.1, 0.02), _fingerprint(0.15, 0.01))

    assert changes[LATENCY] == pytest.approx(0.5)
    assert changes[ERRORS] == pytest.approx(-0.5)


def test_errors_that_appear_are_a_large_change_not_none() -> None:
    """From no errors at all to some is a hundredfold change (the relative floor), not
    "no change" (a zero base), and from next to none it is no larger."""
    appeared = _changes(_fingerprint(0.1, 0.0), _fingerprint(0.1, 0.02))
    from_a_trace = _changes(_fingerprint(0.1, 1e-6), _fingerprint(0.1, 0.02))
    unchanged = _changes(_fingerprint(0.1, 0.0), _fingerprint(0.1, 0.0))
    vanished = _changes(_fingerprint(0.1, 0.02), _fingerprint(0.1, 0.0))

    assert appeared[ERRORS] == pytest.approx(100.0)
    assert from_a_trace[ERRORS] == pytest.approx(100.0, rel=1e-3)
    assert unchanged[ERRORS] == 0.0
    assert vanished[ERRORS] == pytest.approx(-1.0)
