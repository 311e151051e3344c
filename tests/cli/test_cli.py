"""The ``cfgclone`` commands over real services: tables, JSON, progress and exit codes."""

from __future__ import annotations

import asyncio
import json

import pytest

from cfgclone.cli import exits
from cfgclone.cli import main as cli
from cfgclone.common.store import Store
from cfgclone.simulation.fleet import SimulatedMachine
from tests.orchestrator.workflow_suite import (
    Suite,
    create_rollout_policy,
    running_services,
    unique,
    unused_address,
)

TUNED = {"workers": 4, "cache_mb": 512, "debug_logging": False, "request_timeout_s": 30}


@pytest.fixture
def use_suite(monkeypatch: pytest.MonkeyPatch) -> object:
    """Point the CLI at a suite: ``use_suite(suite)`` sets the service addresses."""

    def point(suite: Suite, **overrides: str) -> None:
        for name, address in {**suite.addresses, **overrides}.items():
            monkeypatch.setenv(f"CFGCLONE_{name.upper()}_ADDRESS", address)

    return point


async def _cfgclone(*argv: str) -> int:
    """Run the command line as a user would (it runs its own event loop, so in a thread)."""
    return await asyncio.to_thread(cli.main, list(argv))


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        cli.main(["--help"])
    assert ended.value.code == 0
    shown = capsys.readouterr().out
    assert "exit codes:" in shown
    for code, meaning in exits.EXIT_CODES.items():
        assert f"{code}  {meaning}" in shown
    for command in ("fingerprint", "similar", "cohorts", "clone", "apply", "changes"):
        assert command in shown


def test_bad_usage_exits_with_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        cli.main(["apply", "web-01"])
    assert ended.value.code == exits.EXIT_USAGE
    assert "--set" in capsys.readouterr().err
    assert cli.main(["clone", "web-01"]) == exits.EXIT_USAGE


async def test_clone_shows_progress_and_a_table_or_json_for_scripts(
    store: Store, use_suite: object, capsys: pytest.CaptureFixture[str]
) -> None:
    source = SimulatedMachine(unique("src"), configuration=TUNED)
    target = SimulatedMachine(unique("dst"))
    async with running_services(store) as suite:
        await suite.fleet([source, target]).register()
        policy = await create_rollout_policy(suite, unique("cli"))
        use_suite(suite)  # type: ignore[operator]

        code = await _cfgclone(
            "clone", source.system_id, target.system_id, "--dry-run", "--policy", policy
        )
        shown = capsys.readouterr()
        assert code == exits.EXIT_OK, shown.err
        assert "[similarity]" in shown.out
        assert "SUCCEEDED" in shown.out
        assert target.system_id in shown.out
        assert "KEPT" in shown.out

        code = await _cfgclone(
            "clone", source.name, target.name, "--dry-run", "--policy", policy, "--json"
        )
        shown = capsys.readouterr()
        assert code == exits.EXIT_OK
        operation = json.loads(shown.out)
        assert operation["state"] == "OPERATION_STATE_SUCCEEDED"
        assert operation["clone"]["targets"][0]["state"] == "CHANGE_STATE_KEPT"
        assert "[propose]" in shown.err


async def test_clone_exit_codes_for_an_unknown_target_and_an_unreachable_orchestrator(
    store: Store, use_suite: object, capsys: pytest.CaptureFixture[str]
) -> None:
    source = SimulatedMachine(unique("src"))
    async with running_services(store) as suite:
        await suite.fleet([source]).register()
        use_suite(suite)  # type: ignore[operator]
        assert await _cfgclone("clone", source.system_id, "nowhere-dst") == exits.EXIT_FAILED
        assert "NOT_FOUND" in capsys.readouterr().err

        use_suite(suite, orchestrator=unused_address())  # type: ignore[operator]
        code = await _cfgclone("clone", source.system_id, "nowhere-dst")
        assert code == exits.EXIT_UNAVAILABLE
        shown = capsys.readouterr().err
        assert "the orchestrator at" in shown
        assert "(from CFGCLONE_ORCHESTRATOR_ADDRESS) does not answer" in shown


