"""Daily partitions of ``samples`` made ahead of time, and samples dropped past retention.

Without TimescaleDB, ``samples`` is partitioned by UTC day with a default
partition that takes rows of days that have no partition yet. A background loop
keeps partitions for today and the next days in place, so ingest never writes
into the default partition in steady state. A day that has rows in the default
partition already (a fresh install, a sender's late data) gets its partition
too: the rows are moved out of the default partition and the partition is
attached in one transaction that locks the default partition, so no row is
ever lost or refused. Partitions whose whole day lies before the retention
cutoff are dropped, and expired rows are deleted from the default partition;
retention is thus exact to the day.

With TimescaleDB the extension does all of this: the loop sets its retention
policy once and leaves chunks to it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time

from psycopg import sql

from cfgclone.common.errors import CfgcloneError
from cfgclone.common.queries import load_queries
from cfgclone.common.store import Connection, Store

__all__ = [
    "MaintenanceReport",
    "PartitionPlan",
    "SampleRetention",
    "partition_day",
    "partition_name",
    "plan_partitions",
]

logger = logging.getLogger(__name__)

_QUERIES = load_queries("cfgclone.collector", "retention.sql")
_PARTITION_NAME = re.compile(r"^samples_p(\d{8})$")
_RETRY_SECONDS = 5.0
"""Wait before trying again when the database was down or not migrated yet."""


def partition_name(day: date) -> str:
    """The table that holds the samples of one UTC day."""
    return f"samples_p{day:%Y%m%d}"


def partition_day(name: str) -> date | None:
    """The day a partition holds, None for a table that is not a day partition."""
    match = _PARTITION_NAME.match(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date()


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, day_time(0), tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """Partitions to create (by day, oldest first) and to drop (by name)."""

    create: tuple[date, ...]
    drop: tuple[str, ...]


def plan_partitions(
    existing: Iterable[str],
    days_in_default: Iterable[date],
    today: date,
    ahead_days: int,
    cutoff: datetime,
) -> PartitionPlan:
    """Which day partitions to create and drop.

    Wanted: today, the ``ahead_days`` days after it, and every day that has
    rows in the default partition, unless the day ends before ``cutoff``.
    Dropped: every day partition whose day ends at or before ``cutoff``.
    """
    have = {day: name for name in existing if (day := partition_day(name)) is not None}
    wanted = {today + timedelta(days=n) for n in range(ahead_days + 1)} | set(days_in_default)

    def expired(day: date) -> bool:
        return day_start(day + timedelta(days=1)) <= cutoff

    return PartitionPlan(
        create=tuple(sorted(d for d in wanted if d not in have and not expired(d))),
        drop=tuple(have[d] for d in sorted(have) if expired(d)),
    )


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one maintenance run did."""

    created: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    moved_rows: int = 0
    expired_default_rows: int = 0
    skipped: bool = False
    """True when another collector held the maintenance lock, or TimescaleDB manages chunks."""
    schema_missing: bool = False
    """True when the migrations have not created ``samples`` yet."""


