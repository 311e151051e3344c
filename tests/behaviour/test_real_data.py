"""Fingerprints of real EC2 CPU utilisation series (Numenta Anomaly Benchmark, 5-minute steps).

The data live beside the project in ``../shared/data/nab`` (see its README); the tests
skip when it is absent.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cfgclone.behaviour import DEFAULT_LOAD_SCALE, SampleSeries, build_fingerprint, embed

NAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab"
SERIES = ["ec2_cpu_utilization_5f5533.csv", "ec2_cpu_utilization_24ae8d.csv"]

pytestmark = pytest.mark.skipif(not NAB.is_dir(), reason="shared NAB data not available")


def read_series(name: str) -> SampleSeries:
    with (NAB / name).open() as handle:
        rows = list(csv.DictReader(handle))
    ts = np.array(
        [np.datetime64(row["timestamp"].replace(" ", "T"), "ns").astype(np.int64) for row in rows]
    )
    return SampleSeries(ts, np.array([float(row["value"]) for row in rows]))


@pytest.mark.parametrize("name", SERIES)
def test_quantiles_of_real_cpu_utilisation_are_within_one_percent(name: str) -> None:
    series = read_series(name)
    fingerprint = build_fingerprint({"system.cpu.utilization": series}, align_ns=300 * 10**9)
    assert fingerprint.samples == len(series)
    overall = fingerprint.load_profile.overall()
    assert overall.mean == pytest.approx(float(series.values.mean()), rel=1e-12)
    assert overall.variance == pytest.approx(float(series.values.var()), rel=1e-9)
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(series.values, q, method="inverted_cdf"))
        assert overall.sketch.quantile(q) == pytest.approx(exact, rel=0.01)
    assert np.isfinite(embed(fingerprint).vector).all()


def test_a_busy_and_an_idle_machine_fall_into_different_regimes() -> None:
    # On one scale, as a system's configuration versions are compared.
    busy = build_fingerprint(
        {"system.cpu.utilization": read_series(SERIES[0])},
        align_ns=300 * 10**9,
        scale=DEFAULT_LOAD_SCALE,
    )
    idle = build_fingerprint(
        {"system.cpu.utilization": read_series(SERIES[1])},
        align_ns=300 * 10**9,
        min_regime_count=10,
        scale=DEFAULT_LOAD_SCALE,
    )
    assert max(idle.load_profile.regimes) < min(busy.load_profile.regimes)
    assert busy.load_min > 30.0
    assert idle.load_max < 3.0
