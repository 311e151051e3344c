"""Performance of configurable software, learned from measured configurations.

The question this answers is the one a guarded apply asks before touching a system:
"does moving from configuration A to configuration B make it more than 10% slower?",
answered HARMFUL, HARMLESS, or INCONCLUSIVE when the model cannot tell. It is trained on
configurations measured offline (the ``configperf`` data: one row per configuration, 0/1
option columns, then measured performance columns).

Model. The target is ``log(performance)``: options act multiplicatively on run time, and
a log model turns "10% slower" into a fixed distance. The learner is the predictor's one
learner (:mod:`cfgclone.predictor.estimator`, which the service's learned predictor uses
too): a stack of gradient boosted and extremely randomised trees and, for these small
measured sets, a Gaussian process with one length scale per option, whose
posterior covariance says how sure it is about the *difference* between two
configurations (two configurations that differ in one option share most of their
uncertainty, so their ratio is known better than either value). Numeric options encoded
as one column per value (``ref_1, ref_5, ref_9``) are turned into one ordinal column, so
the learners can use the order of the values.

Intervals are CV+ with the GP's sd as the local scale, for single configurations and, on
pairs of configurations held out together, for changes, so the interval of a change is
the interval of its predicted log-ratio, not two single intervals added up. A change is
judged as every other prediction is (:func:`cfgclone.predictor.verdict.classify_interval`):
NEGATIVE when it is surely more than the threshold slower, INCONCLUSIVE when its interval
straddles the threshold.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cfgclone.predictor.change import KpiDirection
from cfgclone.predictor.estimator import MEMBERS, Estimator, EstimatorSettings, FittedEstimator
from cfgclone.predictor.verdict import Interval, Verdict, classify_interval, format_change

FloatArray = npt.NDArray[np.float64]

MAIN_PERFORMANCE_COLUMNS = ("performance", "gc_time", "usertime", "elapsedtime")
"""Performance columns in order of preference: the first one a file has is its main one.

VP9 measures ``usertime`` and ``elapsedtime`` (and size and quality, which are not
performance); ``usertime`` is the CPU time of the encoder, the cost a configuration sets.
"""

MODEL_FORMAT = 2
"""Version of the model's recipe; part of every model version string."""


@dataclass(frozen=True, eq=False)
class MeasuredSystem:
    """Measured configurations of one configurable system."""

    name: str
    options: tuple[str, ...]
    """Option column names, in column order."""
    performance_column: str
    """The performance column used (see :data:`MAIN_PERFORMANCE_COLUMNS`)."""
    configurations: FloatArray
    """0/1 option matrix, one row per configuration."""
    performance: FloatArray
    """Measured performance of each configuration (lower is better)."""

    @property
    def n_options(self) -> int:
        return len(self.options)


def measurement_files(folder: str | Path) -> list[Path]:
    """The measurement files of a folder (``*.csv`` and ``*.csv.gz``), by system name."""
    root = Path(folder)
    files = [*root.glob("*.csv"), *root.glob("*.csv.gz")]
    return sorted(files, key=lambda p: p.name.split(".")[0].lower())


