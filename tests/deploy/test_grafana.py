"""deploy/grafana/: dashboards as code, provisioned with their datasources by compose.

The dashboards' JSON is decoded with grafana-foundation-sdk, whose models are generated
from Grafana's own schema (pinned to the Grafana version compose runs), and encoded again:
a key the schema does not know is dropped on the way, so it shows up here. Only the
queries a datasource plugin defines are open in the schema. Their SQL runs against the
demo's database in tests/orchestrator/test_views.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.deploy.support import DEPLOY, REPO

GRAFANA = DEPLOY / "grafana"
BOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def lost_keys(ours: Any, decoded: Any, path: str = "") -> list[str]:
    """Keys of ``ours`` missing from (or changed in) ``decoded``, outside open plugin queries."""
    if path.endswith("/target") and "/annotations/" in path:
        return []  # a datasource's query: its plugin's fields, open in the schema
    if isinstance(ours, dict) and isinstance(decoded, dict):
        return [
            problem
            for key, value in ours.items()
            for problem in (
                lost_keys(value, decoded[key], f"{path}/{key}")
                if key in decoded
                else [f"{path}/{key}"]
            )
        ]
    if isinstance(ours, list) and isinstance(decoded, list) and len(ours) == len(decoded):
        return [
            p
            for i, (a, b) in enumerate(zip(ours, decoded, strict=True))
            for p in lost_keys(a, b, f"{path}[{i}]")
        ]
    return [] if ours == decoded else [f"{path}: {ours!r} became {decoded!r}"]


def test_there_are_the_four_dashboards_and_they_are_what_the_generator_writes() -> None:
    assert [p.stem for p in BOARDS] == ["changes", "fleet", "health", "system"]
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "grafana_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", BOARDS, ids=[p.stem for p in BOARDS])
def test_dashboard_json_passes_grafanas_schema(path: Path) -> None:
    ours = load(path)
    decoded = json.loads(JSONEncoder().encode(Dashboard.from_json(ours)))
    assert lost_keys(ours, decoded) == []
    assert decoded["uid"].startswith("cfgclone-")
    ids = [p["id"] for p in ours["panels"]]
    assert len(set(ids)) == len(ids)
    for item in ours["panels"]:
        assert item["targets"], item["title"]
        grid = item["gridPos"]
        assert grid["x"] + grid["w"] <= 24, item["title"]


def test_datasources_are_provisioned_under_the_uids_the_dashboards_use() -> None:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "cfgclone.yaml").read_text(encoding="utf-8")
    )
    uids = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    for path in BOARDS:
        board = load(path)
        used = [t["datasource"] for p in board["panels"] for t in p["targets"]]
        used += [v["datasource"] for v in board["templating"]["list"]]
        used += [a["datasource"] for a in board["annotations"]["list"]]
        for datasource in used:
            assert uids.get(datasource["uid"]) == datasource["type"], (path.name, datasource)
    database = next(
        d for d in provisioned["datasources"] if d["type"].endswith("postgresql-datasource")
    )
    assert database["url"] == "timescaledb:5432"


def test_every_prometheus_metric_a_panel_reads_is_one_the_services_document() -> None:
    documented = set(
        re.findall(r"`([a-z_]+)(?:\{[^`]*\})?`", (REPO / "docs" / "observability.md").read_text())
    )
    exposed_as = {"grpc_server_handling_seconds_bucket": "grpc_server_handling_seconds"}
    read = set()
    for path in BOARDS:
        for item in load(path)["panels"]:
            for target in item["targets"]:
                if "expr" in target:
                    # Metric names, not the labels of selectors and of by (...).
                    expr = re.sub(r"\{[^}]*\}|by \([^)]*\)", "", target["expr"])
                    read |= set(re.findall(r"\b((?:grpc|cfgclone)_[a-z_]+)\b", expr))
    assert read, "the health dashboard reads the services' metrics"
    assert {exposed_as.get(m, m) for m in read} <= documented


def test_compose_starts_grafana_with_the_provisioning_and_prometheus_scraping_every_service() -> (
    None
):
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    grafana = compose["services"]["grafana"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "cfgclone.yaml").read_text(encoding="utf-8")
    )
    folder = provider["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{folder}:ro" in grafana["volumes"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yaml").read_text(encoding="utf-8"))
    port = compose["x-environment"]["CFGCLONE_METRICS_PORT"]
    [job] = prometheus["scrape_configs"]
    targets = job["static_configs"][0]["targets"]
    assert targets == [
        f"{s}:{port}"
        for s in ("collector", "fingerprint", "similarity", "predictor", "orchestrator")
    ]
