"""Single changes: ``apply``, ``changes``, ``rollbacks``, ``approve``, ``abort``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC
from typing import Any

import grpc
from grpc_status import rpc_status

from cfgclone.cli.calls import (
    MODES,
    Services,
    change_name,
    policy_name,
    print_json,
    print_json_list,
    print_table,
    progress_stream,
    run_command,
    short_name,
    state_name,
    system_name,
    verdict_name,
)
from cfgclone.cli.exits import EXIT_OK, EXIT_USAGE, exit_code_for
from cfgclone.cli.progress import Progress
from cfgclone.common import display
from cfgclone.common.errors import error_info, field_violations
from cfgclone.v1 import (
    common_pb2,
    predictor_service_pb2,
)


def parse_override(text: str) -> tuple[str, Any]:
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


async def verification_seconds(services: Services, change: Any) -> float:
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


def show_window(progress: Progress, change: Any, seconds: float) -> None:
    """How far a change in VERIFYING (since its update time) is through its ``seconds``."""
    elapsed = time.time() - change.update_time.ToDatetime(tzinfo=UTC).timestamp()
    progress.update(100.0 * elapsed / seconds, f"{min(elapsed, seconds):.0f} of {seconds:.0f} s")


async def _follow_change(
    services: Services, change: Any, out: Any, *, through_held: bool = False
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
                    f"  [{state_name(change.state).lower()}] {change.state_reason}",
                    file=out,
                    flush=True,
                )
                if change.state == common_pb2.CHANGE_STATE_VERIFYING:
                    verifying_for = await verification_seconds(services, change)
                    progress = Progress(out, "verifying")
            if progress is not None and verifying_for > 0:
                show_window(progress, change, verifying_for)
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
    print(f"\n{change.name}: {state_name(change.state)}{' (dry run)' if change.dry_run else ''}")
    print(f"  {change.from_configuration or '(none)'} -> {change.to_configuration}")
    if change.prediction.verdict:
        predicted = verdict_name(change.prediction.verdict)
        print(f"  predicted {predicted}: {change.prediction.explanation}")
    if change.verification.verdict:
        verified = verdict_name(change.verification.verdict)
        print(f"  verified {verified}: {change.verification.explanation}")
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

    async def apply(services: Services) -> int:
        system = system_name(args.system)
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
                    mode=MODES[args.mode],
                    policy=policy_name(args.policy),
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
        out = progress_stream(args.json)
        print(f"{reply.change.name}: proposed {reply.change.to_configuration}", file=out)
        change = await _follow_change(services, reply.change, out, through_held=args.watch)
        if args.json:
            print_json(change)
        else:
            _print_change(change)
        return exit_code_for([change.state])

    return run_command(apply)


def _parent(system: str | None) -> str:
    return system_name(system) if system else "systems/-"


def cmd_changes(args: argparse.Namespace) -> int:
    """Changes of a system (or of every system), newest first."""

    async def changes(services: Services) -> int:
        reply = await services.predictor.ListChanges(
            predictor_service_pb2.ListChangesRequest(
                parent=_parent(args.system), page_size=args.limit
            ),
            timeout=services.timeout,
        )
        if args.json:
            print_json_list(reply.changes)
            return EXIT_OK
        print_table(
            ("change", "state", "from", "to", "predicted", "when (UTC)", "why"),
            [
                (
                    short_name(c.name),
                    state_name(c.state) + (" (dry run)" if c.dry_run else ""),
                    c.from_configuration.rsplit("/", 1)[-1] or "-",
                    c.to_configuration.rsplit("/", 1)[-1],
                    verdict_name(c.prediction.verdict) if c.prediction.verdict else "-",
                    display.when(c.create_time),
                    c.state_reason,
                )
                for c in reply.changes
            ],
        )
        return EXIT_OK

    return run_command(changes)


def cmd_rollbacks(args: argparse.Namespace) -> int:
    """Rollbacks (and changes refused before they landed), with their reasons."""

    async def rollbacks(services: Services) -> int:
        reply = await services.predictor.ListRollbacks(
            predictor_service_pb2.ListRollbacksRequest(
                parent=_parent(args.system), page_size=args.limit
            ),
            timeout=services.timeout,
        )
        if args.json:
            print_json_list(reply.rollbacks)
            return EXIT_OK
        print_table(
            ("rollback", "change", "reason", "when (UTC)", "explanation"),
            [
                (
                    short_name(r.name),
                    short_name(r.change),
                    common_pb2.RollbackReason.Name(r.reason).removeprefix("ROLLBACK_REASON_"),
                    display.when(r.create_time),
                    r.explanation,
                )
                for r in reply.rollbacks
            ],
        )
        return EXIT_OK

    return run_command(rollbacks)


def _decide(args: argparse.Namespace, approve: bool) -> int:
    async def decide(services: Services) -> int:
        if approve:
            change = (
                await services.predictor.ApproveChange(
                    predictor_service_pb2.ApproveChangeRequest(
                        name=change_name(args.change), reason=args.reason
                    ),
                    timeout=services.timeout,
                )
            ).change
        else:
            change = (
                await services.predictor.AbortChange(
                    predictor_service_pb2.AbortChangeRequest(
                        name=change_name(args.change), reason=args.reason
                    ),
                    timeout=services.timeout,
                )
            ).change
        if getattr(args, "watch", False):
            change = await _follow_change(services, change, progress_stream(args.json))
        if args.json:
            print_json(change)
        else:
            _print_change(change)
        return exit_code_for([change.state]) if getattr(args, "watch", False) else EXIT_OK

    return run_command(decide)


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve a held change: it goes on to be applied and verified."""
    return _decide(args, approve=True)


def cmd_abort(args: argparse.Namespace) -> int:
    """Abort a change in flight; what was applied is rolled back."""
    return _decide(args, approve=False)
