"""The change model: how a configuration differs from another, and which way a KPI must not move.

A configuration is a flat mapping of parameter name to a scalar value. Learners do not see
the two configurations, they see the *delta* between them, encoded so that the same kind
of change means the same feature on every system:

- a numeric parameter contributes its log ratio (doubling ``shared_buffers`` is ``log 2``
  whether it went from 1 GiB to 2 GiB or from 8 GiB to 16 GiB);
- a categorical or boolean parameter contributes a "changed to" one-hot
  (``wal_level=replica``), because there is no order to take a ratio of;
- a parameter that appears or disappears contributes ``param:set`` / ``param:unset``.

Parameters whose value did not change contribute nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from cfgclone import vocabulary

ParameterValue = int | float | bool | str
"""A configuration parameter's value. ``bool`` is checked before ``int`` (it is a subclass)."""

Configuration = Mapping[str, ParameterValue]
"""A configuration: parameter name to value."""


class DeltaKind(Enum):
    """How a parameter changed, which decides how it is encoded."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    ADDED = "added"
    REMOVED = "removed"


def symmetric_log(value: float) -> float:
    """``sign(x) * log(1 + |x|)``: zero at zero, close to ``log|x|`` for large ``|x|``."""
    return math.copysign(math.log1p(abs(value)), value)


def numeric_log_ratio(before: float, after: float) -> float:
    """The size of a numeric change on a log scale.

    Rule: when both values are strictly positive this is ``log(after / before)``, the
    natural measure for sizes, counts and durations. A log ratio is undefined when either
    side is zero or negative (``work_mem`` 0 -> 64, an offset -5 -> 5), so then it is the
    difference of :func:`symmetric_log` of the two values: finite, zero for no change,
    with the sign of the change, and about ``log(101)`` for 0 -> 100 rather than infinity.
    """
    if not (math.isfinite(before) and math.isfinite(after)):
        raise ValueError(f"numeric values must be finite, got {before!r} -> {after!r}")
    if before > 0 and after > 0:
        return math.log(after / before)
    return symmetric_log(after) - symmetric_log(before)


def _is_number(value: ParameterValue) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class ParameterDelta:
    """The change of one parameter between two configurations."""

    parameter: str
    kind: DeltaKind
    before: ParameterValue | None
    after: ParameterValue | None
    log_ratio: float | None = None
    """Set for ``NUMERIC`` changes only (see :func:`numeric_log_ratio`)."""

    def features(self) -> dict[str, float]:
        """This change as named features (see the module docstring)."""
        match self.kind:
            case DeltaKind.NUMERIC:
                assert self.log_ratio is not None
                return {f"{self.parameter}:log_ratio": self.log_ratio}
            case DeltaKind.CATEGORICAL:
                return {f"{self.parameter}={self.after}": 1.0}
            case DeltaKind.BOOLEAN:
                return {f"{self.parameter}={str(self.after).lower()}": 1.0}
            case DeltaKind.ADDED:
                return {f"{self.parameter}:set": 1.0}
            case DeltaKind.REMOVED:
                return {f"{self.parameter}:unset": 1.0}


@dataclass(frozen=True)
class ConfigurationDelta:
    """Every parameter that differs between two configurations, sorted by name."""

    parameters: tuple[ParameterDelta, ...] = ()

    @classmethod
    def between(cls, before: Configuration, after: Configuration) -> ConfigurationDelta:
        """The delta that takes ``before`` to ``after``."""
        deltas: list[ParameterDelta] = []
        for name in sorted(set(before) | set(after)):
            if name not in after:
                deltas.append(ParameterDelta(name, DeltaKind.REMOVED, before[name], None))
                continue
            if name not in before:
                deltas.append(ParameterDelta(name, DeltaKind.ADDED, None, after[name]))
                continue
            old, new = before[name], after[name]
            if type(old) is type(new) and old == new:
                continue
            if _is_number(old) and _is_number(new):
                if float(old) == float(new):
                    continue
                ratio = numeric_log_ratio(float(old), float(new))
                deltas.append(ParameterDelta(name, DeltaKind.NUMERIC, old, new, ratio))
            elif isinstance(old, bool) and isinstance(new, bool):
                deltas.append(ParameterDelta(name, DeltaKind.BOOLEAN, old, new))
            else:
                # Strings, and values whose type changed: only "changed to" is meaningful.
                deltas.append(ParameterDelta(name, DeltaKind.CATEGORICAL, old, new))
        return cls(tuple(deltas))

    @property
    def changed(self) -> frozenset[str]:
        """Names of the parameters that changed."""
        return frozenset(d.parameter for d in self.parameters)

    def features(self) -> dict[str, float]:
        """All changes as named features; an empty delta has none."""
        out: dict[str, float] = {}
        for delta in self.parameters:
            out.update(delta.features())
        return out

    def __bool__(self) -> bool:
        return bool(self.parameters)


class KpiDirection(Enum):
    """Which way a KPI must not move."""

    LOWER_IS_BETTER = "lower_is_better"
    """Up is bad: CPU, memory, latency, error rate."""
    HIGHER_IS_BETTER = "higher_is_better"
    """Down is bad: throughput, transactions per second."""

    def worsening(self, change: float) -> float:
        """A change expressed so that positive means worse."""
        return change if self is KpiDirection.LOWER_IS_BETTER else -change

    def worsening_bounds(self, low: float, high: float) -> tuple[float, float]:
        """An interval of change expressed as (least, most) worsening."""
        if self is KpiDirection.LOWER_IS_BETTER:
            return low, high
        return -high, -low

    def is_bad(self, change: float) -> bool:
        """Whether a change moves the KPI the wrong way."""
        return self.worsening(change) > 0


class UnknownKpiDirection(ValueError):
    """No pattern or override says which way a KPI must not move.

    Guessing would make a regression look like an improvement, so the caller must say.
    """

    def __init__(self, kpi: str) -> None:
        super().__init__(f"no direction known for KPI {kpi!r}; add an override for it")
        self.kpi = kpi


_SEP = r"(?:^|[^a-z0-9])"
_END = r"(?:$|[^a-z0-9])"

DEFAULT_DIRECTION_PATTERNS: tuple[tuple[str, KpiDirection], ...] = (
    # Rates of useful work first: "requests_per_second" must not match "request latency".
    (_SEP + r"(throughput|tps|qps|rps|iops|ops|goodput)" + _END, KpiDirection.HIGHER_IS_BETTER),
    # Resources before rates: "cpu.seconds_per_second" is CPU used, not work done.
    (_SEP + r"(cpu|mem|memory|rss|swap|iowait|load)", KpiDirection.LOWER_IS_BETTER),
    (r"per_(second|sec|s)" + _END, KpiDirection.HIGHER_IS_BETTER),
    (_SEP + r"(hit_ratio|hit_rate|cache_hits?)" + _END, KpiDirection.HIGHER_IS_BETTER),
    (_SEP + r"(latency|response_time|duration|wait|p50|p9\d)", KpiDirection.LOWER_IS_BETTER),
    (_SEP + r"(errors?|error_rate|failures?|fail|timeouts?|drops?)", KpiDirection.LOWER_IS_BETTER),
    (_SEP + r"(gc_time|usertime|elapsedtime|runtime)" + _END, KpiDirection.LOWER_IS_BETTER),
)
"""Default KPI directions by name, as regular expressions on the lower-cased KPI name.

