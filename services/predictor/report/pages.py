"""The predictor serves reports next to ``/metrics``: ``/reports/systems/X/changes/N`` and
``/reports/fleet``.

The pages are the ones ``cfgclone report`` writes. The predictor's own parts are read from its
servicer in process; the collector and the fingerprint service are called like any peer.
The metrics port has no authentication: keep it inside the network that runs the suite.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import grpc

from cfgclone.common.clients import open_channel
from cfgclone.common.errors import CfgcloneError, to_status
from cfgclone.common.metrics import Page, PageHandler
from cfgclone.common.settings import PeerSettings
from cfgclone.predictor.report.fleet import FleetSources, gather_fleet
from cfgclone.predictor.report.fleet_render import render_fleet
from cfgclone.predictor.report.gather import Sources, gather
from cfgclone.predictor.report.render import render
from cfgclone.v1 import collector_service_pb2_grpc as collector_grpc
from cfgclone.v1 import fingerprint_service_pb2_grpc as fingerprint_grpc
from cfgclone.v1 import similarity_service_pb2_grpc as similarity_grpc

PREFIX = "/reports/"


class InProcess:
    """A servicer called like its stub: ``await stub.Method(request, timeout=...)``.

    Domain errors come out as the :class:`grpc.aio.AioRpcError` a stub would raise.
    """

    def __init__(self, servicer: object) -> None:
        self._servicer = servicer

    def __getattr__(self, method: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        behaviour = getattr(self._servicer, method)

        async def call(request: Any, **call_options: Any) -> Any:
            # Options of a stub call (its timeout) do not apply in process.
            try:
                return await behaviour(request, None)
            except CfgcloneError as error:
                status = to_status(error)
                raise grpc.aio.AioRpcError(
                    status.code,
                    grpc.aio.Metadata(),
                    grpc.aio.Metadata(*status.trailing_metadata),
                    status.details,
                    "",
                ) from error

        return call


_STATUS_OF = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400}


def report_page(servicer: object, peers: PeerSettings) -> PageHandler:
    """The handler of ``/reports/systems/X/changes/N`` and ``/reports/fleet``."""
    predictor = InProcess(servicer)

    async def page(path: str, query: Mapping[str, str]) -> Page | None:
        if not path.startswith(PREFIX):
            return None
        name = path.removeprefix(PREFIX)
        async with (
            open_channel(peers.address("collector"), peers) as collector,
            open_channel(peers.address("fingerprint"), peers) as fingerprint,
            open_channel(peers.address("similarity"), peers) as similarity,
        ):
            try:
                if name == "fleet":
                    fleet = FleetSources(
                        collector_grpc.CollectorServiceStub(collector),
                        fingerprint_grpc.FingerprintServiceStub(fingerprint),
                        similarity_grpc.SimilarityServiceStub(similarity),
                        predictor,
                        timeout=peers.timeout_seconds,
                    )
                    html = render_fleet(await gather_fleet(fleet))
                else:
                    sources = Sources(
                        predictor,
                        collector_grpc.CollectorServiceStub(collector),
                        fingerprint_grpc.FingerprintServiceStub(fingerprint),
                        timeout=peers.timeout_seconds,
                    )
                    html = render(await gather(sources, name))
            except grpc.aio.AioRpcError as error:
                status = _STATUS_OF.get(error.code(), 502)
                text = f"{error.code().name}: {error.details()}\n"
                return Page(status, "text/plain; charset=utf-8", text.encode())
        return Page(200, "text/html; charset=utf-8", html.encode())

    return page
