"""The targets of a clone request: named systems, a cohort, or a label selector."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc

from cfgclone.common.errors import (
    InvalidArgument,
    NotFound,
)
from cfgclone.orchestrator.peers import PeerError, Peers
from cfgclone.v1 import orchestrator_service_pb2 as pb

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

# --- the targets of a request ------------------------------------------------------------


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


async def _require_systems(peers: Peers, names: Sequence[str], field: str) -> None:
    """NOT_FOUND naming every system of ``names`` the collector does not know."""
    limit = asyncio.Semaphore(16)

    async def known(name: str) -> bool:
        async with limit:
            try:
                await peers.system(name)
            except PeerError as error:
                if error.code != grpc.StatusCode.NOT_FOUND:
                    raise error.as_error() from None
                return False
        return True

    found = await asyncio.gather(*(known(name) for name in names))
    missing = [name for name, ok in zip(names, found, strict=True) if not ok]
    if missing:
        raise NotFound(
            f"{field}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
            "registered; register with the collector first (agents do at start)",
            reason="SYSTEM_NOT_FOUND",
            metadata={"systems": ",".join(missing)},
        )


async def resolve_targets(peers: Peers, request: pb.CloneConfigurationRequest) -> list[str]:
    """The target systems of a validated request, by name, in rollout order.

    A selector or cohort gives every matching system but the source. Raises
    NOT_FOUND for an unknown source, target or cohort, INVALID_ARGUMENT when no
    target is left, and UNAVAILABLE when a service cannot be asked.
    """
    await _require_systems(peers, [request.source], "source")
    try:
        if request.targets:
            targets = _unique(list(request.targets))
            await _require_systems(peers, targets, "targets")
            return targets
        if request.target_selector:
            systems = await peers.systems(request.target_selector)
            field_name, found = "target_selector", [s.name for s in systems]
        else:
            cohort = await peers.cohort(request.target_cohort)
            field_name, found = "target_cohort", list(cohort.members)
    except PeerError as error:
        raise error.as_error() from None
    targets = [name for name in _unique(found) if name != request.source]
    if not targets:
        raise InvalidArgument.for_field(field_name, "matches no system other than the source")
    return targets
