"""Choosing among candidate adaptations by what the policy cares about, harm first.

Each candidate's prediction carries a result per KPI, including KPIs the policy does
not watch (an error rate, memory, a throughput the team does not judge). Ranking by
all of them would let a gain where nobody looks buy a loss where the policy does: a
candidate that keeps too few workers saves memory and looks better in the sum. So a
candidate is read through the policy only: the KPIs its thresholds name, in the
directions they give. Candidates are ordered by

1. the verdict (a NEGATIVE one last),
2. whether the adaptation engine warned about it (a warned one wins only on a better
   verdict: a prediction cannot see everything),
3. the predicted harm: the summed relative worsening of the policy's KPIs,
4. the predicted benefit: the summed relative improvement of the policy's KPIs,
5. the engine's order of preference.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from cfgclone.v1 import common_pb2

__all__ = ["PolicyKpis", "PredictedEffect", "best_prediction", "predicted_effect"]

_VERDICT_RANK = {
    common_pb2.VERDICT_POSITIVE: 4,
    common_pb2.VERDICT_NEUTRAL: 3,
    common_pb2.VERDICT_INCONCLUSIVE: 2,
    common_pb2.VERDICT_NODATA: 1,
    common_pb2.VERDICT_UNSPECIFIED: 1,
    common_pb2.VERDICT_NEGATIVE: 0,
}


@dataclass(frozen=True)
class PolicyKpis:
    """The KPIs a policy watches: (name or ``*`` pattern, direction), exact names first."""

    thresholds: tuple[tuple[str, common_pb2.KpiDirection.ValueType], ...] = ()

    @classmethod
    def of(cls, policy: common_pb2.Policy) -> PolicyKpis:
        return cls(tuple((t.kpi, t.direction) for t in policy.thresholds))

    def direction(self, kpi: str) -> common_pb2.KpiDirection.ValueType | None:
        """The policy's direction for ``kpi``; None when the policy does not watch it."""
        for pattern, direction in self.thresholds:
            if not _is_pattern(pattern) and pattern == kpi:
                return direction
        for pattern, direction in self.thresholds:
            if _is_pattern(pattern) and fnmatch.fnmatchcase(kpi.lower(), pattern.lower()):
                return direction
        return None


def _is_pattern(kpi: str) -> bool:
    return any(c in kpi for c in "*?[")


@dataclass(frozen=True)
class PredictedEffect:
    """A prediction read through a policy."""

    harm: float
    """Summed relative worsening of the policy's KPIs (0.1: 10% worse)."""
    benefit: float
    """Summed relative improvement of the policy's KPIs."""
    kpis: tuple[str, ...]
    """The KPIs counted."""

    def __str__(self) -> str:
        counted = ", ".join(self.kpis) if self.kpis else "no KPI the policy watches"
        return f"harm {self.harm:+.1%}, benefit {self.benefit:+.1%} on {counted}"


def predicted_effect(prediction: common_pb2.Prediction, policy: PolicyKpis) -> PredictedEffect:
    """The harm and benefit ``prediction`` predicts on the KPIs ``policy`` watches."""
    harm = benefit = 0.0
    counted = []
    for kpi in prediction.kpis:
        direction = policy.direction(kpi.kpi)
        if direction == common_pb2.KPI_DIRECTION_LOWER_IS_BETTER:
            worsening = kpi.relative_change
        elif direction == common_pb2.KPI_DIRECTION_HIGHER_IS_BETTER:
            worsening = -kpi.relative_change
        else:
            continue
        counted.append(kpi.kpi)
        harm += max(0.0, worsening)
        benefit += max(0.0, -worsening)
    return PredictedEffect(harm, benefit, tuple(counted))


def best_prediction(
    predictions: Sequence[common_pb2.Prediction],
    policy: PolicyKpis,
    warned: Sequence[bool] = (),
) -> int:
    """Index of the best candidate by the order of the module docstring."""
    if not predictions:
        raise ValueError("no prediction to choose from")
    flags = list(warned) or [False] * len(predictions)
    effects = [predicted_effect(p, policy) for p in predictions]
    ranked = sorted(
        range(len(predictions)),
        key=lambda i: (
            -_VERDICT_RANK.get(predictions[i].verdict, 1),
            flags[i],
            effects[i].harm,
            -effects[i].benefit,
            i,
        ),
    )
    return ranked[0]
