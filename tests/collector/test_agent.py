"""The agent against real collectors: delivery across a collector restart and an agent
restart, the bounded spool, its sources and its configuration file."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from cfgclone import vocabulary
from cfgclone.collector import agent_main
from cfgclone.collector.agent_config import (
    ConfigError,
    ExecConfig,
    HttpProbeConfig,
    TcpProbeConfig,
    parse_agent_config,
)
from cfgclone.collector.agent_runner import Agent
from cfgclone.collector.agent_sources import (
    ExecPlugin,
    HostSampler,
    HttpProbe,
    TcpProbe,
    resolved_command,
)
from cfgclone.collector.agent_spool import Spool
from cfgclone.collector.batching import GAUGE, BatchBuilder, Sample
from cfgclone.common.store import Store
from cfgclone.v1 import common_pb2
from tests.collector.conftest import (
    Collector,
    agent_for,
    start_collector,
    stored,
    unique_system,
    until,
)


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
    return agent_for(
        system,
        address,
        spool,
        source,
        batch_max_samples=7,
        batch_max_seconds=0.3,
        drain_seconds=2.0,
    )


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
            await until(lambda: agent.shipper.delivered_batches >= 3, 10, "first batches")
        # The collector is gone; the agent keeps sampling into its spool.
        taken_while_down = len(source.taken)
        await until(lambda: spool.pending_batches >= 5, 10, "spooling while down")
        assert len(source.taken) > taken_while_down
        async with start_collector(store, port=port):
            await until(lambda: len(source.taken) > taken_while_down + 80, 10, "sampling")
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
    await until(lambda: len(before.taken) >= 30, 10, "sampling without a collector")
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
        await until(lambda: len(after.taken) >= 10, 10, "sampling after the restart")
        await until(lambda: reopened.pending_batches == 0, 10, "delivery")
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
        "system.cpu.utilization",
        "system.memory.usage",
        "system.memory.utilization",
        'system.disk.io{direction="read"}',
        'system.disk.io{direction="write"}',
        "system.process.count",
    }
    assert set(samples) <= set(vocabulary.METRICS)
    assert 0.0 <= samples["system.cpu.utilization"].value <= 1.0
    memory = psutil.virtual_memory()
    used = memory.total - memory.available
    assert samples["system.memory.usage"].value == pytest.approx(used, rel=0.5)
    assert samples["system.memory.utilization"].value == pytest.approx(used / memory.total, rel=0.5)
    assert samples["system.process.count"].value == pytest.approx(len(psutil.pids()), rel=0.5)
    assert samples['system.disk.io{direction="read"}'].kind == common_pb2.METRIC_KIND_COUNTER
    assert samples['system.disk.io{direction="read"}'].unit == "By/s"


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

    assert up['cfgclone.probe.tcp.up{probe="collector"}'] == 1.0
    assert 0.0 < up['cfgclone.probe.tcp.connect.duration{probe="collector"}'] < 2.0
    assert down == {'cfgclone.probe.tcp.up{probe="nothing"}': 0.0}
    assert http == {'http.response.status_code{probe="nothing"}': 0.0}
    assert custom == {"queue.depth": 12.0, "jobs.running": 3.5}


def test_a_shipped_helper_is_found_beside_cfgclone_when_path_lacks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under the shipped systemd unit PATH holds /usr/bin but not /opt/cfgclone/bin."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    beside = Path(sys.executable).parent / "cfgclone-pg-stats"
    assert beside.exists()
    assert resolved_command(("cfgclone-pg-stats", "--x")) == (str(beside), "--x")
    assert resolved_command(("true",)) == (shutil.which("true"),)
    assert resolved_command(("no-such-helper-here",)) == ("no-such-helper-here",)
    assert resolved_command(("/opt/x/run", "a")) == ("/opt/x/run", "a")


def test_plugin_output_keeps_labels_and_makes_counters_rates() -> None:
    plugin = ExecPlugin(ExecConfig("queue", ("true",), 10.0, 5.0))
    first = """\
# TYPE jobs_done_total counter
jobs_done_total{queue="orders"} 100
queue_depth{queue="orders"} 7
queue_depth{queue="refunds"} 2
http.server.request.duration 0.012
this is not prometheus
"""
    second = first.replace(
        'jobs_done_total{queue="orders"} 100', 'jobs_done_total{queue="orders"} 130'
    )

    before = {s.metric: s for s in plugin.parse(first, 1_000, 100.0)}
    after = {s.metric: s for s in plugin.parse(second, 2_000, 110.0)}

    assert before['queue_depth{queue="orders"}'].value == 7
    assert before['queue_depth{queue="refunds"}'].value == 2
    assert before["http.server.request.duration"].unit == "s"
    assert 'jobs_done_total{queue="orders"}' not in before  # a rate needs two readings
    assert after['jobs_done_total{queue="orders"}'].value == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[system]\nname = 'db-01'", "collector.address is required"),
        ('[collector]\naddress = "c:1"\n[system]\nname = "DB_01"', "system.name must be"),
        ('[collector]\naddress = "c"', "collector.address must be host:port"),
        (
            '[collector]\naddress = "c:1"\n[sampling]\nintreval_seconds = 1',
            "sampling: unknown key 'intreval_seconds' (did you mean 'interval_seconds'?)",
        ),
        (
            '[collector]\naddress = "c:1"\n[sampling]\ninterval_seconds = "fast"',
            "sampling.interval_seconds must be a number",
        ),
        ('[collector]\naddress = "c:1"\n[probes]\nx = 1', "unknown table [probes]"),
        (
            '[collector]\naddress = "c:1"\n[[tcp_probe]]\nname = "a b"\nhost = "h"\nport = 1',
            "tcp_probe[0].name",
        ),
        (
            '[collector]\naddress = "c:1"\n[[tcp_probe]]\nname = "a"\nhost = "h"',
            "tcp_probe[0].port is required",
        ),
        ('[collector]\naddress = "c:1"\n[[exec]]\ncommand = []', "exec[0].command"),
        ('[collector]\naddress = "c:1"\n[spool]\nmax_bytes = 1.5', "spool.max_bytes"),
    ],
)
def test_a_bad_configuration_names_the_key(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(text)
    assert named in str(caught.value)


def test_variables_override_the_file(tmp_path: Path) -> None:
    text = '[collector]\naddress = "c:1"\ntoken_file = "missing"\n[system]\nname = "db-01"'

    config = parse_agent_config(
        text,
        tmp_path,
        environ={
            "CFGCLONE_COLLECTOR_ADDRESS": "127.0.0.1:9",
            "CFGCLONE_TOKEN": "secret",
            "CFGCLONE_AGENT_SYSTEM": "db-02",
            "CFGCLONE_AGENT_SPOOL": "spool",
        },
    )

    assert config.collector == "127.0.0.1:9"
    assert config.token == "secret"  # token_file is not read
    assert config.system_name == "systems/db-02"
    assert config.spool_folder == tmp_path / "spool"


def test_the_agent_command_refuses_a_bad_file_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[collector]\naddress = "c:1"\n[system]\nname = "Bad Name"\n')

    code = agent_main.main(["--config", str(config)])

    assert code == 2
    assert f"{config}: system.name must be" in capsys.readouterr().err


def test_the_agent_command_stops_when_the_collector_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    address = f"127.0.0.1:{_free_port()}"
    config.write_text(
        f'[collector]\naddress = "{address}"\nconnect_timeout_seconds = 1\n'
        f'[system]\nname = "db-01"\n[spool]\npath = "spool"\n'
    )

    code = agent_main.main(["--config", str(config)])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert f"collector.address: the collector at {address} did not answer" in err


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
