"""The command shadow provider with scripts that misbehave: the answer says why, nothing lingers.

The fake script (a real executable, run as the provider runs any script) starts a
stand-in for the shadow in ``create`` (a background process in the step's process
group), records its pid and every step it was asked for, and then misbehaves in ``run``
as told: it hangs, crashes, or prints something that is not a KPI report.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from cfgclone.predictor.shadow import (
    CommandShadowProvider,
    CommandShadowSettings,
    ShadowOutcome,
    ShadowTarget,
    WorkloadShape,
    run_shadow_comparison,
)
from tests.predictor.shadow.support import is_gone, process_ended

FAKE_SCRIPT = """#!/bin/bash
# usage: fake-shadow MODE MARKERS STEP   (request JSON on stdin)
mode=$1; markers=$2; step=$3
cat > "$markers/request-$step.json"
echo "$step" >> "$markers/steps"
case "$step" in
  create)
    sleep 300 < /dev/null > /dev/null 2>&1 &
    echo $! > "$markers/shadow.pid" ;;
  apply) ;;
  run)
    case "$mode" in
      hang) sleep 300 ;;
      crash) echo "boom: the shadow ran out of disk" >&2; exit 3 ;;
      garbage) echo "<html>502 Bad Gateway</html>" ;;
      good)
        echo '{"samples": {"db.client.operation.duration": [0.002, 0.0021, 0.0019],'
        echo '  "postgresql.commits": [40, 41, 39]}}' ;;
    esac ;;
  destroy) ;;
esac
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "fake-shadow"
    path.write_text(FAKE_SCRIPT)
    path.chmod(0o755)
    return path


def _provider(script: Path, mode: str, markers: Path) -> CommandShadowProvider:
    markers.mkdir()
    return CommandShadowProvider(
        "fake",
        CommandShadowSettings(command=(str(script), mode, str(markers)), workload_grace_s=5),
    )


def shadow_is_gone(markers: Path) -> bool:
    return process_ended(int((markers / "shadow.pid").read_text()))


TARGET = ShadowTarget(
    "systems/web-01",
    WorkloadShape(),
    load_profile={"postgresql.commits": 50.0},
    hardware={"cpu_cores": 8.0, "memory_bytes": 2.0**35},
    settings={"max_connections": 100},
)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("hang", "run step did not finish within"),
        ("crash", "run step exited with status 3: boom: the shadow ran out of disk"),
        ("garbage", "neither JSON nor Prometheus text"),
    ],
)
async def test_a_misbehaving_script_fails_the_run_with_the_reason_and_is_torn_down(
    script: Path, tmp_path: Path, mode: str, reason: str
) -> None:
    markers = tmp_path / "markers"
    run = await run_shadow_comparison(
        _provider(script, mode, markers), TARGET, {"a": 1}, {"a": 2}, duration=1, timeout=6
    )
    assert run.outcome is ShadowOutcome.FAILED
    assert run.failure_reason is not None
    assert reason in run.failure_reason
    steps = (markers / "steps").read_text().split()
    assert steps[:3] == ["create", "apply", "run"]
    assert steps[-1] == "destroy"
    assert shadow_is_gone(markers)
    workdir = Path(json.loads((markers / "request-create.json").read_text())["workdir"])
    assert is_gone(workdir)


async def test_the_script_is_given_the_load_hardware_both_configurations_and_a_deadline(
    script: Path, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    started = time.time()
    run = await run_shadow_comparison(
        _provider(script, "good", markers),
        TARGET,
        {"a": 1},
        {"a": 2},
        rounds=1,
        duration=1,
        min_samples=9,
    )
    assert run.outcome is ShadowOutcome.COMPLETED, run.failure_reason
    create = json.loads((markers / "request-create.json").read_text())
    assert create["load_profile"] == {"postgresql.commits": 50.0}
    assert create["hardware"] == {"cpu_cores": 8.0, "memory_bytes": 2.0**35}
    assert (create["baseline"], create["candidate"]) == ({"a": 1}, {"a": 2})
    assert started < create["deadline_unix"] <= started + 121
    apply = json.loads((markers / "request-apply.json").read_text())
    assert apply["configuration"] == {"max_connections": 100, "a": 2}  # the last applied
    assert apply["side"] == "candidate"
    request = json.loads((markers / "request-run.json").read_text())
    assert request["load_profile"] == {"postgresql.commits": 50.0}
    assert request["duration_s"] == 1
    assert run.baseline["db.client.operation.duration"] == (0.002, 0.0021, 0.0019) * 3
    # Three samples a round where the judge needs nine: the comparison repeats.
    assert run.rounds_requested == 1
    assert len(run.rounds) == 2 * 3
    # The shadow carried 40/s of the target's 50/s: said, not hidden.
    assert "cannot carry the target's load" in run.details["load.postgresql.commits"]
    assert shadow_is_gone(markers)


async def test_the_script_sees_only_a_few_variables_of_the_service_environment(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CFGCLONE_DATABASE_URL", "postgresql://secret@db/cfgclone")
    markers = tmp_path / "markers"
    env_script = tmp_path / "env-shadow"
    env_script.write_text(
        '#!/bin/bash\ncat > /dev/null\nenv > "$1/env-$2"\n'
        'if [ "$2" = run ]; then echo \'{"samples": {"x.duration": 1}}\'; fi\n'
    )
    env_script.chmod(0o755)
    markers.mkdir()
    provider = CommandShadowProvider(
        "fake", CommandShadowSettings(command=(str(env_script), str(markers)))
    )
    run = await run_shadow_comparison(provider, TARGET, {}, {"a": 1}, rounds=1, duration=1)
    assert run.outcome is ShadowOutcome.COMPLETED, run.failure_reason
    seen = (markers / "env-create").read_text()
    assert "secret" not in seen
    assert "CFGCLONE_SHADOW_DIR=" in seen
    assert f"PATH={os.environ['PATH']}" in seen