The first matching pattern wins. Names are matched on word boundaries (``_ . : -``), so
``memory_used_bytes`` and ``node_cpu_seconds`` match, and ``ops`` does not match ``stops``.
"""


@dataclass(frozen=True)
class DirectionTable:
    """Which way each KPI must not move: exact overrides, then name patterns."""

    overrides: Mapping[str, KpiDirection] = field(default_factory=dict)
    patterns: tuple[tuple[str, KpiDirection], ...] = DEFAULT_DIRECTION_PATTERNS

    def direction(self, kpi: str) -> KpiDirection:
        """The direction of ``kpi``: an override, the vocabulary's, a name pattern's;
        raises :class:`UnknownKpiDirection` when none applies."""
        if kpi in self.overrides:
            return self.overrides[kpi]
        spec = vocabulary.spec_of(kpi)
        if spec is not None and spec.higher_is_worse is not None:
            return (
                KpiDirection.LOWER_IS_BETTER
                if spec.higher_is_worse
                else KpiDirection.HIGHER_IS_BETTER
            )
        name = kpi.lower()
        for pattern, direction in self.patterns:
            if re.search(pattern, name):
                return direction
        raise UnknownKpiDirection(kpi)

    def with_overrides(self, overrides: Mapping[str, KpiDirection]) -> DirectionTable:
        """A table with more exact overrides (later ones win)."""
        return DirectionTable({**self.overrides, **overrides}, self.patterns)


DEFAULT_DIRECTIONS = DirectionTable()
"""The default table: no overrides, :data:`DEFAULT_DIRECTION_PATTERNS`."""
