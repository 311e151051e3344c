"""Command shadow provider: the team's own script makes the shadow, for any configuration kind.

The suite knows how to copy a PostgreSQL server; a team knows how to copy its own
system (a container of the web tier, a scratch VM, a throw-away service on a free
port). It writes one executable, configured per kind
(``CFGCLONE_PREDICTOR_SHADOW_COMMAND_<KIND>``), which the suite runs once per step,
with the step as the last argument and a JSON request on standard input:

``create``
    make the shadow. Request: ``system``, ``hardware`` (``cpu_cores``,
    ``memory_bytes``), ``load_profile`` (series of the metric vocabulary to the
    target's recorded rate per second over its recent busy period), ``settings`` (the
    target's settings neither side changes), ``baseline`` and ``candidate`` (the
    configurations before and after), ``deadline_unix``.
``apply``
    run the shadow with ``configuration`` (the target's settings overlaid by one
    side's; ``side`` says which), replacing the previous one.
``run``
    drive ``load_profile`` on the shadow for ``duration_s`` seconds and print the
    KPIs measured, one sample per ``interval_s``, as JSON or Prometheus text (see
    :mod:`cfgclone.predictor.shadow.report`).
``destroy``
    remove everything ``create`` made. It runs however the comparison ended.

Every step runs in the same private working folder (``workdir`` in the request and
``CFGCLONE_SHADOW_DIR``), where the script keeps its state between steps, as the
leader of a process group of its own, bounded in time (a step never outlives the
comparison's deadline, ``run`` gets its duration and a grace), with only ``PATH``,
``HOME``, the locale and ``TMPDIR`` of the service's environment. A step that exits
with an error, times out or prints an unreadable report fails the comparison with
the reason (so the prediction is INCONCLUSIVE). After ``destroy``, whatever is left in
the process groups of the steps (a server ``create`` started in the background) is
killed and the folder removed, so a script that hangs or crashes leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfgclone.common.processes import (
    CommandOutcome,
    kill_process_group,
    run_bounded,
)
from cfgclone.predictor.shadow.load import rate_shortfalls
from cfgclone.predictor.shadow.model import (
    Configuration,
    ShadowFailed,
    ShadowTarget,
    Side,
    WorkloadResult,
    WorkloadShape,
)
from cfgclone.predictor.shadow.report import parse_kpi_report

__all__ = [
    "CommandShadowCopy",
    "CommandShadowProvider",
    "CommandShadowSettings",
    "command_words",
]

logger = logging.getLogger(__name__)

_PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_STDERR_LINES = 10
_DEADLINE_MARGIN_S = 0.5


@dataclass(frozen=True)
class CommandShadowSettings:
    """One kind's shadow script and its bounds."""

    command: tuple[str, ...]
    """The script and its first arguments (never run through a shell); the step is
    appended as the last argument."""
    step_timeout_s: float = 120.0
    """Longest a ``create``, ``apply`` or ``destroy`` step may take."""
    workload_grace_s: float = 30.0
    """Time a ``run`` step may take beyond its duration."""
    sample_interval_s: float = 1.0
    """Length of the interval each KPI sample should cover."""
    environment: Mapping[str, str] | None = None
    """Variables added to the few passed on from the service's environment."""

    def __post_init__(self) -> None:
        if not self.command or not self.command[0]:
            raise ValueError("a command shadow provider needs a command")
        if self.step_timeout_s <= 0 or self.workload_grace_s <= 0 or self.sample_interval_s <= 0:
            raise ValueError("time limits and the sample interval must be positive")


