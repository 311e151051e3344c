"""Running the whole suite on one machine: ``cfgclone up``.

Starts the five services as separate processes on local ports, all on one
database (the embedded one unless ``CFGCLONE_DATABASE_URL`` is set), waits
until each reports SERVING, and stops them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cfgclone.common.databases import recreate_database
from cfgclone.common.settings import (
    DEFAULT_PORTS,
    SERVICE_NAMES,
    DatabaseSettings,
    created_folder,
)
from cfgclone.common.store import Store

STOP_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class ServiceProcess:
    """One service of the suite and where it listens."""

    name: str
    address: str
    process: subprocess.Popen[bytes]
    log: Path | None = None
    """Where its output goes; ``log_offset`` is where this run's output starts."""
    log_offset: int = 0

    def output(self) -> str:
        """What the service wrote to its log since it started."""
        if self.log is None:
            return ""
        with contextlib.suppress(OSError), self.log.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")
        return ""

    def listening(self) -> bool:
        """Whether this process (not another on the same port) says it bound its address."""
        return f"cfgclone-{self.name} listening on" in self.output()


def suite_environment(
    database_url: str, base_port: int, host: str, env: Mapping[str, str]
) -> dict[str, str]:
    """Environment shared by the suite's services: the database and each service's address."""
    shared = dict(env)
    shared["CFGCLONE_DATABASE_URL"] = database_url
    for offset, name in enumerate(SERVICE_NAMES):
        shared[f"CFGCLONE_{name.upper()}_ADDRESS"] = f"{host}:{base_port + offset}"
    return shared


async def migrate(database_url: str) -> list[int]:
    """Apply the schema migrations once, before the services start."""
    store = Store(database_url, min_size=1, max_size=1, name="migrate")
    await store.open(wait=True)
    try:
        return await store.migrate()
    finally:
        await store.close()


def metrics_port_of(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """``CFGCLONE_METRICS_PORT`` of one service of the suite: the five share one host, so a
    port P set for the suite is P for the collector and the next ports for the others
    (0 stays 0: each picks a free port)."""
    base = env.get("CFGCLONE_METRICS_PORT")
    if not base or not base.isdigit() or int(base) == 0:
        return {}
    return {"CFGCLONE_METRICS_PORT": str(int(base) + SERVICE_NAMES.index(name))}


def start_services(shared_env: Mapping[str, str], host: str, log_dir: Path) -> list[ServiceProcess]:
    """Start each service as its own process; their logs go to ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for name in SERVICE_NAMES:
        address = shared_env[f"CFGCLONE_{name.upper()}_ADDRESS"]
        env = dict(shared_env)
        env["CFGCLONE_HOST"] = host
        env["CFGCLONE_PORT"] = address.rsplit(":", 1)[1]
        env.update(metrics_port_of(name, shared_env))
        log_path = log_dir / f"{name}.log"
        log = log_path.open("ab")
        offset = log.tell()
        process = subprocess.Popen(
            [sys.executable, "-m", f"cfgclone.{name}.main"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops them in order
        )
        log.close()
        started.append(ServiceProcess(name, address, process, log_path, offset))
    return started


def why_it_stopped(service: ServiceProcess) -> str:
    """The last line a service logged, which says why it stopped (its message if JSON)."""
    lines = [line for line in service.output().splitlines() if line.strip()]
    if not lines:
        return "nothing logged"
    last = lines[-1].strip()
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return str(json.loads(last)["message"])
    return last


async def wait_until_serving(service: ServiceProcess, wait_seconds: float) -> None:
    """Return once ``service`` is SERVING; raise at once if it exits, with the reason it logged."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            if service.process.poll() is not None:
                why = why_it_stopped(service)
                raise SuiteStartError(
                    f"{service.name} did not start: {why}", port_taken="cannot listen on" in why
                )
            if not service.listening():
                await asyncio.sleep(0.2)
                continue
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.2)
    raise SuiteStartError(
        f"{service.name} not SERVING on {service.address} after {wait_seconds:.0f} s; "
        f"last logged: {why_it_stopped(service)}"
    )


async def wait_serving(address: str, wait_seconds: float) -> bool:
    """Whether the service at ``address`` reports SERVING within ``wait_seconds``."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            await asyncio.sleep(0.2)
    return False


def stop_services(services: list[ServiceProcess]) -> None:
    """SIGTERM every service, wait for graceful shutdown, SIGKILL what is left."""
    for service in services:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
    for service in services:
        try:
            service.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()


@dataclass(frozen=True)
class RunningSuite:
    """The suite's processes and where its database is."""

    services: list[ServiceProcess]
    database: str
    log_dir: Path

    def address(self, name: str) -> str:
        return next(s.address for s in self.services if s.name == name)


