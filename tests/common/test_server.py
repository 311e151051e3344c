"""The service bootstrap on real servers: errors, pagination, auth, TLS, tracing, health."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cfgclone.collector.main import build_services
from cfgclone.common.auth import Credentials
from cfgclone.common.clients import open_channel
from cfgclone.common.errors import error_info, field_violations
from cfgclone.common.server import watch_readiness
from cfgclone.common.settings import ClientTls, PeerSettings, ServerSettings, ServerTls
from cfgclone.common.store import Store
from cfgclone.common.telemetry import server_interceptor, tracer_provider
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc
from cfgclone.v1 import common_pb2
from tests.common.helpers import CuttableProxy, make_certificates
from tests.conftest import serve_in_process, service_settings

CREDENTIALS = Credentials.parse(
    """
    reader-token   dashboards   reader
    agent-token    db-01        agent
    ops-token      oncall       operator
    cn:agent-db-01 db-01        agent
    """
)


def _register(name: str, **labels: str) -> pb.RegisterSystemRequest:
    return pb.RegisterSystemRequest(
        system=common_pb2.System(name=name, cpu_cores=4, memory_bytes=2**34, labels=labels)
    )


async def test_invalid_argument_carries_error_info_and_field_violation(store: Store) -> None:
    services = await build_services(service_settings("collector", store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.CollectorServiceStub(channel)
        call = stub.ListSystems(pb.ListSystemsRequest(page_size=-5))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = await rpc_status.aio.from_call(call)
        assert status is not None
        info = error_info(status)
        assert info is not None
        assert info.reason == "INVALID_ARGUMENT"
        assert info.domain == "cfgclone.dev"
        [violation] = field_violations(status)
        assert violation.field == "page_size"
        assert "negative" in violation.description


async def test_bad_name_is_refused_and_nothing_is_stored(store: Store) -> None:
    services = await build_services(service_settings("collector", store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.CollectorServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RegisterSystem(_register("hosts/Web_01"))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "systems/{system_id}" in (caught.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetSystem(pb.GetSystemRequest(name="systems/never-registered"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert "RegisterSystem" in (missing.value.details() or "")


async def test_pages_cover_every_system_once_and_tokens_belong_to_their_query(
    store: Store,
) -> None:
    services = await build_services(service_settings("collector", store.url), store)
    async with serve_in_process(services) as (_, channel):
        stub = pb_grpc.CollectorServiceStub(channel)
        names = [f"systems/page-{i:02d}" for i in range(7)]
        for name in names:
            await stub.RegisterSystem(_register(name, suite="paging"))
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            reply = await stub.ListSystems(
                pb.ListSystemsRequest(page_size=3, page_token=token, label_selector="suite=paging")
            )
            seen += [s.name for s in reply.systems]
            pages += 1
            token = reply.next_page_token
            if not token:
                break
        assert seen == names
        assert pages == 3
        first = await stub.ListSystems(
            pb.ListSystemsRequest(page_size=3, label_selector="suite=paging")
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListSystems(
                pb.ListSystemsRequest(
                    page_size=3, page_token=first.next_page_token, label_selector="suite=other"
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as garbage:
            await stub.ListSystems(pb.ListSystemsRequest(page_token="not-a-token"))
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_tokens_map_to_identities_and_roles(store: Store) -> None:
    services = await build_services(service_settings("collector", store.url), store)
    async with serve_in_process(services, credentials=CREDENTIALS) as (running, channel):
        stub = pb_grpc.CollectorServiceStub(channel)

        def auth(token: str) -> tuple[tuple[str, str]]:
            return (("authorization", f"Bearer {token}"),)

        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.ListSystems(pb.ListSystemsRequest())
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.ListSystems(pb.ListSystemsRequest(), metadata=auth("stolen"))
        assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED

        listed = await stub.ListSystems(pb.ListSystemsRequest(), metadata=auth("reader-token"))
        assert isinstance(listed, pb.ListSystemsResponse)
        with pytest.raises(grpc.aio.AioRpcError) as reader_writes:
            await stub.RegisterSystem(_register("systems/db-01"), metadata=auth("reader-token"))
        assert reader_writes.value.code() == grpc.StatusCode.PERMISSION_DENIED

        own = await stub.RegisterSystem(_register("systems/db-01"), metadata=auth("agent-token"))
        assert own.system.name == "systems/db-01"
        with pytest.raises(grpc.aio.AioRpcError) as other:
            await stub.RegisterSystem(_register("systems/db-02"), metadata=auth("agent-token"))
        assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "systems/db-02" in (other.value.details() or "")

        # Probes need no credentials.
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert running.port > 0


async def test_tls_serves_only_clients_that_trust_it(store: Store, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    services = await build_services(service_settings("collector", store.url), store)
    settings = ServerSettings(port=0, tls=ServerTls(certs.server_cert, certs.server_key))
    tls_peers = PeerSettings(tls=ClientTls(ca_file=certs.ca), timeout_seconds=5)
    secure = open_channel("127.0.0.1:0", tls_peers)  # replaced once the port is known
    await secure.close()
    async with serve_in_process(services, settings=settings) as (running, plaintext):
        address = f"127.0.0.1:{running.port}"
        async with open_channel(address, tls_peers) as channel:
            stub = pb_grpc.CollectorServiceStub(channel)
            reply = await stub.ListSystems(pb.ListSystemsRequest(), timeout=5)
            assert isinstance(reply, pb.ListSystemsResponse)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pb_grpc.CollectorServiceStub(plaintext).ListSystems(
                pb.ListSystemsRequest(), timeout=2
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate_and_names_the_caller(
    store: Store, tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path, client_name="agent-db-01")
    services = await build_services(service_settings("collector", store.url), store)
    settings = ServerSettings(port=0, tls=ServerTls(certs.server_cert, certs.server_key, certs.ca))
    async with serve_in_process(services, settings=settings, credentials=CREDENTIALS) as (
        running,
        _,
    ):
        address = f"127.0.0.1:{running.port}"
        without_cert = PeerSettings(tls=ClientTls(ca_file=certs.ca))
        async with open_channel(address, without_cert) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pb_grpc.CollectorServiceStub(channel).ListSystems(
                    pb.ListSystemsRequest(), timeout=3
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with_cert = PeerSettings(
            tls=ClientTls(ca_file=certs.ca, cert_file=certs.client_cert, key_file=certs.client_key)
        )
        async with open_channel(address, with_cert) as channel:
            stub = pb_grpc.CollectorServiceStub(channel)
            # The certificate's name maps to the agent of db-01: its own system only.
            own = await stub.RegisterSystem(_register("systems/db-01"), timeout=5)
            assert own.system.name == "systems/db-01"
            with pytest.raises(grpc.aio.AioRpcError) as other:
                await stub.RegisterSystem(_register("systems/web-07"), timeout=5)
            assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_one_trace_spans_the_client_call_and_the_server(store: Store) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    services = await build_services(service_settings("collector", store.url), store)
    async with serve_in_process(services, tracer_provider=provider) as (running, _):
        address = f"127.0.0.1:{running.port}"
        async with open_channel(address, tracer_provider=provider) as channel:
            stub = pb_grpc.CollectorServiceStub(channel)
            with provider.get_tracer("test").start_as_current_span("workflow"):
                await stub.RegisterSystem(_register("systems/traced-01"))
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.GetSystem(pb.GetSystemRequest(name="systems/absent"))
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    spans = exporter.get_finished_spans()
    workflow = next(s for s in spans if s.name == "workflow")
    assert workflow.context is not None
    in_trace = [s for s in spans if s.context and s.context.trace_id == workflow.context.trace_id]
    kinds = {(s.name, s.kind) for s in in_trace}
    register = "/cfgclone.v1.CollectorService/RegisterSystem"
    assert (register, SpanKind.CLIENT) in kinds
    assert (register, SpanKind.SERVER) in kinds
    get = "/cfgclone.v1.CollectorService/GetSystem"
    server_get = next(s for s in in_trace if s.kind == SpanKind.SERVER and s.name == get)
    client_get = next(s for s in in_trace if s.kind == SpanKind.CLIENT and s.name == get)
    # The status reaches the span: the server records the code (NOT_FOUND is the
    # caller's error, so by OpenTelemetry's conventions not a server error) and the
    # client marks its span as failed.
    assert server_get.attributes is not None
    assert server_get.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert client_get.status.status_code == StatusCode.ERROR
    assert not any("Health" in s.name for s in spans)


async def test_calls_are_traced_only_when_an_otlp_endpoint_is_set(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracing = type(server_interceptor(TracerProvider()))
    services = await build_services(service_settings("collector", store.url), store)
    assert tracer_provider("collector", None) is None
    async with serve_in_process(services, tracer_provider=None) as (running, channel):
        assert not any(isinstance(i, tracing) for i in running.interceptors)
        await pb_grpc.CollectorServiceStub(channel).RegisterSystem(_register("systems/untraced"))

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0.1")  # no collector listens
    provider = tracer_provider("collector", "http://127.0.0.1:4317")
    assert provider is not None
    exporter = InMemorySpanExporter()  # beside the OTLP exporter, which finds no collector
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        async with serve_in_process(services, tracer_provider=provider) as (running, channel):
            assert sum(isinstance(i, tracing) for i in running.interceptors) == 1
            await pb_grpc.CollectorServiceStub(channel).RegisterSystem(_register("systems/traced"))
    finally:
        provider.shutdown()
    assert [span.name for span in exporter.get_finished_spans()] == [
        "/cfgclone.v1.CollectorService/RegisterSystem"
    ]


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def _health_status(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    return int(reply.status)


async def _eventually(predicate: object, seconds: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.2)
    return False


async def test_database_going_away_gives_not_serving_and_unavailable_then_recovers(
    database_url: str, store: Store
) -> None:
    target = urlsplit(database_url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    proxied = Store(_through(database_url, proxy.port), connect_timeout=2.0)
    await proxied.open()
    services = await build_services(service_settings("collector", proxied.url), proxied)
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        async with serve_in_process(services, serving=False) as (running, channel):
            readiness = asyncio.create_task(watch_readiness(running, proxied, interval=0.2))
            stub = pb_grpc.CollectorServiceStub(channel)
            try:
                assert await _eventually(lambda: _is(channel, serving))
                await stub.RegisterSystem(_register("systems/resilient-01"))

                await proxy.cut()
                with pytest.raises(grpc.aio.AioRpcError) as down:
                    await stub.GetSystem(pb.GetSystemRequest(name="systems/resilient-01"))
                assert down.value.code() == grpc.StatusCode.UNAVAILABLE
                assert await _eventually(lambda: _is(channel, not_serving))
                # Liveness does not follow the database: nothing should restart the service.
                alive = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="liveness")
                )
                assert alive.status == serving

                await proxy.restore()
                assert await _eventually(lambda: _is(channel, serving))
                assert await _eventually(lambda: _get_works(stub, "systems/resilient-01"))
            finally:
                readiness.cancel()
    finally:
        await proxied.close()
        await proxy.cut()


async def _is(channel: grpc.aio.Channel, status: int) -> bool:
    return await _health_status(channel) == status


async def _get_works(stub: pb_grpc.CollectorServiceStub, name: str) -> bool:
    try:
        reply = await stub.GetSystem(pb.GetSystemRequest(name=name), timeout=3)
    except grpc.aio.AioRpcError:
        return False
    return reply.system.name == name
