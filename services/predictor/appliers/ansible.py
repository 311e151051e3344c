"""Ansible applier: a playbook run over ansible-core, check mode and diff first.

A thin layer over the command applier: it builds the ``ansible-playbook``
command lines (check run with ``--check --diff``, then the real run with
``--diff`` so the audit log shows what changed) and passes the configuration as
extra variables from a file. Without an inventory it targets the system's host
over the local connection, which is what a single-machine install and the tests
need; a fleet passes its own inventory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cfgclone.predictor.appliers.command import CommandApplier, CommandApplierSettings
from cfgclone.predictor.appliers.model import (
    ApplyResult,
    Configuration,
    ConfigValue,
    ManagedSystem,
)

__all__ = ["CONFIG_FILE_PLAYBOOK", "AnsibleApplier", "AnsibleSettings", "default_ansible_playbook"]

CONFIG_FILE_PLAYBOOK = Path(
    str(resources.files("cfgclone.predictor.appliers").joinpath("playbooks", "config_file.yml"))
)
"""The example playbook shipped with cfgclone: writes the configuration, as JSON, to
the file named by the ``config_path`` variable."""


def default_ansible_playbook() -> str:
    """``ansible-playbook`` beside the running interpreter (a virtualenv), else on PATH."""
    beside = Path(sys.executable).with_name("ansible-playbook")
    if beside.exists():
        return str(beside)
    return shutil.which("ansible-playbook") or "ansible-playbook"


@dataclass(frozen=True)
class AnsibleSettings:
    """Which playbook to run and how."""

    playbook: Path
    """The playbook that puts a configuration on a host."""
    inventory: Path | None = None
    """The team's inventory; None: the system's host alone, over ``connection``."""
    connection: str | None = "local"
    """Connection plugin when no inventory is given (``local`` runs on this machine)."""
    configuration_variable: str = "cfgclone_configuration"
    """Extra variable that holds the configuration mapping in the playbook."""
    extra_variables: Mapping[str, ConfigValue] = field(default_factory=dict)
    """Further extra variables (for the example playbook: ``config_path``)."""
    check_first: bool = True
    """Run ``--check --diff`` before the real run and stop if it fails."""
    ansible_playbook: str = field(default_factory=default_ansible_playbook)
    """The ``ansible-playbook`` program."""
    timeout_s: float = 600.0
    """Limit of each run; the process group is killed past it."""
    environment: Mapping[str, str] | None = None
    """Environment of the runs; None: the caller's, with colour and retry files off."""
    read_command: str | None = None
    """As for the command applier: prints the current configuration; None: the last
    configuration applied here."""
    restart_parameters: frozenset[str] = frozenset()
    """Parameters the managed software only takes in after a restart."""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if not self.configuration_variable.isidentifier():
            raise ValueError("configuration_variable must be a valid variable name")


class AnsibleApplier:
    """Applies a configuration by running a playbook with it as extra variables."""

    def __init__(self, settings: AnsibleSettings) -> None:
        self._settings = settings
        self._command = CommandApplier(
            CommandApplierSettings(
                apply_command=self._command_line(check=False),
                check_command=self._command_line(check=True) if settings.check_first else None,
                read_command=settings.read_command,
                file_format="json",
                configuration_variable=settings.configuration_variable,
                extra_variables=settings.extra_variables,
                timeout_s=settings.timeout_s,
                working_directory=settings.playbook.parent,
                environment=settings.environment or _quiet_environment(),
                restart_parameters=settings.restart_parameters,
                name="ansible",
            )
        )

    @property
    def name(self) -> str:
        return "ansible"

    @property
    def check_command(self) -> str | None:
        """The check run's command template (None when ``check_first`` is off)."""
        return self._command.settings.check_command

    @property
    def apply_command(self) -> str:
        """The real run's command template."""
        return self._command.settings.apply_command

    async def apply(self, system: ManagedSystem, configuration: Configuration) -> ApplyResult:
        return await self._command.apply(system, configuration)

    async def read_current(self, system: ManagedSystem) -> dict[str, ConfigValue]:
        return await self._command.read_current(system)

    async def rollback(
        self, system: ManagedSystem, previous_configuration: Configuration
    ) -> ApplyResult:
        return await self._command.rollback(system, previous_configuration)

    def _command_line(self, *, check: bool) -> str:
        settings = self._settings
        words = [settings.ansible_playbook]
        if settings.inventory is not None:
            words += ["-i", str(settings.inventory)]
        else:
            # An inline inventory of one host: "name," is a host list, not a file.
            words += ["-i", "{host},"]
            if settings.connection:
                words += ["-c", settings.connection]
                words += ["-e", f"ansible_python_interpreter={sys.executable}"]
        words += [str(settings.playbook), "--limit", "{host}", "-e", "@{file}", "--diff"]
        if check:
            words.append("--check")
        return shlex.join(words)


def _quiet_environment() -> dict[str, str]:
    """The caller's environment with output fit for a log: no colour, no retry files."""
    return {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "PYTHONUNBUFFERED": "1",
    }
