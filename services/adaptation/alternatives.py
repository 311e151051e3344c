"""Alternative adaptations of one configuration, for the predictor to choose from.

Proportional scaling is the natural guess, but not always the best: a configuration
tuned on a small host may not need four times the workers on a host four times its
size. The orchestrator asks the predictor about each candidate and proposes the one with
the best predicted KPIs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .demand import ObservedDemand
from .hosts import HostResources, describe_memory
from .scaling import AS_IS, CONSERVATIVE, PROPORTIONAL, Adaptation, adapt
from .schema import Schema
from .spec import Scaling
from .values import ROUNDING_TOLERANCE, read_quantity, show

__all__ = ["POLICIES", "Candidate", "candidates"]

POLICIES = (PROPORTIONAL, CONSERVATIVE, AS_IS)
"""The candidates offered, in order of preference when predictions tie."""


@dataclass(frozen=True)
class Candidate:
    """One way to adapt the configuration, named so that people can tell them apart."""

    name: str
    """`proportional`, `conservative` or `as-is`."""
    description: str
    adaptation: Adaptation
    warnings: tuple[str, ...] = ()
    """Risks a prediction may not show, for example memory settings above their
    proportional share of a smaller host."""


def candidates(
    content: Mapping[str, object],
    schema: Schema,
    source: HostResources,
    target: HostResources,
    demand: ObservedDemand | None = None,
) -> tuple[Candidate, ...]:
    """The distinct candidate adaptations of `content`, proportional first.

    Candidates that come out the same are offered once, under the first name, so a
    target with the source's hardware gets a single candidate. `demand` (what the
    source's data shows it needs) keeps floored parameters from shrinking below it. Raises
    `InvalidConfiguration` when `content` breaks the schema.
    """
    adaptations = [
        (policy, adapt(content, schema, source, target, policy=policy, demand=demand))
        for policy in POLICIES
    ]
    proportional = adaptations[0][1]
    found: list[Candidate] = []
    for policy, adaptation in adaptations:
        if any(dict(adaptation.content) == dict(other.adaptation.content) for other in found):
            continue
        warnings = _memory_warnings(adaptation, proportional, schema, source, target)
        found.append(Candidate(policy.name, policy.description, adaptation, warnings))
    return tuple(found)


def _memory_warnings(
    adaptation: Adaptation,
    proportional: Adaptation,
    schema: Schema,
    source: HostResources,
    target: HostResources,
) -> tuple[str, ...]:
    source_memory, target_memory = source.memory_bytes, target.memory_bytes
    if not source_memory or not target_memory or target_memory >= source_memory:
        return ()
    warnings = []
    for key, value in adaptation.content.items():
        spec = schema.spec(key)
        if spec is None or spec.scaling is not Scaling.MEMORY:
            continue
        share = proportional.content[key]
        amount, fair = read_quantity(spec, value).amount, read_quantity(spec, share).amount
        if fair >= 0 and amount > fair * (1 + ROUNDING_TOLERANCE):
            warnings.append(
                f"{key} {show(value)} is more than its proportional share {show(share)} "
                f"of the target's {describe_memory(target_memory)} of memory"
            )
    return tuple(warnings)
