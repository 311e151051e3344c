"""Baseline against candidate on one shadow copy, interleaved, bounded, always cleaned up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from cfgclone.predictor.shadow.model import (
    Configuration,
    KpiSamples,
    RoundRecord,
    ShadowFailed,
    ShadowOutcome,
    ShadowRun,
    ShadowTarget,
    Side,
)
from cfgclone.predictor.shadow.provider import ShadowCopy, ShadowProvider

__all__ = ["run_shadow_comparison"]

logger = logging.getLogger(__name__)


class _Collected:
    """Samples and records gathered so far; kept whatever ends the comparison."""

    def __init__(self) -> None:
        self.samples: dict[Side, dict[str, list[float]]] = {Side.BASELINE: {}, Side.CANDIDATE: {}}
        self.rounds: list[RoundRecord] = []
        self.copy: ShadowCopy | None = None

    def details(self) -> Mapping[str, str]:
        """The copy's details as they stand at the end (they grow as configurations apply)."""
        return dict(self.copy.details) if self.copy is not None else {}

    def frozen(self, side: Side) -> KpiSamples:
        return {kpi: tuple(values) for kpi, values in self.samples[side].items()}


async def run_shadow_comparison(
    provider: ShadowProvider,
    target: ShadowTarget,
    baseline_config: Configuration,
    candidate_config: Configuration,
    *,
    rounds: int = 3,
    duration: float = 5.0,
    min_samples: int = 0,
    max_rounds: int | None = None,
    decided: Callable[[KpiSamples, KpiSamples], bool] | None = None,
    # The limit is a parameter because reaching it is a result (TIMED_OUT, with the
    # samples so far and a clean copy), not an exception for the caller to handle.
    timeout: float = 120.0,  # noqa: ASYNC109
) -> ShadowRun:
    """Run ``rounds`` pairs of workloads, baseline then candidate, on one copy of ``target``.

    Interleaving (B C B C ...) on the same copy means that whatever drifts on
    the machine during the comparison (caches warming, a neighbour's load)
    lands on both sides alike instead of on one. ``duration`` is the seconds of
    each workload run; ``timeout`` bounds everything up to the teardown
    (making the copy, every apply and run), and the provider bounds the
    teardown itself, so the call always returns. It never raises for a failing
    provider: the result says FAILED or TIMED_OUT with the reason.

    Repeats as needed: after ``rounds`` pairs, while a KPI has fewer than
    ``min_samples`` samples on a side (the judge's minimum) or ``decided`` says
    the samples so far (baseline, candidate) leave the answer open, more pairs
    run, up to ``max_rounds`` (default: three times ``rounds``) and only while one
    more pair fits in the time left. The provider sees both configurations and
    the deadline in ``target``.
    """
    if rounds < 1:
        raise ValueError("a comparison needs at least one round")
    if duration <= 0 or timeout <= 0:
        raise ValueError("duration and timeout must be positive")
    limit_rounds = max(rounds, max_rounds if max_rounds is not None else 3 * rounds)
    started = time.monotonic()
    target = replace(
        target,
        baseline=dict(baseline_config),
        candidate=dict(candidate_config),
        deadline_unix=time.time() + timeout,
    )
    collected = _Collected()
    outcome = ShadowOutcome.COMPLETED
    reason: str | None = None
    failed_side: Side | None = None
    try:
        # The exit stack is outside the time limit: the copy is torn down after the
        # limit has stopped the work, never interrupted by it.
        async with contextlib.AsyncExitStack() as stack:
            limit = asyncio.timeout(timeout)
            try:
                async with limit:
                    copy = await stack.enter_async_context(provider.copy_of(target))
                    collected.copy = copy
                    failed_side, reason = await _interleave(
                        copy,
                        target,
                        (baseline_config, candidate_config),
                        _Rounds(rounds, limit_rounds, min_samples, decided, started + timeout),
                        duration,
                        collected,
                    )
            except TimeoutError as error:
                if not limit.expired():  # a provider's own timeout, not the comparison's
                    raise ShadowFailed(f"the {provider.name} shadow copy timed out") from error
                outcome = ShadowOutcome.TIMED_OUT
                reason = f"the shadow comparison did not finish within {timeout:g} s"
                logger.warning("shadow run of %s timed out after %s s", target.system, timeout)
            if failed_side is not None and outcome is ShadowOutcome.COMPLETED:
                outcome = ShadowOutcome.FAILED
    except ShadowFailed as error:
        outcome = ShadowOutcome.FAILED
        reason = str(error)
        logger.warning("shadow run of %s failed: %s", target.system, error)
    except Exception as error:  # a provider's defect must still give an answer
        outcome = ShadowOutcome.FAILED
        reason = f"the {provider.name} shadow provider failed: {error!r}"
        logger.exception("shadow provider %s failed", provider.name)
    return ShadowRun(
        provider=provider.name,
        system=target.system,
        outcome=outcome,
        baseline=collected.frozen(Side.BASELINE),
        candidate=collected.frozen(Side.CANDIDATE),
        rounds=tuple(collected.rounds),
        rounds_requested=rounds,
        elapsed_s=time.monotonic() - started,
        failure_reason=reason,
        failed_side=failed_side,
        details=collected.details(),
    )