async def test_apply_exit_codes_tell_rejected_held_and_rolled_back_apart(
    store: Store, use_suite: object, capsys: pytest.CaptureFixture[str]
) -> None:
    steady = SimulatedMachine(unique("steady"))
    fragile = SimulatedMachine(unique("fragile"), regression=1.8)
    async with running_services(store) as suite:
        fleet = suite.fleet([steady, fragile])
        await fleet.register()
        policy = await create_rollout_policy(suite, unique("apply"))
        use_suite(suite)  # type: ignore[operator]

        # Debug logging makes the simulated system slower: the shadow run sees it.
        code = await _cfgclone(
            "apply", steady.system_id, "--set", "debug_logging=true", "--mode", "shadow", "--json"
        )
        shown = capsys.readouterr()
        assert code == exits.EXIT_REJECTED, shown
        assert json.loads(shown.out)["state"] == "CHANGE_STATE_REJECTED"
        assert await _cfgclone("rollbacks", steady.system_id, "--json") == exits.EXIT_OK
        [rollback] = json.loads(capsys.readouterr().out)
        assert rollback["reason"] == "ROLLBACK_REASON_PREDICTED_NEGATIVE"

        # With no history to learn from, the default policy holds the change for a person.
        code = await _cfgclone("apply", steady.system_id, "--set", "cache_mb=384", "--json")
        held = json.loads(capsys.readouterr().out)
        assert code == exits.EXIT_HELD
        assert await _cfgclone("abort", held["name"], "--reason", "not today") == exits.EXIT_OK
        assert "not today" in capsys.readouterr().out
        assert await _cfgclone("changes", steady.system_id) == exits.EXIT_OK
        listed = capsys.readouterr().out
        assert held["name"].removeprefix("systems/") in listed
        assert "REJECTED" in listed

        async with fleet.feeding():
            code = await _cfgclone(
                "apply", fragile.system_id, "--set", "cache_mb=512", "--policy", policy
            )
        shown = capsys.readouterr()
        assert code == exits.EXIT_ROLLED_BACK, shown.out
        assert "ROLLED_BACK" in shown.out


async def test_fingerprint_similar_and_cohorts_show_the_fleet(
    store: Store, use_suite: object, capsys: pytest.CaptureFixture[str]
) -> None:
    machines = [SimulatedMachine(unique("fleet"), labels={"role": "cli"}) for _ in range(3)]
    async with running_services(store) as suite:
        await suite.fleet(machines).register()
        use_suite(suite)  # type: ignore[operator]
        for machine in machines:
            await _build(suite, machine.name)
        await asyncio.sleep(0.5)  # the similarity index syncs every 0.2 s in these tests

        assert await _cfgclone("fingerprint", "show", machines[0].system_id) == exits.EXIT_OK
        shown = capsys.readouterr().out
        assert f"{machines[0].name}/fingerprints/" in shown
        assert "http.server.request.duration" in shown
        assert "system.cpu.utilization" in shown
        assert await _cfgclone("fingerprint", "show", "nowhere-01") == exits.EXIT_FAILED
        assert "NOT_FOUND" in capsys.readouterr().err

        code = await _cfgclone("similar", machines[0].system_id, "--selector", "role=cli")
        assert code == exits.EXIT_OK
        shown = capsys.readouterr().out
        assert machines[1].system_id in shown
        assert machines[2].system_id in shown

        assert await _cfgclone("cohorts", "--json") == exits.EXIT_OK
        cohorts = json.loads(capsys.readouterr().out)
        members = {m for cohort in cohorts for m in cohort["members"]}
        assert {m.name for m in machines} <= members


async def _build(suite: Suite, system: str) -> None:
    from cfgclone.v1 import fingerprint_service_pb2

    await suite.fingerprint.BuildFingerprint(
        fingerprint_service_pb2.BuildFingerprintRequest(system=system)
    )
