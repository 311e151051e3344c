"""The policy: per-KPI intervals against thresholds, then one verdict and an action."""

from __future__ import annotations

import numpy as np
import pytest

from cfgclone.predictor.change import KpiDirection
from cfgclone.predictor.judge import Judge
from cfgclone.predictor.policy import (
    DEFAULT_POLICY,
    KpiThreshold,
    Policy,
    PolicyAction,
)
from cfgclone.predictor.verdict import Interval, KpiResult, Verdict

LOWER = KpiDirection.LOWER_IS_BETTER
HIGHER = KpiDirection.HIGHER_IS_BETTER


def result(
    kpi: str,
    low: float,
    high: float,
    *,
    direction: KpiDirection = LOWER,
    confidence: float = 0.95,
    level: float | None = None,
    tail: tuple[float, float] | None = None,
) -> KpiResult:
    """A result whose interval is [low, high] and whose own verdict is deliberately NEUTRAL,
    so that every verdict asserted below comes from the policy's reading."""
    return KpiResult(
        kpi=kpi,
        direction=direction,
        verdict=Verdict.NEUTRAL,
        explanation=f"{kpi}: test",
        relative_change=(low + high) / 2,
        interval=Interval(low, high, confidence),
        tail_quantile=0.95 if tail else None,
        tail_interval=Interval(tail[0], tail[1], confidence) if tail else None,
        baseline_level=level,
    )


POLICY = Policy(
    thresholds=(
        KpiThreshold("latency_ms", LOWER, 0.10, critical=True),
        KpiThreshold("cpu_percent", LOWER, 0.10),
        KpiThreshold("throughput_tps", HIGHER, 0.10, critical=True),
    ),
    on_inconclusive=PolicyAction.HOLD,
    on_nodata=PolicyAction.REJECT,
)


def test_critical_kpi_negative_makes_the_whole_verdict_negative() -> None:
    verdict = POLICY.verdict(
        [
            result("latency_ms", 0.15, 0.25),
            result("cpu_percent", -0.30, -0.20),  # much better does not buy it back
            result("throughput_tps", -0.01, 0.01, direction=HIGHER),
        ]
    )

    assert verdict.verdict is Verdict.NEGATIVE
    assert verdict.action is PolicyAction.REJECT
    assert "latency_ms" in verdict.explanation
    readings = {k.kpi: k.verdict for k in verdict.kpis}
    assert readings["cpu_percent"] is Verdict.POSITIVE


def test_non_critical_negative_is_held_for_an_operator() -> None:
    verdict = POLICY.verdict(
        [
            result("latency_ms", -0.02, 0.02),
            result("cpu_percent", 0.15, 0.25),
            result("throughput_tps", -0.01, 0.01, direction=HIGHER),
        ]
    )

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.action is PolicyAction.HOLD
    assert "non-critical" in verdict.explanation
    assert "cpu_percent" in verdict.explanation


def test_interval_straddling_the_threshold_is_inconclusive() -> None:
    verdict = POLICY.verdict(
        [
            result("latency_ms", 0.04, 0.16),  # point estimate +10%: can't promise either way
            result("cpu_percent", 0.0, 0.01),
            result("throughput_tps", 0.0, 0.01, direction=HIGHER),
        ]
    )

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.action is PolicyAction.HOLD
    (latency,) = [k for k in verdict.kpis if k.kpi == "latency_ms"]
    assert latency.verdict is Verdict.INCONCLUSIVE
    assert "straddles" in latency.explanation


def test_within_thresholds_is_neutral_and_better_is_positive() -> None:
    neutral = POLICY.verdict(
        [
            result("latency_ms", -0.05, 0.08),
            result("cpu_percent", -0.02, 0.02),
            result("throughput_tps", -0.08, 0.05, direction=HIGHER),
        ]
    )
    positive = POLICY.verdict(
        [
            result("latency_ms", -0.30, -0.15),
            result("cpu_percent", -0.02, 0.02),
            result("throughput_tps", 0.0, 0.05, direction=HIGHER),
        ]
    )

    assert (neutral.verdict, neutral.action) == (Verdict.NEUTRAL, PolicyAction.PROCEED)
    assert (positive.verdict, positive.action) == (Verdict.POSITIVE, PolicyAction.PROCEED)


def test_throughput_down_is_bad_by_the_thresholds_direction() -> None:
    verdict = POLICY.verdict(
        [
            result("latency_ms", -0.01, 0.01),
            result("cpu_percent", -0.01, 0.01),
            # The result claims the wrong direction; the policy's threshold decides.
            result("throughput_tps", -0.25, -0.15, direction=LOWER),
        ]
    )

    assert verdict.verdict is Verdict.NEGATIVE


