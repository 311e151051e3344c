"""The ``cfgclone`` command line.

Commands print tables for people; with ``--json`` they print one JSON document on
standard output (protobuf messages in their JSON form) and progress, if any, on
standard error. Services are found at ``CFGCLONE_<SERVICE>_ADDRESS``.

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
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import code_pb2

from cfgclone.common.clients import open_channel
from cfgclone.common.settings import SERVICE_NAMES, database_from_env, peers_from_env
from cfgclone.orchestrator import suite
from cfgclone.orchestrator.report_command import add_report_command
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
    cells = [list(map(str, headers)), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def cmd_up(args: argparse.Namespace) -> int:
    """Start the suite and keep it running until Ctrl-C."""
    database = database_from_env(os.environ)
    with suite.termination_as_interrupt():
        try:
            with suite.running_suite(database, args.base_port, args.host, args.timeout) as up:
                print(f"database: {up.database}")
                _print_table(
                    ("service", "address", "pid", "health"),
                    [(s.name, s.address, s.process.pid, "SERVING") for s in up.services],
                )
                print(f"logs: {up.log_dir}")
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


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the suite on free ports, walk through what it does, and stop it."""
    from cfgclone.orchestrator import demo

    database = database_from_env(os.environ)
    try:
        with suite.running_suite(database, suite.free_base_port(), "127.0.0.1", 60.0) as up:
            print(f"cfgclone demo: five services up on {up.database}\n")
            return asyncio.run(demo.run(up))
    except suite.SuiteStartError as error:
        print(f"cfgclone: {error}", file=sys.stderr)
        return EXIT_FAILED


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply schema migrations and exit (run once before rolling out new versions)."""
    url, _ = suite.resolve_database(database_from_env(os.environ))
    applied = asyncio.run(suite.migrate(url))
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Health of every service at its configured address."""
    peers = peers_from_env(os.environ)

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
            ("service", "address", "health"),
            [
                (n, peers.address(n), "SERVING" if ok else "UNREACHABLE")
                for n, ok in zip(SERVICE_NAMES, states, strict=True)
            ],
        )
    return EXIT_OK if all(states) else EXIT_UNAVAILABLE


def cmd_systems(args: argparse.Namespace) -> int:
    """List registered systems."""
    peers = peers_from_env(os.environ)

    async def fetch() -> list[Any]:
        async with open_channel(peers.address("collector"), peers) as channel:
            stub = collector_service_pb2_grpc.CollectorServiceStub(channel)
            systems: list[Any] = []
            token = ""
            while True:
                reply = await stub.ListSystems(
                    collector_service_pb2.ListSystemsRequest(
                        page_size=500, page_token=token, label_selector=args.selector
                    ),
                    timeout=peers.timeout_seconds,
                )
                systems.extend(reply.systems)
                token = reply.next_page_token
                if not token:
                    return systems

    systems = asyncio.run(fetch())
    if args.json:
        print(json.dumps([json_format.MessageToDict(s) for s in systems]))
        return EXIT_OK
    _print_table(
        ("system", "cores", "memory GiB", "arch", "os", "labels"),
        [
            (
                s.name.removeprefix("systems/"),
                s.cpu_cores,
                f"{s.memory_bytes / 2**30:.1f}",
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


def _short(name: str) -> str:
    return name.removeprefix("systems/")


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


class _Services:
    """Stubs of the services at their configured addresses, on channels closed together."""

    def __init__(self) -> None:
        self.peers = peers_from_env(os.environ)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, name: str) -> grpc.aio.Channel:
        if name not in self._channels:
            self._channels[name] = open_channel(self.peers.address(name), self.peers)
        return self._channels[name]

    @property
    def timeout(self) -> float:
        return self.peers.timeout_seconds

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


def _run(command: Callable[[_Services], Awaitable[int]]) -> int:
    async def with_services() -> int:
        services = _Services()
        try:
            return await command(services)
        finally:
            await services.close()

    return asyncio.run(with_services())


# --- fingerprints, similarity, cohorts ----------------------------------------------------


def _typical_regime(profile: common_pb2.KpiProfile) -> common_pb2.RegimeStats | None:
    return max(profile.regimes, key=lambda r: r.count, default=None)


def cmd_fingerprint_build(args: argparse.Namespace) -> int:
    """Build a system's fingerprint now, rather than wait for the service to build it."""

    async def build(services: _Services) -> int:
        reply = await services.fingerprint.BuildFingerprint(
            fingerprint_service_pb2.BuildFingerprintRequest(
                system=_system(args.system), load_metric=args.load_metric
            ),
            timeout=services.timeout,
        )
        return _show_fingerprint(reply.fingerprint, args.json)

    return _run(build)


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
        f"window {fingerprint.window_start.ToJsonString()} - "
        f"{fingerprint.window_end.ToJsonString()}, {quality.samples} samples, "
        f"load {fingerprint.load_metric} {quality.load_min:.3g}-{quality.load_max:.3g}"
    )
    rows = []
    for profile in fingerprint.kpis:
        typical = _typical_regime(profile)
        knee = f"{profile.curve.knee_load:.3g}" if profile.curve.HasField("knee_load") else "-"
        rows.append(
            (
                profile.kpi,
                len(profile.regimes),
                f"{typical.mean:.4g}" if typical else "-",
                f"{typical.p95:.4g}" if typical else "-",
                f"{profile.curve.slope:+.3g}",
                knee,
            )
        )
    _print_table(("kpi", "regimes", "mean", "p95", "slope", "knee load"), rows)
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
                    f"{score.score:.3f}",
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
                    f"{c.spread:.3f}",
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
        target_cohort=args.cohort,
        options=orchestrator_service_pb2.CloneOptions(
            dry_run=args.dry_run,
            mode=_MODES[args.mode],
            policy=args.policy,
            wave_size=args.wave_size,
            max_fail_fraction=args.max_fail,
            similarity_threshold=args.threshold,
            force_adapt=args.force_adapt,
        ),
        request_id=args.request_id,
    )


