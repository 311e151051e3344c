"""Performance of configurable software, learned from measured configurations.

The question this answers is the one a guarded apply asks before touching a system:
"does moving from configuration A to configuration B make it more than 10% slower?",
answered HARMFUL, HARMLESS, or INCONCLUSIVE when the model cannot tell. It is trained on
configurations measured offline (the ``configperf`` data: one row per configuration, 0/1
option columns, then measured performance columns).

Model. The target is ``log(performance)``: options act multiplicatively on run time, and
a log model turns "10% slower" into a fixed distance. Three learners are stacked:

- a Gaussian process with one length scale per option (ARD), which finds the options
  and interactions that matter from few samples, and whose posterior covariance says how
  sure it is about the *difference* between two configurations (two configurations that
  differ in one option share most of their uncertainty, so their ratio is known better
  than either value);
- gradient boosted trees and extremely randomised trees, which handle sharp, non-smooth
  option interactions the GP smooths over.

Their weights are fitted by non-negative least squares on K-fold out-of-fold predictions
(stacking), so each system gets the mix that predicts it best. Numeric options encoded as
one column per value (``ref_1, ref_5, ref_9``) are turned into one ordinal column, so the
learners can use the order of the values.

Intervals are conformal (normalised, cross-validated): each out-of-fold residual is
divided by the predictive standard deviation of that fold's GP, and the ``confidence``
quantile of these ratios multiplies the fold GPs' standard deviation at prediction time,
so the scale calibrated is the scale used. Pairs are calibrated the same way, on pairs of
out-of-fold configurations and the GP's standard deviation of their log-ratio, so the
interval of a change is the interval of its predicted log-ratio, not two single
intervals added up. The fold GPs keep the full fit's kernel hyperparameters (refitting
them per fold made the likelihood's poor local optima decide the stacking weights).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.linalg import solve_triangular
from scipy.optimize import nnls
from scipy.spatial.distance import cdist
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel as Constant
from sklearn.gaussian_process.kernels import Matern, WhiteKernel
from sklearn.model_selection import KFold

FloatArray = npt.NDArray[np.float64]

MAIN_PERFORMANCE_COLUMNS = ("performance", "gc_time", "usertime", "elapsedtime")
"""Performance columns in order of preference: the first one a file has is its main one.

VP9 measures ``usertime`` and ``elapsedtime`` (and size and quality, which are not
performance); ``usertime`` is the CPU time of the encoder, the cost a configuration sets.
"""

MODEL_FORMAT = 1
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


class Harm(Enum):
    """Whether a change makes a system slower by more than a threshold."""

    HARMFUL = "harmful"
    HARMLESS = "harmless"
    INCONCLUSIVE = "inconclusive"


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
    decision: Harm
    explanation: str


@dataclass(frozen=True)
class LearnerSettings:
    """How :class:`PerformanceLearner` trains."""

    confidence: float = 0.9
    """Confidence of the two-sided intervals; a HARMFUL or HARMLESS decision rests on one
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


_LENGTH_SCALE_STARTS = (0.5, 1.0, 3.0)
"""Initial length scales of the GP's likelihood maximisation (features are in [0, 1])."""


