"""Reading the KPIs a shadow script prints: JSON or Prometheus text, in the metric vocabulary.

A team's shadow script reports what one workload run measured on standard output,
one sample per interval of each series, in either form:

* JSON: ``{"samples": {"db.client.operation.duration": [0.0021, 0.0019, ...],
  "system.cpu.utilization": [0.31, 0.29, ...]}}`` (a single number counts as one
  sample);
* Prometheus text exposition, parsed by ``prometheus_client``'s own parser: each line
  is one sample, lines of the same series in the order printed, for example
  ``{"db.client.operation.duration"} 0.0021 1764690000000`` (the quoted form keeps the
  vocabulary's dots) or ``postgresql_commits 118.0``.

A series is ``name`` or ``name{label="value",...}`` with the labels sorted, as the
collector stores it. Anything else (no numbers, a parse error, an empty report) is
refused with a reason that quotes the start of what was printed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from cfgclone import vocabulary
from cfgclone.predictor.shadow.model import KpiSamples, ShadowFailed

__all__ = ["parse_kpi_report"]

_QUOTED = 200
"""Characters of a refused report quoted in the reason."""


def parse_kpi_report(text: str) -> KpiSamples:
    """The samples per series of a script's report; ``ShadowFailed`` saying why not."""
    stripped = text.strip()
    if not stripped:
        raise ShadowFailed("the shadow script printed no KPIs")
    samples = _from_json(stripped) if _is_json(stripped) else _from_prometheus(stripped)
    if not samples:
        raise ShadowFailed(f"the shadow script printed no samples: {_quote(stripped)}")
    return samples


def _is_json(text: str) -> bool:
    # A Prometheus line may start with '{"name"}' too; JSON reports are one object.
    if not text.startswith("{"):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _from_json(text: str) -> KpiSamples:
    try:
        report = json.loads(text)
    except ValueError as error:
        raise ShadowFailed(
            f"the shadow script printed invalid JSON ({error}): {_quote(text)}"
        ) from error
    samples = report.get("samples") if isinstance(report, dict) else None
    if not isinstance(samples, dict):
        raise ShadowFailed(
            'the shadow script\'s JSON has no "samples" object of series to numbers: '
            f"{_quote(text)}"
        )
    found: dict[str, tuple[float, ...]] = {}
    for series, values in samples.items():
        listed = values if isinstance(values, list) else [values]
        numbers = []
        for value in listed:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ShadowFailed(
                    f"the shadow script reported {value!r} for {series}, not a number"
                )
            numbers.append(float(value))
        found[str(series)] = tuple(numbers)
    return _finite(found)


def _from_prometheus(text: str) -> KpiSamples:
    found: dict[str, list[float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found.setdefault(vocabulary.series(sample.name, sample.labels), []).append(
                    float(sample.value)
                )
    except ValueError as error:
        raise ShadowFailed(
            f"the shadow script printed neither JSON nor Prometheus text ({error}): {_quote(text)}"
        ) from error
    return _finite({series: tuple(values) for series, values in found.items()})


def _finite(samples: Mapping[str, tuple[float, ...]]) -> KpiSamples:
    """Samples that are numbers; NaN and infinities are missing values, as the judge reads them."""
    return {
        series: tuple(value for value in values if math.isfinite(value))
        for series, values in samples.items()
    }


def _quote(text: str) -> str:
    head = text[:_QUOTED]
    return repr(head + ("..." if len(text) > _QUOTED else ""))
