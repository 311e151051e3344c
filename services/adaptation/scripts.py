"""User-supplied adaptation scripts: JSON in, JSON out, bounded in time, output and memory.

A team whose software needs more than scaling rules writes an executable that reads
`{"configuration": ..., "source": ..., "target": ...}` (the hosts as
`HostResources.to_json` writes them) on standard input and prints the adapted
configuration as a JSON object on standard output; it explains itself on standard error.

The script runs as the leader of a process group of its own, in an empty temporary
directory, with only the locale, `PATH`, `HOME` and `TMPDIR` of the service's environment
(the service's credentials stay with the service). When it has answered, exceeded its
time or printed too much, the whole group is killed, so nothing it started lingers. Its
data segment is capped (`RLIMIT_DATA`, which counts memory a program writes to, not
address space it merely reserves) by a small launcher, because setting a limit between
fork and exec is not safe in a process with threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from cfgclone.common.processes import CommandOutcome, run_bounded

from .errors import AdaptationFailed, InvalidConfiguration, ScriptFailure
from .hosts import HostResources
from .scaling import Adaptation, ParameterExplanation
from .schema import Schema
from .spec import ParameterValue

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_OUTPUT_LIMIT",
    "DEFAULT_SCRIPT_TIMEOUT",
    "run_adaptation_script",
]

logger = logging.getLogger(__name__)

DEFAULT_SCRIPT_TIMEOUT = 30.0
"""Seconds a script may take."""
DEFAULT_OUTPUT_LIMIT = 1 << 20
"""Bytes a script may print on standard output."""
DEFAULT_MEMORY_LIMIT = 1 << 30
"""Bytes of data a script (and each process it starts) may allocate."""

_STDERR_TAIL = 2000
_PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
# Arguments: the limit, the program to run, then the command as given (argv[0] onwards).
_LAUNCHER = (
    "import os, resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))\n"
    "os.execv(sys.argv[2], sys.argv[3:])\n"
)


async def run_adaptation_script(
    script: str | os.PathLike[str] | Sequence[str],
    content: Mapping[str, object],
    source: HostResources,
    target: HostResources,
    schema: Schema,
    # The limit is a parameter, not the caller's asyncio.timeout, because reaching it is
    # a failure to report with the script's stderr, not a cancellation.
    timeout: float = DEFAULT_SCRIPT_TIMEOUT,  # noqa: ASYNC109
    *,
    max_output_bytes: int = DEFAULT_OUTPUT_LIMIT,
    memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT,
    environment: Mapping[str, str] | None = None,
) -> Adaptation:
    """The configuration `script` makes of `content` for `target`, validated by `schema`.

    `script` is an executable's path or a command as a list of words (never run through
    a shell); `environment` adds variables to the few passed on. Raises
    `InvalidConfiguration` when `content` itself breaks the schema, and
    `AdaptationFailed` when the script cannot be started, times out, exits with an
    error, prints too much or prints something other than a valid configuration.
    """
    argv = _command(script)
    if timeout <= 0 or max_output_bytes <= 0:
        raise ValueError("the time limit and the output limit must be positive")
    valid = schema.validate(content)
    name = Path(argv[0]).name
    env = _environment(environment)
    executable = _executable(argv[0], env.get("PATH"), name)
    payload = {"configuration": valid, "source": source.to_json(), "target": target.to_json()}
    command = [executable, *argv[1:]]
    if memory_limit_bytes is not None:
        limit = str(memory_limit_bytes)
        command = [sys.executable, "-I", "-S", "-c", _LAUNCHER, limit, executable, *argv]
    with tempfile.TemporaryDirectory(prefix="cfgclone-adaptation-") as workdir:
        try:
            run = await run_bounded(
                command,
                timeout=timeout,
                cwd=Path(workdir),
                env=env,
                input_bytes=json.dumps(payload).encode(),
                output_limit=max_output_bytes,
                # What the script left running goes as soon as it has answered.
                drain_grace=0.5,
                kill_on_overflow=True,
            )
        except OSError as error:
            raise AdaptationFailed(
                ScriptFailure.NOT_STARTED, name, f"cannot be run: {error}"
            ) from None
    if run.timed_out:
        logger.warning("adaptation script %s was killed after %.1f s", name, timeout)
    adapted = _adapted_content(run, name, timeout, max_output_bytes, schema)
    return _explained(valid, adapted, schema, name)


def _command(script: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    if isinstance(script, str | os.PathLike):
        return [os.fspath(script)]
    argv = list(script)
    if not argv:
        raise ValueError("an adaptation script command needs at least the program")
    return argv


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    passed = {key: os.environ[key] for key in _PASSED_ENVIRONMENT if key in os.environ}
    return passed | dict(extra or {})


def _executable(program: str, search_path: str | None, name: str) -> str:
    """The absolute path to run: the script runs in a directory of its own."""
    if os.sep in program:
        path = os.path.abspath(program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        detail = f"cannot be run: {path} is not an executable file"
    else:
        found = shutil.which(program, path=search_path)
        if found is not None:
            return os.path.abspath(found)
        detail = f"cannot be run: {program} is not found on PATH"
    raise AdaptationFailed(ScriptFailure.NOT_STARTED, name, detail)


def _adapted_content(
    run: CommandOutcome, name: str, timeout: float, output_limit: int, schema: Schema
) -> dict[str, ParameterValue]:
    stderr_tail = run.stderr[-_STDERR_TAIL:]

    def failed(failure: ScriptFailure, detail: str) -> AdaptationFailed:
        return AdaptationFailed(failure, name, detail, stderr_tail=stderr_tail)

    if run.timed_out:
        detail = f"did not finish within {timeout:g} s and was killed with its children"
        raise failed(ScriptFailure.TIMED_OUT, detail)
    if run.output_overflowed:
        detail = f"printed more than {output_limit} bytes and was killed"
        raise failed(ScriptFailure.OUTPUT_TOO_LARGE, detail)
    if run.exit_status != 0:
        assert run.exit_status is not None
        raise failed(ScriptFailure.EXIT_STATUS, _exit_detail(run.exit_status))
    parsed = _parsed_output(run.stdout)
    if isinstance(parsed, str):
        raise failed(ScriptFailure.INVALID_JSON, parsed)
    try:
        return schema.validate(parsed)
    except InvalidConfiguration as error:
        raise AdaptationFailed(
            ScriptFailure.INVALID_CONFIGURATION,
            name,
            f"printed a configuration that breaks the schema: {error}",
            stderr_tail=stderr_tail,
            violations=error.violations,
        ) from None


def _exit_detail(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def _parsed_output(stdout: str) -> dict[str, object] | str:
    """The printed JSON object, or why the output is not one."""
    if not stdout.strip():
        return "printed nothing; it must print the adapted configuration as a JSON object"
    try:
        parsed = json.loads(stdout, parse_constant=_no_constants)
    except ValueError as error:
        return f"did not print valid JSON ({error})"
    if not isinstance(parsed, dict):
        return f"printed a JSON {type(parsed).__name__}, not an object of parameters"
    return parsed


def _explained(
    before: Mapping[str, ParameterValue],
    after: Mapping[str, ParameterValue],
    schema: Schema,
    name: str,
) -> Adaptation:
    explanations = []
    for key in sorted(set(before) | set(after)):
        spec = schema.spec(key)
        restart = spec is not None and spec.requires_restart
        explanation = ParameterExplanation(key, before.get(key), after.get(key), "", restart)
        verb = "set" if explanation.changed else "kept"
        if explanation.after is None:
            verb = "removed"
        explanations.append(replace(explanation, why=f"{verb} by adaptation script {name}"))
    return Adaptation(dict(after), tuple(explanations))
