"""Helpers for the tests of clients that talk to the suite from outside: the suite as
``cfgclone up`` runs it, systems registered with it, client commands run to their end."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc

from cfgclone.cli.suite import (
    RunningSuite,
    SuiteStartError,
    free_base_port,
    running_suite,
)
from cfgclone.common.settings import DEFAULT_PORTS, SERVICE_NAMES, DatabaseSettings
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import collector_service_pb2_grpc as collector_grpc
from cfgclone.v1 import common_pb2
from tests.conftest import temporary_database

REPOSITORY = Path(__file__).resolve().parents[2]
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
SERVING_WAIT_SECONDS = 90.0


def _log_tails(log_dir: Path, lines: int = 30) -> str:
    parts = []
    for log in sorted(log_dir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n".join(parts)


@contextlib.contextmanager
def suite_on_temporary_database() -> Iterator[RunningSuite]:
    """All five services as separate processes, each SERVING, on an empty database."""
    with temporary_database() as url:
        data_dir = Path(tempfile.mkdtemp(prefix="cfgclone-clients-"))
        try:
            settings = DatabaseSettings(url=url, data_dir=data_dir)
            try:
                with running_suite(
                    settings, free_base_port(), "127.0.0.1", SERVING_WAIT_SECONDS
                ) as running:
                    yield running
            except SuiteStartError as error:
                raise SuiteStartError(f"{error}\n{_log_tails(data_dir / 'logs')}") from None
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


def port_map(suite: RunningSuite) -> dict[int, int]:
    """Each service's default port (50051-50055) to the port it has in ``suite``."""
    return {
        DEFAULT_PORTS[name]: int(suite.address(name).rsplit(":", 1)[1]) for name in SERVICE_NAMES
    }


def unique_id(prefix: str) -> str:
    """A system id (or label value) no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def register_systems(suite: RunningSuite, *systems: common_pb2.System) -> list[common_pb2.System]:
    """Register ``systems`` with the suite's collector; the systems as stored."""
    with grpc.insecure_channel(suite.address("collector")) as channel:
        stub = collector_grpc.CollectorServiceStub(channel)
        requests = [collector_pb.RegisterSystemRequest(system=system) for system in systems]
        return [stub.RegisterSystem(request, timeout=30).system for request in requests]


def run(command: list[str], *, cwd: Path = REPOSITORY) -> subprocess.CompletedProcess[str]:
    """Run a client command to its end (at most a minute), capturing what it prints."""
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
