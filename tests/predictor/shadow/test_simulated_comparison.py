"""Shadow comparisons on the simulated provider: known harm shows, known harmlessness does not.

These tests assert on the samples only; turning samples into a verdict is the judge's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator

import pytest

from cfgclone.predictor.shadow import (
    KPI_CPU,
    KPI_LATENCY_MEAN,
    KPI_LATENCY_P95,
    KPI_THROUGHPUT,
    SHADOW_KPIS,
    PostgresShadowProvider,
    ShadowCopy,
    ShadowOutcome,
    ShadowProvider,
    ShadowTarget,
    Side,
    SimulatedShadowProvider,
    WorkloadShape,
    run_shadow_comparison,
)
from cfgclone.simulation import HARMFUL_CHANGE, HARMLESS_CHANGE, SimulatedSystem

TARGET = ShadowTarget("systems/web-01", WorkloadShape(clients=8, rate_tps=200.0))


def _ratio(samples_after: tuple[float, ...], samples_before: tuple[float, ...]) -> float:
    return statistics.median(samples_after) / statistics.median(samples_before)


async def test_a_harmful_change_raises_candidate_latency_by_about_thirty_percent() -> None:
    provider = SimulatedShadowProvider(seed=1)
    run = await run_shadow_comparison(
        provider, TARGET, {}, HARMFUL_CHANGE, rounds=3, duration=10, timeout=10
    )
    assert run.outcome is ShadowOutcome.COMPLETED
    for kpi in (KPI_LATENCY_MEAN, KPI_LATENCY_P95):
        assert 1.25 < _ratio(run.candidate[kpi], run.baseline[kpi]) < 1.45
        assert min(run.candidate[kpi]) > statistics.median(run.baseline[kpi])
    assert _ratio(run.candidate[KPI_CPU], run.baseline[KPI_CPU]) > 1.05
    assert _ratio(run.candidate[KPI_THROUGHPUT], run.baseline[KPI_THROUGHPUT]) == pytest.approx(
        1.0, abs=0.05
    )


async def test_a_harmless_change_leaves_the_candidate_samples_where_the_baseline_is() -> None:
    provider = SimulatedShadowProvider(seed=2)
    run = await run_shadow_comparison(
        provider, TARGET, {}, HARMLESS_CHANGE, rounds=3, duration=10, timeout=10
    )
    assert run.outcome is ShadowOutcome.COMPLETED
    for kpi in SHADOW_KPIS:
        assert _ratio(run.candidate[kpi], run.baseline[kpi]) == pytest.approx(1.0, abs=0.05)


async def test_every_kpi_has_one_sample_per_interval_of_every_round() -> None:
    provider = SimulatedShadowProvider(seed=3, interval_s=0.5)
    run = await run_shadow_comparison(
        provider, TARGET, {}, HARMLESS_CHANGE, rounds=4, duration=5, timeout=10
    )
    for side in Side:
        assert {kpi: len(values) for kpi, values in run.samples(side).items()} == {
            kpi: 4 * 10 for kpi in SHADOW_KPIS
        }
    assert run.rounds_requested == 4
    assert run.details["seed"] == "3"


async def test_runs_alternate_baseline_and_candidate_round_by_round() -> None:
    provider = SimulatedShadowProvider(seed=4)
    run = await run_shadow_comparison(
        provider, TARGET, {}, HARMLESS_CHANGE, rounds=3, duration=2, timeout=10
    )
    assert [(record.round, record.side) for record in run.rounds] == [
        (0, Side.BASELINE),
        (0, Side.CANDIDATE),
        (1, Side.BASELINE),
        (1, Side.CANDIDATE),
        (2, Side.BASELINE),
        (2, Side.CANDIDATE),
    ]
    assert all(record.error is None for record in run.rounds)


async def test_interleaving_keeps_drift_from_looking_like_an_effect() -> None:
    # Latency creeps up 3% per run; run all baselines first and the candidate would
    # look ~9% slower. Interleaved, drift lands on both sides alike.
    provider = SimulatedShadowProvider(SimulatedSystem(noise=0.01, drift_per_run=0.03), seed=5)
    run = await run_shadow_comparison(
        provider, TARGET, {}, HARMLESS_CHANGE, rounds=4, duration=5, timeout=10
    )
    assert _ratio(run.candidate[KPI_LATENCY_MEAN], run.baseline[KPI_LATENCY_MEAN]) < 1.04


async def test_the_same_seed_gives_the_same_samples() -> None:
    runs = [
        await run_shadow_comparison(
            SimulatedShadowProvider(seed=7), TARGET, {}, HARMFUL_CHANGE, rounds=2, duration=3
        )
        for _ in range(2)
    ]
    assert runs[0].baseline == runs[1].baseline
    assert runs[0].candidate == runs[1].candidate
    other = await run_shadow_comparison(
        SimulatedShadowProvider(seed=8), TARGET, {}, HARMFUL_CHANGE, rounds=2, duration=3
    )
    assert other.baseline != runs[0].baseline


def test_latency_rises_with_load_and_a_smaller_cache() -> None:
    system = SimulatedSystem()
    light = system.expected({}, WorkloadShape(rate_tps=100.0))
    heavy = system.expected({}, WorkloadShape(rate_tps=1500.0))
    assert heavy[KPI_LATENCY_MEAN] > 2 * light[KPI_LATENCY_MEAN]
    assert heavy[KPI_CPU] > light[KPI_CPU]
    small_cache = system.expected({"cache_mb": 16}, WorkloadShape(rate_tps=100.0))
    assert small_cache[KPI_LATENCY_MEAN] > light[KPI_LATENCY_MEAN]
    more_workers = system.expected({"workers": 16}, WorkloadShape(rate_tps=1500.0))
    assert more_workers[KPI_LATENCY_MEAN] < heavy[KPI_LATENCY_MEAN]


async def test_a_hanging_workload_ends_at_the_time_limit_and_the_copy_is_destroyed() -> None:
    provider = SimulatedShadowProvider(hang_parameters=frozenset({"stuck"}))
    started = time.monotonic()
    run = await run_shadow_comparison(
        provider, TARGET, {}, {"stuck": True}, rounds=3, duration=1, timeout=0.5
    )
    assert time.monotonic() - started < 3
    assert run.outcome is ShadowOutcome.TIMED_OUT
    assert run.failure_reason is not None
    assert "0.5 s" in run.failure_reason
    assert run.baseline[KPI_LATENCY_MEAN]  # the baseline run before the hang is kept
    assert not run.candidate
    assert (provider.live_copies, provider.created, provider.destroyed) == (0, 1, 1)


async def test_a_refused_candidate_fails_the_run_on_the_candidate_side() -> None:
    provider = SimulatedShadowProvider(refuse_parameters=frozenset({"bogus"}))
    run = await run_shadow_comparison(provider, TARGET, {}, {"bogus": 1}, rounds=2, duration=1)
    assert run.outcome is ShadowOutcome.FAILED
    assert run.failed_side is Side.CANDIDATE
    assert run.failure_reason is not None
    assert "bogus" in run.failure_reason
    assert [record.side for record in run.rounds] == [Side.BASELINE, Side.CANDIDATE]
    assert run.rounds[-1].error is not None
    assert provider.live_copies == 0


async def test_a_failing_workload_is_reported_with_its_side() -> None:
    provider = SimulatedShadowProvider(fail_workload_parameters=frozenset({"crash"}))
    run = await run_shadow_comparison(provider, TARGET, {}, {"crash": 1}, rounds=2, duration=1)
    assert run.outcome is ShadowOutcome.FAILED
    assert run.failed_side is Side.CANDIDATE
    assert provider.live_copies == 0


async def test_a_copy_that_cannot_be_made_fails_the_run_without_samples() -> None:
    provider = SimulatedShadowProvider(fail_on_create=True)
    run = await run_shadow_comparison(provider, TARGET, {}, HARMLESS_CHANGE, rounds=2, duration=1)
    assert run.outcome is ShadowOutcome.FAILED
    assert run.failed_side is None
    assert run.failure_reason == "the simulated copy could not be created"
    assert not run.baseline
    assert not run.candidate
    assert not run.rounds


async def test_cancelling_the_caller_still_destroys_the_copy() -> None:
    provider = SimulatedShadowProvider(pace=1.0)
    task = asyncio.create_task(
        run_shadow_comparison(provider, TARGET, {}, HARMLESS_CHANGE, rounds=2, duration=30)
    )
    await asyncio.sleep(0.1)
    assert provider.live_copies == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert provider.live_copies == 0


class BrokenProvider:
    """A provider whose copies raise what a defect would raise."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @property
    def name(self) -> str:
        return "broken"

    @contextlib.asynccontextmanager
    async def copy_of(self, target: ShadowTarget) -> AsyncIterator[ShadowCopy]:
        raise self.error
        yield  # an async generator that never yields


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TimeoutError(), "the broken shadow copy timed out"),
        (KeyError("x"), "the broken shadow provider failed: KeyError('x')"),
    ],
)
async def test_a_provider_defect_is_a_failure_with_a_reason_not_an_exception(
    error: Exception, reason: str
) -> None:
    run = await run_shadow_comparison(
        BrokenProvider(error), TARGET, {}, {}, rounds=1, duration=1, timeout=10
    )
    assert run.outcome is ShadowOutcome.FAILED
    assert run.failure_reason == reason


def test_every_provider_meets_the_interface() -> None:
    providers = [SimulatedShadowProvider(), PostgresShadowProvider(), BrokenProvider(KeyError())]
    assert all(isinstance(provider, ShadowProvider) for provider in providers)


@pytest.mark.parametrize(
    ("rounds", "duration", "time_limit"), [(0, 1.0, 1.0), (1, 0.0, 1.0), (1, 1.0, 0.0)]
)
async def test_a_comparison_needs_rounds_and_positive_times(
    rounds: int, duration: float, time_limit: float
) -> None:
    with pytest.raises(ValueError, match=r"round|positive"):
        await run_shadow_comparison(
            SimulatedShadowProvider(),
            TARGET,
            {},
            {},
            rounds=rounds,
            duration=duration,
            timeout=time_limit,
        )
