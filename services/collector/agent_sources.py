"""What the agent measures: the host (psutil), TCP connect time, HTTP probes, local
Prometheus endpoints and exec plugins.

Each source is called on its own interval and returns the samples of that
instant; a source that fails returns what it could (a probe that gets no
answer reports itself down rather than nothing, so the outage is visible).
Host counters (disk and network bytes) become rates here, between consecutive
calls, under the names :mod:`.host_metrics` defines for every sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import psutil

from cfgclone import vocabulary
from cfgclone.collector.agent_config import (
    AgentConfig,
    ExecConfig,
    HttpProbeConfig,
    PrometheusConfig,
    TcpProbeConfig,
)
from cfgclone.collector.batching import GAUGE, Sample
from cfgclone.collector.host_metrics import (
    CPU_UTILIZATION,
    DISK_READ,
    DISK_WRITE,
    LOOPBACK_INTERFACES,
    MEMORY_USAGE,
    MEMORY_UTILIZATION,
    NETWORK_RECEIVE,
    NETWORK_TRANSMIT,
    PROCESS_COUNT,
    CounterRates,
    HostMetric,
    ScrapeConverter,
)
from cfgclone.collector.http_fetch import FetchError, http_get
from cfgclone.collector.prometheus_text import parse_exposition

__all__ = [
    "ExecPlugin",
    "HostSampler",
    "HttpProbe",
    "PrometheusScrape",
    "Source",
    "TcpProbe",
    "sources_from_config",
]

logger = logging.getLogger(__name__)


class Source(Protocol):
    """Something the agent samples on an interval."""

    @property
    def name(self) -> str:
        """Short name for logs: ``host``, ``tcp.primary_db``."""
        ...

    @property
    def interval_seconds(self) -> float: ...

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        """The samples of this instant, stamped ``ts_unix_ns``."""
        ...


class HostSampler:
    """CPU, memory, disk and network throughput, and the process count, from psutil."""

    name = "host"

    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self._rates = CounterRates()
        psutil.cpu_percent(None)  # the first call only starts the measurement

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        at = time.monotonic()
        memory = psutil.virtual_memory()
        used = float(memory.total - memory.available)
        samples = [
            CPU_UTILIZATION.sample(psutil.cpu_percent(None) / 100.0, ts_unix_ns),
            MEMORY_USAGE.sample(used, ts_unix_ns),
            MEMORY_UTILIZATION.sample(used / memory.total if memory.total else 0.0, ts_unix_ns),
        ]
        disk = psutil.disk_io_counters()
        if disk is not None:
            self._rate(samples, DISK_READ, disk.read_bytes, at, ts_unix_ns)
            self._rate(samples, DISK_WRITE, disk.write_bytes, at, ts_unix_ns)
        interfaces = psutil.net_io_counters(pernic=True)
        outside = [c for nic, c in interfaces.items() if nic not in LOOPBACK_INTERFACES]
        if outside:
            received = sum(c.bytes_recv for c in outside)
            sent = sum(c.bytes_sent for c in outside)
            self._rate(samples, NETWORK_RECEIVE, received, at, ts_unix_ns)
            self._rate(samples, NETWORK_TRANSMIT, sent, at, ts_unix_ns)
        samples.append(PROCESS_COUNT.sample(float(len(psutil.pids())), ts_unix_ns))
        return samples

    def _rate(
        self, samples: list[Sample], metric: HostMetric, total: float, at: float, ts: int
    ) -> None:
        rate = self._rates.rate(metric.name, total, at)
        if rate is not None:
            samples.append(metric.sample(rate, ts))


def _probe_sample(spec: vocabulary.MetricSpec, probe: str, value: float, ts: int) -> Sample:
    """A sample of a probe family: the family's metric with this probe's label."""
    metric, labels = vocabulary.parse_series(spec.name)
    series = vocabulary.series(metric, [(key, probe) for key, _ in labels])
    return Sample(series, value, ts, spec.unit, GAUGE)


class TcpProbe:
    """Time to open a TCP connection: ``cfgclone.probe.tcp.connect.duration{probe=...}``
    and ``cfgclone.probe.tcp.up{probe=...}`` (1 or 0)."""

    def __init__(self, config: TcpProbeConfig) -> None:
        self.config = config
        self.name = f"tcp_probe {config.name}"
        self.interval_seconds = config.interval_seconds

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                _, writer = await asyncio.open_connection(self.config.host, self.config.port)
        except (OSError, TimeoutError) as error:
            logger.debug("tcp probe %s failed: %s", self.config.name, error)
            return [_probe_sample(vocabulary.TCP_PROBE_UP, self.config.name, 0.0, ts_unix_ns)]
        elapsed = time.perf_counter() - started
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return [
            _probe_sample(vocabulary.TCP_PROBE_DURATION, self.config.name, elapsed, ts_unix_ns),
            _probe_sample(vocabulary.TCP_PROBE_UP, self.config.name, 1.0, ts_unix_ns),
        ]


class HttpProbe:
    """Response time and status of a URL: ``http.client.request.duration{probe=...}`` and
    ``http.response.status_code{probe=...}`` (0 when nothing answered)."""

    def __init__(self, config: HttpProbeConfig) -> None:
        self.config = config
        self.name = f"http_probe {config.name}"
        self.interval_seconds = config.interval_seconds

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        try:
            result = await http_get(self.config.url, self.config.timeout_seconds)
        except FetchError as error:
            logger.debug("http probe %s failed: %s", self.config.name, error)
            return [_probe_sample(vocabulary.HTTP_PROBE_STATUS, self.config.name, 0.0, ts_unix_ns)]
        probe = self.config.name
        return [
            _probe_sample(vocabulary.HTTP_PROBE_DURATION, probe, result.seconds, ts_unix_ns),
            _probe_sample(vocabulary.HTTP_PROBE_STATUS, probe, float(result.status), ts_unix_ns),
        ]


class PrometheusScrape:
    """A local Prometheus text endpoint, converted as the collector converts its scrapes."""

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        self.name = f"prometheus {config.url}"
        self.interval_seconds = config.interval_seconds
        self._converter = ScrapeConverter(config.prefixes)

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        try:
            result = await http_get(self.config.url, self.config.timeout_seconds)
        except FetchError as error:
            logger.warning("scrape of %s failed: %s", self.config.url, error)
            return []
        if result.status != 200:
            logger.warning("scrape of %s answered HTTP %s", self.config.url, result.status)
            return []
        exposition = parse_exposition(result.body.decode("utf-8", errors="replace"))
        return self._converter.convert(exposition, ts_unix_ns, time.monotonic())


def resolved_command(command: Sequence[str]) -> tuple[str, ...]:
    """The command with a bare program name looked up on PATH, then beside cfgclone itself.

    The helpers cfgclone ships (``cfgclone-pg-stats``) are installed beside the
    ``cfgclone`` command, in its virtual environment's ``bin``, which a service
    manager's PATH does not hold (``/opt/cfgclone/bin`` under the shipped systemd unit).
    A name found in neither place is left as it is, and each run says it cannot start.
    """
    program, *arguments = command
    if os.sep in program:
        return tuple(command)
    found = shutil.which(program) or shutil.which(program, path=str(Path(sys.executable).parent))
    return (found or program, *arguments)


class ExecPlugin:
    """A program printing the Prometheus text format; each series is a sample.

    Read as a scrape is (:class:`ScrapeConverter`, keeping every series): labels are
    part of the series (``queue_depth{queue="orders"}``); counters (declared with
    ``# TYPE``) become per-second rates between runs; the mapped histograms become
    their vocabulary metrics; names may be vocabulary names
    (``http.server.request.duration 0.012``). A line the parser refuses costs that
    line only, and is logged.
    """

    def __init__(self, config: ExecConfig) -> None:
        self.config = config
        self.name = f"exec {config.name}"
        self.interval_seconds = config.interval_seconds
        self._command = resolved_command(config.command)
        self._converter = ScrapeConverter(prefixes=("",))

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as error:
            logger.warning("plugin %s cannot run: %s", self.config.name, error)
            return []
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                output, _ = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            logger.warning(
                "plugin %s ran past %s s and was killed",
                self.config.name,
                self.config.timeout_seconds,
            )
            return []
        if process.returncode != 0:
            logger.warning(
                "plugin %s exited with %s; its output is discarded",
                self.config.name,
                process.returncode,
            )
            return []
        return self.parse(output.decode("utf-8", errors="replace"), ts_unix_ns, time.monotonic())

    def parse(self, output: str, ts_unix_ns: int, at_seconds: float = 0.0) -> list[Sample]:
        """Samples of a plugin's output."""
        exposition = parse_exposition(output)
        if exposition.skipped_lines:
            logger.warning(
                "plugin %s: %s lines are not Prometheus text and were skipped",
                self.config.name,
                exposition.skipped_lines,
            )
        return self._converter.convert(exposition, ts_unix_ns, at_seconds)


def sources_from_config(config: AgentConfig) -> list[Source]:
    """Every source the configuration asks for."""
    sources: list[Source] = []
    if config.host_metrics:
        sources.append(HostSampler(config.interval_seconds))
    sources += [TcpProbe(c) for c in config.tcp]
    sources += [HttpProbe(c) for c in config.http]
    sources += [PrometheusScrape(c) for c in config.prometheus]
    sources += [ExecPlugin(c) for c in config.exec]
    return sources
