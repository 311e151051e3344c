"""User adaptation scripts: JSON in, JSON out, bounded in time, output and memory."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
from pathlib import Path

import psutil
import pytest

from cfgclone.adaptation import (
    SIMULATED,
    AdaptationFailed,
    HostResources,
    ScriptFailure,
    Violation,
    run_adaptation_script,
)

GiB = 1 << 30

SOURCE = HostResources(memory_bytes=64 * GiB, cores=32, architecture="x86_64", os="debian 12")
TARGET = HostResources(memory_bytes=16 * GiB, cores=4, architecture="aarch64", os="debian 12")
CONTENT = {"workers": 32, "cache_mb": 8192, "debug_logging": False}

GOOD = """
import json, sys
given = json.load(sys.stdin)
configuration = given["configuration"]
configuration["workers"] = given["target"]["cores"] * 2
share = given["target"]["memory_bytes"] / given["source"]["memory_bytes"]
configuration["cache_mb"] = round(configuration["cache_mb"] * share)
print("sized for", given["target"]["architecture"], file=sys.stderr)
print(json.dumps(configuration))
"""

FAILING = """
import sys
print("starting", file=sys.stderr)
print("cannot adapt: the target has no GPU", file=sys.stderr)
sys.exit(1)
"""

SLEEPING = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(sys.argv[1], "w") as pids:
    pids.write(f"{child.pid} {__import__('os').getpid()}")
print("thinking hard", file=sys.stderr, flush=True)
time.sleep(120)
"""

INVALID_JSON = """
print("workers = 8")
"""

OUT_OF_BOUNDS = """
import json
print(json.dumps({"workers": 5000, "cache_mb": 1024, "debug_logging": False}))
"""


