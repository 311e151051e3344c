"""Change states and events as the clone workflow reports them: names and one-line texts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeAlias

from cfgclone.v1 import common_pb2

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    ChangeState: TypeAlias = common_pb2.ChangeState.ValueType

FINAL_STATES: frozenset[ChangeState] = frozenset(
    {
        common_pb2.CHANGE_STATE_KEPT,
        common_pb2.CHANGE_STATE_REJECTED,
        common_pb2.CHANGE_STATE_ROLLED_BACK,
        common_pb2.CHANGE_STATE_FAILED,
    }
)
"""States a change never leaves."""

FAILURE_STATES: frozenset[ChangeState] = frozenset(
    {
        common_pb2.CHANGE_STATE_REJECTED,
        common_pb2.CHANGE_STATE_ROLLED_BACK,
        common_pb2.CHANGE_STATE_FAILED,
    }
)
"""Outcomes that count against a wave's failure budget."""


def state_name(state: ChangeState) -> str:
    """``KEPT`` for ``CHANGE_STATE_KEPT``."""
    return common_pb2.ChangeState.Name(state).removeprefix("CHANGE_STATE_")


def verdict_name(verdict: common_pb2.Verdict.ValueType) -> str:
    return common_pb2.Verdict.Name(verdict).removeprefix("VERDICT_")


def change_event(change: common_pb2.Change) -> tuple[str, str]:
    """The step and the message of a change's state, with its evidence."""
    prediction = change.prediction
    predicted = (
        f"predicted {verdict_name(prediction.verdict)}: {prediction.explanation}"
        if prediction.verdict
        else "no prediction"
    )
    state = change.state
    if state == common_pb2.CHANGE_STATE_PREDICTING:
        return "predict", "predicting the impact"
    if state == common_pb2.CHANGE_STATE_HELD:
        return "hold", f"held for an operator ({predicted}): approve or abort {change.name}"
    if state == common_pb2.CHANGE_STATE_APPLYING:
        return "apply", f"{predicted}; applying {change.to_configuration}"
    if state == common_pb2.CHANGE_STATE_VERIFYING:
        return "verify", f"{predicted}; applied, verifying against live metrics"
    if state == common_pb2.CHANGE_STATE_KEPT:
        if change.dry_run:
            return "keep", f"dry run, nothing applied: {predicted}"
        verification = change.verification
        verified = (
            f"verified {verdict_name(verification.verdict)}: {verification.explanation}"
            if verification.verdict
            else change.state_reason or "kept"
        )
        return "keep", f"kept: {verified}"
    if state == common_pb2.CHANGE_STATE_REJECTED:
        return "reject", f"not applied: {change.state_reason or predicted}"
    if state == common_pb2.CHANGE_STATE_ROLLED_BACK:
        return "rollback", f"rolled back: {change.state_reason or 'verification failed'}"
    if state == common_pb2.CHANGE_STATE_FAILED:
        return "fail", f"failed: {change.state_reason or 'see the predictor log'}"
    return "propose", f"{change.name} is {state_name(state)}"


def explanation_of(change: common_pb2.Change) -> str:
    if change.state_reason:
        return change.state_reason
    return change_event(change)[1]
