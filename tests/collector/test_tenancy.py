"""What one system's writer does cannot silence, steer or redefine another system.

Each test closes one hole: batch ids scoped by system and scrape batch ids nobody
can guess; labels that steer the appliers set only by operators; a metric's unit
and kind per system, with a bound on the metrics one system may define; scrape
targets that never reach metadata, link-local or (unless allowed) loopback
addresses, when created and when scraped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from cfgclone.collector.ingest import Ingestor
from cfgclone.collector.scraper import Scraper
from cfgclone.common.auth import Credentials
from cfgclone.common.clients import open_channel
from cfgclone.common.settings import PeerSettings
from cfgclone.common.store import Store
from cfgclone.predictor.appliers_registry import Appliers
from cfgclone.predictor.repository import SystemRow
from cfgclone.predictor.settings import PredictorSettings
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc
from cfgclone.v1 import common_pb2
from tests.collector.conftest import (
    Collector,
    batch,
    metric_known,
    recent_times,
    series,
    start_collector,
    stored,
    unique_metric,
)


@dataclass
class Tenants:
    """A collector with authentication on: two agents and an operator, each with a stub."""

    collector: Collector
    a: pb_grpc.CollectorServiceStub
    b: pb_grpc.CollectorServiceStub
    operator: pb_grpc.CollectorServiceStub
    system_a: str
    system_b: str


@asynccontextmanager
async def tenants(store: Store, **options: str) -> AsyncIterator[Tenants]:
    suffix = uuid.uuid4().hex[:8]
    credentials = Credentials.parse(
        f"""
        a-{suffix}   ten-a-{suffix}  agent
        b-{suffix}   ten-b-{suffix}  agent
        op-{suffix}  alice           operator
        """
    )
    async with start_collector(store, credentials=credentials, options=options) as collector:
        channels = [
            open_channel(collector.address, PeerSettings(token=f"{who}-{suffix}"))
            for who in ("a", "b", "op")
        ]
        try:
            a, b, operator = (pb_grpc.CollectorServiceStub(c) for c in channels)
            yield Tenants(
                collector, a, b, operator, f"systems/ten-a-{suffix}", f"systems/ten-b-{suffix}"
            )
        finally:
            for channel in channels:
                await channel.close()


async def _register(stub: pb_grpc.CollectorServiceStub, name: str, **fields: object) -> None:
    await stub.RegisterSystem(
        pb.RegisterSystemRequest(system=common_pb2.System(name=name, **fields))  # type: ignore[arg-type]
    )


async def test_a_batch_id_used_by_one_system_does_not_drop_another_systems_batch(
    store: Store,
) -> None:
    async with tenants(store) as t:
        await _register(t.a, t.system_a)
        await _register(t.b, t.system_b)
        metric = unique_metric()
        times = recent_times(3)
        shared_id = f"batch-{uuid.uuid4().hex}"
        first = await t.a.WriteSamples(
            pb.WriteSamplesRequest(
                batch=batch(t.system_a, series(metric, times, [1, 2, 3]), batch_id=shared_id)
            )
        )
        other = await t.b.WriteSamples(
            pb.WriteSamplesRequest(
                batch=batch(t.system_b, series(metric, times, [7, 8, 9]), batch_id=shared_id)
            )
        )
        resent = await t.a.WriteSamples(
            pb.WriteSamplesRequest(
                batch=batch(t.system_a, series(metric, times, [1, 2, 3]), batch_id=shared_id)
            )
        )

    assert (first.stored_samples, first.duplicate) == (3, False)
    assert (other.stored_samples, other.duplicate) == (3, False)
    assert (resent.stored_samples, resent.duplicate) == (0, True)
    assert [v for _, v in await stored(store, t.system_b, metric)] == [7.0, 8.0, 9.0]
    assert [v for _, v in await stored(store, t.system_a, metric)] == [1.0, 2.0, 3.0]


async def test_scrape_batch_ids_are_shared_by_replicas_and_not_guessable(store: Store) -> None:
    ingestor = Ingestor(store)
    replica_1, replica_2 = Scraper(store, ingestor), Scraper(store, ingestor)
    await replica_1._refresh()
    await replica_2._refresh()

    ids = {replica_1.batch_id(target, slot) for target in range(1, 20) for slot in range(50)}
    assert replica_1.batch_id(7, 123) == replica_2.batch_id(7, 123)
    assert len(ids) == 19 * 50
    # Nothing of the target or the slot shows: the id is a keyed hash of both.
    assert replica_1.batch_id(7, 123) != "scrape-7-123"
    assert all(len(i) == len("scrape-") + 32 and "-7-" not in i for i in ids)


async def test_only_operators_set_the_labels_and_host_that_steer_appliers(store: Store) -> None:
    dsn_label = PredictorSettings().postgres_dsn_label
    async with tenants(store) as t:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _register(
                t.a, t.system_a, hostname="all", labels={dsn_label: "host=evil dbname=x"}
            )
        not_registered = await store_has(store, t.system_a)
        await _register(t.operator, t.system_a, labels={dsn_label: "host=db-01 dbname=app"})
        # The agent registers again with its own metadata: the operator's label stays.
        await _register(t.a, t.system_a, hostname="all", labels={"team": "payments"})
        seen = (await t.operator.GetSystem(pb.GetSystemRequest(name=t.system_a))).system

    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert dsn_label in (refused.value.details() or "")
    assert not not_registered
    assert dict(seen.labels) == {dsn_label: "host=db-01 dbname=app", "team": "payments"}
    assert seen.hostname == "all"  # shown as reported, but no applier reads it:
    row = SystemRow(1, t.system_a.removeprefix("systems/"), seen.hostname, seen.labels, None)
    target = Appliers(PredictorSettings()).target(row, "postgresql")
    assert target.system.host == row.system_id
    assert target.system.endpoint == "host=db-01 dbname=app"
    steered = SystemRow(1, row.system_id, "all", {"cfgclone.dev/host": "db-01.internal"}, None)
    assert Appliers(PredictorSettings()).target(steered, "simulated").system.host == (
        "db-01.internal"
    )


async def store_has(store: Store, system: str) -> bool:
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT 1 FROM systems WHERE system_id = %s", (system.removeprefix("systems/"),)
        )
        return await cursor.fetchone() is not None


async def test_a_metrics_unit_and_kind_belong_to_each_system(store: Store) -> None:
    metric = unique_metric()
    async with tenants(store) as t:
        await _register(t.a, t.system_a)
        await _register(t.b, t.system_b)
        times = recent_times(2)
        in_ms = series(metric, times, [1, 2], unit="ms")
        await t.a.WriteSamples(pb.WriteSamplesRequest(batch=batch(t.system_a, in_ms)))
        await t.b.WriteSamples(
            pb.WriteSamplesRequest(
                batch=batch(
                    t.system_b,
                    series(metric, times, [3, 4], unit="s", kind=common_pb2.METRIC_KIND_COUNTER),
                )
            )
        )
        listed = {
            system: (await t.operator.ListMetrics(pb.ListMetricsRequest(parent=system))).metrics
            for system in (t.system_a, t.system_b)
        }
        query = pb.QuerySamplesRequest(system=t.system_a, metric=metric)
        query.start_time.FromSeconds(int(time.time()) - 3600)
        query.end_time.FromSeconds(int(time.time()) + 60)
        queried = (await t.operator.QuerySamples(query)).series

    [of_a] = listed[t.system_a]
    [of_b] = listed[t.system_b]
    assert (of_a.unit, of_a.kind) == ("ms", common_pb2.METRIC_KIND_GAUGE)
    assert (of_b.unit, of_b.kind) == ("s", common_pb2.METRIC_KIND_COUNTER)
    assert (queried.unit, queried.kind) == ("ms", common_pb2.METRIC_KIND_GAUGE)


async def test_a_system_may_define_only_so_many_metrics(store: Store) -> None:
    async with tenants(store, MAX_METRICS_PER_SYSTEM="3") as t:
        await _register(t.a, t.system_a)
        times = recent_times(1)
        names = [unique_metric() for _ in range(5)]
        kept = await t.a.WriteSamples(
            pb.WriteSamplesRequest(
                batch=batch(t.system_a, *(series(n, times, [1.0]) for n in names[:2]))
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await t.a.WriteSamples(
                pb.WriteSamplesRequest(
                    batch=batch(t.system_a, *(series(n, times, [2.0]) for n in names[1:4]))
                )
            )
        # Old names cost nothing; one new name still fits.
        again = await t.a.WriteSamples(
            pb.WriteSamplesRequest(
                batch=batch(t.system_a, *(series(n, times, [3.0]) for n in names[:3]))
            )
        )

    assert kept.stored_samples == 2
    assert again.stored_samples == 3
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "at most 3" in (refused.value.details() or "")
    assert not await metric_known(store, names[3])
    assert not await metric_known(store, names[4])
    assert len(await stored(store, t.system_a)) == 5


FORBIDDEN = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://169.254.10.1:9100/metrics",
    "http://[fe80::1]:9100/metrics",
    "http://100.100.100.200/latest/meta-data/",
]


@pytest.mark.parametrize("url", FORBIDDEN)
async def test_scrape_targets_refuse_metadata_and_link_local_addresses(
    store: Store, url: str
) -> None:
    async with tenants(store, SCRAPE_ALLOW_LOOPBACK="1") as t:
        await _register(t.operator, t.system_a)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await t.operator.CreateScrapeTarget(
                pb.CreateScrapeTargetRequest(
                    parent=t.system_a, scrape_target=pb.ScrapeTarget(url=url)
                )
            )
        listed = await t.operator.ListScrapeTargets(pb.ListScrapeTargetsRequest(parent=t.system_a))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "scrape_target.url" in (refused.value.details() or "")
    assert list(listed.scrape_targets) == []


@pytest.mark.parametrize("allowed", [False, True])
async def test_loopback_scrape_targets_need_the_setting(store: Store, allowed: bool) -> None:
    options = {"SCRAPE_ALLOW_LOOPBACK": "1"} if allowed else {}
    urls = ["http://127.0.0.1:9100/metrics", "http://localhost:9101/metrics", "http://[::1]:9102/"]
    async with tenants(store, **options) as t:
        await _register(t.operator, t.system_a)
        outcomes = []
        for url in urls:
            try:
                await t.operator.CreateScrapeTarget(
                    pb.CreateScrapeTargetRequest(
                        parent=t.system_a, scrape_target=pb.ScrapeTarget(url=url)
                    )
                )
                outcomes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                outcomes.append(error.code())
    expected = grpc.StatusCode.OK if allowed else grpc.StatusCode.INVALID_ARGUMENT
    assert outcomes == [expected] * len(urls)


class _Redirector(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/iam/")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def redirector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


async def _last_errors(store: Store, system: str) -> list[str]:
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT t.url, t.last_error FROM scrape_targets t JOIN systems s ON s.id = t.system_id "
            "WHERE s.system_id = %s ORDER BY t.url",
            (system.removeprefix("systems/"),),
        )
        return [error for _, error in await cursor.fetchall()]


async def test_the_scraper_checks_the_address_again_at_every_scrape(store: Store) -> None:
    async with tenants(
        store, SCRAPE="1", SCRAPE_REFRESH_SECONDS="0.2", SCRAPE_ALLOW_LOOPBACK="1"
    ) as t:
        await _register(t.operator, t.system_a)
        with redirector() as url:
            target = pb.ScrapeTarget(url=url)
            target.interval.FromSeconds(1)
            await t.operator.CreateScrapeTarget(
                pb.CreateScrapeTargetRequest(parent=t.system_a, scrape_target=target)
            )
            # A target whose name resolved elsewhere when it was created: stored as is.
            async with store.connection() as conn:
                await conn.execute(
                    "INSERT INTO scrape_targets (system_id, url, interval_seconds) "
                    "SELECT id, 'http://169.254.169.254/latest/meta-data/', 1 FROM systems "
                    "WHERE system_id = %s",
                    (t.system_a.removeprefix("systems/"),),
                )
            deadline = time.monotonic() + 15
            while not all(await _last_errors(store, t.system_a)):
                assert time.monotonic() < deadline, await _last_errors(store, t.system_a)
                await asyncio.sleep(0.2)
        errors = await _last_errors(store, t.system_a)

    assert len(errors) == 2
    assert all("metadata" in error for error in errors), errors
    assert await stored(store, t.system_a) == []
