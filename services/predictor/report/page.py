"""The HTML around the reports' plots: one page, its style, tables, and Plotly inlined once."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
.verdict-NEGATIVE, .state-ROLLED_BACK, .state-REJECTED, .state-FAILED {
  color: #b00020; font-weight: bold; }
.verdict-POSITIVE, .state-KEPT { color: #1b5e20; font-weight: bold; }
.state { font-size: 1.1rem; font-weight: bold; }
.notes li { color: #555; }
"""


def escape(value: object) -> str:
    return html.escape(str(value))


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], raw: int = -1) -> str:
    """An HTML table; cells are escaped except column ``raw``, which is already HTML."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{cell if i == raw else escape(cell)}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def marked(kind: str, value: str) -> str:
    """``value`` in a span styled by its kind (``verdict``, ``state``) and value."""
    return f'<span class="{escape(kind)}-{escape(value)}">{escape(value)}</span>'


def figure_html(figure: go.Figure, ident: str) -> str:
    """A figure as a ``div`` with id ``ident``; the page holds plotly.js once."""
    figure.update_layout(margin={"l": 60, "r": 20, "t": 50, "b": 40}, template="plotly_white")
    return str(
        figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=ident,
            config={"displaylogo": False, "responsive": True},
        )
    )


def notes(items: Sequence[str]) -> list[str]:
    """The section saying what the page could not show."""
    if not items:
        return []
    return [
        '<h2>Not shown</h2><ul class="notes">',
        *(f"<li>{escape(note)}</li>" for note in items),
        "</ul>",
    ]


def page(title: str, parts: Sequence[str]) -> str:
    """A whole self-contained page: plotly.js is inlined, nothing is fetched."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body>{''.join(parts)}</body></html>\n"
    )
