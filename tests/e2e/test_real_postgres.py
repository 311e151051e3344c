"""Nothing simulated, end to end: two real PostgreSQL servers under pgbench load, each
watched by a real ``cfgclone agent`` started from ``deploy/agent.postgresql.toml``.

The suite gets their samples, builds their fingerprints on its own, finds them alike,
predicts a harmless and a harmful change in a shadow copy, applies the harmless one with
``ALTER SYSTEM`` through the PostgreSQL applier, verifies it on the live metrics and
keeps it, and refuses the harmful one before it lands, with the reason logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2

from cfgclone.common.store import Store
from cfgclone.predictor.shadow import ClusterSettings, throwaway_cluster
from cfgclone.predictor.shadow.cluster import SUPERUSER, ThrowawayCluster
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import common_pb2
from cfgclone.v1 import fingerprint_service_pb2 as fingerprint_pb
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from cfgclone.v1 import similarity_service_pb2 as similarity_pb
from tests.deploy.support import DEPLOY
from tests.orchestrator.workflow_suite import Suite, running_services
from tests.predictor.shadow.support import needs_postgres, open_parent_folder

pytestmark = [needs_postgres, pytest.mark.slow, pytest.mark.timeout(900)]

AGENT_FILE = DEPLOY / "agent.postgresql.toml"
LOADS = (
    ("--rate", "40"),
    ("--rate", "40"),
    ("--select-only", "--rate", "400"),
)
"""The teams' load: the first two servers run the same read-write mix at the same rate,
the third a read-only mix ten times as busy."""
HARMLESS = {"work_mem": "8MB"}
"""pgbench's statements sort nothing: more sort memory changes nothing."""
HARMFUL = {"commit_delay": 20_000, "commit_siblings": 0}
"""Every commit waits 20 ms for company while holding the WAL write lock."""
OPTIONS = {
    "fingerprint": {"REFINE_INTERVAL_SECONDS": "2", "MIN_REGIME_COUNT": "8"},
    "predictor": {"SHADOW_SECONDS": "8", "SHADOW_ROUNDS": "3", "SHADOW_TIMEOUT_SECONDS": "240"},
}


def _pgbench(cluster: ThrowawayCluster, *args: str) -> list[str]:
    return [
        str(cluster.bin_dir / "pgbench") if (cluster.bin_dir / "pgbench").exists() else "pgbench",
        "--host",
        str(cluster.socket_dir),
        "--port",
        str(cluster.port),
        "--username",
        SUPERUSER,
        *args,
        "postgres",
    ]


@contextlib.asynccontextmanager
async def _processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    try:
        yield started
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in started:
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _start(argv: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as output:
        return await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=output
        )


@contextlib.asynccontextmanager
async def _servers(parent: Path) -> AsyncIterator[list[ThrowawayCluster]]:
    async with contextlib.AsyncExitStack() as stack:
        clusters = [
            await stack.enter_async_context(
                throwaway_cluster(ClusterSettings(parent=parent, port=5433 + index))
            )
            for index in range(len(LOADS))
        ]
        for cluster in clusters:
            filling = await asyncio.create_subprocess_exec(
                *_pgbench(cluster, "--initialize", "--quiet", "--scale", "1"),
                env=cluster.environment(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            assert await asyncio.wait_for(filling.wait(), 120) == 0
        yield clusters


def _agent_environment(
    cluster: ThrowawayCluster, collector: str, system: str, spool: Path
) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "CFGCLONE_COLLECTOR_ADDRESS": collector,
        "CFGCLONE_TOKEN": "not-checked",
        "CFGCLONE_AGENT_SYSTEM": system,
        "CFGCLONE_AGENT_SPOOL": str(spool),
        "PGHOST": str(cluster.socket_dir),
        "PGPORT": str(cluster.port),
        "PGUSER": SUPERUSER,
        "PGDATABASE": "postgres",
    }


def _setting(cluster: ThrowawayCluster, name: str) -> str:
    with psycopg.connect(cluster.conninfo, autocommit=True) as conn:
        row = conn.execute(f"SHOW {name}").fetchone()
    assert row is not None
    return str(row[0])


def _seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=value))
    return duration


async def _eventually(check: object, what: str, within: float) -> object:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await check()  # type: ignore[operator]
        except (AssertionError, grpc.aio.AioRpcError) as error:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what} not within {within:g} s: {error}") from error
        await asyncio.sleep(1.0)


