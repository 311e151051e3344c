"""Helpers for tests that run real throw-away PostgreSQL clusters."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from cfgclone.predictor.shadow import find_postgres_bin_dir

needs_postgres = pytest.mark.skipif(
    find_postgres_bin_dir() is None or shutil.which("pgbench") is None,
    reason="PostgreSQL server binaries and pgbench are not installed",
)


@contextmanager
def open_parent_folder() -> Iterator[Path]:
    """A folder for clusters that the ``postgres`` user can enter (pytest's tmp_path is
    closed to other users), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="cfgclone-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def processes_using(folder: Path) -> list[str]:
    """Every live process whose command line mentions ``folder`` or that works inside it."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(process.info["cmdline"] or ())
        cwd = process.info["cwd"] or ""
        if str(folder) in cmdline or cwd == str(folder) or cwd.startswith(f"{folder}{os.sep}"):
            found.append(f"{process.info['pid']}: {cmdline} (in {cwd})")
    return found


def leftovers(folder: Path) -> list[str]:
    """What a cluster left in or around ``folder``: its entries and live processes."""
    return sorted(str(path) for path in folder.iterdir()) + processes_using(folder)


def is_gone(path: Path) -> bool:
    return not path.exists()


def closed_folder(path: Path) -> Path:
    """A folder only its owner may enter."""
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    return path


def shared_memory_ids() -> set[str]:
    """Ids of the System V shared memory segments on the machine."""
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {line.split()[1] for line in lines if line.split()}


def process_ended(pid: int, *, within: float = 5.0) -> bool:
    """Whether process ``pid`` is gone (or a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False
