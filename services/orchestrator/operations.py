"""Long-running operations: stored, recorded as they progress, watched and cancelled.

An operation row holds the ``Operation`` message as its body, the request it
runs (so another process can resume it), the process running it and when that
process last reported. Only the holder writes the body; a process that has not
reported for the lease is presumed gone and another takes the operation over.
Watchers read the row again whenever this process saves it, and at least once
a second for operations run by another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cfgclone.common.errors import ERROR_DOMAIN, CfgcloneError, InvalidArgument, NotFound
from cfgclone.common.message_checks import quote
from cfgclone.common.queries import load_queries
from cfgclone.common.requests import Page
from cfgclone.common.store import Store
from cfgclone.v1 import common_pb2
from cfgclone.v1 import orchestrator_service_pb2 as pb

logger = logging.getLogger(__name__)

_QUERIES = load_queries("cfgclone.orchestrator", "operations.sql")

WATCH_POLL_SECONDS = 1.0
"""How often a watcher rereads an operation that another process may be running."""


def operation_id_from_name(name: str, field: str = "name") -> str:
    """The id of ``operations/{id}``; INVALID_ARGUMENT otherwise."""
    collection, _, operation_id = name.partition("/")
    if collection != "operations" or not operation_id or "/" in operation_id:
        raise InvalidArgument.for_field(field, f"must be operations/{{id}} (got {quote(name)})")
    return operation_id


def new_operation_id() -> str:
    return uuid.uuid4().hex


def _message(row: tuple[Any, ...]) -> common_pb2.Operation:
    operation_id, body, created, updated = row[:4]
    message = common_pb2.Operation.FromString(bytes(body))
    message.name = f"operations/{operation_id}"
    message.create_time.FromDatetime(created)
    message.update_time.FromDatetime(updated)
    return message


def clone_result_of(operation: common_pb2.Operation) -> common_pb2.CloneResult | None:
    """The clone result of an operation: its result, or the one packed into its error.

    A failed or cancelled operation carries its error, and its per-target
    results as a ``CloneResult`` among the error's details.
    """
    if operation.HasField("clone"):
        return operation.clone
    for detail in operation.error.details:
        if detail.Is(common_pb2.CloneResult.DESCRIPTOR):
            result = common_pb2.CloneResult()
            detail.Unpack(result)
            return result
    return None


def error_status(
    code: int, reason: str, message: str, result: common_pb2.CloneResult | None = None
) -> status_pb2.Status:
    """A ``google.rpc.Status`` with an ErrorInfo and, when given, the clone result."""
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    details.append(info)
    if result is not None:
        packed = any_pb2.Any()
        packed.Pack(result)
        details.append(packed)
    return status_pb2.Status(code=code, message=message, details=details)


@dataclass(frozen=True)
class ClaimedOperation:
    """A running operation this process took over from one that stopped reporting."""

    operation: common_pb2.Operation
    request: pb.CloneConfigurationRequest | None
    traceparent: str
    cancel_requested: bool


class OperationStore:
    """Operations in PostgreSQL, written only by the process that runs them.

    ``runner`` identifies this process; it holds the operations it creates or claims.
    """

    def __init__(self, store: Store, runner: str | None = None) -> None:
        self._store = store
        self.runner = runner or uuid.uuid4().hex
        self._saved: dict[str, asyncio.Event] = {}

    async def create(
        self,
        operation: common_pb2.Operation,
        request: pb.CloneConfigurationRequest,
        traceparent: str,
    ) -> tuple[common_pb2.Operation, bool]:
        """Store a new operation, or find the first one of its request id.

        Returns the stored operation and whether it is new.
        """
        operation_id = operation_id_from_name(operation.name)
        body = _body(operation)
        async with self._store.connection() as conn:
            cursor = await conn.execute(
                _QUERIES["insert_operation"],
                {
                    "id": operation_id,
                    "kind": int(operation.kind),
                    "state": int(operation.state),
                    "request_id": request.request_id or None,
                    "body": body,
                    "requested_by": operation.requested_by,
                    "request": request.SerializeToString(deterministic=True),
                    "runner": self.runner,
                    "traceparent": traceparent,
                },
            )
            row = await cursor.fetchone()
            if row is not None:
                return _message((operation_id, body, *row)), True
            cursor = await conn.execute(
                _QUERIES["operation_by_request"], {"request_id": request.request_id}
            )
            first = await cursor.fetchone()
        assert first is not None, "a conflicting insert means the request id is stored"
        return _message(first), False

    async def by_request_id(self, request_id: str) -> common_pb2.Operation | None:
        """The operation first created with ``request_id``, if any."""
        async with self._store.connection() as conn:
            cursor = await conn.execute(
                _QUERIES["operation_by_request"], {"request_id": request_id}
            )
            row = await cursor.fetchone()
        return _message(row) if row else None

    async def get(self, operation_id: str) -> common_pb2.Operation:
        """One operation; NOT_FOUND when there is none of that id."""
        async with self._store.connection() as conn:
            cursor = await conn.execute(_QUERIES["get_operation"], {"id": operation_id})
            row = await cursor.fetchone()
        if row is None:
            raise NotFound(
                f"operations/{operation_id} does not exist; ListOperations shows the operations",
                reason="OPERATION_NOT_FOUND",
                metadata={"operation": f"operations/{operation_id}"},
            )
        return _message(row)

    async def page(self, page: Page) -> tuple[list[common_pb2.Operation], str]:
        """A page of operations, newest first, and the next page's token."""
        async with self._store.connection() as conn:
            cursor = await conn.execute(
                _QUERIES["list_operations"], {"limit": page.size + 1, "offset": page.offset}
            )
            rows = await cursor.fetchall()
        found = [_message(row) for row in rows[: page.size]]
        return found, page.next_token(len(found), len(rows) > page.size)

    async def save(self, operation: common_pb2.Operation) -> tuple[bool, bool]:
        """Write the operation; returns whether this process still holds it, and
        whether a cancel was requested (by any replica)."""
        operation_id = operation_id_from_name(operation.name)
        async with self._store.connection() as conn:
            cursor = await conn.execute(
                _QUERIES["save_operation"],
                {
                    "id": operation_id,
                    "state": int(operation.state),
                    "body": _body(operation),
                    "runner": self.runner,
                },
            )
            row = await cursor.fetchone()
        self._announce(operation_id)
        if row is None:
            return False, False
        updated, cancel_requested = row
        operation.update_time.FromDatetime(updated)
        return True, bool(cancel_requested)

    async def heartbeat(self, operation_id: str) -> bool | None:
        """Report that this process still runs the operation; returns whether a cancel
        was requested, or None when the operation is no longer this process's."""
        async with self._store.connection() as conn:
            cursor = await conn.execute(
                _QUERIES["heartbeat"], {"id": operation_id, "runner": self.runner}
            )
            row = await cursor.fetchone()
        return None if row is None else bool(row[0])

    async def request_cancel(self, operation_id: str) -> bool:
        """Leave a cancel request for whichever process runs the operation.

        Returns whether the operation was running.
        """
        async with self._store.connection() as conn:
            cursor = await conn.execute(_QUERIES["request_cancel"], {"id": operation_id})
            row = await cursor.fetchone()
        return row is not None

    async def release(self, operation_id: str) -> None:
        """Give a running operation up, so that the next process takes it over at once."""
        async with self._store.connection() as conn:
            await conn.execute(
                _QUERIES["release_operation"], {"id": operation_id, "runner": self.runner}
            )

    async def claim_interrupted(self, lease: timedelta) -> list[ClaimedOperation]:
        """Take over the running operations whose runner has been silent for ``lease``."""
        async with self._store.connection() as conn:
            cursor = await conn.execute(
                _QUERIES["claim_interrupted"], {"runner": self.runner, "lease": lease}
            )
            rows = await cursor.fetchall()
        claimed = []
        for operation_id, body, request, traceparent, cancel, created, updated in rows:
            claimed.append(
                ClaimedOperation(
                    operation=_message((operation_id, body, created, updated)),
                    request=pb.CloneConfigurationRequest.FromString(bytes(request))
                    if request
                    else None,
                    traceparent=traceparent,
                    cancel_requested=bool(cancel),
                )
            )
        return claimed

    async def watch(self, operation_id: str) -> AsyncIterator[common_pb2.Operation]:
        """The operation now and after each change, until it is done."""
        last: common_pb2.Operation | None = None
        saved = asyncio.Event()
        try:
            while True:
                # Armed before the read, so a save between the read and the wait is not missed.
                saved = self._saved.setdefault(operation_id, asyncio.Event())
                operation = await self.get(operation_id)
                if operation != last:
                    yield operation
                    last = operation
                if operation.done:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(saved.wait(), WATCH_POLL_SECONDS)
        finally:
            if self._saved.get(operation_id) is saved:
                del self._saved[operation_id]

    def _announce(self, operation_id: str) -> None:
        saved = self._saved.pop(operation_id, None)
        if saved is not None:
            saved.set()


