"""PredictImpact through a command shadow provider, on a real server and database.

The PostgreSQL tests run the example script from docs/ as a team would configure it
(``CFGCLONE_PREDICTOR_SHADOW_COMMAND_PGSHADOW``): a throw-away PostgreSQL on a free
port, driven by pgbench at the target's recorded commit rate. ``commit_delay`` with no
required siblings makes every commit wait 10 ms (harmful); more ``work_mem`` changes
nothing pgbench does (harmless). The misbehaving scripts are the fake of
``tests/predictor/shadow/test_command_shadow.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from cfgclone.common.store import Store
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from tests.predictor.shadow.support import is_gone, needs_postgres
from tests.predictor.shadow.test_command_shadow import FAKE_SCRIPT, shadow_is_gone
from tests.predictor.support import configuration, register, running_predictor
from tests.storage import store_samples

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "shadow_postgresql.py"
SHADOW = common_pb2.PREDICTION_MODE_SHADOW
BASE = {"work_mem": "4MB"}
HARMFUL = {**BASE, "commit_delay": 10000, "commit_siblings": 0}
HARMLESS = {"work_mem": "8MB"}
RECORDED_COMMITS = 50.0


async def _recorded_load(store: Store, system_id: str, rate: float) -> None:
    """An hour of the target's commit rate, busier in its last quarter, as an agent sends it."""
    now = time.time_ns()
    ts = np.arange(now - 3600 * 10**9, now, 10 * 10**9, dtype=np.int64)
    rng = np.random.default_rng(3)
    quiet = np.where(np.arange(ts.size) < ts.size * 3 // 4, 0.3, 1.0)
    values = rate * quiet * rng.normal(1.0, 0.02, ts.size)
    await store_samples(store, system_id, {"postgresql.commits": (ts, values)}, cpu_cores=2)


async def _policy(stub: object) -> str:
    name = f"policies/shadow-{uuid.uuid4().hex[:8]}"
    policy = common_pb2.Policy(
        name=name,
        thresholds=[
            # On a shared, busy 2-core machine the shadow's per-second latency moves by a
            # few tens of percent between runs whatever the configuration; commit_delay
            # multiplies it several times over.
            common_pb2.KpiThreshold(
                kpi="db.client.operation.duration",
                direction=common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
                max_relative_change=0.5,
                critical=True,
            ),
            # The rate is fixed by the load generator: commits fall only when the shadow
            # saturates; per-second counts of a Poisson arrival vary by about 15%.
            common_pb2.KpiThreshold(
                kpi="postgresql.commits",
                direction=common_pb2.KPI_DIRECTION_HIGHER_IS_BETTER,
                max_relative_change=0.5,
            ),
            # The shadow's CPU at 50 commits/s is a few percent of a shared machine.
            common_pb2.KpiThreshold(
                kpi="system.cpu.utilization",
                direction=common_pb2.KPI_DIRECTION_LOWER_IS_BETTER,
                max_relative_change=1.0,
            ),
        ],
        min_confidence=0.9,
    )
    reply = await stub.CreatePolicy(pb.CreatePolicyRequest(policy=policy))  # type: ignore[attr-defined]
    return str(reply.policy.name)


@needs_postgres
@pytest.mark.slow
async def test_a_postgresql_shadow_script_finds_the_harmful_change_and_passes_the_harmless(
    store: Store,
) -> None:
    options = {
        "SHADOW_COMMAND_PGSHADOW": str(EXAMPLE),
        "SHADOW_ROUNDS": "3",
        "SHADOW_SECONDS": "6",
        "SHADOW_TIMEOUT_SECONDS": "240",
    }
    async with running_predictor(store, **options) as predictor:
        system_id = await register(store, "pgshadow")
        await _recorded_load(store, system_id, RECORDED_COMMITS)
        await predictor.stub.CreateConfiguration(
            pb.CreateConfigurationRequest(
                parent=f"systems/{system_id}", configuration=configuration(BASE, kind="pgshadow")
            )
        )
        policy = await _policy(predictor.stub)
        replies = {}
        for name, content in (("harmful", HARMFUL), ("harmless", HARMLESS)):
            change = pb.ProposedChange(
                system=f"systems/{system_id}", configuration=configuration(content, "pgshadow")
            )
            replies[name] = await predictor.stub.PredictImpact(
                pb.PredictImpactRequest(change=change, mode=SHADOW, policy=policy)
            )
    harmful = replies["harmful"].prediction
    harmless = replies["harmless"].prediction
    print(f"harmful: {harmful.explanation}\nharmless: {harmless.explanation}")
    assert harmful.verdict == common_pb2.VERDICT_NEGATIVE, harmful.explanation
    latency = {k.kpi: k for k in harmful.kpis}["db.client.operation.duration"]
    assert latency.verdict == common_pb2.VERDICT_NEGATIVE
    assert latency.relative_change > 1.0
    # A harmless change is never refused, and its estimate stays well below the harmful
    # one's. On a quiet machine the interval is inside the tolerance (NEUTRAL); on cores
    # shared with other work it can be wide enough to straddle it, and "cannot decide" is
    # then the honest answer.
    assert harmless.verdict in (
        common_pb2.VERDICT_NEUTRAL,
        common_pb2.VERDICT_POSITIVE,
        common_pb2.VERDICT_INCONCLUSIVE,
    ), harmless.explanation
    unchanged = {k.kpi: k for k in harmless.kpis}["db.client.operation.duration"]
    assert unchanged.relative_change < latency.relative_change / 2, harmless.explanation
    # The shadow ran at the target's busy-period rate, which the prediction states.
    assert "postgresql.commits 50/s" in harmful.explanation


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("hang", "did not finish within"),
        ("crash", "exited with status 3: boom: the shadow ran out of disk"),
        ("garbage", "neither JSON nor Prometheus text"),
    ],
)
async def test_a_misbehaving_shadow_script_gives_inconclusive_with_the_reason(
    store: Store, tmp_path: Path, mode: str, reason: str
) -> None:
    script = tmp_path / "fake-shadow"
    script.write_text(FAKE_SCRIPT)
    script.chmod(0o755)
    markers = tmp_path / "markers"
    markers.mkdir()
    options = {
        "SHADOW_COMMAND_FAKE": f"{script} {mode} {markers}",
        "SHADOW_TIMEOUT_SECONDS": "5",
        "SHADOW_SECONDS": "1",
    }
    async with running_predictor(store, **options) as predictor:
        system_id = await register(store, "fake")
        await predictor.stub.CreateConfiguration(
            pb.CreateConfigurationRequest(
                parent=f"systems/{system_id}", configuration=configuration({"a": 1}, kind="fake")
            )
        )
        change = pb.ProposedChange(
            system=f"systems/{system_id}", configuration=configuration({"a": 2}, "fake")
        )
        reply = await predictor.stub.PredictImpact(
            pb.PredictImpactRequest(change=change, mode=SHADOW)
        )
    prediction = reply.prediction
    assert prediction.verdict == common_pb2.VERDICT_INCONCLUSIVE
    assert reason in prediction.explanation
    assert (markers / "steps").read_text().split()[-1] == "destroy"
    assert shadow_is_gone(markers)
    workdir = Path(json.loads((markers / "request-create.json").read_text())["workdir"])
    assert is_gone(workdir)