async def _operator_labels(suite: Suite, system: str, run: str, dsn: str) -> None:
    """What an operator sets: the applier's connection string and a label for this run."""
    found = (await suite.collector.GetSystem(collector_pb.GetSystemRequest(name=system))).system
    found.labels["cfgclone.dev/postgres-dsn"] = dsn
    found.labels["e2e-run"] = run
    await suite.collector.RegisterSystem(collector_pb.RegisterSystemRequest(system=found))


async def _policy(suite: Suite, run: str) -> str:
    policy = common_pb2.Policy(
        name=f"policies/e2e-{run}",
        thresholds=[
            common_pb2.KpiThreshold(
                kpi="db.client.operation.duration",
                direction=common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
                max_relative_change=0.5,
                critical=True,
            ),
            common_pb2.KpiThreshold(
                kpi="postgresql.commits",
                direction=common_pb2.KPI_DIRECTION_HIGHER_IS_BETTER,
                max_relative_change=0.2,
                critical=True,
            ),
        ],
        min_confidence=0.9,
        on_inconclusive=common_pb2.POLICY_ACTION_PROCEED,
        on_nodata=common_pb2.POLICY_ACTION_REJECT,
        verification_delay=_seconds(3),
        verification_window=_seconds(20),
        min_samples=5,
    )
    reply = await suite.predictor.CreatePolicy(predictor_pb.CreatePolicyRequest(policy=policy))
    return reply.policy.name


def _configuration(content: dict[str, object]) -> common_pb2.Configuration:
    message = common_pb2.Configuration(kind="postgresql")
    message.content.update(content)
    return message


async def _settle(suite: Suite, name: str, within: float) -> common_pb2.Change:
    async def final() -> common_pb2.Change:
        change = (await suite.predictor.GetChange(predictor_pb.GetChangeRequest(name=name))).change
        assert change.state in (
            common_pb2.CHANGE_STATE_KEPT,
            common_pb2.CHANGE_STATE_REJECTED,
            common_pb2.CHANGE_STATE_ROLLED_BACK,
            common_pb2.CHANGE_STATE_FAILED,
            common_pb2.CHANGE_STATE_HELD,
        ), f"{name} is {common_pb2.ChangeState.Name(change.state)}: {change.state_reason}"
        return change

    result = await _eventually(final, f"{name} settled", within)
    assert isinstance(result, common_pb2.Change)
    return result


