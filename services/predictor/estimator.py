"""The one learner of the predictor: a stacked regression with calibrated intervals.

Both learned paths use it, so the model the configperf benchmark measures is the model
the service runs: :mod:`cfgclone.predictor.learned` (a KPI's relative change from the
fleet's history of changes) and :mod:`cfgclone.predictor.configperf` (a configuration's
performance from measured configurations).

Model. Members, stacked with non-negative weights fitted by least squares on K-fold
out-of-fold predictions (each problem gets the mix that predicts it best):

- a ridge regression on standardised features, which extrapolates an elasticity (doubling
  a buffer moves latency by a similar factor wherever it starts) where trees cannot;
- gradient boosted trees, for sharp interactions and thresholds;
- extremely randomised trees, smooth averages of many random splits, steady on few
  examples;
- optionally a Gaussian process with one length scale per feature (ARD), which finds the
  features that matter from few examples and knows how sure it is (small measured sets).

Intervals are CV+ (Barber, Candes, Ramdas, Tibshirani, "Predictive inference with the
jackknife+", 2021): each training example keeps the absolute residual of the fold model
that did not see it, and the interval at a new point is read from the fold models'
predictions there shifted by those residuals, so it is as wide as the errors on examples
the model did not train on, and covers out of sample at about the confidence asked. With
example weights (borrowed history weighs less than the target's own) the quantiles are
weighted. With a Gaussian process the residuals are divided by the fold GP's predictive
standard deviation and multiplied by it at the new point, so the interval is narrow where
the GP is sure and wide where it is not. The difference of two predictions (a change from
configuration ``a`` to ``b``) has its own calibration, on pairs of examples held out
together, since the errors of two close predictions largely cancel.

Speed. ``sklearn``'s ``predict`` costs about 0.1 ms of dispatch per ensemble and call, so
a prediction of a few rows walks every fitted tree (all members, all fold models) at once
in numpy over flat arrays; many rows go through ``sklearn``, which is faster per row.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

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
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

MEMBERS = ("ridge", "gradient_boosting", "extra_trees", "gaussian_process")
"""The stack's members, in the order of :attr:`FittedEstimator.weights`."""

_FEW_ROWS = 16
"""Up to this many rows, predictions walk the compiled trees; more go through sklearn."""

_MAX_PAIR_SCORES = 4000
"""Held-out pairs kept for the calibration of differences (a random subset beyond)."""


@dataclass(frozen=True)
class EstimatorSettings:
    """What :class:`Estimator` fits."""

    folds: int = 5
    """Folds of the cross-validation behind the stacking weights and the intervals."""
    boosting_estimators: int = 300
    """Trees of the gradient boosted member (0 leaves it out)."""
    learning_rate: float = 0.05
    boosting_depth: int = 3
    subsample: float = 0.8
    """Share of the examples each boosted tree sees."""
    extra_trees_estimators: int = 200
    """Trees of the extremely randomised member (0 leaves it out)."""
    min_samples_leaf: int = 1
    """Fewest examples in a leaf of either tree member."""
    ridge_alpha: float | None = 1.0
    """Regularisation of the linear member on standardised features; None leaves it out."""
    gaussian_process: bool = False
    """Whether a Gaussian process is a member (and sets the intervals' local width). Its fit
    is cubic in the examples: for small measured sets, not for a fleet's history."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError("folds must be at least 2")
        if self.boosting_estimators < 0 or self.extra_trees_estimators < 0:
            raise ValueError("tree counts must not be negative")
        if self.min_samples_leaf < 1:
            raise ValueError("min_samples_leaf must be at least 1")
        if not 0.0 < self.subsample <= 1.0:
            raise ValueError("subsample must be in (0, 1]")
        if self.ridge_alpha is not None and self.ridge_alpha < 0:
            raise ValueError("ridge_alpha must not be negative")
        members = (
            self.boosting_estimators + self.extra_trees_estimators > 0
            or self.ridge_alpha is not None
            or self.gaussian_process
        )
        if not members:
            raise ValueError("the stack needs at least one member")


_LENGTH_SCALE_STARTS = (0.5, 1.0, 3.0)
"""Initial length scales of the GP's likelihood maximisation (features scaled to [0, 1])."""


