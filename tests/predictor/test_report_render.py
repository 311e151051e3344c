"""The report pages drawn from plain values: parts without data are left out and named."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np

from cfgclone.predictor.report.fleet import project
from cfgclone.predictor.report.gather import load_response
from cfgclone.predictor.report.model import ChangeReport, Judgement, KpiJudgement
from cfgclone.predictor.report.render import render
from cfgclone.v1 import common_pb2


def plotted(page: str) -> list[str]:
    """Ids of the figures the page draws."""
    return re.findall(r'Plotly\.newPlot\(\s*"([^"]+)"', page)


def _held(prediction: Judgement | None) -> ChangeReport:
    return ChangeReport(
        name="systems/db-09/changes/4",
        system="systems/db-09",
        state="HELD",
        state_reason="inconclusive <b>prediction</b>",
        requested_by="alice",
        decided_by="nobody yet",
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        updated=None,
        applied=None,
        from_configuration="systems/db-09/configurations/1",
        to_configuration="systems/db-09/configurations/2",
        dry_run=False,
        differences=(),
        prediction=prediction,
        verification=None,
        window=None,
        notes=("no baseline samples of system.cpu.utilization",),
    )


def test_a_change_with_nothing_observed_has_no_plots_and_says_why() -> None:
    page = render(_held(None))
    assert plotted(page) == []
    assert "<h2>Not shown</h2>" in page
    assert "no baseline samples of system.cpu.utilization" in page
    # Text from the data is escaped, never markup.
    assert "inconclusive &lt;b&gt;prediction&lt;/b&gt;" in page
    assert "No parameter differs." in page


def test_the_prediction_plot_marks_the_threshold_on_the_bad_side_of_each_kpi() -> None:
    kpis = (
        KpiJudgement(
            "http.server.request.duration",
            False,
            0.3,
            0.2,
            0.4,
            0.95,
            "NEGATIVE",
            "slower",
            0.001,
            40,
            0.15,
            critical=True,
        ),
        KpiJudgement(
            "http.server.request.rate", True, 0.0, -0.1, 0.1, 0.95, "NEUTRAL", "same", None, 40, 0.1
        ),
    )
    page = render(_held(Judgement("NEGATIVE", "SHADOW", "slower", "policies/p", kpis)))
    assert plotted(page) == ["prediction"]
    # Lower is better: the line is at +15%; higher is better: at -10%.
    assert "+15.0% critical" in page
    assert "-10.0%" in page
    assert '"x":[0.15,-0.1]' in page.replace(" ", "")


def test_the_fleet_map_places_any_number_of_systems() -> None:
    none, variance = project([])
    assert none.shape == (0, 2)
    assert variance == ()
    one, _ = project([[1.0, 2.0, 3.0]])
    assert one.shape == (1, 2)
    rng = np.random.default_rng(0)
    many, variance = project(rng.normal(size=(6, 5)).tolist())
    assert many.shape == (6, 2)
    assert len(variance) == 2
    assert 0 < sum(variance) <= 1 + 1e-9


def test_a_share_is_drawn_within_zero_and_one() -> None:
    fingerprint = common_pb2.Fingerprint(name="systems/r/fingerprints/1")
    for kpi, mean, p95 in (("system.cpu.utilization", 1.003, 1.01), ("app.queue", -2.0, 5.0)):
        fingerprint.kpis.add(kpi=kpi).regimes.add(
            regime=1, load_low=1.0, load_high=2.0, count=10, mean=mean, p95=p95
        )
    curves = {c.kpi: c.points for c in load_response(fingerprint, [])}
    assert [(p.mean, p.p95) for p in curves["system.cpu.utilization"]] == [(1.0, 1.0)]
    assert [(p.mean, p.p95) for p in curves["app.queue"]] == [(-2.0, 5.0)]  # custom: as is
