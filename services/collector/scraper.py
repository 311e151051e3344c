"""The collector's agentless mode: scraping Prometheus endpoints on behalf of systems.

Each target is scraped once per interval slot, aligned on the Unix epoch
(slot ``n`` of a 15 s target starts at ``15 n`` s). The slot names the batch
(``scrape-`` and an HMAC of the target and slot under a per-deployment secret
kept in the database), so when several collector replicas scrape the same
target in the same slot, the first batch is stored and the others are
duplicates: replicas need no coordination, and no agent can guess the id of a
future scrape to have it dropped as a duplicate. The samples go through the
same ingest as an agent's, with the same validation and metric names.

Every scrape resolves the target's host again and refuses link-local, metadata
and (unless allowed) loopback addresses, for the URL and for every redirect
(:mod:`.scrape_addresses`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cfgclone.collector.batching import BatchBuilder
from cfgclone.collector.host_metrics import ScrapeConverter
from cfgclone.collector.http_fetch import FetchError, HttpResult, http_get
from cfgclone.collector.ingest import Ingestor
from cfgclone.collector.prometheus_text import parse_exposition
from cfgclone.collector.scrape_addresses import AddressPolicy
from cfgclone.collector.scrape_targets import (
    ScrapeTargetSpec,
    record_scrape,
    scrape_batch_secret,
    scrape_targets_to_run,
)
from cfgclone.common.errors import CfgcloneError
from cfgclone.common.store import Store

__all__ = ["Scraper"]

logger = logging.getLogger(__name__)

Fetch = Callable[[str, float], Awaitable[HttpResult]]


@dataclass
class _TargetState:
    spec: ScrapeTargetSpec
    converter: ScrapeConverter
    last_slot: int = -1
    running: asyncio.Task[None] | None = field(default=None, repr=False)


class Scraper:
    """Scrapes every registered target on its interval and ingests the samples."""

    def __init__(
        self,
        store: Store,
        ingestor: Ingestor,
        *,
        refresh_seconds: float = 5.0,
        max_timeout_seconds: float = 10.0,
        fetch: Fetch | None = None,
        addresses: AddressPolicy | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._store = store
        self._ingestor = ingestor
        self._refresh_seconds = refresh_seconds
        self._max_timeout = max_timeout_seconds
        policy = addresses or AddressPolicy()
        self._fetch = fetch or functools.partial(http_get, guard=policy.check_url)
        self._secret: bytes | None = None
        self._clock_ns = clock_ns
        self._targets: dict[int, _TargetState] = {}

    async def run_forever(self) -> None:
        """Refresh the target list every few seconds and start the scrapes that are due."""
        next_refresh = 0.0
        try:
            while True:
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + self._refresh_seconds
                    await self._refresh()
                self._start_due()
                await asyncio.sleep(self._seconds_to_next_slot())
        finally:
            running = [s.running for s in self._targets.values() if s.running is not None]
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def batch_id(self, target_id: int, slot: int) -> str:
        """The id of a target's batch of a slot: the same in every replica, guessable by none."""
        assert self._secret is not None
        digest = hmac.new(self._secret, f"{target_id}-{slot}".encode(), hashlib.sha256)
        return f"scrape-{digest.hexdigest()[:32]}"

    async def _refresh(self) -> None:
        try:
            if self._secret is None:
                self._secret = await scrape_batch_secret(self._store)
            specs = await scrape_targets_to_run(self._store)
        except CfgcloneError as error:
            logger.warning("scrape targets not loaded, keeping the last list: %s", error.message)
            return
        except Exception as error:  # not migrated yet, or a bug: retry at the next refresh
            logger.warning("scrape targets not loaded, keeping the last list: %s", error)
            return
        fresh = {spec.target_id: spec for spec in specs}
        for target_id in list(self._targets):
            if target_id not in fresh:
                gone = self._targets.pop(target_id)
                if gone.running is not None:
                    gone.running.cancel()
        for target_id, spec in fresh.items():
            state = self._targets.get(target_id)
            if state is None or state.spec != spec:
                self._targets[target_id] = _TargetState(spec, ScrapeConverter(spec.metric_prefixes))

    def _slot(self, spec: ScrapeTargetSpec) -> int:
        return self._clock_ns() // int(spec.interval.total_seconds() * 1e9)

    def _seconds_to_next_slot(self) -> float:
        now = self._clock_ns()
        waits = [self._refresh_seconds]
        for state in self._targets.values():
            interval = int(state.spec.interval.total_seconds() * 1e9)
            waits.append(((now // interval + 1) * interval - now) / 1e9)
        return max(0.05, min(waits))

    def _start_due(self) -> None:
        for state in self._targets.values():
            slot = self._slot(state.spec)
            if slot > state.last_slot and (state.running is None or state.running.done()):
                state.last_slot = slot
                state.running = asyncio.create_task(self.scrape(state.spec, state.converter, slot))

    async def scrape(self, spec: ScrapeTargetSpec, converter: ScrapeConverter, slot: int) -> None:
        """Scrape one target once, ingest what it yields, and record the outcome."""
        scraped_at = datetime.now(UTC)
        timeout = min(spec.interval.total_seconds(), self._max_timeout)
        error = ""
        try:
            result = await self._fetch(spec.url, timeout)
            if result.status != 200:
                raise FetchError(f"GET {spec.url}: HTTP status {result.status}")
            exposition = parse_exposition(result.body.decode("utf-8", errors="replace"))
            samples = converter.convert(exposition, self._clock_ns(), time.monotonic())
            if samples:
                builder = BatchBuilder(
                    f"systems/{spec.system_id}",
                    max_samples=len(samples) + 1,
                    batch_id=lambda: self.batch_id(spec.target_id, slot),
                )
                builder.add_many(samples)
                batch = builder.flush()
                assert batch is not None
                await self._ingestor.write(batch)
        except FetchError as failure:
            error = str(failure)
        except CfgcloneError as failure:
            error = f"ingest failed: {failure.message}"
        except Exception as failure:  # a bug must not end the scrape loop
            logger.exception("scrape of %s failed unexpectedly", spec.url)
            error = f"internal error: {type(failure).__name__}"
        if error:
            logger.warning(
                "scrape of %s for systems/%s failed: %s", spec.url, spec.system_id, error
            )
        with contextlib.suppress(CfgcloneError):
            await record_scrape(self._store, spec.target_id, scraped_at, error)
