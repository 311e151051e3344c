"""The configuration file of ``cfgclone agent``: TOML, read once at start.

Every key but ``collector`` and ``system`` is optional; the defaults are shown::

    collector = "collector.example.com:50051"   # host:port of the collector (required)
    system = "db-01"                             # this machine, systems/db-01 (required)
    token = ""                                   # bearer token, or read it from a file:
    token_file = ""                              # for example "/etc/cfgclone/token"
    interval_seconds = 1.0                       # host sampling (psutil) interval
    host_metrics = true                          # false: only the probes below
    spool_path = "~/.local/share/cfgclone/agent-spool.sqlite3"
    spool_max_mb = 256                           # oldest batches are dropped beyond this
    batch_max_samples = 5000                     # a batch is closed when it holds this many...
    batch_max_seconds = 10.0                     # ...or when its first sample is this old
    call_timeout_seconds = 10.0                  # deadline of each call to the collector
    retry_initial_seconds = 0.5                  # first retry delay; doubles per failure...
    retry_max_seconds = 30.0                     # ...up to this

    [labels]                                     # sent with the system's metadata
    role = "db"

    [tls]                                        # omit for plaintext
    ca = "/etc/cfgclone/ca.pem"                  # CA that signed the collector's certificate
    cert = "/etc/cfgclone/agent.pem"             # client certificate and key: mutual TLS
    key = "/etc/cfgclone/agent-key.pem"

    [[tcp]]                                      # TCP connect time: tcp.<name>.connect_seconds
    name = "primary_db"                          # and tcp.<name>.up (1 or 0)
    address = "10.0.0.5:5432"
    interval_seconds = 5.0                       # default: interval_seconds above
    timeout_seconds = 3.0

    [[http]]                                     # response time: http.<name>.latency_seconds
    name = "api"                                 # and http.<name>.status (0: no answer)
    url = "https://127.0.0.1:8443/health"
    interval_seconds = 5.0
    timeout_seconds = 5.0

    [[prometheus]]                               # a local Prometheus text endpoint
    url = "http://127.0.0.1:9100/metrics"        # node_exporter's counters become host metrics
    prefixes = ["node_load"]                     # series kept as they are (counters as rates)
    interval_seconds = 15.0

    [[exec]]                                     # a plugin printing `name value` lines
    name = "queue"
    command = ["/usr/local/bin/queue-depth", "--all"]
    interval_seconds = 10.0
    timeout_seconds = 5.0

Probe and plugin names become part of metric names, so they are letters,
digits and ``_``. A bad file stops the agent at start with a message naming
the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfgclone.common.requests import SYSTEM_ID_PATTERN
from cfgclone.common.settings import ClientTls, SettingsError

__all__ = [
    "AgentConfig",
    "ConfigError",
    "ExecConfig",
    "HttpProbeConfig",
    "PrometheusConfig",
    "TcpProbeConfig",
    "load_agent_config",
    "parse_agent_config",
]

_PROBE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,62}")
DEFAULT_SPOOL = Path.home() / ".local" / "share" / "cfgclone" / "agent-spool.sqlite3"


class ConfigError(ValueError):
    """The agent's configuration file cannot be used."""


@dataclass(frozen=True, slots=True)
class TcpProbeConfig:
    name: str
    host: str
    port: int
    interval_seconds: float
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class HttpProbeConfig:
    name: str
    url: str
    interval_seconds: float
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    url: str
    prefixes: tuple[str, ...]
    interval_seconds: float
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class ExecConfig:
    name: str
    command: tuple[str, ...]
    interval_seconds: float
    timeout_seconds: float


@dataclass(frozen=True)
class AgentConfig:
    """What the agent samples, and where and how it sends it."""

    collector: str
    """``host:port`` of the collector."""
    system: str
    """This machine's system id (``db-01``); its samples go to ``systems/db-01``."""
    token: str | None = None
    """Bearer token identifying the agent to the collector."""
    tls: ClientTls | None = None
    """TLS towards the collector; None is plaintext."""
    interval_seconds: float = 1.0
    """Host sampling interval."""
    host_metrics: bool = True
    """Whether to sample the host with psutil."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels registered with the system."""
    spool_path: Path = DEFAULT_SPOOL
    """SQLite file that holds batches until the collector has them."""
    spool_max_bytes: int = 256 * 1024 * 1024
    """Bound of the spool; beyond it the oldest batches are dropped."""
    batch_max_samples: int = 5_000
    batch_max_seconds: float = 10.0
    call_timeout_seconds: float = 10.0
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    tcp: tuple[TcpProbeConfig, ...] = ()
    http: tuple[HttpProbeConfig, ...] = ()
    prometheus: tuple[PrometheusConfig, ...] = ()
    exec: tuple[ExecConfig, ...] = ()

    @property
    def system_name(self) -> str:
        return f"systems/{self.system}"


