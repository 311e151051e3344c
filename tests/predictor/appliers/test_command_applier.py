"""The command applier with a fake tool: check before apply, timeouts, failures, files."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from cfgclone.predictor.appliers import (
    ApplyFailed,
    CommandApplier,
    CommandApplierSettings,
    ManagedSystem,
)
from cfgclone.predictor.appliers.command import render_command

FAKE_TOOL = '''
"""A stand-in for a team's configuration tool: logs each call, obeys behaviour.json."""
import json, os, subprocess, sys, time

mode, host, path = sys.argv[1], sys.argv[2], sys.argv[3]
here = os.path.dirname(os.path.abspath(__file__))
behaviour = json.load(open(os.path.join(here, "behaviour.json")))
if mode == "read":
    configuration = None
elif path.endswith(".json"):
    configuration = json.load(open(path))
else:
    configuration = open(path).read()
with open(os.path.join(here, "calls.log"), "a") as log:
    log.write(json.dumps({"mode": mode, "host": host, "configuration": configuration}) + "\\n")
if mode == "read":
    print(json.dumps(behaviour.get("current", {})))
    sys.exit(0)
print("would change" if mode == "check" else "changed")
if behaviour.get("sleep_" + mode):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    open(os.path.join(here, "child.pid"), "w").write(str(child.pid))
    time.sleep(behaviour["sleep_" + mode])
if behaviour.get("fail_" + mode):
    print("error: the tool refused the " + mode, file=sys.stderr)
    sys.exit(3)