class _GaussianProcess:
    """A GP with an ARD Matern 3/2 kernel and white noise, on standardised targets.

    Matern 3/2 rather than the squared exponential: performance is not infinitely smooth
    in the options, and on the configperf systems it predicts better.

    Besides predictions it gives the posterior covariance of two configurations, which
    the interval of a change needs.
    """

    def __init__(self, x: FloatArray, y: FloatArray, kernel: object | None, seed: int) -> None:
        self.mean = float(y.mean())
        self.scale = float(y.std()) or 1.0
        if kernel is None:
            model = self._best_of_starts(x, y, seed)
        else:
            model = GaussianProcessRegressor(kernel, optimizer=None, random_state=seed)
            model.fit(x, (y - self.mean) / self.scale)
        self.model = model
        self.kernel = model.kernel_
        self.amplitude = float(self.kernel.k1.k1.constant_value)
        self.length_scale = np.atleast_1d(np.asarray(self.kernel.k1.k2.length_scale, float))
        self.noise = float(self.kernel.k2.noise_level)
        self.x_train = np.asarray(model.X_train_, dtype=np.float64)
        self.cholesky = np.asarray(model.L_, dtype=np.float64)
        self.weights = np.asarray(model.alpha_, dtype=np.float64).ravel()

    def _best_of_starts(self, x: FloatArray, y: FloatArray, seed: int) -> GaussianProcessRegressor:
        """Maximise the marginal likelihood from a few length scales and keep the best.

        The likelihood of an ARD kernel on 0/1 options has poor local optima (all noise,
        or every length scale at its lower bound); one start often lands in one.
        """
        best: GaussianProcessRegressor | None = None
        for start in _LENGTH_SCALE_STARTS:
            kernel = Constant(1.0, (1e-5, 1e5)) * Matern(
                np.full(x.shape[1], start), (1e-2, 1e3), nu=1.5
            ) + WhiteKernel(1e-2, (1e-6, 1.0))
            model = GaussianProcessRegressor(kernel, random_state=seed)
            with warnings.catch_warnings():
                # A length scale at its upper bound means "this option does not matter",
                # which is a finding, not a failure.
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x, (y - self.mean) / self.scale)
            if best is None or model.log_marginal_likelihood_value_ > (
                best.log_marginal_likelihood_value_
            ):
                best = model
        assert best is not None
        return best

    def _covariance(self, distance: FloatArray) -> FloatArray:
        """Matern 3/2 covariance at scaled Euclidean distances."""
        scaled = math.sqrt(3.0) * distance
        return np.asarray(self.amplitude * (1.0 + scaled) * np.exp(-scaled))

    def _cross(self, x: FloatArray) -> FloatArray:
        return self._covariance(
            cdist(self.x_train / self.length_scale, x / self.length_scale, "euclidean")
        )

    def predict(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Mean and predictive sd (of a measurement) in target units, and the whitened
        cross-covariances ``L^-1 k(X_train, x)`` for :meth:`pair_sd`."""
        cross = self._cross(x)
        mean = cross.T @ self.weights * self.scale + self.mean
        whitened = solve_triangular(self.cholesky, cross, lower=True)
        latent = np.maximum(self.amplitude - np.sum(whitened * whitened, axis=0), 0.0)
        sd = np.sqrt(latent + self.noise) * self.scale
        return mean, sd, whitened

    def pair_sd(
        self,
        xa: FloatArray,
        xb: FloatArray,
        wa: FloatArray,
        wb: FloatArray,
    ) -> FloatArray:
        """Predictive sd of ``y(b) - y(a)``: both latent values, their covariance, and
        the measurement noise of each side."""
        diff = (xa - xb) / self.length_scale
        prior = self._covariance(np.sqrt(np.sum(diff * diff, axis=1)))
        var_a = self.amplitude - np.sum(wa * wa, axis=0)
        var_b = self.amplitude - np.sum(wb * wb, axis=0)
        cov = prior - np.sum(wa * wb, axis=0)
        var = np.maximum(var_a + var_b - 2.0 * cov, 0.0) + 2.0 * self.noise
        return np.asarray(np.sqrt(var) * self.scale)


_LEARNERS = ("gaussian_process", "gradient_boosting", "extra_trees")


@dataclass(frozen=True, eq=False)
class PerformanceModel:
    """A trained performance model of one system; see the module docstring.

    Configurations are rows of the option matrix (or mappings of option name to 0/1).
    """

    options: tuple[str, ...]
    encoding: OptionEncoding
    settings: LearnerSettings
    weights: Mapping[str, float]
    """Stacking weight of each learner."""
    single_multiplier: float
    """Calibrated multiple of the GP sd that covers ``confidence`` of single predictions."""
    pair_multiplier: float
    """Calibrated multiple of the GP pair sd that covers ``confidence`` of log-ratios."""
    version: str
    training_size: int
    _single_scores: FloatArray = field(repr=False)
    _pair_scores: FloatArray = field(repr=False)
    _gp: _GaussianProcess = field(repr=False)
    _fold_gps: tuple[_GaussianProcess, ...] = field(repr=False)
    _boosting: GradientBoostingRegressor = field(repr=False)
    _extra_trees: ExtraTreesRegressor = field(repr=False)

    def with_confidence(self, confidence: float) -> PerformanceModel:
        """The same model with intervals at another confidence (recalibrated, not refitted)."""
        return replace(
            self,
            settings=replace(self.settings, confidence=confidence),
            single_multiplier=_conformal_quantile(self._single_scores, confidence),
            pair_multiplier=_conformal_quantile(self._pair_scores, confidence),
        )

    def row(self, configuration: Mapping[str, float]) -> FloatArray:
        """The option row of a configuration given as option name -> 0/1."""
        unknown = set(configuration) - set(self.options)
        if unknown:
            raise ValueError(f"unknown options: {', '.join(sorted(unknown))}")
        return np.array([float(configuration.get(o, 0.0)) for o in self.options])

    def predict_log(self, configurations: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Predicted ``log(performance)`` and the half-width of its interval."""
        features = self.encoding.transform(configurations)
        mean, _, _ = self._gp.predict(features)
        sd = np.mean([gp.predict(features)[1] for gp in self._fold_gps], axis=0)
        return self._stack(features, mean), self.single_multiplier * sd

    def predict(self, configuration: Mapping[str, float] | FloatArray) -> PerformancePrediction:
        """Predicted performance of one configuration, with its interval."""
        row = self.row(configuration) if isinstance(configuration, Mapping) else configuration
        center, half = self.predict_log(np.atleast_2d(row))
        c, h = float(center[0]), float(half[0])
        return PerformancePrediction(
            math.exp(c), math.exp(c - h), math.exp(c + h), self.settings.confidence
        )

    def log_ratio_interval(
        self, before: FloatArray, after: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Predicted ``log(perf(after) / perf(before))`` for rows of pairs, with its interval."""
        fa = self.encoding.transform(before)
        fb = self.encoding.transform(after)
        mean_a, _, _ = self._gp.predict(fa)
        mean_b, _, _ = self._gp.predict(fb)
        center = self._stack(fb, mean_b) - self._stack(fa, mean_a)
        sds = []
        for gp in self._fold_gps:
            _, _, wa = gp.predict(fa)
            _, _, wb = gp.predict(fb)
            sds.append(gp.pair_sd(fa, fb, wa, wb))
        half = self.pair_multiplier * np.mean(sds, axis=0)
        return center, center - half, center + half

    def decide(self, before: FloatArray, after: FloatArray, threshold: float = 0.10) -> list[Harm]:
        """The decision for each pair of rows: is ``after`` more than ``threshold`` slower?"""
        _, low, high = self.log_ratio_interval(before, after)
        return decide_from_interval(low, high, threshold)

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
        decision = decide_from_interval(low, high, threshold)[0]
        ratio, lo, hi = (math.exp(float(v[0])) for v in (center, low, high))
        interval = f"{ratio - 1:+.1%} [{lo - 1:+.1%}, {hi - 1:+.1%}]"
        conf = f"{self.settings.confidence:.0%}"
        why = {
            Harm.HARMFUL: f"predicted {interval} at {conf}: slower by more than {threshold:.0%}",
            Harm.HARMLESS: f"predicted {interval} at {conf}: not {threshold:.0%} slower",
            Harm.INCONCLUSIVE: f"predicted {interval} at {conf} straddles +{threshold:.0%}",
        }[decision]
        return ChangeAssessment(ratio, lo, hi, self.settings.confidence, threshold, decision, why)

    def _stack(self, features: FloatArray, gp_mean: FloatArray) -> FloatArray:
        stacked = self.weights["gaussian_process"] * gp_mean
        for name, learner in (
            ("gradient_boosting", self._boosting),
            ("extra_trees", self._extra_trees),
        ):
            if self.weights[name] > 0:
                stacked = stacked + self.weights[name] * learner.predict(features)
        return np.asarray(stacked, dtype=np.float64)


def decide_from_interval(low: FloatArray, high: FloatArray, threshold: float) -> list[Harm]:
    """HARMFUL when the whole log-ratio interval is beyond ``log(1 + threshold)``, HARMLESS
    when it is all below, INCONCLUSIVE when it straddles."""
    limit = math.log1p(threshold)
    return [
        Harm.HARMFUL if lo > limit else Harm.HARMLESS if hi <= limit else Harm.INCONCLUSIVE
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
        y = np.log(perf)
        encoding = OptionEncoding.fit(options, x)
        features = encoding.transform(x)
        gp = _GaussianProcess(features, y, None, s.seed)
        boosting = self._boosting().fit(features, y)
        extra_trees = self._extra_trees().fit(features, y)

        # Out-of-fold predictions: the GP keeps the full fit's kernel (refitting only its
        # weights), which is the usual cheap cross-validation of a GP.
        out_of_fold = np.zeros((y.size, len(_LEARNERS)))
        single_scores = np.zeros(y.size)
        fold_of = np.zeros(y.size, dtype=int)
        fold_gps: list[_GaussianProcess] = []
        splitter = KFold(s.folds, shuffle=True, random_state=s.seed)
        for fold, (train, test) in enumerate(splitter.split(features)):
            fold_of[test] = fold
            fold_gp = _GaussianProcess(features[train], y[train], gp.kernel, s.seed)
            fold_gps.append(fold_gp)
            mean, sd, _ = fold_gp.predict(features[test])
            out_of_fold[test, 0] = mean
            out_of_fold[test, 1] = (
                self._boosting().fit(features[train], y[train]).predict(features[test])
            )
            out_of_fold[test, 2] = (
                self._extra_trees().fit(features[train], y[train]).predict(features[test])
            )
            single_scores[test] = sd
        weights, _ = nnls(out_of_fold, y)
        total = float(weights.sum())
        weights = weights / total if total > 0 else np.full(len(_LEARNERS), 1 / len(_LEARNERS))
        stacked = out_of_fold @ weights
        single_scores = np.abs(y - stacked) / single_scores

        pair_scores = []
        for fold, fold_gp in enumerate(fold_gps):
            members = np.flatnonzero(fold_of == fold)
            i, j = np.triu_indices(members.size, k=1)
            a, b = members[i], members[j]
            _, _, wa = fold_gp.predict(features[a])
            _, _, wb = fold_gp.predict(features[b])
            sd = fold_gp.pair_sd(features[a], features[b], wa, wb)
            residual = (y[b] - y[a]) - (stacked[b] - stacked[a])
            pair_scores.append(np.abs(residual) / sd)

        pair_scores_all = np.concatenate(pair_scores)
        return PerformanceModel(
            options=tuple(options),
            encoding=encoding,
            settings=s,
            weights=dict(zip(_LEARNERS, (float(w) for w in weights), strict=True)),
            single_multiplier=_conformal_quantile(single_scores, s.confidence),
            pair_multiplier=_conformal_quantile(pair_scores_all, s.confidence),
            version=_version(options, x, perf, s),
            training_size=int(y.size),
            _single_scores=single_scores,
            _pair_scores=pair_scores_all,
            _gp=gp,
            _fold_gps=tuple(fold_gps),
            _boosting=boosting,
            _extra_trees=extra_trees,
        )

    def _boosting(self) -> GradientBoostingRegressor:
        return GradientBoostingRegressor(
            n_estimators=self.settings.boosting_estimators,
            learning_rate=0.05,
            max_depth=3,
            subsample=0.8,
            random_state=self.settings.seed,
        )

    def _extra_trees(self) -> ExtraTreesRegressor:
        return ExtraTreesRegressor(
            n_estimators=self.settings.extra_trees_estimators, random_state=self.settings.seed
        )


def _conformal_quantile(scores: FloatArray, confidence: float) -> float:
    """The ``ceil((n + 1) * confidence) / n`` empirical quantile of conformity scores,
    the finite-sample correction of split conformal prediction."""
    n = scores.size
    level = min(1.0, math.ceil((n + 1) * confidence) / n)
    return float(np.quantile(scores, level, method="higher"))


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
