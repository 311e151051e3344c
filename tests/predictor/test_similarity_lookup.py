"""The predictor asks the similarity service for a system's neighbours, and reuses the
answer for a while rather than adding a round trip to every prediction."""

from __future__ import annotations

import grpc

from cfgclone.common.settings import PeerSettings, ServiceSettings
from cfgclone.predictor.main import similarity_lookup
from cfgclone.v1 import similarity_service_pb2 as pb
from cfgclone.v1 import similarity_service_pb2_grpc as pb_grpc


class _Neighbours(pb_grpc.SimilarityServiceServicer):
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def FindSimilarSystems(
        self, request: pb.FindSimilarSystemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindSimilarSystemsResponse:
        self.asked.append(request.system)
        reply = pb.FindSimilarSystemsResponse()
        reply.similar_systems.add(first=request.system, second="systems/twin", score=0.8)
        return reply


async def test_neighbours_are_reused_for_a_while_then_asked_again() -> None:
    neighbours = _Neighbours()
    server = grpc.aio.server()
    pb_grpc.add_SimilarityServiceServicer_to_server(neighbours, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        peers = PeerSettings(addresses={"similarity": f"127.0.0.1:{port}"})
        settings = ServiceSettings(service="predictor", peers=peers)
        kept = similarity_lookup(settings, 5, kept_s=60.0)
        fresh = similarity_lookup(settings, 5, kept_s=0.0)

        first = await kept("systems/a")
        again = await kept("systems/a")
        other = await kept("systems/b")
        await fresh("systems/a")
        await fresh("systems/a")
    finally:
        await server.stop(None)

    assert first == again == {"systems/twin": 0.8}
    assert other == {"systems/twin": 0.8}
    assert neighbours.asked == ["systems/a", "systems/b", "systems/a", "systems/a"]
