"""The configperf learner on real measurements of configurable software."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from cfgclone.predictor.configperf import (
    LearnerSettings,
    MeasuredSystem,
    OptionEncoding,
    PerformanceLearner,
    PerformanceModel,
    load_measurements,
    mean_relative_error,
)
from cfgclone.predictor.verdict import Verdict

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "configperf"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"no configperf data in {DATA}")


@pytest.fixture(scope="module")
def x264() -> MeasuredSystem:
    if not DATA.is_dir():
        pytest.skip(f"no configperf data in {DATA}")
    return load_measurements(DATA / "x264.csv")


@pytest.fixture(scope="module")
def split(x264: MeasuredSystem) -> tuple[np.ndarray, np.ndarray]:
    """5n training configurations, the rest held out."""
    order = np.random.default_rng(0).permutation(x264.performance.size)
    n_train = 5 * x264.n_options
    return order[:n_train], order[n_train:]


@pytest.fixture(scope="module")
def model(x264: MeasuredSystem, split: tuple[np.ndarray, np.ndarray]) -> PerformanceModel:
    train, _ = split
    learner = PerformanceLearner(LearnerSettings(seed=0))
    return learner.fit(x264.options, x264.configurations[train], x264.performance[train])


@needs_data
def test_measurements_are_read_in_place_with_the_main_performance_column() -> None:
    x264 = load_measurements(DATA / "x264.csv")
    llvm = load_measurements(DATA / "LLVM.csv")

    assert (x264.n_options, x264.performance.size) == (16, 1152)
    assert x264.performance_column == "performance"
    assert x264.options[-3:] == ("ref_1", "ref_5", "ref_9")
    assert set(np.unique(x264.configurations)) == {0.0, 1.0}
    # LLVM also measures main memory (as text); its main column is still `performance`.
    assert llvm.performance_column == "performance"
    assert llvm.n_options == 11


def test_gzip_files_and_performance_column_choice(tmp_path: Path) -> None:
    path = tmp_path / "Tiny.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("a,b,usertime,elapsedtime\n1,0,2.5,1.0\n0,1,3.5,2.0\n1,1,0,3.0\n")

    system = load_measurements(path)
    elapsed = load_measurements(path, performance="elapsedtime")

    assert system.name == "Tiny"
    assert system.options == ("a", "b")
    assert system.performance_column == "usertime"
    # The zero run time cannot be modelled on a log scale and is dropped.
    assert system.performance.tolist() == [2.5, 3.5]
    assert elapsed.performance.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="no performance column"):
        load_measurements(path, performance="psnr")


def test_numeric_options_become_one_ordinal_column() -> None:
    options = ["fast", "ref", "ref_1", "ref_5", "ref_9", "level1", "level2", "level3"]
    rows = np.array(
        [
            [1, 1, 1, 0, 0, 1, 0, 0],
            [0, 1, 0, 1, 0, 0, 1, 0],
            [1, 1, 0, 0, 1, 0, 0, 1],
            [0, 1, 0, 1, 0, 1, 0, 0],
        ],
        dtype=float,
    )

    encoding = OptionEncoding.fit(options, rows)
    features = encoding.transform(rows)

    # `ref` is always on (dropped); ref_* and level* become their value's rank in [0, 1].
    assert encoding.kept == (0,)
    assert features.tolist() == [[1, 0, 0], [0, 0.5, 0.5], [1, 1, 1], [0, 0.5, 0]]


@needs_data
def test_learner_beats_the_linear_baseline_on_x264_at_5n(
    x264: MeasuredSystem, split: tuple[np.ndarray, np.ndarray], model: PerformanceModel
) -> None:
    train, test = split
    x, y = x264.configurations, x264.performance
    linear = LinearRegression().fit(x[train], y[train]).predict(x[test])
    center, _, _ = model.predict_log(x[test])

    learned_error = mean_relative_error(y[test], np.exp(center))
    linear_error = mean_relative_error(y[test], linear)

    assert model.training_size == 80
    assert learned_error < linear_error
    # DeepPerf reports 2-10% on x264 at these sample sizes.
    assert learned_error < 0.02


@needs_data
def test_intervals_hold_most_held_out_measurements(
    x264: MeasuredSystem, split: tuple[np.ndarray, np.ndarray], model: PerformanceModel
) -> None:
    _, test = split
    _, low, high = model.predict_log(x264.configurations[test])
    measured = np.log(x264.performance[test])
    inside = (low <= measured) & (measured <= high)
    _, wider_low, wider_high = model.with_confidence(0.99).predict_log(x264.configurations[test])

    assert inside.mean() > 0.8
    assert np.all(wider_low <= low)
    assert np.all(wider_high >= high)


@needs_data
def test_pair_decisions_on_held_out_configurations(
    x264: MeasuredSystem, split: tuple[np.ndarray, np.ndarray], model: PerformanceModel
) -> None:
    _, test = split
    rng = np.random.default_rng(1)
    a, b = rng.choice(test, 2000), rng.choice(test, 2000)
    truth = x264.performance[b] > 1.1 * x264.performance[a]

    found = model.decide(x264.configurations[a], x264.configurations[b])
    decided = np.array([v is not Verdict.INCONCLUSIVE for v in found])
    harmful = np.array([v is Verdict.NEGATIVE for v in found])

    assert decided.mean() > 0.8
    assert (harmful & truth).sum() / harmful.sum() > 0.95
    assert (harmful & truth).sum() / (decided & truth).sum() > 0.95


@needs_data
def test_assessment_of_one_change_explains_its_decision(
    x264: MeasuredSystem, split: tuple[np.ndarray, np.ndarray], model: PerformanceModel
) -> None:
    _, test = split
    y = x264.performance[test]
    fastest, slowest = test[np.argmin(y)], test[np.argmax(y)]
    before = dict(zip(x264.options, x264.configurations[fastest], strict=True))

    harmful = model.assess(before, x264.configurations[slowest])
    harmless = model.assess(x264.configurations[slowest], x264.configurations[fastest])
    nothing = model.assess(before, before)

    assert harmful.verdict is Verdict.NEGATIVE
    assert harmful.low > 1.1
    assert "slower by more than 10%" in harmful.explanation
    assert harmless.verdict is Verdict.POSITIVE
    assert harmless.high < 1.0
    assert nothing.verdict is Verdict.NEUTRAL
    assert nothing.ratio == pytest.approx(1.0)
    assert model.predict(before).low < model.predict(before).value < model.predict(before).high


@needs_data
def test_model_version_names_the_training_data(
    x264: MeasuredSystem, split: tuple[np.ndarray, np.ndarray], model: PerformanceModel
) -> None:
    assert model.version.startswith("configperf/2/")
    assert model.with_confidence(0.5).version == model.version
    assert math.isclose(sum(model.weights.values()), 1.0)


def test_learner_refuses_what_a_log_model_cannot_use() -> None:
    learner = PerformanceLearner()
    rows = np.eye(12)

    with pytest.raises(ValueError, match="positive"):
        learner.fit([f"o{i}" for i in range(12)], rows, np.r_[np.ones(11), -1.0])
    with pytest.raises(ValueError, match="at least 10"):
        learner.fit(["a"], np.ones((3, 1)), np.ones(3))
