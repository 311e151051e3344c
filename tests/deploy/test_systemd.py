"""deploy/systemd/cfgclone-agent.service: accepted by systemd-analyze, hardened, and in
step with deploy/agent.example.toml."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, check_command, require_tool, run

UNIT = DEPLOY / "systemd" / "cfgclone-agent.service"
EXAMPLE = DEPLOY / "agent.example.toml"
INSTALLED_PROGRAM = "/opt/cfgclone/bin/cfgclone"
"""Where docs/deploy.md installs cfgclone on a machine (a virtual environment)."""
EXPOSURE_THRESHOLD = 25
"""systemd-analyze security's exposure, in tenths (2.5 of 10); "OK" is below 4."""


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file and their (key, value) pairs; keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{line!r} outside a section"
        key, separator, value = line.partition("=")
        assert separator, f"not key=value: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


@pytest.fixture
def installed_unit(tmp_path: Path) -> Path:
    """The unit as it would load on a machine with cfgclone installed: the same file with
    ExecStart's program moved to a stub, since verify insists the program exists."""
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED_PROGRAM} " in text
    stub = tmp_path / "bin" / "cfgclone"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(f"ExecStart={INSTALLED_PROGRAM} ", f"ExecStart={stub} "))
    return unit


def systemd_analyze() -> str:
    return require_tool("systemd-analyze", "apt-get install systemd")


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", "--man=no", unit.name],
        cwd=unit.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_systemd_analyze_verify_accepts_the_unit(installed_unit: Path) -> None:
    completed = verify(installed_unit)
    # verify exits 0 on warnings such as an unknown key: any output is a failure too.
    assert (completed.returncode, completed.stdout, completed.stderr) == (0, "", "")


def test_systemd_analyze_verify_reports_a_misspelt_key(installed_unit: Path) -> None:
    """Proves the check above is not vacuous: a wrong unit does produce output."""
    text = installed_unit.read_text()
    installed_unit.write_text(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    assert "Unknown key" in verify(installed_unit).stderr


def test_unit_is_hardened_below_the_exposure_threshold(installed_unit: Path) -> None:
    run(
        [
            systemd_analyze(),
            "security",
            "--offline=yes",
            f"--threshold={EXPOSURE_THRESHOLD}",
            installed_unit.name,
        ],
        cwd=installed_unit.parent,
    )


def test_unit_runs_the_agent_unprivileged_with_a_state_directory_and_restarts() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    service = dict(unit["Service"])  # the last value of each key wins, as in systemd
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "", "root")
    assert service["ProtectSystem"] == "strict"
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert service["StateDirectory"] == "cfgclone-agent"
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]
    (exec_start,) = values(unit, "Service", "ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0] == INSTALLED_PROGRAM
    check_command(argv)
    assert argv[1:] == ["agent", "--config", "/etc/cfgclone/agent.toml"]


def test_example_config_uses_the_units_spool_and_credentials() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    config = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    (state,) = values(unit, "Service", "StateDirectory")
    assert Path(config["spool"]["path"]).is_relative_to(Path("/var/lib") / state)
    credentials_folder = f"/run/credentials/{UNIT.name}/"
    loaded = {v.split(":", 1)[0] for v in values(unit, "Service", "LoadCredential")}
    for key in ("token_file", "ca_file", "cert_file", "key_file"):
        path = config["collector"].get(key)
        if path is not None and path.startswith(credentials_folder):
            assert path.removeprefix(credentials_folder) in loaded, key
    # Commented-out TLS credentials in the unit match commented-out keys in the example.
    commented = set(re.findall(r"^#LoadCredential=([^:]+):", UNIT.read_text(), re.MULTILINE))
    example_comments = set(
        re.findall(
            rf"^# \w+_file = \"{re.escape(credentials_folder)}([^\"]+)\"",
            EXAMPLE.read_text(),
            re.MULTILINE,
        )
    )
    assert commented == example_comments
