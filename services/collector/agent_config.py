"""The configuration file of ``cfgclone agent``: TOML, read once at start, one schema.

:data:`SCHEMA` is the only description of the format: the parser reads the file
by it, ``docs/agent.md`` documents it (a test checks the two agree), and every
configuration shipped in ``deploy/`` and ``docs/`` is loaded by this parser in the
tests. A misspelt key must not silently turn a probe off, so an unknown table or
key stops the agent with its name and the nearest valid one; so does a value of
the wrong type or a missing required key. Relative paths are taken from the
folder of the configuration file.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfgclone.common.requests import SYSTEM_ID_PATTERN
from cfgclone.common.settings import ClientTls, SettingsError

__all__ = [
    "ENVIRONMENT",
    "SCHEMA",
    "AgentConfig",
    "ConfigError",
    "ExecConfig",
    "HttpProbeConfig",
    "Key",
    "PrometheusConfig",
    "TcpProbeConfig",
    "default_spool_folder",
    "load_agent_config",
    "parse_agent_config",
]


class ConfigError(ValueError):
    """The agent's configuration file cannot be used."""


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a table: its TOML type, default and meaning."""

    kind: str
    """``string``, ``number``, ``integer``, ``boolean``, ``path``, ``strings`` or ``labels``."""
    default: Any = None
    """Default value; None with ``required`` False means absent."""
    required: bool = False
    doc: str = ""


SCHEMA: Mapping[str, Mapping[str, Key]] = {
    "collector": {
        "address": Key("string", required=True, doc="host:port of cfgclone-collector"),
        "token_file": Key("path", doc="file holding the agent's bearer token"),
        "ca_file": Key("path", doc="CA bundle that verifies the collector's certificate"),
        "cert_file": Key("path", doc="client certificate for mutual TLS"),
        "key_file": Key("path", doc="private key of cert_file"),
        "call_timeout_seconds": Key("number", 10.0, doc="deadline of each call"),
        "connect_timeout_seconds": Key("number", 10.0, doc="how long to wait at start"),
        "retry_initial_seconds": Key("number", 0.5, doc="first retry delay"),
        "retry_max_seconds": Key("number", 30.0, doc="longest retry delay"),
    },
    "system": {
        "name": Key("string", doc="the system's name; default the host name"),
        "labels": Key("labels", {}, doc="labels of the system"),
    },
    "sampling": {
        "interval_seconds": Key("number", 1.0, doc="psutil sampling interval"),
        "host_metrics": Key("boolean", True, doc="sample the host with psutil"),
        "batch_max_samples": Key("integer", 5000, doc="samples in a batch at most"),
        "batch_max_seconds": Key("number", 5.0, doc="age of a batch at most"),
    },
    "spool": {
        "path": Key("path", doc="folder of the spool"),
        "max_bytes": Key("integer", 256 * 1024 * 1024, doc="bound of the spool"),
    },
    "tcp_probe": {
        "name": Key("string", required=True, doc="name of the probe"),
        "host": Key("string", required=True, doc="host name or address"),
        "port": Key("integer", required=True, doc="TCP port"),
        "interval_seconds": Key("number", doc="default: the sampling interval"),
        "timeout_seconds": Key("number", 3.0, doc="a slower connect counts as failed"),
    },
    "http_probe": {
        "name": Key("string", required=True, doc="name of the probe"),
        "url": Key("string", required=True, doc="http:// or https:// URL"),
        "interval_seconds": Key("number", doc="default: the sampling interval"),
        "timeout_seconds": Key("number", 5.0, doc="a slower answer counts as failed"),
    },
    "prometheus": {
        "url": Key("string", required=True, doc="the endpoint"),
        "prefixes": Key("strings", (), doc="series kept as they are"),
        "interval_seconds": Key("number", 15.0, doc="how often it is scraped"),
        "timeout_seconds": Key("number", 5.0, doc="a slower scrape is abandoned"),
    },
    "exec": {
        "command": Key("strings", required=True, doc="program and arguments"),
        "name": Key("string", doc="name in logs; default the program's file name"),
        "interval_seconds": Key("number", 60.0, doc="how often it runs"),
        "timeout_seconds": Key("number", doc="default: its interval"),
    },
}
"""Every table and key of the format. ``tcp_probe``, ``http_probe``, ``prometheus``
and ``exec`` are arrays of tables (``[[exec]]``); the others are plain tables."""

ARRAYS = frozenset({"tcp_probe", "http_probe", "prometheus", "exec"})

_PROBE_NAME = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,62}")
_HOST_SAFE = re.compile(r"[^a-z0-9-]+")


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


def default_spool_folder() -> Path:
    """``/var/lib/cfgclone-agent/spool`` as root, else under the user's data folder."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/cfgclone-agent/spool")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "cfgclone-agent" / "spool"


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
    spool_folder: Path = field(default_factory=default_spool_folder)
    """Folder of the SQLite file that holds batches until the collector has them."""
    spool_max_bytes: int = 256 * 1024 * 1024
    """Bound of the spool; beyond it the oldest batches are dropped."""
    batch_max_samples: int = 5_000
    batch_max_seconds: float = 5.0
    call_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 10.0
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    tcp: tuple[TcpProbeConfig, ...] = ()
    http: tuple[HttpProbeConfig, ...] = ()
    prometheus: tuple[PrometheusConfig, ...] = ()
    exec: tuple[ExecConfig, ...] = ()

    @property
    def system_name(self) -> str:
        return f"systems/{self.system}"

    @property
    def spool_path(self) -> Path:
        """The spool's SQLite file in :attr:`spool_folder`."""
        return self.spool_folder / "batches.sqlite3"


