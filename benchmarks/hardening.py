"""Hardening benchmark: nothing lost or doubled through failures, bounded under load.

Every service runs as its own process on loopback, on a temporary database that is
dropped at the end. Experiments:

* ``database_outage``: the agent (the real sending loop: sources, spool, shipper)
  samples a counter while the collector's database, a throw-away PostgreSQL cluster
  of its own, is shut down for ``--outage-seconds`` and started again;
* ``collector_kill``: the same while the collector is killed with SIGKILL and
  started again on the same port after ``--down-seconds``;
* ``ingest_16_clients``: 16 clients, each its own system, stream batches at once;
* ``reads_32_callers``: 32 callers query samples, systems and metrics for
  ``--read-seconds``: latency p50 / p99 and errors;
* ``idle_streams``: 400 sample streams that never send, on a collector closing
  streams idle for ``--idle-seconds``: how many the server closed, and a batch
  sent afterwards is stored.

Each experiment reports ``lost`` (samples sent and acknowledged or spooled that
are not stored; for reads, calls without an answer), ``duplicated`` (samples stored
more than once; for reads, samples written by reading) and ``internal`` (INTERNAL
answers), with the counts behind them, and the collector's resident memory before
and after where it matters. Prints one JSON object::

    .venv/bin/python benchmarks/hardening.py --json [--outage-seconds 15] [--read-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
import psycopg
from bench_support import start_service, temporary_database

from cfgclone.collector.agent_client import Backoff, CollectorClient, CollectorRefusal
from cfgclone.collector.agent_runner import Agent
from cfgclone.collector.agent_spool import Spool
from cfgclone.collector.batching import GAUGE, Sample
from cfgclone.predictor.shadow.cluster import ClusterSettings, throwaway_cluster
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc
from cfgclone.v1 import common_pb2

COLLECTOR_OPTIONS = {"CFGCLONE_COLLECTOR_SCRAPE": "0"}
SECOND = 1_000_000_000


class CountingSource:
    """A counter sampled every ``interval_seconds``: each value taken once, in order."""

    name = "counter"

    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self.taken: list[tuple[int, float]] = []

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        value = float(len(self.taken))
        self.taken.append((ts_unix_ns // 1000, value))
        return [Sample("hardening.counter", value, ts_unix_ns, "{count}", GAUGE)]


class CountingClient(CollectorClient):
    """The agent's client, counting the status of every failed call."""

    def __init__(self, address: str) -> None:
        super().__init__(address, call_timeout=2.0)
        self.failures: collections.Counter[str] = collections.Counter()

    async def _counted(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            self.failures[error.code().name] += 1
            raise
        except CollectorRefusal as refusal:
            self.failures[refusal.code.name] += 1
            raise

    async def register(self, system: common_pb2.System) -> common_pb2.System:
        return await self._counted(super().register(system))  # type: ignore[no-any-return]

    async def stream(
        self, batches: Iterable[common_pb2.SampleBatch], *, deadline_seconds: float | None = None
    ) -> pb.StreamSamplesResponse:
        return await self._counted(  # type: ignore[no-any-return]
            super().stream(batches, deadline_seconds=deadline_seconds)
        )

    async def write(self, batch: common_pb2.SampleBatch) -> pb.WriteSamplesResponse:
        return await self._counted(super().write(batch))  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb(process: subprocess.Popen[str]) -> float:
    return round(psutil.Process(process.pid).memory_info().rss / 2**20, 1)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


async def stored_samples(url: str, system: str) -> list[tuple[int, float]]:
    """``(ts in microseconds, value)`` of every stored sample of ``system``, duplicates kept."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT (extract(epoch FROM s.ts) * 1000000)::bigint, s.value FROM samples s "
            "JOIN systems y ON y.id = s.system_id WHERE y.system_id = %s",
            (system,),
        )
        return [(int(ts), float(v)) for ts, v in await cursor.fetchall()]


async def sample_count(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT count(*) FROM samples")
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


def delivery(sent: list[tuple[int, float]], stored: list[tuple[int, float]]) -> dict[str, int]:
    """What became of the samples sent: stored once, lost, or stored more than once."""
    counts = collections.Counter(stored)
    return {
        "sent": len(sent),
        "stored": len(counts),
        "lost": sum(1 for sample in set(sent) if sample not in counts),
        "duplicated": sum(n - 1 for n in counts.values()),
    }


async def probe_answers(address: str, system: str, until: asyncio.Event) -> dict[str, int]:
    """GetSystem every 0.25 s with a 1.5 s deadline until ``until``: the status of each."""
    codes: collections.Counter[str] = collections.Counter()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.CollectorServiceStub(channel)
        for _ in range(10_000):  # bounded; ends at ``until`` long before
            if until.is_set():
                break
            try:
                await stub.GetSystem(pb.GetSystemRequest(name=f"systems/{system}"), timeout=1.5)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as error:
                codes[error.code().name] += 1
            await asyncio.sleep(0.25)
    return dict(codes)


async def agent_through(
    address: str, url: str, system: str, disrupt: Callable[[], Awaitable[float]]
) -> dict[str, Any]:
    """Run an agent before, during and after ``disrupt``; what reached the database, and
    what a caller with a 1.5 s deadline was answered meanwhile."""
    source = CountingSource(interval_seconds=0.05)
    with tempfile.TemporaryDirectory() as folder:
        spool = Spool(Path(folder) / "spool.sqlite3", max_bytes=64 * 2**20)
        client = CountingClient(address)
        agent = Agent(
            f"systems/{system}",
            [source],
            spool,
            client,
            describe=lambda: common_pb2.System(name=f"systems/{system}"),
            batch_max_samples=20,
            batch_max_seconds=0.5,
            backoff=Backoff(initial=0.2, maximum=1.0),
            drain_seconds=30.0,
        )
        stop_agent = asyncio.Event()
        running = asyncio.create_task(agent.run(stop_agent))
        disrupted = asyncio.Event()
        try:
            await asyncio.sleep(3.0)
            probing = asyncio.create_task(probe_answers(address, system, disrupted))
            down_seconds = await disrupt()
            disrupted.set()
            answers = await probing
            await asyncio.sleep(3.0)
        finally:
            stop_agent.set()
            await running
            await client.close()
        spooled = spool.pending_batches
        set_aside = agent.shipper.set_aside_batches
        spool.close()
    result = delivery(source.taken, await stored_samples(url, system))
    return {
        **result,
        "internal": client.failures["INTERNAL"],
        "down_seconds": round(down_seconds, 1),
        "failed_calls": dict(client.failures),
        "left_in_spool": spooled,
        "set_aside_batches": set_aside,
        "answers_while_down": answers,
    }


async def database_outage(outage_seconds: float) -> dict[str, Any]:
    async with throwaway_cluster(ClusterSettings(port=free_port())) as cluster:
        url = f"postgresql://postgres@/postgres?host={cluster.socket_dir}&port={cluster.port}"
        process, address = start_service("collector", url, COLLECTOR_OPTIONS)
        try:

            async def outage() -> float:
                started = time.monotonic()
                await cluster.stop()
                await asyncio.sleep(outage_seconds)
                await cluster.start()
                return time.monotonic() - started

            return await agent_through(address, url, "outage-01", outage)
        finally:
            stop(process)


async def collector_kill(url: str, down_seconds: float) -> dict[str, Any]:
    port = free_port()
    processes = [start_service("collector", url, COLLECTOR_OPTIONS, port=port)[0]]
    try:

        async def kill() -> float:
            started = time.monotonic()
            processes[0].send_signal(signal.SIGKILL)
            processes[0].wait(timeout=30)
            await asyncio.sleep(down_seconds)
            processes[0] = await asyncio.to_thread(
                lambda: start_service("collector", url, COLLECTOR_OPTIONS, port=port)[0]
            )
            return time.monotonic() - started

        return await agent_through(f"127.0.0.1:{port}", url, "killed-01", kill)
    finally:
        stop(processes[0])


def client_batches(system: str, batches: int, samples: int, seed: int) -> list[Any]:
    end = time.time_ns() - 120 * SECOND
    rng = np.random.default_rng(seed)
    made = []
    for index in range(batches):
        ts = end - (np.arange(samples, dtype=np.int64)[::-1] + index * samples) * 1_000_000
        series = common_pb2.SampleSeries(metric="hardening.load", kind=GAUGE)
        series.ts_unix_ns.extend(ts.tolist())
        series.values.extend(rng.random(samples).tolist())
        made.append(
            common_pb2.SampleBatch(
                system=f"systems/{system}", batch_id=uuid.uuid4().hex, series=[series]
            )
        )
    return made


async def ingest_16_clients(
    address: str, url: str, process: subprocess.Popen[str], batches: int, samples: int
) -> dict[str, Any]:
    systems = [f"ingest-{i:02d}" for i in range(16)]
    failures: collections.Counter[str] = collections.Counter()
    rss_before = rss_mb(process)

    async def one_client(index: int) -> int:
        client = CollectorClient(address, call_timeout=120.0)
        made = client_batches(systems[index], batches, samples, seed=index)
        try:
            await client.register(common_pb2.System(name=f"systems/{systems[index]}"))
            for _attempt in range(5):  # a failed stream is resent whole: ids make it once
                try:
                    await client.stream(made)
                    return len(made) * samples
                except grpc.aio.AioRpcError as error:
                    failures[error.code().name] += 1
                    await asyncio.sleep(0.5)
                except CollectorRefusal as refusal:
                    failures[refusal.code.name] += 1
                    return 0
            return 0
        finally:
            await client.close()

    started = time.perf_counter()
    acknowledged = await asyncio.gather(*(one_client(i) for i in range(16)))
    elapsed = time.perf_counter() - started
    stored = lost = duplicated = 0
    for system in systems:
        rows = await stored_samples(url, system)
        counts = collections.Counter(rows)
        stored += len(counts)
        duplicated += sum(n - 1 for n in counts.values())
    sent = 16 * batches * samples
    lost = sent - stored
    return {
        "sent": sent,
        "acknowledged": sum(acknowledged),
        "stored": stored,
        "lost": lost,
        "duplicated": duplicated,
        "internal": failures["INTERNAL"],
        "failed_calls": dict(failures),
        "seconds": round(elapsed, 2),
        "samples_per_s": round(stored / elapsed),
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_mb(process),
    }


async def reads_32_callers(
    address: str, url: str, process: subprocess.Popen[str], seconds: float
) -> dict[str, Any]:
    samples_before = await sample_count(url)
    rss_before = rss_mb(process)
    failures: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    unanswered = 0
    now = int(time.time())

    async def caller(index: int, stub: pb_grpc.CollectorServiceStub) -> None:
        nonlocal unanswered
        system = f"systems/ingest-{index % 16:02d}"
        query = pb.QuerySamplesRequest(system=system, metric="hardening.load", page_size=1000)
        query.start_time.FromSeconds(now - 3600)
        query.end_time.FromSeconds(now + 60)
        calls = [
            lambda: stub.QuerySamples(query, timeout=10),
            lambda: stub.GetSystem(pb.GetSystemRequest(name=system), timeout=10),
            lambda: stub.ListMetrics(pb.ListMetricsRequest(parent=system), timeout=10),
        ]
        deadline = time.monotonic() + seconds
        turn = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                await calls[turn % len(calls)]()
                latencies.append(time.perf_counter() - started)
            except grpc.aio.AioRpcError as error:
                failures[error.code().name] += 1
                unanswered += 1
            turn += 1

    channels = [grpc.aio.insecure_channel(address) for _ in range(4)]
    try:
        stubs = [pb_grpc.CollectorServiceStub(c) for c in channels]
        await asyncio.gather(*(caller(i, stubs[i % 4]) for i in range(32)))
    finally:
        for channel in channels:
            await channel.close()
    millis = np.asarray(latencies) * 1000
    return {
        "calls": len(latencies) + unanswered,
        "p50_ms": round(float(np.percentile(millis, 50)), 2) if len(millis) else None,
        "p99_ms": round(float(np.percentile(millis, 99)), 2) if len(millis) else None,
        "errors": sum(failures.values()),
        "failed_calls": dict(failures),
        "lost": unanswered,
        "duplicated": await sample_count(url) - samples_before,
        "internal": failures["INTERNAL"],
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_mb(process),
    }


async def silent_streams(
    address: str,
    process: subprocess.Popen[str],
    streams: int,
    per_connection: int,
    wait_seconds: float,
) -> dict[str, Any]:
    """Open ``streams`` sample streams that never send, ``per_connection`` on each
    connection of their own; how each ended within ``wait_seconds``."""
    silent = asyncio.Event()

    async def nothing() -> AsyncIterator[pb.StreamSamplesRequest]:
        await silent.wait()
        yield pb.StreamSamplesRequest()

    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(address, options=own_connection)
        for _ in range((streams + per_connection - 1) // per_connection)
    ]
    try:
        calls = [
            asyncio.ensure_future(
                pb_grpc.CollectorServiceStub(channels[i // per_connection]).StreamSamples(nothing())
            )
            for i in range(streams)
        ]
        started = time.monotonic()
        done, pending = await asyncio.wait(calls, timeout=wait_seconds)
        elapsed = time.monotonic() - started
        rss_open = rss_mb(process)
        silent.set()
        for call in pending:
            call.cancel()
        codes: collections.Counter[str] = collections.Counter()
        for future in done:
            error = future.exception()
            codes[error.code().name if isinstance(error, grpc.aio.AioRpcError) else "OK"] += 1
        return {
            "codes": dict(codes),
            "still_open": len(pending),
            "seconds": round(elapsed, 1),
            "rss_mb_with_streams": rss_open,
        }
    finally:
        for channel in channels:
            await channel.close()


async def idle_streams(url: str, idle_seconds: float, streams: int) -> dict[str, Any]:
    options = {**COLLECTOR_OPTIONS, "CFGCLONE_STREAM_IDLE_SECONDS": str(idle_seconds)}
    process, address = start_service("collector", url, options)
    try:
        rss_before = rss_mb(process)
        # 50 streams on each connection, under the 100 the server allows on one
        # (CFGCLONE_MAX_STREAMS_PER_CONNECTION); then 150 on one connection.
        spread = await silent_streams(address, process, streams, 50, idle_seconds + 20)
        crowded = await silent_streams(address, process, 150, 150, idle_seconds + 20)
        # The server still serves: one batch after the idle streams went.
        client = CollectorClient(address, call_timeout=10.0)
        try:
            await client.register(common_pb2.System(name="systems/after-idle"))
            [after] = client_batches("after-idle", 1, 100, seed=1)
            response = await client.write(after)
        finally:
            await client.close()
        return {
            "streams": streams,
            "idle_seconds": idle_seconds,
            "closed_by_server": spread["codes"].get("DEADLINE_EXCEEDED", 0),
            "still_open": spread["still_open"],
            "seconds_until_all_closed": spread["seconds"],
            "codes": spread["codes"],
            "lost": 100 - response.stored_samples,
            "duplicated": int(response.duplicate),
            "internal": spread["codes"].get("INTERNAL", 0) + crowded["codes"].get("INTERNAL", 0),
            "one_connection_150_streams": {k: crowded[k] for k in ("codes", "still_open")},
            "rss_mb_before": rss_before,
            "rss_mb_with_streams": spread["rss_mb_with_streams"],
            "rss_mb_after": rss_mb(process),
        }
    finally:
        stop(process)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, shared"}
    result["database_outage"] = await database_outage(args.outage_seconds)
    with temporary_database() as url:
        result["collector_kill"] = await collector_kill(url, args.down_seconds)
        process, address = start_service("collector", url, COLLECTOR_OPTIONS)
        try:
            result["ingest_16_clients"] = await ingest_16_clients(
                address, url, process, args.batches, args.batch_samples
            )
            result["reads_32_callers"] = await reads_32_callers(
                address, url, process, args.read_seconds
            )
        finally:
            stop(process)
        result["idle_streams"] = await idle_streams(url, args.idle_seconds, args.idle_streams)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage-seconds", type=float, default=15.0)
    parser.add_argument("--down-seconds", type=float, default=3.0)
    parser.add_argument("--batches", type=int, default=20, help="batches per ingest client")
    parser.add_argument("--batch-samples", type=int, default=5000)
    parser.add_argument("--read-seconds", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--idle-streams", type=int, default=400)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
