"""Bounded subprocesses: output, exit status, and the whole group killed at the limit."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import psutil
import pytest

from cfgclone.predictor.appliers import run_bounded

SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1], "w").write(str(child.pid))
print("started", flush=True)
time.sleep(120)
"""


def _ended(pid: int, *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _wait_for_content(path: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (path.exists() and path.read_text()):
        time.sleep(0.05)


def _pid_in(path: Path) -> int:
    return int(path.read_text())


async def test_output_and_exit_status_are_recorded() -> None:
    outcome = await run_bounded(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); exit(4)"],
        timeout=20,
    )
    assert (outcome.exit_status, outcome.stdout, outcome.stderr) == (4, "out\n", "err\n")
    assert outcome.output == "out\nerr\n"
    assert not outcome.succeeded
    assert not outcome.timed_out


async def test_input_reaches_the_command() -> None:
    outcome = await run_bounded(
        [sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"],
        timeout=20,
        input_bytes=b"configuration",
    )
    assert outcome.stdout == "CONFIGURATION\n"


async def test_the_time_limit_kills_the_command_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    outcome = await run_bounded(
        [sys.executable, "-c", SPAWNER, str(pid_file)], timeout=2, drain_grace=1
    )
    assert outcome.timed_out
    assert outcome.exit_status is None
    assert outcome.stdout == "started\n"
    assert _ended(_pid_in(pid_file), within=5)


async def test_cancelling_the_caller_kills_the_group_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    task = asyncio.create_task(
        run_bounded([sys.executable, "-c", SPAWNER, str(pid_file)], timeout=60)
    )
    await asyncio.to_thread(_wait_for_content, pid_file)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _ended(_pid_in(pid_file), within=5)


async def test_a_missing_program_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await run_bounded([str(tmp_path / "missing")], timeout=5)
