"""Features of a change that carry over from one machine to another.

The configuration delta (:mod:`cfgclone.predictor.change`) says what changed; whether
that change helps or hurts depends on where the machine stands. These features say so in
terms that mean the same on every machine:

- the hardware: ``log`` cores and ``log`` GiB of memory;
- the load level: ``log(1 + mean offered load)`` over the window the change is judged on;
- the headroom: the mean CPU utilisation (a share, the same on any machine) and the
  busiest offered load relative to the mean (``log`` of the ratio), since a change that
  costs capacity hurts a machine near saturation at its busy hour and not an idle one;
- each numeric parameter whose schema ties it to a resource, relative to that resource
  before and after the change: ``workers`` per core, ``shared_buffers`` per GiB, as
  ``log`` of the ratio (so 2 workers per core is the same feature on 4 and on 64 cores);
- each numeric parameter's own level before the change (``symmetric_log``), since the
  effect of doubling a buffer depends on where it starts.

A feature a change cannot have (a parameter the configuration lacks, unknown hardware)
is absent, and the learner reads an absent feature as 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from cfgclone.adaptation import ParameterSpec, Scaling, Schema
from cfgclone.adaptation.values import read_quantity
from cfgclone.predictor.change import symmetric_log
from cfgclone.predictor.codec import Content

GIB = float(1 << 30)


@dataclass(frozen=True)
class Resources:
    """What a machine has and how busy it is, where a change is judged."""

    cpu_cores: int = 0
    memory_bytes: int = 0
    load_level: float | None = None
    """Mean of the offered load (the fingerprint's load metric); None when unknown."""
    load_peak: float | None = None
    """Largest offered load seen in the same window; None when unknown."""
    utilization: float | None = None
    """Mean CPU utilisation in the same window, a share in [0, 1]; None when unknown."""


def change_features(
    before: Content, after: Content, schema: Schema, resources: Resources
) -> dict[str, float]:
    """The transferable features of changing ``before`` into ``after`` on a machine."""
    features: dict[str, float] = {}
    if resources.cpu_cores > 0:
        features["hardware:log_cores"] = math.log(resources.cpu_cores)
    if resources.memory_bytes > 0:
        features["hardware:log_memory_gib"] = math.log(resources.memory_bytes / GIB)
    if resources.load_level is not None and math.isfinite(resources.load_level):
        features["load:log_level"] = math.log1p(max(resources.load_level, 0.0))
        peak = resources.load_peak
        if peak is not None and math.isfinite(peak) and peak > 0 and resources.load_level > 0:
            features["load:log_peak_ratio"] = math.log(peak / resources.load_level)
    if resources.utilization is not None and math.isfinite(resources.utilization):
        features["load:cpu_utilization"] = min(max(resources.utilization, 0.0), 1.0)
    for name in sorted(set(before) | set(after)):
        spec = schema.spec(name)
        for side, content in (("before", before), ("after", after)):
            amount = _amount(spec, content.get(name))
            if amount is None:
                continue
            if side == "before":
                features[f"{name}:level"] = symmetric_log(amount)
            relative = _per_resource(spec, amount, resources)
            if relative is not None:
                features[f"{name}:per_{relative[0]}:{side}"] = relative[1]
    return features


def _amount(spec: ParameterSpec | None, value: object) -> float | None:
    """A numeric value's amount in the spec's base unit; None when it is not numeric."""
    if value is None or isinstance(value, bool):
        return None
    if spec is not None and spec.type.is_numeric:
        try:
            return read_quantity(spec, value).amount  # type: ignore[arg-type]
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def _per_resource(
    spec: ParameterSpec | None, amount: float, resources: Resources
) -> tuple[str, float] | None:
    """``("core", log(amount / cores))`` or ``("gib", log(amount / GiB))`` by the schema."""
    if spec is None or amount <= 0:
        return None
    if spec.scaling is Scaling.CORES and resources.cpu_cores > 0:
        return "core", math.log(amount / resources.cpu_cores)
    if spec.scaling is Scaling.MEMORY and resources.memory_bytes > 0:
        return "gib", math.log(amount / (resources.memory_bytes / GIB))
    return None


def merged(*parts: Mapping[str, float]) -> dict[str, float]:
    """Feature mappings combined; later ones win on a shared name."""
    out: dict[str, float] = {}
    for part in parts:
        out.update(part)
    return out
