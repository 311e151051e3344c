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
import math
import time
from typing import Protocol

import psutil

from cfgclone.collector.agent_config import (
    AgentConfig,
    ExecConfig,
    HttpProbeConfig,
    PrometheusConfig,
    TcpProbeConfig,
)
from cfgclone.collector.batching import GAUGE, Sample, is_metric_name
from cfgclone.collector.host_metrics import (
    CPU_UTILIZATION,
    DISK_READ,
    DISK_WRITE,
    LOOPBACK_INTERFACES,
    MEMORY_USED,
    NET_RECV,
    NET_SENT,
    PROCESSES,
    CounterRates,
    MetricDef,
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
        samples = [
            CPU_UTILIZATION.sample(psutil.cpu_percent(None), ts_unix_ns),
            MEMORY_USED.sample(float(psutil.virtual_memory().used), ts_unix_ns),
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
            self._rate(samples, NET_RECV, received, at, ts_unix_ns)
            self._rate(samples, NET_SENT, sent, at, ts_unix_ns)
        samples.append(PROCESSES.sample(float(len(psutil.pids())), ts_unix_ns))
        return samples

    def _rate(
        self, samples: list[Sample], metric: MetricDef, total: float, at: float, ts: int
    ) -> None:
        rate = self._rates.rate(metric.name, total, at)
        if rate is not None:
            samples.append(metric.sample(rate, ts))


class TcpProbe:
    """Time to open a TCP connection: ``tcp.<name>.connect_seconds`` and ``tcp.<name>.up``."""

    def __init__(self, config: TcpProbeConfig) -> None:
        self.config = config
        self.name = f"tcp.{config.name}"
        self.interval_seconds = config.interval_seconds

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                _, writer = await asyncio.open_connection(self.config.host, self.config.port)
        except (OSError, TimeoutError) as error:
            logger.debug("tcp probe %s failed: %s", self.config.name, error)
            return [Sample(f"{self.name}.up", 0.0, ts_unix_ns, "bool", GAUGE)]
        elapsed = time.perf_counter() - started
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return [
            Sample(f"{self.name}.connect_seconds", elapsed, ts_unix_ns, "seconds", GAUGE),
            Sample(f"{self.name}.up", 1.0, ts_unix_ns, "bool", GAUGE),
        ]


class HttpProbe:
    """Response time and status of a URL: ``http.<name>.latency_seconds`` and
    ``http.<name>.status`` (0 when nothing answered)."""

    def __init__(self, config: HttpProbeConfig) -> None:
        self.config = config
        self.name = f"http.{config.name}"
        self.interval_seconds = config.interval_seconds

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        try:
            result = await http_get(self.config.url, self.config.timeout_seconds)
        except FetchError as error:
            logger.debug("http probe %s failed: %s", self.config.name, error)
            return [Sample(f"{self.name}.status", 0.0, ts_unix_ns, "code", GAUGE)]
        return [
            Sample(f"{self.name}.latency_seconds", result.seconds, ts_unix_ns, "seconds", GAUGE),
            Sample(f"{self.name}.status", float(result.status), ts_unix_ns, "code", GAUGE),
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


class ExecPlugin:
    """A program whose output lines are ``name value``; each line is a gauge sample.

    Lines that are not a valid metric name and a finite number are skipped
    (and logged), so one bad line costs that line only.
    """

    def __init__(self, config: ExecConfig) -> None:
        self.config = config
        self.name = f"exec.{config.name}"
        self.interval_seconds = config.interval_seconds

    async def collect(self, ts_unix_ns: int) -> list[Sample]:
        try:
            process = await asyncio.create_subprocess_exec(
                *self.config.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as error:
            logger.warning("plugin %s cannot run: %s", self.config.name, error)
            return []
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                output, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            logger.warning(
                "plugin %s ran past %s s and was killed",
                self.config.name,
                self.config.timeout_seconds,
            )
            return []
        if process.returncode != 0:
            logger.warning("plugin %s exited with %s", self.config.name, process.returncode)
        return self.parse(output.decode("utf-8", errors="replace"), ts_unix_ns)

    def parse(self, output: str, ts_unix_ns: int) -> list[Sample]:
        """Samples of a plugin's output."""
        samples = []
        for number, line in enumerate(output.splitlines(), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            try:
                value = float(fields[1]) if len(fields) == 2 else math.nan
            except ValueError:
                value = math.nan
            if not is_metric_name(fields[0]) or not math.isfinite(value):
                logger.warning(
                    "plugin %s line %s is not 'name value': %r", self.config.name, number, line
                )
                continue
            samples.append(Sample(fields[0], value, ts_unix_ns, "", GAUGE))
        return samples


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
