"""``cfgclone-predictor``: the predictor service's entry point."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from typing import Any

import grpc

from cfgclone.common.clients import open_channel
from cfgclone.common.errors import CfgcloneError
from cfgclone.common.server import ServiceDefinition, main_for
from cfgclone.common.settings import ServiceSettings, SettingsError
from cfgclone.common.store import Store
from cfgclone.predictor.appliers import SimulatedApplier
from cfgclone.predictor.appliers_registry import Appliers
from cfgclone.predictor.configurations import load_policy
from cfgclone.predictor.guard import Guard
from cfgclone.predictor.history import HistoryImports, ModelCache, VersionFingerprinter
from cfgclone.predictor.learned import HistoryLearner, HistorySettings
from cfgclone.predictor.outcomes import OutcomeCounters
from cfgclone.predictor.prediction import Predictor, SimilarityLookup
from cfgclone.predictor.report.pages import report_page
from cfgclone.predictor.servicer import PredictorServicer
from cfgclone.predictor.settings import PredictorSettings
from cfgclone.predictor.shadow import (
    CommandShadowProvider,
    CommandShadowSettings,
    PostgresShadowProvider,
    ShadowProvider,
    SimulatedShadowProvider,
    command_words,
)
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import fingerprint_service_pb2_grpc as fingerprint_grpc
from cfgclone.v1 import predictor_service_pb2, predictor_service_pb2_grpc
from cfgclone.v1 import similarity_service_pb2 as similarity_pb
from cfgclone.v1 import similarity_service_pb2_grpc as similarity_grpc

SERVICE_NAME = predictor_service_pb2.DESCRIPTOR.services_by_name["PredictorService"].full_name

logger = logging.getLogger(__name__)

Loop = Callable[[], Coroutine[Any, Any, None]]


SIMILARITY_KEPT_S = 30.0
"""How long a system's neighbours are reused before the similarity service is asked again.

Fingerprints are refined over minutes, and the model cache rounds scores before it
compares them, so a fresher answer would seldom change a model; asking on every
prediction would add a round trip to each."""


def similarity_lookup(
    settings: ServiceSettings, neighbours: int, kept_s: float = SIMILARITY_KEPT_S
) -> SimilarityLookup:
    """Nearest systems' scores from the similarity service, reused for ``kept_s``; None
    when it is unreachable (not kept, so the next prediction asks again)."""
    channel: grpc.aio.Channel | None = None
    answers: dict[str, tuple[float, Mapping[str, float]]] = {}

    async def lookup(system: str) -> Mapping[str, float] | None:
        nonlocal channel
        now = time.monotonic()
        kept = answers.get(system)
        if kept is not None and now - kept[0] < kept_s:
            return kept[1]
        if channel is None:
            channel = open_channel(settings.peers.address("similarity"), settings.peers)
        stub = similarity_grpc.SimilarityServiceStub(channel)
        try:
            reply = await stub.FindSimilarSystems(
                similarity_pb.FindSimilarSystemsRequest(system=system, page_size=neighbours),
                timeout=settings.peers.timeout_seconds,
            )
        except grpc.aio.AioRpcError as error:
            logger.warning("similarity lookup for %s failed: %s", system, error.details())
            return None
        scores = {s.second: s.score for s in reply.similar_systems}
        answers[system] = (now, scores)
        return scores

    return lookup


def version_fingerprinter(settings: ServiceSettings) -> VersionFingerprinter:
    """Builds the fingerprint of an imported version through the fingerprint service."""

    async def fingerprint(system: str, configuration: str, start: datetime, end: datetime) -> None:
        request = fingerprint_pb.BuildFingerprintRequest(system=system, configuration=configuration)
        request.start_time.FromDatetime(start)
        request.end_time.FromDatetime(end)
        async with open_channel(settings.peers.address("fingerprint"), settings.peers) as channel:
            stub = fingerprint_grpc.FingerprintServiceStub(channel)
            try:
                await stub.BuildFingerprint(request, timeout=settings.peers.timeout_seconds)
            except grpc.aio.AioRpcError as error:
                logger.warning(
                    "no fingerprint of imported %s: %s %s",
                    configuration,
                    error.code().name,
                    error.details(),
                )

    return fingerprint


def default_shadow_providers() -> dict[str, ShadowProvider]:
    return {"postgresql": PostgresShadowProvider(), "simulated": SimulatedShadowProvider()}


def command_shadow_providers(settings: PredictorSettings) -> dict[str, ShadowProvider]:
    """A command shadow provider per kind with a ``SHADOW_COMMAND_<KIND>`` script."""
    providers: dict[str, ShadowProvider] = {}
    for kind, command in settings.shadow_commands.items():
        words = command_words(command)
        if not words:
            raise SettingsError(f"CFGCLONE_PREDICTOR_SHADOW_COMMAND_{kind.upper()} is empty")
        providers[kind] = CommandShadowProvider(
            kind,
            CommandShadowSettings(
                command=words, step_timeout_s=settings.shadow_step_timeout.total_seconds()
            ),
        )
    return providers


def retrain_loop(models: ModelCache, imports: HistoryImports, settings: PredictorSettings) -> Loop:
    """Every ``retrain_interval``: look again at imported history (late samples change
    examples), then retrain the models in use whose examples changed."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(settings.retrain_interval.total_seconds())
            try:
                await imports.sweep()
                retrained = await models.refresh()
            except CfgcloneError as error:
                logger.warning("retraining skipped: %s", error.message)
                continue
            if retrained:
                logger.info("retrained %s learned models on new examples", retrained)

    return loop


