"""Adapting a configuration to other hardware: scale, clamp, round, and say why.

Each parameter that declares a resource is multiplied by the target/source ratio of that
resource, clamped to its bounds and rounded to its unit, in the unit it was written in
(`16GB` stays in GB where that rounds closely). A parameter whose resource is unknown on
either host, or whose value is negative (PostgreSQL's `-1`: "automatic"), is kept as is;
the explanation says so rather than guessing. A parameter with a floor never goes below
what the source's own data shows it needs (see :mod:`.demand`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .demand import ObservedDemand
from .hosts import HostResources
from .schema import Schema
from .spec import Floor, ParameterSpec, ParameterType, ParameterValue, Scaling
from .units import SIZES
from .values import clamp, read_quantity, show, write_quantity

__all__ = [
    "AS_IS",
    "CONSERVATIVE",
    "PROPORTIONAL",
    "Adaptation",
    "ParameterExplanation",
    "ScalingPolicy",
    "adapt",
    "resource_ratio",
]


@dataclass(frozen=True)
class ParameterExplanation:
    """What adaptation did to one parameter, and why."""

    key: str
    before: ParameterValue | None
    """The value given; None when the parameter was not there."""
    after: ParameterValue | None
    """The value proposed; None when the parameter was removed."""
    why: str
    """For example `memory 16 GiB / 64 GiB = 0.25`."""
    requires_restart: bool = False
    """Whether the software must restart for a change of it to take effect."""

    @property
    def changed(self) -> bool:
        """Whether the value differs (`100` and `100.0` do not)."""
        if (self.before is None) != (self.after is None):
            return True
        return show(self.before) != show(self.after)

    def __str__(self) -> str:
        before = "(unset)" if self.before is None else show(self.before)
        after = "(unset)" if self.after is None else show(self.after)
        return f"{self.key}: {before} -> {after} ({self.why})"


@dataclass(frozen=True)
class Adaptation:
    """An adapted configuration and the explanation of every parameter."""

    content: Mapping[str, ParameterValue]
    explanations: tuple[ParameterExplanation, ...]
    """One per parameter of the original or the adapted content, in key order."""

    @property
    def changes(self) -> tuple[ParameterExplanation, ...]:
        """The parameters whose value differs from the original."""
        return tuple(explanation for explanation in self.explanations if explanation.changed)

    @property
    def requires_restart(self) -> bool:
        """Whether any changed parameter needs a restart of the software."""
        return any(change.requires_restart for change in self.changes)

    def explain(self) -> str:
        """The changes, one line each, or a sentence saying there are none."""
        lines = [str(change) for change in self.changes]
        return "\n".join(lines) if lines else "no parameter changes"


@dataclass(frozen=True)
class ScalingPolicy:
    """How far a parameter follows the hardware ratio.

    The factor is `ratio ** exponent`: 1 is proportional, 0.5 goes half way on a log
    scale, 0 keeps the value. With `memory_at_most_proportional`, memory on a smaller
    host is scaled fully whatever the exponent: an oversized memory setting can exhaust
    the host, a risk not worth trading for predicted speed.
    """

    name: str
    """Short name people tell candidates apart by: `proportional`."""
    exponent: float
    """Between 0 (nothing scaled) and 1 (proportional)."""
    description: str
    """What the policy does, in a sentence."""
    memory_at_most_proportional: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.exponent <= 1:
            raise ValueError(f"the exponent must be between 0 and 1, not {self.exponent}")

    def factor(self, scaling: Scaling, ratio: float) -> tuple[float, str | None]:
        """The factor for a resource ratio, and a note when it is not the ratio itself."""
        if self.exponent == 1:
            return ratio, None
        if self.memory_at_most_proportional and scaling is Scaling.MEMORY and ratio < 1:
            return ratio, f"{self.name}, but memory is not kept above its share of a smaller host"
        factor = ratio**self.exponent
        return factor, f"{self.name}: factor {factor:.4g}"


PROPORTIONAL = ScalingPolicy(
    "proportional", 1.0, "every parameter scaled by the target/source ratio of its resource"
)
CONSERVATIVE = ScalingPolicy(
    "conservative",
    0.5,
    "half of each change on a log scale (a quarter of the cores gives half the workers), "
    "so the target stays nearer the values proven on the source; memory on a smaller "
    "host is still scaled fully",
    memory_at_most_proportional=True,
)
AS_IS = ScalingPolicy("as-is", 0.0, "the source's values unchanged")


def adapt(
    content: Mapping[str, object],
    schema: Schema,
    source: HostResources,
    target: HostResources,
    *,
    policy: ScalingPolicy = PROPORTIONAL,
    demand: ObservedDemand | None = None,
) -> Adaptation:
    """`content`, written for `source`, adapted to `target` by the schema's scaling rules.

    With `demand` (what the source's data shows), a parameter with a floor is not
    scaled below it. Raises `InvalidConfiguration` when `content` breaks the schema.
    """
    valid = schema.validate(content)
    adapted: dict[str, ParameterValue] = {}
    explanations = []
    for key, value in valid.items():
        spec = schema.spec(key)
        after, why = _adapt_parameter(spec, value, source, target, policy, schema.kind)
        if spec is not None and demand is not None and spec.floor is not Floor.NONE:
            after, why = _floored(spec, value, after, why, demand)
        adapted[key] = after
        restart = spec is not None and spec.requires_restart
        explanations.append(ParameterExplanation(key, value, after, why, restart))
    explanations.sort(key=lambda explanation: explanation.key)
    return Adaptation(adapted, tuple(explanations))


def resource_ratio(
    scaling: Scaling, source: HostResources, target: HostResources
) -> tuple[float | None, str]:
    """Target over source amount of a resource, and why; None when either is unknown."""
    resource = scaling.value.replace("_", " ")
    source_amount, target_amount = source.amount(scaling), target.amount(scaling)
    if source_amount is None or target_amount is None:
        sides = (("source", source_amount), ("target", target_amount))
        unknown = [side for side, amount in sides if amount is None]
        verb = "is" if len(unknown) == 1 else "are"
        return None, f"{' and '.join(unknown)} {resource} {verb} unknown: kept as is"
    ratio = target_amount / source_amount
    why = f"{resource} {target.describe(scaling)} / {source.describe(scaling)} = {ratio:.4g}"
    return ratio, why


def _adapt_parameter(
    spec: ParameterSpec | None,
    value: ParameterValue,
    source: HostResources,
    target: HostResources,
    policy: ScalingPolicy,
    kind: str,
) -> tuple[ParameterValue, str]:
    if spec is None:
        return value, f"not declared in the {kind} schema: copied unchanged"
    if spec.scaling is Scaling.NONE:
        return value, "does not scale with hardware: copied unchanged"
    ratio, why = resource_ratio(spec.scaling, source, target)
    if ratio is None:
        return value, why
    quantity = read_quantity(spec, value)
    if quantity.amount < 0:
        return value, f"{show(value)} is a special value, not an amount: kept as is"
    if policy.exponent == 0:
        return value, f"{why}; not applied: kept as is"
    factor, note = policy.factor(spec.scaling, ratio)
    amount, bound_note = clamp(spec, quantity.amount * factor)
    why = "; ".join(part for part in (why, note, bound_note) if part)
    if amount == quantity.amount:
        return value, why
    return write_quantity(spec, amount, quantity), why


def _floored(
    spec: ParameterSpec,
    before: ParameterValue,
    after: ParameterValue,
    why: str,
    demand: ObservedDemand,
) -> tuple[ParameterValue, str]:
    """`after`, raised to what the source's data shows it needs, never above `before`."""
    needed = demand.amount(spec.floor)
    per_unit = _demand_per_amount(spec)
    if needed is None or per_unit is None:
        return after, why
    original = read_quantity(spec, before)
    scaled = read_quantity(spec, after)
    if original.amount < 0 or scaled.amount < 0:
        return after, why
    floor = needed / per_unit
    if spec.floor is Floor.CONCURRENCY:
        floor = math.ceil(floor)
    floor = min(floor, original.amount)
    if scaled.amount >= floor:
        return after, f"{why}; not below {demand.describe(spec.floor)}"
    amount, _ = clamp(spec, floor)
    raised = write_quantity(spec, amount, original)
    return raised, (
        f"{why}; scaling gave {show(after)}, below {demand.describe(spec.floor)}: "
        f"raised to {show(raised)}"
    )


def _demand_per_amount(spec: ParameterSpec) -> float | None:
    """Units of demand (bytes, requests) one unit of the parameter's amount holds."""
    if spec.floor is Floor.CONCURRENCY:
        return 1.0
    if spec.type is ParameterType.BYTES:
        return 1.0  # amounts of sizes are bytes
    try:
        return float(SIZES.unit_size(spec.unit)) if spec.unit else None
    except ValueError:
        return None
