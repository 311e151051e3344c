"""Settings every service reads once at start, from the environment and flags.

Each group is a frozen dataclass validated when built; a bad value stops the
service at start with a message naming the variable, never at the first
request. Flags given on the command line take precedence over the environment.

Environment variables (flag in brackets):

* ``CFGCLONE_DATABASE_URL`` [--database-url]: PostgreSQL URL; unset starts the
  embedded PostgreSQL in ``CFGCLONE_DATA_DIR``.
* ``CFGCLONE_DATA_DIR`` [--data-dir]: folder of the embedded database and other
  local state (default ``/var/lib/cfgclone`` as root, else the user's data dir,
  ``~/.local/share/cfgclone``).
* ``CFGCLONE_DB_POOL_MIN`` / ``CFGCLONE_DB_POOL_MAX``: connection pool bounds.
* ``CFGCLONE_RETENTION_DAYS``: samples older than this are dropped (default 30).
* ``CFGCLONE_HOST`` [--host], ``CFGCLONE_PORT`` [--port]: where the service listens;
  port 0 picks a free port.
* ``CFGCLONE_GRACE_SECONDS``: grace period for in-flight calls on shutdown.
* ``CFGCLONE_MAX_MESSAGE_BYTES``: largest request message a server accepts (32 MiB).
* ``CFGCLONE_MAX_INFLIGHT_BYTES``: request bytes a server works on at once; past it
  a request is RESOURCE_EXHAUSTED (128 MiB).
* ``CFGCLONE_STREAM_IDLE_SECONDS``: a client stream that sends nothing this long is
  closed with DEADLINE_EXCEEDED (60).
* ``CFGCLONE_MAX_STREAMS_PER_CONNECTION``: concurrent calls on one HTTP/2 connection (100).
* ``CFGCLONE_TLS_CERT``, ``CFGCLONE_TLS_KEY``: server certificate and key (PEM);
  both or neither.
* ``CFGCLONE_TLS_CLIENT_CA``: CA bundle; when set, clients must present a
  certificate it signed (mutual TLS).
* ``CFGCLONE_TLS_CA``: CA bundle clients use to verify servers.
* ``CFGCLONE_TLS_CLIENT_CERT``, ``CFGCLONE_TLS_CLIENT_KEY``: certificate a client
  presents for mutual TLS.
* ``CFGCLONE_AUTH_TOKENS_FILE``: file of ``token identity role`` lines; unset
  disables authentication (every caller is the ``anonymous`` operator).
* ``CFGCLONE_PAGE_TOKEN_KEY``: secret (16 bytes or more) that signs page tokens,
  the same on every replica; unset uses a key generated once and kept in the database.
* ``CFGCLONE_TOKEN``: bearer token a client (another service, the CLI, an agent) sends.
* ``CFGCLONE_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``): OTLP/gRPC
  endpoint for traces; unset exports nothing.
* ``CFGCLONE_LOG_LEVEL``, ``CFGCLONE_LOG_FORMAT`` (``json`` or ``text``).
* ``CFGCLONE_METRICS_PORT`` [--metrics-port]: port of the Prometheus ``/metrics``
  endpoint (and the predictor's change reports); unset serves none, 0 picks a free port.
* ``CFGCLONE_{COLLECTOR,FINGERPRINT,SIMILARITY,PREDICTOR,ORCHESTRATOR}_ADDRESS``:
  ``host:port`` of each service, for the services and the CLI that call them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import platformdirs

from cfgclone.common.usage import OneLineParser

SERVICE_NAMES = ("collector", "fingerprint", "similarity", "predictor", "orchestrator")

DEFAULT_PORTS: Mapping[str, int] = {
    "collector": 50051,
    "fingerprint": 50052,
    "similarity": 50053,
    "predictor": 50054,
    "orchestrator": 50055,
}


class SettingsError(ValueError):
    """A setting has a value the service cannot start with."""


def created_folder(folder: Path, variable: str, what: str) -> Path:
    """``folder``, created if need be; one that cannot be is a bad ``variable``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise SettingsError(f"{variable}: cannot create the {what} {folder} ({reason})") from None
    return folder


SYSTEM_DATA_DIR = Path("/var/lib/cfgclone")
"""Default data dir as root: open to the embedded server's unprivileged user."""


