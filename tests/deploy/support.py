"""What the deployment tests share: paths, tools, and the project's own names.

The names the deploy files may use are read from the project itself, never
copied here: commands from ``[project.scripts]`` and the ``cfgclone`` CLI's
parser, ports and ``CFGCLONE_*`` variables from ``cfgclone.common.settings``.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from cfgclone.cli.main import build_parser
from cfgclone.collector import agent_config
from cfgclone.common import settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
DOCS = REPO / "docs"

SERVICES: tuple[str, ...] = settings.SERVICE_NAMES
"""The five services, in the order of their ports."""

PENDING_SUBCOMMANDS: Mapping[str, str] = {}
"""``cfgclone`` subcommands the deploy files use before the CLI has them. Remove an
entry once the CLI grows the subcommand; from then on its flags are checked too."""

PROJECT_IMAGES: Mapping[str, Path] = {
    "cfgclone": DEPLOY / "Dockerfile",
    "cfgclone-agent": DEPLOY / "Dockerfile.agent",
}
"""The project's images (unqualified name as the deploy files use it) and their Dockerfiles."""

THIRD_PARTY_IMAGES = frozenset(
    {
        "timescale/timescaledb",
        "otel/opentelemetry-collector",
        "jaegertracing/all-in-one",
        "prom/prometheus",
        "grafana/grafana",
    }
)
"""Images the compose file takes from their publishers."""

SHELL_COMMANDS = frozenset({"pg_isready"})
"""Commands of third-party images used by health checks."""


def require_tool(name: str, hint: str) -> str:
    """Path of the executable ``name``: the virtual environment's first, then PATH.

    scripts/test installs every tool these tests use, so a missing one is a failure
    that says how to install it, never a skip.
    """
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {hint}", pytrace=False)
    return found


def run(argv: Sequence[str], *, cwd: Path = REPO, env: Mapping[str, str] | None = None) -> str:
    """Run a command; fail the test with its output when it exits non-zero."""
    completed = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if completed.returncode != 0:
        pytest.fail(
            f"{shlex.join(argv)} exited {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}",
            pytrace=False,
        )
    return completed.stdout


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a YAML file."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


# --- the project's names ------------------------------------------------------


@functools.cache
def project_scripts() -> frozenset[str]:
    """Console scripts the wheel installs (``[project.scripts]``)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return frozenset(pyproject["project"]["scripts"])


def cli_subcommands() -> dict[str, argparse.ArgumentParser]:
    """The ``cfgclone`` CLI's subcommands and their parsers."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the cfgclone CLI has no subcommands")


@functools.cache
def settings_variables() -> frozenset[str]:
    """Every ``CFGCLONE_*`` variable the settings module's docstring documents, and those
    the agent's configuration reads (``agent_config.ENVIRONMENT``)."""
    assert settings.__doc__ is not None
    names: set[str] = set(agent_config.ENVIRONMENT) | service_option_variables()
    for token in re.findall(r"CFGCLONE_[A-Z0-9_{},]*[A-Z0-9}]", settings.__doc__):
        names.update(_expand_braces(token))
    return frozenset(names)


_OPTION_READ = re.compile(
    r"(?:\benv_\w+\(\s*options,\s*|options\.get\(\s*|_number\(\s*options,\s*)"
    r'"([A-Z][A-Z0-9_]*)"'
)


def service_option_variables() -> frozenset[str]:
    """``CFGCLONE_<SERVICE>_<OPTION>`` for every option a service reads from its prefix."""
    names = set()
    for service in SERVICES:
        for source in (REPO / "services" / service).rglob("*.py"):
            for option in _OPTION_READ.findall(source.read_text(encoding="utf-8")):
                names.add(f"CFGCLONE_{service.upper()}_{option}")
    return frozenset(names)


def _expand_braces(token: str) -> list[str]:
    match = re.search(r"\{([^}]*)\}", token)
    if match is None:
        return [token]
    head, tail = token[: match.start()], token[match.end() :]
    return [n for part in match.group(1).split(",") for n in _expand_braces(head + part + tail)]


VARIABLE = re.compile(r"\bCFGCLONE_[A-Z0-9_]*[A-Z0-9]\b")


def variables_in(text: str) -> set[str]:
    """``CFGCLONE_*`` names mentioned in ``text`` (not patterns such as CFGCLONE_TLS_*)."""
    return set(VARIABLE.findall(text))


def default_port(service: str) -> int:
    return settings.DEFAULT_PORTS[service]


# --- commands -----------------------------------------------------------------


