"""The predictor's domain enums and the protobuf enums of the same names agree."""

from __future__ import annotations

from enum import IntEnum

import pytest

from cfgclone.common.errors import InvalidArgument
from cfgclone.predictor import codec
from cfgclone.predictor.states import (
    ChangeState,
    ConfigurationSource,
    PredictionMode,
    RollbackReason,
)
from cfgclone.v1 import common_pb2


@pytest.mark.parametrize(
    ("domain", "proto", "prefix"),
    [
        (ChangeState, common_pb2.ChangeState, "CHANGE_STATE_"),
        (RollbackReason, common_pb2.RollbackReason, "ROLLBACK_REASON_"),
        (PredictionMode, common_pb2.PredictionMode, "PREDICTION_MODE_"),
        (ConfigurationSource, common_pb2.ConfigurationSource, "CONFIGURATION_SOURCE_"),
    ],
)
def test_domain_enum_matches_the_protobuf_enum(
    domain: type[IntEnum], proto: object, prefix: str
) -> None:
    wire = {name.removeprefix(prefix): number for name, number in proto.items()}  # type: ignore[attr-defined]
    assert {member.name: member.value for member in domain} == wire


def test_the_codec_maps_each_member_to_its_wire_value() -> None:
    for state in ChangeState:
        assert codec.state_to_proto(state) == state.value
    for reason in RollbackReason:
        assert codec.reason_to_proto(reason) == reason.value
    for mode in PredictionMode:
        assert codec.mode_to_proto(mode) == mode.value
    assert codec.mode_from_proto(0) is PredictionMode.LEARNED
    with pytest.raises(InvalidArgument, match="mode"):
        codec.mode_from_proto(99)