async def test_real_postgres_servers_watched_by_real_agents(store: Store, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    systems = [f"systems/pg-{run}-{name}" for name in ("a", "b", "c")]
    with open_parent_folder() as parent:
        async with (
            _servers(parent) as clusters,
            running_services(store, options=OPTIONS) as suite,
            _processes() as started,
        ):
            for index, (cluster, system) in enumerate(zip(clusters, systems, strict=True)):
                # The team's load: pgbench at a steady rate, for longer than the test.
                load = _pgbench(cluster, "--client", "2", *LOADS[index], "-T", "900")
                started.append(
                    await _start(load, cluster.environment(), tmp_path / f"load-{index}.log")
                )
                environment = _agent_environment(
                    cluster,
                    suite.addresses["collector"],
                    system.removeprefix("systems/"),
                    tmp_path / f"spool-{index}",
                )
                agent = [sys.executable, "-m", "cfgclone.collector.agent_main"]
                agent += ["--config", str(AGENT_FILE)]
                started.append(await _start(agent, environment, tmp_path / f"agent-{index}.log"))
            await _run_story(suite, clusters, systems, run, started)


async def _run_story(
    suite: Suite,
    clusters: list[ThrowawayCluster],
    systems: list[str],
    run: str,
    started: list[asyncio.subprocess.Process],
) -> None:
    # The agents register their systems; an operator records what runs and how to apply.
    async def registered() -> None:
        for system in systems:
            await suite.collector.GetSystem(collector_pb.GetSystemRequest(name=system))

    await _eventually(registered, "the agents registered their systems", 60)
    for cluster, system in zip(clusters, systems, strict=True):
        await _operator_labels(suite, system, run, cluster.conninfo)
        await suite.predictor.CreateConfiguration(
            predictor_pb.CreateConfigurationRequest(
                parent=system, configuration=_configuration({"work_mem": "4MB"})
            )
        )

    # Fingerprints build themselves, on the offered load.
    async def fingerprinted() -> list[common_pb2.Fingerprint]:
        found = []
        for system in systems:
            reply = await suite.fingerprint.GetFingerprint(
                fingerprint_pb.GetFingerprintRequest(name=f"{system}/fingerprints/-")
            )
            assert reply.fingerprint.configuration.endswith("/configurations/1")
            found.append(reply.fingerprint)
        return found

    fingerprints = await _eventually(fingerprinted, "every fingerprint built", 240)
    assert isinstance(fingerprints, list)
    for fingerprint in fingerprints:
        assert fingerprint.load_metric == "postgresql.commits"
        kpis = {k.kpi for k in fingerprint.kpis}
        assert {"db.client.operation.duration", "system.cpu.utilization"} <= kpis

    # The two with the same load are alike: the first's nearest is the second, and the
    # server with another mix ten times as busy is further.
    async def alike() -> similarity_pb.FindSimilarSystemsResponse:
        reply = await suite.similarity.FindSimilarSystems(
            similarity_pb.FindSimilarSystemsRequest(
                system=systems[0], page_size=5, label_selector=f"e2e-run={run}"
            )
        )
        assert [s.second for s in reply.similar_systems] == systems[1:]
        return reply

    similar = await _eventually(alike, "the similarity index holds all three", 60)
    assert isinstance(similar, similarity_pb.FindSimilarSystemsResponse)
    twin, other = similar.similar_systems
    assert twin.score > other.score, (twin.explanation, other.explanation)

    policy = await _policy(suite, run)
    shadow = common_pb2.PREDICTION_MODE_SHADOW

    async def predict(content: dict[str, object]) -> common_pb2.Prediction:
        reply = await suite.predictor.PredictImpact(
            predictor_pb.PredictImpactRequest(
                change=predictor_pb.ProposedChange(
                    system=systems[0],
                    configuration=_configuration({"work_mem": "4MB", **content}),
                ),
                mode=shadow,
                policy=policy,
            ),
            timeout=300,
        )
        return reply.prediction

    harmless = await predict(HARMLESS)
    harmful = await predict(HARMFUL)
    # On a busy machine the harmless change's interval may straddle a threshold
    # (INCONCLUSIVE, which this policy lets proceed); it is never found harmful.
    assert harmless.verdict != common_pb2.VERDICT_NEGATIVE, harmless.explanation
    assert all(k.verdict != common_pb2.VERDICT_NEGATIVE for k in harmless.kpis), harmless
    assert harmful.verdict == common_pb2.VERDICT_NEGATIVE, harmful.explanation
    latency = {k.kpi: k for k in harmful.kpis}["db.client.operation.duration"]
    assert latency.verdict == common_pb2.VERDICT_NEGATIVE, latency.explanation

    # The harmless change is applied for real, verified live, and kept.
    async def propose(content: dict[str, object]) -> str:
        reply = await suite.predictor.ProposeChange(
            predictor_pb.ProposeChangeRequest(
                change=predictor_pb.ProposedChange(
                    system=systems[0], configuration=_configuration(content)
                ),
                mode=shadow,
                policy=policy,
            )
        )
        return reply.change.name

    kept = await _settle(suite, await propose({"work_mem": "4MB", **HARMLESS}), within=300)
    assert kept.state == common_pb2.CHANGE_STATE_KEPT, kept.state_reason
    assert {k.kpi for k in kept.verification.kpis} >= {"db.client.operation.duration"}
    assert _setting(clusters[0], "work_mem") == "8MB"

    # The harmful one is refused before it lands, and the refusal says why.
    rejected = await _settle(suite, await propose({"work_mem": "8MB", **HARMFUL}), within=300)
    rollbacks = await suite.predictor.ListRollbacks(
        predictor_pb.ListRollbacksRequest(parent=systems[0])
    )
    assert rejected.state == common_pb2.CHANGE_STATE_REJECTED, rejected.state_reason
    [logged] = [r for r in rollbacks.rollbacks if r.change == rejected.name]
    assert logged.reason == common_pb2.ROLLBACK_REASON_PREDICTED_NEGATIVE
    assert "db.client.operation.duration" in logged.explanation
    assert _setting(clusters[0], "commit_delay") == "0"
    for process in started:
        assert process.returncode is None, f"process {process.pid} stopped early"