def image_commands() -> frozenset[str]:
    """Commands the project's Dockerfiles install besides the wheel's scripts."""
    commands = {"tini"}
    for dockerfile in PROJECT_IMAGES.values():
        for stage in parse_dockerfile(dockerfile):
            for instruction in stage.instructions:
                if instruction.name == "COPY":
                    destination = instruction.words[-1]
                    if destination.startswith("/usr/local/bin/"):
                        commands.add(destination.removeprefix("/usr/local/bin/"))
    return frozenset(commands)


def check_command(argv: Sequence[str]) -> None:
    """Fail unless ``argv`` starts a command the project (or its image) provides."""
    assert argv, "empty command"
    program = Path(argv[0]).name
    if program == "tini":
        assert list(argv[1:2]) == ["--"], f"tini without --: {argv}"
        check_command(argv[2:])
        return
    if program == "cfgclone":
        assert len(argv) > 1, "cfgclone without a subcommand"
        subcommands = cli_subcommands()
        subcommand = argv[1]
        if subcommand.startswith("-"):
            options = build_parser()._option_string_actions
            assert subcommand in options, f"cfgclone has no option {subcommand}"
        elif subcommand in subcommands:
            _parse_or_fail(subcommands[subcommand], argv[2:], f"cfgclone {subcommand}")
        else:
            assert subcommand in PENDING_SUBCOMMANDS, (
                f"cfgclone has no subcommand {subcommand!r} (it has {sorted(subcommands)})"
            )
        return
    if program in project_scripts():
        service = program.removeprefix("cfgclone-")
        _parse_or_fail(settings.argument_parser(service), argv[1:], program)
        return
    assert program in image_commands() | SHELL_COMMANDS, (
        f"{program!r} is neither a cfgclone command ({sorted(project_scripts())}) "
        f"nor installed by a Dockerfile ({sorted(image_commands())})"
    )


def _parse_or_fail(parser: argparse.ArgumentParser, args: Sequence[str], what: str) -> None:
    try:
        parser.parse_args(list(args))
    except SystemExit:
        pytest.fail(f"{what} does not accept {list(args)}", pytrace=False)


# --- Dockerfiles and the build context ---------------------------------------


@dataclass
class Instruction:
    name: str
    arguments: str

    @property
    def words(self) -> list[str]:
        """The arguments split as a shell would, flags (``--from=...``) included."""
        return shlex.split(self.arguments)

    @property
    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (ENTRYPOINT, CMD)."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.name} is not in exec form: {self.arguments}"
        return [str(v) for v in value]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.name == name]

    def last(self, name: str) -> Instruction | None:
        found = self.all(name)
        return found[-1] if found else None


def _logical_lines(text: str) -> Iterator[str]:
    line = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            line += stripped[:-1] + " "
            continue
        yield line + stripped
        line = ""
    if line:
        yield line


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, with global ARG defaults substituted into FROM."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        name, _, rest = line.partition(" ")
        name = name.upper()
        if name == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        elif name == "FROM":
            words = rest.split()
            base = re.sub(
                r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0]
            )
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, alias))
        else:
            assert stages, f"{path.name}: {name} before FROM"
            stages[-1].instructions.append(Instruction(name, rest.strip()))
    return stages


@functools.cache
def dockerignore_patterns() -> tuple[tuple[bool, str], ...]:
    """(exclude, pattern) pairs of the repository's .dockerignore, in order."""
    patterns: list[tuple[bool, str]] = []
    for raw in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        patterns.append((exclude, pattern))
    return tuple(patterns)


def _pattern_matches(pattern: str, path: str) -> bool:
    # Docker matches a pattern against the path and each of its parent folders;
    # "**" spans any number of folders, "*" stays within one.
    regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
    regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(re.fullmatch(regex, prefix) for prefix in prefixes)


def in_build_context(path: str) -> bool:
    """Whether Docker sends ``path`` (relative to the repository) with the build context."""
    included = True
    for exclude, pattern in dockerignore_patterns():
        if _pattern_matches(pattern, path):
            included = not exclude
    return included


def build_context_files(source: str) -> list[str]:
    """The files under ``source`` (a file or folder of the repository) in the build context."""
    root = REPO / source
    candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    relative = [p.relative_to(REPO).as_posix() for p in candidates]
    return [p for p in relative if in_build_context(p)]


def image_name(reference: str) -> str:
    """``registry/name:tag`` without the tag (and digest)."""
    reference = reference.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        reference = reference[: len(reference) - len(last)] + last.split(":", 1)[0]
    return reference
