"""Delivery of spooled batches to the collector: in order, exactly once, whatever fails.

The shipper sends the oldest spooled batches over one StreamSamples call and
removes them from the spool only once the collector has answered. When the
call fails for a reason that may pass (the collector or its database is down,
a deadline passed) nothing is removed and the same batches are sent again
after an exponential backoff; batches the collector had already stored come
back as duplicates and are stored once. So every batch is delivered, in order,
and stored exactly once.

A refusal is different. A batch the collector refuses for its content
(INVALID_ARGUMENT, or INTERNAL when the collector fails on it) would block the
spool forever, so the shipper finds it by sending the batches one at a time,
sets it aside in the dead-letter file beside the spool with the status and the
reason (:mod:`.agent_dead_letters`), and goes on. An unknown system means the
collector lost the registration (a new database): the shipper registers again.
A refusal of the agent itself (a refused credential, see
:data:`~.agent_client.AGENT_REFUSALS`) keeps everything spooled and is retried
with backoff until an operator fixes the configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from cfgclone.collector.agent_client import Backoff, CollectorClient, CollectorRefusal
from cfgclone.collector.agent_dead_letters import DeadLetterFile
from cfgclone.collector.agent_spool import Spool, SpooledBatch
from cfgclone.v1 import common_pb2

__all__ = ["Shipper"]

logger = logging.getLogger(__name__)


class _RegistrationLost(Exception):
    """The collector does not know the system (any more)."""


class Shipper:
    """Moves batches from the spool to the collector."""

    def __init__(
        self,
        spool: Spool,
        client: CollectorClient,
        describe: Callable[[], common_pb2.System],
        *,
        backoff: Backoff | None = None,
        max_batches_per_call: int = 64,
        max_bytes_per_call: int = 8 * 1024 * 1024,
        dead_letters: DeadLetterFile | None = None,
    ) -> None:
        self._spool = spool
        self.dead_letters = dead_letters or DeadLetterFile.beside(spool.path)
        self._client = client
        self._describe = describe
        self._backoff = backoff or Backoff()
        self._max_batches = max_batches_per_call
        self._max_bytes = max_bytes_per_call
        self.registered = False
        self.delivered_batches = 0
        self.set_aside_batches = 0

    async def run(self, wake: asyncio.Event) -> None:
        """Deliver whatever is spooled, then wait for ``wake``; retry failures with backoff."""
        while True:
            wake.clear()
            try:
                await self.deliver_all()
            except (grpc.aio.AioRpcError, CollectorRefusal, _RegistrationLost) as error:
                delay = self._backoff.next_delay()
                level = logging.ERROR if isinstance(error, CollectorRefusal) else logging.WARNING
                logger.log(
                    level,
                    "collector %s: %s; %s batches spooled, retrying in %.1f s",
                    self._client.address,
                    _describe_error(error),
                    self._spool.pending_batches,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            await wake.wait()

    async def deliver_all(self) -> None:
        """Register if need be, then send until the spool is empty; raises on a failure."""
        if not self.registered:
            await self._client.register(self._describe())
            self.registered = True
        while True:
            pending = self._spool.peek(self._max_batches, self._max_bytes)
            if not pending:
                return
            await self._deliver(pending)

    async def _deliver(self, pending: list[SpooledBatch]) -> None:
        try:
            await self._client.stream([p.batch for p in pending])
        except CollectorRefusal as refusal:
            if not refusal.about_the_batch:
                raise
            await self._deliver_one_by_one(pending)
            return
        self._spool.remove_through(pending[-1].seq)
        self.delivered_batches += len(pending)

    async def _deliver_one_by_one(self, pending: list[SpooledBatch]) -> None:
        for item in pending:
            try:
                await self._client.write(item.batch)
            except CollectorRefusal as refusal:
                if refusal.reason == "UNKNOWN_SYSTEM":
                    self.registered = False
                    raise _RegistrationLost(refusal.message) from refusal
                if not refusal.about_the_batch:
                    raise
                self.dead_letters.set_aside(
                    item.batch, refusal.code.name, refusal.reason, refusal.message
                )
                self.set_aside_batches += 1
                logger.error(
                    "collector refused batch %s for good (%s), set it aside in %s: %s",
                    item.batch.batch_id,
                    refusal.code.name,
                    self.dead_letters.path,
                    refusal.message,
                )
            else:
                self.delivered_batches += 1
            self._spool.remove_through(item.seq)


def _describe_error(error: Exception) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, _RegistrationLost):
        return f"the system is not registered ({error}); registering again"
    return str(error)