'''

SYSTEM = ManagedSystem("systems/web-01", host="web-01")


class FakeTool:
    """The fake tool in a folder, with its behaviour switches and its call log."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.script = folder / "tool.py"
        self.script.write_text(FAKE_TOOL)
        self.behave()

    def behave(self, **switches: object) -> None:
        (self.folder / "behaviour.json").write_text(json.dumps(switches))

    def template(self, mode: str) -> str:
        return shlex.join([sys.executable, str(self.script), mode, "{host}", "{file}"])

    def settings(self, **overrides: object) -> CommandApplierSettings:
        options: dict[str, object] = {
            "apply_command": self.template("apply"),
            "check_command": self.template("check"),
            "timeout_s": 20.0,
        }
        options.update(overrides)
        return CommandApplierSettings(**options)  # type: ignore[arg-type]

    def left_a_file(self, name: str) -> bool:
        return (self.folder / name).exists()

    def child_pid(self) -> int:
        """The process the tool started before it hung."""
        return int((self.folder / "child.pid").read_text())

    def calls(self) -> list[dict[str, object]]:
        log = self.folder / "calls.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


def _gone(pid: int, *, within: float) -> bool:
    """Whether the process ends (or is a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def tool(tmp_path: Path) -> FakeTool:
    return FakeTool(tmp_path)


async def test_the_check_runs_before_the_apply_with_the_same_file(tool: FakeTool) -> None:
    applier = CommandApplier(tool.settings())
    result = await applier.apply(SYSTEM, {"workers": 8, "debug": False})
    assert [call["mode"] for call in tool.calls()] == ["check", "apply"]
    assert all(call["host"] == "web-01" for call in tool.calls())
    assert all(call["configuration"] == {"workers": 8, "debug": False} for call in tool.calls())
    assert result.exit_status == 0
    assert result.check_output.strip() == "would change"
    assert result.output.strip() == "changed"
    assert result.changed == ("debug", "workers")  # nothing was known before
    assert result.duration_s > 0


async def test_changed_parameters_are_the_difference_from_the_last_apply(tool: FakeTool) -> None:
    applier = CommandApplier(tool.settings(restart_parameters=frozenset({"workers"})))
    await applier.apply(SYSTEM, {"workers": 8, "debug": False})
    previous = await applier.read_current(SYSTEM)
    second = await applier.apply(SYSTEM, {"workers": 16, "debug": False})
    assert second.changed == ("workers",)
    assert second.restart_required == ("workers",)
    back = await applier.rollback(SYSTEM, previous)
    assert back.changed == ("workers",)
    assert tool.calls()[-1] == {
        "mode": "apply",
        "host": "web-01",
        "configuration": {"workers": 8, "debug": False},
    }


async def test_a_failing_check_stops_before_the_real_run(tool: FakeTool) -> None:
    tool.behave(fail_check=True)
    applier = CommandApplier(tool.settings())
    with pytest.raises(ApplyFailed, match=r"check of systems/web-01.*status 3") as failure:
        await applier.apply(SYSTEM, {"workers": 8})
    assert failure.value.exit_status == 3
    assert "refused the check" in failure.value.output
    assert [call["mode"] for call in tool.calls()] == ["check"]


async def test_a_non_zero_exit_of_the_apply_raises_with_the_output(tool: FakeTool) -> None:
    tool.behave(fail_apply=True)
    applier = CommandApplier(tool.settings())
    with pytest.raises(ApplyFailed, match="exited with status 3") as failure:
        await applier.apply(SYSTEM, {"workers": 8})
    assert failure.value.exit_status == 3
    assert "would change" in failure.value.output  # the check's output is kept too
    assert "refused the apply" in failure.value.output
    assert not failure.value.timed_out


async def test_a_tool_past_its_time_limit_is_killed_with_its_children(tool: FakeTool) -> None:
    tool.behave(sleep_apply=60)
    applier = CommandApplier(tool.settings(timeout_s=2.0))
    started = time.monotonic()
    with pytest.raises(ApplyFailed, match="did not finish in 2 s") as failure:
        await applier.apply(SYSTEM, {"workers": 8})
    assert time.monotonic() - started < 15
    assert failure.value.timed_out
    assert failure.value.exit_status is None
    assert _gone(tool.child_pid(), within=5.0)


async def test_the_configuration_can_be_handed_over_as_yaml(tool: FakeTool) -> None:
    applier = CommandApplier(tool.settings(file_format="yaml", check_command=None))
    await applier.apply(SYSTEM, {"workers": 8, "name": "web"})
    [call] = tool.calls()
    assert yaml.safe_load(str(call["configuration"])) == {"workers": 8, "name": "web"}


async def test_a_variable_wraps_the_configuration_for_tools_that_take_variables(
    tool: FakeTool,
) -> None:
    applier = CommandApplier(
        tool.settings(
            configuration_variable="app_config",
            extra_variables={"config_path": "/etc/app.conf"},
        )
    )
    await applier.apply(SYSTEM, {"workers": 8})
    assert tool.calls()[-1]["configuration"] == {
        "app_config": {"workers": 8},
        "config_path": "/etc/app.conf",
    }


async def test_read_current_runs_the_read_command(tool: FakeTool) -> None:
    tool.behave(current={"workers": 4, "debug": True})
    applier = CommandApplier(tool.settings(read_command=tool.template("read")))
    assert await applier.read_current(SYSTEM) == {"workers": 4, "debug": True}
    result = await applier.apply(SYSTEM, {"workers": 4, "debug": False})
    assert result.changed == ("debug",)


async def test_a_read_command_may_write_the_configuration_to_the_file(tmp_path: Path) -> None:
    writer = "import sys; open(sys.argv[1], 'w').write('workers: 2\\nname: web\\n')"
    applier = CommandApplier(
        CommandApplierSettings(
            apply_command="true",
            read_command=shlex.join([sys.executable, "-c", writer, "{file}"]),
            file_format="yaml",
        )
    )
    assert await applier.read_current(SYSTEM) == {"workers": 2, "name": "web"}


async def test_without_a_read_command_nothing_applied_means_nothing_to_read(
    tool: FakeTool,
) -> None:
    with pytest.raises(ApplyFailed, match="no read command"):
        await CommandApplier(tool.settings()).read_current(SYSTEM)


async def test_a_host_name_cannot_smuggle_in_a_shell_command(tool: FakeTool) -> None:
    sneaky = ManagedSystem("systems/x", host=f"web-01; touch {tool.folder / 'pwned'}")
    await CommandApplier(tool.settings()).apply(sneaky, {"workers": 1})
    assert tool.calls()[0]["host"] == sneaky.host
    assert not tool.left_a_file("pwned")


async def test_a_missing_program_is_a_clear_failure(tmp_path: Path) -> None:
    applier = CommandApplier(
        CommandApplierSettings(apply_command=f"{tmp_path / 'no-such-tool'} {{file}}")
    )
    with pytest.raises(ApplyFailed, match="cannot run"):
        await applier.apply(SYSTEM, {"workers": 1})


def test_placeholders_are_filled_inside_words_after_splitting() -> None:
    argv = render_command(
        "ansible-playbook 'site one.yml' -l {host} -e @{file} --tags '{system}'",
        host="db 01",
        file=Path("/tmp/c.json"),
        system="systems/db-01",
    )
    assert argv == [
        "ansible-playbook",
        "site one.yml",
        "-l",
        "db 01",
        "-e",
        "@/tmp/c.json",
        "--tags",
        "systems/db-01",
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"apply_command": "   "},
        {"apply_command": "tool", "timeout_s": 0},
        {"apply_command": "tool", "extra_variables": {"a": 1}},
    ],
)
def test_settings_refuse_what_cannot_work(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        CommandApplierSettings(**options)  # type: ignore[arg-type]


def test_the_environment_is_passed_whole() -> None:
    settings = CommandApplierSettings(apply_command="tool", environment={"PATH": os.defpath})
    assert settings.environment == {"PATH": os.defpath}
