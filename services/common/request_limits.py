"""Bounds on what callers can make a server hold: request bytes in flight and idle streams.

Every request message is counted against a budget of bytes the server works on at
once (``max_inflight_bytes``): a unary request from its arrival until its answer, a
streamed message from its arrival until the servicer asks for the next one. A
request that would pass the budget is refused with RESOURCE_EXHAUSTED, which
clients retry with backoff, instead of being decoded and worked on: the budget
bounds the memory that requests, and what the servicers build from them, take.
A request alone is always admitted (``max_message_bytes`` bounds its size).

A client stream that sends nothing for ``stream_idle_seconds`` is ended with
DEADLINE_EXCEEDED, so a stream opened and left open holds no handler for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from cfgclone.common.errors import CfgcloneError, DeadlineExceeded, ResourceExhausted, to_status
from cfgclone.common.handlers import Continuation, Handler, ServerInterceptor

__all__ = ["ByteBudget", "RequestLimitsInterceptor"]


class ByteBudget:
    """Bytes of requests being worked on, up to a limit."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the byte budget must be positive")
        self.limit = limit
        self.in_use = 0

    def take(self, size: int) -> None:
        """Reserve ``size`` bytes, or RESOURCE_EXHAUSTED when they do not fit."""
        if self.in_use and self.in_use + size > self.limit:
            raise ResourceExhausted(
                f"the server is working on {self.in_use} bytes of requests, at most "
                f"{self.limit} at once (CFGCLONE_MAX_INFLIGHT_BYTES); this one has {size}; "
                "retry with backoff",
                reason="REQUEST_BYTES_IN_FLIGHT",
                metadata={"limit": str(self.limit)},
            )
        self.in_use += size

    def give_back(self, size: int) -> None:
        self.in_use -= size


async def _abort(context: Any, error: CfgcloneError) -> None:
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


def _size(message: Any) -> int:
    """Serialised size: the bytes themselves when the handler parses its own requests
    (:mod:`cfgclone.common.validation`), else the message's size."""
    if isinstance(message, bytes | bytearray | memoryview):
        return len(message)
    return int(message.ByteSize())


class RequestLimitsInterceptor(ServerInterceptor):
    """Applies one :class:`ByteBudget` to every call, and the idle time-out to client streams."""

    def __init__(self, max_inflight_bytes: int, stream_idle_seconds: float) -> None:
        self.budget = ByteBudget(max_inflight_bytes)
        self.stream_idle_seconds = stream_idle_seconds

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:  # a handler, or None for an unknown method
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._wrap(handler)

    def _wrap(self, handler: Handler) -> Handler:
        shapes = {
            "unary_unary": grpc.unary_unary_rpc_method_handler,
            "unary_stream": grpc.unary_stream_rpc_method_handler,
            "stream_unary": grpc.stream_unary_rpc_method_handler,
            "stream_stream": grpc.stream_stream_rpc_method_handler,
        }
        for shape, build in shapes.items():
            behaviour = getattr(handler, shape)
            if behaviour is None:
                continue
            client_streams = shape.startswith("stream")
            server_streams = shape.endswith("stream")
            if server_streams:
                wrapped = self._streaming(behaviour, client_streams)
            else:
                wrapped = self._unary(behaviour, client_streams)
            return build(
                wrapped,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _admit(self, message: Any, context: Any) -> int:
        """Reserve the message's bytes, or end the call with RESOURCE_EXHAUSTED."""
        size = _size(message)
        try:
            self.budget.take(size)
        except CfgcloneError as error:
            await _abort(context, error)
        return size

    def _unary(self, behaviour: Any, client_streams: bool) -> Any:
        async def call(request: Any, context: Any) -> Any:
            if client_streams:
                return await behaviour(self._metered(request, context), context)
            size = await self._admit(request, context)
            try:
                return await behaviour(request, context)
            finally:
                self.budget.give_back(size)

        return call

    def _streaming(self, behaviour: Any, client_streams: bool) -> Any:
        async def call(request: Any, context: Any) -> AsyncIterator[Any]:
            if client_streams:
                async for response in behaviour(self._metered(request, context), context):
                    yield response
                return
            size = await self._admit(request, context)
            try:
                async for response in behaviour(request, context):
                    yield response
            finally:
                self.budget.give_back(size)

        return call

    async def _metered(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        """The client's messages, each counted until the next is asked for, with the
        stream ended when none comes within the idle time-out."""
        iterator = requests.__aiter__()
        held = 0
        try:
            while True:
                try:
                    message = await asyncio.wait_for(
                        iterator.__anext__(), timeout=self.stream_idle_seconds
                    )
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    await _abort(
                        context,
                        DeadlineExceeded(
                            f"no message on the stream for {self.stream_idle_seconds:g} s "
                            "(CFGCLONE_STREAM_IDLE_SECONDS); the stream is closed",
                            reason="STREAM_IDLE",
                        ),
                    )
                    return
                self.budget.give_back(held)
                held = 0
                held = await self._admit(message, context)
                yield message
        finally:
            self.budget.give_back(held)
