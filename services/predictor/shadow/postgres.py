"""PostgreSQL shadow provider: a throw-away cluster with pgbench as the workload.

Each copy is a fresh cluster (``initdb`` in a temporary folder) filled by
``pgbench -i`` at the target's data scale; configurations are applied through
the PostgreSQL applier, exactly as they would be on the target, with a restart
when a parameter needs one; the workload is pgbench at the target's load level:
rate-limited (``--rate``) to the target's recorded commit rate over its busy period,
not as fast as the copy goes, and a run that could not reach that rate says so in
its details (the copy's hardware is then what limits it). KPIs per interval:
throughput, mean and p95 latency from pgbench's per-transaction log, and the CPU the
server's processes used.

Resources are bounded: every program has a time limit and is killed with its
process group past it; shared_buffers and max_connections are capped; the
settings that would open a port, archive, or point at the target's files are
never taken over from the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import shutil
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from cfgclone.common.processes import run_bounded
from cfgclone.predictor.appliers.model import ApplyFailed, ManagedSystem
from cfgclone.predictor.appliers.postgres import PostgresApplier, setting_text
from cfgclone.predictor.shadow.cluster import (
    SUPERUSER,
    ClusterSettings,
    ThrowawayCluster,
    throwaway_cluster,
)
from cfgclone.predictor.shadow.load import DB_OFFERED_LOAD, shortfall
from cfgclone.predictor.shadow.model import (
    KPI_CPU,
    Configuration,
    ConfigValue,
    ShadowFailed,
    ShadowTarget,
    WorkloadResult,
    WorkloadShape,
)
from cfgclone.predictor.shadow.pgbench import (
    interval_samples,
    pgbench_command,
    read_transaction_log,
)

__all__ = [
    "PROTECTED_SETTINGS",
    "PostgresShadowCopy",
    "PostgresShadowProvider",
    "PostgresShadowSettings",
    "shadow_settings",
]

logger = logging.getLogger(__name__)

PROTECTED_SETTINGS = frozenset(
    {
        "archive_cleanup_command",
        "archive_command",
        "archive_library",
        "archive_mode",
        "bonjour",
        "bonjour_name",
        "config_file",
        "data_directory",
        "event_source",
        "external_pid_file",
        "hba_file",
        "huge_pages",
        "ident_file",
        "krb_server_keyfile",
        "listen_addresses",
        "log_directory",
        "logging_collector",
        "port",
        "primary_conninfo",
        "primary_slot_name",
        "recovery_end_command",
        "restore_command",
        "unix_socket_directories",
        "unix_socket_group",
        "unix_socket_permissions",
    }
)
"""Target settings a shadow copy never takes: they would open it to the network, run
the target's archive or recovery commands, or point at the target's files. Every
``ssl*`` setting is left out as well (the copy has no certificates)."""

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|kB|MB|GB|TB)?\s*$")
_MEMORY_UNITS_MB = {"B": 1 / 2**20, "kB": 1 / 1024, "MB": 1.0, "GB": 1024.0, "TB": 1024.0**2}


@dataclass(frozen=True)
class PostgresShadowSettings:
    """Bounds and tools of the PostgreSQL shadow provider."""

    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    """Where the throw-away clusters run."""
    sample_interval_s: float = 1.0
    """Length of the interval each KPI sample covers."""
    shared_buffers_limit_mb: int = 256
    """Largest shared_buffers a copy gets, whatever the target has."""
    max_connections_limit: int = 200
    """Largest max_connections a copy gets."""
    max_clients: int = 200
    """Largest number of pgbench clients."""
    max_data_scale: int = 50
    """Largest pgbench scale of a copy's data (1 is about 16 MB)."""
    data_timeout_s: float = 120.0
    """Limit of filling a copy with data."""
    workload_grace_s: float = 15.0
    """Time pgbench may take beyond its duration before it is killed."""
    pgbench: Path | None = None
    """The pgbench program; None: the one beside the server binaries, else on PATH."""

    def __post_init__(self) -> None:
        if self.sample_interval_s <= 0:
            raise ValueError("sample_interval_s must be positive")
        if self.shared_buffers_limit_mb < 1 or self.max_connections_limit < 5:
            raise ValueError("the shared_buffers and max_connections limits are too small")
        if self.max_clients < 1 or self.max_data_scale < 1:
            raise ValueError("max_clients and max_data_scale must be at least 1")
        if self.data_timeout_s <= 0 or self.workload_grace_s <= 0:
            raise ValueError("time limits must be positive")


