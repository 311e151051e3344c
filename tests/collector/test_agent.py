"""The agent against real collectors: delivery across a collector restart and an agent
restart, the bounded spool, its sources and its configuration file."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from cfgclone.collector import agent_config, agent_main
from cfgclone.collector.agent_client import Backoff, CollectorClient
from cfgclone.collector.agent_config import (
    ConfigError,
    ExecConfig,
    HttpProbeConfig,
    TcpProbeConfig,
    parse_agent_config,
)
from cfgclone.collector.agent_runner import Agent
from cfgclone.collector.agent_sources import ExecPlugin, HostSampler, HttpProbe, TcpProbe
from cfgclone.collector.agent_spool import Spool
from cfgclone.collector.batching import GAUGE, BatchBuilder, Sample
from cfgclone.common.store import Store
from cfgclone.v1 import common_pb2
from tests.collector.conftest import Collector, start_collector, stored, unique_system


class CountingSource:
    """A source that remembers every sample it handed to the agent."""

    name = "counter"

    def __init__(self, interval_seconds: float, start: int = 0) -> None:
        self.interval_seconds = interval_seconds
        self.taken: list[tuple[int, float]] = []
        self._next = start

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        value = float(self._next)
        self._next += 1
        self.taken.append((ts_unix_ns // 1000, value))
        return [Sample("test.counter", value, ts_unix_ns, "count", GAUGE)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _agent(system: str, address: str, spool: Spool, source: CountingSource) -> Agent:
    return Agent(
        system,
        [source],
        spool,
        CollectorClient(address, call_timeout=2.0),
        describe=lambda: common_pb2.System(name=system),
        batch_max_samples=7,
        batch_max_seconds=0.3,
        backoff=Backoff(initial=0.05, maximum=0.3),
        drain_seconds=2.0,
    )


async def _until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_every_sample_arrives_exactly_once_across_a_collector_restart(
    store: Store, tmp_path: Path
) -> None:
    system = unique_system()
    port = _free_port()
    source = CountingSource(interval_seconds=0.05)
    spool = Spool(tmp_path / "spool.sqlite3", max_bytes=10 * 2**20)
    agent = _agent(system, f"127.0.0.1:{port}", spool, source)
    stop = asyncio.Event()
    try:
        async with start_collector(store, port=port):
            running = asyncio.create_task(agent.run(stop))
            await _until(lambda: agent.shipper.delivered_batches >= 3, 10, "first batches")
        # The collector is gone; the agent keeps sampling into its spool.
        taken_while_down = len(source.taken)
        await _until(lambda: spool.pending_batches >= 5, 10, "spooling while down")
        assert len(source.taken) > taken_while_down
        async with start_collector(store, port=port):
            await _until(lambda: len(source.taken) > taken_while_down + 80, 10, "sampling")
            stop.set()
            await running
        assert spool.pending_batches == 0
    finally:
        stop.set()
        await agent.client.close()
        spool.close()

    assert await stored(store, system, "test.counter") == sorted(source.taken)


async def test_the_spool_survives_an_agent_restart_and_delivers_in_order(
    collector: Collector, tmp_path: Path
) -> None:
    system = unique_system()
    path = tmp_path / "spool.sqlite3"
    nowhere = f"127.0.0.1:{_free_port()}"
    before = CountingSource(interval_seconds=0.05)
    spool = Spool(path, max_bytes=10 * 2**20)
    first = _agent(system, nowhere, spool, before)
    first.drain_seconds = 0.2
    stop = asyncio.Event()
    running = asyncio.create_task(first.run(stop))
    await _until(lambda: len(before.taken) >= 30, 10, "sampling without a collector")
    stop.set()
    await running
    await first.client.close()
    spool.close()

    reopened = Spool(path, max_bytes=10 * 2**20)
    spooled = reopened.peek(1000, 2**30)
    after = CountingSource(interval_seconds=0.05, start=len(before.taken))
    second = _agent(system, collector.address, reopened, after)
    stop = asyncio.Event()
    running = asyncio.create_task(second.run(stop))
    try:
        await _until(lambda: len(after.taken) >= 10, 10, "sampling after the restart")
        await _until(lambda: reopened.pending_batches == 0, 10, "delivery")
    finally:
        stop.set()
        await running
        await second.client.close()
        reopened.close()

    assert reopened.pending_samples == 0
    assert sum(len(s.values) for item in spooled for s in item.batch.series) == len(before.taken)
    # In order: the spool hands out batches oldest first.
    firsts = [item.batch.series[0].values[0] for item in spooled]
    assert firsts == sorted(firsts)
    assert await stored(collector.store, system, "test.counter") == sorted(
        before.taken + after.taken
    )


def _one_sample_batch(builder: BatchBuilder, value: float) -> common_pb2.SampleBatch:
    builder.add(Sample("test.filler", value, time.time_ns()))
    batch = builder.flush()
    assert batch is not None
    return batch


def test_a_full_spool_drops_its_oldest_batches_first(tmp_path: Path) -> None:
    builder = BatchBuilder("systems/full-01")
    size = len(_one_sample_batch(builder, 0).SerializeToString())
    spool = Spool(tmp_path / "spool.sqlite3", max_bytes=size * 5)
    try:
        for value in range(8):
            spool.append(_one_sample_batch(builder, float(value)))
        kept = [item.batch.series[0].values[0] for item in spool.peek(100, 2**20)]
        dropped = spool.dropped_batches
    finally:
        spool.close()

    assert kept == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert dropped == 3


async def test_the_host_sampler_reports_the_host_metrics() -> None:
    sampler = HostSampler(interval_seconds=1.0)
    await sampler.collect(time.time_ns())
    await asyncio.sleep(0.2)

    samples = {s.metric: s for s in await sampler.collect(time.time_ns())}

    assert set(samples) >= {
        "cpu.utilization",
        "memory.used",
        "disk.read_bytes_per_second",
        "disk.write_bytes_per_second",
        "processes.count",
    }
    assert 0.0 <= samples["cpu.utilization"].value <= 100.0
    assert samples["memory.used"].value == pytest.approx(psutil.virtual_memory().used, rel=0.5)
    assert samples["processes.count"].value == pytest.approx(len(psutil.pids()), rel=0.5)
    assert samples["disk.read_bytes_per_second"].kind == common_pb2.METRIC_KIND_COUNTER


async def test_probes_measure_what_answers_and_report_what_does_not(
    collector: Collector, tmp_path: Path
) -> None:
    port = int(collector.address.rsplit(":", 1)[1])
    closed = _free_port()
    tcp_up = TcpProbe(TcpProbeConfig("collector", "127.0.0.1", port, 1.0, 2.0))
    tcp_down = TcpProbe(TcpProbeConfig("nothing", "127.0.0.1", closed, 1.0, 2.0))
    http_down = HttpProbe(HttpProbeConfig("nothing", f"http://127.0.0.1:{closed}/", 1.0, 2.0))
    script = tmp_path / "plugin.py"
    script.write_text("print('queue.depth 12')\nprint('not a sample')\nprint('jobs.running 3.5')\n")
    plugin = ExecPlugin(ExecConfig("queue", (sys.executable, str(script)), 10.0, 5.0))
    now = time.time_ns()

    up = {s.metric: s.value for s in await tcp_up.collect(now)}
    down = {s.metric: s.value for s in await tcp_down.collect(now)}
    http = {s.metric: s.value for s in await http_down.collect(now)}
    custom = {s.metric: s.value for s in await plugin.collect(now)}

    assert up["tcp.collector.up"] == 1.0
    assert 0.0 < up["tcp.collector.connect_seconds"] < 2.0
    assert down == {"tcp.nothing.up": 0.0}
    assert http == {"http.nothing.status": 0.0}
    assert custom == {"queue.depth": 12.0, "jobs.running": 3.5}


def _documented_example() -> str:
    doc = agent_config.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\nProbe and plugin names", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


def test_the_documented_configuration_example_is_valid(tmp_path: Path) -> None:
    text = _documented_example().replace("/etc/cfgclone/", f"{tmp_path}/")
    for name in ("ca.pem", "agent.pem", "agent-key.pem"):
        (tmp_path / name).write_text("pem")

    config = parse_agent_config(text)

    assert config.collector == "collector.example.com:50051"
    assert config.system_name == "systems/db-01"
    assert config.tls is not None
    assert config.labels == {"role": "db"}
    assert [(p.name, p.host, p.port) for p in config.tcp] == [("primary_db", "10.0.0.5", 5432)]
    assert config.http[0].url == "https://127.0.0.1:8443/health"
    assert config.prometheus[0].prefixes == ("node_load",)
    assert config.exec[0].command == ("/usr/local/bin/queue-depth", "--all")
    assert config.spool_max_bytes == 256 * 2**20


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('system = "db-01"', "collector is required"),
        ('collector = "c:1"\nsystem = "DB_01"', "system must be"),
        ('collector = "c"\nsystem = "db-01"', "collector must be host:port"),
        ('collector = "c:1"\nsystem = "db-01"\ninterval_seconds = "fast"', "interval_seconds"),
        (
            'collector = "c:1"\nsystem = "db-01"\n[[tcp]]\nname = "a-b"\naddress = "h:1"',
            "tcp[0].name",
        ),
        (
            'collector = "c:1"\nsystem = "db-01"\n[[exec]]\nname = "x"\ncommand = []',
            "exec[0].command",
        ),
    ],
)
def test_a_bad_configuration_names_the_key(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(text)
    assert named in str(caught.value)


def test_the_agent_command_refuses_a_bad_file_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('collector = "c:1"\nsystem = "Bad Name"\n')

    code = agent_main.main(["--config", str(config)])

    assert code == 2
    assert f"{config}: system must be" in capsys.readouterr().err


async def test_the_agent_serves_the_depth_of_its_spool_on_metrics(tmp_path: Path) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from cfgclone.collector.agent_metrics import spool_registry
    from cfgclone.common.metrics import MetricsHttpServer

    spool = Spool(tmp_path / "spool.sqlite3", max_bytes=10 * 2**20)
    http = MetricsHttpServer(spool_registry(spool), [], asyncio.get_running_loop())
    port = http.start("127.0.0.1", 0)

    def depth() -> dict[str, float]:
        url = f"http://127.0.0.1:{port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        return {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("cfgclone_agent_spool_")
        }

    try:
        empty = await asyncio.to_thread(depth)
        builder = BatchBuilder("systems/spooled-01")
        for value in range(3):
            spool.append(_one_sample_batch(builder, float(value)))
        held = await asyncio.to_thread(depth)
    finally:
        await asyncio.to_thread(http.stop)
        spool.close()
    assert empty["cfgclone_agent_spool_batches"] == 0
    assert held["cfgclone_agent_spool_batches"] == 3
    assert held["cfgclone_agent_spool_samples"] == 3
    assert held["cfgclone_agent_spool_bytes"] == spool.pending_bytes > 0
    assert held["cfgclone_agent_spool_dropped_batches"] == 0
