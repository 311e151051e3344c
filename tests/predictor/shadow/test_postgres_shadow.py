"""The PostgreSQL shadow provider for real: a throw-away cluster, pgbench, cleanup."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfgclone.predictor.shadow import (
    KPI_CPU,
    KPI_LATENCY_MEAN,
    KPI_LATENCY_P95,
    KPI_THROUGHPUT,
    ClusterSettings,
    PostgresShadowProvider,
    PostgresShadowSettings,
    ShadowOutcome,
    ShadowRun,
    ShadowTarget,
    Side,
    WorkloadShape,
    run_shadow_comparison,
    workload_at,
)
from cfgclone.predictor.shadow.load import DB_OFFERED_LOAD
from tests.predictor.shadow.support import is_gone, leftovers, needs_postgres, open_parent_folder

pytestmark = [needs_postgres, pytest.mark.slow]

TARGET = ShadowTarget(
    "systems/db-01", WorkloadShape(clients=4, threads=2, rate_tps=100.0), data_scale=1
)
HARMFUL = {"commit_delay": 10_000, "commit_siblings": 0}
"""Every commit waits 10 ms for company while holding the WAL write lock: at 100 tps
the server falls behind and latency climbs."""
HARMLESS = {"work_mem": "8MB"}
"""pgbench's statements sort nothing: more sort memory changes nothing."""


@pytest.fixture
def parent() -> Iterator[Path]:
    with open_parent_folder() as folder:
        yield folder
        assert leftovers(folder) == []


def _provider(parent: Path) -> PostgresShadowProvider:
    return PostgresShadowProvider(PostgresShadowSettings(cluster=ClusterSettings(parent=parent)))


def _median(run: ShadowRun, side: Side, kpi: str) -> float:
    return statistics.median(run.samples(side)[kpi])


def _figures(run: ShadowRun) -> str:
    return ", ".join(
        f"{kpi} {_median(run, Side.BASELINE, kpi):.2f} -> {_median(run, Side.CANDIDATE, kpi):.2f}"
        for kpi in (KPI_THROUGHPUT, KPI_LATENCY_MEAN, KPI_LATENCY_P95, KPI_CPU)
    )


async def test_a_commit_delay_shows_as_a_clear_rise_of_candidate_p95(parent: Path) -> None:
    run = await run_shadow_comparison(
        _provider(parent), TARGET, {}, HARMFUL, rounds=2, duration=3, timeout=120
    )
    print(f"harmful {HARMFUL}: {_figures(run)}")
    assert run.outcome is ShadowOutcome.COMPLETED, run.failure_reason
    assert len(run.baseline[KPI_LATENCY_P95]) >= 4
    assert len(run.candidate[KPI_LATENCY_P95]) >= 4
    p95_before = _median(run, Side.BASELINE, KPI_LATENCY_P95)
    p95_after = _median(run, Side.CANDIDATE, KPI_LATENCY_P95)
    assert p95_after > 5 * p95_before
    assert min(run.candidate[KPI_LATENCY_P95]) > max(run.baseline[KPI_LATENCY_P95])
    throughput_before = _median(run, Side.BASELINE, KPI_THROUGHPUT)
    assert _median(run, Side.CANDIDATE, KPI_THROUGHPUT) < throughput_before
    assert run.baseline[KPI_CPU]
    assert run.candidate[KPI_CPU]
    assert is_gone(Path(run.details["workdir"]))


async def test_a_harmless_change_leaves_candidate_p95_near_the_baseline(parent: Path) -> None:
    run = await run_shadow_comparison(
        _provider(parent), TARGET, {}, HARMLESS, rounds=2, duration=3, timeout=120
    )
    print(f"harmless {HARMLESS}: {_figures(run)}")
    assert run.outcome is ShadowOutcome.COMPLETED, run.failure_reason
    ratio = _median(run, Side.CANDIDATE, KPI_LATENCY_P95) / _median(
        run, Side.BASELINE, KPI_LATENCY_P95
    )
    # p95 of one-second windows on cores shared with other work: a baseline window caught
    # in a scheduling stall halves the ratio by itself; the harmful change multiplies it
    # by five or more.
    assert 0.4 < ratio < 2.5
    throughput = _median(run, Side.CANDIDATE, KPI_THROUGHPUT) / _median(
        run, Side.BASELINE, KPI_THROUGHPUT
    )
    # Six one-second samples of a rate-limited workload on shared cores: the median
    # moves by a fifth or so with scheduling alone; a harmful change moves p95 by 5x.
    assert 0.6 < throughput < 1.6