def shadow_settings(
    configuration: Mapping[str, ConfigValue], settings: PostgresShadowSettings
) -> tuple[dict[str, ConfigValue], dict[str, str]]:
    """The configuration a copy can safely run, and a note for each setting changed.

    Protected settings are dropped; shared_buffers and max_connections are
    capped. The notes go into the run's details so a reader knows the copy
    differed from the target there.
    """
    safe: dict[str, ConfigValue] = {}
    notes: dict[str, str] = {}
    for name, value in configuration.items():
        if name in PROTECTED_SETTINGS or name.startswith("ssl"):
            notes[name] = "not taken over by the shadow copy"
            continue
        if name == "shared_buffers":
            size = _memory_mb(setting_text(value), block_kb=8)
            if size is not None and size > settings.shared_buffers_limit_mb:
                notes[name] = f"capped from {value} to {settings.shared_buffers_limit_mb}MB"
                value = f"{settings.shared_buffers_limit_mb}MB"
        if name == "max_connections":
            text = setting_text(value)
            if text.isdigit() and int(text) > settings.max_connections_limit:
                notes[name] = f"capped from {value} to {settings.max_connections_limit}"
                value = settings.max_connections_limit
        safe[name] = value
    return safe, notes


def _memory_mb(text: str, *, block_kb: int) -> float | None:
    match = _MEMORY.match(text)
    if match is None:
        return None
    number, unit = float(match.group(1)), match.group(2)
    if unit is None:
        return number * block_kb / 1024
    return number * _MEMORY_UNITS_MB[unit]


class PostgresShadowCopy:
    """A running throw-away cluster standing in for the target."""

    def __init__(
        self, cluster: ThrowawayCluster, target: ShadowTarget, settings: PostgresShadowSettings
    ) -> None:
        self._cluster = cluster
        self._target = target
        self._settings = settings
        self._applier = PostgresApplier()
        self._system = ManagedSystem(
            name=f"{target.system} (shadow)", host="localhost", endpoint=cluster.conninfo
        )
        self._runs = 0
        self._restarts = 0
        self._notes: dict[str, str] = {}
        self._pgbench = settings.pgbench or _find_pgbench(cluster.bin_dir)

    @property
    def cluster(self) -> ThrowawayCluster:
        return self._cluster

    @property
    def details(self) -> Mapping[str, str]:
        return {
            "workdir": str(self._cluster.workdir),
            "postgres_bin_dir": str(self._cluster.bin_dir),
            "pgbench": str(self._pgbench),
            "data_scale": str(self._data_scale),
            "restarts": str(self._restarts),
            **{f"setting.{name}": note for name, note in sorted(self._notes.items())},
        }

    @property
    def _data_scale(self) -> int:
        return min(self._target.data_scale, self._settings.max_data_scale)

    async def load_data(self) -> None:
        """Fill the copy with pgbench's tables at the target's scale."""
        outcome = await run_bounded(
            [
                str(self._pgbench),
                "--initialize",
                "--quiet",
                "--scale",
                str(self._data_scale),
                "--host",
                str(self._cluster.socket_dir),
                "--port",
                str(self._cluster.port),
                "--username",
                SUPERUSER,
                "postgres",
            ],
            timeout=self._settings.data_timeout_s,
            cwd=self._cluster.workdir,
            env=self._cluster.environment(),
        )
        if not outcome.succeeded:
            what = "timed out" if outcome.timed_out else f"exited with {outcome.exit_status}"
            raise ShadowFailed(
                f"filling the shadow copy (pgbench -i) {what}: {_tail(outcome.output)}"
            )

    async def apply(self, configuration: Configuration) -> None:
        wanted, notes = shadow_settings({**self._target.settings, **configuration}, self._settings)
        self._notes.update(notes)
        try:
            result = await self._applier.rollback(self._system, wanted)
        except ApplyFailed as error:
            raise ShadowFailed(f"the configuration was refused: {error}") from error
        if result.restart_required:
            logger.info("restarting the shadow copy for %s", ", ".join(result.restart_required))
            self._restarts += 1
            await self._cluster.restart()

    async def run_workload(self, load: WorkloadShape, duration_s: float) -> WorkloadResult:
        if load.clients > self._settings.max_clients:
            raise ShadowFailed(
                f"{load.clients} clients is above the shadow limit of {self._settings.max_clients}"
            )
        self._runs += 1
        run_dir = self._cluster.workdir / f"pgbench-{self._runs}"
        run_dir.mkdir()
        argv = pgbench_command(
            self._pgbench,
            host=str(self._cluster.socket_dir),
            port=self._cluster.port,
            user=SUPERUSER,
            dbname="postgres",
            load=load,
            duration_s=duration_s,
            log_prefix=run_dir / "tx",
        )
        cpu: list[float] = []
        sampler = asyncio.create_task(
            _sample_cpu(self._cluster, self._settings.sample_interval_s, cpu)
        )
        try:
            outcome = await run_bounded(
                argv,
                timeout=duration_s + self._settings.workload_grace_s,
                cwd=run_dir,
                env=self._cluster.environment(),
            )
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        try:
            log = read_transaction_log(sorted(run_dir.glob("tx.*")))
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        samples = interval_samples(
            log, duration_s=duration_s, interval_s=self._settings.sample_interval_s
        )
        samples[KPI_CPU] = tuple(cpu)
        details = {
            "command": shlex.join(argv),
            "exit_status": str(outcome.exit_status),
            "transactions": str(log.completed),
            "failed_transactions": str(log.failed),
            "summary": _summary(outcome.stdout),
        }
        if load.rate_tps is not None:
            reached = log.completed / duration_s
            details["rate"] = f"{reached:.4g}/s reached of {load.rate_tps:.4g}/s asked"
            note = shortfall(load.rate_tps, reached)
            if note is not None:
                details[f"load.{DB_OFFERED_LOAD}"] = note
                logger.warning("shadow of %s: %s", self._target.system, note)
        error: str | None = None
        if outcome.timed_out:
            error = (
                f"pgbench did not finish within {duration_s + self._settings.workload_grace_s:g} s"
            )
        elif not outcome.succeeded:
            error = f"pgbench exited with status {outcome.exit_status}: {_tail(outcome.stderr, 5)}"
        elif log.completed == 0:
            error = "no transaction completed"
        return WorkloadResult(samples=samples, details=details, error=error)


