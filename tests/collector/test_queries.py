"""Queries through a real collector: downsampling against numpy, paging, and bad queries."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from cfgclone.v1 import collector_service_pb2 as pb
from tests.collector.conftest import (
    SECOND,
    Collector,
    batch,
    recent_times,
    register,
    series,
    unique_metric,
)


def _range(
    request: pb.QuerySamplesRequest | pb.QueryDownsampledRequest, start: int, end: int
) -> None:
    request.start_time.FromNanoseconds(start)
    request.end_time.FromNanoseconds(end)


async def test_downsampled_buckets_match_numpy(collector: Collector) -> None:
    system = await register(collector.stub)
    metric = unique_metric("latency")
    generator = np.random.default_rng(11)
    # Irregular times over about two hours, values with a trend and noise.
    offsets = np.sort(generator.integers(0, 7200 * SECOND, size=5000))
    ts = recent_times(1)[0] - 7200 * SECOND + offsets
    values = 50 + 10 * np.sin(offsets / 1e12) + generator.normal(0, 5, size=offsets.shape[0])
    await collector.stub.WriteSamples(
        pb.WriteSamplesRequest(batch=batch(system, series(metric, ts, values)))
    )
    start, end = int(ts[0]) + 123 * SECOND, int(ts[-1]) - 77 * SECOND
    bucket = 5 * 60 * SECOND
    request = pb.QueryDownsampledRequest(system=system, metric=metric)
    _range(request, start, end)
    request.bucket.FromNanoseconds(bucket)

    reply = await collector.stub.QueryDownsampled(request)

    micros = ts // 1000  # what PostgreSQL keeps
    inside = (micros >= start // 1000) & (micros < -(-end // 1000))
    kept_ts, kept_values = micros[inside] * 1000, values[inside]
    edges = kept_ts // bucket * bucket  # buckets aligned on the Unix epoch
    expected_starts, index, counts = np.unique(edges, return_inverse=True, return_counts=True)
    expected_avg = np.bincount(index, weights=kept_values) / counts
    expected_min = np.full(expected_starts.shape[0], np.inf)
    expected_max = np.full(expected_starts.shape[0], -np.inf)
    np.minimum.at(expected_min, index, kept_values)
    np.maximum.at(expected_max, index, kept_values)
    assert list(reply.bucket_start_unix_ns) == expected_starts.tolist()
    assert list(reply.count) == counts.tolist()
    np.testing.assert_allclose(reply.avg, expected_avg, rtol=1e-12)
    assert list(reply.min) == expected_min.tolist()
    assert list(reply.max) == expected_max.tolist()


async def test_pages_return_every_sample_once_even_when_timestamps_repeat(
    collector: Collector,
) -> None:
    system = await register(collector.stub)
    metric = unique_metric()
    base = recent_times(10, step_ns=SECOND)
    # Each instant four times: two equal samples, two different ones.
    ts = np.repeat(base, 4)
    values = np.tile([1.0, 1.0, 2.0, 0.5], base.shape[0])
    await collector.stub.WriteSamples(
        pb.WriteSamplesRequest(batch=batch(system, series(metric, ts, values)))
    )
    request = pb.QuerySamplesRequest(system=system, metric=metric, page_size=3)
    _range(request, int(base[0]), int(base[-1]) + 1)

    pages = 0
    found: list[tuple[int, float]] = []
    while True:
        reply = await collector.stub.QuerySamples(request)
        assert len(reply.series.values) <= 3
        found += zip(reply.series.ts_unix_ns, reply.series.values, strict=True)
        pages += 1
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token

    expected = sorted(zip((ts // 1000 * 1000).tolist(), values.tolist(), strict=True))
    assert found == expected
    assert pages == -(-len(expected) // 3)


async def test_a_query_names_what_is_wrong(collector: Collector) -> None:
    system = await register(collector.stub)
    metric = unique_metric()
    ts = recent_times(5)
    await collector.stub.WriteSamples(
        pb.WriteSamplesRequest(batch=batch(system, series(metric, ts, np.ones(5))))
    )

    def query(**fields: object) -> pb.QuerySamplesRequest:
        request = pb.QuerySamplesRequest(**{"system": system, "metric": metric, **fields})  # type: ignore[arg-type]
        _range(request, int(ts[0]), int(ts[-1]) + 1)
        return request

    unknown_metric = query(metric="no.such.metric")
    backwards = query()
    _range(backwards, int(ts[-1]), int(ts[0]))
    paged = await collector.stub.QuerySamples(query(page_size=2))
    other_query = query(page_size=2, page_token=paged.next_page_token)
    _range(other_query, int(ts[0]) - SECOND, int(ts[-1]) + 1)
    too_fine = pb.QueryDownsampledRequest(system=system, metric=metric)
    _range(too_fine, int(ts[0]), int(ts[-1]))
    too_fine.bucket.FromMilliseconds(10)

    cases = [
        (collector.stub.QuerySamples(unknown_metric), grpc.StatusCode.NOT_FOUND, "no.such.metric"),
        (collector.stub.QuerySamples(backwards), grpc.StatusCode.INVALID_ARGUMENT, "end_time"),
        (collector.stub.QuerySamples(other_query), grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
        (
            collector.stub.QuerySamples(query(system="systems/never-seen")),
            grpc.StatusCode.NOT_FOUND,
            "systems/never-seen",
        ),
        (collector.stub.QueryDownsampled(too_fine), grpc.StatusCode.INVALID_ARGUMENT, "bucket"),
        (
            collector.stub.ListMetrics(pb.ListMetricsRequest(parent=system, page_size=-1)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_size",
        ),
    ]
    for call, code, named in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == code
        assert named in (caught.value.details() or "")
