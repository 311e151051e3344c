"""Pieces the benchmarks share: a temporary database and a collector in its own process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cfgclone.common import databases

ADMIN_URL = os.environ.get(
    "CFGCLONE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""PostgreSQL server the benchmarks create their temporary database on."""


def database_url_for(name: str) -> str:
    """The admin URL with its database replaced by ``name``."""
    return databases.database_url_for(ADMIN_URL, name)


def temporary_database() -> AbstractContextManager[str]:
    """An empty database of the benchmark server, dropped afterwards."""
    return databases.temporary_database(ADMIN_URL, "cfgclone_bench")


def start_service(
    service: str, url: str, options: Mapping[str, str] | None = None, *, port: int = 0
) -> tuple[subprocess.Popen[str], str]:
    """Start one cfgclone service in its own process on ``port`` (0: a free one) and wait
    until it is SERVING; the process and its address. The caller stops the process."""
    env = dict(
        os.environ,
        CFGCLONE_DATABASE_URL=url,
        CFGCLONE_LOG_LEVEL="ERROR",
        CFGCLONE_LOG_FORMAT="text",
        **(options or {}),
    )
    env["CFGCLONE_PORT"] = str(port)
    env.pop("CFGCLONE_AUTH_TOKENS_FILE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", f"cfgclone.{service}.main"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on ([\d.]+):(\d+)", line)
        if match is None:
            raise SystemExit(f"the {service} service did not start: {line!r}")
        address = f"{match.group(1)}:{match.group(2)}"
        wait_serving(address)
    except BaseException:
        process.kill()
        process.wait(timeout=30)
        raise
    return process, address


@contextmanager
def service_process(
    service: str, url: str, options: Mapping[str, str] | None = None
) -> Iterator[str]:
    """One cfgclone service in its own process on a free port; yields its address."""
    process, address = start_service(service, url, options)
    try:
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def collector_process(url: str) -> Iterator[str]:
    """A collector in its own process on a free port, scraper off; yields its address."""
    with service_process("collector", url, {"CFGCLONE_COLLECTOR_SCRAPE": "0"}) as address:
        yield address


def wait_serving(address: str, within: float = 30.0) -> None:
    """Return once the service at ``address`` reports SERVING."""
    deadline = time.monotonic() + within
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"the service at {address} did not become SERVING")
