"""How the CLI shows things to people: tables that fit the terminal, times to the second,
numbers without ``-0.000``, units, plurals."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import UTC
from typing import Any

GAP = "  "
MIN_LAST_COLUMN = 20
"""A long last column (a reason, an explanation) is cut, but never narrower than this."""


def table_lines(
    headers: Sequence[str], rows: Sequence[Sequence[object]], width: int | None = None
) -> list[str]:
    """Aligned lines; the last column is cut with ``…`` to fit ``width`` (the terminal's)."""
    width = width or shutil.get_terminal_size(fallback=(160, 24)).columns
    cells = [list(map(str, headers)), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    room = width - sum(widths[:-1]) - len(GAP) * (len(widths) - 1)
    last = max(room, MIN_LAST_COLUMN)
    if widths and widths[-1] > last:
        widths[-1] = last
        cells = [[*row[:-1], _cut(row[-1], last)] for row in cells]
    return [
        GAP.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def when(stamp: Any) -> str:
    """A protobuf Timestamp to the second, in UTC: ``2026-12-02 16:07:13Z``; ``-`` if unset."""
    if not stamp.seconds and not stamp.nanos:
        return "-"
    return str(stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ"))


def fixed(value: float, digits: int = 3, *, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals, never ``-0.000``."""
    spec = f"+.{digits}f" if sign else f".{digits}f"
    text = format(value, spec)
    return format(0.0, spec) if float(text) == 0 else text


def general(value: float, digits: int = 4, *, sign: bool = False) -> str:
    """``value`` to ``digits`` significant digits, never ``-0``."""
    spec = f"+.{digits}g" if sign else f".{digits}g"
    return format(0.0 if value == 0 else value, spec)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 target``, ``3 targets``."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


_UNITS_BY_SUFFIX = (
    (".utilization", "1"),
    (".ratio", "1"),
    (".duration", "s"),
    (".io", "By/s"),
    (".usage", "By"),
    (".rate", "/s"),
    (".commits", "/s"),
)


def unit_of(metric: str) -> str:
    """The unit of an OpenTelemetry-named metric by its name (``-`` when unknown)."""
    name = metric.split("{", 1)[0]
    return next((unit for suffix, unit in _UNITS_BY_SUFFIX if name.endswith(suffix)), "-")