class PostgresShadowProvider:
    """Makes PostgreSQL shadow copies: throw-away clusters filled by pgbench."""

    def __init__(self, settings: PostgresShadowSettings | None = None) -> None:
        self._settings = settings or PostgresShadowSettings()

    @property
    def name(self) -> str:
        return "postgresql"

    @contextlib.asynccontextmanager
    async def copy_of(self, target: ShadowTarget) -> AsyncIterator[PostgresShadowCopy]:
        async with throwaway_cluster(self._settings.cluster) as cluster:
            copy = PostgresShadowCopy(cluster, target, self._settings)
            await copy.load_data()
            yield copy


async def _sample_cpu(cluster: ThrowawayCluster, interval_s: float, sink: list[float]) -> None:
    """Append the server's CPU seconds per second, one value per interval, until cancelled."""
    previous, previous_at = _server_cpu_seconds(cluster), time.monotonic()
    try:
        while True:
            await asyncio.sleep(interval_s)
            now, now_at = _server_cpu_seconds(cluster), time.monotonic()
            sink.append(max(0.0, now - previous) / (now_at - previous_at))
            previous, previous_at = now, now_at
    except asyncio.CancelledError:
        # The workload's last interval is usually cut short by its end; keep it when
        # it covers at least half an interval.
        now, now_at = _server_cpu_seconds(cluster), time.monotonic()
        if now_at - previous_at >= interval_s / 2:
            sink.append(max(0.0, now - previous) / (now_at - previous_at))
        raise


def _server_cpu_seconds(cluster: ThrowawayCluster) -> float:
    """CPU seconds of the postmaster, its live children, and the children it has reaped."""
    total = 0.0
    for index, process in enumerate(cluster.server_processes()):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
        if index == 0:  # the postmaster accounts for backends that have exited
            total += times.children_user + times.children_system
    return total


def _find_pgbench(bin_dir: Path) -> Path:
    beside = bin_dir / "pgbench"
    if beside.exists():
        return beside
    found = shutil.which("pgbench")
    if found is None:
        raise ShadowFailed("pgbench is not installed")
    return Path(found)


def _summary(stdout: str) -> str:
    """pgbench's closing figures (tps, latency average), one line."""
    keep = ("latency average", "tps =", "number of failed", "number of transactions actually")
    return "; ".join(line.strip() for line in stdout.splitlines() if line.strip().startswith(keep))


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
