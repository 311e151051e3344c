"""The one bootstrap every cfgclone service uses.

:func:`start_server` builds a ``grpc.aio`` server with the standard health
service, server reflection, tracing, authentication and the mapping of domain
errors to statuses, binds it (port 0 picks a free port) and starts it.
:func:`run_service` is a service's whole ``main``: settings, logging, tracing,
the store and its migrations, readiness, and graceful shutdown on SIGTERM or
SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from cfgclone.common.auth import AuthInterceptor, Credentials
from cfgclone.common.embedded import EmbeddedDatabaseError, start_embedded_database
from cfgclone.common.errors import CfgcloneError, to_status
from cfgclone.common.handlers import Continuation, ServerInterceptor, wrap_method_handler
from cfgclone.common.incidents import internal_error
from cfgclone.common.logs import configure_logging
from cfgclone.common.metrics import MetricsHttpServer, MetricsInterceptor, PageHandler, RpcMetrics
from cfgclone.common.page_tokens import PAGE_TOKEN_KEY_NAME, use_page_token_key
from cfgclone.common.request_limits import RequestLimitsInterceptor
from cfgclone.common.settings import (
    ServerSettings,
    ServiceSettings,
    SettingsError,
    load_settings,
)
from cfgclone.common.store import Store
from cfgclone.common.telemetry import configure_tracing, server_interceptor
from cfgclone.common.usage import usage_error
from cfgclone.common.validation import RequestValidationInterceptor

logger = logging.getLogger(__name__)

LIVENESS = "liveness"
"""Health service name that reports SERVING for as long as the process runs."""

EXIT_START_FAILED = 1
"""Exit status of a service that cannot start: its port is taken, its database cannot run."""

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest response; requests are bounded by ``ServerSettings.max_message_bytes``."""


class PortInUseError(RuntimeError):
    """The server cannot bind its address: another process holds the port."""


@dataclass(frozen=True)
class ServiceDefinition:
    """A servicer and how to add it to a server."""

    full_name: str
    """Fully qualified service name, for example ``cfgclone.v1.CollectorService``."""
    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=tuple)
    """Loops to run while the server runs (refinement, retention); cancelled on shutdown."""
    metrics: CollectorRegistry | None = None
    """The service's own counters, served with the RPC metrics on ``/metrics``."""
    pages: Sequence[PageHandler] = field(default_factory=tuple)
    """Pages served over HTTP next to ``/metrics`` (the predictor's change reports)."""


class ErrorMappingInterceptor(ServerInterceptor):
    """Turns a :class:`CfgcloneError` raised by a servicer into its status, in one place.

    Any other exception is logged with its traceback and reported as INTERNAL
    without internals, so a bug never leaks a stack trace to a caller.
    """

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:  # a handler, or None for an unknown method
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        return wrap_method_handler(
            handler,
            lambda call, context: _map_errors(call, context, method),
            lambda call, context: _map_stream_errors(call, context, method),
        )


async def _abort(context: Any, error: CfgcloneError) -> None:
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


def _internal(method: str) -> CfgcloneError:
    """Called from an ``except`` block: logs the traceback under an error id the caller gets."""
    return internal_error(method)


async def _map_errors(call: Callable[[], Awaitable[Any]], context: Any, method: str) -> Any:
    try:
        return await call()
    except CfgcloneError as error:
        await _abort(context, error)
    except (asyncio.CancelledError, grpc.aio.AbortError):
        raise
    except Exception:
        await _abort(context, _internal(method))


async def _map_stream_errors(
    call: Callable[[], AsyncIterator[Any]], context: Any, method: str
) -> AsyncIterator[Any]:
    try:
        async for response in call():
            yield response
    except CfgcloneError as error:
        await _abort(context, error)
    except (asyncio.CancelledError, grpc.aio.AbortError):
        raise
    except Exception:
        await _abort(context, _internal(method))


