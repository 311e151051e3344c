"""Every name the CLI prints is taken back by the next command, as printed.

The CLI runs as a user runs it (a separate process, pointed at the services by its
``--<service>`` flags) against real services on free ports.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from cfgclone.common.store import Store
from cfgclone.simulation.fleet import SimulatedMachine
from cfgclone.v1 import fingerprint_service_pb2
from tests.orchestrator.workflow_suite import (
    Suite,
    create_rollout_policy,
    running_services,
    unique,
)

CFGCLONE = str(Path(sys.executable).parent / "cfgclone")
HELD = 6


async def run_cfgclone(suite: Suite, *argv: str) -> tuple[int, str, str]:
    flags = [f"--{name}={address}" for name, address in suite.addresses.items()]
    process = await asyncio.create_subprocess_exec(
        CFGCLONE,
        *flags,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.endswith("_ADDRESS")},
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _first_column(table: str) -> list[str]:
    """The first column of a printed table, header left out."""
    return [line.split()[0] for line in table.strip().splitlines()[1:] if line.strip()]


async def test_printed_names_go_back_into_the_next_command(store: Store) -> None:
    machines = [SimulatedMachine(unique("names"), labels={"role": "names"}) for _ in range(3)]
    async with running_services(store) as suite:
        unbuilt = SimulatedMachine(unique("unbuilt"))
        await suite.fleet([*machines, unbuilt]).register()
        for machine in machines:
            await suite.fingerprint.BuildFingerprint(
                fingerprint_service_pb2.BuildFingerprintRequest(system=machine.name)
            )
        await asyncio.sleep(0.5)  # the similarity index syncs every 0.2 s in these tests
        policy = await create_rollout_policy(suite, unique("names"))

        code, out, err = await run_cfgclone(suite, "systems", "--selector", "role=names")
        assert code == 0, err
        systems = _first_column(out)
        assert sorted(systems) == sorted(m.system_id for m in machines)
        for system in systems:
            code, _, err = await run_cfgclone(suite, "fingerprint", "show", system)
            assert code == 0, err

        # Errors point at commands, not at the gRPC methods behind them.
        code, _, err = await run_cfgclone(suite, "fingerprint", "show", unbuilt.system_id)
        assert code == 1
        assert "cfgclone fingerprint build" in err
        assert "BuildFingerprint" not in err

        code, out, err = await run_cfgclone(
            suite, "similar", systems[0], "--selector", "role=names"
        )
        assert code == 0, err
        look_alike = _first_column(out)[0]
        code, _, err = await run_cfgclone(suite, "fingerprint", "show", look_alike)
        assert code == 0, err

        # Other tests' systems share the store: the members column may be cut to the
        # terminal's width, so the cohort is asked for by its member.
        code, out, err = await run_cfgclone(suite, "cohorts", "--member", systems[0])
        assert code == 0, err
        [cohort] = [line.split()[0] for line in out.splitlines()[1:]]
        assert not cohort.startswith("cohorts/")
        code, out, err = await run_cfgclone(
            suite,
            "clone",
            systems[0],
            "--cohort",
            cohort,
            "--dry-run",
            "--policy",
            policy.removeprefix("policies/"),
        )
        assert code in (0, 4), err  # kept, or refused on its prediction: the names were taken
        assert "SUCCEEDED" in out

        # With no history, the default policy holds a change for a person.
        code, out, err = await run_cfgclone(suite, "apply", systems[1], "--set", "cache_mb=384")
        assert code == HELD, out + err
        code, out, err = await run_cfgclone(suite, "changes", systems[1])
        assert code == 0, err
        [change] = [line.split()[0] for line in out.splitlines()[1:] if " HELD " in line]
        assert change.startswith(f"{systems[1]}/changes/")
        code, out, err = await run_cfgclone(suite, "abort", change, "--reason", "names copy")
        assert code == 0, err
        assert "names copy" in out
        code, out, err = await run_cfgclone(suite, "rollbacks", systems[1])
        assert code == 0, err
        assert change in out.split()
