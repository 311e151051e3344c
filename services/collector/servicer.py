"""CollectorService: translation between protobuf and the collector's domain functions."""

from __future__ import annotations

from typing import Any

from cfgclone.collector import systems
from cfgclone.common.auth import Role, require_own_system, require_role
from cfgclone.common.requests import (
    page_request,
    parse_label_selector,
    require,
    system_id_from_name,
)
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc


class CollectorServicer(pb_grpc.CollectorServiceServicer):
    """Systems, samples and time-series queries."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def RegisterSystem(
        self, request: pb.RegisterSystemRequest, context: Any
    ) -> pb.RegisterSystemResponse:
        require(request.system.name, "system.name")
        require_own_system(system_id_from_name(request.system.name, "system.name"), "register")
        system = await systems.register_system(self._store, request.system)
        return pb.RegisterSystemResponse(system=system)

    async def GetSystem(self, request: pb.GetSystemRequest, context: Any) -> pb.GetSystemResponse:
        require_role(Role.READER, "GetSystem")
        require(request.name, "name")
        return pb.GetSystemResponse(system=await systems.get_system(self._store, request.name))

    async def ListSystems(
        self, request: pb.ListSystemsRequest, context: Any
    ) -> pb.ListSystemsResponse:
        require_role(Role.READER, "ListSystems")
        labels = parse_label_selector(request.label_selector)
        page = page_request(request.page_size, request.page_token, query=labels)
        found, token = await systems.list_systems(self._store, page, labels)
        return pb.ListSystemsResponse(systems=found, next_page_token=token)
