"""cfgclone predictor: predicts a change's effect on KPIs, judges it, and guards its apply.

The domain (no gRPC, no database) is:

- :mod:`~cfgclone.predictor.change`: configuration deltas and KPI directions;
- :mod:`~cfgclone.predictor.judge`: baseline against candidate samples, per KPI;
- :mod:`~cfgclone.predictor.policy`: per-KPI results to one verdict and an action;
- :mod:`~cfgclone.predictor.verification`: a change's window of live samples judged
  against the same time on earlier days and the hours before it;
- :mod:`~cfgclone.predictor.estimator`: the one learner, a stacked regression with CV+
  intervals, used by both learned paths below;
- :mod:`~cfgclone.predictor.learned`: predictions learned from the history of changes;
- :mod:`~cfgclone.predictor.configperf`: performance of configurable software learned
  from measured configurations.

Names are exported lazily: importing a subpackage (``cfgclone.predictor.shadow``) runs
this file, and loading scipy and scikit-learn for it would add more than a second to
every process that only wants an applier.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cfgclone.predictor.change import (
        DEFAULT_DIRECTIONS,
        Configuration,
        ConfigurationDelta,
        DeltaKind,
        DirectionTable,
        KpiDirection,
        ParameterDelta,
        ParameterValue,
        UnknownKpiDirection,
        numeric_log_ratio,
    )
    from cfgclone.predictor.configperf import (
        ChangeAssessment,
        LearnerSettings,
        MeasuredSystem,
        PerformanceLearner,
        PerformanceModel,
        PerformancePrediction,
        load_measurements,
        mean_relative_error,
        measurement_files,
    )
    from cfgclone.predictor.estimator import Estimator, EstimatorSettings, FittedEstimator
    from cfgclone.predictor.judge import Judge, JudgeSettings
    from cfgclone.predictor.learned import (
        ChangeRecord,
        HistoryLearner,
        HistoryModel,
        HistorySettings,
        LearnedPrediction,
    )
    from cfgclone.predictor.policy import (
        DEFAULT_POLICY,
        KpiThreshold,
        KpiVerdict,
        Policy,
        PolicyAction,
        PolicyVerdict,
    )
    from cfgclone.predictor.verdict import Interval, KpiResult, Verdict, classify_interval
    from cfgclone.predictor.verification import LiveVerifier, TimedSamples, VerifierSettings

_EXPORTS = {
    "cfgclone.predictor.change": (
        "DEFAULT_DIRECTIONS",
        "Configuration",
        "ConfigurationDelta",
        "DeltaKind",
        "DirectionTable",
        "KpiDirection",
        "ParameterDelta",
        "ParameterValue",
        "UnknownKpiDirection",
        "numeric_log_ratio",
    ),
    "cfgclone.predictor.configperf": (
        "ChangeAssessment",
        "LearnerSettings",
        "MeasuredSystem",
        "PerformanceLearner",
        "PerformanceModel",
        "PerformancePrediction",
        "load_measurements",
        "mean_relative_error",
        "measurement_files",
    ),
    "cfgclone.predictor.estimator": ("Estimator", "EstimatorSettings", "FittedEstimator"),
    "cfgclone.predictor.judge": ("Judge", "JudgeSettings"),
    "cfgclone.predictor.learned": (
        "ChangeRecord",
        "HistoryLearner",
        "HistoryModel",
        "HistorySettings",
        "LearnedPrediction",
    ),
    "cfgclone.predictor.policy": (
        "DEFAULT_POLICY",
        "KpiThreshold",
        "KpiVerdict",
        "Policy",
        "PolicyAction",
        "PolicyVerdict",
    ),
    "cfgclone.predictor.verdict": ("Interval", "KpiResult", "Verdict", "classify_interval"),
    "cfgclone.predictor.verification": ("LiveVerifier", "TimedSamples", "VerifierSettings"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "DEFAULT_DIRECTIONS",
    "DEFAULT_POLICY",
    "ChangeAssessment",
    "ChangeRecord",
    "Configuration",
    "ConfigurationDelta",
    "DeltaKind",
    "DirectionTable",
    "Estimator",
    "EstimatorSettings",
    "FittedEstimator",
    "HistoryLearner",
    "HistoryModel",
    "HistorySettings",
    "Interval",
    "Judge",
    "JudgeSettings",
    "KpiDirection",
    "KpiResult",
    "KpiThreshold",
    "KpiVerdict",
    "LearnedPrediction",
    "LearnerSettings",
    "LiveVerifier",
    "MeasuredSystem",
    "ParameterDelta",
    "ParameterValue",
    "PerformanceLearner",
    "PerformanceModel",
    "PerformancePrediction",
    "Policy",
    "PolicyAction",
    "PolicyVerdict",
    "TimedSamples",
    "UnknownKpiDirection",
    "Verdict",
    "VerifierSettings",
    "classify_interval",
    "load_measurements",
    "mean_relative_error",
    "measurement_files",
    "numeric_log_ratio",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
