"""The agent configuration format of docs/agent.md, as data the tests check files against."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def _string(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _positive_integer(value: Any) -> bool:
    return _integer(value) and value > 0


def _port(value: Any) -> bool:
    return _integer(value) and 1 <= value <= 65535


def _strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_string(v) for v in value)


def _labels(value: Any) -> bool:
    return isinstance(value, dict) and all(
        _string(k) and isinstance(v, str) for k, v in value.items()
    )


def _url(value: Any) -> bool:
    return _string(value) and value.startswith(("http://", "https://"))


def _address(value: Any) -> bool:
    host, _, port = str(value).rpartition(":")
    return _string(value) and bool(host) and port.isdigit() and 1 <= int(port) <= 65535


@dataclass(frozen=True)
class Key:
    check: Callable[[Any], bool]
    """Whether a value is acceptable."""
    kind: str
    """What the check accepts, for messages."""
    required: bool = False


SECTIONS: Mapping[str, Mapping[str, Key]] = {
    "collector": {
        "address": Key(_address, "host:port", required=True),
        "token_file": Key(_string, "path"),
        "ca_file": Key(_string, "path"),
        "cert_file": Key(_string, "path"),
        "key_file": Key(_string, "path"),
    },
    "system": {
        "name": Key(_string, "string"),
        "labels": Key(_labels, "table of strings"),
    },
    "sampling": {
        "interval_seconds": Key(_positive_number, "number > 0"),
        "batch_max_samples": Key(_positive_integer, "integer > 0"),
        "batch_max_seconds": Key(_positive_number, "number > 0"),
    },
    "spool": {
        "path": Key(_string, "path"),
        "max_bytes": Key(_positive_integer, "integer > 0"),
    },
}
"""Tables (``[name]``) and their keys."""

ARRAYS: Mapping[str, Mapping[str, Key]] = {
    "tcp_probe": {
        "name": Key(_string, "string", required=True),
        "host": Key(_string, "string", required=True),
        "port": Key(_port, "1-65535", required=True),
    },
    "http_probe": {
        "name": Key(_string, "string", required=True),
        "url": Key(_url, "http(s) URL", required=True),
        "timeout_seconds": Key(_positive_number, "number > 0"),
    },
    "prometheus": {
        "url": Key(_url, "http(s) URL", required=True),
        "prefixes": Key(_strings, "list of strings"),
    },
    "exec": {
        "command": Key(_strings, "list of strings", required=True),
        "interval_seconds": Key(_positive_number, "number > 0"),
    },
}
"""Arrays of tables (``[[name]]``) and the keys of each entry."""


def problems(config: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a parsed agent configuration; empty when it is valid."""
    found: list[str] = []
    if "collector" not in config:
        found.append("[collector] is missing")
    for section, value in config.items():
        if section in SECTIONS:
            if not isinstance(value, dict):
                found.append(f"{section} must be a table")
                continue
            found.extend(_check_table(f"[{section}]", value, SECTIONS[section]))
        elif section in ARRAYS:
            if not isinstance(value, list):
                found.append(f"{section} must be an array of tables ([[{section}]])")
                continue
            for index, entry in enumerate(value):
                found.extend(_check_table(f"[[{section}]] #{index + 1}", entry, ARRAYS[section]))
            names = [entry.get("name") for entry in value if "name" in entry]
            if len(names) != len(set(names)):
                found.append(f"[[{section}]] names repeat: {names}")
        else:
            found.append(f"unknown table {section!r}")
    collector = config.get("collector", {})
    if isinstance(collector, dict) and ("cert_file" in collector) != ("key_file" in collector):
        found.append("[collector] cert_file and key_file go together")
    return found


def _check_table(where: str, table: Mapping[str, Any], keys: Mapping[str, Key]) -> list[str]:
    found = [f"{where}: unknown key {k!r}" for k in table if k not in keys]
    for name, key in keys.items():
        if name not in table:
            if key.required:
                found.append(f"{where}: {name} is required")
        elif not key.check(table[name]):
            found.append(f"{where}: {name} must be {key.kind} (got {table[name]!r})")
    return found
