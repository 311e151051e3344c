"""Candidate adaptations are ranked by the policy's KPIs and directions only, harm first."""

from __future__ import annotations

from cfgclone.orchestrator.ranking import PolicyKpis, best_prediction, predicted_effect
from cfgclone.v1 import common_pb2

LOWER = common_pb2.KPI_DIRECTION_LOWER_IS_BETTER
HIGHER = common_pb2.KPI_DIRECTION_HIGHER_IS_BETTER
NEUTRAL = common_pb2.VERDICT_NEUTRAL
INCONCLUSIVE = common_pb2.VERDICT_INCONCLUSIVE

POLICY = PolicyKpis.of(
    common_pb2.Policy(
        name="policies/latency-first",
        thresholds=[
            common_pb2.KpiThreshold(kpi="http.server.request.duration", direction=LOWER),
            common_pb2.KpiThreshold(kpi="*cpu*", direction=LOWER),
        ],
    )
)


def _prediction(verdict: int, **changes: tuple[int, float]) -> common_pb2.Prediction:
    return common_pb2.Prediction(
        verdict=verdict,  # type: ignore[arg-type]
        kpis=[
            common_pb2.KpiPrediction(
                kpi=kpi.replace("__", "."), direction=direction, relative_change=change
            )
            for kpi, (direction, change) in changes.items()
        ],
    )


def test_an_as_is_candidate_worse_on_the_policys_kpis_is_not_chosen() -> None:
    # Every candidate undecided. The as-is copy (4 workers kept on a 32-core target) saves
    # memory and errors and shows more throughput, none of which the policy watches, and
    # is 30% slower, which it does: summed over every KPI it would look best.
    proportional = _prediction(
        INCONCLUSIVE,
        http__server__request__duration=(LOWER, -0.12),
        system__cpu__utilization=(LOWER, 0.02),
        system__memory__utilization=(LOWER, 0.40),
        http__server__request__error__ratio=(LOWER, 0.10),
    )
    as_is = _prediction(
        INCONCLUSIVE,
        http__server__request__duration=(LOWER, 0.30),
        system__cpu__utilization=(LOWER, -0.05),
        system__memory__utilization=(LOWER, -0.60),
        http__server__request__error__ratio=(LOWER, -0.50),
        throughput=(HIGHER, 0.20),
    )
    everything = PolicyKpis(tuple((k.kpi, k.direction) for k in [*proportional.kpis, *as_is.kpis]))
    assert best_prediction([as_is, proportional], everything) == 0  # what a sum would pick
    assert best_prediction([as_is, proportional], POLICY) == 1
    effect = predicted_effect(as_is, POLICY)
    assert effect.kpis == ("http.server.request.duration", "system.cpu.utilization")
    assert round(effect.harm, 6) == 0.30


def test_harm_is_weighed_before_benefit() -> None:
    bold = _prediction(
        NEUTRAL,
        http__server__request__duration=(LOWER, -0.30),
        system__cpu__utilization=(LOWER, 0.08),
    )
    safe = _prediction(
        NEUTRAL,
        http__server__request__duration=(LOWER, -0.05),
        system__cpu__utilization=(LOWER, 0.0),
    )
    assert best_prediction([bold, safe], POLICY) == 1


def test_the_policys_direction_wins_over_the_predictions() -> None:
    # A policy that treats CPU use as good (a batch machine paid to be busy).
    busy = PolicyKpis((("system.cpu.utilization", HIGHER),))
    more_cpu = _prediction(NEUTRAL, system__cpu__utilization=(LOWER, 0.2))
    less_cpu = _prediction(NEUTRAL, system__cpu__utilization=(LOWER, -0.2))
    assert best_prediction([less_cpu, more_cpu], busy) == 1
    assert best_prediction([less_cpu, more_cpu], POLICY) == 0
