"""The judge: a rank test with an effect-size gate, and a tail test for what ranks miss."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from cfgclone.predictor.change import KpiDirection
from cfgclone.predictor.judge import Judge, JudgeSettings
from cfgclone.predictor.verdict import Verdict


def _centred(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(values - np.median(values), dtype=np.float64)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


def test_variance_increase_with_unchanged_median_is_negative_though_mwu_misses_it(
    rng: np.random.Generator,
) -> None:
    # Same median by construction (each sample centred on its own median), 4x the spread.
    baseline = 100.0 + 5.0 * _centred(rng.standard_normal(400))
    candidate = 100.0 + 20.0 * _centred(rng.standard_normal(400))

    plain = stats.mannwhitneyu(candidate, baseline, alternative="two-sided")
    result = Judge().compare("latency_ms", baseline, candidate)

    assert plain.pvalue > 0.05  # a rank test alone sees nothing
    assert result.verdict is Verdict.NEGATIVE
    assert "tail" in result.explanation
    assert result.relative_change is not None
    assert abs(result.relative_change) < 0.05
    assert result.tail_quantile == 0.95
    assert result.tail_interval is not None
    assert result.tail_interval.low > 0.1


def test_variance_increase_hurts_the_low_tail_of_a_higher_is_better_kpi(
    rng: np.random.Generator,
) -> None:
    baseline = rng.normal(1000.0, 50.0, 400)
    candidate = rng.normal(1000.0, 200.0, 400)

    result = Judge().compare("throughput_tps", baseline, candidate)

    assert result.direction is KpiDirection.HIGHER_IS_BETTER
    assert result.verdict is Verdict.NEGATIVE
    assert result.tail_quantile == pytest.approx(0.05)
    assert result.tail_interval is not None
    assert result.tail_interval.high < -0.1


def test_variance_decrease_is_not_a_regression(rng: np.random.Generator) -> None:
    baseline = rng.normal(100.0, 20.0, 400)
    candidate = rng.normal(100.0, 5.0, 400)

    result = Judge().compare("latency_ms", baseline, candidate)

    assert result.verdict is Verdict.NEUTRAL


@pytest.mark.parametrize(
    ("kpi", "factor", "expected"),
    [
        ("latency_ms", 1.25, Verdict.NEGATIVE),
        ("latency_ms", 0.8, Verdict.POSITIVE),
        ("throughput_tps", 0.8, Verdict.NEGATIVE),
        ("throughput_tps", 1.25, Verdict.POSITIVE),
    ],
)
def test_clear_shift_is_judged_by_direction(
    rng: np.random.Generator, kpi: str, factor: float, expected: Verdict
) -> None:
    baseline = rng.lognormal(np.log(100.0), 0.2, 200)
    candidate = rng.lognormal(np.log(100.0 * factor), 0.2, 200)

    result = Judge().compare(kpi, baseline, candidate)

    assert result.verdict is expected
    assert result.p_value is not None
    assert result.p_value < 0.001
    assert result.relative_change == pytest.approx(factor - 1.0, abs=0.06)
    assert result.interval is not None
    assert result.interval.low < factor - 1.0 < result.interval.high
    assert result.effect_size is not None
    assert abs(result.effect_size) > 0.5


def test_identical_distributions_are_neutral(rng: np.random.Generator) -> None:
    baseline = rng.lognormal(np.log(50.0), 0.1, 500)
    candidate = rng.lognormal(np.log(50.0), 0.1, 500)

    result = Judge().compare("cpu_percent", baseline, candidate)

    assert result.verdict is Verdict.NEUTRAL
    assert result.interval is not None
    assert result.interval.low < 0.0 < result.interval.high
    assert result.evidence_count == 1000


def test_constant_equal_samples_are_neutral() -> None:
    result = Judge().compare("memory_bytes", [4096.0] * 30, [4096.0] * 30)

    assert result.verdict is Verdict.NEUTRAL
    assert result.relative_change == 0.0


def test_significant_but_tiny_shift_is_stopped_by_the_effect_size_gate(
    rng: np.random.Generator,
) -> None:
    baseline = rng.normal(100.0, 1.0, 5000)
    candidate = rng.normal(101.0, 1.0, 5000)  # +1%: certain, and irrelevant

    plain = stats.mannwhitneyu(candidate, baseline, alternative="two-sided")
    result = Judge().compare("latency_ms", baseline, candidate)

    assert plain.pvalue < 1e-10
    assert result.verdict is Verdict.NEUTRAL


@pytest.mark.parametrize(
    ("baseline", "candidate"),
    [
        ([], [1.0] * 50),
        ([1.0] * 50, []),
        ([1.0] * 19, [1.0] * 50),
        ([float("nan")] * 50, [1.0] * 50),
    ],
)
def test_empty_or_short_side_is_nodata(baseline: list[float], candidate: list[float]) -> None:
    result = Judge().compare("latency_ms", baseline, candidate)

    assert result.verdict is Verdict.NODATA
    assert "at least 20" in result.explanation
    assert result.interval is None


def test_too_few_samples_to_rule_out_a_regression_is_inconclusive(
    rng: np.random.Generator,
) -> None:
    baseline = rng.lognormal(np.log(100.0), 0.5, 25)
    candidate = rng.lognormal(np.log(100.0), 0.5, 25)

    result = Judge().compare("latency_ms", baseline, candidate)

    assert result.verdict is Verdict.INCONCLUSIVE
    assert "cannot rule out" in result.explanation


def test_kpi_missing_on_one_side_is_nodata_not_dropped(rng: np.random.Generator) -> None:
    same = rng.normal(10.0, 1.0, 100)

    results = Judge().compare_all({"cpu_percent": same, "latency_ms": same}, {"cpu_percent": same})

    assert [(r.kpi, r.verdict) for r in results] == [
        ("cpu_percent", Verdict.NEUTRAL),
        ("latency_ms", Verdict.NODATA),
    ]


def test_judgement_is_reproducible(rng: np.random.Generator) -> None:
    baseline = rng.normal(100.0, 10.0, 300)
    candidate = rng.normal(103.0, 10.0, 300)
    judge = Judge(JudgeSettings(seed=7))

    first = judge.compare("latency_ms", baseline, candidate)
    second = judge.compare("latency_ms", baseline, candidate)

    assert first == second


def test_large_samples_are_judged_with_the_m_out_of_n_bootstrap(
    rng: np.random.Generator,
) -> None:
    baseline = rng.lognormal(np.log(20.0), 0.3, 200_000)
    candidate = rng.lognormal(np.log(20.0 * 1.08), 0.3, 200_000)

    result = Judge().compare("latency_ms", baseline, candidate)

    assert result.verdict is Verdict.NEGATIVE
    assert result.interval is not None
    # About +-0.2% at this size; a bootstrap of 2,000 draws unscaled would be ten times wider.
    assert result.interval.high - result.interval.low < 0.01
    assert result.interval.low < 0.08 < result.interval.high


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="tail_quantile"):
        JudgeSettings(tail_quantile=0.3)
    with pytest.raises(ValueError, match="min_samples"):
        JudgeSettings(min_samples=1)