class CommandShadowCopy:
    """A shadow the script made; its steps run in ``workdir``."""

    def __init__(
        self, provider: CommandShadowProvider, target: ShadowTarget, workdir: Path
    ) -> None:
        self._provider = provider
        self._target = target
        self._workdir = workdir
        self._steps = 0
        self._groups: set[int] = set()
        self._notes: dict[str, str] = {}

    @property
    def details(self) -> Mapping[str, str]:
        return {
            "command": " ".join(self._provider.settings.command),
            "steps": str(self._steps),
            **self._notes,
        }

    async def create(self) -> None:
        target = self._target
        await self.step(
            "create",
            {
                "system": target.system,
                "hardware": dict(target.hardware),
                "load_profile": dict(target.load_profile),
                "settings": dict(target.settings),
                "baseline": dict(target.baseline),
                "candidate": dict(target.candidate),
            },
        )

    async def apply(self, configuration: Configuration) -> None:
        side = ""
        if dict(configuration) == dict(self._target.candidate):
            side = Side.CANDIDATE.value
        if dict(configuration) == dict(self._target.baseline):
            side = Side.BASELINE.value
        await self.step(
            "apply",
            {"configuration": {**self._target.settings, **configuration}, "side": side},
        )

    async def run_workload(self, load: WorkloadShape, duration_s: float) -> WorkloadResult:
        settings = self._provider.settings
        outcome = await self.step(
            "run",
            {
                "load_profile": dict(self._target.load_profile),
                "clients": load.clients,
                "duration_s": duration_s,
                "interval_s": settings.sample_interval_s,
            },
            timeout=duration_s + settings.workload_grace_s,
        )
        samples = parse_kpi_report(outcome.stdout)
        shortfalls = rate_shortfalls(self._target.load_profile, samples)
        for series, note in shortfalls.items():
            self._notes[f"load.{series}"] = note
        return WorkloadResult(
            samples=samples,
            details={
                "duration_s": f"{outcome.duration_s:.1f}",
                **{f"load.{series}": note for series, note in shortfalls.items()},
            },
        )

    async def destroy(self) -> None:
        """The script's ``destroy`` step, then whatever is left of every step's group."""
        try:
            await self.step("destroy", {}, bounded_by_deadline=False)
        except ShadowFailed as error:
            logger.warning("shadow teardown of %s: %s", self._target.system, error)
        finally:
            for group in self._groups:
                kill_process_group(group)

    async def step(
        self,
        name: str,
        request: Mapping[str, Any],
        *,
        # A limit reached is a failure to report with the script's stderr, not a cancellation.
        timeout: float | None = None,  # noqa: ASYNC109
        bounded_by_deadline: bool = True,
    ) -> CommandOutcome:
        """Run one step of the script; ``ShadowFailed`` with the reason unless it succeeded."""
        settings = self._provider.settings
        limit = timeout if timeout is not None else settings.step_timeout_s
        deadline = self._target.deadline_unix
        if bounded_by_deadline and deadline is not None:
            # A step ends a little before the comparison's limit, so its own reason is reported.
            limit = min(limit, deadline - time.time() - _DEADLINE_MARGIN_S)
            if limit <= 0:
                raise ShadowFailed(f"no time left for the shadow script's {name} step")
        payload = {
            **request,
            "workdir": str(self._workdir),
            "deadline_unix": deadline,
        }
        self._steps += 1
        try:
            outcome = await run_bounded(
                [*settings.command, name],
                timeout=limit,
                cwd=self._workdir,
                env=self._provider.environment(self._workdir),
                input_bytes=json.dumps(payload).encode(),
            )
        except OSError as error:
            raise ShadowFailed(
                f"the shadow script {settings.command[0]!r} could not be started: {error}"
            ) from error
        if outcome.process_group is not None:
            self._groups.add(outcome.process_group)
        if outcome.timed_out:
            raise ShadowFailed(
                f"the shadow script's {name} step did not finish within {limit:.0f} s "
                f"and was killed{_stderr(outcome)}"
            )
        if not outcome.succeeded:
            raise ShadowFailed(
                f"the shadow script's {name} step exited with status "
                f"{outcome.exit_status}{_stderr(outcome)}"
            )
        return outcome


class CommandShadowProvider:
    """Makes shadows of one configuration kind by running the team's script."""

    def __init__(self, kind: str, settings: CommandShadowSettings) -> None:
        self.kind = kind
        self.settings = settings

    @property
    def name(self) -> str:
        return f"command:{self.kind}"

    def environment(self, workdir: Path) -> dict[str, str]:
        """What the script sees of the environment: a few variables and its folder."""
        env = {key: os.environ[key] for key in _PASSED_ENVIRONMENT if key in os.environ}
        env.update(self.settings.environment or {})
        env["CFGCLONE_SHADOW_DIR"] = str(workdir)
        return env

    @contextlib.asynccontextmanager
    async def copy_of(self, target: ShadowTarget) -> AsyncIterator[CommandShadowCopy]:
        workdir = Path(tempfile.mkdtemp(prefix=f"cfgclone-shadow-{_safe(self.kind)}-"))
        copy = CommandShadowCopy(self, target, workdir)
        try:
            await copy.create()
            yield copy
        finally:
            try:
                await copy.destroy()
            finally:
                shutil.rmtree(workdir, ignore_errors=True)


def command_words(text: str) -> tuple[str, ...]:
    """A command line setting split into words as a POSIX shell would, without running one."""
    return tuple(shlex.split(text))


def _safe(kind: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in kind)[:40]


def _stderr(outcome: CommandOutcome) -> str:
    lines = outcome.stderr.strip().splitlines()[-_STDERR_LINES:]
    return (": " + " | ".join(lines)) if lines else ""