def test_missing_watched_kpi_and_nodata_follow_the_nodata_action() -> None:
    nodata = KpiResult("cpu_percent", LOWER, Verdict.NODATA, "cpu_percent: no samples")

    verdict = POLICY.verdict([result("latency_ms", -0.01, 0.01), nodata])

    assert verdict.verdict is Verdict.NODATA
    assert verdict.action is PolicyAction.REJECT
    readings = {k.kpi: k.verdict for k in verdict.kpis}
    assert readings == {
        "latency_ms": Verdict.NEUTRAL,
        "cpu_percent": Verdict.NODATA,
        "throughput_tps": Verdict.NODATA,
    }


def test_interval_below_the_minimum_confidence_is_not_decisive() -> None:
    policy = Policy(thresholds=(KpiThreshold("latency_ms", LOWER, 0.10, critical=True),))

    verdict = policy.verdict([result("latency_ms", 0.3, 0.4, confidence=0.5)])

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert "confidence" in verdict.explanation


def test_absolute_threshold_tolerates_a_large_relative_change_of_a_tiny_level() -> None:
    policy = Policy(
        thresholds=(
            KpiThreshold("error_rate", LOWER, 0.10, max_absolute_change=0.001, critical=True),
        )
    )
    # 0.01% -> 0.02%: doubled, but by 0.0001 against a tolerated 0.001.
    tiny = result("error_rate", 0.8, 1.2, level=0.0001)
    large = result("error_rate", 0.8, 1.2, level=0.01)

    assert policy.verdict([tiny]).verdict is Verdict.NEUTRAL
    assert policy.verdict([large]).verdict is Verdict.NEGATIVE


def test_tail_regression_is_negative_even_when_the_median_holds() -> None:
    verdict = POLICY.verdict(
        [
            result("latency_ms", -0.02, 0.03, tail=(0.15, 0.30)),
            result("cpu_percent", -0.01, 0.01),
            result("throughput_tps", -0.01, 0.01, direction=HIGHER),
        ]
    )

    assert verdict.verdict is Verdict.NEGATIVE
    assert "tail" in verdict.explanation


def test_source_without_interval_keeps_its_own_verdict() -> None:
    guess = KpiResult("latency_ms", LOWER, Verdict.INCONCLUSIVE, "latency_ms: 2 examples")

    verdict = POLICY.verdict(
        [
            guess,
            result("cpu_percent", -0.01, 0.01),
            result("throughput_tps", -0.01, 0.01, direction=HIGHER),
        ]
    )

    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert "2 examples" in verdict.explanation


def test_default_policy_matches_kpis_by_pattern() -> None:
    latency = DEFAULT_POLICY.threshold_for("http_latency_p95_ms")
    tps = DEFAULT_POLICY.threshold_for("pgbench_tps")
    cpu = DEFAULT_POLICY.threshold_for("cpu_percent")

    assert latency is not None
    assert latency.critical
    assert latency.direction is LOWER
    assert tps is not None
    assert tps.critical
    assert tps.direction is HIGHER
    assert cpu is not None
    assert not cpu.critical
    assert cpu.max_relative_change == pytest.approx(0.10)
    assert DEFAULT_POLICY.threshold_for("disk_temperature") is None


def test_exact_threshold_wins_over_a_pattern() -> None:
    policy = Policy(
        thresholds=(
            KpiThreshold("*latency*", LOWER, 0.10),
            KpiThreshold("login_latency_ms", LOWER, 0.02, critical=True),
        )
    )

    chosen = policy.threshold_for("login_latency_ms")

    assert chosen is not None
    assert chosen.max_relative_change == 0.02


def test_judged_variance_increase_is_refused_by_the_default_policy() -> None:
    rng = np.random.default_rng(5)
    baseline = rng.normal(40.0, 2.0, 300)
    candidate = rng.normal(40.0, 8.0, 300)  # same median, four times the spread
    judge = Judge()

    verdict = DEFAULT_POLICY.verdict(
        [
            judge.compare("http_latency_ms", baseline, candidate),
            judge.compare("cpu_percent", baseline, rng.normal(40.0, 2.0, 300)),
        ]
    )

    assert verdict.verdict is Verdict.NEGATIVE
    assert verdict.action is PolicyAction.REJECT


def test_no_results_at_all_is_nodata() -> None:
    verdict = Policy().verdict([])

    assert verdict.verdict is Verdict.NODATA
    assert verdict.action is PolicyAction.HOLD
