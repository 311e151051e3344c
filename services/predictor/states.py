"""The states of a change and the reasons of a rollback, as the predictor's domain names them.

The numbers are those stored in the ``changes`` and ``rollbacks`` tables and those of the
protobuf enums of the same names (``cfgclone.predictor.codec`` maps between them; a test
keeps the three in step), so a row written before this module existed reads the same.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "FINAL",
    "IN_FLIGHT",
    "ChangeState",
    "ConfigurationSource",
    "PredictionMode",
    "RollbackReason",
]


class ChangeState(IntEnum):
    """Where a change stands in the guarded apply."""

    UNSPECIFIED = 0
    PROPOSED = 1
    PREDICTING = 2
    HELD = 3
    APPLYING = 4
    VERIFYING = 5
    KEPT = 6
    REJECTED = 7
    ROLLED_BACK = 8
    FAILED = 9


IN_FLIGHT = frozenset(
    {
        ChangeState.PROPOSED,
        ChangeState.PREDICTING,
        ChangeState.HELD,
        ChangeState.APPLYING,
        ChangeState.VERIFYING,
    }
)
"""States of a change not yet finished: at most one per system."""
FINAL = frozenset(
    {ChangeState.KEPT, ChangeState.REJECTED, ChangeState.ROLLED_BACK, ChangeState.FAILED}
)


class RollbackReason(IntEnum):
    """Why a change was refused or undone."""

    UNSPECIFIED = 0
    PREDICTED_NEGATIVE = 1
    VERIFICATION_FAILED = 2
    APPLY_FAILED = 3
    ABORTED = 4
    INTERRUPTED = 5
    DEPENDENCY_UNAVAILABLE = 6


class PredictionMode(IntEnum):
    """How a change's effect is predicted."""

    UNSPECIFIED = 0
    LEARNED = 1
    SHADOW = 2
    BOTH = 3


class ConfigurationSource(IntEnum):
    """Where a configuration version came from."""

    UNSPECIFIED = 0
    MANUAL = 1
    CLONE = 2
    ADAPT = 3
    ROLLBACK = 4
    IMPORT = 5
