"""Drawing a :class:`~.model.ChangeReport` as one self-contained HTML page.

Plots are Plotly figures; plotly.js is inlined once in the page's head, so the file opens
anywhere without a network. Every plot shows data: a part without data is left out and the
page says why in its notes.
"""

from __future__ import annotations

from datetime import datetime

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cfgclone.predictor.report.model import (
    ChangeReport,
    Judgement,
    KpiJudgement,
    LoadResponse,
    Series,
)
from cfgclone.predictor.report.page import escape as _e
from cfgclone.predictor.report.page import figure_html as _figure_html
from cfgclone.predictor.report.page import marked, notes, page, table, when

BEFORE = "#1f77b4"
AFTER = "#d62728"
THRESHOLD = "#7f7f7f"


def _percent(value: float) -> str:
    return f"{value:+.1%}"


def interval_figure(judgement: Judgement, title: str) -> go.Figure:
    """Each KPI's relative change with its interval, and the policy's threshold."""
    kpis = list(judgement.kpis)
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            name="relative change and interval",
            x=[k.relative_change for k in kpis],
            y=[k.kpi for k in kpis],
            mode="markers",
            marker={"size": 10, "color": [_colour(k) for k in kpis]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [max(k.interval_high - k.relative_change, 0.0) for k in kpis],
                "arrayminus": [max(k.relative_change - k.interval_low, 0.0) for k in kpis],
            },
            text=[f"{k.verdict}: {k.explanation}" for k in kpis],
            hovertemplate="%{y}: %{x:+.1%}<br>%{text}<extra></extra>",
        )
    )
    bounded = [k for k in kpis if k.threshold is not None]
    if bounded:
        figure.add_trace(
            go.Scatter(
                name="threshold (bad side)",
                x=[_bad_side(k) for k in bounded],
                y=[k.kpi for k in bounded],
                mode="markers",
                marker={"symbol": "line-ns-open", "size": 22, "color": THRESHOLD},
                hovertemplate="%{y}: threshold %{x:+.0%}<extra></extra>",
            )
        )
    figure.add_vline(x=0, line={"color": "#bbb", "dash": "dot"})
    figure.update_layout(
        title=title,
        xaxis={"tickformat": "+.0%", "title": "relative change, (after - before) / before"},
        height=120 + 40 * len(kpis),
    )
    return figure


def _bad_side(k: KpiJudgement) -> float:
    assert k.threshold is not None
    return -k.threshold if k.higher_is_better else k.threshold


def _colour(k: KpiJudgement) -> str:
    return {"NEGATIVE": AFTER, "POSITIVE": "#2ca02c"}.get(k.verdict, BEFORE)