def _format(name: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(_QUERIES[name]).format(**parts)


class SampleRetention:
    """Keeps the daily partitions of ``samples`` and enforces retention.

    One instance per collector process; several collectors may run it at once,
    an advisory lock lets one of them work while the others skip the round.
    """

    def __init__(
        self,
        store: Store,
        retention: timedelta,
        *,
        ahead_days: int = 2,
        interval_seconds: float = 600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError("retention must be positive")
        self._store = store
        self.retention = retention
        self.ahead_days = ahead_days
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._timescale_policy_set = False

    async def run_forever(self) -> None:
        """Maintain at start and then every ``interval_seconds``; survives database outages."""
        while True:
            started = time.monotonic()
            interval = self.interval_seconds
            try:
                report = await self.run_once()
            except CfgcloneError as error:
                logger.warning("sample maintenance failed, retrying later: %s", error.message)
                interval = min(interval, _RETRY_SECONDS)
            except Exception:
                logger.exception("sample maintenance failed, retrying later")
            else:
                if report.schema_missing:
                    interval = min(interval, _RETRY_SECONDS)
                if report.created or report.dropped or report.expired_default_rows:
                    logger.info(
                        "sample partitions: created %s, dropped %s, moved %s rows, "
                        "deleted %s expired rows",
                        list(report.created),
                        list(report.dropped),
                        report.moved_rows,
                        report.expired_default_rows,
                    )
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(1.0, interval - elapsed))

    async def run_once(self) -> MaintenanceReport:
        """One maintenance round."""
        if await self._store.has_timescaledb():
            await self._set_timescale_policy()
            await self._expire_bookkeeping(self._clock() - self.retention)
            return MaintenanceReport(skipped=True)
        async with self._store.connection() as conn:
            cursor = await conn.execute(_QUERIES["try_maintenance_lock"])
            locked = await cursor.fetchone()
            if not (locked and locked[0]):
                return MaintenanceReport(skipped=True)
            try:
                return await self._maintain(conn)
            finally:
                await conn.execute(_QUERIES["maintenance_unlock"])

    async def _maintain(self, conn: Connection) -> MaintenanceReport:
        cursor = await conn.execute(_QUERIES["samples_layout"])
        layout = await cursor.fetchone()
        if layout is None:
            return MaintenanceReport(skipped=True, schema_missing=True)
        if layout[0] != "p":
            return MaintenanceReport(skipped=True)
        now = self._clock()
        cutoff = now - self.retention
        cursor = await conn.execute(_QUERIES["sample_partitions"])
        existing = [row[0] for row in await cursor.fetchall()]
        cursor = await conn.execute(_QUERIES["default_partition_days"], {"cutoff": cutoff})
        days_in_default = [row[0] for row in await cursor.fetchall()]
        plan = plan_partitions(existing, days_in_default, now.date(), self.ahead_days, cutoff)
        moved = 0
        for day in plan.create:
            moved += await self._create_partition(conn, day)
        for name in plan.drop:
            await conn.execute(_format("drop_partition", partition=sql.Identifier(name)))
        cursor = await conn.execute(_QUERIES["delete_expired_default_rows"], {"cutoff": cutoff})
        expired = cursor.rowcount
        await self._expire_bookkeeping(cutoff, conn)
        return MaintenanceReport(
            created=tuple(partition_name(d) for d in plan.create),
            dropped=plan.drop,
            moved_rows=moved,
            expired_default_rows=max(expired, 0),
        )

    async def _create_partition(self, conn: Connection, day: date) -> int:
        """Create the partition of ``day``, moving its rows out of the default partition."""
        name = sql.Identifier(partition_name(day))
        start, end = day_start(day), day_start(day + timedelta(days=1))
        async with conn.transaction():
            await conn.execute(_QUERIES["lock_for_attach"])
            await conn.execute(_format("create_partition_table", partition=name))
            cursor = await conn.execute(
                _format("move_default_rows", partition=name), {"start": start, "end": end}
            )
            moved = max(cursor.rowcount, 0)
            await conn.execute(
                _format(
                    "attach_partition",
                    partition=name,
                    start=sql.Literal(start),
                    end=sql.Literal(end),
                )
            )
        return moved

    async def _expire_bookkeeping(self, cutoff: datetime, conn: Connection | None = None) -> None:
        """Forget batch ids and series summaries older than the cutoff."""
        if conn is None:
            async with self._store.connection() as own:
                await self._expire_bookkeeping(cutoff, own)
            return
        await conn.execute(_QUERIES["delete_expired_batches"], {"cutoff": cutoff})
        await conn.execute(_QUERIES["delete_expired_series"], {"cutoff": cutoff})

    async def _set_timescale_policy(self) -> None:
        if self._timescale_policy_set:
            return
        async with self._store.transaction() as conn:
            await conn.execute(_QUERIES["remove_timescale_retention"])
            await conn.execute(_QUERIES["add_timescale_retention"], {"retention": self.retention})
        self._timescale_policy_set = True
        logger.info("TimescaleDB retention policy set to %s", self.retention)
