# PYTHON_ARGCOMPLETE_OK
"""The ``cfgclone`` command line.

Commands print tables for people; with ``--json`` they print one JSON document on
standard output (protobuf messages in their JSON form) and progress, if any, on
standard error. Services are found at ``--<service>``, ``CFGCLONE_<SERVICE>_ADDRESS``,
or where a running ``cfgclone up`` put them (see :mod:`cfgclone.cli.context`).

Exit codes scripts can rely on (see :data:`EXIT_CODES`):

* 0: success; for ``clone`` and ``apply``: every change applied and kept (or, in a
  dry run, predicted and kept);
* 1: failed: a call refused (bad input, not found), a change that failed, an
  operation that failed or was cancelled;
* 2: bad usage;
* 3: a service unreachable;
* 4: rejected: a change predicted to hurt, not applied;
* 5: rolled back: a change applied, found to regress, and rolled back;
* 6: held: a change waiting for an operator to approve or abort it.

When targets end differently, the most serious outcome decides, in the order
failed, rolled back, rejected, held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC
from typing import Any, TypeVar

import argcomplete
import grpc
from google.protobuf import json_format
from google.rpc import code_pb2
from grpc_status import rpc_status

from cfgclone import vocabulary
from cfgclone.cli import context, suite
from cfgclone.cli.progress import Progress
from cfgclone.cli.report_command import add_report_command
from cfgclone.common import display
from cfgclone.common.clients import open_channel
from cfgclone.common.embedded import EmbeddedDatabaseError
from cfgclone.common.errors import error_info, field_violations
from cfgclone.common.settings import (
    DEFAULT_PORTS,
    SERVICE_NAMES,
    SettingsError,
    database_from_env,
)
from cfgclone.common.usage import OneLineParser, usage_error
from cfgclone.v1 import (
    collector_service_pb2,
    collector_service_pb2_grpc,
    common_pb2,
    fingerprint_service_pb2,
    fingerprint_service_pb2_grpc,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
    predictor_service_pb2,
    predictor_service_pb2_grpc,
    similarity_service_pb2,
    similarity_service_pb2_grpc,
)

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_REJECTED = 4
EXIT_ROLLED_BACK = 5
EXIT_HELD = 6

EXIT_CODES = {
    EXIT_OK: "success: applied and kept (a dry run: predicted and kept)",
    EXIT_FAILED: "failed: a call refused, or a change or operation failed or cancelled",
    EXIT_USAGE: "bad usage",
    EXIT_UNAVAILABLE: "a service unreachable",
    EXIT_REJECTED: "rejected: predicted to hurt, not applied",
    EXIT_ROLLED_BACK: "rolled back: applied, regressed, restored",
    EXIT_HELD: "held: waiting for an operator (cfgclone approve / abort)",
}

_STATE_EXITS = {
    "CHANGE_STATE_FAILED": EXIT_FAILED,
    "CHANGE_STATE_ROLLED_BACK": EXIT_ROLLED_BACK,
    "CHANGE_STATE_REJECTED": EXIT_REJECTED,
    "CHANGE_STATE_HELD": EXIT_HELD,
}
_SEVERITY = (EXIT_FAILED, EXIT_ROLLED_BACK, EXIT_REJECTED, EXIT_HELD)


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    for line in display.table_lines(headers, rows):
        print(line)


def _base_port(text: str) -> int:
    """``up --base-port``: a port with room for the four after it."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    highest = 65535 - (len(SERVICE_NAMES) - 1)
    if not 1 <= port <= highest:
        raise argparse.ArgumentTypeError(
            f"must be 1-{highest}, so that the {len(SERVICE_NAMES)} services' ports fit "
            f"(got {port})"
        )
    return port


