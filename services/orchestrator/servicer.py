"""OrchestratorService: translation between protobuf and clone operations.

``CloneConfiguration`` checks the request, resolves its targets and stores the
operation before it answers, so bad input (INVALID_ARGUMENT), an unknown system
or cohort (NOT_FOUND) and an unreachable service (UNAVAILABLE) are reported at
once and create nothing; the rollout itself runs in the background and is
followed with ``GetOperation`` or ``WatchOperation``.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from typing import Any

from cfgclone.common.auth import Role, require_role
from cfgclone.common.display import plural
from cfgclone.common.errors import InvalidArgument
from cfgclone.common.message_checks import quote
from cfgclone.common.requests import (
    page_request,
    parse_label_selector,
    policy_id_from_name,
    require,
    system_id_from_name,
)
from cfgclone.orchestrator.operations import (
    OperationRunner,
    OperationStore,
    current_traceparent,
    new_operation_id,
    operation_id_from_name,
)
from cfgclone.orchestrator.peers import Peers
from cfgclone.orchestrator.targets import resolve_targets
from cfgclone.v1 import common_pb2
from cfgclone.v1 import orchestrator_service_pb2 as pb
from cfgclone.v1 import orchestrator_service_pb2_grpc as pb_grpc

_COHORT_NAME = re.compile(r"cohorts/[^/]+")


def _check_targets(request: pb.CloneConfigurationRequest) -> None:
    given = [
        name
        for name, present in (
            ("targets", bool(request.targets)),
            ("target_selector", bool(request.target_selector)),
            ("target_cohort", bool(request.target_cohort)),
        )
        if present
    ]
    if not given:
        raise InvalidArgument.for_field(
            "targets", "name at least one target, or give target_selector or target_cohort"
        )
    if len(given) > 1:
        raise InvalidArgument.for_field(given[1], f"give only one of {', '.join(given)}")
    for index, target in enumerate(request.targets):
        field = f"targets[{index}]"
        system_id_from_name(target, field)
        if target == request.source:
            raise InvalidArgument.for_field(field, "is the source; a system is not its own target")
    if request.target_selector and not parse_label_selector(
        request.target_selector, "target_selector"
    ):
        raise InvalidArgument.for_field("target_selector", "needs at least one key=value term")
    if request.target_cohort and not _COHORT_NAME.fullmatch(request.target_cohort):
        raise InvalidArgument.for_field(
            "target_cohort", f"must be cohorts/{{cohort_id}} (got {quote(request.target_cohort)})"
        )


def _check_options(options: pb.CloneOptions) -> None:
    if options.wave_size < 0:
        raise InvalidArgument.for_field(
            "options.wave_size", f"must not be negative (got {options.wave_size})"
        )
    for field, value in (
        ("options.max_fail_fraction", options.max_fail_fraction),
        ("options.similarity_threshold", options.similarity_threshold),
    ):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise InvalidArgument.for_field(field, f"must be within 0-1 (got {value})")
    if options.policy:
        policy_id_from_name(options.policy, "options.policy")
    if options.mode not in common_pb2.PredictionMode.values():
        raise InvalidArgument.for_field("options.mode", f"unknown mode {options.mode}")


def check_clone_request(request: pb.CloneConfigurationRequest) -> None:
    """INVALID_ARGUMENT, naming the field, for a request that cannot be run."""
    require(request.source, "source")
    system_id_from_name(request.source, "source")
    _check_targets(request)
    _check_options(request.options)


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    """Starts clone operations and serves them: get, list, watch, cancel."""

    def __init__(
        self,
        operations: OperationStore,
        runner: OperationRunner,
        peers: Peers,
        cancel_wait_seconds: float,
    ) -> None:
        self._operations = operations
        self._runner = runner
        self._peers = peers
        self._cancel_wait = cancel_wait_seconds

    async def CloneConfiguration(
        self, request: pb.CloneConfigurationRequest, context: Any
    ) -> pb.CloneConfigurationResponse:
        identity = require_role(Role.OPERATOR, "CloneConfiguration")
        check_clone_request(request)
        if request.request_id:
            first = await self._operations.by_request_id(request.request_id)
            if first is not None:
                return pb.CloneConfigurationResponse(operation=first)
        resolved = pb.CloneConfigurationRequest()
        resolved.CopyFrom(request)
        resolved.targets[:] = await resolve_targets(self._peers, request)
        operation = common_pb2.Operation(
            name=f"operations/{new_operation_id()}",
            kind=common_pb2.OPERATION_KIND_CLONE,
            state=common_pb2.OPERATION_STATE_RUNNING,
            requested_by=identity.name,
        )
        accepted = operation.events.add(
            step="accepted",
            message=f"clone {request.source} to {plural(len(resolved.targets), 'target')}: "
            f"{', '.join(resolved.targets)}",
        )
        accepted.time.GetCurrentTime()
        stored, created = await self._operations.create(operation, resolved, current_traceparent())
        if created:
            self._runner.start(stored, resolved)
        return pb.CloneConfigurationResponse(operation=stored)

    async def GetOperation(
        self, request: pb.GetOperationRequest, context: Any
    ) -> pb.GetOperationResponse:
        require_role(Role.READER, "GetOperation")
        require(request.name, "name")
        operation = await self._operations.get(operation_id_from_name(request.name))
        return pb.GetOperationResponse(operation=operation)

    async def ListOperations(
        self, request: pb.ListOperationsRequest, context: Any
    ) -> pb.ListOperationsResponse:
        require_role(Role.READER, "ListOperations")
        page = page_request(request.page_size, request.page_token, query="operations")
        found, token = await self._operations.page(page)
        return pb.ListOperationsResponse(operations=found, next_page_token=token)

    async def WatchOperation(
        self, request: pb.WatchOperationRequest, context: Any
    ) -> AsyncIterator[pb.WatchOperationResponse]:
        require_role(Role.READER, "WatchOperation")
        require(request.name, "name")
        async for operation in self._operations.watch(operation_id_from_name(request.name)):
            yield pb.WatchOperationResponse(operation=operation)

    async def CancelOperation(
        self, request: pb.CancelOperationRequest, context: Any
    ) -> pb.CancelOperationResponse:
        require_role(Role.OPERATOR, "CancelOperation")
        require(request.name, "name")
        operation_id = operation_id_from_name(request.name)
        await self._operations.get(operation_id)  # NOT_FOUND before anything else
        operation = await self._runner.cancel(operation_id, self._cancel_wait)
        return pb.CancelOperationResponse(operation=operation)
