"""The agent's configuration: the documented format, the example, and the configs we ship."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from tests.deploy import agent_schema
from tests.deploy.kustomize import render
from tests.deploy.support import DEPLOY, DOCS, KUBERNETES

EXAMPLE = DEPLOY / "agent.example.toml"
AGENT_DOC = DOCS / "agent.md"


def documented_keys() -> dict[str, set[str]]:
    """Keys of each ``### `[table]``` section's table in docs/agent.md."""
    text = AGENT_DOC.read_text(encoding="utf-8")
    sections: dict[str, set[str]] = {}
    parts = re.split(r"^### `\[{1,2}([a-z_]+)\]{1,2}`\s*$", text, flags=re.MULTILINE)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[name] = set(re.findall(r"^\| `([a-z_]+)` \|", body, flags=re.MULTILINE))
    return sections


def kubernetes_agent_configs() -> dict[str, dict[str, Any]]:
    configs = {}
    for overlay in (KUBERNETES / "base", *sorted((KUBERNETES / "overlays").iterdir())):
        for manifest in render(overlay):
            if manifest["kind"] == "ConfigMap" and manifest["metadata"]["name"] == (
                "cfgclone-agent-config"
            ):
                configs[overlay.name] = tomllib.loads(manifest["data"]["agent.toml"])
    return configs


def test_docs_describe_exactly_the_keys_of_the_format() -> None:
    expected = {
        name: set(keys) for name, keys in {**agent_schema.SECTIONS, **agent_schema.ARRAYS}.items()
    }
    assert documented_keys() == expected


def test_example_is_valid_and_shows_every_table() -> None:
    config = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert agent_schema.problems(config) == []
    assert set(config) == set(agent_schema.SECTIONS) | set(agent_schema.ARRAYS)


def test_example_in_the_docs_is_valid() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", AGENT_DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "docs/agent.md has no TOML example"
    for block in blocks:
        assert agent_schema.problems(tomllib.loads(block)) == []


@pytest.mark.parametrize(
    ("snippet", "problem"),
    [
        ('[collector]\naddres = "c:50051"', "unknown key 'addres'"),
        ('[collector]\naddress = "c"', "address must be host:port"),
        ('[collector]\naddress = "c:1"\n[sampling]\ninterval_seconds = "1"', "interval_seconds"),
        ('[collector]\naddress = "c:1"\n[[tcp_probe]]\nname = "a"\nhost = "h"', "port is required"),
        ('[collector]\naddress = "c:1"\n[probes]\nx = 1', "unknown table 'probes'"),
        ('[collector]\naddress = "c:1"\ncert_file = "a"', "cert_file and key_file go together"),
    ],
)
def test_the_check_rejects_a_wrong_configuration(snippet: str, problem: str) -> None:
    found = agent_schema.problems(tomllib.loads(snippet))
    assert any(problem in p for p in found), found


def test_kubernetes_agent_configs_are_valid() -> None:
    configs = kubernetes_agent_configs()
    assert set(configs) >= {"base", "production"}
    for name, config in configs.items():
        assert agent_schema.problems(config) == [], name
        # Under hostNetwork the host name is the node's: the name must stay unset.
        assert "name" not in config.get("system", {}), name
