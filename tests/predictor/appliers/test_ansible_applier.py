"""The Ansible applier with a real ansible-playbook, against localhost over the local connection."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from cfgclone.predictor.appliers import (
    CONFIG_FILE_PLAYBOOK,
    AnsibleApplier,
    AnsibleSettings,
    ApplyFailed,
    ManagedSystem,
)
from cfgclone.predictor.appliers.ansible import default_ansible_playbook

pytestmark = [
    pytest.mark.skipif(
        shutil.which(default_ansible_playbook()) is None, reason="ansible-core is not installed"
    ),
    pytest.mark.slow,
]

LOCALHOST = ManagedSystem("systems/localhost", host="localhost")


def _applier(config_path: Path) -> AnsibleApplier:
    return AnsibleApplier(
        AnsibleSettings(
            playbook=CONFIG_FILE_PLAYBOOK,
            extra_variables={"config_path": str(config_path)},
            timeout_s=120.0,
        )
    )


def _written(path: Path) -> object:
    return json.loads(path.read_text())


async def test_the_playbook_checks_then_writes_and_a_rollback_restores_the_file(
    tmp_path: Path,
) -> None:
    config_path = tmp_path / "app.json"
    applier = _applier(config_path)
    first = {"workers": 4, "debug_logging": False, "log_line_prefix": "%m [%p] "}

    applied = await applier.apply(LOCALHOST, first)
    assert "changed: [localhost]" in applied.check_output  # check mode saw the change coming
    assert "--check" not in applied.output
    assert "changed=1" in applied.output
    assert _written(config_path) == first
    assert applied.changed == ("debug_logging", "log_line_prefix", "workers")

    previous = await applier.read_current(LOCALHOST)
    second = {**first, "workers": 16, "cache_mb": 512}
    applied = await applier.apply(LOCALHOST, second)
    assert applied.changed == ("cache_mb", "workers")
    assert '"workers": 16' in applied.check_output  # the diff shown by --check --diff
    assert _written(config_path) == second

    rolled_back = await applier.rollback(LOCALHOST, previous)
    assert rolled_back.changed == ("cache_mb", "workers")
    assert _written(config_path) == first
    assert rolled_back.exit_status == 0


async def test_a_change_the_check_run_refuses_is_never_run_for_real(tmp_path: Path) -> None:
    config_path = tmp_path / "missing-folder" / "app.json"
    with pytest.raises(ApplyFailed, match="apply check of systems/localhost") as failure:
        await _applier(config_path).apply(LOCALHOST, {"workers": 4})
    assert failure.value.exit_status not in (None, 0)
    assert "missing-folder" in failure.value.output
    assert not config_path.parent.exists()


def test_the_command_lines_pass_the_configuration_as_extra_variables(tmp_path: Path) -> None:
    settings = AnsibleSettings(playbook=tmp_path / "site.yml", inventory=tmp_path / "hosts")
    applier = AnsibleApplier(settings)
    assert applier.check_command is not None
    check = shlex.split(applier.check_command)
    assert check[check.index("-i") + 1] == str(tmp_path / "hosts")
    assert check[check.index("--limit") + 1] == "{host}"
    assert check[check.index("-e") + 1] == "@{file}"
    assert check[-2:] == ["--diff", "--check"]
    assert "--check" not in shlex.split(applier.apply_command)
    local = AnsibleApplier(AnsibleSettings(playbook=tmp_path / "site.yml"))
    words = shlex.split(local.apply_command)
    assert words[words.index("-i") + 1] == "{host},"  # an inline inventory of one host
    assert words[words.index("-c") + 1] == "local"
