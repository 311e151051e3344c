"""What every command shares: names as printed and taken back, output, and the services' stubs."""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from cfgclone.cli import context
from cfgclone.common import display
from cfgclone.common.clients import open_channel
from cfgclone.v1 import (
    collector_service_pb2_grpc,
    common_pb2,
    fingerprint_service_pb2_grpc,
    orchestrator_service_pb2_grpc,
    predictor_service_pb2_grpc,
    similarity_service_pb2_grpc,
)

T = TypeVar("T")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    for line in display.table_lines(headers, rows):
        print(line)


def system_name(value: str) -> str:
    """``systems/web-01`` for ``web-01`` or ``systems/web-01``."""
    return value if value.startswith("systems/") else f"systems/{value}"


def change_name(value: str) -> str:
    """``systems/db-02/changes/9`` for ``db-02/changes/9`` (as printed) or the full name."""
    return system_name(value)


def cohort_name(value: str) -> str:
    """``cohorts/0`` for ``0`` (as printed) or ``cohorts/0``; empty stays empty."""
    return value if not value or value.startswith("cohorts/") else f"cohorts/{value}"


def policy_name(value: str) -> str:
    """``policies/fast`` for ``fast`` or ``policies/fast``; empty is the default policy."""
    return value if not value or value.startswith("policies/") else f"policies/{value}"


def short_name(name: str) -> str:
    """A name as printed: without ``systems/``; every command takes it back."""
    return name.removeprefix("systems/")


COMMANDS_FOR_METHODS = {
    "BuildFingerprint": "cfgclone fingerprint build",
    "ListCohorts": "cfgclone cohorts",
    "RegisterSystem": "cfgclone agent (which registers its system)",
    "CreatePolicy": "PredictorService.CreatePolicy (see README, grpcurl)",
}


def in_cli_terms(details: str) -> str:
    """A service's error, with the gRPC methods it suggests replaced by commands."""
    return re.sub(
        r"\b(" + "|".join(COMMANDS_FOR_METHODS) + r")\b",
        lambda found: COMMANDS_FOR_METHODS[found.group(1)],
        details,
    )


def state_name(state: common_pb2.ChangeState.ValueType) -> str:
    return common_pb2.ChangeState.Name(state).removeprefix("CHANGE_STATE_")


def verdict_name(verdict: common_pb2.Verdict.ValueType) -> str:
    return common_pb2.Verdict.Name(verdict).removeprefix("VERDICT_")


def print_json(message: Any) -> None:
    print(json_format.MessageToJson(message))


def print_json_list(messages: Sequence[Any]) -> None:
    print(json.dumps([json_format.MessageToDict(m) for m in messages], indent=2))


def progress_stream(json_output: bool) -> Any:
    """Where progress goes: standard error when standard output carries JSON."""
    return sys.stderr if json_output else sys.stdout


ADDRESS_FLAGS: contextvars.ContextVar[dict[str, str | None]] = contextvars.ContextVar("flags")
"""The ``--<service>`` address flags of the command being run."""


def resolved_addresses() -> context.Resolved:
    return context.resolve(ADDRESS_FLAGS.get({}))


class Services:
    """Stubs of the services at their configured addresses, on channels closed together."""

    def __init__(self) -> None:
        self.resolved = resolved_addresses()
        self.peers = self.resolved.peers
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.last = ""
        """The service called last: the one an UNAVAILABLE came from."""

    def _channel(self, name: str) -> grpc.aio.Channel:
        self.last = name
        if name not in self._channels:
            self._channels[name] = open_channel(self.peers.address(name), self.peers)
        return self._channels[name]

    def unreachable(self, error: grpc.aio.AioRpcError) -> context.ServiceUnreachable | None:
        """The service that could not be reached, if that is what ``error`` means."""
        channel = self._channels.get(self.last)
        if error.code() != grpc.StatusCode.UNAVAILABLE or channel is None:
            return None
        state = channel.get_state()
        if state not in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.IDLE):
            return None  # connected: the service itself answered UNAVAILABLE
        return context.ServiceUnreachable(self.last, self.resolved)

    @property
    def timeout(self) -> float:
        return self.peers.timeout_seconds

    @property
    def collector(self) -> Any:
        return collector_service_pb2_grpc.CollectorServiceStub(self._channel("collector"))

    @property
    def fingerprint(self) -> Any:
        return fingerprint_service_pb2_grpc.FingerprintServiceStub(self._channel("fingerprint"))

    @property
    def similarity(self) -> Any:
        return similarity_service_pb2_grpc.SimilarityServiceStub(self._channel("similarity"))

    @property
    def predictor(self) -> Any:
        return predictor_service_pb2_grpc.PredictorServiceStub(self._channel("predictor"))

    @property
    def orchestrator(self) -> Any:
        return orchestrator_service_pb2_grpc.OrchestratorServiceStub(self._channel("orchestrator"))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)


def call_services(command: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``command`` on the services; an unreachable one is named with its setting."""

    async def with_services() -> T:
        services = Services()
        try:
            return await command(services)
        except grpc.aio.AioRpcError as error:
            unreachable = services.unreachable(error)
            if unreachable is not None:
                raise unreachable from None
            raise
        finally:
            await services.close()

    return asyncio.run(with_services())


def run_command(command: Callable[[Services], Awaitable[int]]) -> int:
    return call_services(command)


MODES = {
    "learned": common_pb2.PREDICTION_MODE_LEARNED,
    "shadow": common_pb2.PREDICTION_MODE_SHADOW,
    "both": common_pb2.PREDICTION_MODE_BOTH,
}


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON on standard output")
