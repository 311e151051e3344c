"""Progress on long work: lines while a change is verified, by apply or by a clone, and
while a fingerprint is built (a bar on a terminal), nothing but the JSON document on
standard output with ``--json``; ``--watch`` on approve."""

from __future__ import annotations

import json
import re

from cfgclone.common.store import Store
from cfgclone.simulation.fleet import SimulatedMachine
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from tests.cli.test_cli_names import run_cfgclone
from tests.orchestrator.workflow_suite import create_rollout_policy, running_services, unique

BUILDING = re.compile(r"^  building fingerprint: (\d+)%(?: \(([a-z ]+)\))?$", re.MULTILINE)
PROGRESS = re.compile(r"^  verifying: (\d+)% \((\d+) of (\d+) s\)$", re.MULTILINE)
EXIT_BY_STATE = {"KEPT": 0, "ROLLED_BACK": 5}
TUNED = {"workers": 4, "cache_mb": 512, "debug_logging": False, "request_timeout_s": 30}


async def test_apply_shows_the_verification_window_passing(store: Store) -> None:
    machine = SimulatedMachine(unique("progress"))
    async with running_services(store) as suite:
        fleet = suite.fleet([machine])
        await fleet.register()
        policy = await create_rollout_policy(suite, unique("progress"), verification_seconds=6)
        async with fleet.feeding():
            code, out, err = await run_cfgclone(
                suite, "apply", machine.system_id, "--set", "cache_mb=512", "--policy", policy
            )
            assert code in EXIT_BY_STATE.values(), out + err
            before_result = out.split("\n\n")[0]
            seen = [(int(p), int(s), int(total)) for p, s, total in PROGRESS.findall(before_result)]
            assert len(seen) >= 3, out
            assert all(total == 7 for _, _, total in seen)  # 1 s delay + 6 s window
            percents = [p for p, _, _ in seen]
            assert percents == sorted(percents)
            assert percents[-1] >= 90

            # With --json, standard output is the JSON document alone; progress is on stderr.
            code, out, err = await run_cfgclone(
                suite, "apply", machine.system_id, "--set", "cache_mb=640", "--policy", policy,
                "--json",
            )  # fmt: skip
            change = json.loads(out)
            assert code == EXIT_BY_STATE[change["state"].removeprefix("CHANGE_STATE_")]
            assert PROGRESS.search(err)


async def test_approve_watch_follows_a_held_change_to_its_end(store: Store) -> None:
    machine = SimulatedMachine(unique("watch"))
    async with running_services(store) as suite:
        fleet = suite.fleet([machine])
        await fleet.register()
        rollout = await create_rollout_policy(suite, unique("rollout"), verification_seconds=4)
        holding = (
            await suite.predictor.GetPolicy(predictor_pb.GetPolicyRequest(name=rollout))
        ).policy
        holding.name = f"policies/{unique('hold')}"
        holding.on_inconclusive = common_pb2.POLICY_ACTION_HOLD
        holding.ClearField("revision")
        holding.ClearField("create_time")
        await suite.predictor.CreatePolicy(predictor_pb.CreatePolicyRequest(policy=holding))

        code, out, err = await run_cfgclone(
            suite, "apply", machine.system_id, "--set", "cache_mb=512", "--policy", holding.name,
            "--json",
        )  # fmt: skip
        held = json.loads(out)
        assert code == 6, err
        assert held["state"] == "CHANGE_STATE_HELD"

        async with fleet.feeding():
            code, out, err = await run_cfgclone(
                suite, "approve", held["name"].removeprefix("systems/"), "--watch"
            )
        final = re.search(r"^systems/\S+: (\w+)", out, re.MULTILINE)
        assert final is not None, out
        assert final.group(1) in EXIT_BY_STATE, out
        assert code == EXIT_BY_STATE[final.group(1)]
        assert PROGRESS.search(out)


async def test_clone_shows_each_targets_verification_window(store: Store) -> None:
    source = SimulatedMachine(unique("csrc"), configuration=TUNED)
    target = SimulatedMachine(unique("cdst"))
    async with running_services(store) as suite:
        fleet = suite.fleet([source, target])
        await fleet.register()
        policy = await create_rollout_policy(suite, unique("clone"), verification_seconds=6)
        async with fleet.feeding():
            code, out, err = await run_cfgclone(
                suite, "clone", source.system_id, target.system_id, "--policy", policy
            )
        assert code in EXIT_BY_STATE.values(), out + err
        window = re.compile(
            rf"^  verifying {target.system_id}/changes/\d+: (\d+)% \(\d+ of 7 s\)$", re.MULTILINE
        )
        percents = [int(p) for p in window.findall(out)]
        assert len(percents) >= 3, out
        assert percents == sorted(percents)
        assert "[verify]" in out.split(f"verifying {target.system_id}")[0]  # after its event
        # The fingerprints the clone had to build, each with the build that tells about it.
        built = re.findall(
            r"\[fingerprint\][^:\n]*: built (systems/\S+)/fingerprints/\d+ "
            r"\((systems/\S+)/fingerprintBuilds/\S+\)",
            out,
        )
        assert built, out
        assert all(system == build_of for system, build_of in built)


async def test_fingerprint_build_shows_its_phases_up_to_stored(store: Store) -> None:
    machine = SimulatedMachine(unique("fpbuild"))
    async with running_services(store) as suite:
        await suite.fleet([machine]).register()

        code, out, err = await run_cfgclone(suite, "fingerprint", "build", machine.system_id)
        assert code == 0, err
        progress, _, table = out.partition(f"{machine.name}/fingerprints/")
        seen = [(int(percent), phase) for percent, phase in BUILDING.findall(progress)]
        assert seen, out
        percents = [percent for percent, _ in seen]
        assert percents == sorted(percents)
        assert seen[-1] == (100, "stored")
        assert "load regimes" not in table  # progress comes before the fingerprint
        assert machine.name in out

        # With --json, standard output is the fingerprint alone; the progress is on stderr.
        code, out, err = await run_cfgclone(
            suite, "fingerprint", "build", machine.system_id, "--json"
        )
        assert code == 0, err
        fingerprint = json.loads(out)
        assert fingerprint["name"].startswith(f"{machine.name}/fingerprints/")
        assert BUILDING.findall(err)[-1] == ("100", "stored")

        # A build that cannot succeed ends its progress and says why, with its exit code.
        empty = SimulatedMachine(unique("fpempty"))
        await suite.fleet([empty]).register(history=None)
        code, out, err = await run_cfgclone(suite, "fingerprint", "build", empty.system_id)
        assert code != 0
        assert len(err.strip().splitlines()) == 1  # one line saying why
        assert empty.name in err
        assert out.strip() == "" or BUILDING.search(out)
