"""``cfgclone-collector``: the collector service's entry point."""

from __future__ import annotations

from collections.abc import Sequence

from cfgclone.collector.servicer import CollectorServicer
from cfgclone.common.server import ServiceDefinition, main_for
from cfgclone.common.settings import ServiceSettings
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2, collector_service_pb2_grpc

SERVICE_NAME = collector_service_pb2.DESCRIPTOR.services_by_name["CollectorService"].full_name


async def build_services(settings: ServiceSettings, store: Store) -> Sequence[ServiceDefinition]:
    """The collector's servicers, bound to ``store``."""
    return [
        ServiceDefinition(
            SERVICE_NAME,
            CollectorServicer(store),
            collector_service_pb2_grpc.add_CollectorServiceServicer_to_server,
        )
    ]


def main() -> int:
    return main_for("collector", build_services)


if __name__ == "__main__":
    raise SystemExit(main())
