"""Agentless mode: the Prometheus text format, node_exporter's counters as host metrics,
scrape targets, and a real prometheus-node-exporter scraped by a real collector."""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import psutil
import pytest

from cfgclone import vocabulary
from cfgclone.collector.host_metrics import ScrapeConverter
from cfgclone.collector.prometheus_text import parse_exposition
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import common_pb2
from tests.collector.conftest import Collector, register, start_collector

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"

FIRST_SCRAPE = """\
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 100
node_cpu_seconds_total{cpu="0",mode="iowait"} 10
node_cpu_seconds_total{cpu="0",mode="user"} 50
node_cpu_seconds_total{cpu="1",mode="idle"} 100
node_cpu_seconds_total{cpu="1",mode="system"} 40
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 8e+09
node_memory_MemAvailable_bytes 6e+09
node_disk_read_bytes_total{device="sda"} 1000
node_disk_read_bytes_total{device="sdb"} 3000
node_disk_written_bytes_total{device="sda"} 0
node_network_receive_bytes_total{device="eth0"} 5000
node_network_receive_bytes_total{device="lo"} 999999
node_network_transmit_bytes_total{device="eth0"} 100
# TYPE http_requests_total counter
http_requests_total{path="/a \\"b\\"",code="200"} 10 1700000000000
app_queue_depth 7
app_queue_weird NaN
this line is not prometheus
"""

SECOND_SCRAPE = """\
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 130
node_cpu_seconds_total{cpu="0",mode="iowait"} 20
node_cpu_seconds_total{cpu="0",mode="user"} 90
node_cpu_seconds_total{cpu="1",mode="idle"} 180
node_cpu_seconds_total{cpu="1",mode="system"} 80
node_memory_MemTotal_bytes 8e+09
node_memory_MemAvailable_bytes 5e+09
node_disk_read_bytes_total{device="sda"} 2000
node_disk_read_bytes_total{device="sdb"} 5000
node_disk_written_bytes_total{device="sda"} 400
node_network_receive_bytes_total{device="eth0"} 5500
node_network_receive_bytes_total{device="lo"} 0
node_network_transmit_bytes_total{device="eth0"} 300
# TYPE http_requests_total counter
http_requests_total{path="/a \\"b\\"",code="200"} 30
app_queue_depth 9
"""


def test_the_text_format_is_parsed_with_labels_escapes_and_timestamps() -> None:
    exposition = parse_exposition(FIRST_SCRAPE)

    requests = [s for s in exposition.samples if s.name == "http_requests_total"]
    assert requests[0].labels == (("code", "200"), ("path", '/a "b"'))
    assert requests[0].value == 10
    assert requests[0].timestamp_ms == 1_700_000_000_000
    assert exposition.type_of("node_cpu_seconds_total") == "counter"
    assert exposition.is_cumulative("http_requests_total")
    assert not exposition.is_cumulative("app_queue_depth")
    assert math.isnan(next(s.value for s in exposition.samples if s.name == "app_queue_weird"))
    assert exposition.skipped_lines == 1
    assert requests[0].value == 10  # the line after a refused one is still read


