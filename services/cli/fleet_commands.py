"""Commands that read the fleet: ``systems``, ``fingerprint``, ``similar``, ``cohorts``."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from typing import Any

import grpc
from google.protobuf import json_format

from cfgclone import vocabulary
from cfgclone.cli.calls import (
    Services,
    call_services,
    print_json,
    print_json_list,
    print_table,
    progress_stream,
    run_command,
    short_name,
    system_name,
)
from cfgclone.cli.exits import EXIT_OK
from cfgclone.cli.progress import Progress
from cfgclone.common import display
from cfgclone.v1 import (
    collector_service_pb2,
    common_pb2,
    fingerprint_service_pb2,
    similarity_service_pb2,
)


def cmd_systems(args: argparse.Namespace) -> int:
    """List registered systems."""

    async def fetch(services: Services) -> list[Any]:
        systems: list[Any] = []
        token = ""
        while True:
            reply = await services.collector.ListSystems(
                collector_service_pb2.ListSystemsRequest(
                    page_size=500, page_token=token, label_selector=args.selector
                ),
                timeout=services.timeout,
            )
            systems.extend(reply.systems)
            token = reply.next_page_token
            if not token:
                return systems

    systems = call_services(fetch)
    if args.json:
        print(json.dumps([json_format.MessageToDict(s) for s in systems]))
        return EXIT_OK
    print_table(
        ("system", "cores", "memory (GiB)", "arch", "os", "labels"),
        [
            (
                s.name.removeprefix("systems/"),
                s.cpu_cores,
                display.fixed(s.memory_bytes / 2**30, 1),
                s.architecture,
                s.os,
                ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())),
            )
            for s in systems
        ],
    )
    return EXIT_OK


def _typical_regime(profile: common_pb2.KpiProfile) -> common_pb2.RegimeStats | None:
    return max(profile.regimes, key=lambda r: r.count, default=None)


def cmd_fingerprint_build(args: argparse.Namespace) -> int:
    """Build a system's fingerprint now, rather than wait for the service to build it."""

    async def build(services: Services) -> int:
        system = system_name(args.system)
        build_id = f"cli-{uuid.uuid4().hex[:16]}"
        building = asyncio.ensure_future(
            services.fingerprint.BuildFingerprint(
                fingerprint_service_pb2.BuildFingerprintRequest(
                    system=system, load_metric=args.load_metric, build_id=build_id
                ),
                timeout=services.timeout,
            )
        )
        name = f"{system}/fingerprintBuilds/{build_id}"
        reply = await _follow_build(services, building, name, progress_stream(args.json))
        return _show_fingerprint(reply.fingerprint, args.json)

    return run_command(build)


_BUILD_POLL_SECONDS = 0.25


async def _follow_build(
    services: Services, building: asyncio.Future[Any], name: str, out: Any
) -> Any:
    """Show the progress of the build ``name`` until ``building`` (its BuildFingerprint
    call) answers, and return that answer. Progress is a courtesy: a service that cannot
    tell (an older one) leaves only the end shown."""
    progress = Progress(out, "building fingerprint")
    watching = True
    try:
        while watching and not building.done():
            await asyncio.wait({building}, timeout=_BUILD_POLL_SECONDS)
            if building.done():
                break
            try:
                got = await services.fingerprint.GetFingerprintBuild(
                    fingerprint_service_pb2.GetFingerprintBuildRequest(name=name),
                    timeout=services.timeout,
                )
            except grpc.aio.AioRpcError as error:
                watching = error.code() == grpc.StatusCode.NOT_FOUND  # not started yet
                continue
            progress.update(got.build.progress_percent, _build_phase(got.build.phase))
        reply = await building
        progress.update(reply.build.progress_percent or 100.0, _build_phase(reply.build.phase))
        return reply
    finally:
        progress.close()


def _build_phase(phase: fingerprint_service_pb2.FingerprintBuildPhase.ValueType) -> str:
    """A build phase in words: ``load regimes`` for FINGERPRINT_BUILD_PHASE_REGIMES."""
    if phase == fingerprint_service_pb2.FINGERPRINT_BUILD_PHASE_UNSPECIFIED:
        return ""
    words = fingerprint_service_pb2.FingerprintBuildPhase.Name(phase)
    words = words.removeprefix("FINGERPRINT_BUILD_PHASE_").lower().replace("_", " ")
    return {"regimes": "load regimes", "succeeded": "stored"}.get(words, words)


