"""pgbench as the shadow workload: its command line and its per-transaction log.

Per-interval KPIs come from the per-transaction log (``--log``), not from
pgbench's summary: the judge needs many samples per run, and a p95 needs the
individual latencies. Each log line is ``client transaction latency_us script
epoch_s epoch_us [lag_us]``; with a rate limit the latency includes the
schedule lag, so a server that falls behind shows it as latency, as a user
would feel it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cfgclone.predictor.shadow.model import (
    KPI_LATENCY_MEAN,
    KPI_LATENCY_P95,
    KPI_THROUGHPUT,
    WorkloadShape,
)

__all__ = ["TransactionLog", "interval_samples", "pgbench_command", "read_transaction_log"]

_COVERAGE_SLACK = 0.05
"""Share of an interval a run may fall short by and the interval still count as whole."""


def pgbench_command(
    pgbench: Path,
    *,
    host: str,
    port: int,
    user: str,
    dbname: str,
    load: WorkloadShape,
    duration_s: float,
    log_prefix: Path,
) -> list[str]:
    """The pgbench command line that puts ``load`` on a server for ``duration_s`` seconds."""
    argv = [
        str(pgbench),
        "--host",
        host,
        "--port",
        str(port),
        "--username",
        user,
        "--no-vacuum",
        "--client",
        str(load.clients),
        "--jobs",
        str(load.threads),
        "--time",
        str(max(1, math.ceil(duration_s))),
        "--builtin",
        load.script,
        "--log",
        f"--log-prefix={log_prefix}",
    ]
    if load.rate_tps is not None:
        argv += ["--rate", f"{load.rate_tps:g}"]
    argv.append(dbname)
    return argv


@dataclass(frozen=True)
class TransactionLog:
    """The transactions of one pgbench run."""

    end_s: NDArray[np.float64]
    """End time of each completed transaction (Unix seconds)."""
    latency_ms: NDArray[np.float64]
    """Latency of each completed transaction in milliseconds."""
    failed: int
    """Transactions pgbench logged as failed or skipped."""

    @property
    def completed(self) -> int:
        return int(self.end_s.size)


def read_transaction_log(paths: Iterable[Path]) -> TransactionLog:
    """Parse pgbench's per-transaction log files (one per thread)."""
    ends: list[float] = []
    latencies: list[float] = []
    failed = 0
    for path in paths:
        with path.open(encoding="ascii", errors="replace") as log:
            for line in log:
                fields = line.split()
                if len(fields) < 6:
                    continue
                if not fields[2].isdigit():  # "failed" or "skipped"
                    failed += 1
                    continue
                ends.append(int(fields[4]) + int(fields[5]) / 1e6)
                latencies.append(int(fields[2]) / 1e3)
    order = np.argsort(np.asarray(ends, dtype=np.float64), kind="stable")
    return TransactionLog(
        end_s=np.asarray(ends, dtype=np.float64)[order],
        latency_ms=np.asarray(latencies, dtype=np.float64)[order],
        failed=failed,
    )


def interval_samples(
    log: TransactionLog, *, duration_s: float, interval_s: float
) -> dict[str, tuple[float, ...]]:
    """Throughput, mean and p95 latency per whole interval of the run.

    Intervals start at the first transaction's start; an interval the run did
    not cover (pgbench stopped early) is dropped rather than reported as a dip
    in throughput. Intervals without a transaction give a throughput of 0 and
    no latency sample.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    samples: dict[str, list[float]] = {
        KPI_THROUGHPUT: [],
        KPI_LATENCY_MEAN: [],
        KPI_LATENCY_P95: [],
    }
    if log.completed == 0:
        return {kpi: () for kpi in samples}
    start = float(np.min(log.end_s - log.latency_ms / 1e3))
    covered = float(log.end_s[-1]) - start
    intervals = min(
        math.floor(duration_s / interval_s + _COVERAGE_SLACK),
        math.floor(covered / interval_s + _COVERAGE_SLACK),
    )
    index = np.floor((log.end_s - start) / interval_s).astype(np.int64)
    for interval in range(max(intervals, 0)):
        latencies = log.latency_ms[index == interval]
        samples[KPI_THROUGHPUT].append(latencies.size / interval_s)
        if latencies.size:
            samples[KPI_LATENCY_MEAN].append(float(np.mean(latencies)) / 1e3)
            samples[KPI_LATENCY_P95].append(float(np.percentile(latencies, 95)) / 1e3)
    return {kpi: tuple(values) for kpi, values in samples.items()}
