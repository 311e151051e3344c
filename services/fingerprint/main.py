"""``cfgclone-fingerprint``: the fingerprint service's entry point."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from cfgclone.common.errors import CfgcloneError
from cfgclone.common.server import ServiceDefinition, main_for
from cfgclone.common.settings import ServiceSettings
from cfgclone.common.store import Store
from cfgclone.fingerprint import service
from cfgclone.fingerprint.counters import FingerprintCounters
from cfgclone.fingerprint.servicer import FingerprintServicer
from cfgclone.fingerprint.settings import FingerprintSettings
from cfgclone.v1 import fingerprint_service_pb2, fingerprint_service_pb2_grpc

SERVICE_NAME = fingerprint_service_pb2.DESCRIPTOR.services_by_name["FingerprintService"].full_name

logger = logging.getLogger(__name__)


def refinement_loop(
    store: Store, settings: FingerprintSettings, counters: FingerprintCounters
) -> Callable[[], Coroutine[Any, Any, None]]:
    """The background loop that builds the first fingerprint of systems with enough
    samples and refines fingerprints of systems with new samples."""

    async def loop() -> None:
        interval = settings.refine_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                built = await service.build_missing(store, settings)
                refined = await service.refine_stale(store, settings)
            except CfgcloneError as error:
                logger.warning("building and refinement skipped: %s", error.message)
                continue
            counters.built.labels("build").inc(built)
            counters.built.labels("refine").inc(refined)
            if built or refined:
                logger.info("built %s and refined %s fingerprints", built, refined)

    return loop


async def build_services(settings: ServiceSettings, store: Store) -> Sequence[ServiceDefinition]:
    """The fingerprint servicer and, unless turned off, its refinement loop."""
    own = FingerprintSettings.from_options(settings.options)
    counters = FingerprintCounters()
    background = (
        [refinement_loop(store, own, counters)] if own.refine_interval.total_seconds() else []
    )
    add_to_server = fingerprint_service_pb2_grpc.add_FingerprintServiceServicer_to_server
    return [
        ServiceDefinition(
            SERVICE_NAME,
            FingerprintServicer(store, own, counters),
            add_to_server,
            tuple(background),
            metrics=counters.registry,
        )
    ]


def main() -> int:
    return main_for("fingerprint", build_services)


if __name__ == "__main__":
    raise SystemExit(main())