def resume_once(guard: Guard) -> Loop:
    async def resume() -> None:
        resumed = await guard.resume_unfinished()
        if resumed:
            logger.info("resumed %s changes left in flight", resumed)
        await asyncio.Event().wait()

    return resume


def build_guard(
    store: Store,
    settings: ServiceSettings,
    *,
    simulated: SimulatedApplier | None = None,
    shadow_providers: Mapping[str, ShadowProvider] | None = None,
    counters: OutcomeCounters | None = None,
    freeze_models: bool = False,
) -> tuple[Predictor, Guard, ModelCache, PredictorSettings]:
    """The predictor's parts, wired from ``settings``; tests replace the simulated pieces.
    ``freeze_models`` (the service's own process) leaves fitted models out of the garbage
    collector's passes (see :class:`ModelCache`)."""
    own = PredictorSettings.from_options(settings.options)
    counters = counters or OutcomeCounters()
    models = ModelCache(
        store, HistoryLearner(HistorySettings(distant_weight=0.2)), freeze_models=freeze_models
    )
    predictor = Predictor(
        store,
        own,
        models=models,
        # A team's own script for a kind wins over the built-in provider of that kind.
        shadow_providers={
            **(shadow_providers or default_shadow_providers()),
            **command_shadow_providers(own),
        },
        similarity=similarity_lookup(settings, own.similar_systems),
        counters=counters,
    )

    async def policies(name: str) -> Any:
        return await load_policy(store, name)

    guard = Guard(
        store,
        own,
        predictor=predictor,
        appliers=Appliers(own, simulated),
        policies=policies,
        models=models,
        counters=counters,
        fingerprinter=version_fingerprinter(settings),
    )
    return predictor, guard, models, own


def predictor_service(
    store: Store,
    settings: ServiceSettings,
    *,
    simulated: SimulatedApplier | None = None,
    shadow_providers: Mapping[str, ShadowProvider] | None = None,
    freeze_models: bool = False,
) -> tuple[ServiceDefinition, Guard]:
    """The predictor's service definition and its guard (tests reach the guard's counters)."""
    predictor, guard, models, own = build_guard(
        store,
        settings,
        simulated=simulated,
        shadow_providers=shadow_providers,
        freeze_models=freeze_models,
    )
    background: list[Loop] = [resume_once(guard), guard.webhook.run]
    if own.retrain_interval.total_seconds():
        background.append(retrain_loop(models, guard.imports, own))
    servicer = PredictorServicer(store, predictor, guard)
    definition = ServiceDefinition(
        SERVICE_NAME,
        servicer,
        predictor_service_pb2_grpc.add_PredictorServiceServicer_to_server,
        tuple(background),
        metrics=guard.counters.registry,
        pages=(report_page(servicer, settings.peers),),
    )
    return definition, guard


async def build_services(settings: ServiceSettings, store: Store) -> Sequence[ServiceDefinition]:
    """The predictor servicer, the resumption of unfinished changes and its loops."""
    definition, _ = predictor_service(store, settings, freeze_models=True)
    return [definition]


def main() -> int:
    return main_for("predictor", build_services)


if __name__ == "__main__":
    raise SystemExit(main())