def default_data_dir() -> Path:
    """``/var/lib/cfgclone`` as root, else the user's data dir (``~/.local/share/cfgclone``)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return SYSTEM_DATA_DIR
    return platformdirs.user_data_path("cfgclone")


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the services keep their state."""

    url: str | None = None
    """PostgreSQL connection URL; None means the embedded server in ``data_dir``."""
    data_dir: Path = field(default_factory=default_data_dir)
    """Folder of the embedded PostgreSQL cluster and other local state."""
    pool_min_size: int = 1
    """Connections the pool keeps open."""
    pool_max_size: int = 8
    """Most connections the pool opens."""
    retention: timedelta = timedelta(days=30)
    """Samples older than this are dropped."""

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(("postgresql://", "postgres://")):
            raise SettingsError(
                "CFGCLONE_DATABASE_URL must start with postgresql:// "
                f"(got {self.url.split(':', 1)[0]}:...)"
            )
        if not 1 <= self.pool_min_size <= self.pool_max_size:
            raise SettingsError(
                "CFGCLONE_DB_POOL_MIN must be at least 1 and at most CFGCLONE_DB_POOL_MAX "
                f"(got {self.pool_min_size} and {self.pool_max_size})"
            )
        if self.retention <= timedelta(0):
            raise SettingsError("CFGCLONE_RETENTION_DAYS must be positive")


def _require_files(**variables: Path | None) -> None:
    """A message naming the variable whose file is missing."""
    for variable, path in variables.items():
        if path is not None and not path.is_file():
            raise SettingsError(f"{variable}: TLS file not found: {path}")


@dataclass(frozen=True)
class ServerTls:
    """TLS of a server; with ``client_ca_file`` it requires client certificates."""

    cert_file: Path
    """Server certificate chain (PEM)."""
    key_file: Path
    """Server private key (PEM)."""
    client_ca_file: Path | None = None
    """CA bundle for client certificates; set means mutual TLS is required."""

    def __post_init__(self) -> None:
        _require_files(
            CFGCLONE_TLS_CERT=self.cert_file,
            CFGCLONE_TLS_KEY=self.key_file,
            CFGCLONE_TLS_CLIENT_CA=self.client_ca_file,
        )


@dataclass(frozen=True)
class ClientTls:
    """TLS of a client: the CA that signs servers and, for mutual TLS, its own certificate."""

    ca_file: Path | None = None
    """CA bundle that verifies servers; None uses the system roots."""
    cert_file: Path | None = None
    """Client certificate chain for mutual TLS."""
    key_file: Path | None = None
    """Client private key for mutual TLS."""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise SettingsError("CFGCLONE_TLS_CLIENT_CERT and CFGCLONE_TLS_CLIENT_KEY go together")
        _require_files(
            CFGCLONE_TLS_CA=self.ca_file,
            CFGCLONE_TLS_CLIENT_CERT=self.cert_file,
            CFGCLONE_TLS_CLIENT_KEY=self.key_file,
        )


@dataclass(frozen=True)
class ServerSettings:
    """Where and how a service listens."""

    host: str = "127.0.0.1"
    """Interface to bind; ``0.0.0.0`` or ``[::]`` for every interface."""
    port: int = 0
    """Port to bind; 0 picks a free one (the bound port is logged and returned)."""
    grace_seconds: float = 10.0
    """How long in-flight calls may run on after SIGTERM."""
    tls: ServerTls | None = None
    """TLS; None serves plaintext (fine on loopback, not across machines)."""
    max_message_bytes: int = 32 * 1024 * 1024
    """Largest request message accepted."""
    max_inflight_bytes: int = 128 * 1024 * 1024
    """Request bytes worked on at once; past it a request is RESOURCE_EXHAUSTED."""
    stream_idle_seconds: float = 60.0
    """A client stream silent this long is closed."""
    max_streams_per_connection: int = 100
    """Concurrent calls one HTTP/2 connection may have open."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"CFGCLONE_PORT must be 0-65535 (got {self.port})")
        if self.grace_seconds < 0:
            raise SettingsError("CFGCLONE_GRACE_SECONDS must not be negative")
        if not 1024 <= self.max_message_bytes <= 1024 * 1024 * 1024:
            raise SettingsError("CFGCLONE_MAX_MESSAGE_BYTES must be between 1 KiB and 1 GiB")
        if self.max_inflight_bytes < self.max_message_bytes:
            raise SettingsError(
                "CFGCLONE_MAX_INFLIGHT_BYTES must be at least CFGCLONE_MAX_MESSAGE_BYTES"
            )
        if self.stream_idle_seconds <= 0:
            raise SettingsError("CFGCLONE_STREAM_IDLE_SECONDS must be positive")
        if self.max_streams_per_connection < 1:
            raise SettingsError("CFGCLONE_MAX_STREAMS_PER_CONNECTION must be at least 1")

    @property
    def address(self) -> str:
        """``host:port`` as gRPC binds it."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AuthSettings:
    """Bearer-token authentication."""

    tokens_file: Path | None = None
    """File of ``token identity role`` lines; None disables authentication."""
    page_token_key: str | None = field(default=None, repr=False)
    """Secret that signs page tokens, the same on every replica; None uses the key the
    migrations generated and stored in the database (table ``deployment_keys``)."""

    def __post_init__(self) -> None:
        if self.tokens_file is not None and not self.tokens_file.is_file():
            raise SettingsError(f"CFGCLONE_AUTH_TOKENS_FILE not found: {self.tokens_file}")
        if self.page_token_key is not None and len(self.page_token_key.encode()) < 16:
            raise SettingsError("CFGCLONE_PAGE_TOKEN_KEY must have at least 16 bytes")