class SuiteStartError(RuntimeError):
    """A service did not report SERVING in time."""

    def __init__(self, message: str, *, port_taken: bool = False) -> None:
        super().__init__(message)
        self.port_taken = port_taken
        """The service could not bind its port: another process holds it."""


@contextlib.contextmanager
def running_suite(
    settings: DatabaseSettings, base_port: int, host: str, wait_seconds: float
) -> Iterator[RunningSuite]:
    """Start the suite, wait until every service is SERVING, and stop it on exit."""
    logs = log_folder(settings)
    url, embedded = resolve_database(settings)
    asyncio.run(migrate(url))
    shared = suite_environment(url, base_port, host, os.environ)
    services = start_services(shared, host, logs)
    try:
        asyncio.run(_all_serving(services, logs, wait_seconds))
        where = f"embedded PostgreSQL in {settings.data_dir}" if embedded else without_password(url)
        yield RunningSuite(services, where, logs)
    finally:
        stop_services(services)


async def _all_serving(services: list[ServiceProcess], logs: Path, wait: float) -> None:
    """Wait for every service; the first that fails stops the wait for all."""
    try:
        async with asyncio.TaskGroup() as group:
            for service in services:
                group.create_task(wait_until_serving(service, wait))
    except* SuiteStartError as failed:
        error = failed.exceptions[0]
        port_taken = isinstance(error, SuiteStartError) and error.port_taken
        raise SuiteStartError(f"{error}; logs in {logs}", port_taken=port_taken) from None


def ephemeral_ports() -> range:
    """The ports the kernel hands out for outgoing connections and port 0."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def free_base_port(host: str = "127.0.0.1") -> int:
    """A free port with the four after it free, below the ephemeral range.

    Ports from the ephemeral range are taken at any moment by other programs'
    connections; below it only a program that asks for that very port takes it.
    """
    import random
    import socket

    ephemeral = ephemeral_ports()
    top = min(ephemeral.start, 65536) - len(SERVICE_NAMES)
    pool = range(20000, top) if top > 20000 else range(1024, 65536 - len(SERVICE_NAMES))
    for base in random.sample(pool, 50):
        held: list[socket.socket] = []
        try:
            for port in range(base, base + len(SERVICE_NAMES)):
                sock = socket.socket()
                held.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise SuiteStartError("no free ports for the suite")


def default_base_port() -> int:
    return DEFAULT_PORTS[SERVICE_NAMES[0]]


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so both stop the suite the same way.

    SIGINT is taken too: a shell starts a background job (``cfgclone up &``) with SIGINT
    ignored, and ``kill -INT`` should still stop it.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {stop: signal.signal(stop, interrupt) for stop in stops}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def resolve_database(settings: DatabaseSettings) -> tuple[str, bool]:
    """The database URL, and whether it is the embedded server (started here if need be)."""
    if settings.url:
        return settings.url, False
    from cfgclone.common.embedded import start_embedded_database

    return start_embedded_database(settings.data_dir), True


DEMO_DATABASE = "cfgclone_demo"


def demo_database(settings: DatabaseSettings) -> DatabaseSettings:
    """Where the demo keeps its fleet: on the embedded server, a database of its own,
    made afresh at each run, so a second run tells the same stories and the suite's own
    data is never touched; with ``CFGCLONE_DATABASE_URL`` set, that database as it is."""
    if settings.url:
        return settings
    url, _ = resolve_database(settings)
    return dataclasses.replace(settings, url=recreate_database(url, DEMO_DATABASE))


def without_password(url: str) -> str:
    """The database URL as shown to people: its password masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def log_folder(settings: DatabaseSettings) -> Path:
    """Where ``up`` writes the services' logs, created; a folder that cannot be is a bad
    ``CFGCLONE_LOG_DIR`` (or ``CFGCLONE_DATA_DIR``, under which it is by default)."""
    variable = "CFGCLONE_LOG_DIR" if os.environ.get("CFGCLONE_LOG_DIR") else "CFGCLONE_DATA_DIR"
    folder = Path(os.environ.get("CFGCLONE_LOG_DIR") or settings.data_dir / "logs")
    return created_folder(folder, variable, "log folder")
