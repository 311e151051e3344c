"""Waves and the failure budget: how a rollout splits its targets and when it stops.

As Ansible's ``serial`` and ``max_fail_percentage``: when more than ``max_fail_fraction``
of a wave is refused, rolled back or failed, the rollout stops and the remaining targets
are skipped, untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cfgclone.orchestrator.events import FAILURE_STATES
from cfgclone.v1 import common_pb2

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

# --- waves and the failure budget -------------------------------------------------------


def waves(targets: Sequence[str], wave_size: int) -> list[tuple[str, ...]]:
    """The targets in rollout order, cut into waves of ``wave_size`` (0: one wave)."""
    if wave_size < 0:
        raise ValueError("wave_size must not be negative")
    size = wave_size or max(len(targets), 1)
    return [tuple(targets[i : i + size]) for i in range(0, len(targets), size)]


def is_failure(result: common_pb2.CloneTargetResult) -> bool:
    """Whether a target's outcome counts against the failure budget."""
    return result.state in FAILURE_STATES


def exceeds_failure_budget(
    results: Sequence[common_pb2.CloneTargetResult], max_fail_fraction: float
) -> bool:
    """Whether more than ``max_fail_fraction`` of a wave was refused, rolled back or failed."""
    if not results:
        return False
    failures = sum(1 for result in results if is_failure(result))
    # A small tolerance, so that a budget of 1/3 lets exactly one target of three fail.
    return failures > max_fail_fraction * len(results) + 1e-9
