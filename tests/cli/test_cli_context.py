"""``cfgclone up`` leaves where its services listen for the other commands; flags and
variables override it; an unreachable service is named with the setting that chose it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cfgclone.cli.suite import free_base_port

CFGCLONE = str(Path(sys.executable).parent / "cfgclone")


def _env(config_home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("CFGCLONE_") and k.endswith("_ADDRESS"))
    }
    env["XDG_CONFIG_HOME"] = str(config_home)
    env.update(extra)
    return env


def _cfgclone(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CFGCLONE, *argv], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.slow
def test_commands_follow_up_on_any_ports_and_name_what_is_unreachable(
    fresh_database: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, CFGCLONE_DATABASE_URL=fresh_database)
    base = free_base_port()
    up = subprocess.Popen(
        [CFGCLONE, "up", "--base-port", str(base)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    try:
        for line in up.stdout:
            if "cfgclone is up" in line:
                break
        context_file = tmp_path / "cfgclone" / "context.json"
        assert context_file.stat().st_mode & 0o777 == 0o600

        shown = _cfgclone(env, "context", "--json")
        assert shown.returncode == 0, shown.stderr
        where = json.loads(shown.stdout)
        assert where["file"] == str(context_file)
        assert where["services"]["collector"]["address"] == f"127.0.0.1:{base}"
        assert where["services"]["orchestrator"]["address"] == f"127.0.0.1:{base + 4}"
        assert "written by cfgclone up" in where["services"]["predictor"]["from"]

        # Every command finds the suite without a variable set.
        status = _cfgclone(env, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert all(json.loads(status.stdout).values())
        assert _cfgclone(env, "systems").returncode == 0
        assert _cfgclone(env, "changes").returncode == 0

        # A flag, then a variable, override the file; the error names the one used.
        flagged = _cfgclone(env, "--collector", "127.0.0.1:1", "systems")
        assert flagged.returncode == 3
        assert flagged.stderr.strip().splitlines() == [
            "cfgclone: the collector at 127.0.0.1:1 (from --collector) does not answer; "
            "is the suite up (cfgclone up)? Set CFGCLONE_COLLECTOR_ADDRESS or --collector "
            "to where it listens"
        ]
        variable = _cfgclone({**env, "CFGCLONE_PREDICTOR_ADDRESS": "127.0.0.1:1"}, "changes")
        assert variable.returncode == 3
        assert "the predictor at 127.0.0.1:1 (from CFGCLONE_PREDICTOR_ADDRESS)" in variable.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
        up.stdout.close()
    assert up.returncode == 0
    assert not context_file.exists()  # a stopped suite leaves no stale context

    gone = _cfgclone(env, "--collector", f"127.0.0.1:{base}", "systems")
    assert gone.returncode == 3
    assert f"the collector at 127.0.0.1:{base} (from --collector) does not answer" in gone.stderr
