"""The simulated applier: the applier contract in memory, with failure and hang switches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cfgclone.predictor.appliers import (
    AnsibleApplier,
    AnsibleSettings,
    Applier,
    ApplyFailed,
    CommandApplier,
    CommandApplierSettings,
    ManagedSystem,
    PostgresApplier,
    SimulatedApplier,
)

SYSTEM = ManagedSystem("systems/web-01", host="web-01")


async def test_apply_sets_parameters_and_rollback_restores_the_reading() -> None:
    applier = SimulatedApplier({SYSTEM.name: {"workers": 4, "cache_mb": 256}})
    previous = await applier.read_current(SYSTEM)
    applied = await applier.apply(SYSTEM, {"workers": 8, "debug_logging": True})
    assert applied.changed == ("debug_logging", "workers")
    assert await applier.read_current(SYSTEM) == {
        "workers": 8,
        "cache_mb": 256,
        "debug_logging": True,
    }
    rolled_back = await applier.rollback(SYSTEM, previous)
    assert rolled_back.changed == ("debug_logging", "workers")
    assert await applier.read_current(SYSTEM) == previous
    assert [call.action for call in applier.calls] == ["read", "apply", "read", "rollback", "read"]


async def test_restart_parameters_are_reported() -> None:
    applier = SimulatedApplier(restart_parameters={"shared_buffers"})
    result = await applier.apply(SYSTEM, {"shared_buffers": "1GB", "work_mem": "8MB"})
    assert result.restart_required == ("shared_buffers",)


async def test_the_failure_switches_raise_apply_failed_with_output() -> None:
    applier = SimulatedApplier({SYSTEM.name: {"workers": 4}})
    applier.fail_apply = True
    with pytest.raises(ApplyFailed, match="simulated apply") as failure:
        await applier.apply(SYSTEM, {"workers": 8})
    assert failure.value.output
    assert await applier.read_current(SYSTEM) == {"workers": 4}
    applier.fail_apply = False
    applier.fail_rollback = True
    await applier.apply(SYSTEM, {"workers": 8})
    with pytest.raises(ApplyFailed, match="simulated rollback"):
        await applier.rollback(SYSTEM, {"workers": 4})


@pytest.mark.parametrize("switch", ["hang_apply", "hang_rollback"])
async def test_a_hanging_applier_ends_only_at_the_callers_time_limit(switch: str) -> None:
    applier = SimulatedApplier()
    setattr(applier, switch, True)
    call = applier.apply if switch == "hang_apply" else applier.rollback
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await call(SYSTEM, {"workers": 1})
    assert applier.systems == {}


def test_every_applier_meets_the_interface(tmp_path: Path) -> None:
    appliers = [
        SimulatedApplier(),
        PostgresApplier(),
        CommandApplier(CommandApplierSettings(apply_command="tool {file}")),
        AnsibleApplier(AnsibleSettings(playbook=tmp_path / "site.yml")),
    ]
    assert all(isinstance(applier, Applier) for applier in appliers)
    assert [applier.name for applier in appliers] == [
        "simulated",
        "postgresql",
        "command",
        "ansible",
    ]