def _nearest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


_TYPES: Mapping[str, tuple[tuple[type, ...], str]] = {
    "string": ((str,), "a string"),
    "path": ((str,), "a path (string)"),
    "number": ((int, float), "a number"),
    "integer": ((int,), "an integer"),
    "boolean": ((bool,), "true or false"),
    "strings": ((list,), "a list of strings"),
    "labels": ((dict,), "a table of strings"),
}


def _is_a(value: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(value, kinds)


def _read_table(where: str, table: str, data: Any) -> dict[str, Any]:
    """The keys of one table, checked against the schema; absent keys get their default."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table ([{table}])")
    keys = SCHEMA[table]
    values: dict[str, Any] = {}
    for key, value in data.items():
        spec = keys.get(key)
        if spec is None:
            raise ConfigError(f"{where}: unknown key {key!r}{_nearest(key, list(keys))}")
        kinds, what = _TYPES[spec.kind]
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"{where}.{key} must be {what}")
        if not _is_a(value, kinds):
            raise ConfigError(f"{where}.{key} must be {what}")
        if spec.kind == "strings" and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}.{key} must be {what}")
        if spec.kind == "labels" and not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{where}.{key} must be {what}")
        if spec.kind in ("number", "integer") and not value > 0:
            raise ConfigError(f"{where}.{key} must be greater than 0")
        values[key] = value
    for key, spec in keys.items():
        if key not in values:
            if spec.required:
                raise ConfigError(f"{where}.{key} is required")
            values[key] = spec.default
    return values


def _tables(data: Mapping[str, Any]) -> dict[str, Any]:
    known = list(SCHEMA)
    read: dict[str, Any] = {}
    for name, value in data.items():
        if name not in SCHEMA:
            raise ConfigError(f"unknown table [{name}]{_nearest(name, known)}")
        if name in ARRAYS:
            if not isinstance(value, list):
                raise ConfigError(f"{name} must be an array of tables ([[{name}]])")
            read[name] = [_read_table(f"{name}[{i}]", name, item) for i, item in enumerate(value)]
        else:
            read[name] = _read_table(name, name, value)
    for name in SCHEMA:
        if name not in read:
            read[name] = [] if name in ARRAYS else _read_table(name, name, {})
    return read


def _address(value: str, where: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where} must be host:port (got {value!r})")
    return host.strip("[]"), int(port)


def _host_system_name() -> str:
    """The host name as a system id: lower case, ``-`` for anything else, at most 63."""
    name = _HOST_SAFE.sub("-", socket.gethostname().split(".")[0].lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"host-{name}".rstrip("-")
    return name[:63].rstrip("-")


def _probe_name(value: str, where: str) -> str:
    if _PROBE_NAME.fullmatch(value) is None:
        raise ConfigError(
            f"{where}.name must be 1-63 letters, digits, '_', '-' and '.' (got {value!r})"
        )
    return value


def _unique(names: list[str], kind: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"two [[{kind}]] entries are named {name!r}")
        seen.add(name)


ENVIRONMENT: Mapping[str, tuple[str, str]] = {
    "CFGCLONE_COLLECTOR_ADDRESS": ("collector", "address"),
    "CFGCLONE_TLS_CA": ("collector", "ca_file"),
    "CFGCLONE_TLS_CLIENT_CERT": ("collector", "cert_file"),
    "CFGCLONE_TLS_CLIENT_KEY": ("collector", "key_file"),
    "CFGCLONE_AGENT_SYSTEM": ("system", "name"),
    "CFGCLONE_AGENT_SPOOL": ("spool", "path"),
}
"""Variables that override a key of the file: the same ones every cfgclone client reads,
so one machine's agent and CLI agree, and a container sets them from its environment.
``CFGCLONE_TOKEN`` overrides ``token_file``."""


def parse_agent_config(
    text: str,
    base: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    hostname: Callable[[], str] = _host_system_name,
) -> AgentConfig:
    """An agent configuration from TOML text; relative paths are taken from ``base``;
    the variables of :data:`ENVIRONMENT` in ``environ`` (default none) override keys."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}") from None
    tables = _tables(data)
    environ = environ or {}
    for variable, (table, key) in ENVIRONMENT.items():
        if environ.get(variable):
            tables[table][key] = environ[variable]
    base = base or Path.cwd()

    def path(value: str | None) -> Path | None:
        if value is None:
            return None
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    collector, system, sampling, spool = (
        tables[name] for name in ("collector", "system", "sampling", "spool")
    )
    _address(collector["address"], "collector.address")
    name = system["name"] or hostname()
    if SYSTEM_ID_PATTERN.fullmatch(name) is None:
        raise ConfigError(
            "system.name must be 1-63 lower-case letters, digits and '-', starting with a "
            f"letter (got {name!r})"
        )
    token = environ.get("CFGCLONE_TOKEN") or None
    token_file = path(collector["token_file"])
    if token_file is not None and token is None:
        try:
            token = token_file.read_text(encoding="utf-8").strip() or None
        except OSError as error:
            raise ConfigError(
                f"collector.token_file cannot be read: {error.strerror or error}"
            ) from None
    tls = None
    tls_files = [path(collector[key]) for key in ("ca_file", "cert_file", "key_file")]
    if any(tls_files):
        try:
            tls = ClientTls(ca_file=tls_files[0], cert_file=tls_files[1], key_file=tls_files[2])
        except SettingsError as error:
            raise ConfigError(f"collector: {error}") from None
    interval = float(sampling["interval_seconds"])

    tcp = []
    for index, table in enumerate(tables["tcp_probe"]):
        where = f"tcp_probe[{index}]"
        if not 0 < table["port"] < 65536:
            raise ConfigError(f"{where}.port must be 1-65535 (got {table['port']})")
        tcp.append(
            TcpProbeConfig(
                _probe_name(table["name"], where),
                table["host"],
                table["port"],
                float(table["interval_seconds"] or interval),
                float(table["timeout_seconds"]),
            )
        )
    http = []
    for index, table in enumerate(tables["http_probe"]):
        where = f"http_probe[{index}]"
        if not table["url"].startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url must start with http:// or https://")
        http.append(
            HttpProbeConfig(
                _probe_name(table["name"], where),
                table["url"],
                float(table["interval_seconds"] or interval),
                float(table["timeout_seconds"]),
            )
        )
    prometheus = [
        PrometheusConfig(
            table["url"],
            tuple(table["prefixes"]),
            float(table["interval_seconds"]),
            float(table["timeout_seconds"]),
        )
        for table in tables["prometheus"]
    ]
    plugins = []
    for index, table in enumerate(tables["exec"]):
        where = f"exec[{index}]"
        if not table["command"]:
            raise ConfigError(f"{where}.command must name a program")
        every = float(table["interval_seconds"])
        plugins.append(
            ExecConfig(
                _probe_name(table["name"] or Path(table["command"][0]).name, where),
                tuple(table["command"]),
                every,
                float(table["timeout_seconds"] or every),
            )
        )
    _unique([p.name for p in tcp], "tcp_probe")
    _unique([p.name for p in http], "http_probe")
    _unique([p.name for p in plugins], "exec")
    return AgentConfig(
        collector=collector["address"],
        system=name,
        token=token,
        tls=tls,
        interval_seconds=interval,
        host_metrics=sampling["host_metrics"],
        labels=dict(system["labels"]),
        spool_folder=path(spool["path"]) or default_spool_folder(),
        spool_max_bytes=int(spool["max_bytes"]),
        batch_max_samples=int(sampling["batch_max_samples"]),
        batch_max_seconds=float(sampling["batch_max_seconds"]),
        call_timeout_seconds=float(collector["call_timeout_seconds"]),
        connect_timeout_seconds=float(collector["connect_timeout_seconds"]),
        retry_initial_seconds=float(collector["retry_initial_seconds"]),
        retry_max_seconds=float(collector["retry_max_seconds"]),
        tcp=tuple(tcp),
        http=tuple(http),
        prometheus=tuple(prometheus),
        exec=tuple(plugins),
    )


def load_agent_config(path: Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """The agent configuration in the TOML file ``path``, with ``environ``'s overrides."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}") from None
    try:
        return parse_agent_config(text, path.parent, environ=environ)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
