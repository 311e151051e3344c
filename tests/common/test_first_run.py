"""A first run as a new user would make it: as root with no data dir, as a second user,
on ports another suite already serves, with a service that cannot start."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cfgclone.cli.suite import SuiteStartError, free_base_port, running_suite
from cfgclone.common.settings import DatabaseSettings

BIN = Path(sys.executable).parent
CFGCLONE = str(BIN / "cfgclone")
SECOND_USER = "cfgclone-newcomer"
SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages"))

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs the embedded server as root")


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


@as_root
@pytest.mark.slow
def test_as_root_with_no_data_dir_the_embedded_database_runs_under_var_lib(
    tmp_path: Path,
) -> None:
    # root's home is closed to other users, as on most machines.
    home = tmp_path / "root-home"
    home.mkdir(mode=0o700)
    env = _without("CFGCLONE_DATA_DIR", "CFGCLONE_DATABASE_URL")
    env["HOME"] = str(home)
    ran = subprocess.run(
        [CFGCLONE, "migrate"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    pgdata = Path("/var/lib/cfgclone/postgres")
    assert (pgdata / "PG_VERSION").is_file()
    assert pwd.getpwuid(pgdata.stat().st_uid).pw_name == "pgserver"
    assert home.stat().st_mode & 0o777 == 0o700  # left closed


@as_root
@pytest.mark.slow
def test_as_root_with_no_data_dir_up_comes_up_and_the_next_command_finds_it(
    tmp_path: Path,
) -> None:
    # The Quick start as root: `cfgclone up` with nothing set, then any other command.
    home = tmp_path / "root-home"
    home.mkdir(mode=0o700)
    env = _without("CFGCLONE_DATA_DIR", "CFGCLONE_DATABASE_URL", "CFGCLONE_LOG_DIR")
    env = {k: v for k, v in env.items() if not k.endswith("_ADDRESS")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(tmp_path / "config"))
    up = subprocess.Popen(
        [CFGCLONE, "up", "--base-port", str(free_base_port()), "--timeout", "120"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_up(up)
        # No address given: the command reads where the suite listens from up's context.
        systems = subprocess.run(
            [CFGCLONE, "systems", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert systems.returncode == 0, systems.stderr
        assert isinstance(json.loads(systems.stdout), list)
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=60)
    finally:
        _stop(up)
    assert up.returncode == 0, err
    assert "Traceback" not in err
    assert Path("/var/lib/cfgclone/postgres/PG_VERSION").is_file()


@pytest.fixture
def second_user() -> pwd.struct_passwd:
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("needs root, useradd and runuser to act as a second user")
    try:
        pwd.getpwnam(SECOND_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", SECOND_USER], check=True)
    user = pwd.getpwnam(SECOND_USER)
    shutil.rmtree(Path(user.pw_dir) / ".local" / "share" / "cfgclone", ignore_errors=True)
    return user


@pytest.mark.slow
def test_a_second_user_gets_an_embedded_database_of_their_own(
    second_user: pwd.struct_passwd,
) -> None:
    # Root ran first and left its lock file where the package used to share one.
    root_lock = Path("/tmp/.lockfile")
    left_by_us = not root_lock.exists()
    root_lock.touch()
    env = _without("CFGCLONE_DATA_DIR", "CFGCLONE_DATABASE_URL", "XDG_RUNTIME_DIR", "TMPDIR")
    env["HOME"] = second_user.pw_dir
    # The second user cannot read this interpreter's home, so runs the system's Python 3.11
    # on the same installed packages.
    python = shutil.which("python3.11", path="/usr/bin:/usr/local/bin")
    if python is None:
        pytest.skip("no system python3.11 for the second user")
    program = (
        f"import site, sys; site.addsitedir({SITE_PACKAGES!r}); "
        "from cfgclone.cli.main import main; sys.exit(main(['migrate']))"
    )
    try:
        ran = subprocess.run(
            ["runuser", "-u", SECOND_USER, "--", python, "-c", program],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        if left_by_us:
            root_lock.unlink()
    assert ran.returncode == 0, ran.stderr
    pgdata = Path(second_user.pw_dir) / ".local" / "share" / "cfgclone" / "postgres"
    assert pgdata.stat().st_uid == second_user.pw_uid
    assert (Path("/tmp") / f"cfgclone-{second_user.pw_uid}" / ".lockfile").exists()


def _up(base: int, database_url: str, timeout: float, config_home: Path) -> subprocess.Popen[str]:
    # The suite's context file goes to config_home, not to the user's.
    env = dict(os.environ, CFGCLONE_DATABASE_URL=database_url, XDG_CONFIG_HOME=str(config_home))
    return subprocess.Popen(
        [CFGCLONE, "up", "--base-port", str(base), "--timeout", str(timeout)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_up(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "cfgclone is up" in line:
            return
    raise AssertionError("cfgclone up did not come up: " + "".join(seen) + process.stderr.read())


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(2)
        process.wait(60)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@pytest.mark.slow
def test_a_second_up_on_the_same_ports_fails_at_once_naming_the_port(
    fresh_database: str, tmp_path: Path
) -> None:
    base = free_base_port()
    first = _up(base, fresh_database, 120, tmp_path)
    try:
        _wait_up(first)
        # The second waits up to 600 s for SERVING; the subprocess timeout shows it does not.
        second = _up(base, fresh_database, 600, tmp_path / "second")
        try:
            _, err = second.communicate(timeout=90)
        finally:
            _stop(second)
        assert second.returncode == 1
        ports = {f"127.0.0.1:{base + offset}" for offset in range(5)}
        assert any(f"cannot listen on {port}" in err for port in ports), err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert first.poll() is None  # the first suite is untouched
    finally:
        _stop(first)


@pytest.mark.slow
def test_a_service_that_cannot_start_is_reported_with_its_reason(
    fresh_database: str, tmp_path: Path
) -> None:
    env = dict(
        os.environ,
        XDG_CONFIG_HOME=str(tmp_path),
        CFGCLONE_DATABASE_URL=fresh_database,
        CFGCLONE_FINGERPRINT_ALIGN_SECONDS="-1",  # a bad setting only the fingerprint reads
    )
    ran = subprocess.run(
        [CFGCLONE, "up", "--base-port", str(free_base_port()), "--timeout", "600"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert ran.returncode == 1
    assert "fingerprint did not start" in ran.stderr
    assert "CFGCLONE_FINGERPRINT_ALIGN_SECONDS must be positive" in ran.stderr


def test_the_demo_ports_are_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        base = free_base_port()
        assert base + 4 < low


@pytest.mark.slow
def test_a_taken_port_is_reported_as_such_so_the_demo_can_pick_others(
    fresh_database: str,
) -> None:
    base = free_base_port()
    with socket.socket() as holder:  # another program holds the similarity's port
        holder.bind(("127.0.0.1", base + 2))
        holder.listen()
        with (
            pytest.raises(SuiteStartError) as failed,
            running_suite(DatabaseSettings(url=fresh_database), base, "127.0.0.1", 600),
        ):
            pass
    assert failed.value.port_taken
    assert (
        f"similarity did not start: cfgclone-similarity: cannot listen on 127.0.0.1:{base + 2}"
        in (str(failed.value))
    )