def test_node_exporter_counters_become_the_agents_host_metrics_and_rates() -> None:
    converter = ScrapeConverter(prefixes=("http_", "app_"))
    first = converter.convert(parse_exposition(FIRST_SCRAPE), 1_000, 100.0)
    second = converter.convert(parse_exposition(SECOND_SCRAPE), 2_000, 110.0)

    # Gauges come at once; rates need a second scrape.
    assert {s.metric for s in first} == {
        "system.memory.usage",
        "system.memory.utilization",
        "app_queue_depth",
    }
    values = {s.metric: s.value for s in second}
    # CPU: 200 s passed over both cores, 120 of them idle or in iowait.
    assert values["system.cpu.utilization"] == pytest.approx(0.4)
    assert values["system.memory.usage"] == 3e9
    assert values["system.memory.utilization"] == pytest.approx(3 / 8)
    assert values['system.disk.io{direction="read"}'] == pytest.approx(300.0)
    assert values['system.disk.io{direction="write"}'] == pytest.approx(40.0)
    # Loopback is left out; it went backwards anyway.
    assert values['system.network.io{direction="receive"}'] == pytest.approx(50.0)
    assert values['system.network.io{direction="transmit"}'] == pytest.approx(20.0)
    # Labels are part of the series, as in Prometheus.
    assert values['http_requests_total{code="200",path="/a \\"b\\""}'] == pytest.approx(2.0)
    assert values["app_queue_depth"] == 9
    units = {s.metric: (s.unit, s.kind) for s in second}
    assert units['system.disk.io{direction="read"}'] == ("By/s", common_pb2.METRIC_KIND_COUNTER)
    assert units["system.cpu.utilization"] == ("1", common_pb2.METRIC_KIND_GAUGE)
    known = {s.metric for s in second if not s.metric.startswith(("http_", "app_"))}
    assert all(vocabulary.is_known(name) for name in known)


