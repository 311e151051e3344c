"""Channels to cfgclone services, configured one way for every caller.

Services calling each other, the CLI and the agent all use :func:`open_channel`:
TLS or mutual TLS from the peer settings, the bearer token on every call,
tracing interceptors that carry the trace across, and a retry policy for
UNAVAILABLE (the standard gRPC service config), so a restarting peer costs a
retry, not a failed workflow.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import trace

from cfgclone.common.settings import PeerSettings
from cfgclone.common.telemetry import client_interceptors

_RETRY_POLICY = {
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


if TYPE_CHECKING:
    _UnaryUnary = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _StreamUnary = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    _StreamStream = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:  # the stubs make them generic; at run time they are not subscriptable
    _UnaryUnary = grpc.aio.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.aio.UnaryStreamClientInterceptor
    _StreamUnary = grpc.aio.StreamUnaryClientInterceptor
    _StreamStream = grpc.aio.StreamStreamClientInterceptor


class _BearerToken(grpc.AuthMetadataPlugin):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        callback((("authorization", f"Bearer {self._token}"),), None)


class _TokenInterceptor(_UnaryUnary):
    """Adds the bearer token on a plaintext channel (call credentials need TLS)."""

    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._metadata), request)


class _TokenUnaryStreamInterceptor(_UnaryStream):
    # One class per call shape: grpc.aio files an interceptor under the first
    # interceptor base it matches only, so one class for several shapes would
    # reach the first of them alone.
    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._metadata), request)


class _TokenStreamUnaryInterceptor(_StreamUnary):
    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_with_token(details, self._metadata), requests)


class _TokenStreamStreamInterceptor(_StreamStream):
    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_with_token(details, self._metadata), requests)


def _with_token(details: Any, pair: tuple[str, str]) -> Any:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), pair)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def open_channel(
    address: str,
    peers: PeerSettings | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
) -> grpc.aio.Channel:
    """An aio channel to ``address`` set up from ``peers`` (plaintext and no token by default)."""
    peers = peers or PeerSettings()
    interceptors: list[Any] = list(client_interceptors(tracer_provider))
    options = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(_RETRY_POLICY)),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]
    if peers.tls is None:
        if peers.token:
            interceptors += [
                _TokenInterceptor(peers.token),
                _TokenUnaryStreamInterceptor(peers.token),
                _TokenStreamUnaryInterceptor(peers.token),
                _TokenStreamStreamInterceptor(peers.token),
            ]
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    tls = peers.tls
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_file.read_bytes() if tls.ca_file else None,
        private_key=tls.key_file.read_bytes() if tls.key_file else None,
        certificate_chain=tls.cert_file.read_bytes() if tls.cert_file else None,
    )
    if peers.token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.metadata_call_credentials(_BearerToken(peers.token))
        )
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
