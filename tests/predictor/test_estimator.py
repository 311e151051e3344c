"""The predictor's one learner: calibrated intervals out of sample, and fast predictions
that are the fitted models' own."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.predictor import estimator
from cfgclone.predictor.estimator import Estimator, EstimatorSettings, FittedEstimator

SMALL = EstimatorSettings(
    boosting_estimators=60, learning_rate=0.1, extra_trees_estimators=60, min_samples_leaf=2
)


def _examples(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A nonlinear effect with an interaction, a threshold and noise whose spread grows
    with one feature (so no single width fits every row)."""
    x = rng.normal(size=(n, 6))
    signal = np.sin(x[:, 0]) + 0.6 * x[:, 1] * (x[:, 2] > 0) + 0.3 * x[:, 3]
    noise = rng.normal(0.0, 0.1 + 0.1 * np.abs(x[:, 4]), n)
    return x, signal + noise


@pytest.fixture(scope="module")
def fitted() -> tuple[FittedEstimator, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(14)
    x, y = _examples(rng, 240)
    held_x, held_y = _examples(rng, 3000)
    return Estimator(SMALL).fit(x, y), held_x, held_y


@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.9])
def test_intervals_cover_held_out_examples_at_about_the_confidence_asked(
    fitted: tuple[FittedEstimator, np.ndarray, np.ndarray], confidence: float
) -> None:
    model, x, y = fitted

    _, low, high = model.interval(x, confidence)
    coverage = float(np.mean((low <= y) & (y <= high)))

    # CV+ guarantees at least 1 - 2(1 - c) and in practice covers at about c; it must
    # neither fall short of c nor buy coverage with intervals far wider than needed.
    assert confidence - 0.05 <= coverage <= confidence + 0.07


def test_differences_of_held_out_pairs_are_covered_at_about_the_confidence_asked(
    fitted: tuple[FittedEstimator, np.ndarray, np.ndarray],
) -> None:
    model, x, y = fitted
    a, b = np.arange(0, 1500), np.arange(1500, 3000)

    _, lows, highs = model.difference_intervals(x[a], x[b], (0.8, 0.9))
    truth = y[b] - y[a]

    for level, low, high in zip((0.8, 0.9), lows, highs, strict=True):
        coverage = float(np.mean((low <= truth) & (truth <= high)))
        assert level - 0.05 <= coverage <= level + 0.07


def test_higher_confidence_widens_every_interval(
    fitted: tuple[FittedEstimator, np.ndarray, np.ndarray],
) -> None:
    model, x, _ = fitted

    center, lows, highs = model.intervals(x[:200], (0.5, 0.9, 0.99))

    assert np.all(np.diff(lows, axis=0) <= 0)
    assert np.all(np.diff(highs, axis=0) >= 0)
    assert np.all(lows[0] < highs[0])
    assert np.mean((lows[1] <= center) & (center <= highs[1])) > 0.95


def test_the_tree_walk_for_few_rows_gives_sklearns_predictions(
    fitted: tuple[FittedEstimator, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x, _ = fitted
    rows = x[:5]

    walked = model.intervals(rows, (0.9,))
    monkeypatch.setattr(estimator, "_FEW_ROWS", 0)
    through_sklearn = model.intervals(rows, (0.9,))

    for ours, theirs in zip(walked, through_sklearn, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_the_stack_weighs_the_members_that_predict() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(150, 4))
    # A pure elasticity: the linear member predicts it best, trees only approximate it.
    y = 0.8 * x[:, 0] - 0.5 * x[:, 1] + rng.normal(0.0, 0.05, 150)

    model = Estimator(SMALL).fit(x, y)
    weights = dict(zip(estimator.MEMBERS, model.weights, strict=True))

    assert weights["ridge"] > 0.8
    assert weights["gaussian_process"] == 0.0
    assert sum(weights.values()) == pytest.approx(1.0)


def test_weighted_examples_count_by_their_weight() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(120, 3))
    y = x[:, 0] + rng.normal(0.0, 0.05, 120)
    # Half the examples are noisy and weigh almost nothing: the interval follows the
    # examples that weigh.
    noisy = np.arange(120) % 2 == 1
    y[noisy] += rng.normal(0.0, 2.0, int(noisy.sum()))
    weights = np.where(noisy, 0.01, 1.0)

    weighted = Estimator(SMALL).fit(x, y, weights)
    plain = Estimator(SMALL).fit(x, y)
    _, low_w, high_w = weighted.interval(x[:20], 0.8)
    _, low_p, high_p = plain.interval(x[:20], 0.8)

    assert np.median(high_w - low_w) < 0.5 * np.median(high_p - low_p)


def test_refuses_what_it_cannot_learn_from() -> None:
    learner = Estimator(SMALL)

    with pytest.raises(ValueError, match="one per fold"):
        learner.fit(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        learner.fit(np.full((10, 2), np.nan), np.zeros(10))
    with pytest.raises(ValueError, match="positive"):
        learner.fit(np.zeros((10, 2)), np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="at least one member"):
        EstimatorSettings(boosting_estimators=0, extra_trees_estimators=0, ridge_alpha=None)
