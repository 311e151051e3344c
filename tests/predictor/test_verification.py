"""Live verification: the metric's daily rhythm and drift are not blamed on a change."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cfgclone.predictor.change import KpiDirection
from cfgclone.predictor.judge import Judge
from cfgclone.predictor.policy import DEFAULT_POLICY, PolicyAction
from cfgclone.predictor.verdict import Verdict
from cfgclone.predictor.verification import LiveVerifier, TimedSamples

NAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab"
DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
STEP = 300 * 10**9
"""Five minutes between samples, as in the NAB series."""
START = 1_700_000_000 * 10**9 - (1_700_000_000 * 10**9) % DAY
"""Midnight UTC, so the synthetic cycle's phase is the time of day."""

UP_IS_BAD = KpiDirection.LOWER_IS_BETTER


def daily_cycle(rng: np.random.Generator, days: int = 8) -> TimedSamples:
    """A latency-like metric: 100 ms at the daily mean, +-40 ms over the day, correlated noise."""
    ts = START + np.arange(days * DAY // STEP, dtype=np.int64) * STEP
    noise = np.zeros(ts.size)
    shocks = rng.normal(0.0, 3.0, ts.size)
    for i in range(1, ts.size):
        noise[i] = 0.7 * noise[i - 1] + shocks[i]
    cycle = 40.0 * np.sin(2 * np.pi * (ts % DAY) / DAY - np.pi / 2)  # low at midnight
    return TimedSamples(ts, 100.0 + cycle + noise)


def split(
    samples: TimedSamples, change_ns: int, window_ns: int = 3 * HOUR
) -> tuple[TimedSamples, TimedSamples]:
    """History before the change and the window after it."""
    ts = samples.ts_unix_ns
    before = ts < change_ns
    after = (ts >= change_ns) & (ts < change_ns + window_ns)
    return (
        TimedSamples(ts[before], samples.values[before]),
        TimedSamples(ts[after], samples.values[after]),
    )


def scaled(samples: TimedSamples, factor: float) -> TimedSamples:
    return TimedSamples(samples.ts_unix_ns, samples.values * factor)


@pytest.fixture
def metric() -> TimedSamples:
    return daily_cycle(np.random.default_rng(20240602))


def test_a_daily_cycle_with_no_change_is_never_flagged_though_the_hours_before_differ(
    metric: TimedSamples,
) -> None:
    verifier = LiveVerifier()
    naive_alarms = 0
    for hour in range(0, 24, 3):
        history, window = split(metric, START + 7 * DAY + hour * HOUR)
        for way in KpiDirection:
            result = verifier.verify("latency_ms", way, history, window)
            assert result.verdict is not Verdict.NEGATIVE, result.explanation
        recent = history.values[history.ts_unix_ns >= window.ts_unix_ns[0] - 6 * HOUR]
        naive = Judge().compare("latency_ms", recent, window.values, direction=UP_IS_BAD)
        naive_alarms += naive.verdict is Verdict.NEGATIVE
    # Against the six hours just before it, the morning rise alone looks like a regression.
    assert naive_alarms >= 2


def test_a_step_regression_in_the_bad_direction_is_negative_and_rejected(
    metric: TimedSamples,
) -> None:
    history, window = split(metric, START + 7 * DAY + 9 * HOUR)

    result = LiveVerifier().verify("latency_ms", UP_IS_BAD, history, scaled(window, 1.3))

    assert result.verdict is Verdict.NEGATIVE
    assert result.relative_change == pytest.approx(0.3, abs=0.1)
    assert result.interval is not None
    assert result.interval.low > 0.1
    assert "same time of day on the previous 7 days" in result.explanation
    assert "6 h before the change" in result.explanation
    assert result.evidence_count > len(window)
    assert DEFAULT_POLICY.verdict([result]).action is PolicyAction.REJECT


def test_an_improvement_is_not_negative(metric: TimedSamples) -> None:
    history, window = split(metric, START + 7 * DAY + 9 * HOUR)

    result = LiveVerifier().verify("latency_ms", UP_IS_BAD, history, scaled(window, 0.7))

    assert result.verdict is Verdict.POSITIVE
    assert result.relative_change is not None
    assert result.relative_change < -0.2


def test_a_shift_that_predates_the_change_is_not_blamed_on_it(metric: TimedSamples) -> None:
    change = START + 7 * DAY + 9 * HOUR
    shifted = np.where(metric.ts_unix_ns >= change - DAY, metric.values * 1.3, metric.values)
    history, window = split(TimedSamples(metric.ts_unix_ns, shifted), change)

    result = LiveVerifier().verify("latency_ms", UP_IS_BAD, history, window)

    assert result.verdict is not Verdict.NEGATIVE
    assert "6 h before the change" in result.explanation


def test_a_spike_beyond_anything_in_the_past_week_is_negative_though_the_median_holds(
    metric: TimedSamples,
) -> None:
    history, window = split(metric, START + 7 * DAY + 9 * HOUR)
    spiked = window.values.copy()
    spiked[[10, 11]] = 2.0 * history.values.max()

    result = LiveVerifier().verify(
        "latency_ms", UP_IS_BAD, history, TimedSamples(window.ts_unix_ns, spiked)
    )

    assert result.verdict is Verdict.NEGATIVE
    assert "highest value" in result.explanation
    assert result.relative_change is not None
    assert abs(result.relative_change) < 0.1
    assert result.tail_change == pytest.approx(1.0)
    assert DEFAULT_POLICY.verdict([result]).verdict is Verdict.NEGATIVE


@pytest.mark.parametrize(
    ("history_hours", "window_samples", "reason"),
    [
        (7 * 24, 5, "only 5 samples after the change; at least 20 are needed"),
        (1, 36, "too little history before the change"),
    ],
)
def test_a_thin_window_or_history_is_nodata_with_the_reason(
    metric: TimedSamples, history_hours: int, window_samples: int, reason: str
) -> None:
    change = START + 7 * DAY
    history, window = split(metric, change, window_samples * STEP)
    recent = history.ts_unix_ns >= change - history_hours * HOUR
    history = TimedSamples(history.ts_unix_ns[recent], history.values[recent])

    result = LiveVerifier().verify("latency_ms", UP_IS_BAD, history, window)

    assert result.verdict is Verdict.NODATA
    assert reason in result.explanation
    assert result.interval is None


def test_missing_values_count_as_missing(metric: TimedSamples) -> None:
    history, window = split(metric, START + 7 * DAY, 30 * STEP)
    gappy = window.values.copy()
    gappy[::2] = np.nan

    result = LiveVerifier().verify(
        "latency_ms", UP_IS_BAD, history, TimedSamples(window.ts_unix_ns, gappy)
    )

    assert result.verdict is Verdict.NODATA
    assert "only 15 samples" in result.explanation


def test_samples_are_put_in_time_order_and_mismatched_lengths_fail() -> None:
    samples = TimedSamples.of([3, 1, 2], [30.0, 10.0, 20.0])
    assert samples.values.tolist() == [10.0, 20.0, 30.0]
    with pytest.raises(ValueError, match="ascending"):
        TimedSamples(np.array([2, 1], dtype=np.int64), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="2 times but 1 values"):
        TimedSamples.of([1, 2], [1.0])


def read_nab(group: str, name: str) -> tuple[TimedSamples, list[tuple[int, int]]]:
    folder = NAB if group == "realAWSCloudwatch" else NAB / group
    with (folder / name).open() as handle:
        rows = list(csv.DictReader(handle))

    def unix_ns(text: str) -> int:
        return int(np.datetime64(text.replace(" ", "T"), "ns").astype(np.int64))

    samples = TimedSamples.of(
        [unix_ns(row["timestamp"]) for row in rows], [float(row["value"]) for row in rows]
    )
    labels = json.loads((NAB / "combined_windows.json").read_text())[f"{group}/{name}"]
    return samples, [(unix_ns(first), unix_ns(last)) for first, last in labels]


def at(samples: TimedSamples, mask: npt.NDArray[np.bool_]) -> TimedSamples:
    return TimedSamples(samples.ts_unix_ns[mask], samples.values[mask])


@pytest.mark.skipif(not NAB.is_dir(), reason="shared NAB data not available")
def test_real_cpu_that_jumps_is_negative_and_an_ordinary_stretch_of_it_is_not() -> None:
    cpu, windows = read_nab("realAWSCloudwatch", "ec2_cpu_utilization_ac20cd.csv")
    first, last = windows[0]
    ts = cpu.ts_unix_ns
    verifier = LiveVerifier()

    jump = verifier.verify(
        "cpu_utilization", UP_IS_BAD, at(cpu, ts < first), at(cpu, (ts >= first) & (ts <= last))
    )
    ordinary_start = first - 3 * DAY
    ordinary = [
        verifier.verify(
            "cpu_utilization",
            way,
            at(cpu, ts < ordinary_start),
            at(cpu, (ts >= ordinary_start) & (ts < ordinary_start + 8 * HOUR)),
        )
        for way in KpiDirection
    ]

    assert jump.verdict is Verdict.NEGATIVE
    assert "previous 7 days" in jump.explanation
    assert all(result.verdict is not Verdict.NEGATIVE for result in ordinary)