def cmd_up(args: argparse.Namespace) -> int:
    """Start the suite and keep it running until Ctrl-C."""
    database = database_from_env(os.environ)
    with suite.termination_as_interrupt():
        try:
            with (
                suite.running_suite(database, args.base_port, args.host, args.timeout) as up,
                _context_written(up),
            ):
                print(f"database: {up.database}")
                _print_table(
                    ("service", "address", "pid", "health"),
                    [(s.name, s.address, s.process.pid, "SERVING") for s in up.services],
                )
                print(f"logs: {up.log_dir}")
                print(f"context: {context.context_path()} (other cfgclone commands read it)")
                print("cfgclone is up; press Ctrl-C to stop", flush=True)
                while all(s.process.poll() is None for s in up.services):
                    time.sleep(0.5)
                print("a service exited; stopping the suite", file=sys.stderr)
                return EXIT_FAILED
        except suite.SuiteStartError as error:
            print(f"cfgclone: {error}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("stopped", flush=True)
            return EXIT_OK


@contextlib.contextmanager
def _context_written(up: suite.RunningSuite) -> Iterator[None]:
    """The context file names the suite's services while it runs."""
    addresses = {s.name: s.address for s in up.services}
    context.write_context(context.Context(addresses, os.getpid(), up.database))
    try:
        yield
    finally:
        context.remove_context(os.getpid())


def cmd_context(args: argparse.Namespace) -> int:
    """Where the commands find the services, and which setting says so."""
    resolved = _resolved()
    path = context.context_path()
    found = context.read_context(path)
    if args.json:
        print(
            json.dumps(
                {
                    "file": str(path),
                    "exists": found is not None,
                    "services": {
                        n: {"address": resolved.peers.address(n), "from": resolved.sources[n]}
                        for n in SERVICE_NAMES
                    },
                }
            )
        )
        return EXIT_OK
    print(f"context file: {path}" + ("" if found else " (none: no cfgclone up running)"))
    if found is not None:
        print(f"written by cfgclone up, pid {found.pid}; database: {found.database}")
    _print_table(
        ("service", "address", "from"),
        [(n, resolved.peers.address(n), resolved.sources[n]) for n in SERVICE_NAMES],
    )
    return EXIT_OK


DEMO_START_ATTEMPTS = 3
"""The demo picks other free ports when one it picked was taken before its services bound."""


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the suite on free ports, walk through what it does, and stop it."""
    from cfgclone.cli import demo

    chosen = database_from_env(os.environ)
    database = suite.demo_database(chosen)
    for attempt in range(DEMO_START_ATTEMPTS):
        try:
            with suite.running_suite(database, suite.free_base_port(), "127.0.0.1", 60.0) as up:
                where = up.database
                if not chosen.url:
                    where = (
                        f"the embedded PostgreSQL in {chosen.data_dir}, in a database of "
                        f"its own made afresh ({suite.DEMO_DATABASE})"
                    )
                print(f"cfgclone demo: five services up on {where}\n")
                return asyncio.run(demo.run(up))
        except suite.SuiteStartError as error:
            if error.port_taken and attempt + 1 < DEMO_START_ATTEMPTS:
                continue  # another program took a port between the choice and the bind
            print(f"cfgclone: {error}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_FAILED


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply schema migrations and exit (run once before rolling out new versions)."""
    url, _ = suite.resolve_database(database_from_env(os.environ))
    applied = asyncio.run(suite.migrate(url))
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Health of every service at its configured address."""
    resolved = _resolved()
    peers = resolved.peers

    async def check() -> list[bool]:
        return list(
            await asyncio.gather(
                *(suite.wait_serving(peers.address(n), args.timeout) for n in SERVICE_NAMES)
            )
        )

    states = asyncio.run(check())
    if args.json:
        print(json.dumps({n: ok for n, ok in zip(SERVICE_NAMES, states, strict=True)}))
    else:
        _print_table(
            ("service", "address", "health", "from"),
            [
                (n, peers.address(n), "SERVING" if ok else "UNREACHABLE", resolved.sources[n])
                for n, ok in zip(SERVICE_NAMES, states, strict=True)
            ],
        )
    return EXIT_OK if all(states) else EXIT_UNAVAILABLE


def cmd_systems(args: argparse.Namespace) -> int:
    """List registered systems."""

    async def fetch(services: _Services) -> list[Any]:
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

    systems = _call(fetch)
    if args.json:
        print(json.dumps([json_format.MessageToDict(s) for s in systems]))
        return EXIT_OK
    _print_table(
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


def cmd_agent(args: argparse.Namespace) -> int:
    """Run the agent on this machine (see cfgclone agent --help)."""
    from cfgclone.collector import agent_main

    return agent_main.main(args.agent_args)


def exit_code_for(states: Sequence[common_pb2.ChangeState.ValueType]) -> int:
    """The exit code of changes ending in ``states``: the most serious outcome decides."""
    codes = {_STATE_EXITS.get(common_pb2.ChangeState.Name(s), EXIT_OK) for s in states}
    return next((code for code in _SEVERITY if code in codes), EXIT_OK)


def _system(value: str) -> str:
    """``systems/web-01`` for ``web-01`` or ``systems/web-01``."""
    return value if value.startswith("systems/") else f"systems/{value}"


def _change(value: str) -> str:
    """``systems/db-02/changes/9`` for ``db-02/changes/9`` (as printed) or the full name."""
    return _system(value)


def _cohort(value: str) -> str:
    """``cohorts/0`` for ``0`` (as printed) or ``cohorts/0``; empty stays empty."""
    return value if not value or value.startswith("cohorts/") else f"cohorts/{value}"


def _policy(value: str) -> str:
    """``policies/fast`` for ``fast`` or ``policies/fast``; empty is the default policy."""
    return value if not value or value.startswith("policies/") else f"policies/{value}"


def _short(name: str) -> str:
    """A name as printed: without ``systems/``; every command takes it back."""
    return name.removeprefix("systems/")


_COMMANDS_FOR_METHODS = {
    "BuildFingerprint": "cfgclone fingerprint build",
    "ListCohorts": "cfgclone cohorts",
    "RegisterSystem": "cfgclone agent (which registers its system)",
    "CreatePolicy": "PredictorService.CreatePolicy (see README, grpcurl)",
}


def _in_cli_terms(details: str) -> str:
    """A service's error, with the gRPC methods it suggests replaced by commands."""
    return re.sub(
        r"\b(" + "|".join(_COMMANDS_FOR_METHODS) + r")\b",
        lambda found: _COMMANDS_FOR_METHODS[found.group(1)],
        details,
    )


def _state(state: common_pb2.ChangeState.ValueType) -> str:
    return common_pb2.ChangeState.Name(state).removeprefix("CHANGE_STATE_")


def _verdict(verdict: common_pb2.Verdict.ValueType) -> str:
    return common_pb2.Verdict.Name(verdict).removeprefix("VERDICT_")


def _print_json(message: Any) -> None:
    print(json_format.MessageToJson(message))


def _print_json_list(messages: Sequence[Any]) -> None:
    print(json.dumps([json_format.MessageToDict(m) for m in messages], indent=2))


def _progress(json_output: bool) -> Any:
    """Where progress goes: standard error when standard output carries JSON."""
    return sys.stderr if json_output else sys.stdout


_FLAGS: contextvars.ContextVar[dict[str, str | None]] = contextvars.ContextVar("flags")
"""The ``--<service>`` address flags of the command being run."""


def _resolved() -> context.Resolved:
    return context.resolve(_FLAGS.get({}))


class _Services:
    """Stubs of the services at their configured addresses, on channels closed together."""

    def __init__(self) -> None:
        self.resolved = _resolved()
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


def _call(command: Callable[[_Services], Awaitable[T]]) -> T:
    """Run ``command`` on the services; an unreachable one is named with its setting."""

    async def with_services() -> T:
        services = _Services()
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


def _run(command: Callable[[_Services], Awaitable[int]]) -> int:
    return _call(command)


# --- fingerprints, similarity, cohorts ----------------------------------------------------


def _typical_regime(profile: common_pb2.KpiProfile) -> common_pb2.RegimeStats | None:
    return max(profile.regimes, key=lambda r: r.count, default=None)


def cmd_fingerprint_build(args: argparse.Namespace) -> int:
    """Build a system's fingerprint now, rather than wait for the service to build it."""

    async def build(services: _Services) -> int:
        system = _system(args.system)
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
        reply = await _follow_build(services, building, name, _progress(args.json))
        return _show_fingerprint(reply.fingerprint, args.json)

    return _run(build)


_BUILD_POLL_SECONDS = 0.25


async def _follow_build(
    services: _Services, building: asyncio.Future[Any], name: str, out: Any
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

    async def show(services: _Services) -> int:
        reply = await services.fingerprint.GetFingerprint(
            fingerprint_service_pb2.GetFingerprintRequest(
                name=f"{_system(args.system)}/fingerprints/-"
            ),
            timeout=services.timeout,
        )
        return _show_fingerprint(reply.fingerprint, args.json)

    return _run(show)


def _show_fingerprint(fingerprint: common_pb2.Fingerprint, json_output: bool) -> int:
    if json_output:
        _print_json(fingerprint)
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
    _print_table(
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

    async def similar(services: _Services) -> int:
        reply = await services.similarity.FindSimilarSystems(
            similarity_service_pb2.FindSimilarSystemsRequest(
                system=_system(args.system),
                page_size=args.limit,
                label_selector=args.selector,
            ),
            timeout=services.timeout,
        )
        if args.json:
            _print_json(reply)
            return EXIT_OK
        rows = []
        for score in reply.similar_systems:
            decision = similarity_service_pb2.CloneDecision.Name(score.decision)
            groups = ", ".join(f"{g.group} {g.similarity:.2f}" for g in score.groups)
            rows.append(
                (
                    _short(score.second),
                    display.fixed(score.score),
                    decision.removeprefix("CLONE_DECISION_").lower(),
                    groups,
                )
            )
        _print_table(("system", "score", "decision", "by group"), rows)
        return EXIT_OK

    return _run(similar)


def cmd_cohorts(args: argparse.Namespace) -> int:
    """Groups of systems that behave alike."""

    async def cohorts(services: _Services) -> int:
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
        if args.json:
            _print_json_list(found)
            return EXIT_OK
        _print_table(
            ("cohort", "size", "spread", "members"),
            [
                (
                    c.name.removeprefix("cohorts/"),
                    len(c.members),
                    display.fixed(c.spread),
                    " ".join(_short(m) for m in c.members),
                )
                for c in found
            ],
        )
        return EXIT_OK

    return _run(cohorts)


# --- clone ----------------------------------------------------------------------------------

_MODES = {
    "learned": common_pb2.PREDICTION_MODE_LEARNED,
    "shadow": common_pb2.PREDICTION_MODE_SHADOW,
    "both": common_pb2.PREDICTION_MODE_BOTH,
}


def _clone_request(args: argparse.Namespace) -> orchestrator_service_pb2.CloneConfigurationRequest:
    return orchestrator_service_pb2.CloneConfigurationRequest(
        source=_system(args.source),
        targets=[_system(t) for t in args.targets],
        target_selector=args.selector,
        target_cohort=_cohort(args.cohort),
        options=orchestrator_service_pb2.CloneOptions(
            dry_run=args.dry_run,
            mode=_MODES[args.mode],
            policy=_policy(args.policy),
            wave_size=args.wave_size,
            max_fail_fraction=args.max_fail,
            similarity_threshold=args.threshold,
            force_adapt=args.force_adapt,
        ),
        request_id=args.request_id,
    )


async def _watch(services: _Services, name: str, out: Any) -> Any:
    """Print each new event of the operation until it is done; return it done."""
    shown = 0
    last = None
    call = services.orchestrator.WatchOperation(
        orchestrator_service_pb2.WatchOperationRequest(name=name)
    )
    progress = Progress(out, "clone")
    verifying = _Verifications(services, out)
    ticker = asyncio.create_task(verifying.follow())
    try:
        async for reply in call:
            last = reply.operation
            for event in last.events[shown:]:
                where = f" {_short(event.system)}" if event.system else ""
                progress.write(f"  [{event.step}]{where}: {event.message}")
                if event.step == "verify" and event.system:
                    await verifying.add(event.system)
            shown = len(last.events)
            step = last.events[-1].step if last.events else ""
            progress.update(last.progress_percent, step)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        verifying.close()
        progress.close()
    return last


class _Verifications:
    """The live verification windows of a clone's targets, each with its progress."""

    def __init__(self, services: _Services, out: Any) -> None:
        self._services = services
        self._out = out
        self._windows: dict[str, tuple[Any, float, Progress]] = {}

    async def add(self, system: str) -> None:
        """Follow the change of ``system`` that is being verified, if one is."""
        reply = await self._services.predictor.ListChanges(
            predictor_service_pb2.ListChangesRequest(parent=system, page_size=5),
            timeout=self._services.timeout,
        )
        for change in reply.changes:
            if change.state == common_pb2.CHANGE_STATE_VERIFYING:
                seconds = await _verification_seconds(self._services, change)
                if change.name not in self._windows and seconds > 0:
                    label = f"verifying {_short(change.name)}"
                    self._windows[change.name] = (change, seconds, Progress(self._out, label))
                    self._show(change.name)

    def _show(self, name: str) -> None:
        change, seconds, progress = self._windows[name]
        _show_window(progress, change, seconds)

    async def follow(self) -> None:
        """Update each window every second until its change leaves VERIFYING."""
        while True:
            await asyncio.sleep(1.0)
            for name in list(self._windows):
                change = (
                    await self._services.predictor.GetChange(
                        predictor_service_pb2.GetChangeRequest(name=name),
                        timeout=self._services.timeout,
                    )
                ).change
                if change.state != common_pb2.CHANGE_STATE_VERIFYING:
                    self._windows.pop(name)[2].close()
                else:
                    self._show(name)

    def close(self) -> None:
        for _, _, progress in self._windows.values():
            progress.close()
        self._windows.clear()


def operation_exit_code(operation: Any) -> int:
    """The exit code of a finished clone operation (see the module docstring)."""
    from cfgclone.orchestrator.operations import clone_result_of

    if (
        operation.state == common_pb2.OPERATION_STATE_FAILED
        and operation.error.code == code_pb2.UNAVAILABLE
    ):
        return EXIT_UNAVAILABLE
    result = clone_result_of(operation)
    code = exit_code_for([t.state for t in result.targets]) if result is not None else EXIT_OK
    if code == EXIT_OK and operation.state != common_pb2.OPERATION_STATE_SUCCEEDED:
        return EXIT_FAILED
    return code


def _print_clone_result(operation: Any) -> None:
    from cfgclone.orchestrator.operations import clone_result_of

    state = common_pb2.OperationState.Name(operation.state).removeprefix("OPERATION_STATE_")
    summary = (
        operation.error.message if operation.HasField("error") else operation.events[-1].message
    )
    print(f"\n{operation.name}: {state}: {summary}")
    result = clone_result_of(operation)
    if result is None:
        return
    _print_table(
        ("target", "similarity", "adapted", "state", "change", "why"),
        [
            (
                _short(t.system),
                display.fixed(t.similarity) if t.similarity else "-",
                "yes" if t.adapted else "no",
                _state(t.state),
                _short(t.change) if t.change else "-",
                t.explanation,
            )
            for t in result.targets
        ],
    )
    if result.skipped:
        why = " (failure budget exceeded)" if result.stopped_by_failure_budget else ""
        print(f"skipped, untouched{why}: {' '.join(_short(s) for s in result.skipped)}")


def cmd_clone(args: argparse.Namespace) -> int:
    """Clone a system's configuration to other systems, in waves, guarded by the predictor."""
    if not (args.targets or args.selector or args.cohort):
        print("cfgclone clone: name targets, or give --selector or --cohort", file=sys.stderr)
        return EXIT_USAGE

    async def clone(services: _Services) -> int:
        out = _progress(args.json)
        reply = await services.orchestrator.CloneConfiguration(
            _clone_request(args), timeout=services.timeout
        )
        print(f"{reply.operation.name}: cloning {args.source}", file=out, flush=True)
        operation = await _watch(services, reply.operation.name, out)
        if args.json:
            _print_json(operation)
        else:
            _print_clone_result(operation)
        return operation_exit_code(operation)

    return _run(clone)


# --- apply and changes ------------------------------------------------------------------------


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, dict | list) or value is None:
        value = raw
    return key.strip(), value


_FINAL_OR_HELD = frozenset(
    {
        common_pb2.CHANGE_STATE_KEPT,
        common_pb2.CHANGE_STATE_REJECTED,
        common_pb2.CHANGE_STATE_ROLLED_BACK,
        common_pb2.CHANGE_STATE_FAILED,
        common_pb2.CHANGE_STATE_HELD,
    }
)


async def _verification_seconds(services: _Services, change: Any) -> float:
    """Delay plus window of the policy that verifies ``change``: how long VERIFYING lasts."""
    revision = change.prediction.policy  # policies/{id}/revisions/{n}
    name = "/".join(revision.split("/")[:2]) if revision else "policies/default"
    policy = (
        await services.predictor.GetPolicy(
            predictor_service_pb2.GetPolicyRequest(name=name), timeout=services.timeout
        )
    ).policy
    return float(
        policy.verification_delay.ToTimedelta().total_seconds()
        + policy.verification_window.ToTimedelta().total_seconds()
    )


def _show_window(progress: Progress, change: Any, seconds: float) -> None:
    """How far a change in VERIFYING (since its update time) is through its ``seconds``."""
    elapsed = time.time() - change.update_time.ToDatetime(tzinfo=UTC).timestamp()
    progress.update(100.0 * elapsed / seconds, f"{min(elapsed, seconds):.0f} of {seconds:.0f} s")


async def _follow_change(
    services: _Services, change: Any, out: Any, *, through_held: bool = False
) -> Any:
    """Print each state of ``change`` and the verification's progress until it ends.

    It stops at HELD too unless ``through_held``: then it waits for the operator.
    """
    seen = None
    progress: Progress | None = None
    verifying_for = 0.0
    try:
        while True:
            if change.state != seen:
                seen = change.state
                if progress is not None:
                    progress.close()
                    progress = None
                print(
                    f"  [{_state(change.state).lower()}] {change.state_reason}",
                    file=out,
                    flush=True,
                )
                if change.state == common_pb2.CHANGE_STATE_VERIFYING:
                    verifying_for = await _verification_seconds(services, change)
                    progress = Progress(out, "verifying")
            if progress is not None and verifying_for > 0:
                _show_window(progress, change, verifying_for)
            if change.state in _FINAL_OR_HELD and not (
                through_held and change.state == common_pb2.CHANGE_STATE_HELD
            ):
                return change
            await asyncio.sleep(0.5)
            reply = await services.predictor.GetChange(
                predictor_service_pb2.GetChangeRequest(name=change.name), timeout=services.timeout
            )
            change = reply.change
    finally:
        if progress is not None:
            progress.close()


def _print_change(change: Any) -> None:
    print(f"\n{change.name}: {_state(change.state)}{' (dry run)' if change.dry_run else ''}")
    print(f"  {change.from_configuration or '(none)'} -> {change.to_configuration}")
    if change.prediction.verdict:
        print(f"  predicted {_verdict(change.prediction.verdict)}: {change.prediction.explanation}")
    if change.verification.verdict:
        print(
            f"  verified {_verdict(change.verification.verdict)}: {change.verification.explanation}"
        )
    if change.state_reason:
        print(f"  why: {change.state_reason}")


_UNKNOWN_PARAMETER_FIELD = "change.configuration.content."


def _refused_parameters(error: grpc.aio.AioRpcError) -> list[str] | None:
    """The ``--set`` keys the predictor refused as unknown, each as a line to print; None
    when ``error`` is about something else."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    info = error_info(status) if status is not None else None
    if status is None or info is None or info.reason != "UNKNOWN_PARAMETER":
        return None
    return [
        f"cfgclone apply: --set {v.field.removeprefix(_UNKNOWN_PARAMETER_FIELD)}: "
        f"{v.description} (--allow-new sets it anyway)"
        for v in field_violations(status)
    ]


def cmd_apply(args: argparse.Namespace) -> int:
    """Propose a system's current configuration with overrides: predict, apply, verify."""

    async def apply(services: _Services) -> int:
        system = _system(args.system)
        current = (
            await services.predictor.GetConfiguration(
                predictor_service_pb2.GetConfigurationRequest(name=f"{system}/configurations/-"),
                timeout=services.timeout,
            )
        ).configuration
        configuration = common_pb2.Configuration(
            kind=current.kind,
            content=current.content,
            schema=current.schema,
            source=common_pb2.CONFIGURATION_SOURCE_MANUAL,
            parent=current.name,
        )
        configuration.content.update(dict(args.overrides))
        try:
            reply = await services.predictor.ProposeChange(
                predictor_service_pb2.ProposeChangeRequest(
                    change=predictor_service_pb2.ProposedChange(
                        system=system,
                        configuration=configuration,
                        allow_new_parameters=args.allow_new,
                    ),
                    mode=_MODES[args.mode],
                    policy=_policy(args.policy),
                    dry_run=args.dry_run,
                    request_id=args.request_id or uuid.uuid4().hex,
                ),
                timeout=services.timeout,
            )
        except grpc.aio.AioRpcError as error:
            refused = _refused_parameters(error)
            if refused is None:
                raise
            for line in refused:
                print(line, file=sys.stderr)
            return EXIT_USAGE
        for warning in reply.warnings:
            print(f"cfgclone apply: warning: {warning}", file=sys.stderr)
        out = _progress(args.json)
        print(f"{reply.change.name}: proposed {reply.change.to_configuration}", file=out)
        change = await _follow_change(services, reply.change, out, through_held=args.watch)
        if args.json:
            _print_json(change)
        else:
            _print_change(change)
        return exit_code_for([change.state])

    return _run(apply)


def _parent(system: str | None) -> str:
    return _system(system) if system else "systems/-"


def cmd_changes(args: argparse.Namespace) -> int:
    """Changes of a system (or of every system), newest first."""

    async def changes(services: _Services) -> int:
        reply = await services.predictor.ListChanges(
            predictor_service_pb2.ListChangesRequest(
                parent=_parent(args.system), page_size=args.limit
            ),
            timeout=services.timeout,
        )
        if args.json:
            _print_json_list(reply.changes)
            return EXIT_OK
        _print_table(
            ("change", "state", "from", "to", "predicted", "when (UTC)", "why"),
            [
                (
                    _short(c.name),
                    _state(c.state) + (" (dry run)" if c.dry_run else ""),
                    c.from_configuration.rsplit("/", 1)[-1] or "-",
                    c.to_configuration.rsplit("/", 1)[-1],
                    _verdict(c.prediction.verdict) if c.prediction.verdict else "-",
                    display.when(c.create_time),
                    c.state_reason,
                )
                for c in reply.changes
            ],
        )
        return EXIT_OK

    return _run(changes)


def cmd_rollbacks(args: argparse.Namespace) -> int:
    """Rollbacks (and changes refused before they landed), with their reasons."""

    async def rollbacks(services: _Services) -> int:
        reply = await services.predictor.ListRollbacks(
            predictor_service_pb2.ListRollbacksRequest(
                parent=_parent(args.system), page_size=args.limit
            ),
            timeout=services.timeout,
        )
        if args.json:
            _print_json_list(reply.rollbacks)
            return EXIT_OK
        _print_table(
            ("rollback", "change", "reason", "when (UTC)", "explanation"),
            [
                (
                    _short(r.name),
                    _short(r.change),
                    common_pb2.RollbackReason.Name(r.reason).removeprefix("ROLLBACK_REASON_"),
                    display.when(r.create_time),
                    r.explanation,
                )
                for r in reply.rollbacks
            ],
        )
        return EXIT_OK

    return _run(rollbacks)


def _decide(args: argparse.Namespace, approve: bool) -> int:
    async def decide(services: _Services) -> int:
        if approve:
            change = (
                await services.predictor.ApproveChange(
                    predictor_service_pb2.ApproveChangeRequest(
                        name=_change(args.change), reason=args.reason
                    ),
                    timeout=services.timeout,
                )
            ).change
        else:
            change = (
                await services.predictor.AbortChange(
                    predictor_service_pb2.AbortChangeRequest(
                        name=_change(args.change), reason=args.reason
                    ),
                    timeout=services.timeout,
                )
            ).change
        if getattr(args, "watch", False):
            change = await _follow_change(services, change, _progress(args.json))
        if args.json:
            _print_json(change)
        else:
            _print_change(change)
        return exit_code_for([change.state]) if getattr(args, "watch", False) else EXIT_OK

    return _run(decide)


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve a held change: it goes on to be applied and verified."""
    return _decide(args, approve=True)


def cmd_abort(args: argparse.Namespace) -> int:
    """Abort a change in flight; what was applied is rolled back."""
    return _decide(args, approve=False)


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON on standard output")


def _add_guard_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="predict only; apply nothing")
    parser.add_argument(
        "--mode", choices=sorted(_MODES), default="learned", help="how to predict the impact"
    )
    parser.add_argument("--policy", default="", help="a policy id; default: default")
    parser.add_argument("--request-id", default="", help="idempotency key; a repeat is a no-op")
    _add_json(parser)


def _add_clone_commands(commands: Any) -> None:
    fingerprint = commands.add_parser("fingerprint", help="fingerprints of systems")
    actions = fingerprint.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help=cmd_fingerprint_show.__doc__)
    show.add_argument("system", help="system id or systems/{id}")
    _add_json(show)
    show.set_defaults(func=cmd_fingerprint_show)
    build = actions.add_parser("build", help=cmd_fingerprint_build.__doc__)
    build.add_argument("system", help="system id or systems/{id}")
    build.add_argument(
        "--load-metric",
        default="",
        help="metric whose levels are the load regimes (default: the system's offered load, "
        "else system.cpu.utilization)",
    )
    _add_json(build)
    build.set_defaults(func=cmd_fingerprint_build)

    similar = commands.add_parser("similar", help=cmd_similar.__doc__)
    similar.add_argument("system", help="system id or systems/{id}")
    similar.add_argument("--limit", type=int, default=10, help="how many systems")
    similar.add_argument("--selector", default="", help="only systems whose labels match")
    _add_json(similar)
    similar.set_defaults(func=cmd_similar)

    cohorts = commands.add_parser("cohorts", help=cmd_cohorts.__doc__)
    _add_json(cohorts)
    cohorts.set_defaults(func=cmd_cohorts)

    clone = commands.add_parser("clone", help=cmd_clone.__doc__)
    clone.add_argument("source", help="the system whose current configuration is cloned")
    clone.add_argument("targets", nargs="*", metavar="TARGET", help="target systems")
    clone.add_argument("--selector", default="", help="targets by labels, e.g. role=db")
    clone.add_argument(
        "--cohort", default="", help="targets by cohort, as cfgclone cohorts prints it"
    )
    clone.add_argument("--wave-size", type=int, default=0, help="targets per wave; 0: all")
    clone.add_argument(
        "--max-fail", type=float, default=0.0, help="share of a wave that may fail (0-1)"
    )
    clone.add_argument(
        "--threshold", type=float, default=0.0, help="clone as is at this similarity"
    )
    clone.add_argument("--force-adapt", action="store_true", help="adapt whatever the score")
    _add_guard_options(clone)
    clone.set_defaults(func=cmd_clone)

    apply = commands.add_parser("apply", help=cmd_apply.__doc__)
    apply.add_argument("system", help="system id or systems/{id}")
    apply.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=_parse_override,
        required=True,
        metavar="KEY=VALUE",
        help="a parameter to change (values are JSON when they parse, else text)",
    )
    apply.add_argument(
        "--watch",
        action="store_true",
        help="follow a held change too, until an operator decides and it ends",
    )
    apply.add_argument(
        "--allow-new",
        action="store_true",
        help="set parameters that neither the kind's schema nor the configuration has",
    )
    _add_guard_options(apply)
    apply.set_defaults(func=cmd_apply)

    for name, func in (("changes", cmd_changes), ("rollbacks", cmd_rollbacks)):
        listing = commands.add_parser(name, help=func.__doc__)
        listing.add_argument("system", nargs="?", help="one system; all when omitted")
        listing.add_argument("--limit", type=int, default=50, help="newest N")
        _add_json(listing)
        listing.set_defaults(func=func)

    for name, func in (("approve", cmd_approve), ("abort", cmd_abort)):
        decision = commands.add_parser(name, help=func.__doc__)
        decision.add_argument(
            "change", help="a change as cfgclone changes prints it: {system}/changes/{id}"
        )
        decision.add_argument("--reason", default="", help="recorded with the decision")
        if name == "approve":
            decision.add_argument(
                "--watch",
                action="store_true",
                help="follow the change until it ends; exit with its outcome",
            )
        _add_json(decision)
        decision.set_defaults(func=func)


def _exit_codes_epilog() -> str:
    lines = [f"  {code}  {meaning}" for code, meaning in sorted(EXIT_CODES.items())]
    return "exit codes:\n" + "\n".join(lines) + "\n\n" + _SETTINGS_HELP


_SETTINGS_HELP = """settings (environment variables; flags win):
  CFGCLONE_<SERVICE>_ADDRESS    host:port of a service (else cfgclone up's context file,
                                else 127.0.0.1:50051-50055); see cfgclone context
  CFGCLONE_TOKEN                bearer token sent on every call
  CFGCLONE_TLS_CA               CA bundle that verifies the services (TLS)
  CFGCLONE_TLS_CLIENT_CERT/KEY  client certificate and key (mutual TLS)
  CFGCLONE_CALL_TIMEOUT_SECONDS deadline of each call (default 10)
  CFGCLONE_DATABASE_URL         PostgreSQL of up, demo and migrate (default: embedded)
  CFGCLONE_DATA_DIR             embedded database and logs (default: /var/lib/cfgclone
                                as root, else ~/.local/share/cfgclone)
  CFGCLONE_LOG_DIR              where up writes the services' logs (default DATA_DIR/logs)

shell completion (bash, zsh): eval "$(register-python-argcomplete cfgclone)"
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and shows each option's default when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "%(default)" not in text
            and default is not None
            and default is not False
            and default not in ("", argparse.SUPPRESS)
            and not isinstance(default, list)
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(OneLineParser):
    """The CLI's parser; its sub-command parsers show defaults too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cfgclone")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cfgclone",
        description="Clone configurations between machines, guarded by predicted impact.",
        epilog=_exit_codes_epilog(),
    )
    parser.add_argument("--version", action="version", version=f"cfgclone {_version()}")
    for name in SERVICE_NAMES:
        parser.add_argument(
            f"--{name}",
            dest=f"{name}_address",
            metavar="HOST:PORT",
            help=f"the {name} (default: {context.address_variable(name)}, else where "
            f"cfgclone up runs it, else 127.0.0.1:{DEFAULT_PORTS[name]})",
        )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help=cmd_up.__doc__)
    up.add_argument("--host", default="127.0.0.1", help="interface the services bind")
    up.add_argument(
        "--base-port",
        type=_base_port,
        default=suite.default_base_port(),
        help="port of the collector; the other four follow it",
    )
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for SERVING")
    up.set_defaults(func=cmd_up)

    agent = commands.add_parser("agent", help=cmd_agent.__doc__, add_help=False, prefix_chars="\0")
    agent.add_argument("agent_args", nargs=argparse.REMAINDER)
    agent.set_defaults(func=cmd_agent)

    demo = commands.add_parser("demo", help=cmd_demo.__doc__)
    demo.set_defaults(func=cmd_demo)

    migrate = commands.add_parser("migrate", help=cmd_migrate.__doc__)
    migrate.set_defaults(func=cmd_migrate)

    where = commands.add_parser("context", help=cmd_context.__doc__)
    where.add_argument("--json", action="store_true", help="machine-readable output")
    where.set_defaults(func=cmd_context)

    status = commands.add_parser("status", help=cmd_status.__doc__)
    status.add_argument("--timeout", type=float, default=3.0)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    systems = commands.add_parser("systems", help=cmd_systems.__doc__)
    systems.add_argument("--selector", default="", help="label selector, e.g. role=db")
    systems.add_argument("--json", action="store_true", help="machine-readable output")
    systems.set_defaults(func=cmd_systems)
    _add_clone_commands(commands)
    add_report_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    _FLAGS.set({name: getattr(args, f"{name}_address", None) for name in SERVICE_NAMES})
    try:
        code: int = args.func(args)
    except SettingsError as error:
        return usage_error("cfgclone", str(error))
    except EmbeddedDatabaseError as error:
        print(f"cfgclone: {error}", file=sys.stderr)
        return EXIT_FAILED
    except context.ServiceUnreachable as error:
        print(f"cfgclone: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except grpc.aio.AioRpcError as error:
        details = _in_cli_terms(error.details() or "")
        print(f"cfgclone: {error.code().name}: {details}", file=sys.stderr)
        return EXIT_UNAVAILABLE if error.code() == grpc.StatusCode.UNAVAILABLE else EXIT_FAILED
    return code


if __name__ == "__main__":
    raise SystemExit(main())
