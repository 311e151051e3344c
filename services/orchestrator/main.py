"""``cfgclone-orchestrator``: the orchestrator service's entry point.

The service calls the four others over channels opened here (TLS, token,
retries and tracing from the peer settings). Its background loop keeps this
process's operations alive in the database and, at start and every lease,
resumes (or fails) the operations a stopped process left running.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from opentelemetry import trace

from cfgclone.common.clients import open_channel
from cfgclone.common.server import ServiceDefinition, main_for
from cfgclone.common.settings import ServiceSettings
from cfgclone.common.store import Store
from cfgclone.orchestrator.adapter import Adapter, EngineAdapter
from cfgclone.orchestrator.operations import OperationRunner, OperationStore, Progress
from cfgclone.orchestrator.peers import Peers
from cfgclone.orchestrator.servicer import OrchestratorServicer
from cfgclone.orchestrator.settings import OrchestratorSettings
from cfgclone.orchestrator.workflow import CloneWorkflow
from cfgclone.v1 import orchestrator_service_pb2, orchestrator_service_pb2_grpc
from cfgclone.v1.orchestrator_service_pb2 import CloneConfigurationRequest

SERVICE_NAME = orchestrator_service_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name

PEER_SERVICES = ("collector", "fingerprint", "similarity", "predictor")


async def orchestrator_services(
    settings: ServiceSettings,
    store: Store,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    adapter: Adapter | None = None,
) -> Sequence[ServiceDefinition]:
    """The orchestrator's servicer and background loop; tests pass their own tracer
    provider (for the calls to other services and the workflow's spans)."""
    own = OrchestratorSettings.from_options(settings.options, settings.peers.timeout_seconds)
    channels: dict[str, grpc.aio.Channel] = {
        name: open_channel(
            settings.peers.address(name), settings.peers, tracer_provider=tracer_provider
        )
        for name in PEER_SERVICES
    }
    peers = Peers.over(channels, own.call_timeout.total_seconds())
    adapter = adapter or EngineAdapter(
        scripts=own.adaptation_scripts, script_timeout=own.adaptation_script_timeout
    )
    tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def run_clone(progress: Progress, request: CloneConfigurationRequest) -> None:
        await CloneWorkflow(peers, adapter, own, progress, request, tracer).run()

    operations = OperationStore(store)
    runner = OperationRunner(operations, run_clone, lease=own.lease, resume=own.resume_interrupted)

    async def background() -> None:
        try:
            await runner.run_forever()
        finally:
            for channel in channels.values():
                await channel.close(None)

    servicer = OrchestratorServicer(
        operations, runner, peers, cancel_wait_seconds=2 * own.call_timeout.total_seconds()
    )
    return [
        ServiceDefinition(
            SERVICE_NAME,
            servicer,
            orchestrator_service_pb2_grpc.add_OrchestratorServiceServicer_to_server,
            background=(background,),
        )
    ]


async def build_services(settings: ServiceSettings, store: Store) -> Sequence[ServiceDefinition]:
    """The orchestrator service, bound to ``store`` (see :func:`orchestrator_services`)."""
    return await orchestrator_services(settings, store)


def main() -> int:
    return main_for("orchestrator", build_services)


if __name__ == "__main__":
    raise SystemExit(main())
