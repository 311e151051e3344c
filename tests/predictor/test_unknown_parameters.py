"""The predictor refuses a proposed configuration naming parameters neither the kind's
schema nor the system's current configuration knows (most likely typos), with the nearest
known names; ``allow_new_parameters`` sets them on purpose; a kind without a schema
cannot tell, so its new parameters pass with a warning."""

from __future__ import annotations

import grpc
import pytest
from grpc_status import rpc_status

from cfgclone.common.errors import ERROR_DOMAIN, error_info, field_violations
from cfgclone.common.store import Store
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from tests.predictor.support import (
    BASE_CONFIGURATION,
    configuration,
    create_policy,
    register,
    running_predictor,
    with_configuration,
)

LEARNED = common_pb2.PREDICTION_MODE_LEARNED


def _proposed(
    system_id: str, content: dict[str, object], kind: str = "simulated", *, allow: bool = False
) -> pb.ProposedChange:
    return pb.ProposedChange(
        system=f"systems/{system_id}",
        configuration=configuration(content, kind),
        allow_new_parameters=allow,
    )


async def test_a_misspelt_parameter_is_refused_naming_it_and_the_nearest(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "typo")
        await with_configuration(predictor.stub, system_id)
        policy = await create_policy(predictor.stub)
        typo = _proposed(system_id, {**BASE_CONFIGURATION, "cache_mbb": 512, "work_mem": "4MB"})

        for call in (
            predictor.stub.PredictImpact(pb.PredictImpactRequest(change=typo, policy=policy)),
            predictor.stub.ProposeChange(
                pb.ProposeChangeRequest(change=typo, policy=policy, mode=LEARNED)
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
            assert status is not None
            info = error_info(status)
            assert info is not None
            assert info.reason == "UNKNOWN_PARAMETER"
            assert info.domain == ERROR_DOMAIN
            assert dict(info.metadata) == {"kind": "simulated", "parameters": "cache_mbb,work_mem"}
            violations = {v.field: v.description for v in field_violations(status)}
            assert violations == {
                "change.configuration.content.cache_mbb": (
                    "simulated has no parameter cache_mbb; did you mean cache_mb?"
                ),
                "change.configuration.content.work_mem": (
                    "simulated has no parameter work_mem; did you mean workers?"
                ),
            }
            assert "change.allow_new_parameters" in refused.value.details()

        changes = await predictor.stub.ListChanges(
            pb.ListChangesRequest(parent=f"systems/{system_id}")
        )
        assert list(changes.changes) == []  # nothing was proposed


async def test_parameters_the_system_already_has_or_set_on_purpose_pass(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "known")
        # The running configuration has a parameter the simulated schema does not declare.
        running = {**BASE_CONFIGURATION, "tuned_flag": 1}
        await with_configuration(predictor.stub, system_id, running)
        policy = await create_policy(predictor.stub)

        known = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(
                change=_proposed(system_id, {**running, "tuned_flag": 2, "cache_mb": 300}),
                policy=policy,
                mode=LEARNED,
                dry_run=True,
            )
        )
        assert known.change.name
        assert list(known.warnings) == []

        new = _proposed(system_id, {**running, "brand_new": 3}, allow=True)
        proposed = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(change=new, policy=policy, mode=LEARNED, dry_run=True)
        )
        assert proposed.change.name
        assert list(proposed.warnings) == [
            "brand_new is new: neither the simulated schema nor the current configuration has it"
        ]
        predicted = await predictor.stub.PredictImpact(
            pb.PredictImpactRequest(change=new, policy=policy)
        )
        assert list(predicted.warnings) == list(proposed.warnings)


async def test_a_kind_without_a_schema_takes_new_parameters_with_a_warning(store: Store) -> None:
    async with running_predictor(store) as predictor:
        system_id = await register(store, "untyped")
        await predictor.stub.CreateConfiguration(
            pb.CreateConfigurationRequest(
                parent=f"systems/{system_id}",
                configuration=configuration({"threads": 4}, "custom-app"),
            )
        )
        policy = await create_policy(predictor.stub)
        change = _proposed(system_id, {"threads": 4, "thread": 8}, "custom-app")

        predicted = await predictor.stub.PredictImpact(
            pb.PredictImpactRequest(change=change, policy=policy)
        )
        assert list(predicted.warnings) == ["custom-app has no schema; thread is unchecked"]
        proposed = await predictor.stub.ProposeChange(
            pb.ProposeChangeRequest(change=change, policy=policy, mode=LEARNED, dry_run=True)
        )
        assert list(proposed.warnings) == ["custom-app has no schema; thread is unchecked"]
        assert proposed.change.name
