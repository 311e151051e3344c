"""The agent's configuration: one schema (the parser's), the docs, and every file we ship.

Every configuration shipped in ``deploy/`` and ``docs/`` is read by the agent's own
parser, and a real ``cfgclone agent`` is started from each and must deliver samples
to a real collector.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cfgclone.collector.agent_config import ARRAYS, SCHEMA, AgentConfig, parse_agent_config
from cfgclone.common.settings import ServerTls
from cfgclone.common.store import Store
from tests.collector.conftest import start_collector, stored, unique_system
from tests.common.helpers import make_certificates
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


def kubernetes_agent_configs() -> dict[str, str]:
    configs = {}
    for overlay in (KUBERNETES / "base", *sorted((KUBERNETES / "overlays").iterdir())):
        for manifest in render(overlay):
            if manifest["kind"] == "ConfigMap" and manifest["metadata"]["name"] == (
                "cfgclone-agent-config"
            ):
                configs[f"kubernetes/{overlay.name}"] = manifest["data"]["agent.toml"]
    return configs


def shipped_configs() -> dict[str, str]:
    """Every agent configuration the repository ships, by where it is."""
    configs = {
        f"deploy/{path.name}": path.read_text(encoding="utf-8")
        for path in sorted(DEPLOY.glob("agent*.toml"))
    }
    assert "deploy/agent.example.toml" in configs
    blocks = re.findall(r"```toml\n(.*?)```", AGENT_DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "docs/agent.md has no TOML example"
    configs.update({f"docs/agent.md[{i}]": block for i, block in enumerate(blocks)})
    configs.update(kubernetes_agent_configs())
    assert {"kubernetes/base", "kubernetes/production"} <= set(configs)
    return configs


def test_docs_describe_exactly_the_keys_of_the_parser() -> None:
    assert documented_keys() == {table: set(keys) for table, keys in SCHEMA.items()}


def test_the_systemd_unit_runs_the_example_path() -> None:
    unit = (DEPLOY / "systemd" / "cfgclone-agent.service").read_text(encoding="utf-8")
    assert "--config /etc/cfgclone/agent.toml" in unit
    assert "Copy to /etc/cfgclone/agent.toml" in EXAMPLE.read_text(encoding="utf-8")


@pytest.mark.parametrize("where", sorted(shipped_configs()))
def test_every_shipped_configuration_is_read_by_the_agents_parser(
    where: str, tmp_path: Path
) -> None:
    text = shipped_configs()[where]
    # The token files and certificates the files name exist only on a real machine.
    ca = make_certificates(tmp_path).ca
    config = parse_agent_config(
        text,
        environ={"CFGCLONE_TOKEN": "t", "CFGCLONE_TLS_CA": str(ca)},
        hostname=lambda: "node-1",
    )

    assert isinstance(config, AgentConfig)
    if where.startswith("kubernetes/"):
        # Under hostNetwork the host name is the node's: the name must stay unset.
        assert "name" not in tomllib.loads(text).get("system", {})
        assert config.system == "node-1"


def test_the_example_shows_every_table() -> None:
    assert set(tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))) == set(SCHEMA)
    assert set(SCHEMA) > ARRAYS


@asynccontextmanager
async def _collectors(store: Store, folder: Path) -> AsyncIterator[tuple[str, str, Path]]:
    """A plaintext and a TLS collector: ``(plain address, TLS address, CA file)``."""
    certificates = make_certificates(folder)
    tls = ServerTls(certificates.server_cert, certificates.server_key)
    async with (
        start_collector(store) as plain,
        start_collector(store, tls=tls) as secure,
    ):
        yield plain.address, f"localhost:{secure.running.port}", certificates.ca


async def test_a_real_agent_starts_from_every_shipped_configuration(
    store: Store, tmp_path: Path
) -> None:
    configs = shipped_configs()
    async with _collectors(store, tmp_path) as (plain, secure, ca):
        agents: dict[str, tuple[str, subprocess.Popen[bytes], Path]] = {}
        try:
            for index, (where, text) in enumerate(sorted(configs.items())):
                path = tmp_path / f"agent-{index}.toml"
                path.write_text(text, encoding="utf-8")
                uses_tls = "ca_file" in tomllib.loads(text).get("collector", {})
                system = unique_system()
                environ = {
                    **os.environ,
                    "CFGCLONE_COLLECTOR_ADDRESS": secure if uses_tls else plain,
                    "CFGCLONE_TOKEN": "not-checked",
                    "CFGCLONE_AGENT_SYSTEM": system.removeprefix("systems/"),
                    "CFGCLONE_AGENT_SPOOL": str(tmp_path / f"spool-{index}"),
                }
                if uses_tls:
                    environ["CFGCLONE_TLS_CA"] = str(ca)
                log = tmp_path / f"agent-{index}.log"
                with log.open("wb") as stderr:
                    process = subprocess.Popen(  # noqa: ASYNC220 (long-lived, not awaited)
                        [sys.executable, "-m", "cfgclone.collector.agent_main", "--config", path],
                        env=environ,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                    )
                agents[where] = (system, process, log)
            waiting = dict(agents)
            for _ in range(120):
                for where, (system, process, log) in list(waiting.items()):
                    assert process.poll() is None, (
                        f"{where}: agent exited {process.returncode}: {log.read_text()}"
                    )
                    if await stored(store, system, "system.cpu.utilization"):
                        del waiting[where]
                if not waiting:
                    break
                await asyncio.sleep(0.5)
            assert not waiting, f"no samples from the agents of {sorted(waiting)}"
        finally:
            for _, process, _ in agents.values():
                process.terminate()
            for _, process, _ in agents.values():
                process.wait(timeout=30)