@dataclass(frozen=True)
class TelemetrySettings:
    """Tracing and logging."""

    otlp_endpoint: str | None = None
    """OTLP/gRPC collector endpoint; None exports no spans."""
    log_level: str = "INFO"
    """Python logging level name."""
    log_format: str = "json"
    """``json`` for one JSON object a line, ``text`` for people."""
    metrics_port: int | None = None
    """Port of ``/metrics`` on the service's host; None serves none, 0 picks a free port."""

    def __post_init__(self) -> None:
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise SettingsError(f"CFGCLONE_METRICS_PORT must be 0-65535 (got {self.metrics_port})")
        if self.log_format not in ("json", "text"):
            raise SettingsError(f"CFGCLONE_LOG_FORMAT must be json or text (got {self.log_format})")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"CFGCLONE_LOG_LEVEL is not a level: {self.log_level}")


@dataclass(frozen=True)
class PeerSettings:
    """How to reach the other services."""

    addresses: Mapping[str, str] = field(
        default_factory=lambda: {n: f"127.0.0.1:{p}" for n, p in DEFAULT_PORTS.items()}
    )
    """``host:port`` of each service by name."""
    tls: ClientTls | None = None
    """TLS towards the services; None is plaintext."""
    token: str | None = None
    """Bearer token sent on every call."""
    timeout_seconds: float = 10.0
    """Default deadline of a call to another service."""

    def address(self, service: str) -> str:
        """Address of a service by name."""
        try:
            return self.addresses[service]
        except KeyError:
            raise SettingsError(f"no address for service {service!r}") from None


