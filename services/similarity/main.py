"""``cfgclone-similarity``: the similarity service's entry point."""

from __future__ import annotations

from collections.abc import Sequence

from cfgclone.common.server import ServiceDefinition, main_for
from cfgclone.common.settings import ServiceSettings
from cfgclone.common.store import Store
from cfgclone.v1 import similarity_service_pb2, similarity_service_pb2_grpc

SERVICE_NAME = similarity_service_pb2.DESCRIPTOR.services_by_name["SimilarityService"].full_name


async def build_services(settings: ServiceSettings, store: Store) -> Sequence[ServiceDefinition]:
    """The similarity service's servicers, bound to ``store``."""
    # Every RPC answers UNIMPLEMENTED until the service's own domain code is served here.
    servicer = similarity_service_pb2_grpc.SimilarityServiceServicer()  # type: ignore[abstract]
    return [
        ServiceDefinition(
            SERVICE_NAME,
            servicer,
            similarity_service_pb2_grpc.add_SimilarityServiceServicer_to_server,
        )
    ]


def main() -> int:
    return main_for("similarity", build_services)


if __name__ == "__main__":
    raise SystemExit(main())
