"""Benchmark of the configperf learner against two baselines; prints one JSON object.

For each system measured in ../shared/data/configperf (read in place), it trains on a
random sample of 5n configurations (n = option columns) and evaluates on the rest (on a
random subsample of at most ``--max-test`` of them for the large files):

- mean relative error (MRE) of the predicted performance, and the share of held-out
  configurations whose measured performance lies in the predicted interval;
- for ``--pairs`` random pairs of held-out configurations, the verdict NEGATIVE (harmful),
  NEUTRAL or POSITIVE (harmless) or INCONCLUSIVE for "moving from the first to the second
  makes it more than 10% slower": coverage (the share decided), and precision and recall
  of NEGATIVE among the decided pairs;
- the same for a linear-regression and a random-forest baseline (scikit-learn defaults,
  trained on the raw performance as in the literature), which decide every pair from
  their point predictions, so their coverage is 1.

Published reference (DeepPerf, ICSE 2019, on an earlier measurement of the same
systems): MRE of about 2-10% for x264 and 2-5% for LLVM at 2n-5n samples.

    .venv/bin/python benchmarks/predict_configperf.py --json [--seed 0] [--systems x264 LLVM]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression

from cfgclone.predictor.configperf import (
    LearnerSettings,
    MeasuredSystem,
    PerformanceLearner,
    load_measurements,
    mean_relative_error,
    measurement_files,
    verdicts,
)
from cfgclone.predictor.verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "configperf"
SWEEP = (0.7, 0.8, 0.9, 0.95)
"""Confidences at which the pair decisions are also reported."""


def _decision_metrics(
    harmful: NDArray[np.bool_], decided: NDArray[np.bool_], truth: NDArray[np.bool_]
) -> dict[str, float | None]:
    true_positive = int(np.sum(harmful & decided & truth))
    predicted = int(np.sum(harmful & decided))
    actual = int(np.sum(decided & truth))
    return {
        "coverage": float(decided.mean()),
        "precision": true_positive / predicted if predicted else None,
        "recall": true_positive / actual if actual else None,
    }


def _baseline(
    model: LinearRegression | RandomForestRegressor,
    system: MeasuredSystem,
    train: NDArray[np.intp],
    test: NDArray[np.intp],
    pairs: tuple[NDArray[np.intp], NDArray[np.intp]],
    truth: NDArray[np.bool_],
    threshold: float,
) -> dict[str, Any]:
    x, y = system.configurations, system.performance
    predicted = model.fit(x[train], y[train]).predict(x[test])
    a, b = pairs
    harmful = predicted[b] > (1.0 + threshold) * predicted[a]
    metrics = _decision_metrics(harmful, np.ones_like(harmful), truth)
    return {
        "mre": mean_relative_error(y[test], predicted),
        "precision": metrics["precision"],
        "recall": metrics["recall"],
    }


def evaluate(
    system: MeasuredSystem,
    *,
    seed: int,
    pairs: int,
    max_test: int,
    threshold: float,
    confidence: float,
) -> dict[str, Any]:
    """Train on 5n random configurations of one system and measure on the rest."""
    rng = np.random.default_rng([seed, zlib.crc32(system.name.encode())])
    x, y = system.configurations, system.performance
    order = rng.permutation(y.size)
    n_train = 5 * system.n_options
    train, test = order[:n_train], order[n_train:]
    if test.size > max_test:
        test = rng.choice(test, size=max_test, replace=False)
    a = rng.integers(0, test.size, size=pairs)
    b = rng.integers(0, test.size, size=pairs)
    same = a == b
    while same.any():
        b[same] = rng.integers(0, test.size, size=int(same.sum()))
        same = a == b
    truth = y[test][b] > (1.0 + threshold) * y[test][a]

    started = time.perf_counter()
    learner = PerformanceLearner(LearnerSettings(confidence=confidence, seed=seed))
    model = learner.fit(system.options, x[train], y[train])
    fit_seconds = time.perf_counter() - started
    center, low, high = model.predict_log(x[test])
    log_y = np.log(y[test])
    inside = (low <= log_y) & (log_y <= high)
    # The same pairs at each confidence: the trade of coverage against precision.
    levels = (confidence, *SWEEP)
    _, lows, highs = model.log_ratio_intervals(x[test][a], x[test][b], levels)
    by_level = []
    for index, level in enumerate(levels):
        found = verdicts(lows[index], highs[index], threshold, level)
        by_level.append(
            _decision_metrics(
                np.array([v is Verdict.NEGATIVE for v in found]),
                np.array([v is not Verdict.INCONCLUSIVE for v in found]),
                truth,
            )
        )
    metrics = by_level[0]
    by_confidence = {f"{level:g}": m for level, m in zip(SWEEP, by_level[1:], strict=True)}
    evaluate_seconds = time.perf_counter() - started - fit_seconds

    return {
        "options": system.n_options,
        "performance_column": system.performance_column,
        "n_train": int(train.size),
        "n_test": int(test.size),
        "mre": mean_relative_error(y[test], np.exp(center)),
        "interval_coverage": float(inside.mean()),
        "coverage": metrics["coverage"],
        "precision": metrics["precision"],
        "recall": metrics["recall"],
        "harmful_share": float(truth.mean()),
        "by_confidence": by_confidence,
        "stacking_weights": dict(model.weights),
        "fit_seconds": fit_seconds,
        "evaluate_seconds": evaluate_seconds,
        "baselines": {
            "linear": _baseline(LinearRegression(), system, train, test, (a, b), truth, threshold),
            "random_forest": _baseline(
                RandomForestRegressor(random_state=seed, n_jobs=1),
                system,
                train,
                test,
                (a, b),
                truth,
                threshold,
            ),
        },
    }


def _table(result: dict[str, Any]) -> str:
    def pct(value: float | None) -> str:
        return "   n/a" if value is None or math.isnan(value) else f"{value * 100:6.2f}"

    lines = [
        "system       n_train   MRE%  linear     RF   cover  prec%  rec%  | RF prec  rec",
    ]
    for name, r in result["systems"].items():
        lin, rf = r["baselines"]["linear"], r["baselines"]["random_forest"]
        lines.append(
            f"{name:<12} {r['n_train']:>7} {pct(r['mre'])} {pct(lin['mre'])} {pct(rf['mre'])}"
            f"  {pct(r['coverage'])} {pct(r['precision'])} {pct(r['recall'])}"
            f"  | {pct(rf['precision'])} {pct(rf['recall'])}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and models")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="configperf folder")
    parser.add_argument("--systems", nargs="*", help="only these systems (file stems)")
    parser.add_argument("--pairs", type=int, default=10_000, help="pairs per system")
    parser.add_argument("--max-test", type=int, default=20_000, help="held-out rows used")
    parser.add_argument("--threshold", type=float, default=0.10, help="slow-down that harms")
    parser.add_argument("--confidence", type=float, default=0.9, help="interval confidence")
    args = parser.parse_args(argv)

    files = measurement_files(args.data)
    if args.systems:
        wanted = {s.lower() for s in args.systems}
        files = [f for f in files if f.name.split(".")[0].lower() in wanted]
    if not files:
        print(f"no measurement files in {args.data}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    systems: dict[str, Any] = {}
    for path in files:
        system = load_measurements(path)
        systems[system.name] = evaluate(
            system,
            seed=args.seed,
            pairs=args.pairs,
            max_test=args.max_test,
            threshold=args.threshold,
            confidence=args.confidence,
        )
        if not args.json:
            print(f"{system.name}: done", file=sys.stderr)
    result = {
        "seed": args.seed,
        "threshold": args.threshold,
        "confidence": args.confidence,
        "pairs": args.pairs,
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "total_seconds": time.perf_counter() - started,
        "systems": systems,
    }
    print(json.dumps(result, indent=None if args.json else 2) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
