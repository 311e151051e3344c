"""``cfgclone clone``: a configuration cloned in waves, followed live."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from cfgclone.cli.calls import (
    MODES,
    Services,
    cohort_name,
    policy_name,
    print_json,
    print_table,
    progress_stream,
    run_command,
    short_name,
    state_name,
    system_name,
)
from cfgclone.cli.change_commands import show_window, verification_seconds
from cfgclone.cli.exits import EXIT_USAGE, operation_exit_code
from cfgclone.cli.progress import Progress
from cfgclone.common import display
from cfgclone.v1 import (
    common_pb2,
    orchestrator_service_pb2,
    predictor_service_pb2,
)


def _clone_request(args: argparse.Namespace) -> orchestrator_service_pb2.CloneConfigurationRequest:
    return orchestrator_service_pb2.CloneConfigurationRequest(
        source=system_name(args.source),
        targets=[system_name(t) for t in args.targets],
        target_selector=args.selector,
        target_cohort=cohort_name(args.cohort),
        options=orchestrator_service_pb2.CloneOptions(
            dry_run=args.dry_run,
            mode=MODES[args.mode],
            policy=policy_name(args.policy),
            wave_size=args.wave_size,
            max_fail_fraction=args.max_fail,
            similarity_threshold=args.threshold,
            force_adapt=args.force_adapt,
        ),
        request_id=args.request_id,
    )


async def _watch(services: Services, name: str, out: Any) -> Any:
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
                where = f" {short_name(event.system)}" if event.system else ""
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

    def __init__(self, services: Services, out: Any) -> None:
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
                seconds = await verification_seconds(self._services, change)
                if change.name not in self._windows and seconds > 0:
                    label = f"verifying {short_name(change.name)}"
                    self._windows[change.name] = (change, seconds, Progress(self._out, label))
                    self._show(change.name)

    def _show(self, name: str) -> None:
        change, seconds, progress = self._windows[name]
        show_window(progress, change, seconds)

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
    print_table(
        ("target", "similarity", "adapted", "state", "change", "why"),
        [
            (
                short_name(t.system),
                display.fixed(t.similarity) if t.similarity else "-",
                "yes" if t.adapted else "no",
                state_name(t.state),
                short_name(t.change) if t.change else "-",
                t.explanation,
            )
            for t in result.targets
        ],
    )
    if result.skipped:
        why = " (failure budget exceeded)" if result.stopped_by_failure_budget else ""
        print(f"skipped, untouched{why}: {' '.join(short_name(s) for s in result.skipped)}")


def cmd_clone(args: argparse.Namespace) -> int:
    """Clone a system's configuration to other systems, in waves, guarded by the predictor."""
    if not (args.targets or args.selector or args.cohort):
        print("cfgclone clone: name targets, or give --selector or --cohort", file=sys.stderr)
        return EXIT_USAGE

    async def clone(services: Services) -> int:
        out = progress_stream(args.json)
        reply = await services.orchestrator.CloneConfiguration(
            _clone_request(args), timeout=services.timeout
        )
        print(f"{reply.operation.name}: cloning {args.source}", file=out, flush=True)
        operation = await _watch(services, reply.operation.name, out)
        if args.json:
            print_json(operation)
        else:
            _print_clone_result(operation)
        return operation_exit_code(operation)

    return run_command(clone)