def live_figure(
    kpi: str,
    before: Series | None,
    after: Series | None,
    window: tuple[datetime, datetime] | None,
) -> go.Figure:
    """One KPI over time before and after the change, and the two distributions."""
    figure = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.7, 0.3],
        subplot_titles=("over time", "distribution"),
        horizontal_spacing=0.08,
    )
    for series, label, colour in ((before, "before", BEFORE), (after, "after", AFTER)):
        if series is None or not series.values:
            continue
        figure.add_trace(
            go.Scattergl(
                x=list(series.times),
                y=list(series.values),
                name=label,
                mode="lines",
                line={"color": colour, "width": 1},
                legendgroup=label,
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Box(
                y=list(series.values),
                name=label,
                marker={"color": colour},
                boxmean=True,
                legendgroup=label,
                showlegend=False,
            ),
            row=1,
            col=2,
        )
    if window is not None:
        figure.add_vrect(
            x0=window[0],
            x1=window[1],
            fillcolor=AFTER,
            opacity=0.08,
            line_width=0,
            row=1,
            col=1,
        )
    figure.update_layout(title=kpi, height=320)
    return figure


def curves_figure(kpi: str, before: LoadResponse | None, after: LoadResponse | None) -> go.Figure:
    """One KPI against the load: mean and p95 per load regime, before and after."""
    figure = go.Figure()
    load_metric = ""
    for curve, label, colour in ((before, "before", BEFORE), (after, "after", AFTER)):
        if curve is None:
            continue
        load_metric = load_metric or curve.load_metric
        loads = [p.load for p in curve.points]
        figure.add_trace(
            go.Scatter(
                x=loads,
                y=[p.mean for p in curve.points],
                name=f"{label}: mean ({curve.configuration})",
                mode="lines+markers",
                line={"color": colour},
            )
        )
        figure.add_trace(
            go.Scatter(
                x=loads,
                y=[p.p95 for p in curve.points],
                name=f"{label}: p95",
                mode="lines",
                line={"color": colour, "dash": "dash"},
            )
        )
    figure.update_layout(
        title=kpi, height=320, xaxis={"title": load_metric or "load"}, yaxis={"title": kpi}
    )
    return figure


def _judgement_section(judgement: Judgement | None, title: str, ident: str) -> list[str]:
    if judgement is None:
        return []
    parts = [
        f"<h2>{_e(title)}</h2>",
        f"<p>Verdict {marked('verdict', judgement.verdict)}"
        + (f", mode {_e(judgement.mode)}" if judgement.mode != "UNSPECIFIED" else "")
        + f", policy {_e(judgement.policy or 'policies/default')}. {_e(judgement.explanation)}</p>",
    ]
    if judgement.kpis:
        parts.append(_figure_html(interval_figure(judgement, title), ident))
        parts.append(
            table(
                [
                    "KPI",
                    "verdict",
                    "relative change",
                    "interval",
                    "confidence",
                    "p-value",
                    "samples",
                    "threshold",
                    "why",
                ],
                (
                    (
                        k.kpi,
                        marked("verdict", k.verdict),
                        _percent(k.relative_change),
                        f"[{_percent(k.interval_low)}, {_percent(k.interval_high)}]",
                        f"{k.confidence:.0%}" if k.confidence else "-",
                        f"{k.p_value:.3g}" if k.p_value is not None else "-",
                        k.evidence_count,
                        (
                            f"{_percent(_bad_side(k))}{' critical' if k.critical else ''}"
                            if k.threshold is not None
                            else "-"
                        ),
                        k.explanation,
                    )
                    for k in judgement.kpis
                ),
                raw=1,
            )
        )
    return parts


def render(report: ChangeReport) -> str:
    """The whole page."""
    parts = [
        f"<h1>{_e(report.name)}</h1>",
        f'<p class="state">{_e(report.state)}'
        + (" (dry run)" if report.dry_run else "")
        + f": {_e(report.state_reason)}</p>",
        table(
            ["requested by", "decided by", "proposed", "applied", "last update", "from", "to"],
            [
                (
                    report.requested_by or "-",
                    report.decided_by,
                    when(report.created),
                    when(report.applied),
                    when(report.updated),
                    report.from_configuration or "-",
                    report.to_configuration,
                )
            ],
        ),
        "<h2>What changes</h2>",
        table(
            ["parameter", "before", "after"],
            ((d.key, d.before, d.after) for d in report.differences),
        )
        if report.differences
        else "<p>No parameter differs.</p>",
    ]
    parts += _judgement_section(report.prediction, "Prediction before applying", "prediction")
    parts += _judgement_section(report.verification, "Live verification", "verification")
    before = {s.kpi: s for s in report.baseline}
    after = {s.kpi: s for s in report.after}
    if before or after:
        parts.append("<h2>Live samples: baseline and after</h2>")
        if report.window is not None:
            parts.append(
                f"<p>Verification window {when(report.window[0])} to {when(report.window[1])} "
                "(shaded).</p>"
            )
        for i, kpi in enumerate(sorted(set(before) | set(after))):
            figure = live_figure(kpi, before.get(kpi), after.get(kpi), report.window)
            parts.append(_figure_html(figure, f"live-{i}"))
    curves_before = {c.kpi: c for c in report.curves_before}
    curves_after = {c.kpi: c for c in report.curves_after}
    if curves_before or curves_after:
        parts.append("<h2>Load-response curves of the fingerprints, before and after</h2>")
        for i, kpi in enumerate(sorted(set(curves_before) | set(curves_after))):
            figure = curves_figure(kpi, curves_before.get(kpi), curves_after.get(kpi))
            parts.append(_figure_html(figure, f"curve-{i}"))
    parts += notes(report.notes)
    return page(f"cfgclone: {report.name}", parts)
