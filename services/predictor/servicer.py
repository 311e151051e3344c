"""PredictorService: translation between protobuf and the predictor's operations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from cfgclone.common.auth import Role, require_role
from cfgclone.common.errors import InvalidArgument
from cfgclone.common.requests import (
    child_id_from_name,
    numeric_id,
    page_request,
    require,
    system_id_from_name,
)
from cfgclone.common.store import Store
from cfgclone.predictor import audit, configurations, parameters, repository
from cfgclone.predictor.codec import mode_from_proto
from cfgclone.predictor.guard import Guard, Proposal
from cfgclone.predictor.history import training_status
from cfgclone.predictor.prediction import Predictor, ProposedConfiguration
from cfgclone.predictor.states import PredictionMode
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from cfgclone.v1 import predictor_service_pb2_grpc as pb_grpc


def _time(stamp: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


def _change_id(name: str) -> tuple[str, int]:
    require(name, "name")
    system_id, ident = child_id_from_name(name, "changes")
    return system_id, numeric_id(ident, "name", "change id")


def _parent_system(parent: str) -> str | None:
    require(parent, "parent")
    return None if parent == "systems/-" else system_id_from_name(parent, "parent")


class PredictorServicer(pb_grpc.PredictorServiceServicer):
    """Configurations, policies, predictions and guarded changes."""

    def __init__(self, store: Store, predictor: Predictor, guard: Guard) -> None:
        self._store = store
        self._predictor = predictor
        self._guard = guard

    async def CreateConfiguration(
        self, request: pb.CreateConfigurationRequest, context: Any
    ) -> pb.CreateConfigurationResponse:
        identity = require_role(Role.OPERATOR, "CreateConfiguration")
        system_id = system_id_from_name(request.parent, "parent")
        require(request.configuration, "configuration")
        stored, _ = await configurations.create(
            self._store,
            system_id,
            request.configuration,
            author=identity.name,
            request_id=request.request_id or None,
        )
        if request.configuration.HasField("apply_time"):
            await self._guard.imports.request(system_id)
        return pb.CreateConfigurationResponse(configuration=configurations.to_message(stored))

    async def GetConfiguration(
        self, request: pb.GetConfigurationRequest, context: Any
    ) -> pb.GetConfigurationResponse:
        require_role(Role.READER, "GetConfiguration")
        require(request.name, "name")
        system_id, version = child_id_from_name(request.name, "configurations")
        stored = await configurations.get(self._store, system_id, version)
        return pb.GetConfigurationResponse(configuration=configurations.to_message(stored))

    async def ListConfigurations(
        self, request: pb.ListConfigurationsRequest, context: Any
    ) -> pb.ListConfigurationsResponse:
        require_role(Role.READER, "ListConfigurations")
        system_id = system_id_from_name(request.parent, "parent")
        page = page_request(request.page_size, request.page_token, query=request.parent)
        found, token = await configurations.list_page(self._store, system_id, page)
        return pb.ListConfigurationsResponse(
            configurations=[configurations.to_message(c) for c in found], next_page_token=token
        )

    async def DiffConfigurations(
        self, request: pb.DiffConfigurationsRequest, context: Any
    ) -> pb.DiffConfigurationsResponse:
        require_role(Role.READER, "DiffConfigurations")
        require(request.first, "first")
        require(request.second, "second")
        first = await configurations.get(
            self._store, *child_id_from_name(request.first, "configurations", "first")
        )
        second = await configurations.get(
            self._store, *child_id_from_name(request.second, "configurations", "second")
        )
        return pb.DiffConfigurationsResponse(
            differences=[
                pb.ParameterDiff(
                    key=key,
                    before=configurations.value_message(before),
                    after=configurations.value_message(after),
                )
                for key, before, after in configurations.diff(first.content, second.content)
            ]
        )

    async def CreatePolicy(
        self, request: pb.CreatePolicyRequest, context: Any
    ) -> pb.CreatePolicyResponse:
        require_role(Role.OPERATOR, "CreatePolicy")
        require(request.policy, "policy")
        stored = await configurations.create_policy(self._store, request.policy)
        return pb.CreatePolicyResponse(policy=stored.message)

    async def GetPolicy(self, request: pb.GetPolicyRequest, context: Any) -> pb.GetPolicyResponse:
        require_role(Role.READER, "GetPolicy")
        require(request.name, "name")
        stored = await configurations.load_policy(self._store, request.name, "name")
        return pb.GetPolicyResponse(policy=stored.message)

    async def ListPolicies(
        self, request: pb.ListPoliciesRequest, context: Any
    ) -> pb.ListPoliciesResponse:
        require_role(Role.READER, "ListPolicies")
        page = page_request(request.page_size, request.page_token)
        policies, token = await configurations.list_policies(self._store, page)
        return pb.ListPoliciesResponse(policies=policies, next_page_token=token)

    async def PredictImpact(
        self, request: pb.PredictImpactRequest, context: Any
    ) -> pb.PredictImpactResponse:
        require_role(Role.READER, "PredictImpact")
        if request.mode in (common_pb2.PREDICTION_MODE_SHADOW, common_pb2.PREDICTION_MODE_BOTH):
            # A shadow run starts a copy of the target and its load: an operator's call.
            require_role(Role.OPERATOR, "PredictImpact with a shadow run")
        proposal, warnings = await self._proposal(request.change, request.policy)
        prediction = await self._predictor.predict(
            ProposedConfiguration(
                proposal.system,
                proposal.current,
                proposal.configuration.kind,
                proposal.configuration.content,
            ),
            mode_from_proto(request.mode),
            proposal.policy,
        )
        return pb.PredictImpactResponse(prediction=prediction, warnings=warnings)

    async def ProposeChange(
        self, request: pb.ProposeChangeRequest, context: Any
    ) -> pb.ProposeChangeResponse:
        identity = require_role(Role.OPERATOR, "ProposeChange")
        if request.request_id and (first := await self._first_answer(request.request_id)):
            return first
        proposal, warnings = await self._proposal(
            request.change,
            request.policy,
            mode=mode_from_proto(request.mode),
            dry_run=request.dry_run,
            request_id=request.request_id or None,
            requested_by=identity.name,
        )
        try:
            change_id = await self._guard.propose(proposal)
        except repository.DuplicateRequest as duplicate:
            first = await self._first_answer(duplicate.request_id)
            assert first is not None
            return first
        change = await audit.change(self._store, proposal.system.system_id, change_id)
        return pb.ProposeChangeResponse(change=change, warnings=warnings)

    async def _first_answer(self, request_id: str) -> pb.ProposeChangeResponse | None:
        """The change stored for ``request_id``, when a proposal with it was taken."""
        async with self._store.connection() as conn:
            seen = await repository.change_by_request(conn, request_id)
        if seen is None:
            return None
        return pb.ProposeChangeResponse(change=await audit.change(self._store, *seen))

    async def _proposal(
        self,
        change: pb.ProposedChange,
        policy_name: str,
        *,
        mode: PredictionMode = PredictionMode.LEARNED,
        dry_run: bool = False,
        request_id: str | None = None,
        requested_by: str = "",
    ) -> tuple[Proposal, list[str]]:
        """The proposal of ``change``, checked, and the warnings it earned (see
        :func:`parameters.new_parameters`)."""
        require(change, "change")
        system_id = system_id_from_name(change.system, "change.system")
        require(change.configuration, "change.configuration")
        policy = await configurations.load_policy(self._store, policy_name)
        async with self._store.connection() as conn:
            system = await repository.system(conn, system_id)
            current = await repository.current_configuration(conn, system)
        new = configurations.new_configuration(
            change.configuration,
            field="change.configuration",
            author=requested_by,
            inherited_schema=current.schema,
            parent_version=current.version,
        )
        warnings = parameters.new_parameters(
            new.kind,
            new.content,
            new.schema,
            current.content,
            "change.configuration",
            allow_new=change.allow_new_parameters,
            allow_field="change.allow_new_parameters",
        )
        proposal = Proposal(
            system=system,
            current=current,
            configuration=new,
            mode=mode,
            policy=policy,
            dry_run=dry_run,
            request_id=request_id,
            requested_by=requested_by,
        )
        return proposal, warnings

    async def GetChange(self, request: pb.GetChangeRequest, context: Any) -> pb.GetChangeResponse:
        require_role(Role.READER, "GetChange")
        system_id, change_id = _change_id(request.name)
        return pb.GetChangeResponse(change=await audit.change(self._store, system_id, change_id))

    async def ListChanges(
        self, request: pb.ListChangesRequest, context: Any
    ) -> pb.ListChangesResponse:
        require_role(Role.READER, "ListChanges")
        where = self._filter(request)
        page = page_request(request.page_size, request.page_token, query=_query(request))
        changes, token = await audit.list_changes(self._store, where, page)
        return pb.ListChangesResponse(changes=changes, next_page_token=token)

    async def ListRollbacks(
        self, request: pb.ListRollbacksRequest, context: Any
    ) -> pb.ListRollbacksResponse:
        require_role(Role.READER, "ListRollbacks")
        where = self._filter(request)
        page = page_request(request.page_size, request.page_token, query=_query(request))
        rollbacks, token = await audit.list_rollbacks(self._store, where, page)
        return pb.ListRollbacksResponse(rollbacks=rollbacks, next_page_token=token)

    async def GetTrainingStatus(
        self, request: pb.GetTrainingStatusRequest, context: Any
    ) -> pb.GetTrainingStatusResponse:
        require_role(Role.READER, "GetTrainingStatus")
        system_id = system_id_from_name(request.system, "system") if request.system else None
        rows = await training_status(self._store, system_id)
        models = self._predictor.models
        reply = pb.GetTrainingStatusResponse(
            pending_imports=sum(row.import_pending for row in rows),
            examples=sum(row.examples for row in rows),
        )
        for row in rows:
            entry = reply.systems.add(
                system=f"systems/{row.system_id}",
                examples=row.examples,
                import_pending=row.import_pending,
                model_version=models.version_of(f"systems/{row.system_id}"),
            )
            if row.last_import is not None:
                entry.last_import_time.FromDatetime(row.last_import)
        return reply

    def _filter(
        self, request: pb.ListChangesRequest | pb.ListRollbacksRequest
    ) -> repository.TimeFilter:
        start = _time(request.start_time, request.HasField("start_time"))
        end = _time(request.end_time, request.HasField("end_time"))
        if start is not None and end is not None and end <= start:
            raise InvalidArgument.for_field("end_time", "must be after start_time")
        return repository.TimeFilter(_parent_system(request.parent), start, end)

    async def ApproveChange(
        self, request: pb.ApproveChangeRequest, context: Any
    ) -> pb.ApproveChangeResponse:
        identity = require_role(Role.OPERATOR, "ApproveChange")
        system_id, change_id = _change_id(request.name)
        await self._guard.approve(change_id, system_id, identity.name, request.reason)
        return pb.ApproveChangeResponse(
            change=await audit.change(self._store, system_id, change_id)
        )

    async def ForceChange(
        self, request: pb.ForceChangeRequest, context: Any
    ) -> pb.ForceChangeResponse:
        identity = require_role(Role.OPERATOR, "ForceChange")
        system_id, change_id = _change_id(request.name)
        require(request.reason, "reason")
        await self._guard.force(change_id, system_id, identity.name, request.reason)
        return pb.ForceChangeResponse(change=await audit.change(self._store, system_id, change_id))

    async def AbortChange(
        self, request: pb.AbortChangeRequest, context: Any
    ) -> pb.AbortChangeResponse:
        identity = require_role(Role.OPERATOR, "AbortChange")
        system_id, change_id = _change_id(request.name)
        await self._guard.abort(change_id, system_id, identity.name, request.reason)
        return pb.AbortChangeResponse(change=await audit.change(self._store, system_id, change_id))


def _query(request: pb.ListChangesRequest | pb.ListRollbacksRequest) -> list[str]:
    return [
        request.parent,
        request.start_time.ToJsonString() if request.HasField("start_time") else "",
        request.end_time.ToJsonString() if request.HasField("end_time") else "",
    ]
