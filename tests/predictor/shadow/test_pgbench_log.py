"""pgbench's command line and per-transaction log, turned into per-interval KPI samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cfgclone.predictor.shadow import (
    KPI_LATENCY_MEAN,
    KPI_LATENCY_P95,
    KPI_THROUGHPUT,
    PostgresShadowSettings,
    WorkloadShape,
)
from cfgclone.predictor.shadow.pgbench import (
    interval_samples,
    pgbench_command,
    read_transaction_log,
)
from cfgclone.predictor.shadow.postgres import shadow_settings

START = 1_700_000_000


def _line(client: int, latency_us: int, end_s: float) -> str:
    whole = int(end_s)
    return f"{client} 1 {latency_us} 0 {whole} {round((end_s - whole) * 1e6)}\n"


def test_the_log_of_every_thread_is_read_and_failures_are_counted(tmp_path: Path) -> None:
    (tmp_path / "tx.10").write_text(
        _line(0, 2000, START + 0.5) + _line(0, 3000, START + 1.2) + "0 2 failed 0 1 2\n"
    )
    (tmp_path / "tx.10.1").write_text(_line(1, 1000, START + 0.1) + "1 2 skipped 0 1 2\n")
    log = read_transaction_log(sorted(tmp_path.glob("tx.*")))
    assert log.completed == 3
    assert log.failed == 2
    assert list(log.latency_ms) == [1.0, 2.0, 3.0]  # in order of their end
    assert np.all(np.diff(log.end_s) >= 0)


def test_interval_samples_give_throughput_mean_and_p95_per_second(tmp_path: Path) -> None:
    lines = []
    # Second 0: 100 transactions of 1 ms; second 1: 50 of 1 ms and 50 of 10 ms.
    for index in range(100):
        lines.append(_line(0, 1000, START + 0.001 + index * 0.0099))
    for index in range(100):
        lines.append(_line(0, 10_000 if index % 2 else 1000, START + 1.005 + index * 0.0099))
    (tmp_path / "tx.1").write_text("".join(lines))
    samples = interval_samples(
        read_transaction_log([tmp_path / "tx.1"]), duration_s=2, interval_s=1.0
    )
    assert samples[KPI_THROUGHPUT] == (100.0, 100.0)
    # Seconds, as the vocabulary's db.client.operation.duration is.
    assert samples[KPI_LATENCY_MEAN] == pytest.approx((0.001, 0.0055))
    assert samples[KPI_LATENCY_P95][0] == pytest.approx(0.001)
    assert samples[KPI_LATENCY_P95][1] == pytest.approx(0.010)


def test_an_interval_the_run_did_not_reach_is_dropped_not_reported_as_a_dip(
    tmp_path: Path,
) -> None:
    (tmp_path / "tx.1").write_text(
        "".join(_line(0, 1000, START + 0.01 + index * 0.1) for index in range(15))
    )
    samples = interval_samples(
        read_transaction_log([tmp_path / "tx.1"]), duration_s=3, interval_s=1.0
    )
    assert samples[KPI_THROUGHPUT] == (10.0,)


def test_a_run_without_transactions_has_no_samples(tmp_path: Path) -> None:
    (tmp_path / "tx.1").write_text("")
    samples = interval_samples(
        read_transaction_log([tmp_path / "tx.1"]), duration_s=3, interval_s=1.0
    )
    assert samples == {KPI_THROUGHPUT: (), KPI_LATENCY_MEAN: (), KPI_LATENCY_P95: ()}


def test_the_command_line_carries_the_load_level() -> None:
    argv = pgbench_command(
        Path("/usr/bin/pgbench"),
        host="/tmp/x",
        port=5432,
        user="postgres",
        dbname="postgres",
        load=WorkloadShape(clients=8, threads=2, rate_tps=150.0),
        duration_s=2.5,
        log_prefix=Path("/tmp/x/tx"),
    )
    assert argv[0] == "/usr/bin/pgbench"
    assert argv[argv.index("--client") + 1] == "8"
    assert argv[argv.index("--jobs") + 1] == "2"
    assert argv[argv.index("--time") + 1] == "3"
    assert argv[argv.index("--rate") + 1] == "150"
    assert "--log" in argv
    assert "--log-prefix=/tmp/x/tx" in argv
    unlimited = pgbench_command(
        Path("pgbench"),
        host="h",
        port=1,
        user="u",
        dbname="d",
        load=WorkloadShape(),
        duration_s=1,
        log_prefix=Path("tx"),
    )
    assert "--rate" not in unlimited


def test_a_copy_never_takes_ports_archiving_or_huge_memory_from_the_target() -> None:
    safe, notes = shadow_settings(
        {
            "port": 6432,
            "listen_addresses": "*",
            "archive_command": "rsync %p backup:",
            "ssl": True,
            "shared_buffers": "16GB",
            "max_connections": 5000,
            "work_mem": "64MB",
        },
        PostgresShadowSettings(shared_buffers_limit_mb=256, max_connections_limit=200),
    )
    assert safe == {"shared_buffers": "256MB", "max_connections": 200, "work_mem": "64MB"}
    assert set(notes) == {
        "port",
        "listen_addresses",
        "archive_command",
        "ssl",
        "shared_buffers",
        "max_connections",
    }
    small, _ = shadow_settings({"shared_buffers": 16384}, PostgresShadowSettings())
    assert small == {"shared_buffers": 16384}  # 16384 blocks of 8 kB = 128 MB


@pytest.mark.parametrize(
    "shape",
    [
        {"clients": 0},
        {"clients": 2, "threads": 3},
        {"rate_tps": 0.0},
        {"script": ""},
    ],
)
def test_a_workload_shape_refuses_impossible_loads(shape: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"client|threads|rate|script"):
        WorkloadShape(**shape)  # type: ignore[arg-type]
