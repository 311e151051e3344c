"""Every entry point answers a bad setting or flag with one line naming it, and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

BAD_SETTINGS = [
    ({"CFGCLONE_PORT": "abc"}, "CFGCLONE_PORT"),
    ({"CFGCLONE_DATABASE_URL": "mysql://x"}, "CFGCLONE_DATABASE_URL"),
    ({"CFGCLONE_TLS_CA": "/nope"}, "CFGCLONE_TLS_CA"),
    ({"CFGCLONE_LOG_FORMAT": "xml"}, "CFGCLONE_LOG_FORMAT"),
    ({"CFGCLONE_DB_POOL_MAX": "many"}, "CFGCLONE_DB_POOL_MAX"),
]


def _run(
    argv: list[str], env: dict[str, str] | None = None, *, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env={**{k: v for k, v in os.environ.items() if k not in unset}, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _assert_one_line(ran: subprocess.CompletedProcess[str], named: str) -> None:
    assert ran.returncode == 2, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert named in lines[0]
    assert ran.stdout == ""


@pytest.mark.parametrize("service", ["collector", "fingerprint", "similarity", "predictor"])
@pytest.mark.parametrize(("env", "named"), BAD_SETTINGS)
def test_a_service_with_a_bad_setting_says_which_in_one_line(
    service: str, env: dict[str, str], named: str
) -> None:
    _assert_one_line(_run([str(BIN / f"cfgclone-{service}")], env), named)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CFGCLONE_DATABASE_URL": "mysql://x"}, "CFGCLONE_DATABASE_URL"),
        ({"CFGCLONE_DB_POOL_MIN": "x"}, "CFGCLONE_DB_POOL_MIN"),
    ],
)
@pytest.mark.parametrize("command", [["migrate"], ["up"], ["demo"]])
def test_cfgclone_with_a_bad_database_setting_says_which(
    command: list[str], env: dict[str, str], named: str
) -> None:
    _assert_one_line(_run([str(BIN / "cfgclone"), *command], env), named)


@pytest.mark.parametrize("command", [["systems"], ["status"], ["changes"], ["cohorts"]])
def test_cfgclone_with_a_missing_tls_file_says_which(command: list[str]) -> None:
    _assert_one_line(
        _run([str(BIN / "cfgclone"), *command], {"CFGCLONE_TLS_CA": "/nope"}), "CFGCLONE_TLS_CA"
    )


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["cfgclone", "systems", "--bogus"], "--bogus"),
        (["cfgclone", "similar", "db-01", "--limit", "ten"], "--limit"),
        (["cfgclone", "apply", "db-01"], "--set"),
        (["cfgclone", "apply", "db-01", "--set", "novalue"], "--set"),
        (["cfgclone", "clone", "db-01"], "--selector"),
        (["cfgclone", "up", "--base-port", "70000"], "--base-port"),
        (["cfgclone", "up", "--base-port", "abc"], "--base-port"),
        (["cfgclone-collector", "--port", "abc"], "--port"),
        (["cfgclone", "agent", "--log-format", "xml"], "--log-format"),
        (["cfgclone-agent", "--nope"], "--nope"),
    ],
)
def test_bad_usage_is_one_line_naming_the_flag(argv: list[str], named: str) -> None:
    _assert_one_line(_run([str(BIN / argv[0]), *argv[1:]]), named)


def test_the_agent_with_a_bad_log_level_says_which(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('system = "db-01"\ncollector = "127.0.0.1:1"\n')
    ran = _run([str(BIN / "cfgclone"), "agent", "-c", str(config), "--log-level", "loud"])
    _assert_one_line(ran, "CFGCLONE_LOG_LEVEL")


def test_a_call_timeout_that_is_not_positive_says_which() -> None:
    ran = _run([str(BIN / "cfgclone"), "systems"], {"CFGCLONE_CALL_TIMEOUT_SECONDS": "-1"})
    _assert_one_line(ran, "CFGCLONE_CALL_TIMEOUT_SECONDS")


@pytest.mark.parametrize("command", [["migrate"], ["up"], ["demo"]])
def test_a_data_dir_that_cannot_be_made_says_which(command: list[str]) -> None:
    ran = _run(
        [str(BIN / "cfgclone"), *command],
        {"CFGCLONE_DATA_DIR": "/proc/no-such-dir"},
        unset=("CFGCLONE_DATABASE_URL",),
    )
    _assert_one_line(ran, "CFGCLONE_DATA_DIR")


def test_a_log_dir_that_cannot_be_made_says_which_before_anything_starts() -> None:
    # The database is never reached: the log folder is checked first.
    env = {
        "CFGCLONE_LOG_DIR": "/proc/no-such-dir",
        "CFGCLONE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    _assert_one_line(_run([str(BIN / "cfgclone"), "up"], env), "CFGCLONE_LOG_DIR")
