"""Agent overhead benchmark: CPU and memory of ``cfgclone agent`` sampling every second.

Starts a collector (its own process, on a temporary database created on
``CFGCLONE_BENCH_DATABASE_URL`` and dropped at the end) and the agent as a
separate process with host sampling every second, batches closed every 10 s and
streamed to the collector. After a warm-up (imports and the first connection
are a one-off cost) it measures the agent from outside with psutil for
``--seconds`` (default 60): CPU time used over wall time, as percent of one
core, and the largest resident set size seen. Prints::

    {"cpu_percent_of_one_core": ..., "rss_mb": ...}

The targets are under 1 % of one core and under 60 MB.

    .venv/bin/python benchmarks/agent_overhead.py --json [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
from bench_support import collector_process, temporary_database

WARM_UP_SECONDS = 5.0


def agent_config(address: str, folder: Path) -> Path:
    path = folder / "agent.toml"
    path.write_text(
        f'[collector]\naddress = "{address}"\n'
        '[system]\nname = "overhead-01"\n'
        "[sampling]\ninterval_seconds = 1.0\nbatch_max_seconds = 10.0\n"
        f'[spool]\npath = "{folder / "spool"}"\n',
        encoding="utf-8",
    )
    return path


def measure(seconds: float, url: str) -> dict[str, float]:
    with collector_process(url) as address, tempfile.TemporaryDirectory() as folder:
        config = agent_config(address, Path(folder))
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cfgclone.collector.agent_main",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ],
            stdin=subprocess.DEVNULL,
        )
        try:
            process = psutil.Process(agent.pid)
            time.sleep(WARM_UP_SECONDS)
            before = process.cpu_times()
            started = time.monotonic()
            peak_rss = process.memory_info().rss
            while time.monotonic() - started < seconds:
                time.sleep(min(1.0, seconds - (time.monotonic() - started)))
                peak_rss = max(peak_rss, process.memory_info().rss)
            after = process.cpu_times()
            elapsed = time.monotonic() - started
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    used = (after.user - before.user) + (after.system - before.system)
    return {
        "cpu_percent_of_one_core": round(100.0 * used / elapsed, 3),
        "rss_mb": round(peak_rss / 2**20, 1),
    }


def stored_samples(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM samples").fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    with temporary_database() as url:
        result = measure(args.seconds, url)
        if stored_samples(url) == 0:
            raise SystemExit("the agent delivered no samples; the measurement is void")
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
