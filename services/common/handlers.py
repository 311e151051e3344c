"""Wrapping the behaviour of a gRPC method handler, for the server interceptors.

grpc.aio interceptors see a method before it runs; to act around the call
itself (catch a domain error, read the peer certificate, set the caller's
identity) they replace the handler's behaviour. This module does that once for
the four RPC shapes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import grpc

if TYPE_CHECKING:
    # The stubs make these generic; at run time they are not subscriptable.
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
    ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Context = grpc.aio.ServicerContext
    Handler = grpc.RpcMethodHandler
    ServerInterceptor = grpc.aio.ServerInterceptor

Around = Callable[[Callable[[], Awaitable[Any]], Context], Awaitable[Any]]
"""Runs the call (the zero-argument callable) in a context of its own, for example a try block."""

AroundStream = Callable[[Callable[[], AsyncIterator[Any]], Context], AsyncIterator[Any]]
"""The same for server-streaming calls: wraps the stream of responses."""

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["Handler | None"]]
"""What a server interceptor calls to get the method's handler."""


def wrap_method_handler(handler: Handler, around: Around, around_stream: AroundStream) -> Handler:
    """A handler whose behaviour runs inside ``around``.

    Server-streaming behaviours run inside ``around_stream`` instead.
    """
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary

        async def unary_unary_behaviour(request: Any, context: Any) -> Any:
            return await around(lambda: unary_unary(request, context), context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary_behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary

        async def stream_unary_behaviour(requests: Any, context: Any) -> Any:
            return await around(lambda: stream_unary(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary_behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream

        async def unary_stream_behaviour(request: Any, context: Any) -> AsyncIterator[Any]:
            responses = cast(
                Callable[[], AsyncIterator[Any]], partial(unary_stream, request, context)
            )
            async for response in around_stream(responses, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            unary_stream_behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    stream_stream = handler.stream_stream
    assert stream_stream is not None

    async def stream_stream_behaviour(requests: Any, context: Any) -> AsyncIterator[Any]:
        responses = cast(
            Callable[[], AsyncIterator[Any]], partial(stream_stream, requests, context)
        )
        async for response in around_stream(responses, context):
            yield response

    return grpc.stream_stream_rpc_method_handler(
        stream_stream_behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
