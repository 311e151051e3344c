"""Errors of the adaptation engine.

The servicer turns them into statuses in one place: `InvalidConfiguration` and
`InvalidSchema` are the caller's fault (INVALID_ARGUMENT, one field violation per
`Violation`), `NoSuitableVersion` means the target cannot run any catalogued version
(FAILED_PRECONDITION), `AdaptationFailed` means a user-supplied adaptation script did
not produce a usable configuration. Each also derives from the built-in exception a
plain Python caller would expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .versions import Rejection

__all__ = [
    "AdaptationError",
    "AdaptationFailed",
    "InvalidConfiguration",
    "InvalidSchema",
    "NoSuitableVersion",
    "ScriptFailure",
    "Violation",
]


@dataclass(frozen=True)
class Violation:
    """What is wrong with one parameter, said so that the reader knows what to fix."""

    parameter: str
    """The parameter's key."""
    description: str

    def __str__(self) -> str:
        return f"{self.parameter}: {self.description}"


class AdaptationError(Exception):
    """Base of every error the adaptation engine raises on purpose."""


def _listed(violations: Sequence[Violation]) -> str:
    return "; ".join(str(violation) for violation in violations)


class InvalidConfiguration(AdaptationError, ValueError):
    """A configuration's content breaks its schema; `violations` names every bad parameter."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        count = len(self.violations)
        noun = "parameter" if count == 1 else "parameters"
        super().__init__(f"{count} invalid {noun}: {_listed(self.violations)}")


class InvalidSchema(AdaptationError, ValueError):
    """A parameter schema contradicts itself; `violations` names every bad declaration."""

    def __init__(self, kind: str, violations: Sequence[Violation]) -> None:
        self.kind = kind
        self.violations = tuple(violations)
        super().__init__(f"the schema of {kind!r} is invalid: {_listed(self.violations)}")


class NoSuitableVersion(AdaptationError, LookupError):
    """No catalogue entry fits the target; `rejections` says why for each entry."""

    def __init__(self, message: str, rejections: Sequence[Rejection]) -> None:
        self.rejections = tuple(rejections)
        super().__init__(message)


class ScriptFailure(StrEnum):
    """How an adaptation script failed; the values suit an `ErrorInfo.reason`."""

    NOT_STARTED = "ADAPTATION_SCRIPT_NOT_STARTED"
    """The executable does not exist or may not be run."""
    TIMED_OUT = "ADAPTATION_SCRIPT_TIMED_OUT"
    """It did not finish within its time limit and was killed."""
    EXIT_STATUS = "ADAPTATION_SCRIPT_EXIT_STATUS"
    """It exited with a status other than 0, or was killed by a signal."""
    OUTPUT_TOO_LARGE = "ADAPTATION_SCRIPT_OUTPUT_TOO_LARGE"
    """It printed more than the output limit and was killed."""
    INVALID_JSON = "ADAPTATION_SCRIPT_INVALID_JSON"
    """Its output is not a JSON object."""
    INVALID_CONFIGURATION = "ADAPTATION_SCRIPT_INVALID_CONFIGURATION"
    """Its output is JSON but breaks the configuration's schema."""


class AdaptationFailed(AdaptationError, RuntimeError):
    """An adaptation script did not produce a usable configuration.

    The message says why and ends with the tail of the script's standard error, which is
    where a script explains itself.
    """

    def __init__(
        self,
        failure: ScriptFailure,
        script: str,
        detail: str,
        *,
        stderr_tail: str = "",
        violations: Sequence[Violation] = (),
    ) -> None:
        self.failure = failure
        self.script = script
        self.stderr_tail = stderr_tail
        self.violations = tuple(violations)
        message = f"adaptation script {script} {detail}"
        if stderr_tail.strip():
            message += f"; its stderr ends with: {stderr_tail.strip()}"
        super().__init__(message)