def _body(operation: common_pb2.Operation) -> bytes:
    """The stored body: the message without what the row's columns say."""
    body = common_pb2.Operation()
    body.CopyFrom(operation)
    for field in ("name", "create_time", "update_time"):
        body.ClearField(field)
    return body.SerializeToString(deterministic=True)


class LostOperation(Exception):
    """Another process took the operation over; this one must stop working on it."""


class Progress:
    """The operation being run: events, per-target results and the end, each saved as it
    happens. One instance per running operation; safe for concurrent targets."""

    def __init__(
        self, operations: OperationStore, operation: common_pb2.Operation, total_targets: int
    ) -> None:
        self._operations = operations
        self.operation = operation
        self._total = max(total_targets, 1)
        self._lock = asyncio.Lock()
        self.cancel_requested = asyncio.Event()
        if not operation.HasField("clone"):
            operation.clone.SetInParent()

    @property
    def results(self) -> Sequence[common_pb2.CloneTargetResult]:
        return list(self.operation.clone.targets)

    async def event(self, step: str, message: str, system: str = "") -> None:
        """Record one step's evidence."""
        async with self._lock:
            event = self.operation.events.add(step=step, message=message, system=system)
            event.time.GetCurrentTime()
            await self._save()

    async def target_done(self, result: common_pb2.CloneTargetResult, message: str) -> None:
        """Record a target's outcome with the event that reports it."""
        async with self._lock:
            self.operation.clone.targets.append(result)
            event = self.operation.events.add(step="result", message=message, system=result.system)
            event.time.GetCurrentTime()
            self._update_progress()
            await self._save()

    async def succeed(self, result: common_pb2.CloneResult, message: str) -> None:
        await self._finish(common_pb2.OPERATION_STATE_SUCCEEDED, result, None, message)

    async def fail(
        self, code: int, reason: str, message: str, result: common_pb2.CloneResult
    ) -> None:
        status = error_status(code, reason, message, result)
        await self._finish(common_pb2.OPERATION_STATE_FAILED, None, status, message)

    async def cancel(self, message: str, result: common_pb2.CloneResult) -> None:
        status = error_status(code_pb2.CANCELLED, "OPERATION_CANCELLED", message, result)
        await self._finish(common_pb2.OPERATION_STATE_CANCELLED, None, status, message)

    async def _finish(
        self,
        state: common_pb2.OperationState.ValueType,
        result: common_pb2.CloneResult | None,
        error: status_pb2.Status | None,
        message: str,
    ) -> None:
        async with self._lock:
            event = self.operation.events.add(step="done", message=message)
            event.time.GetCurrentTime()
            self.operation.state = state
            self.operation.done = True
            self.operation.progress_percent = 100
            if error is not None:
                self.operation.error.CopyFrom(error)
            else:
                assert result is not None
                self.operation.clone.CopyFrom(result)
            await self._save()

    def _update_progress(self) -> None:
        done = len(self.operation.clone.targets) + len(self.operation.clone.skipped)
        self.operation.progress_percent = min(99, done * 100 // self._total)

    async def _save(self) -> None:
        held, cancel = await self._operations.save(self.operation)
        if not held:
            raise LostOperation(f"{self.operation.name} is run by another process now")
        if cancel:
            self.cancel_requested.set()


RunWorkflow = Callable[[Progress, pb.CloneConfigurationRequest], Awaitable[None]]
"""Runs one operation's workflow to its end, recording through the progress."""


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the current span, stored so a resumed run continues it."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")


