"""The server interceptor that checks every request message before its servicer sees it.

It parses each request itself (each message of a client stream as it
arrives), so bytes that are not a valid message are INVALID_ARGUMENT rather
than gRPC's UNKNOWN, and applies
:func:`cfgclone.common.message_checks.check_message` to it, so no RPC, present
or added later, skips the universal checks. It sits inside the interceptor that
maps domain errors, which turns its refusal into INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from cfgclone.common.errors import InvalidArgument
from cfgclone.common.handlers import Continuation, Handler, ServerInterceptor
from cfgclone.common.message_checks import check_message

__all__ = ["RequestValidationInterceptor"]


Parse = Callable[[bytes], Any] | None


def _checked_request(parse: Parse, raw: Any) -> Any:
    """The request parsed from ``raw`` and checked; INVALID_ARGUMENT when it is neither."""
    if parse is None:
        request = raw
    else:
        try:
            request = parse(raw)
        except (DecodeError, ValueError, RecursionError):
            raise InvalidArgument(
                "the request is not a valid protobuf message of the method's request type",
                reason="MALFORMED_REQUEST",
            ) from None
    check_message(request)
    return request


async def _checked(parse: Parse, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for raw in requests:
        yield _checked_request(parse, raw)


def _checked_handler(handler: Handler) -> Handler:
    parse = handler.request_deserializer
    # The handler receives the raw bytes and parses them itself (above), so a
    # malformed message becomes a domain error instead of gRPC's UNKNOWN.
    options = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary

        async def unary_unary_checked(raw: Any, context: Any) -> Any:
            return await unary_unary(_checked_request(parse, raw), context)

        return grpc.unary_unary_rpc_method_handler(unary_unary_checked, **options)
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream

        async def unary_stream_checked(raw: Any, context: Any) -> AsyncIterator[Any]:
            request = _checked_request(parse, raw)
            responses: AsyncIterator[Any] = unary_stream(request, context)  # type: ignore[assignment]
            async for response in responses:
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream_checked, **options)
    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary

        async def stream_unary_checked(requests: Any, context: Any) -> Any:
            return await stream_unary(_checked(parse, requests), context)  # type: ignore[arg-type]

        return grpc.stream_unary_rpc_method_handler(stream_unary_checked, **options)
    stream_stream = handler.stream_stream
    assert stream_stream is not None

    async def stream_stream_checked(requests: Any, context: Any) -> AsyncIterator[Any]:
        responses: AsyncIterator[Any] = stream_stream(_checked(parse, requests), context)  # type: ignore[arg-type,assignment]
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
