"""A parser of the Prometheus text exposition format (version 0.0.4).

Enough of the format for scraping: ``# TYPE`` lines, samples with labels
(escaped values included), optional timestamps, and the special values
``NaN`` and ``+Inf``/``-Inf``. ``# HELP`` and other comments are skipped, and so
is a line that cannot be parsed (counted in ``skipped_lines``), as Prometheus
itself would refuse the whole scrape only for a malformed line and a partial
answer serves a collector better. Kept free of dependencies for the agent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = ["Exposition", "PromSample", "parse_exposition"]

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>.*)\})?"
    r"[ \t]+(?P<value>\S+)"
    r"(?:[ \t]+(?P<timestamp>-?\d+))?[ \t]*$"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_TYPE = re.compile(r"^#\s*TYPE\s+([a-zA-Z_:][a-zA-Z0-9_:]*)\s+(\w+)\s*$")
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE = re.compile(r"\\[\\\"n]")
_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created", "_info")


@dataclass(frozen=True, slots=True)
class PromSample:
    """One sample line."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp_ms: int | None = None

    def label(self, key: str, default: str = "") -> str:
        for name, value in self.labels:
            if name == key:
                return value
        return default


@dataclass
class Exposition:
    """A parsed scrape: the samples in order and the declared family types."""

    samples: list[PromSample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    skipped_lines: int = 0

    def type_of(self, sample_name: str) -> str:
        """Declared type of the family a sample belongs to; ``untyped`` when undeclared."""
        declared = self.types.get(sample_name)
        if declared is not None:
            return declared
        for suffix in _SUFFIXES:
            if sample_name.endswith(suffix):
                declared = self.types.get(sample_name[: -len(suffix)])
                if declared is not None:
                    return declared
        return "untyped"

    def is_cumulative(self, sample_name: str) -> bool:
        """Whether a sample is a running total (a counter, or a histogram/summary part)."""
        kind = self.type_of(sample_name)
        if kind == "counter":
            return True
        if kind in ("histogram", "summary"):
            return sample_name.endswith(("_bucket", "_count", "_sum"))
        return False


def _value(text: str) -> float:
    lowered = text.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(text)


def _labels(text: str) -> tuple[tuple[str, str], ...] | None:
    labels: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _LABEL.match(text, position)
        if match is None:
            return None
        raw = match.group(2)
        value = _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], raw) if "\\" in raw else raw
        labels.append((match.group(1), value))
        position = match.end()
    return tuple(labels)


def parse_exposition(text: str) -> Exposition:
    """Samples and family types of a Prometheus text exposition."""
    exposition = Exposition()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            typed = _TYPE.match(line)
            if typed is not None:
                exposition.types[typed.group(1)] = typed.group(2).lower()
            continue
        match = _SAMPLE.match(line)
        labels = _labels(match.group("labels") or "") if match is not None else None
        if match is None or labels is None:
            exposition.skipped_lines += 1
            continue
        try:
            value = _value(match.group("value"))
        except ValueError:
            exposition.skipped_lines += 1
            continue
        timestamp = match.group("timestamp")
        exposition.samples.append(
            PromSample(match.group("name"), labels, value, int(timestamp) if timestamp else None)
        )
    return exposition