@dataclass(frozen=True)
class ServiceSettings:
    """Everything a service needs at start."""

    service: str
    """Service name: collector, fingerprint, similarity, predictor or orchestrator."""
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    peers: PeerSettings = field(default_factory=PeerSettings)
    options: Mapping[str, str] = field(default_factory=dict)
    """``CFGCLONE_<SERVICE>_*`` variables, for the service's own settings class."""

    def __post_init__(self) -> None:
        if self.service not in SERVICE_NAMES:
            raise SettingsError(f"unknown service {self.service!r}")


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _number(
    env: Mapping[str, str], name: str, default: float, kind: type[float] | type[int]
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number (got {raw!r})") from None


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    """An integer variable, with a message naming it when it is not one."""
    return int(_number(env, name, default, int))


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    """A number variable, with a message naming it when it is not one."""
    return float(_number(env, name, default, float))


def database_from_env(env: Mapping[str, str]) -> DatabaseSettings:
    """Database settings from ``CFGCLONE_DATABASE_URL`` and friends."""
    defaults = DatabaseSettings()
    return DatabaseSettings(
        url=env.get("CFGCLONE_DATABASE_URL") or None,
        data_dir=_path(env.get("CFGCLONE_DATA_DIR")) or defaults.data_dir,
        pool_min_size=env_int(env, "CFGCLONE_DB_POOL_MIN", defaults.pool_min_size),
        pool_max_size=env_int(env, "CFGCLONE_DB_POOL_MAX", defaults.pool_max_size),
        retention=timedelta(days=env_float(env, "CFGCLONE_RETENTION_DAYS", 30.0)),
    )


def client_tls_from_env(env: Mapping[str, str]) -> ClientTls | None:
    """Client TLS from ``CFGCLONE_TLS_CA`` and the client certificate pair; None when unset."""
    ca = _path(env.get("CFGCLONE_TLS_CA"))
    cert = _path(env.get("CFGCLONE_TLS_CLIENT_CERT"))
    key = _path(env.get("CFGCLONE_TLS_CLIENT_KEY"))
    if ca is None and cert is None and key is None:
        return None
    return ClientTls(ca_file=ca, cert_file=cert, key_file=key)


def peers_from_env(env: Mapping[str, str]) -> PeerSettings:
    """Addresses of the services, and how to call them."""
    addresses = {
        name: env.get(f"CFGCLONE_{name.upper()}_ADDRESS") or f"127.0.0.1:{port}"
        for name, port in DEFAULT_PORTS.items()
    }
    timeout = env_float(env, "CFGCLONE_CALL_TIMEOUT_SECONDS", 10.0)
    if not timeout > 0:
        raise SettingsError(f"CFGCLONE_CALL_TIMEOUT_SECONDS must be positive (got {timeout:g})")
    return PeerSettings(
        addresses=addresses,
        tls=client_tls_from_env(env),
        token=env.get("CFGCLONE_TOKEN") or None,
        timeout_seconds=timeout,
    )


def _server_tls(env: Mapping[str, str]) -> ServerTls | None:
    cert = _path(env.get("CFGCLONE_TLS_CERT"))
    key = _path(env.get("CFGCLONE_TLS_KEY"))
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise SettingsError("CFGCLONE_TLS_CERT and CFGCLONE_TLS_KEY go together")
    return ServerTls(cert, key, _path(env.get("CFGCLONE_TLS_CLIENT_CA")))


def argument_parser(service: str) -> argparse.ArgumentParser:
    """Flags shared by every service's command."""
    parser = OneLineParser(
        prog=f"cfgclone-{service}",
        description=f"cfgclone {service} service. Settings come from CFGCLONE_* variables; "
        "flags override them.",
    )
    parser.add_argument("--host", help="interface to bind (CFGCLONE_HOST)")
    parser.add_argument("--port", type=int, help="port to bind, 0 for any (CFGCLONE_PORT)")
    parser.add_argument("--database-url", help="PostgreSQL URL (CFGCLONE_DATABASE_URL)")
    parser.add_argument("--data-dir", help="embedded database folder (CFGCLONE_DATA_DIR)")
    parser.add_argument("--log-format", choices=("json", "text"), help="CFGCLONE_LOG_FORMAT")
    parser.add_argument(
        "--metrics-port", type=int, help="port of /metrics, 0 for any (CFGCLONE_METRICS_PORT)"
    )
    return parser


def load_settings(
    service: str,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> ServiceSettings:
    """Read a service's settings from ``env`` (default ``os.environ``) and ``argv`` flags."""
    env = dict(os.environ if env is None else env)
    args = argument_parser(service).parse_args(argv if argv is not None else [])
    overrides = {
        "CFGCLONE_HOST": args.host,
        "CFGCLONE_PORT": None if args.port is None else str(args.port),
        "CFGCLONE_DATABASE_URL": args.database_url,
        "CFGCLONE_DATA_DIR": args.data_dir,
        "CFGCLONE_LOG_FORMAT": args.log_format,
        "CFGCLONE_METRICS_PORT": None if args.metrics_port is None else str(args.metrics_port),
    }
    env.update({k: v for k, v in overrides.items() if v is not None})
    prefix = f"CFGCLONE_{service.upper()}_"
    return ServiceSettings(
        service=service,
        server=ServerSettings(
            host=env.get("CFGCLONE_HOST") or "127.0.0.1",
            port=env_int(env, "CFGCLONE_PORT", DEFAULT_PORTS[service]),
            grace_seconds=env_float(env, "CFGCLONE_GRACE_SECONDS", 10.0),
            tls=_server_tls(env),
            max_message_bytes=env_int(
                env, "CFGCLONE_MAX_MESSAGE_BYTES", ServerSettings.max_message_bytes
            ),
            max_inflight_bytes=env_int(
                env, "CFGCLONE_MAX_INFLIGHT_BYTES", ServerSettings.max_inflight_bytes
            ),
            stream_idle_seconds=env_float(
                env, "CFGCLONE_STREAM_IDLE_SECONDS", ServerSettings.stream_idle_seconds
            ),
            max_streams_per_connection=env_int(
                env,
                "CFGCLONE_MAX_STREAMS_PER_CONNECTION",
                ServerSettings.max_streams_per_connection,
            ),
        ),
        database=database_from_env(env),
        auth=AuthSettings(
            tokens_file=_path(env.get("CFGCLONE_AUTH_TOKENS_FILE")),
            page_token_key=env.get("CFGCLONE_PAGE_TOKEN_KEY") or None,
        ),
        telemetry=TelemetrySettings(
            otlp_endpoint=env.get("CFGCLONE_OTLP_ENDPOINT")
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or None,
            log_level=(env.get("CFGCLONE_LOG_LEVEL") or "INFO").upper(),
            log_format=env.get("CFGCLONE_LOG_FORMAT") or "json",
            metrics_port=(
                env_int(env, "CFGCLONE_METRICS_PORT", 0)
                if env.get("CFGCLONE_METRICS_PORT")
                else None
            ),
        ),
        peers=peers_from_env(env),
        options={
            k[len(prefix) :]: v
            for k, v in env.items()
            if k.startswith(prefix) and k != f"{prefix}ADDRESS"
        },
    )