def load_measurements(path: str | Path, performance: str | None = None) -> MeasuredSystem:
    """Read one measurement file in place (gzip when it ends in ``.gz``).

    Option columns are the leading columns holding only 0 and 1; the columns after them
    are performance measurements. ``performance`` picks one; by default the first of
    :data:`MAIN_PERFORMANCE_COLUMNS` present. Rows whose performance is not a positive
    number are dropped, since a log model cannot use them.
    """
    file = Path(path)
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [row for row in reader if row]
    n_options = 0
    while n_options < len(header) and all(row[n_options] in ("0", "1") for row in rows):
        n_options += 1
    measured = header[n_options:]
    if performance is None:
        chosen = next((c for c in MAIN_PERFORMANCE_COLUMNS if c in measured), None)
        if chosen is None:
            raise ValueError(f"{file.name}: no performance column among {measured}")
        performance = chosen
    if performance not in measured:
        raise ValueError(f"{file.name}: no performance column {performance!r}")
    column = header.index(performance)
    options = np.array([row[:n_options] for row in rows], dtype=np.float64)
    values = np.array([_number(row[column]) for row in rows], dtype=np.float64)
    keep = np.isfinite(values) & (values > 0)
    return MeasuredSystem(
        name=file.name.split(".")[0],
        options=tuple(header[:n_options]),
        performance_column=performance,
        configurations=options[keep],
        performance=values[keep],
    )


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def mean_relative_error(actual: FloatArray, predicted: FloatArray) -> float:
    """Mean of ``|predicted - actual| / actual``, the error measure of the literature."""
    return float(np.mean(np.abs(predicted - actual) / np.abs(actual)))


@dataclass(frozen=True)
class PerformancePrediction:
    """Predicted performance of one configuration with its interval."""

    value: float
    low: float
    high: float
    confidence: float


@dataclass(frozen=True)
class ChangeAssessment:
    """Predicted effect of moving from one configuration to another."""

    ratio: float
    """Predicted ``performance(after) / performance(before)``."""
    low: float
    high: float
    confidence: float
    threshold: float
    """Slow-down that counts as harm, for example 0.10 for "more than 10% slower"."""
    verdict: Verdict
    """NEGATIVE: slower by more than the threshold; NEUTRAL or POSITIVE: not; INCONCLUSIVE:
    the interval straddles the threshold."""
    explanation: str


@dataclass(frozen=True)
class LearnerSettings:
    """How :class:`PerformanceLearner` trains."""

    confidence: float = 0.9
    """Confidence of the two-sided intervals; a NEGATIVE or harmless verdict rests on one
    side of the pair interval, so it is wrong on at most ``(1 - confidence) / 2`` of pairs
    whose interval is calibrated."""
    folds: int = 5
    """Folds of the cross-validation that fits the stacking weights and the intervals."""
    boosting_estimators: int = 500
    """Trees of the gradient boosted model."""
    extra_trees_estimators: int = 300
    """Trees of the extremely randomised trees."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError("confidence must be in (0, 1)")
        if self.folds < 2:
            raise ValueError("folds must be at least 2")

    def estimator(self) -> Estimator:
        return Estimator(
            EstimatorSettings(
                folds=self.folds,
                boosting_estimators=self.boosting_estimators,
                learning_rate=0.05,
                boosting_depth=3,
                subsample=0.8,
                extra_trees_estimators=self.extra_trees_estimators,
                # Options act on log run time through interactions a line misses: with
                # the linear member the stack overfits its out-of-fold errors
                # (BerkeleyDBC's MRE doubles), so these sets go without it.
                ridge_alpha=None,
                gaussian_process=True,
                seed=self.seed,
            )
        )


_NUMERIC_OPTION = re.compile(r"^([A-Za-z][A-Za-z_]*?)_?(\d+)$")


@dataclass(frozen=True, eq=False)
class OptionEncoding:
    """Turns 0/1 option rows into model features.

    Options constant in the training data are dropped (nothing can be learned about
    them). A numeric option spelled as one column per value (``pre_0 .. pre_6``, three or
    more columns, exactly one set in every training row) becomes one column holding the
    rank of its value scaled to [0, 1], so that 3 is between 2 and 4 for the learners.
    Ranks rather than values, so that a doubling series (``NewRatio`` 1, 2, 4 .. 32) is
    as evenly spaced as an arithmetic one.
    """

    kept: tuple[int, ...]
    """Option columns used as they are."""
    groups: tuple[tuple[tuple[int, ...], tuple[float, ...]], ...]
    """Numeric options: their columns and each column's scaled rank."""

    @classmethod
    def fit(cls, options: Sequence[str], configurations: FloatArray) -> OptionEncoding:
        candidates: dict[str, list[tuple[float, int]]] = {}
        for index, name in enumerate(options):
            match = _NUMERIC_OPTION.match(name)
            if match:
                key = match.group(1).lower()
                candidates.setdefault(key, []).append((float(match.group(2)), index))
        groups = []
        grouped: set[int] = set()
        for members in candidates.values():
            columns = [index for _, index in members]
            if len(members) < 3 or not np.all(configurations[:, columns].sum(axis=1) == 1):
                continue
            values = np.array([value for value, _ in members])
            scaled = np.argsort(np.argsort(values)) / (len(values) - 1)
            groups.append((tuple(columns), tuple(float(v) for v in scaled)))
            grouped.update(columns)
        varying = configurations.min(axis=0) != configurations.max(axis=0)
        kept = tuple(i for i in range(len(options)) if varying[i] and i not in grouped)
        return cls(kept, tuple(groups))

    def transform(self, configurations: FloatArray) -> FloatArray:
        rows = np.atleast_2d(np.asarray(configurations, dtype=np.float64))
        parts = [rows[:, list(self.kept)]]
        for columns, values in self.groups:
            parts.append((rows[:, list(columns)] @ np.asarray(values))[:, None])
        return np.hstack(parts)


