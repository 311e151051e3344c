"""The five services served in process on the test database, and a simulated fleet on them.

Each service runs on a real server on a free port with real channels between
them, as ``cfgclone up`` runs them, so a workflow crosses every service it
would in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2

from cfgclone.collector.main import build_services as collector_services
from cfgclone.common.clients import open_channel
from cfgclone.common.settings import PeerSettings, ServerSettings, ServiceSettings
from cfgclone.common.store import Store
from cfgclone.fingerprint.main import build_services as fingerprint_services
from cfgclone.orchestrator.main import orchestrator_services
from cfgclone.predictor.main import predictor_service
from cfgclone.similarity.main import build_services as similarity_services
from cfgclone.simulation.fleet import (
    LOAD,
    MEMORY,
    RESPONSE_TIME,
    THROUGHPUT,
    SimulatedFleet,
    SimulatedMachine,
)
from cfgclone.v1 import collector_service_pb2_grpc as collector_grpc
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2_grpc as fingerprint_grpc
from cfgclone.v1 import orchestrator_service_pb2 as pb
from cfgclone.v1 import orchestrator_service_pb2_grpc as pb_grpc
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from cfgclone.v1 import predictor_service_pb2_grpc as predictor_grpc
from cfgclone.v1 import similarity_service_pb2_grpc as similarity_grpc
from tests.conftest import serve_in_process

PEERS = ("collector", "fingerprint", "similarity", "predictor")

SERVICE_OPTIONS: Mapping[str, Mapping[str, str]] = {
    "collector": {"SCRAPE": "0"},
    "fingerprint": {"REFINE_INTERVAL_SECONDS": "0", "HALF_LIFE_HOURS": "0"},
    "similarity": {"SYNC_INTERVAL_SECONDS": "0.2"},
    "predictor": {"RETRAIN_INTERVAL_SECONDS": "0", "SHADOW_SECONDS": "10"},
    "orchestrator": {
        "POLL_INTERVAL_SECONDS": "0.2",
        "CALL_TIMEOUT_SECONDS": "5",
        "SIMILARITY_WAIT_SECONDS": "5",
        "CHANGE_TIMEOUT_SECONDS": "120",
    },
}

BUILDERS = {
    "collector": collector_services,
    "fingerprint": fingerprint_services,
    "similarity": similarity_services,
}


def unused_address() -> str:
    """An address nothing listens on: a service that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


def settings_for(
    service: str, store: Store, addresses: Mapping[str, str], options: Mapping[str, str]
) -> ServiceSettings:
    return ServiceSettings(
        service=service,
        server=ServerSettings(host="127.0.0.1", port=0),
        database=dataclasses.replace(ServiceSettings(service=service).database, url=store.url),
        peers=PeerSettings(addresses=dict(addresses), timeout_seconds=5.0),
        options={**SERVICE_OPTIONS[service], **options},
    )


@dataclass
class Suite:
    """Stubs on the running services, and where each listens."""

    addresses: dict[str, str]
    channels: dict[str, grpc.aio.Channel]
    store: Store
    http: dict[str, str] = dataclasses.field(default_factory=dict)
    """``http://host:port`` of each service's ``/metrics`` (and the predictor's reports)."""

    @property
    def collector(self) -> Any:
        return collector_grpc.CollectorServiceStub(self.channels["collector"])

    @property
    def fingerprint(self) -> Any:
        return fingerprint_grpc.FingerprintServiceStub(self.channels["fingerprint"])

    @property
    def similarity(self) -> Any:
        return similarity_grpc.SimilarityServiceStub(self.channels["similarity"])

    @property
    def predictor(self) -> Any:
        return predictor_grpc.PredictorServiceStub(self.channels["predictor"])

    @property
    def orchestrator(self) -> Any:
        return pb_grpc.OrchestratorServiceStub(self.channels["orchestrator"])

    def fleet(self, machines: Sequence[SimulatedMachine], seed: int = 0) -> SimulatedFleet:
        return SimulatedFleet(self.collector, self.predictor, machines, seed=seed)


