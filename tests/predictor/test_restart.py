"""Kill the predictor process while a change is being verified, start it again: the
change is resumed (verified over its window) or rolled back, never left unverified."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cfgclone.common.store import Store
from cfgclone.simulation import SimulatedSystem
from cfgclone.v1 import common_pb2
from cfgclone.v1 import predictor_service_pb2 as pb
from cfgclone.v1 import predictor_service_pb2_grpc as pb_grpc
from tests.predictor.live import feed, history
from tests.predictor.support import (
    BASE_CONFIGURATION,
    configuration,
    create_policy,
    register,
    settle,
    with_configuration,
)

LIVE = SimulatedSystem(noise=0.03)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _predictor_process(
    database_url: str, port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "CFGCLONE_DATABASE_URL": database_url,
        "CFGCLONE_PORT": str(port),
        "CFGCLONE_PREDICTOR_RETRAIN_INTERVAL_SECONDS": "0",
        "CFGCLONE_PREDICTOR_SHADOW_SECONDS": "20",
        "CFGCLONE_LOG_FORMAT": "text",
    }
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cfgclone.predictor.main"], env=env, stdout=sink, stderr=sink
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


async def _serving(address: str, within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the predictor at {address} never served")
            await asyncio.sleep(0.2)


async def _state(stub: pb_grpc.PredictorServiceStub, name: str, state: int) -> None:
    for _ in range(600):
        change = (await stub.GetChange(pb.GetChangeRequest(name=name))).change
        if change.state == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never reached {state}: {change}")


@pytest.mark.timeout(240)
async def test_a_change_verifying_when_the_predictor_is_killed_is_finished_after_restart(
    store: Store, tmp_path: Path
) -> None:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    system_id = await register(store, "restart")
    await history(store, system_id, LIVE, BASE_CONFIGURATION)
    stop = asyncio.Event()
    feeder = asyncio.create_task(
        feed(store, system_id, LIVE, lambda: BASE_CONFIGURATION, stop, interval_s=0.1)
    )
    log = tmp_path / "predictor.log"
    try:
        with _predictor_process(store.url, port, log) as first:
            await _serving(address)
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.PredictorServiceStub(channel)
                await with_configuration(stub, system_id)
                policy = await create_policy(stub, delay_s=1.0, window_s=4.0, min_samples=10)
                proposed = await stub.ProposeChange(
                    pb.ProposeChangeRequest(
                        change=pb.ProposedChange(
                            system=f"systems/{system_id}",
                            configuration=configuration(
                                {**BASE_CONFIGURATION, "request_timeout_s": 60}
                            ),
                        ),
                        mode=common_pb2.PREDICTION_MODE_SHADOW,
                        policy=policy,
                    )
                )
                name = proposed.change.name
                await _state(stub, name, common_pb2.CHANGE_STATE_VERIFYING)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        with _predictor_process(store.url, port, log):
            await _serving(address)
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.PredictorServiceStub(channel)
                change = await settle(stub, name, within=90)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
    assert change.state in (common_pb2.CHANGE_STATE_KEPT, common_pb2.CHANGE_STATE_ROLLED_BACK)
    assert change.HasField("verification"), log.read_text()
    assert "resumed 1 changes" in log.read_text()
