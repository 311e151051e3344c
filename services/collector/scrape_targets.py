"""Scrape targets: Prometheus endpoints the collector scrapes for a system (agentless mode)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cfgclone.collector.http_fetch import check_http_url
from cfgclone.collector.scrape_addresses import AddressPolicy, ForbiddenAddress
from cfgclone.common.errors import AlreadyExists, InvalidArgument, NotFound
from cfgclone.common.limits import MAX_SMALL_ID
from cfgclone.common.message_checks import quote
from cfgclone.common.queries import load_queries
from cfgclone.common.requests import Page, child_id_from_name, numeric_id, system_id_from_name
from cfgclone.common.store import Store
from cfgclone.v1 import collector_service_pb2 as pb

__all__ = [
    "DEFAULT_INTERVAL",
    "MAX_INTERVAL",
    "MIN_INTERVAL",
    "ScrapeTargetSpec",
    "create_scrape_target",
    "delete_scrape_target",
    "list_scrape_targets",
    "record_scrape",
    "scrape_batch_secret",
    "scrape_targets_to_run",
]

_QUERIES = load_queries("cfgclone.collector", "scrape_targets.sql")

DEFAULT_INTERVAL = timedelta(seconds=15)
MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=1)
MAX_PREFIXES = 64
MAX_URL_LENGTH = 2048
_PREFIX = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
COLLECTION = "scrapeTargets"


@dataclass(frozen=True, slots=True)
class ScrapeTargetSpec:
    """A target as the scraper runs it."""

    target_id: int
    system_id: str
    url: str
    interval: timedelta
    metric_prefixes: tuple[str, ...]


def _to_message(row: tuple[Any, ...]) -> pb.ScrapeTarget:
    target_id, system_id, url, interval_seconds, prefixes, last_error, last_scrape = row
    target = pb.ScrapeTarget(
        name=f"systems/{system_id}/{COLLECTION}/{target_id}",
        url=url,
        metric_prefixes=list(prefixes),
        last_error=last_error,
    )
    target.interval.FromTimedelta(timedelta(seconds=interval_seconds))
    if isinstance(last_scrape, datetime):
        target.last_scrape_time.FromDatetime(last_scrape)
    return target


def _checked_interval(target: pb.ScrapeTarget) -> timedelta:
    if not target.HasField("interval"):
        return DEFAULT_INTERVAL
    interval = target.interval.ToTimedelta()
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise InvalidArgument.for_field(
            "scrape_target.interval", "must be between 1 second and 1 day"
        )
    return interval


def _checked_prefixes(target: pb.ScrapeTarget) -> list[str]:
    prefixes = list(target.metric_prefixes)
    if len(prefixes) > MAX_PREFIXES:
        raise InvalidArgument.for_field(
            "scrape_target.metric_prefixes", f"at most {MAX_PREFIXES} prefixes"
        )
    for index, prefix in enumerate(prefixes):
        if len(prefix) > 200 or _PREFIX.fullmatch(prefix) is None:
            raise InvalidArgument.for_field(
                f"scrape_target.metric_prefixes[{index}]",
                f"{quote(prefix)} is not the start of a Prometheus metric name",
            )
    return prefixes


async def _system_key(store: Store, system_id: str) -> int:
    async with store.connection() as conn:
        cursor = await conn.execute(_QUERIES["system_key"], {"system_id": system_id})
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(
            f"systems/{system_id} is not registered; register it with RegisterSystem first",
            reason="SYSTEM_NOT_FOUND",
            metadata={"system": f"systems/{system_id}"},
        )
    return int(row[0])


async def create_scrape_target(
    store: Store,
    parent: str,
    target: pb.ScrapeTarget,
    addresses: AddressPolicy | None = None,
) -> pb.ScrapeTarget:
    """Add a target; ALREADY_EXISTS when the system has one with the same URL.

    INVALID_ARGUMENT when the URL's host is or resolves to an address ``addresses``
    refuses (metadata, link-local, loopback unless allowed)."""
    system_id = system_id_from_name(parent, "parent")
    problem = check_http_url(target.url)
    if problem is not None:
        raise InvalidArgument.for_field("scrape_target.url", problem)
    if len(target.url) > MAX_URL_LENGTH:
        raise InvalidArgument.for_field("scrape_target.url", f"at most {MAX_URL_LENGTH} characters")
    try:
        await (addresses or AddressPolicy()).check_url_async(target.url)
    except ForbiddenAddress as forbidden:
        raise InvalidArgument.for_field(
            "scrape_target.url", f"may not be scraped: {forbidden}", reason="FORBIDDEN_ADDRESS"
        ) from None
    interval = _checked_interval(target)
    prefixes = _checked_prefixes(target)
    system_key = await _system_key(store, system_id)
    async with store.connection() as conn:
        cursor = await conn.execute(
            _QUERIES["insert_target"],
            {
                "system": system_key,
                "system_id": system_id,
                "url": target.url,
                "interval_seconds": interval.total_seconds(),
                "prefixes": prefixes,
            },
        )
        row = await cursor.fetchone()
    if row is None:
        raise AlreadyExists(
            f"{parent} already has a scrape target for {target.url}",
            reason="SCRAPE_TARGET_EXISTS",
            metadata={"system": parent, "url": target.url},
        )
    return _to_message(row)


async def list_scrape_targets(
    store: Store, parent: str, page: Page
) -> tuple[list[pb.ScrapeTarget], str]:
    """One page of the targets of ``parent`` (``systems/-`` for every system)."""
    system_id = None if parent == "systems/-" else system_id_from_name(parent, "parent")
    async with store.connection() as conn:
        cursor = await conn.execute(
            _QUERIES["list_targets"],
            {"system_id": system_id, "limit": page.size + 1, "offset": page.offset},
        )
        rows = await cursor.fetchall()
    targets = [_to_message(row) for row in rows[: page.size]]
    return targets, page.next_token(len(targets), has_more=len(rows) > page.size)


async def delete_scrape_target(store: Store, name: str) -> None:
    """Remove a target; NOT_FOUND when there is none by that name."""
    system_id, raw_id = child_id_from_name(name, COLLECTION)
    target_id = numeric_id(raw_id, "name", "the target id", MAX_SMALL_ID)
    async with store.connection() as conn:
        cursor = await conn.execute(
            _QUERIES["delete_target"], {"id": target_id, "system_id": system_id}
        )
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"{name} does not exist", reason="SCRAPE_TARGET_NOT_FOUND")


async def scrape_targets_to_run(store: Store) -> list[ScrapeTargetSpec]:
    """Every target of every system, for the scraper."""
    async with store.connection() as conn:
        cursor = await conn.execute(_QUERIES["all_targets"])
        rows = await cursor.fetchall()
    return [
        ScrapeTargetSpec(
            target_id=int(target_id),
            system_id=system_id,
            url=url,
            interval=timedelta(seconds=interval_seconds),
            metric_prefixes=tuple(prefixes),
        )
        for target_id, system_id, url, interval_seconds, prefixes in rows
    ]


async def scrape_batch_secret(store: Store) -> bytes:
    """The deployment's secret behind the scraper's batch ids."""
    async with store.connection() as conn:
        cursor = await conn.execute(_QUERIES["scrape_batch_secret"])
        row = await cursor.fetchone()
    if row is None:
        raise RuntimeError("collector_secrets has no scrape_batch_ids row; migrations not applied")
    return bytes(row[0])


async def record_scrape(store: Store, target_id: int, scraped_at: datetime, error: str) -> None:
    """Remember when a target was last scraped and how that went."""
    async with store.connection() as conn:
        await conn.execute(
            _QUERIES["record_scrape"],
            {"id": target_id, "scraped_at": scraped_at, "error": error[:1000]},
        )