def write_script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def ended(pid: int, *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


async def test_a_script_s_output_becomes_the_adapted_configuration(tmp_path: Path) -> None:
    script = write_script(tmp_path, "size.py", GOOD)
    adapted = await run_adaptation_script(script, CONTENT, SOURCE, TARGET, SIMULATED, 20)
    assert adapted.content == {"workers": 8, "cache_mb": 2048, "debug_logging": False}
    assert [str(change) for change in adapted.changes] == [
        "cache_mb: 8192 -> 2048 (set by adaptation script size.py)",
        "workers: 32 -> 8 (set by adaptation script size.py)",
    ]


async def test_a_command_with_arguments_runs_without_a_shell(tmp_path: Path) -> None:
    script = write_script(tmp_path, "size.py", GOOD)
    command = [sys.executable, str(script), "; rm -rf /"]
    adapted = await run_adaptation_script(command, CONTENT, SOURCE, TARGET, SIMULATED, 20)
    assert adapted.content["workers"] == 8


async def test_a_script_exiting_with_an_error_fails_with_its_stderr(tmp_path: Path) -> None:
    script = write_script(tmp_path, "gpu.py", FAILING)
    with pytest.raises(AdaptationFailed) as raised:
        await run_adaptation_script(script, CONTENT, SOURCE, TARGET, SIMULATED, 20)
    assert raised.value.failure is ScriptFailure.EXIT_STATUS
    assert str(raised.value) == (
        "adaptation script gpu.py exited with status 1; its stderr ends with: "
        "starting\ncannot adapt: the target has no GPU"
    )


async def test_a_script_past_its_time_limit_is_killed_with_its_children(tmp_path: Path) -> None:
    script = write_script(tmp_path, "slow.py", SLEEPING)
    pid_file = tmp_path / "pids"
    with pytest.raises(AdaptationFailed) as raised:
        await run_adaptation_script(
            [str(script), str(pid_file)], CONTENT, SOURCE, TARGET, SIMULATED, 1.5
        )
    assert raised.value.failure is ScriptFailure.TIMED_OUT
    assert "did not finish within 1.5 s" in str(raised.value)
    assert raised.value.stderr_tail == "thinking hard\n"
    child, script_pid = (int(pid) for pid in pid_file.read_text().split())
    assert ended(child, within=5)
    assert ended(script_pid, within=5)


async def test_processes_a_script_leaves_behind_are_killed(tmp_path: Path) -> None:
    leaves_child = """
import json, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1], "w").write(str(child.pid))
print(json.dumps(json.load(sys.stdin)["configuration"]))
"""
    script = write_script(tmp_path, "leaves.py", leaves_child)
    pid_file = tmp_path / "child.pid"
    # The child holds the script's output open: the answer is taken when the script
    # exits, not at the time limit.
    await run_adaptation_script(
        [str(script), str(pid_file)], CONTENT, SOURCE, TARGET, SIMULATED, 20
    )
    assert ended(int(pid_file.read_text()), within=5)


async def test_output_that_is_not_json_fails(tmp_path: Path) -> None:
    script = write_script(tmp_path, "ini.py", INVALID_JSON)
    with pytest.raises(AdaptationFailed) as raised:
        await run_adaptation_script(script, CONTENT, SOURCE, TARGET, SIMULATED, 20)
    assert raised.value.failure is ScriptFailure.INVALID_JSON
    assert str(raised.value).startswith("adaptation script ini.py did not print valid JSON (")


async def test_json_that_is_not_an_object_fails(tmp_path: Path) -> None:
    script = write_script(tmp_path, "list.py", "print('[1, 2]')")
    with pytest.raises(AdaptationFailed, match="printed a JSON list, not an object"):
        await run_adaptation_script(script, CONTENT, SOURCE, TARGET, SIMULATED, 20)


async def test_output_breaking_the_schema_fails_naming_the_parameter(tmp_path: Path) -> None:
    script = write_script(tmp_path, "greedy.py", OUT_OF_BOUNDS)
    with pytest.raises(AdaptationFailed) as raised:
        await run_adaptation_script(script, CONTENT, SOURCE, TARGET, SIMULATED, 20)
    assert raised.value.failure is ScriptFailure.INVALID_CONFIGURATION
    assert raised.value.violations == (Violation("workers", "must be at most 1024, not 5000"),)
    assert "workers: must be at most 1024, not 5000" in str(raised.value)


async def test_too_much_output_fails_before_the_time_limit(tmp_path: Path) -> None:
    chatty = "import sys, time\nsys.stdout.write('x' * 100000)\nsys.stdout.flush()\ntime.sleep(120)"
    script = write_script(tmp_path, "chatty.py", chatty)
    with pytest.raises(AdaptationFailed) as raised:
        await run_adaptation_script(
            script, CONTENT, SOURCE, TARGET, SIMULATED, 60, max_output_bytes=1000
        )
    assert raised.value.failure is ScriptFailure.OUTPUT_TOO_LARGE


async def test_a_script_is_held_to_its_memory_limit(tmp_path: Path) -> None:
    hungry = "import json, sys\nblock = bytearray(512 * 1024 * 1024)\nprint(json.dumps({}))"
    script = write_script(tmp_path, "hungry.py", hungry)
    with pytest.raises(AdaptationFailed) as raised:
        await run_adaptation_script(
            script, CONTENT, SOURCE, TARGET, SIMULATED, 20, memory_limit_bytes=128 << 20
        )
    assert raised.value.failure is ScriptFailure.EXIT_STATUS
    assert "MemoryError" in raised.value.stderr_tail


async def test_the_service_s_secrets_are_not_passed_to_a_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CFGCLONE_TOKEN", "secret")
    reports_environment = """
import json, os, sys
configuration = json.load(sys.stdin)["configuration"]
configuration["debug_logging"] = "CFGCLONE_TOKEN" in os.environ or "SITE" not in os.environ
print(json.dumps(configuration))
"""
    script = write_script(tmp_path, "env.py", reports_environment)
    adapted = await run_adaptation_script(
        script, CONTENT, SOURCE, TARGET, SIMULATED, 20, environment={"SITE": "eu-1"}
    )
    assert adapted.content["debug_logging"] is False


async def test_a_missing_or_non_executable_script_is_reported(tmp_path: Path) -> None:
    plain = tmp_path / "plain.py"
    plain.write_text("print('{}')")
    with pytest.raises(AdaptationFailed, match="is not an executable file") as raised:
        await run_adaptation_script(plain, CONTENT, SOURCE, TARGET, SIMULATED, 20)
    assert raised.value.failure is ScriptFailure.NOT_STARTED
    with pytest.raises(AdaptationFailed, match="is not found on PATH"):
        await run_adaptation_script(["no-such-adapter"], CONTENT, SOURCE, TARGET, SIMULATED, 20)


async def test_the_script_receives_the_configuration_and_both_hosts_in_a_directory_of_its_own(
    tmp_path: Path,
) -> None:
    received = tmp_path / "received.json"
    echo = f"""
import json, os, sys
given = json.load(sys.stdin)
given["cwd"] = os.getcwd()
open({str(received)!r}, "w").write(json.dumps(given))
print(json.dumps(given["configuration"]))
"""
    script = write_script(tmp_path, "echo.py", echo)
    await run_adaptation_script(script, CONTENT, SOURCE, TARGET, SIMULATED, 20)
    given = json.loads(received.read_text())
    assert given["configuration"] == CONTENT
    assert given["source"]["cores"] == 32
    assert given["target"] == {
        "memory_bytes": 16 * GiB,
        "cores": 4,
        "disk_throughput_bytes_per_second": None,
        "disk_throughput_estimated": False,
        "architecture": "aarch64",
        "os": "debian 12",
    }
    # It ran in a directory of its own, removed afterwards.
    assert given["cwd"] != os.getcwd()
    assert not await asyncio.to_thread(Path(given["cwd"]).exists)
