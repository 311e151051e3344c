"""Guarded apply: the durable state machine of a change.

propose -> PREDICTING -> (NEGATIVE: REJECTED, logged as a rollback) | (INCONCLUSIVE:
HELD for an operator) | APPLYING -> VERIFYING -> KEPT | ROLLED_BACK, or FAILED when even
the rollback fails (the system is then flagged). The state is written before each step,
so a restarted predictor knows where every change stood: a change that was predicting
is predicted again, one that was applying is rolled back (whether the tool finished is
unknown), and one that was verifying is verified over the same window. A system is never
left on an unverified configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from cfgclone.collector.reads import MetricSamples, read_samples
from cfgclone.common.errors import FailedPrecondition
from cfgclone.common.store import Store
from cfgclone.predictor import repository
from cfgclone.predictor.appliers import ApplyFailed
from cfgclone.predictor.appliers_registry import Appliers, Target
from cfgclone.predictor.change import DEFAULT_DIRECTIONS, UnknownKpiDirection
from cfgclone.predictor.codec import (
    Content,
    StoredPolicy,
    prediction_message,
    verdict_of,
)
from cfgclone.predictor.history import (
    HistoryImports,
    ModelCache,
    VersionFingerprinter,
    learn_from_outcome,
)
from cfgclone.predictor.outcomes import OutcomeCounters, Webhook, change_message
from cfgclone.predictor.policy import PolicyAction
from cfgclone.predictor.prediction import Predictor, ProposedConfiguration
from cfgclone.predictor.settings import PredictorSettings
from cfgclone.predictor.states import (
    IN_FLIGHT,
    ChangeState,
    ConfigurationSource,
    PredictionMode,
    RollbackReason,
)
from cfgclone.predictor.verdict import KpiResult, Verdict
from cfgclone.predictor.verification import LiveVerifier, TimedSamples, VerifierSettings
from cfgclone.v1 import common_pb2

logger = logging.getLogger(__name__)

PolicyLoader = Callable[[str], Awaitable[StoredPolicy]]
"""Loads a policy revision by name (``policies/{id}``)."""

_APPLYING = "applying"
"""State reason written just before the applier is called: a change found in APPLYING
with this reason and no apply time was interrupted inside the tool."""


@dataclass(frozen=True)
class Proposal:
    """A validated proposal, ready to be stored."""

    system: repository.SystemRow
    current: repository.StoredConfiguration
    configuration: repository.NewConfiguration
    mode: PredictionMode
    policy: StoredPolicy
    dry_run: bool
    request_id: str | None
    requested_by: str


class Guard:
    """Runs changes through prediction, apply, verification and rollback."""

    def __init__(
        self,
        store: Store,
        settings: PredictorSettings,
        *,
        predictor: Predictor,
        appliers: Appliers,
        policies: PolicyLoader,
        models: ModelCache,
        counters: OutcomeCounters | None = None,
        webhook: Webhook | None = None,
        fingerprinter: VersionFingerprinter | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._predictor = predictor
        self._appliers = appliers
        self._policies = policies
        self._models = models
        self.counters = counters or OutcomeCounters()
        self.webhook = webhook or Webhook(settings.webhook_url)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.imports = HistoryImports(
            store, fingerprinter, on_imported=lambda _: models.refresh_soon()
        )

    # -- entry points --------------------------------------------------------------

    async def propose(self, proposal: Proposal) -> int:
        """Store the proposed version and the change, then drive it in the background.

        A dry run needs no applier and blocks nothing: it is predicted and explained,
        and its record (a version never applied, a change that is never in flight)
        is all it leaves."""
        if not proposal.dry_run:
            self._appliers.target(proposal.system, proposal.configuration.kind)
        async with self._store.transaction() as conn:
            version = await repository.insert_configuration(
                conn, proposal.system, proposal.configuration
            )
            change_id = await repository.insert_change(
                conn,
                repository.NewChange(
                    system=proposal.system,
                    request_id=proposal.request_id,
                    from_version=proposal.current.version,
                    to_version=version.version,
                    dry_run=proposal.dry_run,
                    mode=proposal.mode,
                    policy=proposal.policy.message.name,
                    requested_by=proposal.requested_by,
                    kind=proposal.configuration.kind,
                ),
            )
        self._start(change_id)
        return change_id

    async def resume_unfinished(self) -> int:
        """Pick up every change a previous process left in flight; how many."""
        async with self._store.connection() as conn:
            ids = await repository.unfinished_change_ids(conn)
        for change_id in ids:
            self._start(change_id)
        return len(ids)

    async def approve(self, change_id: int, system_id: str, actor: str, reason: str) -> None:
        """Let a HELD change proceed."""
        override = _override(actor, reason or "approved")
        await self._reopen(change_id, system_id, {ChangeState.HELD}, override, "approved")

    async def force(self, change_id: int, system_id: str, actor: str, reason: str) -> None:
        """Apply a change past a NEGATIVE (or undecided) verdict."""
        allowed = {ChangeState.HELD, ChangeState.REJECTED}
        await self._reopen(change_id, system_id, allowed, _override(actor, reason), "forced")

    async def abort(self, change_id: int, system_id: str, actor: str, reason: str) -> None:
        """Stop a change in flight; what was applied is rolled back."""
        why = f"aborted by {actor}" + (f": {reason}" if reason else "")
        async with self._store.transaction() as conn:
            row = await repository.change(conn, change_id, for_system=system_id)
            state = await repository.lock_change(conn, change_id)
            if state not in IN_FLIGHT:
                raise _not_in(row, state, "in flight")
            task = self._tasks.pop(change_id, None)
            if task is not None:
                task.cancel()
            applied = state == ChangeState.HELD and row.applied_at is not None
            if state in (ChangeState.APPLYING, ChangeState.VERIFYING) or applied:
                await repository.update_change(
                    conn, change_id, repository.StateUpdate(state, f"{why}; rolling back")
                )
            else:
                await self._finish_refused(conn, row, RollbackReason.ABORTED, why, None)
                return
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        fresh = await self._row(change_id)
        await self._roll_back(fresh, RollbackReason.ABORTED, why, None)

    async def close(self) -> None:
        """Stop driving changes (they resume at the next start)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.imports.close()
        await self._models.close()

    # -- the state machine ---------------------------------------------------------

    def _start(self, change_id: int) -> None:
        task = asyncio.create_task(self._drive(change_id), name=f"change-{change_id}")
        self._tasks[change_id] = task
        task.add_done_callback(lambda t: self._forget(change_id, t))

    def _forget(self, change_id: int, task: asyncio.Task[None]) -> None:
        if self._tasks.get(change_id) is task:
            del self._tasks[change_id]
        if not task.cancelled() and task.exception() is not None:
            logger.error("change %s stopped: %r", change_id, task.exception())

    async def _drive(self, change_id: int) -> None:
        row = await self._row(change_id)
        while row.state in IN_FLIGHT and row.state != ChangeState.HELD:
            step: Callable[[repository.ChangeRow], Awaitable[None]] = {
                ChangeState.PROPOSED: self._predict,
                ChangeState.PREDICTING: self._predict,
                ChangeState.APPLYING: self._apply,
                ChangeState.VERIFYING: self._verify,
            }[ChangeState(row.state)]
            await step(row)
            row = await self._row(change_id)

    async def _predict(self, row: repository.ChangeRow) -> None:
        await self._set(row, repository.StateUpdate(ChangeState.PREDICTING, "predicting"))
        policy = await self._policies(row.policy)
        async with self._store.connection() as conn:
            system = await repository.system(conn, row.system_id)
            current = await repository.configuration(conn, system, row.from_version or 0)
            proposed = await repository.configuration(conn, system, row.to_version)
        proposal = ProposedConfiguration(system, current, proposed.kind, proposed.content)
        mode = PredictionMode(row.mode)
        prediction = await self._predictor.predict(proposal, mode, policy, wait_for_shadow=True)
        body = prediction.SerializeToString()
        action = _action(policy, verdict_of(prediction))
        if row.dry_run and action is not PolicyAction.PROCEED:
            would = "be refused" if action is PolicyAction.REJECT else "be held for an operator"
            state = ChangeState.REJECTED if action is PolicyAction.REJECT else ChangeState.HELD
            why = f"dry run: would {would}: {prediction.explanation}; nothing applied"
            await self._set(row, repository.StateUpdate(state, why, body))
            self.counters.changes.labels("dry_run").inc()
            return
        if action is PolicyAction.REJECT:
            async with self._store.transaction() as conn:
                await repository.update_change(
                    conn, row.id, repository.StateUpdate(row.state, row.state_reason, body)
                )
                fresh = await repository.change(conn, row.id)
                await self._finish_refused(
                    conn,
                    fresh,
                    RollbackReason.PREDICTED_NEGATIVE,
                    f"refused before it was applied: {prediction.explanation}",
                    prediction,
                )
            return
        if action is PolicyAction.HOLD:
            why = f"held for an operator: {prediction.explanation}"
            await self._set(row, repository.StateUpdate(ChangeState.HELD, why, body))
            self.webhook.send(change_message("held", await self._row(row.id), why))
            return
        await self._proceed(row, body, f"prediction {_verdict_word(prediction)}")

    async def _proceed(self, row: repository.ChangeRow, body: bytes | None, why: str) -> None:
        if row.dry_run:
            reason = f"dry run: {why}; nothing applied"
            await self._set(row, repository.StateUpdate(ChangeState.KEPT, reason, body))
            self.counters.changes.labels("dry_run").inc()
            return
        await self._set(row, repository.StateUpdate(ChangeState.APPLYING, why, body))

    async def _apply(self, row: repository.ChangeRow) -> None:
        if row.applied_at is None and row.state_reason == _APPLYING:
            # Applying when the previous process stopped: whether the tool finished is
            # unknown, so the previous version is restored.
            await self._roll_back(
                row, RollbackReason.INTERRUPTED, "the predictor stopped while applying", None
            )
            return
        await self._set(row, repository.StateUpdate(ChangeState.APPLYING, _APPLYING))
        target, configuration = await self._target_and_content(row, row.to_version)
        try:
            await self._run_applier(target.applier.apply(target.system, configuration))
        except ApplyFailed as error:
            await self._roll_back(row, RollbackReason.APPLY_FAILED, f"apply failed: {error}", None)
            return
        applied = datetime.now(UTC)
        async with self._store.transaction() as conn:
            system = await repository.system(conn, row.system_id)
            await repository.mark_applied(conn, system, row.to_version, applied)
            await repository.update_change(
                conn,
                row.id,
                repository.StateUpdate(
                    ChangeState.VERIFYING, "applied; verifying", applied_at=applied
                ),
            )

    async def _verify(self, row: repository.ChangeRow) -> None:
        policy = await self._policies(row.policy)
        rules = policy.rules
        assert row.applied_at is not None
        window_start = row.applied_at + rules.delay
        window_end = window_start + rules.window
        wait = (window_end - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        results = await self._observe(row, policy, window_start, window_end)
        reading = policy.policy.verdict(results)
        verification = prediction_message(
            results, reading, mode=PredictionMode.UNSPECIFIED, policy_name=policy.message.name
        )
        body = verification.SerializeToString()
        # No data after the change: the policy's no-data action, as in prediction. An
        # undecided verdict the policy would hold rolls back: a running change that could
        # not be shown harmless is not left waiting on a guess.
        action = _action(policy, reading.verdict)
        if action is PolicyAction.HOLD and reading.verdict is not Verdict.NODATA:
            action = PolicyAction.REJECT
        if action is PolicyAction.PROCEED:
            why = f"verified live: {reading.explanation}"
            await self._set(row, repository.StateUpdate(ChangeState.KEPT, why, None, body))
            self.counters.changes.labels("kept").inc()
        elif action is PolicyAction.HOLD:
            why = (
                f"applied, held for an operator after live verification "
                f"{reading.verdict.value}: {reading.explanation}; approve keeps it, "
                "abort rolls it back"
            )
            await self._set(row, repository.StateUpdate(ChangeState.HELD, why, None, body))
            self.webhook.send(change_message("held", await self._row(row.id), why))
            return
        else:
            async with self._store.transaction() as conn:
                await repository.update_change(
                    conn,
                    row.id,
                    repository.StateUpdate(row.state, "verification failed", verification=body),
                )
            fresh = await self._row(row.id)
            await self._roll_back(
                fresh,
                RollbackReason.VERIFICATION_FAILED,
                f"live verification {reading.verdict.value}: {reading.explanation}",
                verification,
            )
        await learn_from_outcome(self._store, await self._row(row.id), results)

    async def _observe(
        self, row: repository.ChangeRow, policy: StoredPolicy, start: datetime, end: datetime
    ) -> tuple[KpiResult, ...]:
        """Each KPI's samples in the window judged against the system's own history."""
        assert row.applied_at is not None
        history_start = row.applied_at - self._settings.history
        async with self._store.connection() as conn:
            history = await read_samples(conn, row.system_id, history_start, row.applied_at)
            window = await read_samples(conn, row.system_id, start, end)
        verifier = LiveVerifier(VerifierSettings(min_samples=max(policy.rules.min_samples, 2)))
        results = []
        for kpi in sorted(set(history) | set(window)):
            try:
                direction = DEFAULT_DIRECTIONS.direction(kpi)
            except UnknownKpiDirection:
                continue
            threshold = policy.policy.threshold_for(kpi)
            tolerance = threshold.max_relative_change if threshold is not None else None
            before, after = _timed(history.get(kpi)), _timed(window.get(kpi))
            results.append(verifier.verify(kpi, direction, before, after, tolerance=tolerance))
        return tuple(results)

    async def _roll_back(
        self,
        row: repository.ChangeRow,
        reason: RollbackReason,
        why: str,
        observed: common_pb2.Prediction | None,
    ) -> None:
        """Restore the previous version; FAILED (and the system flagged) if that fails too."""
        target, previous = await self._target_and_content(row, row.from_version or 0)
        try:
            await self._run_applier(target.applier.rollback(target.system, previous))
        except ApplyFailed as error:
            await self._fail(row, f"{why}; the rollback failed too: {error}", reason, observed)
            return
        restored = datetime.now(UTC)
        async with self._store.transaction() as conn:
            system = await repository.system(conn, row.system_id)
            await repository.insert_configuration(
                conn,
                system,
                await self._restored_version(conn, system, row, restored),
            )
            await repository.update_change(
                conn, row.id, repository.StateUpdate(ChangeState.ROLLED_BACK, why)
            )
            await self._log_rollback(conn, row, reason, why, observed)
        self.counters.changes.labels("rolled_back").inc()
        self.webhook.send(change_message("rolled_back", await self._row(row.id), why))

    async def _restored_version(
        self, conn: Any, system: repository.SystemRow, row: repository.ChangeRow, at: datetime
    ) -> repository.NewConfiguration:
        previous = await repository.configuration(conn, system, row.from_version or 0)
        return repository.NewConfiguration(
            kind=previous.kind,
            content=previous.content,
            schema=previous.schema,
            content_hash=previous.content_hash,
            author="cfgclone-predictor",
            source=ConfigurationSource.ROLLBACK,
            parent_version=previous.version,
            applied_at=at,
        )

    async def _fail(
        self,
        row: repository.ChangeRow,
        why: str,
        reason: RollbackReason,
        observed: common_pb2.Prediction | None,
    ) -> None:
        async with self._store.transaction() as conn:
            await repository.update_change(
                conn, row.id, repository.StateUpdate(ChangeState.FAILED, why)
            )
            await repository.flag_system(conn, row.system_key, f"{row.name}: {why}")
            await self._log_rollback(conn, row, reason, why, observed)
        self.counters.changes.labels("failed").inc()
        self.webhook.send(change_message("failed", await self._row(row.id), why))

    async def _finish_refused(
        self,
        conn: Any,
        row: repository.ChangeRow,
        reason: RollbackReason,
        why: str,
        prediction: common_pb2.Prediction | None,
    ) -> None:
        await repository.update_change(
            conn, row.id, repository.StateUpdate(ChangeState.REJECTED, why)
        )
        await self._log_rollback(conn, row, reason, why, None)
        self.counters.changes.labels("rejected").inc()
        self.webhook.send(change_message("rejected", row, why, reason))

    async def _log_rollback(
        self,
        conn: Any,
        row: repository.ChangeRow,
        reason: RollbackReason,
        why: str,
        observed: common_pb2.Prediction | None,
    ) -> None:
        predicted = row.prediction
        await repository.insert_rollback(
            conn,
            repository.NewRollback(
                change=row,
                reason=reason,
                explanation=why,
                predicted=predicted,
                observed=observed.SerializeToString() if observed is not None else None,
            ),
        )
        self.counters.rollbacks.labels(RollbackReason(reason).name.lower()).inc()

    # -- helpers -------------------------------------------------------------------

    async def _reopen(
        self,
        change_id: int,
        system_id: str,
        allowed: AbstractSet[int],
        override: Mapping[str, str],
        verb: str,
    ) -> None:
        async with self._store.transaction() as conn:
            row = await repository.change(conn, change_id, for_system=system_id)
            state = await repository.lock_change(conn, change_id)
            if state not in allowed:
                wanted = " or ".join(sorted(ChangeState(s).name for s in allowed))
                raise _not_in(row, state, wanted)
            if state == ChangeState.REJECTED:
                await repository.ensure_idle(conn, await repository.system(conn, system_id))
            why = f"{verb} by {override['actor']}: {override['reason']}"
            next_state = ChangeState.APPLYING
            reason = why
            if row.dry_run:
                next_state, reason = ChangeState.KEPT, f"dry run: {why}; nothing applied"
            elif row.applied_at is not None:
                # Held after live verification: it runs already, and now it is kept.
                next_state, reason = ChangeState.KEPT, f"{why}; kept as applied"
            await repository.update_change(
                conn,
                change_id,
                repository.StateUpdate(next_state, reason, override=override),
            )
        if next_state == ChangeState.APPLYING:
            self._start(change_id)

    async def _row(self, change_id: int) -> repository.ChangeRow:
        async with self._store.connection() as conn:
            return await repository.change(conn, change_id)

    async def _set(self, row: repository.ChangeRow, update: repository.StateUpdate) -> None:
        async with self._store.transaction() as conn:
            await repository.update_change(conn, row.id, update)

    async def _target_and_content(
        self, row: repository.ChangeRow, version: int
    ) -> tuple[Target, Content]:
        async with self._store.connection() as conn:
            system = await repository.system(conn, row.system_id)
            stored = await repository.configuration(conn, system, version)
        return self._appliers.target(system, stored.kind), stored.content

    async def _run_applier(self, call: Any) -> None:
        timeout = self._settings.apply_timeout.total_seconds()
        try:
            await asyncio.wait_for(call, timeout)
        except TimeoutError:
            raise ApplyFailed(f"the applier did not finish within {timeout:g} s") from None


def _timed(samples: MetricSamples | None) -> TimedSamples:
    if samples is None:
        return TimedSamples(np.empty(0, np.int64), np.empty(0, np.float64))
    return TimedSamples(samples.ts_unix_ns, samples.values)


def _action(policy: StoredPolicy, verdict: Verdict) -> PolicyAction:
    if verdict is Verdict.NEGATIVE:
        return PolicyAction.REJECT
    if verdict is Verdict.INCONCLUSIVE:
        return policy.policy.on_inconclusive
    if verdict is Verdict.NODATA:
        return policy.policy.on_nodata
    return PolicyAction.PROCEED


def _verdict_word(prediction: common_pb2.Prediction) -> str:
    return verdict_of(prediction).value


def _override(actor: str, reason: str) -> dict[str, str]:
    return {"actor": actor, "reason": reason, "time": datetime.now(UTC).isoformat()}


def _not_in(row: repository.ChangeRow, state: int, wanted: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{row.name} is {ChangeState(state).name}, not {wanted}",
        reason="CHANGE_STATE",
        metadata={"change": row.name, "state": ChangeState(state).name},
    )
