"""Bounded subprocesses: each command in a process group of its own, under a time limit.

Appliers and shadow providers run other tools (``ansible-playbook``, ``initdb``,
``pgbench``), and those start children of their own. Each command is started as
the leader of a new session, so at its time limit, or when the caller is
cancelled, the whole group is killed at once and nothing it started lingers.
Arguments are passed as a list, never through a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_OUTPUT_LIMIT", "CommandOutcome", "kill_process_group", "run_bounded"]

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_LIMIT = 1 << 20
"""Bytes of each of stdout and stderr kept; the rest is read and dropped."""


@dataclass(frozen=True)
class CommandOutcome:
    """How a bounded command ended."""

    argv: tuple[str, ...]
    """The command as run."""
    exit_status: int | None
    """Exit status (negative: killed by that signal); None when killed at the time limit."""
    stdout: str
    stderr: str
    duration_s: float
    """Wall time from start to exit."""
    timed_out: bool
    """True when the command was killed at its time limit."""
    process_group: int | None = None
    """Id of the process group the command led; what it left running is still in it."""

    @property
    def succeeded(self) -> bool:
        """Exited with status 0 within its time limit."""
        return self.exit_status == 0

    @property
    def output(self) -> str:
        """stdout followed by stderr, as a person would want to read them."""
        if self.stdout and self.stderr:
            return self.stdout.rstrip("\n") + "\n" + self.stderr
        return self.stdout or self.stderr


def kill_process_group(pgid: int) -> None:
    """SIGKILL every process of the group; a group already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _drain(stream: asyncio.StreamReader | None, sink: bytearray, limit: int) -> None:
    """Read a pipe to its end, keeping the first ``limit`` bytes."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        room = limit - len(sink)
        if room > 0:
            sink += chunk[:room]


async def run_bounded(
    argv: Sequence[str],
    *,
    # The limit is a parameter, not the caller's asyncio.timeout, because reaching it is
    # an outcome to report (with the output so far), not an error to propagate.
    timeout: float,  # noqa: ASYNC109
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input_bytes: bytes | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    drain_grace: float = 2.0,
) -> CommandOutcome:
    """Run ``argv`` in a new process group and wait at most ``timeout`` seconds.

    At the time limit, or if the caller is cancelled, the whole process group is
    killed; a timeout is reported in the outcome, a cancellation propagates.
    Output still held open after the command exits is waited for at most
    ``drain_grace`` seconds, then what is left of the group is killed. Raises ``OSError`` when the
    command cannot be started (for example ``FileNotFoundError``).
    """
    if not argv:
        raise ValueError("a command needs at least a program name")
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if input_bytes is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=True,
    )
    stdout, stderr = bytearray(), bytearray()
    readers = [
        asyncio.create_task(_drain(process.stdout, stdout, output_limit)),
        asyncio.create_task(_drain(process.stderr, stderr, output_limit)),
    ]
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                if input_bytes is not None and process.stdin is not None:
                    process.stdin.write(input_bytes)
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        await process.stdin.drain()
                    process.stdin.close()
                await process.wait()
        except TimeoutError:
            timed_out = True
            logger.warning(
                "%s did not finish in %.1f s; killing its process group", argv[0], timeout
            )
            kill_process_group(process.pid)
            await process.wait()
        duration = time.monotonic() - started
        _, still_open = await asyncio.wait(readers, timeout=drain_grace)
        if still_open:
            # Something the command started still holds its output open: whatever of
            # it is left in the group goes too.
            kill_process_group(process.pid)
    finally:
        if process.returncode is None:
            kill_process_group(process.pid)
        for reader in readers:
            reader.cancel()
    return CommandOutcome(
        argv=tuple(argv),
        exit_status=None if timed_out else process.returncode,
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
        duration_s=duration,
        timed_out=timed_out,
        process_group=process.pid,
    )
