"""The demo seen: the HTML reports of a kept, a rolled back and a refused change and of
the fleet, in Chromium; and the SQL of every Grafana dashboard on the demo's database.

The demo's stories run in process once for the module (as in ``test_demo.py``), then a
fourth change is made to roll back: debug logging on db-03, which the learned model cannot
judge, so the change is held; an operator approves it, and live verification finds it 30%
slower. Each change's report is written as ``cfgclone report`` writes it (the command
itself runs for one of them and for the fleet) and fetched from the predictor. Each file is
opened in headless Chromium (Debian's ``chromium`` and ``chromium-driver``): no console
errors, every plot has data, and a screenshot of each is saved in ``artifacts/reports/``
(``CFGCLONE_TEST_ARTIFACTS`` to put them elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from google.protobuf import json_format

from cfgclone.cli import demo
from cfgclone.cli.report_command import change_report
from cfgclone.common.settings import PeerSettings
from cfgclone.common.store import Store
from cfgclone.simulation.fleet import SimulatedFleet
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from tests.conftest import temporary_database
from tests.orchestrator.workflow_suite import Suite, running_services

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("CFGCLONE_TEST_ARTIFACTS") or "artifacts") / "reports"
FINAL = {
    common_pb2.CHANGE_STATE_KEPT,
    common_pb2.CHANGE_STATE_REJECTED,
    common_pb2.CHANGE_STATE_ROLLED_BACK,
    common_pb2.CHANGE_STATE_FAILED,
}

# Each plot's number of points, over all its traces.
PLOT_POINTS = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(plot => [
  plot.id,
  (plot.data || []).reduce((n, t) => n + ((t.x || t.y || []).length), 0),
]);
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium is missing: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


async def _settled(suite: Suite, name: str, seconds: float = 120.0) -> common_pb2.Change:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        reply = await suite.predictor.GetChange(predictor_pb.GetChangeRequest(name=name))
        change: common_pb2.Change = reply.change
        if change.state in FINAL or change.state == common_pb2.CHANGE_STATE_HELD:
            return change
        assert asyncio.get_running_loop().time() < deadline, change.state_reason
        await asyncio.sleep(0.5)


async def roll_back_debug_logging(suite: Suite, stubs: demo.Stubs) -> common_pb2.Change:
    """Debug logging on db-03, approved past an undecided prediction, rolled back live."""
    target = next(m for m in demo.FLEET if m.name == "systems/db-03")
    current = await suite.predictor.GetConfiguration(
        predictor_pb.GetConfigurationRequest(name=f"{target.name}/configurations/-")
    )
    content = json_format.MessageToDict(current.configuration.content)
    proposed = common_pb2.Configuration(kind=current.configuration.kind)
    proposed.content.update({**content, "debug_logging": True})
    fleet = SimulatedFleet(stubs.collector, stubs.predictor, demo.FLEET, seed=5, live_spread=0.1)
    async with fleet.feeding():
        await asyncio.sleep(3)  # a baseline just before the change
        reply = await suite.predictor.ProposeChange(
            predictor_pb.ProposeChangeRequest(
                change=predictor_pb.ProposedChange(system=target.name, configuration=proposed),
                mode=common_pb2.PREDICTION_MODE_LEARNED,
                policy=demo.POLICY,
            )
        )
        change = await _settled(suite, reply.change.name)
        assert change.state == common_pb2.CHANGE_STATE_HELD, change.state_reason
        await suite.predictor.ApproveChange(
            predictor_pb.ApproveChangeRequest(name=change.name, reason="try it live")
        )
        return await _settled(suite, change.name)


async def fingerprint_new_configuration(suite: Suite, change: common_pb2.Change) -> None:
    """What the fingerprint service does for a version that has run a while: its
    fingerprint from the samples between its apply and the change's end."""
    reply = await suite.predictor.GetConfiguration(
        predictor_pb.GetConfigurationRequest(name=change.to_configuration)
    )
    request = fingerprint_pb.BuildFingerprintRequest(
        system=change.name.split("/changes/")[0], configuration=change.to_configuration
    )
    request.start_time.CopyFrom(reply.configuration.apply_time)
    if change.state == common_pb2.CHANGE_STATE_ROLLED_BACK:
        request.end_time.CopyFrom(change.update_time)
    await suite.fingerprint.BuildFingerprint(request)


