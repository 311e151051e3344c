"""Where the CLI finds the services: flags, then variables, then ``cfgclone up``'s context file.

``cfgclone up`` writes the address of each service it started to
``$XDG_CONFIG_HOME/cfgclone/context.json`` (``~/.config/cfgclone/context.json``)
and removes it when it stops, so every other command follows an ``up`` on any
ports. A ``--<service>`` flag, then ``CFGCLONE_<SERVICE>_ADDRESS``, override it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from cfgclone.common.settings import (
    DEFAULT_PORTS,
    SERVICE_NAMES,
    PeerSettings,
    peers_from_env,
)


def context_path() -> Path:
    """``$XDG_CONFIG_HOME/cfgclone/context.json``."""
    return platformdirs.user_config_path("cfgclone") / "context.json"


def address_variable(service: str) -> str:
    return f"CFGCLONE_{service.upper()}_ADDRESS"


@dataclass(frozen=True)
class Context:
    """What a running ``cfgclone up`` left for the other commands."""

    addresses: Mapping[str, str]
    """``host:port`` of each service."""
    pid: int
    """The ``cfgclone up`` process."""
    database: str
    """Where the suite keeps its state (for people; no secrets)."""


def write_context(context: Context, path: Path | None = None) -> Path:
    """Write the context file (readable by the user only) and return its path."""
    path = path or context_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(
        json.dumps(
            {
                "addresses": dict(context.addresses),
                "pid": context.pid,
                "database": context.database,
            },
            indent=2,
        )
        + "\n"
    )
    temporary.chmod(0o600)
    temporary.replace(path)
    return path


def read_context(path: Path | None = None) -> Context | None:
    """The context file's content, None when there is none (or it is not one)."""
    path = path or context_path()
    try:
        data = json.loads(path.read_text())
        addresses = {str(k): str(v) for k, v in data["addresses"].items() if k in SERVICE_NAMES}
        return Context(addresses, int(data.get("pid", 0)), str(data.get("database", "")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remove_context(pid: int, path: Path | None = None) -> None:
    """Remove the context file if it is still that of ``cfgclone up`` process ``pid``."""
    path = path or context_path()
    current = read_context(path)
    if current is not None and current.pid == pid:
        with contextlib.suppress(OSError):
            path.unlink()


@dataclass(frozen=True)
class Resolved:
    """Where the CLI calls each service, and which setting said so."""

    peers: PeerSettings
    sources: Mapping[str, str]
    """For each service: ``--<service>``, ``CFGCLONE_<SERVICE>_ADDRESS``, the file, or default."""

    def describe(self, service: str) -> str:
        return f"{service} at {self.peers.address(service)} (from {self.sources[service]})"


def resolve(
    flags: Mapping[str, str | None],
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Resolved:
    """Addresses from flags, then variables, then the context file, then the default ports."""
    env = dict(os.environ if env is None else env)
    path = path or context_path()
    context = read_context(path)
    sources: dict[str, str] = {}
    for service in SERVICE_NAMES:
        variable = address_variable(service)
        flag = flags.get(service)
        if flag:
            env[variable] = flag
            sources[service] = f"--{service}"
        elif env.get(variable):
            sources[service] = variable
        elif context is not None and service in context.addresses:
            env[variable] = context.addresses[service]
            sources[service] = f"{path}, written by cfgclone up"
        else:
            sources[service] = f"default port {DEFAULT_PORTS[service]}"
    return Resolved(peers_from_env(env), sources)


class ServiceUnreachable(Exception):
    """A service does not answer at the address the CLI was given."""

    def __init__(self, service: str, resolved: Resolved) -> None:
        super().__init__(
            f"the {resolved.describe(service)} does not answer; is the suite up "
            f"(cfgclone up)? Set {address_variable(service)} or --{service} to where it listens"
        )
        self.service = service
