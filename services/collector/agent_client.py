"""The agent's side of the collector: streaming batches with deadlines, and backoff.

Every call carries a deadline, so a collector that hangs costs a timeout, not
a stuck agent. After a failure the channel is dropped and a fresh one opened
for the next attempt: the agent's own exponential backoff then decides when to
try again, rather than the channel's reconnect timer, which can grow to two
minutes while the collector restarts.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace

import grpc
from grpc_status import rpc_status

from cfgclone.common.clients import open_channel
from cfgclone.common.errors import error_info
from cfgclone.common.settings import PeerSettings
from cfgclone.v1 import collector_service_pb2 as pb
from cfgclone.v1 import collector_service_pb2_grpc as pb_grpc
from cfgclone.v1 import common_pb2

__all__ = ["AGENT_REFUSALS", "RETRYABLE", "Backoff", "CollectorClient", "CollectorRefusal"]

RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)
"""Codes after which the same request may succeed later: the collector, its database or
the network was down or busy, or the call was cut short. INTERNAL and UNKNOWN are not
among them: a collector that fails on a request fails on it again."""

AGENT_REFUSALS = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""Refusals of the agent itself (its credential, its version), not of a batch: every batch
would be refused alike, so they stay spooled until an operator fixes the agent."""


@dataclass
class Backoff:
    """Exponential backoff with jitter: ``initial``, doubling, capped at ``maximum``."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    """Each delay is spread by up to this fraction, so many agents do not retry in step."""
    _failures: int = field(default=0, repr=False)

    def next_delay(self) -> float:
        """The delay before the next attempt, growing with each failure in a row."""
        delay = min(self.maximum, self.initial * self.multiplier**self._failures)
        self._failures += 1
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        """Start again from ``initial`` after a success."""
        self._failures = 0


class CollectorRefusal(Exception):
    """The collector refused a call in a way a retry will not change (bad batch, no permission)."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason

    @property
    def about_the_batch(self) -> bool:
        """Whether the refusal is of what was sent rather than of who sent it."""
        return self.code not in AGENT_REFUSALS


async def _reason(call: object) -> str:
    try:
        # The grpc-status stubs omit the aio helpers that the package has.
        status = await rpc_status.aio.from_call(call)  # type: ignore[attr-defined]
    except (ValueError, AttributeError):
        return ""
    info = error_info(status) if status is not None else None
    return info.reason if info is not None else ""


class CollectorClient:
    """Calls to one collector over a channel opened on first use and after failures.

    Retryable failures raise :class:`grpc.aio.AioRpcError` (see
    :data:`RETRYABLE`); refusals raise :class:`CollectorRefusal`.
    """

    def __init__(
        self, address: str, peers: PeerSettings | None = None, *, call_timeout: float = 10.0
    ) -> None:
        self.address = address
        self.peers = peers or PeerSettings()
        self.call_timeout = call_timeout
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.CollectorServiceAsyncStub | None = None

    def _collector(self) -> pb_grpc.CollectorServiceAsyncStub:
        if self._stub is None:
            # The token goes with each call (see _metadata), not with the channel.
            self._channel = open_channel(self.address, replace(self.peers, token=None))
            self._stub = pb_grpc.CollectorServiceStub(self._channel)
        return self._stub

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        # Sent by the client itself rather than by open_channel, whose plaintext
        # token interceptor reaches unary calls only, not StreamSamples.
        return (("authorization", f"Bearer {self.peers.token}"),) if self.peers.token else ()

    async def reset(self) -> None:
        """Drop the channel; the next call connects afresh."""
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(grace=None)

    async def close(self) -> None:
        await self.reset()

    async def _refusal_or_raise(self, error: grpc.aio.AioRpcError, call: object) -> None:
        if error.code() in RETRYABLE:
            await self.reset()
            raise error
        raise CollectorRefusal(error.code(), error.details() or "", await _reason(call)) from error

    async def register(self, system: common_pb2.System) -> common_pb2.System:
        """Register (or update) the system's metadata."""
        call = self._collector().RegisterSystem(
            pb.RegisterSystemRequest(system=system),
            timeout=self.call_timeout,
            metadata=self._metadata,
        )
        try:
            response: pb.RegisterSystemResponse = await call
        except grpc.aio.AioRpcError as error:
            await self._refusal_or_raise(error, call)
            raise
        return response.system

    async def stream(
        self, batches: Iterable[common_pb2.SampleBatch], *, deadline_seconds: float | None = None
    ) -> pb.StreamSamplesResponse:
        """Send batches over one StreamSamples call; the collector stores each all or nothing."""

        async def requests() -> AsyncIterator[pb.StreamSamplesRequest]:
            for batch in batches:
                yield pb.StreamSamplesRequest(batch=batch)

        call = self._collector().StreamSamples(
            requests(),
            timeout=self.call_timeout if deadline_seconds is None else deadline_seconds,
            metadata=self._metadata,
        )
        try:
            response: pb.StreamSamplesResponse = await call
        except grpc.aio.AioRpcError as error:
            await self._refusal_or_raise(error, call)
            raise
        return response

    async def write(self, batch: common_pb2.SampleBatch) -> pb.WriteSamplesResponse:
        """Send one batch with WriteSamples."""
        call = self._collector().WriteSamples(
            pb.WriteSamplesRequest(batch=batch),
            timeout=self.call_timeout,
            metadata=self._metadata,
        )
        try:
            response: pb.WriteSamplesResponse = await call
        except grpc.aio.AioRpcError as error:
            await self._refusal_or_raise(error, call)
            raise
        return response
