#!/usr/bin/env python3
"""Exit 0 when a cfgclone service answers the standard gRPC health check with SERVING.

The container image installs this as ``grpc-health-check``; compose health checks
and the Kubernetes probes of TLS deployments run it (the kubelet's native gRPC
probe speaks plaintext only). It talks to the service the way a peer does:

* the address is the argument, or ``127.0.0.1:$CFGCLONE_PORT`` without one;
* when the service serves TLS (``CFGCLONE_TLS_CERT`` is set) the check does too,
  verifying the server with ``CFGCLONE_TLS_CA`` and presenting
  ``CFGCLONE_TLS_CLIENT_CERT``/``CFGCLONE_TLS_CLIENT_KEY`` when mutual TLS asks for
  them; ``--server-name`` is the name the certificate must carry when the address
  is not that name (for example 127.0.0.1 inside a pod).

Exit codes: 0 SERVING, 1 any other answer or no answer, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _read(env: Mapping[str, str], name: str) -> bytes | None:
    value = env.get(name)
    return Path(value).read_bytes() if value else None


def open_channel(address: str, server_name: str | None, env: Mapping[str, str]) -> grpc.Channel:
    """A channel to ``address``: TLS when the service serves TLS, else plaintext."""
    if not env.get("CFGCLONE_TLS_CERT"):
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(env, "CFGCLONE_TLS_CA"),
        private_key=_read(env, "CFGCLONE_TLS_CLIENT_KEY"),
        certificate_chain=_read(env, "CFGCLONE_TLS_CLIENT_CERT"),
    )
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(address, credentials, options=options)


def check(
    address: str,
    *,
    service: str = "",
    server_name: str | None = None,
    timeout: float = 3.0,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Whether the server at ``address`` reports ``service`` ("" = the whole server) SERVING."""
    env = os.environ if env is None else env
    with open_channel(address, server_name, env) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            print(f"{address}: {error.code().name}: {error.details()}", file=sys.stderr)
            return False
    serving: bool = reply.status == health_pb2.HealthCheckResponse.SERVING
    if not serving:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        print(f"{address}: {status}", file=sys.stderr)
    return serving


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grpc-health-check", description=__doc__.split("\n")[0])
    parser.add_argument("address", nargs="?", help="host:port (default 127.0.0.1:$CFGCLONE_PORT)")
    parser.add_argument("--service", default="", help="health service name (default: server)")
    parser.add_argument("--server-name", help="name the server's TLS certificate carries")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    address = args.address
    if address is None:
        port = os.environ.get("CFGCLONE_PORT")
        if not port:
            parser.error("give an address or set CFGCLONE_PORT")
        address = f"127.0.0.1:{port}"
    try:
        ok = check(
            address, service=args.service, server_name=args.server_name, timeout=args.timeout
        )
    except OSError as error:  # a TLS file named by the settings cannot be read
        print(f"{address}: {error}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
