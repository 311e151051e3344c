"""Domain errors and their one mapping to gRPC status codes.

Domain code raises these; the server bootstrap installs an interceptor that turns
them into a status with a ``google.rpc.ErrorInfo`` detail (and a
``google.rpc.BadRequest`` for field violations), so servicers never build
statuses by hand and clients branch on the ``reason``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "cfgclone.dev"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (``batch.series[0].metric``) and what is wrong."""

    field: str
    description: str


class CfgcloneError(Exception):
    """Base of every error the services report to clients.

    ``reason`` is an UPPER_SNAKE identifier clients can branch on; ``metadata``
    carries machine-readable context (a system name, a change name).
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(CfgcloneError):
    """The request breaks the contract; nothing was changed."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        violations: Sequence[FieldViolation] = (),
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = tuple(violations)

    @classmethod
    def for_field(cls, path: str, description: str, **kwargs: object) -> InvalidArgument:
        """An error about a single field, with the message built from it."""
        return cls(
            f"{path}: {description}",
            violations=[FieldViolation(path, description)],
            **kwargs,  # type: ignore[arg-type]
        )


class NotFound(CfgcloneError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(CfgcloneError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(CfgcloneError):
    """The request is well formed but the system is not in a state to serve it."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class PermissionDenied(CfgcloneError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(CfgcloneError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class Unavailable(CfgcloneError):
    """A dependency (the database, another service) cannot be reached; retry later."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(CfgcloneError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class ResourceExhausted(CfgcloneError):
    """A bounded resource (concurrent runs, bytes in flight) is in full use; retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


def system_not_found(system_id: str) -> NotFound:
    """The one answer for a system no agent or user has registered."""
    return NotFound(
        f"systems/{system_id} is not registered; register it with the collector first",
        reason="SYSTEM_NOT_FOUND",
        metadata={"system": f"systems/{system_id}"},
    )


def to_status(error: CfgcloneError) -> grpc.Status:
    """The gRPC status for a domain error, with ErrorInfo and BadRequest details."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    details = [_pack(info)]
    if isinstance(error, InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        details.append(_pack(bad_request))
    status = status_pb2.Status(
        code=_code_number(error.code), message=error.message, details=details
    )
    return rpc_status.to_status(status)


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _code_number(code: grpc.StatusCode) -> int:
    number = code.value[0]
    assert isinstance(number, int)
    return number


def error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a status read back with ``rpc_status.from_call``."""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def field_violations(
    status: status_pb2.Status,
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The field violations of a status, empty when it has none."""
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return list(bad.field_violations)
    return []


__all__ = [
    "ERROR_DOMAIN",
    "AlreadyExists",
    "CfgcloneError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "error_info",
    "field_violations",
    "to_status",
]
