"""Prometheus metrics of a service: its RPCs, its domain counters, and the HTTP port serving them.

Every service counts its calls the same way, with the names of
grpc-ecosystem's go-grpc-prometheus (so existing dashboards and alerts fit):

* ``grpc_server_started_total{grpc_type, grpc_service, grpc_method}``
* ``grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}``:
  finished calls by status code, so errors are the series whose code is not ``OK``.
* ``grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}``: a latency histogram.

A service adds its own counters as a registry of its own on its
:class:`~cfgclone.common.server.ServiceDefinition`; the server collects them all
in one registry per server, so servers running side by side in one process (as in
the tests) never share a series. :class:`MetricsHttpServer` serves ``/metrics`` and
whatever pages a service adds (the predictor's change reports), from a thread, on
``CFGCLONE_METRICS_PORT``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app

from cfgclone.common.handlers import Context, Continuation, ServerInterceptor, wrap_method_handler

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Seconds; from a cached read (a millisecond) to a shadow prediction (a minute)."""


@dataclass(frozen=True)
class Page:
    """A response of a service's page: status line, content type and body."""

    status: int
    content_type: str
    body: bytes


PageHandler = Callable[[str, Mapping[str, str]], Coroutine[Any, Any, Page | None]]
"""Answers a GET of a path with its query parameters; None when the path is not its own."""


class RpcMetrics:
    """The RPC counters and latency histogram of one server, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started",
            "RPCs started on the server.",
            labels,
            registry=registry,
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status, in seconds.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


def _split(method: str) -> tuple[str, str]:
    """``/cfgclone.v1.CollectorService/WriteSamples`` -> service and method."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def _rpc_type(handler: Any) -> str:
    if handler.unary_unary is not None:
        return "unary"
    if handler.stream_unary is not None:
        return "client_stream"
    if handler.unary_stream is not None:
        return "server_stream"
    return "bidi_stream"


def _code_name(context: Context, raised: BaseException | None) -> str:
    if isinstance(raised, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.name
    # grpc.aio contexts report the code as a StatusCode, its raw integer, or None before one is set.
    code: Any = context.code()
    if code is None:
        return grpc.StatusCode.UNKNOWN.name if raised is not None else grpc.StatusCode.OK.name
    if isinstance(code, grpc.StatusCode):
        return code.name
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))


class MetricsInterceptor(ServerInterceptor):
    """Counts each call and times it to its status; health checks and reflection are counted too."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        labels = (_rpc_type(handler), *_split(handler_call_details.method))
        return wrap_method_handler(
            handler,
            lambda call, context: self._observe(call, context, labels),
            lambda call, context: self._observe_stream(call, context, labels),
        )

    def _finish(
        self, labels: tuple[str, ...], context: Context, began: float, raised: BaseException | None
    ) -> None:
        self._metrics.handling.labels(*labels).observe(time.perf_counter() - began)
        self._metrics.handled.labels(*labels, _code_name(context, raised)).inc()

    async def _observe(
        self, call: Callable[[], Awaitable[Any]], context: Context, labels: tuple[str, ...]
    ) -> Any:
        self._metrics.started.labels(*labels).inc()
        began = time.perf_counter()
        try:
            response = await call()
        except BaseException as error:
            self._finish(labels, context, began, error)
            raise
        self._finish(labels, context, began, None)
        return response

    async def _observe_stream(
        self, call: Callable[[], AsyncIterator[Any]], context: Context, labels: tuple[str, ...]
    ) -> AsyncIterator[Any]:
        self._metrics.started.labels(*labels).inc()
        began = time.perf_counter()
        try:
            async for response in call():
                yield response
        except BaseException as error:
            self._finish(labels, context, began, error)
            raise
        self._finish(labels, context, began, None)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http %s", format % args)


class MetricsHttpServer:
    """``/metrics`` and a service's pages over HTTP, served from a thread of its own.

    Pages are coroutines; they run on the service's event loop, so they use its
    store like any RPC does.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        pages: Iterable[PageHandler],
        loop: asyncio.AbstractEventLoop,
        *,
        timeout_seconds: float = 60.0,
    ) -> None:
        self._metrics = make_wsgi_app(registry)
        self._pages = tuple(pages)
        self._loop = loop
        self._timeout = timeout_seconds
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: str, port: int) -> int:
        """Bind ``host:port`` (0 picks a free port), serve, and return the bound port."""
        self._server = make_server(host, port, self._app, _Server, _QuietHandler)
        # A short poll, so that stopping (which waits for the loop to notice) is quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if environ.get("REQUEST_METHOD") != "GET":
            return _reply(start_response, Page(405, "text/plain", b"only GET\n"))
        query = _query(environ.get("QUERY_STRING") or "")
        for handler in self._pages:
            future = asyncio.run_coroutine_threadsafe(handler(path, query), self._loop)
            try:
                page = future.result(self._timeout)
            except Exception:
                logger.exception("page %s failed", path)
                page = Page(500, "text/plain", b"the page failed; see the service log\n")
            if page is not None:
                return _reply(start_response, page)
        return _reply(start_response, Page(404, "text/plain", b"not found\n"))


def _query(text: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(text))


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def _reply(start_response: Any, page: Page) -> list[bytes]:
    reason = _REASONS.get(page.status, "Internal Server Error")
    start_response(
        f"{page.status} {reason}",
        [("Content-Type", page.content_type), ("Content-Length", str(len(page.body)))],
    )
    return [page.body]