async def test_fewer_connections_than_clients_fails_the_candidate_with_the_reason(
    parent: Path,
) -> None:
    target = ShadowTarget("systems/db-01", WorkloadShape(clients=8, threads=2, rate_tps=50.0))
    run = await run_shadow_comparison(
        _provider(parent), target, {}, {"max_connections": 5}, rounds=2, duration=2, timeout=60
    )
    assert run.outcome is ShadowOutcome.FAILED
    assert run.failed_side is Side.CANDIDATE
    assert run.failure_reason is not None
    assert "too many clients" in run.failure_reason
    assert run.details["restarts"] == "1"  # max_connections needs a restart
    assert run.baseline[KPI_LATENCY_P95]
    assert not any(run.candidate.values())


async def test_an_unknown_parameter_is_refused_before_any_workload(parent: Path) -> None:
    run = await run_shadow_comparison(
        _provider(parent), TARGET, {}, {"no_such_setting": 1}, rounds=2, duration=1, timeout=60
    )
    assert run.outcome is ShadowOutcome.FAILED
    assert run.failed_side is Side.CANDIDATE
    assert run.failure_reason is not None
    assert "no_such_setting" in run.failure_reason


async def test_a_timeout_during_the_workload_leaves_no_cluster_process_or_folder(
    parent: Path,
) -> None:
    run = await run_shadow_comparison(
        _provider(parent), TARGET, {}, HARMLESS, rounds=1, duration=60, timeout=4
    )
    assert run.outcome is ShadowOutcome.TIMED_OUT
    assert run.elapsed_s < 20
    workdir = Path(run.details["workdir"])  # the copy existed: the limit hit pgbench
    assert workdir.parent == parent
    assert is_gone(workdir)
    assert leftovers(parent) == []


async def test_a_timeout_while_the_copy_is_made_leaves_nothing_either(parent: Path) -> None:
    run = await run_shadow_comparison(
        _provider(parent), TARGET, {}, HARMLESS, rounds=1, duration=1, timeout=0.3
    )
    assert run.outcome is ShadowOutcome.TIMED_OUT
    assert run.rounds == ()
    assert leftovers(parent) == []


def _at_recorded_rate(rate: float) -> ShadowTarget:
    profile = {DB_OFFERED_LOAD: rate}
    return ShadowTarget(
        "systems/db-01",
        workload_at(profile, WorkloadShape(clients=4, threads=2)),
        load_profile=profile,
    )


async def test_pgbench_runs_at_the_targets_recorded_rate_not_at_full_speed(parent: Path) -> None:
    recorded = 80.0
    run = await run_shadow_comparison(
        _provider(parent), _at_recorded_rate(recorded), {}, HARMLESS, rounds=1, duration=6
    )
    assert run.outcome is ShadowOutcome.COMPLETED, run.failure_reason
    for record in run.rounds:
        assert "--rate 80" in record.details["command"]
        transactions = int(record.details["transactions"])
        rate = record.details["rate"]
        print(f"{record.side}: {transactions / 6:.1f}/s of {recorded:g}/s ({rate})")
        # pgbench --rate starts transactions as a Poisson process: over 6 s at 80/s the count
        # is 480 give or take sqrt(480) ~ 22. Four of those either side; full speed on this
        # machine is thousands a second.
        expected = recorded * 6
        assert abs(transactions - expected) <= 4 * math.sqrt(expected)
        assert not any(key.startswith("load.") for key in record.details)


async def test_a_rate_the_shadows_hardware_cannot_reach_is_reported(parent: Path) -> None:
    run = await run_shadow_comparison(
        _provider(parent), _at_recorded_rate(1_000_000.0), {}, HARMLESS, rounds=1, duration=2
    )
    assert run.outcome is ShadowOutcome.COMPLETED, run.failure_reason
    note = run.rounds[0].details[f"load.{DB_OFFERED_LOAD}"]
    assert "cannot carry the target's load" in note
    assert "of the target's recorded 1e+06/s" in note