def _trace_context(traceparent: str) -> otel_context.Context | None:
    if not traceparent:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


class OperationRunner:
    """Runs operations in the background of this process, and takes over abandoned ones.

    An operation started by an RPC runs in a task created in the RPC's context,
    so its spans belong to the RPC's trace. :meth:`run_forever` is the service's
    background loop: it reports this process's operations as alive (and picks up
    cancel requests left by other replicas), and claims the operations whose
    runner went silent, resuming them or, with resuming off, failing them.
    """

    def __init__(
        self,
        operations: OperationStore,
        run_workflow: RunWorkflow,
        *,
        lease: timedelta,
        resume: bool = True,
    ) -> None:
        self._operations = operations
        self._run_workflow = run_workflow
        self._lease = lease
        self._resume = resume
        self._running: dict[str, tuple[asyncio.Task[None], Progress]] = {}

    def start(
        self,
        operation: common_pb2.Operation,
        request: pb.CloneConfigurationRequest,
        *,
        parent: otel_context.Context | None = None,
        cancel_requested: bool = False,
        resumed: bool = False,
    ) -> None:
        """Run ``operation`` in a background task of this process."""
        operation_id = operation_id_from_name(operation.name)
        progress = Progress(self._operations, operation, len(request.targets))
        if cancel_requested:
            progress.cancel_requested.set()
        task = asyncio.create_task(
            self._run(progress, request, parent, resumed), name=operation.name
        )
        self._running[operation_id] = (task, progress)
        task.add_done_callback(lambda _: self._running.pop(operation_id, None))

    async def _run(
        self,
        progress: Progress,
        request: pb.CloneConfigurationRequest,
        parent: otel_context.Context | None,
        resumed: bool,
    ) -> None:
        token = otel_context.attach(parent) if parent is not None else None
        name = progress.operation.name
        try:
            if resumed:
                await progress.event("resume", "resumed by another orchestrator process")
            await self._run_workflow(progress, request)
        except LostOperation:
            logger.warning("%s was taken over by another process; stopped here", name)
        except asyncio.CancelledError:
            # Shutting down: hand the operation to the next process at once.
            with contextlib.suppress(CfgcloneError):
                await self._operations.release(operation_id_from_name(name))
            raise
        except Exception:
            logger.exception("%s ended by an unexpected error", name)
            await self._fail_unexpectedly(progress)
        finally:
            if token is not None:
                otel_context.detach(token)

    async def _fail_unexpectedly(self, progress: Progress) -> None:
        result = clone_result_of(progress.operation) or common_pb2.CloneResult()
        message = "internal error in the orchestrator; see its log"
        try:
            await progress.fail(code_pb2.INTERNAL, "INTERNAL", message, result)
        except (CfgcloneError, LostOperation) as error:
            # Not recorded: the lease runs out and another run takes the operation over.
            name = progress.operation.name
            logger.warning("%s: the failure could not be recorded: %s", name, error)

    async def cancel(self, operation_id: str, wait_seconds: float) -> common_pb2.Operation:
        """Ask the operation to stop, wait up to ``wait_seconds`` for it, return it."""
        running = await self._operations.request_cancel(operation_id)
        local = self._running.get(operation_id)
        if local is not None:
            task, progress = local
            progress.cancel_requested.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), wait_seconds)
        elif running:
            await self._wait_done(operation_id, wait_seconds)
        return await self._operations.get(operation_id)

    async def _wait_done(self, operation_id: str, wait_seconds: float) -> None:
        async def done() -> None:
            async for operation in self._operations.watch(operation_id):
                if operation.done:
                    return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done(), wait_seconds)

    async def run_forever(self) -> None:
        """Heartbeats and take-overs until cancelled; then stop this process's runs."""
        beat = self._lease.total_seconds() / 3
        try:
            while True:
                try:
                    await self.take_over_interrupted()
                except Exception as error:  # an outage (or a schema not migrated yet) must
                    # not end the loop: the next round tries again
                    logger.warning("interrupted operations not checked: %s", error)
                for _ in range(3):
                    await asyncio.sleep(beat)
                    await self._heartbeats()
        finally:
            await self.stop()

    async def _heartbeats(self) -> None:
        for operation_id, (_, progress) in list(self._running.items()):
            try:
                cancel = await self._operations.heartbeat(operation_id)
            except Exception as error:  # the loop must outlive an outage
                logger.warning("heartbeat of operations/%s failed: %s", operation_id, error)
                continue
            if cancel:
                progress.cancel_requested.set()

    async def take_over_interrupted(self) -> int:
        """Resume (or fail) the running operations whose runner went silent."""
        claimed = await self._operations.claim_interrupted(self._lease)
        for found in claimed:
            name = found.operation.name
            if self._resume and found.request is not None:
                logger.info("resuming %s", name)
                self.start(
                    found.operation,
                    found.request,
                    parent=_trace_context(found.traceparent),
                    cancel_requested=found.cancel_requested,
                    resumed=True,
                )
            else:
                logger.info("failing %s: interrupted and not resumed", name)
                await self._abandon(found)
        return len(claimed)

    async def _abandon(self, found: ClaimedOperation) -> None:
        operation = found.operation
        targets = list(found.request.targets) if found.request is not None else []
        progress = Progress(self._operations, operation, len(targets))
        result = clone_result_of(operation) or common_pb2.CloneResult()
        touched = {target.system for target in result.targets}
        del result.skipped[:]
        result.skipped.extend(t for t in targets if t not in touched)
        await progress.fail(
            code_pb2.ABORTED,
            "INTERRUPTED",
            "the orchestrator stopped while this operation ran, and resuming is off "
            "(CFGCLONE_ORCHESTRATOR_RESUME_INTERRUPTED); changes already proposed go on in "
            "the predictor (see ListChanges); skipped targets were not touched",
            result,
        )

    async def stop(self) -> None:
        """Stop this process's runs; each hands its operation over for the next process."""
        tasks = [task for task, _ in self._running.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
