"""CollectorService: translation between protobuf and the collector's domain functions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import timestamp_pb2

from cfgclone.collector import scrape_targets, systems, timeseries
from cfgclone.collector.ingest import Ingestor
from cfgclone.collector.scrape_addresses import AddressPolicy
from cfgclone.common.auth import Role, require_own_system, require_role
from cfgclone.common.errors import InvalidArgument
from cfgclone.common.requests import (
    page_request,
    parse_label_selector,
    require,
    system_id_from_name,
)
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc
from cfgclone.v1 import common_pb2


def _authorize_batch(batch: common_pb2.SampleBatch) -> None:
    """An agent writes only its own system's samples."""
    require_own_system(system_id_from_name(batch.system, "batch.system"), "write samples")


def _time_range(
    start: timestamp_pb2.Timestamp, end: timestamp_pb2.Timestamp, has_start: bool, has_end: bool
) -> timeseries.TimeRange:
    if not has_start:
        raise InvalidArgument.for_field("start_time", "is required")
    if not has_end:
        raise InvalidArgument.for_field("end_time", "is required")
    return timeseries.TimeRange.from_unix_ns(start.ToNanoseconds(), end.ToNanoseconds())


def _metric_message(metric: timeseries.MetricInfo) -> common_pb2.Metric:
    message = common_pb2.Metric(
        name=f"metrics/{metric.name}",
        unit=metric.unit,
        kind=metric.kind,  # type: ignore[arg-type]
    )
    if metric.last_sample is not None:
        message.last_sample_time.FromDatetime(metric.last_sample)
    return message


class CollectorServicer(pb_grpc.CollectorServiceServicer):
    """Systems, samples, time-series queries and scrape targets."""

    def __init__(
        self,
        store: Store,
        ingestor: Ingestor | None = None,
        *,
        addresses: AddressPolicy | None = None,
    ) -> None:
        self._store = store
        self._ingestor = ingestor or Ingestor(store)
        self._addresses = addresses or AddressPolicy()

    async def RegisterSystem(
        self, request: pb.RegisterSystemRequest, context: Any
    ) -> pb.RegisterSystemResponse:
        require(request.system.name, "system.name")
        identity = require_own_system(
            system_id_from_name(request.system.name, "system.name"), "register"
        )
        system = await systems.register_system(
            self._store, request.system, by_operator=identity.may(Role.OPERATOR)
        )
        return pb.RegisterSystemResponse(system=system)

    async def UpdateSystem(
        self, request: pb.UpdateSystemRequest, context: Any
    ) -> pb.UpdateSystemResponse:
        require(request.system.name, "system.name")
        identity = require_own_system(
            system_id_from_name(request.system.name, "system.name"), "update"
        )
        system = await systems.update_system(
            self._store,
            request.system,
            request.update_mask,
            by_operator=identity.may(Role.OPERATOR),
        )
        return pb.UpdateSystemResponse(system=system)

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

    async def WriteSamples(
        self, request: pb.WriteSamplesRequest, context: Any
    ) -> pb.WriteSamplesResponse:
        require(request.batch.system, "batch.system")
        _authorize_batch(request.batch)
        result = await self._ingestor.write(request.batch)
        return pb.WriteSamplesResponse(
            stored_samples=result.stored_samples, duplicate=result.duplicate
        )

    async def StreamSamples(
        self, request_iterator: AsyncIterator[pb.StreamSamplesRequest], context: Any
    ) -> pb.StreamSamplesResponse:
        async def batches() -> AsyncIterator[common_pb2.SampleBatch]:
            async for request in request_iterator:
                yield request.batch

        totals = await self._ingestor.write_stream(batches(), _authorize_batch)
        return pb.StreamSamplesResponse(
            batches=totals.batches,
            stored_samples=totals.stored_samples,
            duplicate_batches=totals.duplicate_batches,
        )

    async def QuerySamples(
        self, request: pb.QuerySamplesRequest, context: Any
    ) -> pb.QuerySamplesResponse:
        require_role(Role.READER, "QuerySamples")
        require(request.system, "system")
        require(request.metric, "metric")
        span = _time_range(
            request.start_time,
            request.end_time,
            request.HasField("start_time"),
            request.HasField("end_time"),
        )
        page = await timeseries.query_samples(
            self._store, request.system, request.metric, span, request.page_size,
            request.page_token,
        )  # fmt: skip
        series = common_pb2.SampleSeries(
            metric=page.metric.name,
            unit=page.metric.unit,
            kind=page.metric.kind,  # type: ignore[arg-type]
        )
        series.ts_unix_ns.extend(page.ts_unix_ns.tolist())
        series.values.extend(page.values.tolist())
        return pb.QuerySamplesResponse(series=series, next_page_token=page.next_page_token)

    async def QueryDownsampled(
        self, request: pb.QueryDownsampledRequest, context: Any
    ) -> pb.QueryDownsampledResponse:
        require_role(Role.READER, "QueryDownsampled")
        require(request.system, "system")
        require(request.metric, "metric")
        if not request.HasField("bucket"):
            raise InvalidArgument.for_field("bucket", "is required")
        span = _time_range(
            request.start_time,
            request.end_time,
            request.HasField("start_time"),
            request.HasField("end_time"),
        )
        found = await timeseries.query_downsampled(
            self._store, request.system, request.metric, span, request.bucket.ToTimedelta()
        )
        response = pb.QueryDownsampledResponse()
        response.bucket_start_unix_ns.extend(found.bucket_start_unix_ns.tolist())
        response.avg.extend(found.avg.tolist())
        response.min.extend(found.min.tolist())
        response.max.extend(found.max.tolist())
        response.count.extend(found.count.tolist())
        return response

    async def ListMetrics(
        self, request: pb.ListMetricsRequest, context: Any
    ) -> pb.ListMetricsResponse:
        require_role(Role.READER, "ListMetrics")
        require(request.parent, "parent")
        page = page_request(request.page_size, request.page_token, query=request.parent)
        found, token = await timeseries.list_metrics(self._store, request.parent, page)
        return pb.ListMetricsResponse(
            metrics=[_metric_message(m) for m in found], next_page_token=token
        )

    async def CreateScrapeTarget(
        self, request: pb.CreateScrapeTargetRequest, context: Any
    ) -> pb.CreateScrapeTargetResponse:
        require_role(Role.OPERATOR, "CreateScrapeTarget")
        require(request.parent, "parent")
        require(request.scrape_target.url, "scrape_target.url")
        target = await scrape_targets.create_scrape_target(
            self._store, request.parent, request.scrape_target, self._addresses
        )
        return pb.CreateScrapeTargetResponse(scrape_target=target)

    async def ListScrapeTargets(
        self, request: pb.ListScrapeTargetsRequest, context: Any
    ) -> pb.ListScrapeTargetsResponse:
        require_role(Role.READER, "ListScrapeTargets")
        require(request.parent, "parent")
        page = page_request(request.page_size, request.page_token, query=request.parent)
        found, token = await scrape_targets.list_scrape_targets(self._store, request.parent, page)
        return pb.ListScrapeTargetsResponse(scrape_targets=found, next_page_token=token)

    async def DeleteScrapeTarget(
        self, request: pb.DeleteScrapeTargetRequest, context: Any
    ) -> pb.DeleteScrapeTargetResponse:
        require_role(Role.OPERATOR, "DeleteScrapeTarget")
        require(request.name, "name")
        await scrape_targets.delete_scrape_target(self._store, request.name)
        return pb.DeleteScrapeTargetResponse()