@dataclass
class RunningServer:
    """A started server: its bound port and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    service_names: tuple[str, ...]
    registry: CollectorRegistry
    """RPC metrics and every service's own counters."""
    interceptors: tuple[grpc.aio.ServerInterceptor[Any, Any], ...] = ()
    """The server's interceptors, outermost first."""
    metrics_port: int | None = None
    """Port of ``/metrics`` and the pages, when served."""
    http: MetricsHttpServer | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _health_updates: set[asyncio.Future[None]] = field(default_factory=set)

    def set_serving(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING for the server and each of its services."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            update = asyncio.ensure_future(self.health.set(name, status))
            self._health_updates.add(update)
            update.add_done_callback(self._health_updates.discard)

    async def stop(self, grace: float | None) -> None:
        """Stop taking calls, let in-flight ones finish within ``grace``, end background loops."""
        await self.health.enter_graceful_shutdown()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.server.stop(grace)
        if self.http is not None:
            await asyncio.to_thread(self.http.stop)


def _credentials_for(settings: ServerSettings) -> grpc.ServerCredentials | None:
    tls = settings.tls
    if tls is None:
        return None
    client_ca = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


async def start_server(
    services: Sequence[ServiceDefinition],
    settings: ServerSettings,
    *,
    credentials: Credentials | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    serving: bool = False,
    metrics_port: int | None = None,
) -> RunningServer:
    """Build, bind and start a server for ``services``.

    Health starts NOT_SERVING unless ``serving``; the caller drives it (see
    :func:`watch_readiness`). Returns the bound port, so tests can bind port 0.
    Calls are traced only with a ``tracer_provider`` (see ``telemetry``).
    With ``metrics_port`` (0 picks a free one) ``/metrics`` and the services'
    pages are served over HTTP on the server's host.
    """
    registry = CollectorRegistry()
    for service in services:
        if service.metrics is not None:
            registry.register(service.metrics)
    tracing = () if tracer_provider is None else (server_interceptor(tracer_provider),)
    interceptors: tuple[grpc.aio.ServerInterceptor[Any, Any], ...] = (
        MetricsInterceptor(RpcMetrics(registry)),
        *tracing,
        AuthInterceptor(credentials),
        RequestLimitsInterceptor(settings.max_inflight_bytes, settings.stream_idle_seconds),
        ErrorMappingInterceptor(),
        RequestValidationInterceptor(),
    )
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
            # Without this a second server on a busy port binds too and takes half its calls.
            ("grpc.so_reuseport", 0),
        ],
    )
    health_servicer = health_aio.HealthServicer()
    # "liveness" stays SERVING while the process runs: a liveness probe must not
    # restart a service whose database is down (readiness, "" and the service
    # names, follows the database instead).
    await health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(s.full_name for s in services)
    for service in services:
        service.add_to_server(service.servicer, server)
    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    tls = _credentials_for(settings)
    try:
        if tls is None:
            port = server.add_insecure_port(settings.address)
        else:
            port = server.add_secure_port(settings.address, tls)
    except RuntimeError:
        await server.stop(None)
        raise PortInUseError(
            f"cannot listen on {settings.address}: the port is in use or not available "
            "here; set CFGCLONE_PORT (or --port) to another port, 0 for any free one"
        ) from None
    await server.start()
    running = RunningServer(server, port, health_servicer, names, registry, interceptors)
    if metrics_port is not None:
        running.http = MetricsHttpServer(
            registry,
            [page for service in services for page in service.pages],
            asyncio.get_running_loop(),
        )
        running.metrics_port = running.http.start(settings.host, metrics_port)
        logger.info("metrics on http://%s:%s/metrics", settings.host, running.metrics_port)
    running.set_serving(serving)
    for service in services:
        for loop in service.background:
            running.tasks.append(asyncio.create_task(loop()))
    logger.info("listening on %s:%s", settings.host, port, extra={"services": list(names)})
    return running


