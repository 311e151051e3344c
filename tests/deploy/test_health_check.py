"""deploy/grpc_health_check.py against real gRPC servers, plaintext and mutual TLS,
with the certificates deploy/make-dev-certs.sh makes for the compose tls profile."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.deploy.support import DEPLOY, require_tool, run

SCRIPT = DEPLOY / "grpc_health_check.py"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grpc_health_check", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


health_check = load_script()


class HealthServer:
    """A gRPC server with the standard health service on a free port of 127.0.0.1."""

    def __init__(self, credentials: grpc.ServerCredentials | None = None) -> None:
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()

    def set(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        self.health.set("", status)

    def stop(self) -> None:
        self.server.stop(None).wait()


@pytest.fixture
def plaintext_server() -> Iterator[HealthServer]:
    server = HealthServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("openssl", "apt-get install openssl")
    folder = tmp_path_factory.mktemp("tls") / "certs"
    run(["bash", str(DEPLOY / "make-dev-certs.sh"), str(folder)])
    return folder


@pytest.fixture
def mutual_tls_server(certificates: Path) -> Iterator[HealthServer]:
    """A server configured as the compose tls profile configures the collector."""
    credentials = grpc.ssl_server_credentials(
        [
            (
                (certificates / "collector.key").read_bytes(),
                (certificates / "collector.crt").read_bytes(),
            )
        ],
        root_certificates=(certificates / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    server = HealthServer(credentials)
    yield server
    server.stop()


def tls_environment(certificates: Path, service: str) -> dict[str, str]:
    """The CFGCLONE_TLS_* variables of ``service``'s TLS variant in compose.yaml."""
    return {
        "CFGCLONE_TLS_CERT": str(certificates / f"{service}.crt"),
        "CFGCLONE_TLS_KEY": str(certificates / f"{service}.key"),
        "CFGCLONE_TLS_CLIENT_CA": str(certificates / "ca.crt"),
        "CFGCLONE_TLS_CA": str(certificates / "ca.crt"),
        "CFGCLONE_TLS_CLIENT_CERT": str(certificates / f"{service}.crt"),
        "CFGCLONE_TLS_CLIENT_KEY": str(certificates / f"{service}.key"),
    }


def test_serving_passes_and_not_serving_fails(plaintext_server: HealthServer) -> None:
    address = f"127.0.0.1:{plaintext_server.port}"
    plaintext_server.set(SERVING)
    assert health_check.check(address, env={}) is True
    plaintext_server.set(NOT_SERVING)
    assert health_check.check(address, env={}) is False


def test_an_unreachable_service_fails(plaintext_server: HealthServer) -> None:
    port = plaintext_server.port
    plaintext_server.stop()
    assert health_check.check(f"127.0.0.1:{port}", timeout=0.5, env={}) is False


def test_command_checks_its_own_port_by_default(plaintext_server: HealthServer) -> None:
    plaintext_server.set(SERVING)
    environment = {**os.environ, "CFGCLONE_PORT": str(plaintext_server.port)}
    environment = {k: v for k, v in environment.items() if not k.startswith("CFGCLONE_TLS_")}
    completed = subprocess.run(
        [sys.executable, str(SCRIPT)], env=environment, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    plaintext_server.set(NOT_SERVING)
    completed = subprocess.run(
        [sys.executable, str(SCRIPT)], env=environment, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 1
    assert "NOT_SERVING" in completed.stderr


def test_mutual_tls_with_the_dev_certificates_of_the_compose_tls_profile(
    mutual_tls_server: HealthServer, certificates: Path
) -> None:
    mutual_tls_server.set(SERVING)
    environment = tls_environment(certificates, "collector")
    # As in compose: the service's own name, which its certificate carries ...
    address = f"127.0.0.1:{mutual_tls_server.port}"
    assert health_check.check(address, server_name="collector", env=environment) is True
    # ... and as the host's CLI reaches the published port.
    assert health_check.check(f"localhost:{mutual_tls_server.port}", env=environment) is True


def test_tls_check_verifies_the_server_name(
    mutual_tls_server: HealthServer, certificates: Path
) -> None:
    mutual_tls_server.set(SERVING)
    environment = tls_environment(certificates, "collector")
    address = f"127.0.0.1:{mutual_tls_server.port}"
    assert health_check.check(address, server_name="predictor", timeout=1, env=environment) is False


def test_mutual_tls_needs_the_client_certificate(
    mutual_tls_server: HealthServer, certificates: Path
) -> None:
    mutual_tls_server.set(SERVING)
    environment = tls_environment(certificates, "collector")
    del environment["CFGCLONE_TLS_CLIENT_CERT"], environment["CFGCLONE_TLS_CLIENT_KEY"]
    address = f"127.0.0.1:{mutual_tls_server.port}"
    assert health_check.check(address, server_name="collector", timeout=1, env=environment) is False