def cmd_fingerprint_show(args: argparse.Namespace) -> int:
    """Show a system's newest fingerprint: its KPIs at the load the system sees most.
    Before the first is built, says how far the system's samples are from enough."""

    async def show(services: Services) -> int:
        reply = await services.fingerprint.GetFingerprint(
            fingerprint_service_pb2.GetFingerprintRequest(
                name=f"{system_name(args.system)}/fingerprints/-"
            ),
            timeout=services.timeout,
        )
        return _show_fingerprint(reply.fingerprint, args.json)

    return run_command(show)


def _show_fingerprint(fingerprint: common_pb2.Fingerprint, json_output: bool) -> int:
    if json_output:
        print_json(fingerprint)
        return EXIT_OK
    quality = fingerprint.quality
    print(f"{fingerprint.name}  ({fingerprint.configuration or 'no configuration'})")
    print(
        f"window {display.when(fingerprint.window_start)} - "
        f"{display.when(fingerprint.window_end)}, {display.plural(quality.samples, 'sample')}, "
        f"load {fingerprint.load_metric} {display.general(quality.load_min, 3)}-"
        f"{display.general(quality.load_max, 3)} {display.unit_of(fingerprint.load_metric)}"
    )
    rows = []
    for profile in fingerprint.kpis:
        typical = _typical_regime(profile)
        knee = (
            display.general(profile.curve.knee_load, 3)
            if profile.curve.HasField("knee_load")
            else "-"
        )
        # Clamped again here for fingerprints stored before the service clamped them.
        bounds = vocabulary.bounds_of(profile.kpi)
        rows.append(
            (
                profile.kpi,
                display.unit_of(profile.kpi),
                len(profile.regimes),
                display.general(bounds.clamp(typical.mean)) if typical else "-",
                display.general(bounds.clamp(typical.p95)) if typical else "-",
                display.general(profile.curve.slope, 3, sign=True),
                knee,
            )
        )
    print_table(
        (
            "kpi",
            "unit",
            "regimes",
            "mean (unit)",
            "p95 (unit)",
            "slope (unit per load)",
            "knee (load)",
        ),
        rows,
    )
    for note in quality.notes:
        print(f"note: {note}")
    return EXIT_OK


def cmd_similar(args: argparse.Namespace) -> int:
    """Systems that behave most like a system, and why."""

    async def similar(services: Services) -> int:
        reply = await services.similarity.FindSimilarSystems(
            similarity_service_pb2.FindSimilarSystemsRequest(
                system=system_name(args.system),
                page_size=args.limit,
                label_selector=args.selector,
            ),
            timeout=services.timeout,
        )
        if args.json:
            print_json(reply)
            return EXIT_OK
        rows = []
        for score in reply.similar_systems:
            decision = similarity_service_pb2.CloneDecision.Name(score.decision)
            groups = ", ".join(f"{g.group} {g.similarity:.2f}" for g in score.groups)
            rows.append(
                (
                    short_name(score.second),
                    display.fixed(score.score),
                    decision.removeprefix("CLONE_DECISION_").lower(),
                    groups,
                )
            )
        print_table(("system", "score", "decision", "by group"), rows)
        return EXIT_OK

    return run_command(similar)


def cmd_cohorts(args: argparse.Namespace) -> int:
    """Groups of systems that behave alike."""

    async def cohorts(services: Services) -> int:
        found: list[Any] = []
        token = ""
        while True:
            reply = await services.similarity.ListCohorts(
                similarity_service_pb2.ListCohortsRequest(page_size=100, page_token=token),
                timeout=services.timeout,
            )
            found.extend(reply.cohorts)
            token = reply.next_page_token
            if not token:
                break
        if args.member:
            member = system_name(args.member)
            found = [c for c in found if member in c.members]
        if args.json:
            print_json_list(found)
            return EXIT_OK
        print_table(
            ("cohort", "size", "spread", "members"),
            [
                (
                    c.name.removeprefix("cohorts/"),
                    len(c.members),
                    display.fixed(c.spread),
                    " ".join(short_name(m) for m in c.members),
                )
                for c in found
            ],
        )
        return EXIT_OK

    return run_command(cohorts)
