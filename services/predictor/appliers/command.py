"""Command applier: the team's own tool, handed the configuration as a file.

Most teams already have a command that puts a configuration on a host (an
Ansible playbook run, a Salt state, a script of their own). This applier writes
the configuration to a JSON or YAML file and runs that command with the file,
after a check (dry-run, diff) run when the tool offers one, so a tool that
refuses the change fails before anything is touched.

Command templates are split with ``shlex`` and run without a shell; the
placeholders ``{host}``, ``{file}`` and ``{system}`` are replaced inside each
word, so a value can never become a second word or a shell construct.
"""

from __future__ import annotations

import json
import logging
import shlex
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from cfgclone.common.processes import CommandOutcome, run_bounded
from cfgclone.predictor.appliers.model import (
    ApplyFailed,
    ApplyResult,
    Configuration,
    ConfigValue,
    ManagedSystem,
    changed_parameters,
)

__all__ = ["PLACEHOLDERS", "CommandApplier", "CommandApplierSettings", "render_command"]

logger = logging.getLogger(__name__)

PLACEHOLDERS = ("{host}", "{file}", "{system}")
"""What a command template may refer to: the inventory host, the configuration
file, the system's resource name."""


@dataclass(frozen=True)
class CommandApplierSettings:
    """How to run the team's tool."""

    apply_command: str
    """Template of the command that applies a configuration, for example
    ``ansible-playbook site.yml -l {host} -e @{file}``."""
    check_command: str | None = None
    """Template of a check run that changes nothing (``... --check --diff``), run
    first; None when the tool has no such mode."""
    read_command: str | None = None
    """Template of a command that reports the current configuration as a JSON or YAML
    mapping, written to ``{file}`` or printed; None: ``read_current`` answers with the
    last configuration applied through this applier."""
    file_format: Literal["json", "yaml"] = "json"
    """Format of the configuration file."""
    configuration_variable: str | None = None
    """When set, the file holds ``{configuration_variable: configuration}`` instead of
    the configuration itself (for tools that take variables, such as Ansible)."""
    extra_variables: Mapping[str, ConfigValue] = field(default_factory=dict)
    """Further top-level entries of the file (only with ``configuration_variable``)."""
    timeout_s: float = 600.0
    """Limit of each run (check, apply, read); the process group is killed past it."""
    working_directory: Path | None = None
    """Where the tool runs; the caller's directory when None."""
    environment: Mapping[str, str] | None = None
    """The tool's whole environment; the caller's when None."""
    restart_parameters: frozenset[str] = frozenset()
    """Parameters the managed software only takes in after a restart."""
    name: str = "command"
    """Name recorded in results."""

    def __post_init__(self) -> None:
        for template in (self.apply_command, self.check_command, self.read_command):
            if template is not None and not shlex.split(template):
                raise ValueError("a command template must name a program")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.file_format not in ("json", "yaml"):
            raise ValueError("file_format must be 'json' or 'yaml'")
        if self.extra_variables and self.configuration_variable is None:
            raise ValueError("extra_variables need a configuration_variable")


def render_command(template: str, *, host: str, file: Path, system: str) -> list[str]:
    """Split a template into words and fill the placeholders inside each word."""
    values = {"{host}": host, "{file}": str(file), "{system}": system}
    words = []
    for word in shlex.split(template):
        for placeholder, value in values.items():
            word = word.replace(placeholder, value)
        words.append(word)
    return words


