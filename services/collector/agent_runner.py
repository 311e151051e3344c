"""The agent at work: sources sampled on their intervals, batches spooled, spool shipped.

Every source runs on its own interval, aligned on the wall clock (a 1 s source
samples at whole seconds), so samples of different machines line up. Samples go
into a :class:`BatchBuilder`; a batch closed by size or age goes to the spool
at once and the shipper is woken. Taking samples never waits for the collector:
while it is unreachable the spool simply grows, within its bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence

import grpc

from cfgclone.collector.agent_client import Backoff, CollectorClient, CollectorRefusal
from cfgclone.collector.agent_config import AgentConfig
from cfgclone.collector.agent_host import describe_host
from cfgclone.collector.agent_shipper import Shipper
from cfgclone.collector.agent_sources import Source, sources_from_config
from cfgclone.collector.agent_spool import Spool
from cfgclone.collector.batching import BatchBuilder, Sample
from cfgclone.v1 import common_pb2

__all__ = ["Agent"]

logger = logging.getLogger(__name__)


class Agent:
    """Samples ``sources`` for ``system`` and delivers the samples through ``spool``."""

    def __init__(
        self,
        system: str,
        sources: Sequence[Source],
        spool: Spool,
        client: CollectorClient,
        *,
        describe: Callable[[], common_pb2.System],
        batch_max_samples: int = 5_000,
        batch_max_seconds: float = 10.0,
        backoff: Backoff | None = None,
        drain_seconds: float = 5.0,
    ) -> None:
        self.system = system
        self.sources = tuple(sources)
        self.spool = spool
        self.client = client
        self.builder = BatchBuilder(
            system, max_samples=batch_max_samples, max_age_seconds=batch_max_seconds
        )
        self.shipper = Shipper(spool, client, describe, backoff=backoff)
        self.drain_seconds = drain_seconds
        self.samples_taken = 0
        self._wake = asyncio.Event()

    @classmethod
    def from_config(cls, config: AgentConfig, spool: Spool, client: CollectorClient) -> Agent:
        """The agent a configuration file describes."""
        return cls(
            config.system_name,
            sources_from_config(config),
            spool,
            client,
            describe=lambda: describe_host(config.system_name, config.labels),
            batch_max_samples=config.batch_max_samples,
            batch_max_seconds=config.batch_max_seconds,
            backoff=Backoff(config.retry_initial_seconds, config.retry_max_seconds),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Sample and ship until ``stop`` is set; then spool the open batch and try to
        deliver what is spooled within ``drain_seconds`` (the rest waits for the next start)."""
        sampling = [asyncio.create_task(self._sample_forever(s)) for s in self.sources]
        sampling.append(asyncio.create_task(self._close_due_batches()))
        shipping = asyncio.create_task(self.shipper.run(self._wake))
        logger.info(
            "agent for %s sampling %s",
            self.system,
            ", ".join(s.name for s in self.sources) or "nothing",
        )
        try:
            await stop.wait()
        finally:
            for task in (*sampling, shipping):
                task.cancel()
            await asyncio.gather(*sampling, shipping, return_exceptions=True)
            self._spool_batch(self.builder.flush())
            await self._drain()

    def accept(self, samples: Sequence[Sample]) -> None:
        """Take samples into the open batch; spool any batch they close."""
        self.samples_taken += len(samples)
        for batch in self.builder.add_many(samples):
            self._spool_batch(batch)

    def _spool_batch(self, batch: common_pb2.SampleBatch | None) -> None:
        if batch is not None:
            self.spool.append(batch)
            self._wake.set()

    async def _drain(self) -> None:
        if not self.spool.pending_batches:
            return
        try:
            async with asyncio.timeout(self.drain_seconds):
                await self.shipper.deliver_all()
        except (TimeoutError, grpc.aio.AioRpcError, CollectorRefusal) as error:
            logger.warning(
                "stopping with %s batches spooled for the next start (%s)",
                self.spool.pending_batches,
                str(error) or "timed out",
            )

    async def _sample_forever(self, source: Source) -> None:
        interval = source.interval_seconds
        next_at = math.ceil(time.time() / interval) * interval
        while True:
            delay = next_at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                samples = await source.collect(time.time_ns())
            except Exception as error:  # one broken source must not stop the others
                logger.warning("source %s failed: %s", source.name, error)
                samples = []
            self.accept(samples)
            next_at += interval
            now = time.time()
            if next_at <= now:  # fell behind (a slow probe, a suspended machine): skip ahead
                next_at = math.ceil(now / interval) * interval

    async def _close_due_batches(self) -> None:
        while True:
            wait = min(self.builder.seconds_until_due(), self.builder.max_age_seconds)
            await asyncio.sleep(max(wait, 0.01))
            if self.builder.due():
                self._spool_batch(self.builder.flush())


async def run_agent(
    config: AgentConfig,
    stop: asyncio.Event,
    *,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Run the agent a configuration describes until ``stop`` is set.

    With ``metrics_port`` (0 picks a free one) the spool's depth is served on ``/metrics``.
    """
    from cfgclone.collector.agent_metrics import spool_registry
    from cfgclone.common.metrics import MetricsHttpServer
    from cfgclone.common.settings import PeerSettings

    spool = Spool(config.spool_path, config.spool_max_bytes)
    http: MetricsHttpServer | None = None
    if metrics_port is not None:
        http = MetricsHttpServer(spool_registry(spool), [], asyncio.get_running_loop())
        bound = http.start(metrics_host, metrics_port)
        logger.info("metrics on http://%s:%s/metrics", metrics_host, bound)
    client = CollectorClient(
        config.collector,
        PeerSettings(
            tls=config.tls, token=config.token, timeout_seconds=config.call_timeout_seconds
        ),
        call_timeout=config.call_timeout_seconds,
    )
    try:
        await Agent.from_config(config, spool, client).run(stop)
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        if http is not None:
            await asyncio.to_thread(http.stop)
        spool.close()