def _served(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        return str(response.read().decode())


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _cfgclone_report(subject: str, output: Path, addresses: dict[str, str]) -> str:
    """Run ``cfgclone report`` as a user would; the page it wrote."""
    env = {**os.environ}
    env.update({f"CFGCLONE_{name.upper()}_ADDRESS": a for name, a in addresses.items()})
    env.pop("CFGCLONE_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "cfgclone.cli.main", "report", subject, "-o", str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return output.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Told:
    """The demo once told, its services still running, and its three kinds of change."""

    suite: Suite
    database_url: str
    kept: common_pb2.Change
    refused: common_pb2.Change
    rolled_back: common_pb2.Change


@pytest.fixture(scope="module")
async def told() -> AsyncIterator[Told]:
    with temporary_database() as url:
        store = Store(url, min_size=1, max_size=8, name="demo-views")
        await store.open(wait=True)
        await store.migrate()
        try:
            async with running_services(store) as suite:
                stubs = demo.Stubs(
                    suite.collector,
                    suite.fingerprint,
                    suite.similarity,
                    suite.predictor,
                    suite.orchestrator,
                )
                lines: list[str] = []
                assert await demo.tell_stories(stubs, lines.append), "\n".join(lines)
                lookalike = await suite.predictor.ListChanges(
                    predictor_pb.ListChangesRequest(parent=demo.LOOKALIKE.name)
                )
                refused, kept = lookalike.changes
                rolled_back = await roll_back_debug_logging(suite, stubs)
                for change in (kept, rolled_back):
                    await fingerprint_new_configuration(suite, change)
                yield Told(suite, url, kept, refused, rolled_back)
        finally:
            await store.close()


@pytest.mark.timeout(480)
async def test_reports_of_a_kept_a_rolled_back_and_a_refused_change_and_the_fleet_open_with_data(
    told: Told, browser: Any, tmp_path: Path
) -> None:
    suite, kept, refused, rolled_back = told.suite, told.kept, told.refused, told.rolled_back
    pages: dict[str, str] = {}
    assert rolled_back.state == common_pb2.CHANGE_STATE_ROLLED_BACK, rolled_back.state_reason
    peers = PeerSettings(addresses=dict(suite.addresses), timeout_seconds=30)
    changes = {"kept": kept, "rolled-back": rolled_back, "refused": refused}
    for story, change in changes.items():
        pages[story] = await change_report(change.name, peers)
    written = await asyncio.to_thread(
        _cfgclone_report, refused.name, tmp_path / "refused.html", suite.addresses
    )
    pages["fleet"] = await asyncio.to_thread(
        _cfgclone_report, "fleet", tmp_path / "fleet.html", suite.addresses
    )
    base = f"{suite.http['predictor']}/reports"
    served = await asyncio.to_thread(_served, f"{base}/{kept.name}")
    served_fleet = await asyncio.to_thread(_served, f"{base}/fleet")
    missing = await asyncio.to_thread(_status, f"{base}/systems/db-01/changes/999999")
    malformed = await asyncio.to_thread(_status, f"{base}/systems/db-01/changes/x")
    assert kept.state == common_pb2.CHANGE_STATE_KEPT
    assert refused.state == common_pb2.CHANGE_STATE_REJECTED
    assert served == pages["kept"], "the predictor serves the page the command writes"
    assert written == pages["refused"]
    assert served_fleet == pages["fleet"]
    assert (missing, malformed) == (404, 400)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    plots: dict[str, list[tuple[str, int]]] = {}
    for story, page in pages.items():
        # Self-contained: plotly.js inlined, nothing loaded from elsewhere.
        assert re.search(r"<(script|link|img)[^>]+(src|href)=", page) is None, story
        path = (ARTIFACTS / f"{story}.html").resolve()
        path.write_text(page, encoding="utf-8")
        browser.get(path.as_uri())
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], (story, errors)
        plots[story] = [tuple(p) for p in browser.execute_script(PLOT_POINTS)]
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1400, min(int(height) + 100, 16000))
        assert browser.save_screenshot(str(ARTIFACTS / f"{story}.png"))
        assert (ARTIFACTS / f"{story}.png").stat().st_size > 10_000

    for story, found in plots.items():
        assert found, f"{story}: no plots"
        empty = [ident for ident, points in found if points == 0]
        assert empty == [], f"{story}: plots without data: {empty}"
    ids = {story: {ident for ident, _ in found} for story, found in plots.items()}
    for story in ("kept", "rolled-back"):
        assert {"prediction", "verification", "live-0", "curve-0"} <= ids[story], ids[story]
    # The load-response curves show the old and the new configuration.
    for story in ("kept", "rolled-back"):
        assert "after: mean" in pages[story], story
    assert "prediction" in ids["refused"]
    assert "verification" not in ids["refused"]
    assert "live-0" in ids["refused"], "the refused change's page shows the samples before it"
    assert "ROLLED_BACK" in pages["rolled-back"]
    assert "try it live" in pages["rolled-back"], "the operator's decision is on the page"
    assert "REJECTED" in pages["refused"]
    fleet = dict(plots["fleet"])
    assert fleet["map"] == len(demo.FLEET), "every demo machine is on the map"
    assert fleet["changes"] >= 4
    for machine in demo.FLEET:
        assert machine.name in pages["fleet"]


DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
DATABASE_UID = "cfgclone-db"


def database_queries(board: dict[str, Any]) -> dict[str, str]:
    """Every SQL query of a dashboard on the suite's database: panels, variables, annotations."""
    found = {}
    for item in board["panels"]:
        for target in item["targets"]:
            if target["datasource"]["uid"] == DATABASE_UID:
                found[f"panel {item['title']!r} {target['refId']}"] = target["rawSql"]
    for variable in board["templating"]["list"]:
        if variable["datasource"]["uid"] == DATABASE_UID:
            found[f"variable {variable['name']}"] = variable["query"]
    for annotation in board["annotations"]["list"]:
        if annotation["datasource"]["uid"] == DATABASE_UID:
            found[f"annotation {annotation['name']!r}"] = annotation["target"]["rawSql"]
    return found


def expand(query: str, variables: dict[str, str]) -> str:
    """What Grafana sends: its macros and the dashboard's variables substituted."""
    query = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        r"\1 BETWEEN now() - interval '7 days' AND now() + interval '1 hour'",
        query,
    )
    query = query.replace("$__interval_ms", "60000")
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        query = query.replace(f"${name}", value)
    assert "$" not in query, f"unexpanded: {query}"
    return query


@pytest.mark.timeout(120)
async def test_every_dashboard_query_runs_on_the_database_the_demo_filled(told: Told) -> None:
    boards = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))]
    assert len(boards) == 4
    # The variables take values from the data: a system that has seen changes, as one
    # looks at, and every KPI of it (a multi-value variable is quoted and joined by Grafana).
    with psycopg.connect(told.database_url) as conn:
        [system] = conn.execute(
            "SELECT s.system_id FROM systems s JOIN changes c ON c.system_id = s.id "
            "GROUP BY s.system_id ORDER BY count(*) DESC, s.system_id LIMIT 1"
        ).fetchone() or [None]
        kpis = conn.execute(
            "SELECT m.name FROM series r JOIN metrics m ON m.id = r.metric_id "
            "JOIN systems s ON s.id = r.system_id WHERE s.system_id = %s",
            [system],
        ).fetchall()
        assert kpis
        variables = {
            "system": str(system),
            "kpi": ", ".join("'" + name.replace("'", "''") + "'" for (name,) in kpis),
        }
        empty = []
        ran = 0
        for board in boards:
            for where, query in database_queries(board).items():
                rows = conn.execute(expand(query, variables)).fetchall()  # type: ignore[arg-type]
                ran += 1
                if not rows:
                    empty.append(f"{board['uid']}: {where}")
    assert ran >= 15
    assert empty == [], "queries without rows on the demo's data"
