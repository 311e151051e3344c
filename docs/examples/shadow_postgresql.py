#!/usr/bin/env python3
"""A complete shadow script for the command shadow provider: a throw-away PostgreSQL.

cfgclone runs it as ``shadow_postgresql.py STEP`` with a JSON request on standard
input and the shadow's private folder as the working directory (see docs/shadow.md):

* ``create``: a fresh cluster (initdb) on a free port, filled by ``pgbench -i``;
* ``apply``: the configuration written to an included file, the server restarted;
* ``run``: pgbench at the target's recorded commit rate (``postgresql.commits`` of the
  load profile, rate-limited with ``--rate``) for a short warm-up (not reported: cold
  caches after the restart) and then the duration, printing per second
  ``postgresql.commits``, ``db.client.operation.duration`` (seconds, including the
  schedule lag, as a client feels it) and ``system.cpu.utilization`` (the server's
  processes, as a fraction of all cores) as JSON;
* ``destroy``: the server stopped (cfgclone removes the folder afterwards).

Only the standard library is used. The server is started in the step's own process
group, so cfgclone can kill it even if ``destroy`` never runs. As root, PostgreSQL
runs as the ``postgres`` OS user through ``setpriv``.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

BIN = Path(os.environ.get("PG_BIN_DIR", "/usr/lib/postgresql/15/bin"))
STATE = "state.json"
PROGRESS = re.compile(r"progress: [\d.]+ s, ([\d.]+) tps, lat ([\d.]+) ms")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARMUP_S = 2


def main() -> int:
    step = sys.argv[-1]
    request = json.load(sys.stdin)
    workdir = Path(request["workdir"])
    steps = {"create": create, "apply": apply, "run": run, "destroy": destroy}
    if step not in steps:
        print(f"unknown step {step!r}", file=sys.stderr)
        return 2
    steps[step](workdir, request)
    return 0


def as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses root: run its programs as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def create(workdir: Path, request: dict) -> None:
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
    data = workdir / "data"
    subprocess.run(
        as_server_user([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("include_if_exists = 'cfgclone.conf'\n")
    state = {"port": free_port(), "cores": os.cpu_count() or 1}
    (workdir / STATE).write_text(json.dumps(state))
    write_configuration(data, request["settings"])
    start(workdir, state)
    subprocess.run(
        [str(BIN / "pgbench"), "-i", "-q", "-s", "1", *connection(state), "postgres"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def write_configuration(data: Path, configuration: dict) -> None:
    lines = []
    for name, value in sorted(configuration.items()):
        if isinstance(value, bool):
            value = "on" if value else "off"
        text = str(value).replace("'", "''")
        lines.append(f"{name} = '{text}'\n")
    (data / "cfgclone.conf").write_text("".join(lines))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(data / "cfgclone.conf", owner.pw_uid, owner.pw_gid)


def connection(state: dict) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(state["port"]), "-U", "postgres"]


def start(workdir: Path, state: dict) -> None:
    """Start the server in this step's process group and wait until it accepts connections."""
    log = (workdir / "server.log").open("ab")
    argv = [str(BIN / "postgres"), "-D", str(workdir / "data"), "-p", str(state["port"])]
    argv += ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={workdir}"]
    server = subprocess.Popen(
        as_server_user(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    for _ in range(600):
        if server.poll() is not None:
            tail = (workdir / "server.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"the server did not start:\n{tail}")
        ready = subprocess.run(
            [str(BIN / "pg_isready"), "-q", *connection(state)], check=False
        ).returncode
        if ready == 0:
            return
        time.sleep(0.1)
    raise SystemExit("the server did not accept connections within 60 s")


def postmaster_pid(workdir: Path) -> int | None:
    try:
        return int((workdir / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop(workdir: Path) -> None:
    pid = postmaster_pid(workdir)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGINT)  # fast shutdown
    except ProcessLookupError:
        return
    for _ in range(300):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def apply(workdir: Path, request: dict) -> None:
    state = json.loads((workdir / STATE).read_text())
    stop(workdir)
    write_configuration(workdir / "data", request["configuration"])
    start(workdir, state)


def server_cpu_seconds(postmaster: int) -> float:
    """CPU seconds of the postmaster, its live children and the children it has reaped."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def run(workdir: Path, request: dict) -> None:
    state = json.loads((workdir / STATE).read_text())
    interval = max(1, round(request["interval_s"]))
    duration = max(interval, round(request["duration_s"]))
    rate = request["load_profile"].get("postgresql.commits")
    # The first seconds after a restart run on cold caches and include connecting:
    # they are run but not reported.
    warmup = WARMUP_S
    argv = [str(BIN / "pgbench"), *connection(state), "-n", "-T", str(warmup + duration)]
    argv += ["-c", str(request.get("clients", 4)), "-P", str(interval)]
    if rate:
        argv += ["-R", f"{rate:g}"]
    cpu: list[float] = []
    done = threading.Event()
    sampler = threading.Thread(
        target=sample_cpu, args=(workdir, interval, state["cores"], cpu, done), daemon=True
    )
    sampler.start()
    bench = subprocess.run([*argv, "postgres"], capture_output=True, text=True, check=False)
    done.set()
    sampler.join()
    if bench.returncode != 0:
        raise SystemExit(f"pgbench failed: {bench.stderr[-2000:]}")
    commits, latency = [], []
    for match in PROGRESS.finditer(bench.stderr):
        commits.append(float(match.group(1)))
        latency.append(float(match.group(2)) / 1000.0)
    skip = warmup // interval
    samples = {
        "postgresql.commits": commits[skip:],
        "db.client.operation.duration": latency[skip:],
        "system.cpu.utilization": cpu[skip : len(commits)],
    }
    print(json.dumps({"samples": samples}))


def sample_cpu(
    workdir: Path, interval: int, cores: int, sink: list[float], done: threading.Event
) -> None:
    postmaster = postmaster_pid(workdir)
    if postmaster is None:
        return
    before, at = server_cpu_seconds(postmaster), time.monotonic()
    while not done.wait(interval):
        now, now_at = server_cpu_seconds(postmaster), time.monotonic()
        sink.append(max(0.0, now - before) / (now_at - at) / cores)
        before, at = now, now_at


def destroy(workdir: Path, request: dict) -> None:
    stop(workdir)
    shutil.rmtree(workdir / "data", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
