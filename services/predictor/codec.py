"""Translation between the predictor's protobuf messages and its domain objects."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from google.protobuf import duration_pb2, struct_pb2

from cfgclone.adaptation import codec as adaptation_codec
from cfgclone.common.errors import InvalidArgument
from cfgclone.common.limits import MAX_POLICY_WINDOW_SECONDS
from cfgclone.predictor.change import KpiDirection
from cfgclone.predictor.policy import KpiThreshold, Policy, PolicyAction, PolicyVerdict
from cfgclone.predictor.states import ChangeState, PredictionMode, RollbackReason
from cfgclone.predictor.verdict import KpiResult, Verdict
from cfgclone.v1 import common_pb2

ConfigValue = str | int | float | bool
Content = dict[str, ConfigValue]

VERDICTS: Mapping[Verdict, common_pb2.Verdict.ValueType] = {
    Verdict.POSITIVE: common_pb2.VERDICT_POSITIVE,
    Verdict.NEUTRAL: common_pb2.VERDICT_NEUTRAL,
    Verdict.NEGATIVE: common_pb2.VERDICT_NEGATIVE,
    Verdict.INCONCLUSIVE: common_pb2.VERDICT_INCONCLUSIVE,
    Verdict.NODATA: common_pb2.VERDICT_NODATA,
}
DIRECTIONS: Mapping[KpiDirection, common_pb2.KpiDirection.ValueType] = {
    KpiDirection.LOWER_IS_BETTER: common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
    KpiDirection.HIGHER_IS_BETTER: common_pb2.KPI_DIRECTION_HIGHER_IS_BETTER,
}
ACTIONS: Mapping[PolicyAction, common_pb2.PolicyAction.ValueType] = {
    PolicyAction.HOLD: common_pb2.POLICY_ACTION_HOLD,
    PolicyAction.PROCEED: common_pb2.POLICY_ACTION_PROCEED,
    PolicyAction.REJECT: common_pb2.POLICY_ACTION_REJECT,
}


def content_from_struct(struct: struct_pb2.Struct, field: str) -> Content:
    """Parameter values of a Struct (whole numbers as ``int``); INVALID_ARGUMENT for nested
    values, nulls and numbers that are not finite."""
    content: Content = {}
    for key, value in adaptation_codec.content_from_struct(struct).items():
        if isinstance(value, str | int | float) and (
            not isinstance(value, float) or math.isfinite(value)
        ):
            content[key] = value
        else:
            raise InvalidArgument.for_field(
                f"{field}.{key}", "must be a string, number or boolean (not a list, map or null)"
            )
    return content


content_to_struct = adaptation_codec.content_to_struct


def content_hash(content: Mapping[str, ConfigValue]) -> str:
    """SHA-256 of the canonical JSON of ``content``."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def kpi_prediction(result: KpiResult, verdict: Verdict | None = None) -> common_pb2.KpiPrediction:
    """A KPI result as a message; ``verdict`` is the policy's reading when it differs."""
    message = common_pb2.KpiPrediction(
        kpi=result.kpi,
        direction=DIRECTIONS[result.direction],
        verdict=VERDICTS[verdict or result.verdict],
        explanation=result.explanation,
        evidence_count=result.evidence_count,
    )
    if result.relative_change is not None and math.isfinite(result.relative_change):
        message.relative_change = result.relative_change
        message.estimate.relative_change = result.relative_change
        if result.interval is not None:
            message.estimate.interval_low = result.interval.low
            message.estimate.interval_high = result.interval.high
            message.estimate.confidence = result.interval.confidence
    if result.interval is not None:
        message.interval_low = result.interval.low
        message.interval_high = result.interval.high
        message.confidence = result.interval.confidence
    if result.p_value is not None and math.isfinite(result.p_value):
        message.p_value = result.p_value
    return message


def prediction_message(
    results: Sequence[KpiResult],
    reading: PolicyVerdict,
    *,
    mode: PredictionMode,
    policy_name: str,
    model_version: str = "",
    note: str = "",
) -> common_pb2.Prediction:
    """The predictor's answer: the policy's verdict with the per-KPI evidence."""
    verdicts = {kpi.kpi: kpi for kpi in reading.kpis}
    kpis = []
    for result in results:
        read = verdicts.get(result.kpi)
        message = kpi_prediction(result, read.verdict if read else None)
        if read is not None and read.explanation != result.explanation:
            message.explanation = f"{read.explanation} ({result.explanation})"
        kpis.append(message)
    explanation = f"{reading.explanation}; {note}" if note else reading.explanation
    return common_pb2.Prediction(
        verdict=VERDICTS[reading.verdict],
        kpis=kpis,
        mode=mode_to_proto(mode),
        model_version=model_version,
        explanation=explanation,
        policy=policy_name,
    )


def verdict_of(message: common_pb2.Prediction) -> Verdict:
    for verdict, number in VERDICTS.items():
        if number == message.verdict:
            return verdict
    return Verdict.INCONCLUSIVE


@dataclass(frozen=True)
class VerificationRules:
    """The parts of a policy that shape live verification."""

    delay: timedelta = timedelta(seconds=60)
    window: timedelta = timedelta(minutes=10)
    min_samples: int = 10


@dataclass(frozen=True)
class StoredPolicy:
    """A policy revision: the domain policy, its verification rules and its message."""

    policy: Policy
    rules: VerificationRules
    message: common_pb2.Policy