async def watch_readiness(
    running: RunningServer,
    store: Store,
    *,
    interval: float = 1.0,
    page_token_key_from_database: bool = False,
) -> None:
    """Keep health in step with the database: SERVING only while it answers and is migrated.

    Migrations run as soon as the database is first reachable, so a service
    started before its database comes up by itself once it does; with
    ``page_token_key_from_database`` the deployment's page-token key is then
    loaded before the service reports SERVING.
    """
    migrated = False
    serving: bool | None = None
    while True:
        ready = await store.ping()
        if ready and not migrated:
            try:
                await store.migrate()
                if page_token_key_from_database:
                    use_page_token_key(await store.deployment_key(PAGE_TOKEN_KEY_NAME))
                migrated = True
            except CfgcloneError as error:
                logger.warning("migrations not applied yet: %s", error.message)
                ready = False
        ready = ready and migrated
        if ready != serving:
            logger.info(
                "database %s", "reachable: SERVING" if ready else "unreachable: NOT_SERVING"
            )
            running.set_serving(ready)
            serving = ready
        await asyncio.sleep(interval)


def database_url(settings: ServiceSettings) -> str:
    """The configured database URL, or that of the embedded server, started if need be."""
    if settings.database.url:
        return settings.database.url
    return start_embedded_database(settings.database.data_dir)


BuildServices = Callable[[ServiceSettings, Store], Awaitable[Sequence[ServiceDefinition]]]
"""Builds a service's servicers from its settings and store."""


async def serve(
    settings: ServiceSettings,
    build: BuildServices,
    tracer_provider: trace.TracerProvider | None = None,
) -> None:
    """Run a service until SIGTERM or SIGINT, then shut down gracefully.

    Calls are traced with ``tracer_provider``; None traces nothing.
    """
    credentials = (
        Credentials.from_file(settings.auth.tokens_file) if settings.auth.tokens_file else None
    )
    if credentials is None:
        logger.warning("authentication is off: set CFGCLONE_AUTH_TOKENS_FILE outside a laptop")
    store = Store(
        database_url(settings),
        min_size=settings.database.pool_min_size,
        max_size=settings.database.pool_max_size,
        name=settings.service,
    )
    await store.open()
    try:
        running = await start_server(
            await build(settings, store),
            settings.server,
            credentials=credentials,
            tracer_provider=tracer_provider,
            metrics_port=settings.telemetry.metrics_port,
        )
    except BaseException:
        await store.close()
        raise
    if settings.auth.page_token_key:
        use_page_token_key(settings.auth.page_token_key.encode())
    # What start-up made (modules, descriptors, servicers, pools) lives as long as the
    # process: frozen, a full collection no longer walks it on every run.
    gc.freeze()
    readiness = asyncio.create_task(
        watch_readiness(
            running, store, page_token_key_from_database=not settings.auth.page_token_key
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(
        f"cfgclone-{settings.service} listening on {settings.server.host}:{running.port}",
        flush=True,
    )
    await stop.wait()
    logger.info("shutting down, grace %.1f s", settings.server.grace_seconds)
    readiness.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await readiness
    await running.stop(settings.server.grace_seconds)
    await store.close()


def main_for(service: str, build: BuildServices, argv: Sequence[str] | None = None) -> int:
    """A service's console-script entry point."""
    import sys

    try:
        settings = load_settings(service, sys.argv[1:] if argv is None else argv)
    except SettingsError as error:
        return usage_error(f"cfgclone-{service}", str(error))
    configure_logging(service, settings.telemetry.log_level, settings.telemetry.log_format)
    provider = configure_tracing(service, settings.telemetry.otlp_endpoint)
    try:
        asyncio.run(serve(settings, build, provider))
    except SettingsError as error:  # a service's own settings, read when it is built
        return usage_error(f"cfgclone-{service}", str(error))
    except (PortInUseError, EmbeddedDatabaseError) as error:
        print(f"cfgclone-{service}: {error}", file=sys.stderr)
        return EXIT_START_FAILED
    finally:
        if provider is not None:
            provider.shutdown()
    return 0
