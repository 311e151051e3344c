"""``cfgclone-collector``: the collector service's entry point."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from cfgclone.collector.ingest import Ingestor
from cfgclone.collector.retention import SampleRetention
from cfgclone.collector.scraper import Scraper
from cfgclone.collector.servicer import CollectorServicer
from cfgclone.collector.settings import CollectorSettings
from cfgclone.common.server import ServiceDefinition, main_for
from cfgclone.common.settings import ServiceSettings
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2, collector_service_pb2_grpc

SERVICE_NAME = collector_service_pb2.DESCRIPTOR.services_by_name["CollectorService"].full_name


async def build_services(settings: ServiceSettings, store: Store) -> Sequence[ServiceDefinition]:
    """The collector's servicer bound to ``store``, with its background loops: partition
    and retention maintenance, and the agentless scraper."""
    own = CollectorSettings.from_options(settings.options)
    ingestor = Ingestor(store, limits=own.limits, max_metrics_per_system=own.max_metrics_per_system)
    retention = SampleRetention(
        store,
        settings.database.retention,
        ahead_days=own.partitions_ahead_days,
        interval_seconds=own.maintenance_seconds,
    )
    background: list[Callable[[], Coroutine[Any, Any, None]]] = [retention.run_forever]
    if own.scrape:
        background.append(
            Scraper(
                store,
                ingestor,
                refresh_seconds=own.scrape_refresh_seconds,
                addresses=own.scrape_addresses,
            ).run_forever
        )
    return [
        ServiceDefinition(
            SERVICE_NAME,
            CollectorServicer(store, ingestor, addresses=own.scrape_addresses),
            collector_service_pb2_grpc.add_CollectorServiceServicer_to_server,
            background=tuple(background),
            metrics=ingestor.counters.registry,
        )
    ]


def main() -> int:
    return main_for("collector", build_services)


if __name__ == "__main__":
    raise SystemExit(main())
