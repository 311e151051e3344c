"""``cfgclone-fingerprint``: the fingerprint service's entry point."""

from __future__ import annotations

from collections.abc import Sequence

from cfgclone.common.server import ServiceDefinition, main_for
from cfgclone.common.settings import ServiceSettings
from cfgclone.common.store import Store
from cfgclone.v1 import fingerprint_service_pb2, fingerprint_service_pb2_grpc

SERVICE_NAME = fingerprint_service_pb2.DESCRIPTOR.services_by_name["FingerprintService"].full_name


async def build_services(settings: ServiceSettings, store: Store) -> Sequence[ServiceDefinition]:
    """The fingerprint service's servicers, bound to ``store``."""
    # Every RPC answers UNIMPLEMENTED until the service's own domain code is served here.
    servicer = fingerprint_service_pb2_grpc.FingerprintServiceServicer()  # type: ignore[abstract]
    return [
        ServiceDefinition(
            SERVICE_NAME,
            servicer,
            fingerprint_service_pb2_grpc.add_FingerprintServiceServicer_to_server,
        )
    ]


def main() -> int:
    return main_for("fingerprint", build_services)


if __name__ == "__main__":
    raise SystemExit(main())
