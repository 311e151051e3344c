"""``cfgclone-similarity``: the similarity service's entry point."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from cfgclone.common.server import ServiceDefinition, main_for
from cfgclone.common.settings import ServiceSettings, SettingsError, env_float, env_int
from cfgclone.common.store import Store
from cfgclone.similarity.fleet import Fleet
from cfgclone.similarity.servicer import SimilarityServicer
from cfgclone.similarity.settings import ApproximateSettings, SimilaritySettings
from cfgclone.v1 import similarity_service_pb2, similarity_service_pb2_grpc

SERVICE_NAME = similarity_service_pb2.DESCRIPTOR.services_by_name["SimilarityService"].full_name


def similarity_settings(options: Mapping[str, str]) -> tuple[SimilaritySettings, float]:
    """Engine settings and the sync interval from ``CFGCLONE_SIMILARITY_*``.

    ``CLONE_THRESHOLD`` (default 0.9): clone as is at or above it, adapt below.
    ``SYNC_INTERVAL_SECONDS`` (default 0.5): how often new fingerprints reach the index, so
    a refined fingerprint is answered within about a second.
    ``APPROXIMATE_MIN_SYSTEMS`` (default 20000): fleets from this size on are searched
    through the approximate index; ``APPROXIMATE_PROBES`` (default 112): its lists read per
    query (recall against speed).
    """
    defaults = ApproximateSettings()
    try:
        threshold = env_float(options, "CLONE_THRESHOLD", 0.9)
        settings = SimilaritySettings(clone_threshold=threshold)
    except ValueError as error:
        raise SettingsError(f"CFGCLONE_SIMILARITY_CLONE_THRESHOLD: {error}") from error
    try:
        approximate = ApproximateSettings(
            min_systems=env_int(options, "APPROXIMATE_MIN_SYSTEMS", defaults.min_systems),
            probes=env_int(options, "APPROXIMATE_PROBES", defaults.probes),
        )
    except ValueError as error:
        raise SettingsError(
            f"CFGCLONE_SIMILARITY_APPROXIMATE_MIN_SYSTEMS / _PROBES: {error}"
        ) from error
    settings = dataclasses.replace(settings, approximate=approximate)
    interval = env_float(options, "SYNC_INTERVAL_SECONDS", 0.5)
    if interval <= 0:
        raise SettingsError("CFGCLONE_SIMILARITY_SYNC_INTERVAL_SECONDS must be positive")
    return settings, interval


async def build_services(settings: ServiceSettings, store: Store) -> Sequence[ServiceDefinition]:
    """The similarity servicer and the loop that keeps its index in step with the fingerprints."""
    engine_settings, interval = similarity_settings(settings.options)
    fleet = Fleet(store, engine_settings)
    add_to_server = similarity_service_pb2_grpc.add_SimilarityServiceServicer_to_server
    return [
        ServiceDefinition(
            SERVICE_NAME,
            SimilarityServicer(fleet, engine_settings.max_k),
            add_to_server,
            (lambda: fleet.keep_in_step(interval),),
        )
    ]


def main() -> int:
    return main_for("similarity", build_services)


if __name__ == "__main__":
    raise SystemExit(main())
