"""``cfgclone up`` on the embedded database: five services, reflection, health, metrics,
clean stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cfgclone.cli.suite import free_base_port

SERVICES = {
    "collector": "cfgclone.v1.CollectorService",
    "fingerprint": "cfgclone.v1.FingerprintService",
    "similarity": "cfgclone.v1.SimilarityService",
    "predictor": "cfgclone.v1.PredictorService",
    "orchestrator": "cfgclone.v1.OrchestratorService",
}
GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
CFGCLONE = shutil.which("cfgclone") or str(Path(sys.executable).parent / "cfgclone")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under root the embedded server runs as an unprivileged user, which must be
    # able to reach its folder: pytest's own tmp_path is private to root.
    folder = Path(tempfile.mkdtemp(prefix="cfgclone-up-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_up(
    data_dir: Path,
    base_port: int,
    metrics_port: int | None = None,
    *,
    as_background_job: bool = False,
) -> subprocess.Popen[str]:
    """``cfgclone up``; ``as_background_job``: SIGINT ignored, as a shell starts ``up &``."""
    env = {k: v for k, v in os.environ.items() if k != "CFGCLONE_DATABASE_URL"}
    env["CFGCLONE_DATA_DIR"] = str(data_dir)
    env.pop("CFGCLONE_METRICS_PORT", None)
    if metrics_port is not None:
        env["CFGCLONE_METRICS_PORT"] = str(metrics_port)
    env["XDG_CONFIG_HOME"] = str(data_dir / "config")  # its context file, not the user's
    process = subprocess.Popen(
        [CFGCLONE, "up", "--base-port", str(base_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_interrupt if as_background_job else None,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "cfgclone is up" in line:
            return process
    process.kill()
    process.wait()
    process.stdout.close()
    raise AssertionError("cfgclone up did not come up:\n" + "".join(lines))


def _grpcurl(*args: str) -> str:
    result = subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _stop(process: subprocess.Popen[str]) -> list[int]:
    children = [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=60)
    if process.stdout is not None:
        process.stdout.close()
    assert code == 0
    return children


def _postgres_running_in(data_dir: Path) -> bool:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(str(data_dir) in part for part in cmdline) and "postgres" in " ".join(cmdline):
            return True
    return False


@pytest.mark.slow
def test_up_serves_every_service_with_reflection_and_health_then_stops_cleanly(
    data_dir: Path,
) -> None:
    base = free_base_port()
    metrics = free_base_port()
    process = _start_up(data_dir, base, metrics)
    try:
        for offset, (name, full_name) in enumerate(SERVICES.items()):
            address = f"127.0.0.1:{base + offset}"
            listed = _grpcurl(address, "list").split()
            assert full_name in listed, name
            assert "grpc.health.v1.Health" in listed
            assert any(s.startswith("grpc.reflection.") for s in listed)
            health = json.loads(_grpcurl(address, "grpc.health.v1.Health/Check"))
            assert health == {"status": "SERVING"}
        registered = json.loads(
            _grpcurl(
                "-d",
                '{"system": {"name": "systems/db-01", "cpu_cores": 16}}',
                f"127.0.0.1:{base}",
                "cfgclone.v1.CollectorService/RegisterSystem",
            )
        )
        assert registered["system"]["name"] == "systems/db-01"
        # Each service serves /metrics on the suite's metrics port plus its offset; the
        # calls above show in its latency histogram.
        for offset, full_name in enumerate(SERVICES.values()):
            url = f"http://127.0.0.1:{metrics + offset}/metrics"
            text = urllib.request.urlopen(url, timeout=10).read().decode()
            assert (
                'grpc_server_handling_seconds_count{grpc_method="Check",grpc_service='
                '"grpc.health.v1.Health",grpc_type="unary"}'
            ) in text, full_name
            assert "grpc_server_handling_seconds_bucket" in text
        collector = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10)
        assert (
            'grpc_server_handling_seconds_count{grpc_method="RegisterSystem",'
            'grpc_service="cfgclone.v1.CollectorService",grpc_type="unary"} 1.0'
        ) in collector.read().decode()
    finally:
        children = _stop(process)
    assert len(children) >= 5
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in children
    )
    assert not _postgres_running_in(data_dir)

    # The embedded database is reused on the next start: what was stored is still there.
    # Started as a shell starts a background job, it still stops on SIGINT.
    process = _start_up(data_dir, base, as_background_job=True)
    try:
        listed = json.loads(
            _grpcurl(f"127.0.0.1:{base}", "cfgclone.v1.CollectorService/ListSystems")
        )
        assert [s["name"] for s in listed["systems"]] == ["systems/db-01"]
    finally:
        _stop(process)
