"""A batch the collector always refuses is set aside; the agent delivers every batch after it.

The first test refuses a batch for its content (a sample a day ahead of the collector's
clock: INVALID_ARGUMENT). The second serves a collector whose ingest fails with an
exception on one batch, the way a collector bug would: the real error mapping answers
INTERNAL, which a retry would only repeat.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from cfgclone.collector.agent_client import RETRYABLE
from cfgclone.collector.agent_runner import Agent
from cfgclone.collector.agent_spool import Spool
from cfgclone.collector.batching import GAUGE, Sample
from cfgclone.collector.ingest import Ingestor, PreparedBatch
from cfgclone.collector.servicer import CollectorServicer
from cfgclone.common.server import ServiceDefinition
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2_grpc, common_pb2
from tests.collector.conftest import Collector, agent_for, stored, unique_system, until
from tests.conftest import serve_in_process

DAY_NS = 86_400 * 1_000_000_000


class PoisoningSource:
    """Counts up; the sample numbered ``poison_at`` is moved ``shift_ns`` ahead."""

    name = "poisoning"

    def __init__(self, poison_at: int, shift_ns: int, interval_seconds: float = 0.02) -> None:
        self.interval_seconds = interval_seconds
        self.poison_at = poison_at
        self.shift_ns = shift_ns
        self.taken: list[tuple[int, float]] = []

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        value = float(len(self.taken))
        if len(self.taken) == self.poison_at:
            ts_unix_ns += self.shift_ns
        self.taken.append((ts_unix_ns // 1000, value))
        return [Sample("test.counter", value, ts_unix_ns, "count", GAUGE)]


def _agent(system: str, address: str, spool: Spool, source: PoisoningSource) -> Agent:
    return agent_for(
        system,
        address,
        spool,
        source,
        batch_max_samples=5,
        batch_max_seconds=0.2,
        drain_seconds=3.0,
    )


async def _run_until_past_poison(
    agent: Agent, source: PoisoningSource, spool: Spool, samples_after: int
) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    try:
        await until(lambda: len(source.taken) >= source.poison_at + samples_after, 20, "sampling")
        await until(lambda: agent.shipper.set_aside_batches >= 1, 20, "the poison set aside")
    finally:
        stop.set()
        await running
        await agent.client.close()
    assert spool.pending_batches == 0


def test_internal_and_invalid_argument_are_not_retried() -> None:
    assert grpc.StatusCode.INTERNAL not in RETRYABLE
    assert grpc.StatusCode.INVALID_ARGUMENT not in RETRYABLE
    assert grpc.StatusCode.UNAVAILABLE in RETRYABLE


async def test_a_batch_refused_for_its_content_is_set_aside_and_the_rest_delivered(
    collector: Collector, tmp_path: Path
) -> None:
    system = unique_system()
    source = PoisoningSource(poison_at=12, shift_ns=DAY_NS)
    spool = Spool(tmp_path / "spool.sqlite3", max_bytes=10 * 2**20)
    agent = _agent(system, collector.address, spool, source)
    try:
        await _run_until_past_poison(agent, source, spool, samples_after=40)
    finally:
        spool.close()

    [letter] = agent.shipper.dead_letters.read()
    assert letter.code == "INVALID_ARGUMENT"
    assert letter.system == system
    assert letter.batch is not None
    set_aside = {v for s in letter.batch.series for v in s.values}
    assert source.poison_at in set_aside
    # Every other sample, before and after the bad batch, is stored exactly once.
    expected = sorted((ts, v) for ts, v in source.taken if v not in set_aside)
    assert await stored(collector.store, system, "test.counter") == expected
    assert max(v for _, v in expected) > source.poison_at + 30


class FailsOnOneBatch(Ingestor):
    """An ingest with a bug that raises on the batch holding ``poison_value``."""

    def __init__(self, store: Store, poison_value: float) -> None:
        super().__init__(store)
        self._poison = poison_value

    async def prepare(self, batch: common_pb2.SampleBatch) -> PreparedBatch:
        if any(self._poison in series.values for series in batch.series):
            raise RuntimeError("a collector bug triggered by this batch")
        return await super().prepare(batch)


async def test_a_batch_the_collector_fails_on_with_internal_does_not_block_the_spool(
    store: Store, tmp_path: Path
) -> None:
    system = unique_system()
    source = PoisoningSource(poison_at=9, shift_ns=0)  # the bug, not the batch, refuses it
    servicer = CollectorServicer(store, FailsOnOneBatch(store, poison_value=9.0))
    definition = ServiceDefinition(
        "cfgclone.v1.CollectorService",
        servicer,
        collector_service_pb2_grpc.add_CollectorServiceServicer_to_server,
    )
    spool = Spool(tmp_path / "spool.sqlite3", max_bytes=10 * 2**20)
    async with serve_in_process([definition]) as (running, _):
        agent = _agent(system, f"127.0.0.1:{running.port}", spool, source)
        try:
            await _run_until_past_poison(agent, source, spool, samples_after=30)
        finally:
            spool.close()

    [letter] = agent.shipper.dead_letters.read()
    assert letter.code == "INTERNAL"
    assert letter.batch is not None
    set_aside = {v for s in letter.batch.series for v in s.values}
    assert 9.0 in set_aside
    expected = sorted((ts, v) for ts, v in source.taken if v not in set_aside)
    assert await stored(store, system, "test.counter") == expected