class CommandApplier:
    """Applies a configuration by running the team's tool with it as a file.

    ``changed`` in results is the difference from the configuration known before
    (from ``read_command``, else the last one this applier applied), or every
    parameter when nothing is known. Rollback runs the same command with the
    previous configuration.
    """

    def __init__(self, settings: CommandApplierSettings) -> None:
        self._settings = settings
        self._last_applied: dict[str, dict[str, ConfigValue]] = {}

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def settings(self) -> CommandApplierSettings:
        return self._settings

    async def apply(self, system: ManagedSystem, configuration: Configuration) -> ApplyResult:
        return await self._run(system, configuration, action="apply")

    async def rollback(
        self, system: ManagedSystem, previous_configuration: Configuration
    ) -> ApplyResult:
        return await self._run(system, previous_configuration, action="rollback")

    async def read_current(self, system: ManagedSystem) -> dict[str, ConfigValue]:
        """The configuration ``read_command`` reports, else the last one applied here."""
        if self._settings.read_command is None:
            if system.name in self._last_applied:
                return dict(self._last_applied[system.name])
            raise ApplyFailed(
                f"cannot read the configuration of {system.name}: no read command is "
                "configured and nothing was applied through this applier yet"
            )
        with tempfile.TemporaryDirectory(prefix="cfgclone-read-") as folder:
            file = Path(folder) / f"current.{self._settings.file_format}"
            argv = render_command(
                self._settings.read_command, host=system.host, file=file, system=system.name
            )
            outcome = await self._execute(argv, system, "read")
            text = file.read_text(encoding="utf-8") if file.exists() else outcome.stdout
        try:
            parsed = yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as error:
            raise ApplyFailed(
                f"the read command for {system.name} gave no JSON or YAML mapping: {error}",
                output=outcome.output,
            ) from error
        if not isinstance(parsed, dict) or not all(isinstance(key, str) for key in parsed):
            raise ApplyFailed(
                f"the read command for {system.name} printed no mapping of names to values",
                output=outcome.output,
            )
        return {str(key): _config_value(value) for key, value in parsed.items()}

    async def _run(
        self, system: ManagedSystem, configuration: Configuration, *, action: str
    ) -> ApplyResult:
        started = time.monotonic()
        before = await self._known_before(system)
        check_output = ""
        with tempfile.TemporaryDirectory(prefix=f"cfgclone-{action}-") as folder:
            file = Path(folder) / f"configuration.{self._settings.file_format}"
            file.write_text(self._file_content(configuration), encoding="utf-8")
            file.chmod(0o600)
            if self._settings.check_command is not None:
                check = await self._execute(
                    render_command(
                        self._settings.check_command,
                        host=system.host,
                        file=file,
                        system=system.name,
                    ),
                    system,
                    f"{action} check",
                )
                check_output = check.output
            outcome = await self._execute(
                render_command(
                    self._settings.apply_command, host=system.host, file=file, system=system.name
                ),
                system,
                action,
                check_output=check_output,
            )
        self._last_applied[system.name] = dict(configuration)
        changed = changed_parameters(before, configuration)
        logger.info("%s of %s through %s: %s changed", action, system.name, self.name, changed)
        return ApplyResult(
            system=system.name,
            applier=self.name,
            changed=changed,
            restart_required=tuple(
                name for name in changed if name in self._settings.restart_parameters
            ),
            output=outcome.output,
            duration_s=time.monotonic() - started,
            check_output=check_output,
            exit_status=outcome.exit_status,
        )

    async def _known_before(self, system: ManagedSystem) -> dict[str, ConfigValue] | None:
        if self._settings.read_command is None:
            return self._last_applied.get(system.name)
        try:
            return await self.read_current(system)
        except ApplyFailed:
            logger.warning("cannot read the configuration of %s before changing it", system.name)
            return None

    async def _execute(
        self, argv: list[str], system: ManagedSystem, step: str, *, check_output: str = ""
    ) -> CommandOutcome:
        """Run one step; a failure, timeout or missing program raises ``ApplyFailed``."""
        try:
            outcome = await run_bounded(
                argv,
                timeout=self._settings.timeout_s,
                cwd=self._settings.working_directory,
                env=self._settings.environment,
            )
        except OSError as error:
            raise ApplyFailed(f"{step} of {system.name}: cannot run {argv[0]}: {error}") from error
        output = f"{check_output}\n{outcome.output}" if check_output else outcome.output
        if outcome.timed_out:
            raise ApplyFailed(
                f"{step} of {system.name}: {argv[0]} did not finish in "
                f"{self._settings.timeout_s:g} s and was killed",
                output=output,
                timed_out=True,
                duration_s=outcome.duration_s,
            )
        if not outcome.succeeded:
            raise ApplyFailed(
                f"{step} of {system.name}: {argv[0]} exited with status {outcome.exit_status}",
                output=output,
                exit_status=outcome.exit_status,
                duration_s=outcome.duration_s,
            )
        return outcome

    def _file_content(self, configuration: Configuration) -> str:
        content: dict[str, object] = dict(configuration)
        if self._settings.configuration_variable is not None:
            content = {
                **self._settings.extra_variables,
                self._settings.configuration_variable: dict(configuration),
            }
        if self._settings.file_format == "yaml":
            return yaml.safe_dump(content, sort_keys=True, default_flow_style=False)
        return json.dumps(content, indent=2, sort_keys=True) + "\n"


def _config_value(value: object) -> ConfigValue:
    """A value read back from a tool; anything that is not a scalar becomes its JSON text."""
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True, default=str)