class _GaussianProcess:
    """A GP with an ARD Matern 3/2 kernel and white noise, on standardised targets.

    Matern 3/2 rather than the squared exponential: performance is not infinitely smooth
    in the options, and on the configperf systems it predicts better. Besides predictions
    it gives the posterior covariance of two points, which the width of a difference
    needs.
    """

    def __init__(self, x: FloatArray, y: FloatArray, kernel: object | None, seed: int) -> None:
        self.mean = float(y.mean())
        self.scale = float(y.std()) or 1.0
        if kernel is None:
            model = self._best_of_starts(x, y, seed)
        else:
            model = GaussianProcessRegressor(kernel, optimizer=None, random_state=seed)
            model.fit(x, (y - self.mean) / self.scale)
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
                # A length scale at its upper bound means "this feature does not matter",
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
        scaled = math.sqrt(3.0) * distance
        return np.asarray(self.amplitude * (1.0 + scaled) * np.exp(-scaled))

    def predict(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Mean and predictive sd (of a measurement) in target units, and the whitened
        cross-covariances ``L^-1 k(X_train, x)`` for :meth:`pair_sd`."""
        cross = self._covariance(
            cdist(self.x_train / self.length_scale, x / self.length_scale, "euclidean")
        )
        mean = cross.T @ self.weights * self.scale + self.mean
        whitened = solve_triangular(self.cholesky, cross, lower=True)
        latent = np.maximum(self.amplitude - np.sum(whitened * whitened, axis=0), 0.0)
        return mean, np.sqrt(latent + self.noise) * self.scale, whitened

    def pair_sd(self, xa: FloatArray, xb: FloatArray) -> FloatArray:
        """Predictive sd of ``y(b) - y(a)``: both latent values, their covariance, and
        the measurement noise of each side."""
        _, _, wa = self.predict(xa)
        _, _, wb = self.predict(xb)
        diff = (xa - xb) / self.length_scale
        prior = self._covariance(np.sqrt(np.sum(diff * diff, axis=1)))
        var_a = self.amplitude - np.sum(wa * wa, axis=0)
        var_b = self.amplitude - np.sum(wb * wb, axis=0)
        cov = prior - np.sum(wa * wb, axis=0)
        var = np.maximum(var_a + var_b - 2.0 * cov, 0.0) + 2.0 * self.noise
        return np.asarray(np.sqrt(var) * self.scale)


@dataclass(frozen=True, eq=False)
class _Members:
    """The members fitted on one set of examples (all of them, or one fold's training)."""

    ridge: tuple[FloatArray, float] | None
    """Coefficients on the raw features and intercept."""
    boosting: GradientBoostingRegressor | None
    extra_trees: ExtraTreesRegressor | None
    gp: _GaussianProcess | None

    def predict(self, x: FloatArray) -> FloatArray:
        """Each member's prediction, ``(rows, members)``; 0 for an absent member."""
        out = np.zeros((x.shape[0], len(MEMBERS)))
        if self.ridge is not None:
            out[:, 0] = x @ self.ridge[0] + self.ridge[1]
        if self.boosting is not None:
            out[:, 1] = self.boosting.predict(x)
        if self.extra_trees is not None:
            out[:, 2] = self.extra_trees.predict(x)
        if self.gp is not None:
            out[:, 3] = self.gp.predict(x)[0]
        return out


class _CompiledTrees:
    """Every tree of the boosted and randomised members of all fitted sets as flat arrays.

    Slot ``2 * s + j`` holds member ``j`` (0: boosting, 1: extra trees) of set ``s``; a
    leaf points to itself, so walking ``depth`` steps from the roots lands every tree in
    its leaf whatever its own depth (trees are walked deepest first, each only as deep as
    it goes). Comparisons are made on float32 inputs, as sklearn's
    trees make them, so the results are sklearn's.
    """

    def __init__(self, sets: Sequence[_Members], width: int) -> None:
        features, thresholds, lefts, rights, values, roots = [], [], [], [], [], []
        slot_of: list[int] = []
        coefficients: list[float] = []
        intercepts = np.zeros(2 * len(sets))
        offset = 0
        depths: list[int] = []
        for index, members in enumerate(sets):
            groups: list[tuple[int, list[object], float]] = []
            if members.boosting is not None:
                boosted = [row[0] for row in members.boosting.estimators_]
                groups.append((0, boosted, float(members.boosting.learning_rate)))
                intercepts[2 * index] = _boosting_intercept(members.boosting, width)
            if members.extra_trees is not None:
                forest = list(members.extra_trees.estimators_)
                groups.append((1, forest, 1.0 / len(forest)))
            for member, estimators, coefficient in groups:
                for estimator in estimators:
                    tree = estimator.tree_  # type: ignore[attr-defined]
                    count = int(tree.node_count)
                    leaf = tree.children_left == -1
                    own = np.arange(offset, offset + count)
                    features.append(np.where(leaf, 0, tree.feature))
                    thresholds.append(np.where(leaf, np.inf, tree.threshold))
                    lefts.append(np.where(leaf, own, tree.children_left + offset))
                    rights.append(np.where(leaf, own, tree.children_right + offset))
                    values.append(tree.value.reshape(count, -1)[:, 0])
                    roots.append(offset)
                    slot_of.append(2 * index + member)
                    coefficients.append(coefficient)
                    depths.append(int(tree.max_depth))
                    offset += count
        # Deepest trees first, so that step t of the walk moves only a prefix of them.
        order = np.argsort(-np.asarray(depths, dtype=np.intp), kind="stable")
        self.steps = np.array(
            [int(np.sum(np.asarray(depths) > t)) for t in range(max(depths, default=0))],
            dtype=np.intp,
        )
        self.slots = 2 * len(sets)
        self.intercepts = intercepts
        empty = np.zeros(0)
        self.feature = np.concatenate(features or [empty]).astype(np.intp)
        self.threshold = np.concatenate(thresholds or [empty]).astype(np.float64)
        self.left = np.concatenate(lefts or [empty]).astype(np.intp)
        self.right = np.concatenate(rights or [empty]).astype(np.intp)
        self.value = np.concatenate(values or [empty]).astype(np.float64)
        self.roots = np.asarray(roots, dtype=np.intp)[order]
        mix = np.zeros((self.slots, len(roots)))
        mix[np.asarray(slot_of, dtype=np.intp), np.arange(len(roots))] = coefficients
        self.mix = mix[:, order]

    def predict(self, x: FloatArray) -> FloatArray:
        """Every slot's prediction, ``(slots, rows)``."""
        rows = np.asarray(x, dtype=np.float32).astype(np.float64)
        if self.roots.size == 0:
            return np.tile(self.intercepts[:, None], (1, rows.shape[0]))
        nodes = np.repeat(self.roots[:, None], rows.shape[0], axis=1)
        row_index = np.arange(rows.shape[0])[None, :]
        for active in self.steps:
            moving = nodes[:active]
            go_left = rows[row_index, self.feature[moving]] <= self.threshold[moving]
            nodes[:active] = np.where(go_left, self.left[moving], self.right[moving])
        return np.asarray(self.mix @ self.value[nodes] + self.intercepts[:, None])


def _boosting_intercept(model: GradientBoostingRegressor, width: int) -> float:
    """The boosted model's initial prediction (a constant): its prediction less its trees'."""
    origin = np.zeros((1, width))
    trees = sum(float(row[0].predict(origin)[0]) for row in model.estimators_)
    return float(model.predict(origin)[0]) - float(model.learning_rate) * trees


class FittedEstimator:
    """A fitted stack; see the module docstring. Rows of ``x`` are feature vectors."""

    def __init__(
        self,
        settings: EstimatorSettings,
        full: _Members,
        folds: tuple[_Members, ...],
        weights: FloatArray,
        x: FloatArray,
        y: FloatArray,
        example_weights: FloatArray,
        fold_of: IntArray,
        out_of_fold: FloatArray,
    ) -> None:
        self.settings = settings
        self.weights = weights
        """Stacking weight of each of :data:`MEMBERS`, summing to 1."""
        self._full = full
        self._folds = folds
        self._x = x
        self._y = y
        self._example_weights = example_weights
        self._fold_of = fold_of
        self._out_of_fold = out_of_fold
        scale = self._fold_scales(x, np.arange(len(folds)), fold_of)
        self._scores = np.abs(y - out_of_fold) / scale
        self._pair_scores: tuple[FloatArray, IntArray] | None = None
        self._compiled = _CompiledTrees((full, *folds), x.shape[1])

    @property
    def size(self) -> int:
        """Examples it was trained on."""
        return int(self._y.size)

    @property
    def scores(self) -> FloatArray:
        """Out-of-fold absolute residuals (divided by the GP's sd when there is one)."""
        return self._scores.copy()

    def predict(self, x: FloatArray) -> FloatArray:
        """The full model's prediction of each row."""
        return np.asarray(self._predictions(np.atleast_2d(x))[0], dtype=np.float64)

    def interval(
        self, x: FloatArray, confidence: float
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Prediction and CV+ interval (low, high) of each row at ``confidence``."""
        center, lows, highs = self.intervals(x, (confidence,))
        return center, lows[0], highs[0]

    def intervals(
        self, x: FloatArray, confidences: Sequence[float]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Prediction and CV+ intervals at several confidences: ``(rows,)``, and lows and
        highs as ``(confidences, rows)``."""
        rows = np.atleast_2d(np.asarray(x, dtype=np.float64))
        predictions = self._predictions(rows)
        folds = np.arange(len(self._folds))
        scales = self._fold_scales(rows, folds, None)
        return self._cv_plus(
            predictions[0],
            predictions[1:],
            scales,
            self._scores,
            self._fold_of,
            self._example_weights,
            confidences,
        )

    def difference_intervals(
        self, a: FloatArray, b: FloatArray, confidences: Sequence[float]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Predicted ``y(b) - y(a)`` for rows of pairs, with CV+ intervals calibrated on
        pairs of examples held out together: as :meth:`intervals`."""
        xa = np.atleast_2d(np.asarray(a, dtype=np.float64))
        xb = np.atleast_2d(np.asarray(b, dtype=np.float64))
        both = self._predictions(np.vstack([xa, xb]))
        m = xa.shape[0]
        differences = both[:, m:] - both[:, :m]
        scores, fold_of = self._pairs()
        scales = np.ones((len(self._folds), m))
        if self.settings.gaussian_process:
            for k, members in enumerate(self._folds):
                assert members.gp is not None
                scales[k] = members.gp.pair_sd(xa, xb)
        return self._cv_plus(
            differences[0],
            differences[1:],
            scales,
            scores,
            fold_of,
            np.ones(scores.size),
            confidences,
        )

    def _predictions(self, x: FloatArray) -> FloatArray:
        """Stacked predictions of the full model and each fold model, ``(1 + folds, rows)``."""
        sets = (self._full, *self._folds)
        per_member = np.zeros((len(sets), x.shape[0], len(MEMBERS)))
        fast = x.shape[0] <= _FEW_ROWS
        if fast:
            slots = self._compiled.predict(x)
            per_member[:, :, 1] = slots[0::2]
            per_member[:, :, 2] = slots[1::2]
        for index, members in enumerate(sets):
            if members.ridge is not None:
                per_member[index, :, 0] = x @ members.ridge[0] + members.ridge[1]
            if members.gp is not None:
                per_member[index, :, 3] = members.gp.predict(x)[0]
            if not fast:
                if members.boosting is not None:
                    per_member[index, :, 1] = members.boosting.predict(x)
                if members.extra_trees is not None:
                    per_member[index, :, 2] = members.extra_trees.predict(x)
        return np.asarray(per_member @ self.weights)

    def _fold_scales(self, x: FloatArray, folds: IntArray, fold_of: IntArray | None) -> FloatArray:
        """The local scale of each fold model at each row: the fold GP's predictive sd, or
        1 without a GP. With ``fold_of``, row ``i`` only for its own fold (a vector)."""
        if not self.settings.gaussian_process:
            return np.ones(x.shape[0]) if fold_of is not None else np.ones((folds.size, len(x)))
        if fold_of is not None:
            out = np.ones(x.shape[0])
            for k in folds:
                members = self._folds[k]
                assert members.gp is not None
                held = fold_of == k
                out[held] = members.gp.predict(x[held])[1]
            return out
        scales = np.ones((folds.size, x.shape[0]))
        for k in folds:
            members = self._folds[k]
            assert members.gp is not None
            scales[k] = members.gp.predict(x)[1]
        return scales

    def _pairs(self) -> tuple[FloatArray, IntArray]:
        """Scores of pairs of examples held out by the same fold, and that fold."""
        if self._pair_scores is None:
            rng = np.random.default_rng(self.settings.seed)
            scores, folds = [], []
            for k, members in enumerate(self._folds):
                held = np.flatnonzero(self._fold_of == k)
                i, j = np.triu_indices(held.size, k=1)
                a, b = held[i], held[j]
                residual = (self._y[b] - self._y[a]) - (self._out_of_fold[b] - self._out_of_fold[a])
                scale = (
                    members.gp.pair_sd(self._x[a], self._x[b])
                    if members.gp is not None
                    else np.ones(a.size)
                )
                scores.append(np.abs(residual) / scale)
                folds.append(np.full(a.size, k, dtype=np.intp))
            every = np.concatenate(scores)
            fold_of = np.concatenate(folds)
            if every.size > _MAX_PAIR_SCORES:
                keep = rng.choice(every.size, _MAX_PAIR_SCORES, replace=False)
                every, fold_of = every[keep], fold_of[keep]
            self._pair_scores = (every, fold_of)
        return self._pair_scores

    @staticmethod
    def _cv_plus(
        center: FloatArray,
        fold_predictions: FloatArray,
        fold_scales: FloatArray,
        scores: FloatArray,
        fold_of: IntArray,
        weights: FloatArray,
        confidences: Sequence[float],
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """CV+ bounds: per example ``i``, its fold model's prediction at the row plus or
        minus its score times that fold's scale there; the bounds are the weighted
        ``confidence`` quantiles of these (upper) and of their negatives (lower)."""
        m = center.size
        lows = np.empty((len(confidences), m))
        highs = np.empty((len(confidences), m))
        if scores.size == 0:
            lows.fill(-math.inf)
            highs.fill(math.inf)
            return center, lows, highs
        n_eff = float(weights.sum() ** 2 / np.sum(weights**2))
        levels = [min(1.0, c * (1.0 + 1.0 / n_eff)) for c in confidences]
        chunk = max(1, 2_000_000 // scores.size)
        for start in range(0, m, chunk):
            part = slice(start, min(m, start + chunk))
            mu = fold_predictions[fold_of, part]
            spread = scores[:, None] * fold_scales[fold_of, part]
            highs[:, part] = _weighted_quantiles(mu + spread, weights, levels)
            lows[:, part] = -_weighted_quantiles(spread - mu, weights, levels)
        return center, lows, highs


def _weighted_quantiles(
    values: FloatArray, weights: FloatArray, levels: Sequence[float]
) -> FloatArray:
    """Per column of ``values`` (examples by rows), the smallest value whose weighted
    cumulative share reaches each level, ``(levels, columns)``."""
    order = np.argsort(values, axis=0)
    ordered = np.take_along_axis(values, order, axis=0)
    cumulative = np.cumsum(weights[order], axis=0) / weights.sum()
    out = np.empty((len(levels), values.shape[1]))
    last = values.shape[0] - 1
    for index, level in enumerate(levels):
        position = np.minimum(np.sum(cumulative < level - 1e-12, axis=0), last)
        out[index] = ordered[position, np.arange(values.shape[1])]
    return out


@dataclass(frozen=True)
class Estimator:
    """Fits :class:`FittedEstimator`; see the module docstring."""

    settings: EstimatorSettings = EstimatorSettings()

    def fit(
        self, x: FloatArray, y: FloatArray, weights: FloatArray | None = None
    ) -> FittedEstimator:
        """Fit on rows ``x`` and targets ``y`` (optionally weighted; weights > 0)."""
        s = self.settings
        features = np.asarray(x, dtype=np.float64)
        target = np.asarray(y, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] != target.size:
            raise ValueError("x must be a (rows, features) matrix with one row per target")
        if target.size < s.folds:
            raise ValueError(f"need at least {s.folds} examples, one per fold")
        if not np.all(np.isfinite(features)) or not np.all(np.isfinite(target)):
            raise ValueError("features and targets must be finite")
        w = np.ones(target.size) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != target.shape or np.any(w <= 0) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be positive, one per example")
        full = self._members(features, target, w, None)
        fold_of = np.zeros(target.size, dtype=np.intp)
        out_of_fold = np.zeros((target.size, len(MEMBERS)))
        folds = []
        splitter = KFold(s.folds, shuffle=True, random_state=s.seed)
        for k, (train, test) in enumerate(splitter.split(features)):
            fold_of[test] = k
            kernel = full.gp.kernel if full.gp is not None else None
            members = self._members(features[train], target[train], w[train], kernel)
            folds.append(members)
            out_of_fold[test] = members.predict(features[test])
        root_w = np.sqrt(w)
        stack, _ = nnls(out_of_fold * root_w[:, None], target * root_w)
        present = np.array([self._has(name) for name in MEMBERS])
        stack = np.where(present, stack, 0.0)
        total = float(stack.sum())
        stack = stack / total if total > 0 else present / present.sum()
        return FittedEstimator(
            s,
            full,
            tuple(folds),
            stack,
            features,
            target,
            w,
            fold_of,
            out_of_fold @ stack,
        )

    def _has(self, member: str) -> bool:
        s = self.settings
        return {
            "ridge": s.ridge_alpha is not None,
            "gradient_boosting": s.boosting_estimators > 0,
            "extra_trees": s.extra_trees_estimators > 0,
            "gaussian_process": s.gaussian_process,
        }[member]

    def _members(
        self, x: FloatArray, y: FloatArray, w: FloatArray, kernel: object | None
    ) -> _Members:
        s = self.settings
        ridge = None
        if s.ridge_alpha is not None:
            mean = np.average(x, axis=0, weights=w)
            scale = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w))
            scale = np.where(scale > 1e-12, scale, 1.0)
            fitted = Ridge(alpha=s.ridge_alpha).fit((x - mean) / scale, y, sample_weight=w)
            coef = np.asarray(fitted.coef_, dtype=np.float64) / scale
            ridge = (coef, float(fitted.intercept_) - float(coef @ mean))
        boosting = None
        if s.boosting_estimators > 0:
            boosting = GradientBoostingRegressor(
                n_estimators=s.boosting_estimators,
                learning_rate=s.learning_rate,
                max_depth=s.boosting_depth,
                subsample=s.subsample,
                min_samples_leaf=s.min_samples_leaf,
                random_state=s.seed,
            ).fit(x, y, sample_weight=w)
        extra_trees = None
        if s.extra_trees_estimators > 0:
            extra_trees = ExtraTreesRegressor(
                n_estimators=s.extra_trees_estimators,
                min_samples_leaf=s.min_samples_leaf,
                random_state=s.seed,
                n_jobs=1,
            ).fit(x, y, sample_weight=w)
        gp = _GaussianProcess(x, y, kernel, s.seed) if s.gaussian_process else None
        return _Members(ridge, boosting, extra_trees, gp)
