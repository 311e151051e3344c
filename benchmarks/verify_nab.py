"""Benchmark of the live verifier on labelled real server metrics; prints one JSON object.

For each series of ../shared/data/nab (Numenta Anomaly Benchmark, 5-minute steps, read in
place) with labelled anomaly windows:

- every labelled window is judged as if a change had landed at its start: the window's
  samples against everything before it. An anomaly may go either way, so the window is
  judged once with each KPI direction, and counts as detected when either judgement is
  NEGATIVE;
- every clean stretch is judged the same way: ``--stretch-points`` consecutive samples (100
  by default) on a fixed grid from the series' start, with at least two days of history
  before them and overlapping no labelled window. A NEGATIVE there is a false alarm.

The verifier runs with its default settings, the same for every series. In the same run,
the same windows and stretches are judged by a plain Mann-Whitney U test (two-sided, at
5%) against the two days just before them, counted as worse when significant and the
median moved by at least 10% (the effect-size gate).

    .venv/bin/python benchmarks/verify_nab.py --json [--stretch-points 100]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from cfgclone.predictor.change import KpiDirection
from cfgclone.predictor.verdict import Verdict
from cfgclone.predictor.verification import LiveVerifier, TimedSamples

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nab"
DAY_NS = 86_400 * 10**9
PLAIN_BASELINE_NS = 2 * DAY_NS
"""Baseline of the plain test: the two days just before the judged samples."""
PLAIN_EFFECT = 0.10
"""Smallest relative change of the median the plain test counts."""
PLAIN_ALPHA = 0.05
MIN_SAMPLES = 20
"""Fewest samples either side of the plain test needs (the verifier's default, too)."""
GROUP_FOLDERS = {"realAWSCloudwatch": "", "realKnownCause": "realKnownCause"}
"""Label groups benchmarked, and the folder of their files under the data directory."""


@dataclass(frozen=True)
class Series:
    """One labelled series: its samples and its anomaly windows as index ranges."""

    name: str
    samples: TimedSamples
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Case:
    """Samples judged as if a change landed at ``start``: ``[start, end)`` against before."""

    series: Series
    start: int
    end: int

    @property
    def history(self) -> TimedSamples:
        s = self.series.samples
        return TimedSamples(s.ts_unix_ns[: self.start], s.values[: self.start])

    @property
    def window(self) -> TimedSamples:
        s = self.series.samples
        return TimedSamples(s.ts_unix_ns[self.start : self.end], s.values[self.start : self.end])


def _unix_ns(timestamp: str) -> int:
    return int(np.datetime64(timestamp.replace(" ", "T"), "ns").astype(np.int64))


def load_series(data: Path) -> list[Series]:
    """Every series of the benchmarked label groups whose file is present, by name."""
    labels: dict[str, list[list[str]]] = json.loads((data / "combined_windows.json").read_text())
    found = []
    for key, windows in sorted(labels.items()):
        group, _, name = key.partition("/")
        if group not in GROUP_FOLDERS or not (path := data / GROUP_FOLDERS[group] / name).is_file():
            continue
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        samples = TimedSamples.of(
            [_unix_ns(row["timestamp"]) for row in rows], [float(row["value"]) for row in rows]
        )
        ts = samples.ts_unix_ns
        spans = tuple(
            (
                int(np.searchsorted(ts, _unix_ns(first), side="left")),
                int(np.searchsorted(ts, _unix_ns(last), side="right")),
            )
            for first, last in windows
        )
        found.append(Series(key, samples, spans))
    return found


def labelled_windows(series: Series) -> Iterator[Case]:
    for start, end in series.windows:
        yield Case(series, start, end)


def clean_stretches(series: Series, points: int) -> Iterator[Case]:
    """Stretches on a fixed grid with two days of history, overlapping no labelled window."""
    ts = series.samples.ts_unix_ns
    labelled = np.zeros(ts.size, dtype=bool)
    for start, end in series.windows:
        labelled[start:end] = True
    for start in range(0, ts.size - points + 1, points):
        if ts[start] - ts[0] >= PLAIN_BASELINE_NS and not labelled[start : start + points].any():
            yield Case(series, start, start + points)


def verifier_flags(verifier: LiveVerifier, case: Case) -> bool:
    """Whether the verifier finds the case worse in either direction."""
    history, window = case.history, case.window
    return any(
        verifier.verify("value", way, history, window).verdict is Verdict.NEGATIVE
        for way in KpiDirection
    )


def plain_flags(case: Case) -> bool:
    """Whether the plain rank test finds the case worse in either direction."""
    window = case.window.values
    history = case.history
    start = int(case.window.ts_unix_ns[0])
    lo = int(np.searchsorted(history.ts_unix_ns, start - PLAIN_BASELINE_NS, side="left"))
    baseline = history.values[lo:]
    if baseline.size < MIN_SAMPLES or window.size < MIN_SAMPLES:
        return False
    p_value = float(stats.mannwhitneyu(window, baseline, alternative="two-sided").pvalue)
    level = float(np.median(baseline))
    moved = float(np.median(window)) - level
    effect = abs(moved) / abs(level) if level else (np.inf if moved else 0.0)
    return p_value < PLAIN_ALPHA and effect >= PLAIN_EFFECT


def rates(flags: Callable[[Case], bool], windows: list[Case], clean: list[Case]) -> dict[str, Any]:
    """Share of labelled windows flagged (detections) and of clean stretches (false alarms)."""
    detected = [flags(case) for case in windows]
    alarms = [flags(case) for case in clean]
    return {
        "detection_rate": float(np.mean(detected)) if detected else None,
        "false_alarm_rate": float(np.mean(alarms)) if alarms else None,
    }


def run(data: Path, points: int) -> dict[str, Any]:
    verifier = LiveVerifier()
    series = load_series(data)
    windows = [case for s in series for case in labelled_windows(s)]
    clean = [case for s in series for case in clean_stretches(s, points)]
    return {
        "series": len(series),
        "windows": len(windows),
        "clean_stretches": len(clean),
        "stretch_points": points,
        **rates(partial(verifier_flags, verifier), windows, clean),
        "plain_mwu": rates(plain_flags, windows, clean),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--stretch-points", type=int, default=100)
    args = parser.parse_args()
    if not (args.data / "combined_windows.json").is_file():
        raise SystemExit(f"no NAB labels in {args.data}")
    result = run(args.data, args.stretch_points)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
