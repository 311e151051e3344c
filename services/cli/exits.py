"""Exit codes of the ``cfgclone`` commands, as scripts rely on them (see ``cfgclone --help``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.rpc import code_pb2

from cfgclone.v1 import (
    common_pb2,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_REJECTED = 4
EXIT_ROLLED_BACK = 5
EXIT_HELD = 6

EXIT_CODES = {
    EXIT_OK: "success: applied and kept (a dry run: predicted and kept)",
    EXIT_FAILED: "failed: a call refused, or a change or operation failed or cancelled",
    EXIT_USAGE: "bad usage",
    EXIT_UNAVAILABLE: "a service unreachable",
    EXIT_REJECTED: "rejected: predicted to hurt, not applied",
    EXIT_ROLLED_BACK: "rolled back: applied, regressed, restored",
    EXIT_HELD: "held: waiting for an operator (cfgclone approve / abort)",
}

STATE_EXITS = {
    "CHANGE_STATE_FAILED": EXIT_FAILED,
    "CHANGE_STATE_ROLLED_BACK": EXIT_ROLLED_BACK,
    "CHANGE_STATE_REJECTED": EXIT_REJECTED,
    "CHANGE_STATE_HELD": EXIT_HELD,
}
SEVERITY = (EXIT_FAILED, EXIT_ROLLED_BACK, EXIT_REJECTED, EXIT_HELD)


def exit_code_for(states: Sequence[common_pb2.ChangeState.ValueType]) -> int:
    """The exit code of changes ending in ``states``: the most serious outcome decides."""
    codes = {STATE_EXITS.get(common_pb2.ChangeState.Name(s), EXIT_OK) for s in states}
    return next((code for code in SEVERITY if code in codes), EXIT_OK)


def operation_exit_code(operation: Any) -> int:
    """The exit code of a finished clone operation (see the module docstring)."""
    from cfgclone.orchestrator.operations import clone_result_of

    if (
        operation.state == common_pb2.OPERATION_STATE_FAILED
        and operation.error.code == code_pb2.UNAVAILABLE
    ):
        return EXIT_UNAVAILABLE
    result = clone_result_of(operation)
    code = exit_code_for([t.state for t in result.targets]) if result is not None else EXIT_OK
    if code == EXIT_OK and operation.state != common_pb2.OPERATION_STATE_SUCCEEDED:
        return EXIT_FAILED
    return code
