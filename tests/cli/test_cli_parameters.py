"""``cfgclone apply --set``: a parameter the kind's schema and the configuration do not
know is refused (by the predictor) with the nearest known names, one line each, exit 2;
``--allow-new`` sets it anyway; a kind without a schema warns."""

from __future__ import annotations

from cfgclone.common.store import Store
from cfgclone.simulation.fleet import SimulatedMachine
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from tests.cli.test_cli_names import run_cfgclone
from tests.orchestrator.workflow_suite import running_services, unique

USAGE = 2


async def test_unknown_parameters_are_refused_with_the_nearest_names(store: Store) -> None:
    machine = SimulatedMachine(unique("params"))
    untyped = SimulatedMachine(unique("untyped"))
    async with running_services(store) as suite:
        await suite.fleet([machine, untyped]).register()

        code, _, err = await run_cfgclone(suite, "apply", machine.system_id, "--set", "cache_mbb=9")
        assert code == USAGE
        assert err.strip().splitlines() == [
            "cfgclone apply: --set cache_mbb: simulated has no parameter cache_mbb; "
            "did you mean cache_mb? (--allow-new sets it anyway)"
        ]
        # The README's PostgreSQL example on a simulated system: no close name to offer.
        code, _, err = await run_cfgclone(
            suite, "apply", machine.system_id, "--set", "work_mem=64MB"
        )
        assert code == USAGE
        assert "simulated has no parameter work_mem" in err
        changes = await suite.predictor.ListChanges(
            predictor_pb.ListChangesRequest(parent=machine.name)
        )
        assert list(changes.changes) == []  # nothing was proposed

        # Two at once: a line each.
        code, _, err = await run_cfgclone(
            suite, "apply", machine.system_id, "--set", "cache_mbb=9", "--set", "workerz=2"
        )
        assert code == USAGE
        assert sorted(err.strip().splitlines()) == [
            "cfgclone apply: --set cache_mbb: simulated has no parameter cache_mbb; "
            "did you mean cache_mb? (--allow-new sets it anyway)",
            "cfgclone apply: --set workerz: simulated has no parameter workerz; "
            "did you mean workers? (--allow-new sets it anyway)",
        ]

        # On purpose: proposed, with a warning.
        code, out, err = await run_cfgclone(
            suite, "apply", machine.system_id, "--set", "tuned_flag=1", "--allow-new", "--dry-run"
        )
        assert code != USAGE, err
        assert (
            "cfgclone apply: warning: tuned_flag is new: neither the simulated schema nor the "
            "current configuration has it"
        ) in err
        assert f"{machine.name}/changes/" in out

        # A kind cfgclone has no schema for: the new key goes on, with a warning.
        configuration = common_pb2.Configuration(
            kind="custom-app", source=common_pb2.CONFIGURATION_SOURCE_IMPORT
        )
        configuration.content.update({"threads": 4})
        await suite.predictor.CreateConfiguration(
            predictor_pb.CreateConfigurationRequest(
                parent=untyped.name, configuration=configuration, request_id=unique("import")
            )
        )
        code, _, err = await run_cfgclone(
            suite, "apply", untyped.system_id, "--set", "thread=8", "--dry-run"
        )
        assert "cfgclone apply: warning: custom-app has no schema; thread is unchecked" in err
        assert "has no parameter" not in err
        assert code != USAGE