class _Table:
    """A TOML table with typed getters whose errors name the key."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self._data = data
        self._where = where

    @property
    def where(self) -> str:
        """Where the table is in the file, for messages: ``tcp[0]``."""
        return self._where

    def _path(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def _get(self, key: str, kinds: tuple[type, ...], what: str, default: Any) -> Any:
        value = self._data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"{self._path(key)} must be {what}")
        if not isinstance(value, kinds):
            raise ConfigError(f"{self._path(key)} must be {what}")
        return value

    def text(self, key: str, default: str | None = None) -> str | None:
        value: str | None = self._get(key, (str,), "a string", default)
        return value

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if not value:
            raise ConfigError(f"{self._path(key)} is required")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.001) -> float:
        value = float(self._get(key, (int, float), "a number", default))
        if value < minimum:
            raise ConfigError(f"{self._path(key)} must be at least {minimum}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value: bool = self._get(key, (bool,), "true or false", default)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key, (list,), "a list of strings", [])
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{self._path(key)} must be a list of strings")
        return tuple(value)

    def name(self) -> str:
        value = self.required_text("name")
        if _PROBE_NAME.fullmatch(value) is None:
            raise ConfigError(f"{self._path('name')} must be letters, digits and _ (got {value!r})")
        return value

    def tables(self, key: str) -> list[_Table]:
        value = self._data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"{self._path(key)} must be an array of tables ([[{key}]])")
        return [_Table(item, f"{key}[{index}]") for index, item in enumerate(value)]

    def table(self, key: str) -> _Table | None:
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(f"{self._path(key)} must be a table ([{key}])")
        return _Table(value, key)


def _unique(names: list[str], kind: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"two [[{kind}]] entries are named {name!r}")
        seen.add(name)


def _address(value: str, where: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where} must be host:port (got {value!r})")
    return host.strip("[]"), int(port)


def parse_agent_config(text: str, base: Path | None = None) -> AgentConfig:
    """An agent configuration from TOML text; relative paths are taken from ``base``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}") from None
    root = _Table(data, "")
    base = base or Path.cwd()

    def path(value: str) -> Path:
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    system = root.required_text("system")
    if SYSTEM_ID_PATTERN.fullmatch(system) is None:
        raise ConfigError(
            f"system must be 1-63 lower-case letters, digits and '-', starting with a letter "
            f"(got {system!r})"
        )
    collector = root.required_text("collector")
    _address(collector, "collector")
    token = root.text("token")
    token_file = root.text("token_file")
    if token and token_file:
        raise ConfigError("set token or token_file, not both")
    if token_file:
        try:
            token = path(token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(f"token_file cannot be read: {error}") from None
    interval = root.number("interval_seconds", 1.0)
    tls = None
    tls_table = root.table("tls")
    if tls_table is not None:
        ca, cert, key = (tls_table.text(k) for k in ("ca", "cert", "key"))
        try:
            tls = ClientTls(
                ca_file=path(ca) if ca else None,
                cert_file=path(cert) if cert else None,
                key_file=path(key) if key else None,
            )
        except SettingsError as error:
            raise ConfigError(f"tls: {error}") from None
    labels_table = data.get("labels", {})
    if not isinstance(labels_table, dict) or not all(
        isinstance(v, str) for v in labels_table.values()
    ):
        raise ConfigError("labels must be a table of strings")

    tcp = []
    for table in root.tables("tcp"):
        host, port = _address(table.required_text("address"), f"{table.where}.address")
        tcp.append(
            TcpProbeConfig(
                table.name(),
                host,
                port,
                table.number("interval_seconds", interval),
                table.number("timeout_seconds", 3.0),
            )
        )
    http = [
        HttpProbeConfig(
            table.name(),
            table.required_text("url"),
            table.number("interval_seconds", interval),
            table.number("timeout_seconds", 5.0),
        )
        for table in root.tables("http")
    ]
    prometheus = [
        PrometheusConfig(
            table.required_text("url"),
            table.strings("prefixes"),
            table.number("interval_seconds", max(interval, 15.0)),
            table.number("timeout_seconds", 5.0),
        )
        for table in root.tables("prometheus")
    ]
    plugins = []
    for table in root.tables("exec"):
        command = table.strings("command")
        if not command:
            raise ConfigError(f"{table.where}.command must name a program")
        plugins.append(
            ExecConfig(
                table.name(),
                command,
                table.number("interval_seconds", max(interval, 10.0)),
                table.number("timeout_seconds", 5.0),
            )
        )
    _unique([p.name for p in tcp], "tcp")
    _unique([p.name for p in http], "http")
    _unique([p.name for p in plugins], "exec")
    return AgentConfig(
        collector=collector,
        system=system,
        token=token or None,
        tls=tls,
        interval_seconds=interval,
        host_metrics=root.flag("host_metrics", True),
        labels=dict(labels_table),
        spool_path=path(root.text("spool_path") or str(DEFAULT_SPOOL)),
        spool_max_bytes=int(root.number("spool_max_mb", 256, minimum=1) * 1024 * 1024),
        batch_max_samples=int(root.number("batch_max_samples", 5000, minimum=1)),
        batch_max_seconds=root.number("batch_max_seconds", 10.0),
        call_timeout_seconds=root.number("call_timeout_seconds", 10.0),
        retry_initial_seconds=root.number("retry_initial_seconds", 0.5),
        retry_max_seconds=root.number("retry_max_seconds", 30.0),
        tcp=tuple(tcp),
        http=tuple(http),
        prometheus=tuple(prometheus),
        exec=tuple(plugins),
    )


def load_agent_config(path: Path) -> AgentConfig:
    """The agent configuration in the TOML file ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}") from None
    try:
        return parse_agent_config(text, path.parent)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
