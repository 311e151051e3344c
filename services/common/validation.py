"""The server interceptor that checks every request message before its servicer sees it.

It applies :func:`cfgclone.common.message_checks.check_message` to each
request (each message of a client stream as it arrives), so no RPC, present or
added later, skips the universal checks. It sits inside the interceptor that
maps domain errors, which turns its refusal into INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from cfgclone.common.handlers import Continuation, Handler, ServerInterceptor
from cfgclone.common.message_checks import check_message

__all__ = ["RequestValidationInterceptor"]


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        check_message(request)
        yield request


def _checked_handler(handler: Handler) -> Handler:
    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary

        async def unary_unary_checked(request: Any, context: Any) -> Any:
            check_message(request)
            return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary_checked, **options)
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream

        async def unary_stream_checked(request: Any, context: Any) -> AsyncIterator[Any]:
            check_message(request)
            responses: AsyncIterator[Any] = unary_stream(request, context)  # type: ignore[assignment]
            async for response in responses:
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream_checked, **options)
    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary

        async def stream_unary_checked(requests: Any, context: Any) -> Any:
            return await stream_unary(_checked(requests), context)  # type: ignore[arg-type]

        return grpc.stream_unary_rpc_method_handler(stream_unary_checked, **options)
    stream_stream = handler.stream_stream
    assert stream_stream is not None

    async def stream_stream_checked(requests: Any, context: Any) -> AsyncIterator[Any]:
        responses: AsyncIterator[Any] = stream_stream(_checked(requests), context)  # type: ignore[arg-type,assignment]
        async for response in responses:
            yield response

    return grpc.stream_stream_rpc_method_handler(stream_stream_checked, **options)


class RequestValidationInterceptor(ServerInterceptor):
    """Refuses a request breaking a universal rule (size, NUL, range, enum): INVALID_ARGUMENT."""

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:  # a handler, or None for an unknown method
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or not method.startswith("/cfgclone."):
            return handler
        return _checked_handler(handler)
