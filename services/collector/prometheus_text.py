"""Reading the Prometheus text exposition format, with ``prometheus_client``'s parser.

Scrapes and exec plugins both speak it. Labels are kept (they become part of the
series' identity), family types are kept (counters and histogram parts are
running totals, made rates by the sender), and a line the parser refuses costs
that line only (counted in ``skipped_lines``): a partial answer serves a
collector better than none. Metric names with dots, which Prometheus writes
quoted (``{"system.cpu.utilization"} 0.4``), may also be written bare by a plugin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Exposition", "PromSample", "parse_exposition"]

_BARE_DOTTED = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*\.[a-zA-Z0-9_.:]*)(?P<rest>[{\s].*)$")
_TYPE = re.compile(r"^#\s*TYPE\s+(\S+)\s+(\w+)\s*$")


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
    """A parsed scrape: the samples in order and the declared type of each sample name."""

    samples: list[PromSample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    """Declared type of the family of each sample name (``counter``, ``histogram``...)."""
    skipped_lines: int = 0

    def type_of(self, sample_name: str) -> str:
        """Declared type of the family a sample belongs to; ``unknown`` when undeclared."""
        return self.types.get(sample_name, "unknown")

    def is_cumulative(self, sample_name: str) -> bool:
        """Whether a sample is a running total (a counter, or a histogram/summary part)."""
        kind = self.type_of(sample_name)
        if kind == "counter":
            return sample_name.endswith("_total") or not sample_name.endswith("_created")
        if kind in ("histogram", "summary", "gaugehistogram"):
            return sample_name.endswith(("_bucket", "_count", "_sum"))
        return False


def _quoted(line: str) -> str:
    """A bare dotted name written the way the text format quotes it."""
    match = _BARE_DOTTED.match(line)
    if match is None:
        return line
    rest = match.group("rest")
    name = f'"{match.group("name")}"'
    if rest.startswith("{"):
        inner = rest[1:]
        return "{" + name + ("," + inner if not inner.lstrip().startswith("}") else inner)
    return "{" + name + "}" + rest


def _families(text: str, exposition: Exposition) -> None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = float(sample.value)
            timestamp = sample.timestamp
            exposition.types[sample.name] = family.type
            exposition.samples.append(
                PromSample(
                    sample.name,
                    tuple(sorted(sample.labels.items())),
                    value,
                    None if timestamp is None else int(float(timestamp) * 1000),
                )
            )


def parse_exposition(text: str) -> Exposition:
    """Samples and family types of a Prometheus text exposition."""
    exposition = Exposition()
    lines = [_quoted(line.strip()) for line in text.splitlines() if line.strip()]
    try:
        _families("\n".join(lines) + "\n", exposition)
        return exposition
    except (ValueError, TypeError, IndexError):
        exposition = Exposition()
    # Some line is malformed: read the lines one by one, each with the TYPE
    # declared before it, and skip what the parser refuses.
    declared: dict[str, str] = {}
    for line in lines:
        typed = _TYPE.match(line)
        if typed is not None:
            declared[typed.group(1)] = typed.group(2)
            continue
        if line.startswith("#"):
            continue
        before = len(exposition.samples)
        header = "".join(
            f"# TYPE {name} {kind}\n"
            for name, kind in declared.items()
            if line.lstrip('{"').startswith(name)
        )
        try:
            _families(header + line + "\n", exposition)
        except (ValueError, TypeError, IndexError):
            del exposition.samples[before:]
            exposition.skipped_lines += 1
            continue
        if len(exposition.samples) == before:
            exposition.skipped_lines += 1
    return exposition