def test_an_applications_http_histogram_becomes_offered_load_duration_and_errors() -> None:
    def scrape(ok: float, failed: float, seconds: float) -> str:
        family = "http_server_request_duration_seconds"
        return (
            f"# TYPE {family} histogram\n"
            f'{family}_bucket{{http_response_status_code="200",le="+Inf"}} {ok}\n'
            f'{family}_count{{http_response_status_code="200"}} {ok}\n'
            f'{family}_sum{{http_response_status_code="200"}} {seconds}\n'
            f'{family}_bucket{{http_response_status_code="503",le="+Inf"}} {failed}\n'
            f'{family}_count{{http_response_status_code="503"}} {failed}\n'
            f'{family}_sum{{http_response_status_code="503"}} 0\n'
        )

    converter = ScrapeConverter()
    assert converter.convert(parse_exposition(scrape(100, 0, 5.0)), 1_000, 100.0) == []
    second = converter.convert(parse_exposition(scrape(280, 20, 11.0)), 2_000, 110.0)

    values = {s.metric: s.value for s in second}
    assert values["http.server.request.rate"] == pytest.approx(20.0)  # 200 requests in 10 s
    assert values["http.server.request.duration"] == pytest.approx(6.0 / 200)
    assert values["http.server.request.error.ratio"] == pytest.approx(0.1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def node_exporter() -> Iterator[str]:
    """Debian's prometheus-node-exporter on a loopback port; yields its metrics URL."""
    if shutil.which(NODE_EXPORTER) is None:
        pytest.fail(f"{NODE_EXPORTER} is missing: apt-get install prometheus-node-exporter")
    port = _free_port()
    process = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def scraping_collector(store: Store) -> AsyncIterator[Collector]:
    """A collector with its scraper on, noticing new targets within a fraction of a second."""
    async with start_collector(
        store,
        options={"SCRAPE": "1", "SCRAPE_REFRESH_SECONDS": "0.2", "SCRAPE_ALLOW_LOOPBACK": "1"},
    ) as collector:
        yield collector


async def _metrics(collector: Collector, system: str) -> set[str]:
    reply = await collector.stub.ListMetrics(pb.ListMetricsRequest(parent=system))
    return {m.name.removeprefix("metrics/") for m in reply.metrics}


async def _latest(collector: Collector, system: str, metric: str) -> float:
    request = pb.QuerySamplesRequest(system=system, metric=metric)
    request.start_time.FromSeconds(int(time.time()) - 600)
    request.end_time.FromSeconds(int(time.time()) + 60)
    reply = await collector.stub.QuerySamples(request)
    return reply.series.values[-1]


HOST_METRICS = {
    "system.cpu.utilization",
    "system.memory.usage",
    'system.disk.io{direction="read"}',
    'system.disk.io{direction="write"}',
}


async def test_the_collector_scrapes_node_exporter_without_an_agent(
    scraping_collector: Collector,
) -> None:
    collector = scraping_collector
    system = await register(collector.stub)
    with node_exporter() as url:
        target = pb.ScrapeTarget(url=url)
        target.interval.FromSeconds(1)
        created = await collector.stub.CreateScrapeTarget(
            pb.CreateScrapeTargetRequest(parent=system, scrape_target=target)
        )
        try:
            deadline = time.monotonic() + 15
            while not await _metrics(collector, system) >= HOST_METRICS:
                assert time.monotonic() < deadline, await _metrics(collector, system)
                await asyncio.sleep(0.25)
            listed = await collector.stub.ListScrapeTargets(
                pb.ListScrapeTargetsRequest(parent=system)
            )
        finally:
            await collector.stub.DeleteScrapeTarget(
                pb.DeleteScrapeTargetRequest(name=created.scrape_target.name)
            )

    assert 0.0 <= await _latest(collector, system, "system.cpu.utilization") <= 1.0
    used = await _latest(collector, system, "system.memory.usage")
    memory = psutil.virtual_memory()
    assert 0 < used < memory.total
    assert used == pytest.approx(memory.total - memory.available, rel=0.5)
    for rate in HOST_METRICS - {"system.cpu.utilization", "system.memory.usage"}:
        assert await _latest(collector, system, rate) >= 0.0
    [seen] = listed.scrape_targets
    assert seen.last_error == ""
    assert seen.HasField("last_scrape_time")


async def test_a_failing_scrape_target_reports_its_error(scraping_collector: Collector) -> None:
    collector = scraping_collector
    system = await register(collector.stub)
    target = pb.ScrapeTarget(url=f"http://127.0.0.1:{_free_port()}/metrics")
    target.interval.FromSeconds(1)
    created = await collector.stub.CreateScrapeTarget(
        pb.CreateScrapeTargetRequest(parent=system, scrape_target=target)
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            listed = await collector.stub.ListScrapeTargets(
                pb.ListScrapeTargetsRequest(parent=system)
            )
            if listed.scrape_targets[0].last_error:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    finally:
        await collector.stub.DeleteScrapeTarget(
            pb.DeleteScrapeTargetRequest(name=created.scrape_target.name)
        )

    assert "refused" in listed.scrape_targets[0].last_error.lower()
    assert await _metrics(collector, system) == set()


async def test_scrape_targets_are_created_listed_and_deleted_once(collector: Collector) -> None:
    system = await register(collector.stub)
    url = "http://db-01.internal:9100/metrics"
    target = pb.ScrapeTarget(url=url, metric_prefixes=["node_load"])

    created = await collector.stub.CreateScrapeTarget(
        pb.CreateScrapeTargetRequest(parent=system, scrape_target=target)
    )
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await collector.stub.CreateScrapeTarget(
            pb.CreateScrapeTargetRequest(parent=system, scrape_target=target)
        )
    with pytest.raises(grpc.aio.AioRpcError) as not_http:
        await collector.stub.CreateScrapeTarget(
            pb.CreateScrapeTargetRequest(
                parent=system, scrape_target=pb.ScrapeTarget(url="file:///etc/passwd")
            )
        )
    everywhere = await collector.stub.ListScrapeTargets(
        pb.ListScrapeTargetsRequest(parent="systems/-", page_size=1000)
    )
    await collector.stub.DeleteScrapeTarget(
        pb.DeleteScrapeTargetRequest(name=created.scrape_target.name)
    )
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await collector.stub.DeleteScrapeTarget(
            pb.DeleteScrapeTargetRequest(name=created.scrape_target.name)
        )
    remaining = await collector.stub.ListScrapeTargets(pb.ListScrapeTargetsRequest(parent=system))

    assert created.scrape_target.name.startswith(f"{system}/scrapeTargets/")
    assert created.scrape_target.interval.ToSeconds() == 15
    assert list(created.scrape_target.metric_prefixes) == ["node_load"]
    assert twice.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert not_http.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert created.scrape_target.name in {t.name for t in everywhere.scrape_targets}
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert list(remaining.scrape_targets) == []