@contextlib.asynccontextmanager
async def running_services(
    store: Store,
    *,
    tracer_provider: Any = None,
    options: Mapping[str, Mapping[str, str]] | None = None,
    down: Sequence[str] = (),
) -> AsyncIterator[Suite]:
    """The four services the orchestrator calls, then the orchestrator; ``down`` names
    services that are not started (the orchestrator gets an address nobody answers)."""
    options = options or {}
    addresses: dict[str, str] = {name: unused_address() for name in down}
    http: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name in PEERS:
            if name in down:
                continue
            settings = settings_for(name, store, addresses, options.get(name, {}))
            if name == "predictor":
                definition, guard = predictor_service(store, settings)
                stack.push_async_callback(guard.close)
                services = [definition]
            else:
                services = await BUILDERS[name](settings, store)
            running, _ = await stack.enter_async_context(
                serve_in_process(services, tracer_provider=tracer_provider, metrics_port=0)
            )
            addresses[name] = f"127.0.0.1:{running.port}"
            http[name] = f"http://127.0.0.1:{running.metrics_port}"
        settings = settings_for("orchestrator", store, addresses, options.get("orchestrator", {}))
        services = await orchestrator_services(settings, store, tracer_provider=tracer_provider)
        running, _ = await stack.enter_async_context(
            serve_in_process(services, tracer_provider=tracer_provider, metrics_port=0)
        )
        addresses["orchestrator"] = f"127.0.0.1:{running.port}"
        http["orchestrator"] = f"http://127.0.0.1:{running.metrics_port}"
        channels = {
            name: await stack.enter_async_context(
                open_channel(address, tracer_provider=tracer_provider)
            )
            for name, address in addresses.items()
        }
        yield Suite(addresses, channels, store, http)


def unique(prefix: str) -> str:
    """A system id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=seconds))
    return duration


async def create_rollout_policy(
    suite: Suite, policy_id: str, verification_seconds: float = 4.0
) -> str:
    """A policy for simulated rollouts: response time and throughput are critical, an
    undecided prediction proceeds, and verification judges a few seconds of live samples."""
    policy = common_pb2.Policy(
        name=f"policies/{policy_id}",
        thresholds=[
            common_pb2.KpiThreshold(
                kpi=RESPONSE_TIME,
                direction=common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
                max_relative_change=0.15,
                critical=True,
            ),
            common_pb2.KpiThreshold(
                kpi=THROUGHPUT,
                direction=common_pb2.KPI_DIRECTION_HIGHER_IS_BETTER,
                max_relative_change=0.15,
                critical=True,
            ),
            # Resources may move more: a bigger cache uses more memory, on purpose.
            common_pb2.KpiThreshold(
                kpi=LOAD,
                direction=common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
                max_relative_change=0.5,
            ),
            common_pb2.KpiThreshold(
                kpi=MEMORY,
                direction=common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
                max_relative_change=0.5,
            ),
        ],
        min_confidence=0.9,
        on_inconclusive=common_pb2.POLICY_ACTION_PROCEED,
        on_nodata=common_pb2.POLICY_ACTION_HOLD,
        verification_delay=_duration(1.0),
        verification_window=_duration(verification_seconds),
        min_samples=10,
    )
    reply = await suite.predictor.CreatePolicy(predictor_pb.CreatePolicyRequest(policy=policy))
    return str(reply.policy.name)


async def wait_done(suite: Suite, name: str, seconds: float = 120.0) -> common_pb2.Operation:
    """The operation once done (watched, as a client would)."""

    async def watched() -> common_pb2.Operation:
        last = None
        call = suite.orchestrator.WatchOperation(pb.WatchOperationRequest(name=name))
        async for reply in call:
            last = reply.operation
        assert last is not None
        return last

    return await asyncio.wait_for(watched(), seconds)
