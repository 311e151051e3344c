"""Drawing a :class:`~.fleet.FleetReport`: the map of cohorts, nearest systems, changes."""

from __future__ import annotations

from collections import defaultdict

import plotly.graph_objects as go

from cfgclone.predictor.report.fleet import ChangeEvent, FleetReport, PlacedSystem
from cfgclone.predictor.report.page import figure_html, marked, notes, page, table, when

STATE_COLOURS = {
    "KEPT": "#2ca02c",
    "ROLLED_BACK": "#d62728",
    "REJECTED": "#ff7f0e",
    "FAILED": "#7f0000",
    "HELD": "#9467bd",
}


def _short(system: str) -> str:
    return system.removeprefix("systems/")


def map_figure(systems: list[PlacedSystem], variance: tuple[float, ...]) -> go.Figure:
    """Each system at its fingerprint's place; one colour per cohort."""
    by_cohort: dict[str, list[PlacedSystem]] = defaultdict(list)
    for system in systems:
        by_cohort[system.cohort or "no cohort"].append(system)
    figure = go.Figure()
    for cohort in sorted(by_cohort):
        members = by_cohort[cohort]
        figure.add_trace(
            go.Scatter(
                name=cohort,
                x=[s.x for s in members],
                y=[s.y for s in members],
                mode="markers+text",
                text=[_short(s.name) for s in members],
                textposition="top center",
                marker={"size": 12},
                hovertext=[
                    f"{s.name}<br>{s.labels}<br>nearest: "
                    + ", ".join(f"{_short(n)} {score:.2f}" for n, score in s.nearest)
                    for s in members
                ],
                hoverinfo="text",
            )
        )
    axis = [
        f"component {i + 1}" + (f" ({v:.0%} of variance)" if v else "")
        for i, v in enumerate((*variance, 0.0, 0.0)[:2])
    ]
    figure.update_layout(
        title="Fingerprints on a map: systems that behave alike lie close",
        xaxis={"title": axis[0], "zeroline": False},
        yaxis={"title": axis[1], "zeroline": False},
        height=520,
    )
    return figure


def changes_figure(changes: list[ChangeEvent]) -> go.Figure:
    """Every change over time, one row per system, coloured by outcome."""
    by_state: dict[str, list[ChangeEvent]] = defaultdict(list)
    for change in changes:
        by_state[change.state].append(change)
    figure = go.Figure()
    for state in sorted(by_state):
        events = by_state[state]
        figure.add_trace(
            go.Scatter(
                name=state,
                x=[e.created for e in events],
                y=[_short(e.system) for e in events],
                mode="markers",
                marker={"size": 12, "color": STATE_COLOURS.get(state, "#1f77b4")},
                hovertext=[f"{e.name}: {e.reason}" for e in events],
                hoverinfo="text",
            )
        )
    rows = len({e.system for e in changes})
    figure.update_layout(title="Changes over time", height=160 + 30 * rows)
    return figure


def render_fleet(report: FleetReport) -> str:
    """The whole fleet page."""
    placed = [s for s in report.systems if s.x is not None and s.y is not None]
    dated = [c for c in report.changes if c.created is not None]
    parts = [
        "<h1>The fleet</h1>",
        f"<p>{len(report.systems)} systems, {len(placed)} with a fingerprint; "
        f"{len(report.changes)} changes.</p>",
    ]
    if placed:
        parts += [
            "<h2>Cohorts</h2>",
            figure_html(map_figure(placed, report.explained_variance), "map"),
        ]
    parts += [
        "<h2>Systems and their nearest look-alikes</h2>",
        table(
            ["system", "labels", "cohort", "fingerprint updated", "nearest (similarity)"],
            (
                (
                    s.name,
                    s.labels or "-",
                    s.cohort or "-",
                    when(s.fingerprint_updated),
                    ", ".join(f"{_short(n)} {score:.2f}" for n, score in s.nearest) or "-",
                )
                for s in report.systems
            ),
        ),
    ]
    if dated:
        parts += ["<h2>History of changes</h2>", figure_html(changes_figure(dated), "changes")]
    if report.changes:
        parts.append(
            table(
                ["change", "state", "requested by", "proposed", "why"],
                (
                    (
                        c.name,
                        marked("state", c.state),
                        c.requested_by or "-",
                        when(c.created),
                        c.reason,
                    )
                    for c in report.changes
                ),
                raw=1,
            )
        )
    parts += notes(report.notes)
    return page("cfgclone: the fleet", parts)
