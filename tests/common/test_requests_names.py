"""Resource names: one rule for every top-level id (AIP-122), whichever service reads it."""

from __future__ import annotations

import pytest

from cfgclone.common.errors import InvalidArgument
from cfgclone.common.requests import policy_id_from_name, system_id_from_name


@pytest.mark.parametrize("name", ["policies/latency-guard", "policies/a", "policies/" + "a" * 63])
def test_policy_names_of_the_aip_form_are_read(name: str) -> None:
    assert policy_id_from_name(name) == name.removeprefix("policies/")


@pytest.mark.parametrize(
    "name",
    ["policies/My_Policy", "policies/", "policies/a/b", "policies/1x", "policy/x", "policies/x\n"],
)
def test_other_policy_names_are_refused_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidArgument, match=r"options\.policy"):
        policy_id_from_name(name, "options.policy")


def test_system_and_policy_ids_follow_one_rule() -> None:
    for ident in ("db-01", "a", "x" * 63):
        assert system_id_from_name(f"systems/{ident}") == policy_id_from_name(f"policies/{ident}")
    for ident in ("DB", "db_01", "-db"):
        with pytest.raises(InvalidArgument):
            system_id_from_name(f"systems/{ident}")
        with pytest.raises(InvalidArgument):
            policy_id_from_name(f"policies/{ident}")
