"""``cfgclone-predictor``: the predictor service's entry point."""

from __future__ import annotations

from collections.abc import Sequence

from cfgclone.common.server import ServiceDefinition, main_for
from cfgclone.common.settings import ServiceSettings
from cfgclone.common.store import Store
from cfgclone.v1 import predictor_service_pb2, predictor_service_pb2_grpc

SERVICE_NAME = predictor_service_pb2.DESCRIPTOR.services_by_name["PredictorService"].full_name


async def build_services(settings: ServiceSettings, store: Store) -> Sequence[ServiceDefinition]:
    """The predictor service's servicers, bound to ``store``."""
    # Every RPC answers UNIMPLEMENTED until the service's own domain code is served here.
    servicer = predictor_service_pb2_grpc.PredictorServiceServicer()  # type: ignore[abstract]
    return [
        ServiceDefinition(
            SERVICE_NAME,
            servicer,
            predictor_service_pb2_grpc.add_PredictorServiceServicer_to_server,
        )
    ]


def main() -> int:
    return main_for("predictor", build_services)


if __name__ == "__main__":
    raise SystemExit(main())
