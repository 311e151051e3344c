"""Who may do what, and who hears about it: roles, the webhook, the Prometheus counters,
and training examples built from imported history."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from cfgclone.common.auth import Credentials
from cfgclone.common.store import Store
from cfgclone.fingerprint import main as fingerprint_main
from cfgclone.simulation import HARMFUL_CHANGE
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from tests.behaviour.synthetic import hockey_system
from tests.conftest import serve_in_process, service_settings
from tests.predictor.support import (
    BASE_CONFIGURATION,
    configuration,
    register,
    running_predictor,
    settle,
    with_configuration,
)
from tests.storage import store_samples

CREDENTIALS = Credentials.parse(
    """
    operator-token  alice       operator
    reader-token    dashboards  reader
    """
)
HARMFUL = {**BASE_CONFIGURATION, **HARMFUL_CHANGE}


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []
    failures_left = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.failures_left > 0:
            _Receiver.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[str]:
    """A real HTTP receiver that refuses its first delivery, to prove the retry."""
    _Receiver.received = []
    _Receiver.failures_left = 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/cfgclone"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_reader_may_read_but_not_propose_and_an_operator_is_recorded(
    store: Store,
) -> None:
    system_id = await register(store, "roles")
    proposal = pb.ProposeChangeRequest(
        change=pb.ProposedChange(
            system=f"systems/{system_id}", configuration=configuration(HARMFUL)
        ),
        mode=common_pb2.PREDICTION_MODE_SHADOW,
    )
    async with running_predictor(store, credentials=CREDENTIALS, token="reader-token") as reader:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await reader.stub.ProposeChange(proposal)
        listed = await reader.stub.ListChanges(pb.ListChangesRequest(parent="systems/-"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert listed is not None
    async with running_predictor(
        store, credentials=CREDENTIALS, token="operator-token"
    ) as operator:
        await with_configuration(operator.stub, system_id)
        proposed = await operator.stub.ProposeChange(proposal)
        change = await settle(operator.stub, proposed.change.name)
    assert change.requested_by == "alice"
    assert change.state == common_pb2.CHANGE_STATE_REJECTED


async def test_every_refusal_reaches_the_webhook_and_the_counters(
    store: Store, webhook: str
) -> None:
    async with running_predictor(store, WEBHOOK_URL=webhook) as predictor:
        runner = asyncio.create_task(predictor.guard.webhook.run())
        try:
            system_id = await register(store, "hooked")
            await with_configuration(predictor.stub, system_id)
            proposed = await predictor.stub.ProposeChange(
                pb.ProposeChangeRequest(
                    change=pb.ProposedChange(
                        system=f"systems/{system_id}", configuration=configuration(HARMFUL)
                    ),
                    mode=common_pb2.PREDICTION_MODE_SHADOW,
                )
            )
            change = await settle(predictor.stub, proposed.change.name)
            for _ in range(100):
                if _Receiver.received:
                    break
                await asyncio.sleep(0.1)
            metrics = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"{predictor.http}/metrics").read().decode()
            )
        finally:
            runner.cancel()
    assert change.state == common_pb2.CHANGE_STATE_REJECTED
    [message] = _Receiver.received
    assert message["event"] == "rejected"
    assert message["change"] == change.name
    assert message["reason"] == "PREDICTED_NEGATIVE"
    assert message["prediction"]["verdict"] == "VERDICT_NEGATIVE"  # type: ignore[index]
    assert 'cfgclone_rollbacks_total{reason="predicted_negative"}' in metrics
    assert 'cfgclone_changes_total{outcome="rejected"}' in metrics
    assert 'cfgclone_predictions_total{verdict="negative"}' in metrics


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def test_imported_history_becomes_training_examples(store: Store) -> None:
    """Two past versions and the samples around them: the change between them is an
    example whose observed change is the load-matched latency difference."""
    system_id = await register(store, "imported")
    now = datetime.now(UTC)
    first_applied = now - timedelta(hours=4)
    second_applied = now - timedelta(hours=2)
    start_bucket = int(first_applied.timestamp()) // 10
    before = hockey_system(knee=60.0, buckets=720, seed=4, start_bucket=start_bucket)
    after = hockey_system(knee=30.0, buckets=720, seed=5, start_bucket=start_bucket + 720)
    for metrics in (before, after):
        await store_samples(
            store, system_id, {n: (s.ts_unix_ns, s.values) for n, s in metrics.items()}
        )
    fingerprint_services = await fingerprint_main.build_services(
        service_settings("fingerprint", store.url), store
    )
    async with (
        serve_in_process(fingerprint_services) as (fingerprint_server, _),
        running_predictor(
            store, peers={"fingerprint": f"127.0.0.1:{fingerprint_server.port}"}
        ) as predictor,
    ):
        for content, applied in (
            (BASE_CONFIGURATION, first_applied),
            ({**BASE_CONFIGURATION, "cache_mb": 64}, second_applied),
        ):
            await predictor.stub.CreateConfiguration(
                pb.CreateConfigurationRequest(
                    parent=f"systems/{system_id}",
                    configuration=configuration(
                        content,
                        source=common_pb2.CONFIGURATION_SOURCE_IMPORT,
                        apply_time=_stamp(applied),
                    ),
                )
            )
        deadline = time.monotonic() + 30
        rows: list[tuple[object, ...]] = []
        while time.monotonic() < deadline and not rows:
            await asyncio.sleep(0.2)
            async with store.connection() as conn:
                cursor = await conn.execute(
                    "SELECT e.from_version, e.to_version, e.after, e.observed, e.origin "
                    "FROM training_examples e JOIN systems s ON s.id = e.system_id "
                    "WHERE s.system_id = %s",
                    (system_id,),
                )
                rows = list(await cursor.fetchall())
    [(from_version, to_version, after_content, observed, origin)] = rows
    assert (from_version, to_version, origin) == (1, 2, "import")
    assert after_content["cache_mb"] == 64  # type: ignore[index]
    # The knee moved from load 60 to 30: at the loads both saw, latency rose.
    assert observed["http.server.request.duration"] > 0.2  # type: ignore[index]
    assert np.isfinite(list(observed.values())).all()  # type: ignore[attr-defined]
    # The past version has its own baseline fingerprint, built before the examples; the
    # version still running is left to the fingerprint service's refinement.
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT f.configuration_version FROM fingerprints f "
            "JOIN systems s ON s.id = f.system_id WHERE s.system_id = %s "
            "ORDER BY f.configuration_version",
            (system_id,),
        )
        stored = list(await cursor.fetchall())
    assert [row[0] for row in stored] == [1]
