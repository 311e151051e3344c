"""The demo's three stories, end to end: five services on real ports and a real database.

The stories run through the orchestrator's and the predictor's gRPC APIs exactly as
``cfgclone demo`` tells them; the test asserts their outcomes, the audit records they
leave, and that a clone is one trace across every service. ``cfgclone demo`` itself is
run once as a user would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from google.protobuf import json_format
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cfgclone.cli import demo
from cfgclone.common.store import Store
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as predictor_pb
from tests.orchestrator.workflow_suite import running_services

SERVICES = (
    "CollectorService",
    "FingerprintService",
    "SimilarityService",
    "PredictorService",
    "OrchestratorService",
)


@pytest.mark.timeout(300)
async def test_the_three_stories_end_as_told_and_leave_their_audit_trail(
    own_store: Store,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    lines: list[str] = []
    async with running_services(own_store, tracer_provider=provider) as suite:
        stubs = demo.Stubs(
            suite.collector,
            suite.fingerprint,
            suite.similarity,
            suite.predictor,
            suite.orchestrator,
        )
        ok = await demo.tell_stories(stubs, lines.append)
        lookalike = await suite.predictor.ListChanges(
            predictor_pb.ListChangesRequest(parent=demo.LOOKALIKE.name)
        )
        small = await suite.predictor.ListChanges(
            predictor_pb.ListChangesRequest(parent=demo.SMALL.name)
        )
        rollbacks = await suite.predictor.ListRollbacks(
            predictor_pb.ListRollbacksRequest(parent="systems/-")
        )
        adapted = await suite.predictor.GetConfiguration(
            predictor_pb.GetConfigurationRequest(name=f"{demo.SMALL.name}/configurations/-")
        )
    text = "\n".join(lines)
    assert ok, text
    # Story 1: cloned as is and kept; story 3: the harmful change on the same machine
    # was refused, newest first.
    assert [c.state for c in lookalike.changes] == [
        common_pb2.CHANGE_STATE_REJECTED,
        common_pb2.CHANGE_STATE_KEPT,
    ]
    kept = lookalike.changes[1]
    assert kept.verification.verdict in (common_pb2.VERDICT_NEUTRAL, common_pb2.VERDICT_POSITIVE)
    # Story 2: adapted to a quarter of the memory, kept after live verification.
    [small_change] = small.changes
    assert small_change.state == common_pb2.CHANGE_STATE_KEPT
    content = json_format.MessageToDict(adapted.configuration.content)
    assert content["cache_mb"] == 4096
    assert 4 <= content["workers"] < 16
    assert adapted.configuration.source == common_pb2.CONFIGURATION_SOURCE_ADAPT
    # The refusal is on record with its reason and the predicted evidence.
    [refusal] = rollbacks.rollbacks
    assert refusal.reason == common_pb2.ROLLBACK_REASON_PREDICTED_NEGATIVE
    assert refusal.change == lookalike.changes[0].name
    assert any(
        k.kpi == "db.client.operation.duration" and k.verdict == common_pb2.VERDICT_NEGATIVE
        for k in refusal.predicted
    )
    assert "=> cloned as is" in text
    assert "=> adapted" in text
    assert "=> REJECTED" in text
    # Story 4: one shadow prediction per machine, bounded by each machine's memory.
    assert f"{demo.LOOKALIKE.name} (64 GiB) => NEGATIVE" not in text
    assert f"{demo.SMALL.name} (16 GiB) => NEGATIVE" in text
    # Story 1's clone is one trace through all five services.
    provider.force_flush()
    spans = exporter.get_finished_spans()
    clone_rpcs = [
        s
        for s in spans
        if s.kind == SpanKind.SERVER
        and s.name == "/cfgclone.v1.OrchestratorService/CloneConfiguration"
    ]
    first = clone_rpcs[0].context
    assert first is not None
    in_trace = [s for s in spans if s.context is not None and s.context.trace_id == first.trace_id]
    served = {
        s.name.split("/")[1].removeprefix("cfgclone.v1.")
        for s in in_trace
        if s.kind == SpanKind.SERVER
    }
    assert set(SERVICES) <= served, served


@pytest.mark.timeout(300)
def test_cfgclone_demo_tells_the_stories_and_exits_zero(fresh_database: str) -> None:
    env = {
        **os.environ,
        "CFGCLONE_DATABASE_URL": fresh_database,
        "CFGCLONE_LOG_FORMAT": "text",
    }
    env.pop("CFGCLONE_AUTH_TOKENS_FILE", None)
    done = subprocess.run(
        [sys.executable, "-m", "cfgclone.cli.main", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for heading in ("1. Clone systems/db-01", "2. Clone systems/db-01", "3. Turn on debug"):
        assert heading in done.stdout
    assert "=> cloned as is" in done.stdout
    assert "=> adapted" in done.stdout
    assert "=> REJECTED" in done.stdout
