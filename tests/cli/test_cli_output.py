"""Readable output: tables that fit, times to the second, no ``-0.000``, plurals, units;
``--help`` with defaults and settings, ``--version``, shell completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from google.protobuf import timestamp_pb2

from cfgclone.common import display

CFGCLONE = str(Path(sys.executable).parent / "cfgclone")


def test_a_long_last_column_is_cut_to_the_width() -> None:
    why = "predicted NEGATIVE: app.response_time +40% " * 15
    lines = display.table_lines(
        ("change", "state", "why"), [("db-02/changes/9", "REJECTED", why)], 80
    )
    assert all(len(line) <= 80 for line in lines)
    assert lines[1].endswith("…")
    assert lines[0].split() == ["change", "state", "why"]
    # Short tables are left alone.
    assert display.table_lines(("a", "b"), [("1", "2")], 80) == ["a  b", "1  2"]


def test_times_numbers_plurals_and_units() -> None:
    stamp = timestamp_pb2.Timestamp(seconds=1_796_227_633, nanos=123_456_000)
    assert display.when(stamp) == "2026-12-02 16:07:13Z"
    assert display.when(timestamp_pb2.Timestamp()) == "-"
    assert display.fixed(-0.0001) == "0.000"
    assert display.fixed(-0.25) == "-0.250"
    assert display.fixed(-0.0001, sign=True) == "+0.000"
    assert display.general(-1e-9, 3) == "-1e-09"
    assert display.general(-0.0, 3, sign=True) == "+0"
    assert display.plural(1, "target") == "1 target"
    assert display.plural(3, "target") == "3 targets"
    assert display.unit_of("http.server.request.duration") == "s"
    assert display.unit_of('system.disk.io{direction="read"}') == "By/s"
    assert display.unit_of("system.cpu.utilization") == "1"
    assert display.unit_of("custom.thing") == "-"


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CFGCLONE, *argv],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_and_help_show_defaults_and_settings() -> None:
    version = _run("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("cfgclone 0.")
    shown = _run("--help").stdout
    for setting in ("CFGCLONE_<SERVICE>_ADDRESS", "CFGCLONE_TOKEN", "CFGCLONE_DATA_DIR"):
        assert setting in shown
    assert "register-python-argcomplete cfgclone" in shown
    clone = _run("clone", "--help").stdout
    assert "(default: learned)" in clone
    assert "(default: 0)" in clone
    up = _run("up", "--help").stdout
    assert "(default: 127.0.0.1)" in up


def test_shell_completion_completes_commands_and_flags(tmp_path: Path) -> None:
    def complete(line: str) -> list[str]:
        out = tmp_path / "completions"
        ran = _run(
            env={
                "_ARGCOMPLETE": "1",
                "COMP_LINE": line,
                "COMP_POINT": str(len(line)),
                "_ARGCOMPLETE_IFS": "\n",
                "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
            }
        )
        assert ran.returncode == 0, ran.stderr
        return out.read_text().split()

    assert complete("cfgclone clo") == ["clone"]
    assert "--watch" in complete("cfgclone approve db-02/changes/9 --w")