def _print_event(event: Any, out: Any) -> None:
    where = f" {_short(event.system)}" if event.system else ""
    print(f"  [{event.step}]{where}: {event.message}", file=out, flush=True)


async def _watch(services: _Services, name: str, out: Any) -> Any:
    """Print each new event of the operation until it is done; return it done."""
    shown = 0
    last = None
    call = services.orchestrator.WatchOperation(
        orchestrator_service_pb2.WatchOperationRequest(name=name)
    )
    async for reply in call:
        last = reply.operation
        for event in last.events[shown:]:
            _print_event(event, out)
        shown = len(last.events)
    return last


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
                f"{t.similarity:.3f}" if t.similarity else "-",
                "yes" if t.adapted else "no",
                _state(t.state),
                t.change.rsplit("/", 1)[-1] if t.change else "-",
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


async def _follow_change(services: _Services, change: Any, out: Any) -> Any:
    seen = None
    while True:
        if change.state != seen:
            seen = change.state
            print(f"  [{_state(change.state).lower()}] {change.state_reason}", file=out, flush=True)
        if change.state in _FINAL_OR_HELD:
            return change
        await asyncio.sleep(0.5)
        reply = await services.predictor.GetChange(
            predictor_service_pb2.GetChangeRequest(name=change.name), timeout=services.timeout
        )
        change = reply.change


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
        reply = await services.predictor.ProposeChange(
            predictor_service_pb2.ProposeChangeRequest(
                change=predictor_service_pb2.ProposedChange(
                    system=system, configuration=configuration
                ),
                mode=_MODES[args.mode],
                policy=args.policy,
                dry_run=args.dry_run,
                request_id=args.request_id or uuid.uuid4().hex,
            ),
            timeout=services.timeout,
        )
        out = _progress(args.json)
        print(f"{reply.change.name}: proposed {reply.change.to_configuration}", file=out)
        change = await _follow_change(services, reply.change, out)
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
            ("change", "state", "from", "to", "predicted", "when", "why"),
            [
                (
                    _short(c.name),
                    _state(c.state) + (" (dry run)" if c.dry_run else ""),
                    c.from_configuration.rsplit("/", 1)[-1] or "-",
                    c.to_configuration.rsplit("/", 1)[-1],
                    _verdict(c.prediction.verdict) if c.prediction.verdict else "-",
                    c.create_time.ToJsonString(),
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
            ("rollback", "change", "reason", "when", "explanation"),
            [
                (
                    _short(r.name),
                    r.change.rsplit("/", 1)[-1],
                    common_pb2.RollbackReason.Name(r.reason).removeprefix("ROLLBACK_REASON_"),
                    r.create_time.ToJsonString(),
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
                        name=args.change, reason=args.reason
                    ),
                    timeout=services.timeout,
                )
            ).change
        else:
            change = (
                await services.predictor.AbortChange(
                    predictor_service_pb2.AbortChangeRequest(name=args.change, reason=args.reason),
                    timeout=services.timeout,
                )
            ).change
        if args.json:
            _print_json(change)
        else:
            _print_change(change)
        return EXIT_OK

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
    parser.add_argument("--policy", default="", help="policies/{id}; default policies/default")
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
    clone.add_argument("--cohort", default="", help="targets by cohort: cohorts/{id}")
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
        decision.add_argument("change", help="systems/{id}/changes/{change}")
        decision.add_argument("--reason", default="", help="recorded with the decision")
        _add_json(decision)
        decision.set_defaults(func=func)


def _exit_codes_epilog() -> str:
    lines = [f"  {code}  {meaning}" for code, meaning in sorted(EXIT_CODES.items())]
    return "exit codes:\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cfgclone",
        description="Clone configurations between machines, guarded by predicted impact.",
        epilog=_exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help=cmd_up.__doc__)
    up.add_argument("--host", default="127.0.0.1", help="interface the services bind")
    up.add_argument(
        "--base-port",
        type=int,
        default=suite.default_base_port(),
        help="port of the collector; the others follow (default 50051-50055)",
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
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except grpc.aio.AioRpcError as error:
        print(f"cfgclone: {error.code().name}: {error.details()}", file=sys.stderr)
        return EXIT_UNAVAILABLE if error.code() == grpc.StatusCode.UNAVAILABLE else EXIT_FAILED
    return code


if __name__ == "__main__":
    raise SystemExit(main())
