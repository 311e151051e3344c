"""The Node.js client (clients/node) against the running suite: stubs built from
protos/ at run time in another language talk to the real services."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from cfgclone.cli.suite import RunningSuite
from cfgclone.v1 import common_pb2
from cfgclone.v1 import orchestrator_service_pb2 as orchestrator_pb
from cfgclone.v1 import orchestrator_service_pb2_grpc as orchestrator_grpc
from tests.clients.support import REPOSITORY, register_systems, run, unique_id

CLIENT_DIR = REPOSITORY / "clients" / "node"
CLIENT = CLIENT_DIR / "cfgclone-client.js"

NodeClient = Callable[..., subprocess.CompletedProcess[str]]


def _install_dependencies(npm: str) -> None:
    """``npm ci`` when node_modules is missing or older than the lock file."""
    installed = CLIENT_DIR / "node_modules" / ".package-lock.json"
    lock = CLIENT_DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=CLIENT_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def node() -> NodeClient:
    """Runs ``node cfgclone-client.js ARGS`` with its dependencies installed."""
    node = shutil.which("node") or shutil.which("nodejs")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(
            "Node.js and npm are not installed: scripts/test installs Debian's nodejs and npm "
            "(apt-get install nodejs npm)"
        )
    _install_dependencies(npm)

    def client(*args: str) -> subprocess.CompletedProcess[str]:
        return run([node, str(CLIENT), *args], cwd=CLIENT_DIR)

    return client


def _system(system_id: str, **labels: str) -> common_pb2.System:
    return common_pb2.System(
        name=f"systems/{system_id}",
        hostname=f"{system_id}.example.com",
        cpu_cores=8,
        memory_bytes=32 * 2**30,
        os="debian 12",
        architecture="x86_64",
        labels=labels,
    )


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout, f"nothing on stdout; stderr:\n{result.stderr}"
    return json.loads(result.stdout)


def test_systems_lists_the_registered_systems_as_json(
    suite: RunningSuite, node: NodeClient
) -> None:
    team = unique_id("team")
    registered = register_systems(
        suite,
        _system(unique_id("db"), team=team, role="db"),
        _system(unique_id("web"), team=team, role="web"),
    )

    collector = suite.address("collector")
    result = node("systems", "--collector", collector, "--selector", f"team={team}")

    assert result.returncode == 0, result.stderr
    listed = {system["name"]: system for system in _json(result)}
    assert set(listed) == {system.name for system in registered}
    for system in registered:
        shown = listed[system.name]
        assert shown["hostname"] == system.hostname
        assert shown["cpuCores"] == 8
        assert shown["memoryBytes"] == str(32 * 2**30)  # int64 as a string, as JSON maps it
        assert shown["labels"] == dict(system.labels)
        assert shown["createTime"].endswith("Z")  # a timestamp in RFC 3339, not seconds


def test_systems_follows_pages_to_the_last(suite: RunningSuite, node: NodeClient) -> None:
    team = unique_id("team")
    registered = register_systems(
        suite, *(_system(unique_id(f"node{i}"), team=team) for i in range(5))
    )

    result = node(
        "systems",
        "--collector",
        suite.address("collector"),
        "--selector",
        f"team={team}",
        "--page-size",
        "2",
    )

    assert result.returncode == 0, result.stderr
    assert sorted(system["name"] for system in _json(result)) == sorted(
        system.name for system in registered
    )


def test_systems_with_a_bad_selector_exits_with_invalid_argument(
    suite: RunningSuite, node: NodeClient
) -> None:
    result = node("systems", "--collector", suite.address("collector"), "--selector", "role")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "INVALID_ARGUMENT" in result.stderr
    assert "label_selector" in result.stderr


def test_clone_starts_an_operation_that_the_orchestrator_serves(
    suite: RunningSuite, node: NodeClient
) -> None:
    source, target = register_systems(suite, _system(unique_id("src")), _system(unique_id("dst")))

    result = node(
        "clone",
        "--orchestrator",
        suite.address("orchestrator"),
        "--source",
        source.name,
        "--target",
        target.name,
        "--dry-run",
    )

    assert result.returncode == 0, result.stderr
    operation = _json(result)
    assert operation["name"].startswith("operations/")
    assert operation["kind"] == "OPERATION_KIND_CLONE"
    with grpc.insecure_channel(suite.address("orchestrator")) as channel:
        stub = orchestrator_grpc.OrchestratorServiceStub(channel)
        stored = stub.GetOperation(
            orchestrator_pb.GetOperationRequest(name=operation["name"]), timeout=30
        ).operation
    assert stored.kind == common_pb2.OPERATION_KIND_CLONE
    assert stored.create_time.ToJsonString() == operation["createTime"]


def test_clone_watched_to_the_end_fails_for_a_source_without_configuration(
    suite: RunningSuite, node: NodeClient
) -> None:
    source, target = register_systems(suite, _system(unique_id("src")), _system(unique_id("dst")))

    result = node(
        "clone",
        "--orchestrator",
        suite.address("orchestrator"),
        "--source",
        source.name,
        "--target",
        target.name,
        "--dry-run",
        "--watch",
    )

    assert result.returncode == 1, result.stderr  # printed, but the operation failed
    operation = _json(result)
    assert operation["name"].startswith("operations/")
    assert operation["done"] is True
    assert operation["state"] == "OPERATION_STATE_FAILED"
    assert operation["error"]["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert source.name in operation["error"]["message"]
    assert "configuration" in operation["error"]["message"]
    # The error details arrive decoded: the ErrorInfo a client branches on.
    infos = [
        detail
        for detail in operation["error"].get("details", [])
        if detail.get("@type", "").endswith("/google.rpc.ErrorInfo")
    ]
    assert infos
    assert infos[0]["reason"]
    assert infos[0]["domain"] == "cfgclone.dev"
    assert "FAILED_PRECONDITION" in result.stderr
    assert operation["name"] in result.stderr
    assert f"reason: {infos[0]['reason']}" in result.stderr


def test_clone_from_an_unknown_source_exits_with_not_found(
    suite: RunningSuite, node: NodeClient
) -> None:
    (target,) = register_systems(suite, _system(unique_id("dst")))
    missing = f"systems/{unique_id('missing')}"

    result = node(
        "clone",
        "--orchestrator",
        suite.address("orchestrator"),
        "--source",
        missing,
        "--target",
        target.name,
        "--dry-run",
        "--watch",
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: NOT_FOUND: ")
    assert missing in result.stderr


def test_clone_from_a_malformed_source_exits_with_invalid_argument_naming_the_field(
    suite: RunningSuite, node: NodeClient
) -> None:
    (target,) = register_systems(suite, _system(unique_id("dst")))

    result = node(
        "clone",
        "--orchestrator",
        suite.address("orchestrator"),
        "--source",
        "Not A System",
        "--target",
        target.name,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: INVALID_ARGUMENT: ")
    assert "field source:" in result.stderr  # from the BadRequest detail


def test_clone_with_no_orchestrator_listening_exits_with_unavailable(node: NodeClient) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"

    result = node(
        "clone", "--orchestrator", address, "--source", "systems/a", "--target", "systems/b"
    )

    assert result.returncode == 3
    assert result.stderr.startswith("error: UNAVAILABLE: ")


def test_clone_without_a_source_is_a_usage_error(node: NodeClient) -> None:
    result = node("clone", "--orchestrator", "127.0.0.1:1", "--target", "systems/b")

    assert result.returncode == 2
    assert "clone needs --source" in result.stderr
    assert "usage:" in result.stderr


def test_exit_codes_are_those_of_the_cli(suite: RunningSuite, node: NodeClient) -> None:
    """The same situations through the Node client and the ``cfgclone`` CLI end alike."""
    cfgclone = str(Path(sys.executable).parent / "cfgclone")
    source, target = register_systems(suite, _system(unique_id("src")), _system(unique_id("dst")))
    orchestrator = suite.address("orchestrator")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{probe.getsockname()[1]}"

    situations = {
        "operation failed": (orchestrator, source.name, [target.name]),
        "not found": (orchestrator, f"systems/{unique_id('missing')}", [target.name]),
        "invalid": (orchestrator, "Not A System", [target.name]),
        "unreachable": (nobody, source.name, [target.name]),
        "usage": (orchestrator, source.name, []),
    }
    expected = {"operation failed": 1, "not found": 1, "invalid": 1, "unreachable": 3, "usage": 2}
    for situation, (address, src, targets) in situations.items():
        by_node = node(
            "clone", "--orchestrator", address, "--source", src,
            *[a for t in targets for a in ("--target", t)], "--dry-run", "--watch",
        )  # fmt: skip
        by_cli = run(
            [cfgclone, f"--orchestrator={address}", "clone", src, *targets, "--dry-run"],
            cwd=REPOSITORY,
        )
        assert by_node.returncode == by_cli.returncode == expected[situation], (
            situation,
            by_node.stderr,
            by_cli.stderr,
        )