class _Rounds:
    """How many pairs run: the requested ones, then more while samples are short."""

    def __init__(
        self,
        requested: int,
        most: int,
        min_samples: int,
        decided: Callable[[KpiSamples, KpiSamples], bool] | None,
        ends_at: float,
    ) -> None:
        self.requested = requested
        self.most = most
        self.min_samples = min_samples
        self.decided = decided
        self.ends_at = ends_at
        self._started = time.monotonic()

    def another(self, done: int, collected: _Collected) -> bool:
        """Whether pair number ``done`` (0-based) should run."""
        if done < self.requested:
            return True
        if done >= self.most or not self._open(collected):
            return False
        per_round = (time.monotonic() - self._started) / done
        return time.monotonic() + per_round < self.ends_at

    def _open(self, collected: _Collected) -> bool:
        """Too few samples, or samples that do not decide yet."""
        kpis = set(collected.samples[Side.BASELINE]) | set(collected.samples[Side.CANDIDATE])
        short = any(
            len(collected.samples[side].get(kpi, ())) < self.min_samples
            for kpi in kpis
            for side in Side
        )
        if short or self.decided is None:
            return short
        return not self.decided(collected.frozen(Side.BASELINE), collected.frozen(Side.CANDIDATE))


async def _interleave(
    copy: ShadowCopy,
    target: ShadowTarget,
    configurations: tuple[Configuration, Configuration],
    rounds: _Rounds,
    duration: float,
    collected: _Collected,
) -> tuple[Side | None, str | None]:
    """The rounds; returns the side and reason of the first failure, if any."""
    sides = ((Side.BASELINE, configurations[0]), (Side.CANDIDATE, configurations[1]))
    round_index = 0
    while rounds.another(round_index, collected):
        for side, configuration in sides:
            started_at = datetime.now(UTC)
            began = time.monotonic()
            try:
                await copy.apply(configuration)
                result = await copy.run_workload(target.load, duration)
            except ShadowFailed as error:
                collected.rounds.append(
                    RoundRecord(
                        side=side,
                        round=round_index,
                        started_at=started_at,
                        duration_s=time.monotonic() - began,
                        sample_counts={},
                        error=str(error),
                    )
                )
                return side, f"the {side} run of round {round_index} failed: {error}"
            for kpi, values in result.samples.items():
                collected.samples[side].setdefault(kpi, []).extend(values)
            collected.rounds.append(
                RoundRecord(
                    side=side,
                    round=round_index,
                    started_at=started_at,
                    duration_s=time.monotonic() - began,
                    sample_counts={kpi: len(values) for kpi, values in result.samples.items()},
                    details=result.details,
                    error=result.error,
                )
            )
            logger.info(
                "shadow round %s %s of %s: %s",
                round_index,
                side,
                target.system,
                result.error or "ok",
            )
            if result.error is not None:
                return side, f"the {side} workload failed in round {round_index}: {result.error}"
        round_index += 1
    return None, None
