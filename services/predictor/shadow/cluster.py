"""A throw-away PostgreSQL cluster in a temporary folder.

The PostgreSQL shadow provider tries changes on one of these, and tests of the
PostgreSQL applier use one instead of a shared server. The cluster listens
only on a Unix socket inside its own folder (no TCP port to collide with), is
started as the leader of its own process group, and is removed with
everything it made when the context ends: fast shutdown first, then SIGKILL
of the whole group, the shared memory segment of an unclean stop, the folder.

PostgreSQL refuses to run as root, so as root the cluster's folder belongs to
an unprivileged OS user (``postgres``) and ``initdb`` and the server run as
that user through ``setpriv``; as any other user they run directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from psycopg.conninfo import make_conninfo

from cfgclone.common.processes import kill_process_group, run_bounded
from cfgclone.predictor.shadow.model import ShadowFailed

__all__ = [
    "SUPERUSER",
    "ClusterSettings",
    "ThrowawayCluster",
    "find_postgres_bin_dir",
    "throwaway_cluster",
]

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
"""The database superuser of every throw-away cluster (trust authentication)."""

WORKDIR_PREFIX = "cfgclone-shadow-"


def find_postgres_bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries installed (Debian layout first, then PATH)."""
    candidates = sorted(
        (path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "initdb").exists()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    if candidates:
        return candidates[0]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how throw-away clusters run."""

    bin_dir: Path | None = None
    """PostgreSQL server binaries (``initdb``, ``postgres``); None: the newest installed."""
    parent: Path | None = None
    """Folder the temporary cluster folders are made in; None: the system's temp folder.
    As root it must be open to ``os_user``."""
    os_user: str = "postgres"
    """Unprivileged OS user the server runs as when started by root."""
    port: int = 5432
    """Port number in the socket's name (the socket is private, so no collision)."""
    initdb_timeout_s: float = 60.0
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    """Wait for a fast shutdown before the server's process group is killed."""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be between 1 and 65535")
        for limit in (self.initdb_timeout_s, self.start_timeout_s, self.stop_timeout_s):
            if limit <= 0:
                raise ValueError("time limits must be positive")


@dataclass(frozen=True)
class _OsUser:
    name: str
    uid: int
    gid: int


class ThrowawayCluster:
    """One temporary PostgreSQL cluster. Make it with ``throwaway_cluster``."""

    def __init__(self, workdir: Path, bin_dir: Path, settings: ClusterSettings) -> None:
        self.workdir = workdir
        """The temporary folder holding everything of the cluster."""
        self._bin_dir = bin_dir
        self._settings = settings
        self._owner = _server_user(settings.os_user)
        self._server: asyncio.subprocess.Process | None = None
        self._server_groups: list[int] = []

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.workdir

    @property
    def port(self) -> int:
        return self._settings.port

    @property
    def log_file(self) -> Path:
        return self.workdir / "server.log"

    @property
    def conninfo(self) -> str:
        """libpq connection string of the superuser to the ``postgres`` database."""
        return make_conninfo(
            host=str(self.socket_dir), port=str(self.port), user=SUPERUSER, dbname="postgres"
        )

    @property
    def bin_dir(self) -> Path:
        return self._bin_dir

    @property
    def server_pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        if self._server is None or self._server.returncode is not None:
            return None
        return self._server.pid

    def environment(self) -> dict[str, str]:
        """A small, predictable environment for the cluster's programs."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "LANG": "C",
            "PGCONNECT_TIMEOUT": "10",
        }

    def server_processes(self) -> list[psutil.Process]:
        """The postmaster and every process it started (backends, background workers)."""
        pid = self.server_pid
        if pid is None:
            return []
        try:
            postmaster = psutil.Process(pid)
            return [postmaster, *postmaster.children(recursive=True)]
        except psutil.Error:
            return []

    async def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if self.server_pid is not None:
            return
        argv = [
            *self._as_owner(),
            str(self._bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            # Command-line settings outrank every configuration file, so nothing a
            # target's configuration says can open a port or start archiving.
            "-c",
            "listen_addresses=",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            "-c",
            f"port={self.port}",
            "-c",
            "logging_collector=off",
            "-c",
            "huge_pages=off",
            "-c",
            "archive_mode=off",
        ]
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        with self.log_file.open("ab") as log:
            self._server = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.workdir,
                env=self.environment(),
                start_new_session=True,
            )
        self._server_groups.append(self._server.pid)
        await self._wait_until_ready()

    async def stop(self) -> None:
        """Fast shutdown; the process group is killed if it takes too long."""
        server = self._server
        if server is None:
            return
        if server.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                server.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(server.wait(), self._settings.stop_timeout_s)
            except TimeoutError:
                logger.warning("PostgreSQL in %s ignored a fast shutdown; killing it", self.workdir)
                kill_process_group(server.pid)
                with contextlib.suppress(TimeoutError):  # remove() makes sure of it
                    await asyncio.wait_for(server.wait(), 5.0)
        self._server = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server log, for error messages."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def initialise(self) -> None:
        """Create the cluster's data folder with ``initdb``."""
        outcome = await run_bounded(
            [
                *self._as_owner(),
                str(self._bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=self._settings.initdb_timeout_s,
            cwd=self.workdir,
            env=self.environment(),
        )
        if not outcome.succeeded:
            what = "timed out" if outcome.timed_out else f"exited with {outcome.exit_status}"
            raise ShadowFailed(f"initdb {what}: {_tail(outcome.output)}")

    def remove(self) -> None:
        """Kill whatever of the cluster still runs and delete its folder.

        Synchronous and bounded, so it completes even while the caller is being
        cancelled.
        """
        for group in self._server_groups:
            kill_process_group(group)
        _wait_for_groups_to_exit(self._server_groups, timeout=5.0)
        self._release_shared_memory()
        self._server = None
        for attempt in range(3):
            shutil.rmtree(self.workdir, ignore_errors=True)
            if not self.workdir.exists():
                break
            time.sleep(0.1 * (attempt + 1))
        else:
            logger.error("could not remove the shadow cluster folder %s", self.workdir)

    def _release_shared_memory(self) -> None:
        """Remove the System V segment a killed postmaster leaves behind.

        A clean shutdown removes ``postmaster.pid`` and the segment; a kill leaves
        both, and the segment's id is in the file.
        """
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text(encoding="ascii", errors="replace").splitlines()
        except OSError:
            return
        fields = lines[6].split() if len(lines) > 6 else []
        if len(fields) != 2 or not fields[1].isdigit():
            return
        ipcrm = shutil.which("ipcrm")
        if ipcrm is None:
            logger.warning("ipcrm is missing; shared memory segment %s is left", fields[1])
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([ipcrm, "-m", fields[1]], capture_output=True, timeout=5, check=False)

    def _as_owner(self) -> list[str]:
        """The prefix that runs a program as the cluster's OS user (none when not root)."""
        if self._owner is None:
            return []
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            return [
                setpriv,
                f"--reuid={self._owner.uid}",
                f"--regid={self._owner.gid}",
                "--init-groups",
            ]
        runuser = shutil.which("runuser")
        if runuser is not None:
            return [runuser, "-u", self._owner.name, "--"]
        raise ShadowFailed("running PostgreSQL as root needs setpriv or runuser")

    async def _wait_until_ready(self) -> None:
        """Wait for ``postmaster.pid`` to say ``ready``, or report why the server died."""
        server = self._server
        if server is None:
            raise ShadowFailed("the PostgreSQL server was not started")
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + self._settings.start_timeout_s
        while time.monotonic() < deadline:
            if server.returncode is not None:
                self._server = None
                raise ShadowFailed(
                    f"PostgreSQL did not start (exit status {server.returncode}): {self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                lines = pid_file.read_text(encoding="ascii", errors="replace").splitlines()
                if len(lines) > 7 and lines[7].strip() == "ready":
                    return
            await asyncio.sleep(0.05)
        kill_process_group(server.pid)
        raise ShadowFailed(
            f"PostgreSQL did not start within {self._settings.start_timeout_s:g} s: "
            f"{self.log_tail()}"
        )


@contextlib.asynccontextmanager
async def throwaway_cluster(
    settings: ClusterSettings | None = None,
) -> AsyncIterator[ThrowawayCluster]:
    """A new, running cluster, removed with all its processes and files at the end.

    Raises ``ShadowFailed`` when PostgreSQL is not installed, the folder is not
    usable, or the cluster does not initialise or start (nothing is left then).
    """
    settings = settings or ClusterSettings()
    bin_dir = settings.bin_dir or find_postgres_bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        raise ShadowFailed("no PostgreSQL server binaries (initdb, postgres) are installed")
    try:
        workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=settings.parent))
    except OSError as error:
        raise ShadowFailed(f"cannot make a folder for the shadow cluster: {error}") from error
    cluster = ThrowawayCluster(workdir, bin_dir, settings)
    try:
        owner = _server_user(settings.os_user)
        if owner is not None:
            _check_open_to(workdir, owner)
            os.chown(workdir, owner.uid, owner.gid)
        await cluster.initialise()
        await cluster.start()
        logger.info("throw-away PostgreSQL cluster running in %s", workdir)
        yield cluster
    finally:
        try:
            await cluster.stop()
        except Exception:
            logger.exception("stopping the cluster in %s failed", workdir)
        finally:
            cluster.remove()
            logger.info("throw-away PostgreSQL cluster in %s removed", workdir)


def _server_user(name: str) -> _OsUser | None:
    """The OS user to run PostgreSQL as: ``name`` when we are root, else nobody else."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError as error:
        raise ShadowFailed(
            f"PostgreSQL cannot run as root and there is no OS user {name!r} to run it as"
        ) from error
    return _OsUser(name, entry.pw_uid, entry.pw_gid)


def _check_open_to(workdir: Path, owner: _OsUser) -> None:
    """Every folder above the cluster must let its OS user through."""
    for folder in workdir.resolve().parents:
        mode = folder.stat()
        if mode.st_uid == owner.uid:
            continue
        if not mode.st_mode & stat.S_IXOTH:
            raise ShadowFailed(
                f"{folder} is closed to the {owner.name} user, who runs the shadow cluster; "
                "choose a parent folder open to it"
            )


def _wait_for_groups_to_exit(groups: list[int], *, timeout: float) -> None:
    """Wait until no live (non-zombie) process is left in any of the process groups."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for process in psutil.process_iter():
            try:
                if os.getpgid(process.pid) in groups and process.status() != psutil.STATUS_ZOMBIE:
                    alive = True
                    break
            except (OSError, psutil.Error):
                continue
        if not alive:
            return
        time.sleep(0.05)
    logger.error("processes of groups %s outlived SIGKILL", groups)


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