def _duration(value: duration_pb2.Duration, default: timedelta) -> timedelta:
    seconds = value.seconds + value.nanos / 1e9
    return timedelta(seconds=seconds) if seconds > 0 else default


def _action(number: int, field: str) -> PolicyAction:
    if number == common_pb2.POLICY_ACTION_UNSPECIFIED:
        return PolicyAction.HOLD
    for action, value in ACTIONS.items():
        if value == number:
            return action
    raise InvalidArgument.for_field(field, f"unknown action {number}")


def _threshold(message: common_pb2.KpiThreshold, index: int) -> KpiThreshold:
    field = f"policy.thresholds[{index}]"
    if not message.kpi:
        raise InvalidArgument.for_field(f"{field}.kpi", "is required")
    direction = next((d for d, v in DIRECTIONS.items() if v == message.direction), None)
    if direction is None:
        raise InvalidArgument.for_field(
            f"{field}.direction", "must be LOWER_IS_BETTER or HIGHER_IS_BETTER"
        )
    for name in ("max_relative_change", "max_absolute_change"):
        value = getattr(message, name)
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument.for_field(
                f"{field}.{name}", f"must be a finite number, 0 or more (got {value})"
            )
    confidence = message.confidence if message.HasField("confidence") else None
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise InvalidArgument.for_field(f"{field}.confidence", "must be in (0, 1)")
    return KpiThreshold(
        kpi=message.kpi,
        direction=direction,
        max_relative_change=message.max_relative_change,
        max_absolute_change=message.max_absolute_change,
        critical=message.critical,
        confidence=confidence,
    )


def policy_from_message(message: common_pb2.Policy, name: str) -> StoredPolicy:
    """Validate a policy message; INVALID_ARGUMENT naming the field at fault."""
    thresholds = tuple(_threshold(t, i) for i, t in enumerate(message.thresholds))
    confidence = message.min_confidence or 0.9
    if not 0.0 < confidence < 1.0:
        raise InvalidArgument.for_field("policy.min_confidence", "must be in (0, 1)")
    if message.min_samples < 0:
        raise InvalidArgument.for_field("policy.min_samples", "must not be negative")
    policy = Policy(
        thresholds=thresholds,
        min_confidence=confidence,
        on_inconclusive=_action(message.on_inconclusive, "policy.on_inconclusive"),
        on_nodata=_action(message.on_nodata, "policy.on_nodata"),
        name=name,
    )
    defaults = VerificationRules()
    rules = VerificationRules(
        delay=(
            _duration(message.verification_delay, defaults.delay)
            if message.HasField("verification_delay")
            else defaults.delay
        ),
        window=_duration(message.verification_window, defaults.window),
        min_samples=message.min_samples or defaults.min_samples,
    )
    _check_window(message, "verification_delay", allow_zero=True)
    _check_window(message, "verification_window", allow_zero=False)
    return StoredPolicy(policy, rules, message)


def _check_window(
    message: common_pb2.Policy,
    name: Literal["verification_delay", "verification_window"],
    *,
    allow_zero: bool,
) -> None:
    """A verification delay or window: unset, or a sensible length (0 only for the delay)."""
    if not message.HasField(name):
        return
    duration = getattr(message, name)
    seconds = duration.seconds + duration.nanos / 1e9
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise InvalidArgument.for_field(
            f"policy.{name}",
            f"must be {'0 or more' if allow_zero else 'positive'} (got {seconds:g} s)",
        )
    if seconds > MAX_POLICY_WINDOW_SECONDS:
        raise InvalidArgument.for_field(
            f"policy.{name}", f"must be at most {MAX_POLICY_WINDOW_SECONDS} s (got {seconds:g} s)"
        )


def policy_to_message(policy: Policy, rules: VerificationRules, name: str) -> common_pb2.Policy:
    """The message of a domain policy (used for the built-in default)."""
    message = common_pb2.Policy(
        name=name,
        thresholds=[
            common_pb2.KpiThreshold(
                kpi=t.kpi,
                direction=DIRECTIONS[t.direction],
                max_relative_change=t.max_relative_change,
                max_absolute_change=t.max_absolute_change,
                critical=t.critical,
                confidence=t.confidence,
            )
            for t in policy.thresholds
        ],
        min_confidence=policy.min_confidence,
        on_inconclusive=ACTIONS[policy.on_inconclusive],
        on_nodata=ACTIONS[policy.on_nodata],
        min_samples=rules.min_samples,
    )
    message.verification_delay.FromTimedelta(rules.delay)
    message.verification_window.FromTimedelta(rules.window)
    return message


def mode_to_proto(mode: PredictionMode) -> common_pb2.PredictionMode.ValueType:
    return common_pb2.PredictionMode.Value(f"PREDICTION_MODE_{mode.name}")


def mode_from_proto(mode: int, field: str = "mode") -> PredictionMode:
    """A request's prediction mode; unset means learned. Unknown: INVALID_ARGUMENT."""
    if mode not in common_pb2.PredictionMode.values():
        raise InvalidArgument.for_field(field, f"unknown prediction mode {mode}")
    return PredictionMode(mode) or PredictionMode.LEARNED


def state_to_proto(state: int) -> common_pb2.ChangeState.ValueType:
    return common_pb2.ChangeState.Value(f"CHANGE_STATE_{ChangeState(state).name}")


def reason_to_proto(reason: int) -> common_pb2.RollbackReason.ValueType:
    return common_pb2.RollbackReason.Value(f"ROLLBACK_REASON_{RollbackReason(reason).name}")
