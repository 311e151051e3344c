"""A predictor on a real server and database, with the simulated applier and shadow provider."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from google.protobuf import duration_pb2

from cfgclone.common.auth import Credentials
from cfgclone.common.clients import open_channel
from cfgclone.common.settings import PeerSettings, ServiceSettings
from cfgclone.common.store import Store
from cfgclone.predictor.appliers import SimulatedApplier
from cfgclone.predictor.guard import Guard
from cfgclone.predictor.main import predictor_service
from cfgclone.predictor.shadow import SimulatedShadowProvider
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from cfgclone.v1 import predictor_service_pb2_grpc as pb_grpc
from tests.conftest import serve_in_process, service_settings

FINAL = {
    common_pb2.CHANGE_STATE_KEPT,
    common_pb2.CHANGE_STATE_REJECTED,
    common_pb2.CHANGE_STATE_ROLLED_BACK,
    common_pb2.CHANGE_STATE_FAILED,
    common_pb2.CHANGE_STATE_HELD,
}

BASE_CONFIGURATION = {"workers": 4, "cache_mb": 256, "debug_logging": False}


@dataclass
class RunningPredictor:
    stub: pb_grpc.PredictorServiceStub
    guard: Guard
    applier: SimulatedApplier
    provider: SimulatedShadowProvider
    http: str
    """``http://host:port`` of ``/metrics`` and the change reports."""


def settings(
    database_url: str, peers: Mapping[str, str] | None = None, **options: str
) -> ServiceSettings:
    base = service_settings("predictor", database_url)
    defaults = {"SHADOW_SECONDS": "20", "SHADOW_ROUNDS": "3", "RETRAIN_INTERVAL_SECONDS": "0"}
    return ServiceSettings(
        service="predictor",
        server=base.server,
        database=base.database,
        peers=PeerSettings(addresses={**base.peers.addresses, **(peers or {})}),
        options={**defaults, **options},
    )


@asynccontextmanager
async def running_predictor(
    store: Store,
    *,
    shadow: SimulatedShadowProvider | None = None,
    credentials: Credentials | None = None,
    token: str | None = None,
    peers: Mapping[str, str] | None = None,
    **options: str,
) -> AsyncIterator[RunningPredictor]:
    applier = SimulatedApplier()
    provider = shadow or SimulatedShadowProvider(seed=7)
    definition, guard = predictor_service(
        store,
        settings(store.url, peers, **options),
        simulated=applier,
        shadow_providers={"simulated": provider},
    )
    async with serve_in_process([definition], credentials=credentials, metrics_port=0) as (
        running,
        channel,
    ):
        if token is not None:
            channel = open_channel(f"127.0.0.1:{running.port}", PeerSettings(token=token))
        try:
            yield RunningPredictor(
                pb_grpc.PredictorServiceStub(channel),
                guard,
                applier,
                provider,
                f"http://127.0.0.1:{running.metrics_port}",
            )
        finally:
            await guard.close()


async def register(store: Store, prefix: str, labels: Mapping[str, str] | None = None) -> str:
    """A newly registered system's id."""
    system_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    async with store.transaction() as conn:
        await conn.execute(
            "INSERT INTO systems (system_id, hostname, cpu_cores, memory_bytes, labels) "
            "VALUES (%s, %s, 8, 34359738368, %s::jsonb)",
            (system_id, f"{system_id}.test", _json(labels or {})),
        )
    return system_id


def _json(labels: Mapping[str, str]) -> str:
    import json

    return json.dumps(dict(labels))


def configuration(
    content: Mapping[str, object], kind: str = "simulated", **fields: object
) -> common_pb2.Configuration:
    message = common_pb2.Configuration(kind=kind, **fields)  # type: ignore[arg-type]
    message.content.update(dict(content))
    return message


async def with_configuration(
    stub: pb_grpc.PredictorServiceStub, system_id: str, content: Mapping[str, object] | None = None
) -> common_pb2.Configuration:
    reply = await stub.CreateConfiguration(
        pb.CreateConfigurationRequest(
            parent=f"systems/{system_id}",
            configuration=configuration(content or BASE_CONFIGURATION),
        )
    )
    return reply.configuration


async def create_policy(
    stub: pb_grpc.PredictorServiceStub,
    *,
    delay_s: float = 0.0,
    window_s: float = 2.0,
    min_samples: int = 5,
    on_inconclusive: int = common_pb2.POLICY_ACTION_HOLD,
    on_nodata: int = common_pb2.POLICY_ACTION_REJECT,
) -> str:
    """A policy watching the simulated KPIs, with a short verification window."""
    name = f"policies/test-{uuid.uuid4().hex[:8]}"
    policy = common_pb2.Policy(
        name=name,
        thresholds=[
            common_pb2.KpiThreshold(
                kpi="*.duration",
                direction=common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
                max_relative_change=0.10,
                critical=True,
            ),
            common_pb2.KpiThreshold(
                kpi="postgresql.commits",
                direction=common_pb2.KPI_DIRECTION_HIGHER_IS_BETTER,
                max_relative_change=0.10,
                critical=True,
            ),
        ],
        min_confidence=0.9,
        on_inconclusive=on_inconclusive,  # type: ignore[arg-type]
        on_nodata=on_nodata,  # type: ignore[arg-type]
        min_samples=min_samples,
        verification_delay=duration_pb2.Duration(
            seconds=int(delay_s), nanos=int((delay_s % 1) * 1e9)
        ),
        verification_window=duration_pb2.Duration(
            seconds=int(window_s), nanos=int((window_s % 1) * 1e9)
        ),
    )
    reply = await stub.CreatePolicy(pb.CreatePolicyRequest(policy=policy))
    return reply.policy.name


async def settle(
    stub: pb_grpc.PredictorServiceStub, name: str, within: float = 60.0
) -> common_pb2.Change:
    """Poll a change until it reaches a final state (or HELD)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        change = (await stub.GetChange(pb.GetChangeRequest(name=name))).change
        if change.state in FINAL:
            return change
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name} still {change.state} after {within} s: {change}")
        await asyncio.sleep(0.05)