@dataclass(frozen=True, eq=False)
class PerformanceModel:
    """A trained performance model of one system; see the module docstring.

    Configurations are rows of the option matrix (or mappings of option name to 0/1).
    """

    options: tuple[str, ...]
    encoding: OptionEncoding
    settings: LearnerSettings
    version: str
    training_size: int
    fitted: FittedEstimator = field(repr=False)

    @property
    def weights(self) -> dict[str, float]:
        """Stacking weight of each member of the learner."""
        return {name: float(w) for name, w in zip(MEMBERS, self.fitted.weights, strict=True)}

    def with_confidence(self, confidence: float) -> PerformanceModel:
        """The same model with intervals at another confidence (recalibrated, not refitted)."""
        return replace(self, settings=replace(self.settings, confidence=confidence))

    def row(self, configuration: Mapping[str, float]) -> FloatArray:
        """The option row of a configuration given as option name -> 0/1."""
        unknown = set(configuration) - set(self.options)
        if unknown:
            raise ValueError(f"unknown options: {', '.join(sorted(unknown))}")
        return np.array([float(configuration.get(o, 0.0)) for o in self.options])

    def predict_log(self, configurations: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Predicted ``log(performance)`` and its interval (low, high)."""
        features = self.encoding.transform(configurations)
        return self.fitted.interval(features, self.settings.confidence)

    def predict(self, configuration: Mapping[str, float] | FloatArray) -> PerformancePrediction:
        """Predicted performance of one configuration, with its interval."""
        row = self.row(configuration) if isinstance(configuration, Mapping) else configuration
        center, low, high = self.predict_log(np.atleast_2d(row))
        return PerformancePrediction(
            math.exp(float(center[0])),
            math.exp(float(low[0])),
            math.exp(float(high[0])),
            self.settings.confidence,
        )

    def log_ratio_intervals(
        self, before: FloatArray, after: FloatArray, confidences: Sequence[float]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Predicted ``log(perf(after) / perf(before))`` for rows of pairs, with intervals
        at each confidence (lows and highs as ``(confidences, pairs)``)."""
        return self.fitted.difference_intervals(
            self.encoding.transform(before), self.encoding.transform(after), confidences
        )

    def log_ratio_interval(
        self, before: FloatArray, after: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Predicted ``log(perf(after) / perf(before))`` for rows of pairs, with its interval."""
        center, lows, highs = self.log_ratio_intervals(before, after, (self.settings.confidence,))
        return center, lows[0], highs[0]

    def decide(
        self, before: FloatArray, after: FloatArray, threshold: float = 0.10
    ) -> list[Verdict]:
        """The verdict on each pair of rows: NEGATIVE when ``after`` is surely more than
        ``threshold`` slower."""
        _, low, high = self.log_ratio_interval(before, after)
        return verdicts(low, high, threshold, self.settings.confidence)

    def assess(
        self,
        before: Mapping[str, float] | FloatArray,
        after: Mapping[str, float] | FloatArray,
        threshold: float = 0.10,
    ) -> ChangeAssessment:
        """Is moving from ``before`` to ``after`` more than ``threshold`` slower?"""
        a = self.row(before) if isinstance(before, Mapping) else np.asarray(before, float)
        b = self.row(after) if isinstance(after, Mapping) else np.asarray(after, float)
        center, low, high = self.log_ratio_interval(np.atleast_2d(a), np.atleast_2d(b))
        verdict = verdicts(low, high, threshold, self.settings.confidence)[0]
        ratio, lo, hi = (math.exp(float(v[0])) for v in (center, low, high))
        interval = Interval(lo - 1.0, hi - 1.0, self.settings.confidence)
        predicted = f"predicted {format_change(ratio - 1.0)} {interval}"
        why = {
            Verdict.NEGATIVE: f"{predicted}: slower by more than {threshold:.0%}",
            Verdict.INCONCLUSIVE: f"{predicted} straddles +{threshold:.0%}",
        }.get(verdict, f"{predicted}: not {threshold:.0%} slower")
        return ChangeAssessment(ratio, lo, hi, self.settings.confidence, threshold, verdict, why)


def verdicts(
    low: FloatArray, high: FloatArray, threshold: float, confidence: float
) -> list[Verdict]:
    """The verdict on each log-ratio interval of performance (lower is better), read as
    every prediction of the suite is read (:func:`classify_interval`)."""
    return [
        classify_interval(
            Interval(math.expm1(lo), math.expm1(hi), confidence),
            KpiDirection.LOWER_IS_BETTER,
            threshold,
        )
        for lo, hi in zip(np.asarray(low).tolist(), np.asarray(high).tolist(), strict=True)
    ]


@dataclass(frozen=True)
class PerformanceLearner:
    """Trains :class:`PerformanceModel` from measured configurations."""

    settings: LearnerSettings = field(default_factory=LearnerSettings)

    def fit(
        self, options: Sequence[str], configurations: FloatArray, performance: FloatArray
    ) -> PerformanceModel:
        """Train on measured configurations; ``performance`` must be positive."""
        x = np.asarray(configurations, dtype=np.float64)
        perf = np.asarray(performance, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != perf.shape[0] or x.shape[1] != len(options):
            raise ValueError("configurations must be a (rows, options) matrix, one per value")
        if x.shape[0] < 2 * self.settings.folds:
            raise ValueError(f"need at least {2 * self.settings.folds} configurations")
        if np.any(perf <= 0) or not np.all(np.isfinite(perf)):
            raise ValueError("performance must be positive and finite")
        s = self.settings
        encoding = OptionEncoding.fit(options, x)
        fitted = s.estimator().fit(encoding.transform(x), np.log(perf))
        return PerformanceModel(
            options=tuple(options),
            encoding=encoding,
            settings=s,
            version=_version(options, x, perf, s),
            training_size=int(perf.size),
            fitted=fitted,
        )


def _version(
    options: Sequence[str], x: FloatArray, perf: FloatArray, settings: LearnerSettings
) -> str:
    digest = hashlib.sha256()
    # Confidence is left out: it only rescales intervals (see ``with_confidence``).
    recipe = (settings.folds, settings.boosting_estimators, settings.extra_trees_estimators)
    digest.update(repr((MODEL_FORMAT, tuple(options), recipe, settings.seed)).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(np.ascontiguousarray(perf).tobytes())
    return f"configperf/{MODEL_FORMAT}/{digest.hexdigest()[:16]}"
