"""Bounded subprocesses: each command in a process group of its own, under a time limit.

Appliers, shadow providers and adaptation scripts run other tools
(``ansible-playbook``, ``initdb``, ``pgbench``, a team's own scripts), and those start
children of their own. Each command is started as
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
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
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
    output_overflowed: bool = False
    """True when stdout passed the limit and the command was killed for it
    (``kill_on_overflow``)."""

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


class _Pipes(asyncio.SubprocessProtocol):
    """Keeps the first ``limit`` bytes of stdout and stderr, and tells apart the two
    moments a command ends: when it exits, and when its pipes close (a process it
    started may hold them open after it exits; ``Process.wait`` waits for both)."""

    def __init__(self, limit: int, on_overflow: Callable[[], None] | None) -> None:
        loop = asyncio.get_running_loop()
        self.output = {1: bytearray(), 2: bytearray()}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._limit = limit
        self._on_overflow = on_overflow

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        sink = self.output.get(fd)
        if sink is None:
            return
        room = self._limit - len(sink)
        if room > 0:
            sink += data[:room]
        if fd == 1 and len(data) > room and self._on_overflow is not None:
            self._on_overflow()
            self._on_overflow = None

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


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
    kill_on_overflow: bool = False,
) -> CommandOutcome:
    """Run ``argv`` in a new process group and wait at most ``timeout`` seconds.

    At the time limit, or if the caller is cancelled, the whole process group is
    killed; a timeout is reported in the outcome, a cancellation propagates.
    Output still held open after the command exits (by a process it started) is waited
    for at most ``drain_grace`` seconds, then what is left of the group is killed. With
    ``kill_on_overflow``, a command printing more than ``output_limit`` bytes on stdout is
    killed with its group at once (``output_overflowed``). Raises ``OSError`` when the
    command cannot be started (for example ``FileNotFoundError``).
    """
    if not argv:
        raise ValueError("a command needs at least a program name")
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    loop = asyncio.get_running_loop()
    overflowed = False
    pid = 0

    def overflow() -> None:
        nonlocal overflowed
        overflowed = True
        kill_process_group(pid)

    started = time.monotonic()
    transport, pipes = await loop.subprocess_exec(
        lambda: _Pipes(output_limit, overflow if kill_on_overflow else None),
        *argv,
        stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=True,
    )
    pid = transport.get_pid()
    timed_out = False
    try:
        if input_bytes is not None:
            stdin = transport.get_pipe_transport(0)
            assert isinstance(stdin, asyncio.WriteTransport)
            # A command that answers without reading its input is not an error.
            stdin.write(input_bytes)
            stdin.close()
        try:
            # Shielded: the futures belong to the protocol, and a cancelled wait must not
            # cancel them (the later waits need them).
            async with asyncio.timeout(timeout):
                await asyncio.shield(pipes.exited)
        except TimeoutError:
            timed_out = True
            logger.warning(
                "%s did not finish in %.1f s; killing its process group", argv[0], timeout
            )
            kill_process_group(pid)
            await pipes.exited
        duration = time.monotonic() - started
        try:
            async with asyncio.timeout(drain_grace):
                await asyncio.shield(pipes.closed)
        except TimeoutError:
            # Something the command started still holds its output open: whatever of
            # it is left in the group goes too.
            kill_process_group(pid)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_grace):
                    await asyncio.shield(pipes.closed)
    finally:
        if transport.get_returncode() is None:
            kill_process_group(pid)
        transport.close()
    return CommandOutcome(
        argv=tuple(argv),
        exit_status=None if timed_out else transport.get_returncode(),
        stdout=pipes.output[1].decode("utf-8", "replace"),
        stderr=pipes.output[2].decode("utf-8", "replace"),
        duration_s=duration,
        timed_out=timed_out,
        process_group=pid,
        output_overflowed=overflowed,
    )
