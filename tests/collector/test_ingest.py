"""Ingest through a real collector: round trips, resends, refused batches, permissions."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from grpc_status import rpc_status

from cfgclone.collector.agent_client import CollectorClient, CollectorRefusal
from cfgclone.common.auth import Credentials
from cfgclone.common.clients import open_channel
from cfgclone.common.errors import error_info, field_violations
from cfgclone.common.settings import PeerSettings
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc
from cfgclone.v1 import common_pb2
from tests.collector.conftest import (
    SECOND,
    Collector,
    batch,
    batch_recorded,
    metric_known,
    recent_times,
    register,
    series,
    start_collector,
    stored,
    unique_metric,
)


def _query(
    system: str, metric: str, start_ns: int, end_ns: int, **fields: object
) -> pb.QuerySamplesRequest:
    request = pb.QuerySamplesRequest(system=system, metric=metric, **fields)  # type: ignore[arg-type]
    request.start_time.FromNanoseconds(start_ns)
    request.end_time.FromNanoseconds(end_ns)
    return request


async def _all_pages(
    stub: pb_grpc.CollectorServiceStub, request: pb.QuerySamplesRequest
) -> common_pb2.SampleSeries:
    found = common_pb2.SampleSeries()
    while True:
        reply = await stub.QuerySamples(request)
        found.metric, found.unit, found.kind = (
            reply.series.metric,
            reply.series.unit,
            reply.series.kind,
        )
        found.ts_unix_ns.extend(reply.series.ts_unix_ns)
        found.values.extend(reply.series.values)
        if not reply.next_page_token:
            return found
        request.page_token = reply.next_page_token


async def test_a_batch_round_trips_through_query(collector: Collector) -> None:
    system = await register(collector.stub)
    cpu, memory = unique_metric("cpu"), unique_metric("memory")
    ts = recent_times(250)
    cpu_values = np.random.default_rng(1).random(250) * 100
    memory_values = np.arange(250, dtype=np.float64) * 2**20
    sent = batch(
        system,
        series(cpu, ts, cpu_values, unit="percent"),
        series(memory, ts[:100], memory_values[:100], unit="bytes"),
    )

    reply = await collector.stub.WriteSamples(pb.WriteSamplesRequest(batch=sent))

    assert (reply.stored_samples, reply.duplicate) == (350, False)
    found = await _all_pages(
        collector.stub, _query(system, cpu, int(ts[0]), int(ts[-1]) + 1, page_size=64)
    )
    assert found.metric == cpu
    assert found.unit == "percent"
    assert found.kind == common_pb2.METRIC_KIND_GAUGE
    # PostgreSQL keeps microseconds.
    assert list(found.ts_unix_ns) == [int(t) // 1000 * 1000 for t in ts]
    assert list(found.values) == cpu_values.tolist()
    metrics = await collector.stub.ListMetrics(pb.ListMetricsRequest(parent=system))
    assert {(m.name, m.unit) for m in metrics.metrics} == {
        (f"metrics/{cpu}", "percent"),
        (f"metrics/{memory}", "bytes"),
    }
    newest = {m.name: m.last_sample_time.ToNanoseconds() for m in metrics.metrics}
    assert newest[f"metrics/{cpu}"] == int(ts[-1]) // 1000 * 1000
    assert newest[f"metrics/{memory}"] == int(ts[99]) // 1000 * 1000
    described = await collector.stub.GetSystem(pb.GetSystemRequest(name=system))
    assert described.system.last_sample_time.ToNanoseconds() == int(ts[-1]) // 1000 * 1000


async def test_a_resent_batch_is_stored_once(collector: Collector) -> None:
    system = await register(collector.stub)
    metric = unique_metric()
    sent = batch(system, series(metric, recent_times(20), np.ones(20)))

    first = await collector.stub.WriteSamples(pb.WriteSamplesRequest(batch=sent))
    again = await collector.stub.WriteSamples(pb.WriteSamplesRequest(batch=sent))

    async def stream() -> AsyncIterator[pb.StreamSamplesRequest]:
        yield pb.StreamSamplesRequest(batch=sent)
        yield pb.StreamSamplesRequest(batch=sent)

    streamed = await collector.stub.StreamSamples(stream())

    assert (first.stored_samples, first.duplicate) == (20, False)
    assert (again.stored_samples, again.duplicate) == (0, True)
    assert (streamed.batches, streamed.stored_samples, streamed.duplicate_batches) == (2, 0, 2)
    assert len(await stored(collector.store, system, metric)) == 20


async def test_a_stream_stores_every_batch_and_counts_them(collector: Collector) -> None:
    system = await register(collector.stub)
    metric = unique_metric()
    ts = recent_times(1000, step_ns=SECOND // 10)
    batches = [
        batch(system, series(metric, ts[i : i + 100], np.full(100, i))) for i in range(0, 1000, 100)
    ]

    async def stream() -> AsyncIterator[pb.StreamSamplesRequest]:
        for sent in batches:
            yield pb.StreamSamplesRequest(batch=sent)

    reply = await collector.stub.StreamSamples(stream())

    assert (reply.batches, reply.stored_samples, reply.duplicate_batches) == (10, 1000, 0)
    rows = await stored(collector.store, system, metric)
    assert [ts for ts, _ in rows] == [int(t) // 1000 for t in ts]


@dataclass(frozen=True)
class BadCase:
    """A batch that must be refused, the field path the refusal names, and its reason."""

    build: Callable[[str, str], common_pb2.SampleBatch]
    field: str
    reason: str


def _good(metric: str, count: int = 30) -> common_pb2.SampleSeries:
    return series(metric, recent_times(count), np.arange(count, dtype=np.float64))


def _with_value(metric: str, index: int, value: float) -> common_pb2.SampleSeries:
    bad = _good(metric)
    bad.values[index] = value
    return bad


def _future(metric: str, index: int) -> common_pb2.SampleSeries:
    bad = _good(metric)
    bad.ts_unix_ns[index] = time.time_ns() + 10 * 60 * SECOND
    return bad


BAD_CASES = {
    "nan value": BadCase(
        lambda s, m: batch(s, _good(m), _with_value(m + "x", 17, math.nan)),
        "batch.series[1].values[17]",
        "NON_FINITE_VALUE",
    ),
    "infinite value": BadCase(
        lambda s, m: batch(s, _with_value(m, 3, math.inf), _with_value(m + "x", 1, math.nan)),
        "batch.series[0].values[3]",
        "NON_FINITE_VALUE",
    ),
    "timestamp ten minutes ahead": BadCase(
        lambda s, m: batch(s, _good(m), _good(m + "x"), _future(m + "y", 29)),
        "batch.series[2].ts_unix_ns[29]",
        "FUTURE_TIMESTAMP",
    ),
    "metric name with a dash": BadCase(
        lambda s, m: batch(s, _good(m), _good("disk-read.bytes")),
        "batch.series[1].metric",
        "INVALID_METRIC_NAME",
    ),
    "metric name starting with a digit": BadCase(
        lambda s, m: batch(s, _good("9lives")), "batch.series[0].metric", "INVALID_METRIC_NAME"
    ),
    "metric name of 201 characters": BadCase(
        lambda s, m: batch(s, _good(m), _good("a" * 201)),
        "batch.series[1].metric",
        "INVALID_METRIC_NAME",
    ),
    "columns of unequal length": BadCase(
        lambda s, m: batch(s, _good(m), series(m + "x", recent_times(5), [1.0, 2.0, 3.0, 4.0])),
        "batch.series[1]",
        "COLUMN_LENGTH_MISMATCH",
    ),
    "batch over the size limit": BadCase(
        lambda s, m: batch(s, _good(m, 600), _good(m + "x", 600)),
        "batch.series",
        "BATCH_TOO_LARGE",
    ),
    "unknown system": BadCase(
        lambda s, m: batch("systems/never-registered-anywhere", _good(m)),
        "batch.system",
        "UNKNOWN_SYSTEM",
    ),
    "missing batch id": BadCase(
        lambda s, m: common_pb2.SampleBatch(system=s, series=[_good(m)]),
        "batch.batch_id",
        "BATCH_ID_REQUIRED",
    ),
}


LIMITS = {"MAX_BATCH_SAMPLES": "1000"}
"""A collector that accepts at most 1000 samples per batch."""


@pytest.mark.parametrize("case", BAD_CASES.values(), ids=BAD_CASES.keys())
async def test_a_bad_batch_is_refused_naming_its_first_bad_row_and_nothing_is_stored(
    store: Store, case: BadCase
) -> None:
    async with start_collector(store, options=LIMITS) as collector:
        system = await register(collector.stub)
        metric = unique_metric()
        refused = case.build(system, metric)

        call = collector.stub.WriteSamples(pb.WriteSamplesRequest(batch=refused))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        status = await rpc_status.aio.from_call(call)

        async def streamed() -> AsyncIterator[pb.StreamSamplesRequest]:
            yield pb.StreamSamplesRequest(batch=refused)

        with pytest.raises(grpc.aio.AioRpcError) as caught_in_stream:
            await collector.stub.StreamSamples(streamed())

        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught_in_stream.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert status is not None
        info = error_info(status)
        assert info is not None
        assert info.reason == case.reason
        [violation] = field_violations(status)
        assert violation.field == case.field
        assert case.field in (caught.value.details() or "")
        assert await stored(store, system) == []
        assert not await batch_recorded(store, refused.batch_id)
        for name in {s.metric for s in refused.series}:
            assert not await metric_known(store, name)


async def test_a_refused_batch_ends_a_stream_but_keeps_the_batches_before_it(
    collector: Collector,
) -> None:
    system = await register(collector.stub)
    metric = unique_metric()
    good = batch(system, _good(metric))
    bad = batch(system, _with_value(metric, 0, math.nan))
    after = batch(
        system, series(metric, recent_times(3, end_ns=time.time_ns() - SECOND), [7.0] * 3)
    )

    async def stream() -> AsyncIterator[pb.StreamSamplesRequest]:
        for sent in (good, bad, after):
            yield pb.StreamSamplesRequest(batch=sent)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collector.stub.StreamSamples(stream())

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch.series[0].values[0]" in (caught.value.details() or "")
    assert len(await stored(collector.store, system, metric)) == 30
    assert not await batch_recorded(collector.store, after.batch_id)


CREDENTIALS = Credentials.parse(
    """
    agent-token   own-01      agent
    reader-token  dashboards  reader
    """
)


async def test_an_agent_may_write_only_its_own_system(store: Store) -> None:
    async with start_collector(store, credentials=CREDENTIALS) as collector:
        agent = CollectorClient(collector.address, PeerSettings(token="agent-token"))
        reader_channel = open_channel(collector.address, PeerSettings(token="reader-token"))
        try:
            reader = pb_grpc.CollectorServiceStub(reader_channel)
            own = "systems/own-01"
            await agent.register(common_pb2.System(name=own))
            metric = unique_metric()
            # Another system exists (registered by its own agent in real life).
            async with store.connection() as conn:
                await conn.execute(
                    "INSERT INTO systems (system_id) VALUES ('other-01') ON CONFLICT DO NOTHING"
                )
            foreign = batch("systems/other-01", _good(metric))

            with pytest.raises(CollectorRefusal) as unary:
                await agent.write(foreign)
            with pytest.raises(CollectorRefusal) as streamed:
                await agent.stream([batch(own, _good(metric)), foreign])
            with pytest.raises(grpc.aio.AioRpcError) as by_reader:
                await reader.WriteSamples(pb.WriteSamplesRequest(batch=batch(own, _good(metric))))
            later = recent_times(2, end_ns=time.time_ns() - 5 * SECOND)
            mine = await agent.write(batch(own, series(metric, later, [1.0, 2.0])))
        finally:
            await agent.close()
            await reader_channel.close()

    assert unary.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert unary.value.reason == "OTHER_SYSTEM"
    assert "systems/other-01" in unary.value.message
    assert streamed.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert by_reader.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert mine.stored_samples == 2
    assert await stored(store, "systems/other-01") == []
    # The stream's first batch (its own system) was stored before the foreign one was refused.
    assert len(await stored(store, own, metric)) == 32
