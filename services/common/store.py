"""The one store every service uses: a psycopg 3 async pool and the schema migrations.

The pool is opened explicitly and closed on shutdown. Driver errors are turned
into the project's own errors here, in one place: a database that cannot be
reached is :class:`Unavailable` (gRPC UNAVAILABLE), never a crash, and the pool
reconnects by itself once the database is back.

Waiting for a connection tells two cases apart. When the pool has not handed one
out within ``unreachable_after`` (1 s) although it had room for more (fewer than
``max_size`` in use by this process) and its last attempt to connect failed, it
cannot connect: the database is down, and the caller gets UNAVAILABLE at once
rather than at its own deadline. Otherwise every connection is in use, or a new
one is still being opened, and the caller waits on, up to ``busy_timeout``. While
the database stays unreachable later callers are told within 0.1 s.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import psycopg
import psycopg_pool
from psycopg.rows import TupleRow

from cfgclone.common.errors import Unavailable
from cfgclone.common.queries import load_queries
from cfgclone.common.settings import SERVICE_NAMES

logger = logging.getLogger(__name__)

_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_QUERIES = load_queries("cfgclone.common", "store.sql")

Connection = psycopg.AsyncConnection[TupleRow]


MIGRATION_OWNERS = ("common", *SERVICE_NAMES)
"""The packages whose ``migrations`` folders hold the schema, in the order a version's
files apply: the collector's tables (the system registry every row refers to) first."""


@dataclass(frozen=True)
class Migration:
    """One numbered schema migration file of the package that owns its tables."""

    owner: str
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with cfgclone, in the order they apply.

    Each service keeps the migrations of its own tables in its package; numbers are
    unique per owner, and files of one number apply in the order of
    :data:`MIGRATION_OWNERS`, so a table another table refers to exists first.
    """
    found = []
    for owner in MIGRATION_OWNERS:
        try:
            folder = resources.files(f"cfgclone.{owner}").joinpath("migrations")
        except ModuleNotFoundError:
            continue  # a deployment that installs only some services
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = _MIGRATION_FILE.match(entry.name)
            if match:
                sql = entry.read_text(encoding="utf-8")
                found.append(Migration(owner, int(match.group(1)), match.group(2), sql))
    found.sort(key=lambda m: (m.version, MIGRATION_OWNERS.index(m.owner)))
    keys = [(m.owner, m.version) for m in found]
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"two migrations of one owner share a number: {keys}")
    return found


class Store:
    """Connections to the cfgclone database.

    Open with :meth:`open`, close with :meth:`close`. :meth:`connection` hands
    out a pooled connection and maps driver failures to :class:`Unavailable`.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        name: str = "cfgclone",
        connect_timeout: float = 5.0,
        unreachable_after: float = 1.0,
        busy_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self._connect_timeout = connect_timeout
        self._unreachable_after = unreachable_after
        self._busy_timeout = busy_timeout
        self._max_size = max_size
        self._in_use = 0
        self._errors_before_last_connect = 0
        self._pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            name=name,
            open=False,
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            timeout=connect_timeout,
            reconnect_timeout=0,  # keep trying for as long as the service runs
            configure=self._connected,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout))},
        )

    async def open(self, *, wait: bool = False) -> None:
        """Open the pool. With ``wait`` block until ``min_size`` connections are up."""
        await self._pool.open(wait=wait, timeout=self._connect_timeout)

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()

    def _connect_errors(self) -> int:
        return self._pool.get_stats().get("connections_errors", 0)

    async def _connected(self, conn: Connection) -> None:
        """Called by the pool for each new connection: the database can be reached."""
        self._errors_before_last_connect = self._connect_errors()

    @property
    def unreachable(self) -> bool:
        """Whether the pool's latest attempt to connect failed."""
        return self._connect_errors() > self._errors_before_last_connect

    async def _checkout(self) -> Connection:
        """A connection from the pool: UNAVAILABLE within ``unreachable_after`` when the
        pool cannot connect, a longer wait when it is only busy."""
        # Once an attempt has failed, each caller gives the pool only a moment: its
        # request still makes the pool try to connect again, which ends the outage.
        wait = min(0.1, self._unreachable_after) if self.unreachable else self._unreachable_after
        try:
            return await self._pool.getconn(timeout=wait)
        except psycopg_pool.PoolTimeout as exc:
            if self._in_use < self._max_size and self.unreachable:
                raise Unavailable(
                    "the database is unreachable; retry when the service reports SERVING",
                    reason="DATABASE_UNAVAILABLE",
                ) from exc
        try:
            return await self._pool.getconn(timeout=self._busy_timeout)
        except psycopg_pool.PoolTimeout as exc:
            raise Unavailable(
                f"every database connection stayed busy for {self._busy_timeout:g} s; retry later",
                reason="DATABASE_BUSY",
            ) from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection in autocommit mode; use ``conn.transaction()`` for atomic work."""
        try:
            conn = await self._checkout()
            self._in_use += 1
            try:
                yield conn
            finally:
                self._in_use -= 1
                await self._pool.putconn(conn)
        except psycopg.OperationalError as exc:
            raise Unavailable(
                f"the database connection failed: {_first_line(exc)}",
                reason="DATABASE_UNAVAILABLE",
            ) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside one transaction, committed when the block ends."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def ping(self) -> bool:
        """Whether the database answers a trivial query now."""
        try:
            async with self.connection() as conn:
                await conn.execute(_QUERIES["ping"])
        except (Unavailable, psycopg.Error):
            return False
        return True

    async def migrate(self) -> list[int]:
        """Apply the migrations not yet applied; return the versions applied now.

        Safe to run twice and from several services at once: an advisory lock
        lets one runner apply while the others wait, then find nothing left.
        """
        async with self.connection() as conn:
            await conn.execute(_QUERIES["lock_migrations"])
            try:
                await self._migrations_table(conn)
                state = await self._timescaledb_state(conn)
                await conn.execute(
                    _QUERIES["use_timescaledb"], {"use": "on" if state.usable else "off"}
                )
                cursor = await conn.execute(_QUERIES["applied_migrations"])
                applied = {(row[0], row[1]) for row in await cursor.fetchall()}
                done = []
                for migration in migrations():
                    if (migration.owner, migration.version) in applied:
                        continue
                    async with conn.transaction():
                        await conn.execute(migration.sql.encode())
                        await conn.execute(
                            _QUERIES["record_migration"],
                            {
                                "owner": migration.owner,
                                "version": migration.version,
                                "name": migration.name,
                            },
                        )
                    logger.info(
                        "applied migration %s/%04d_%s",
                        migration.owner,
                        migration.version,
                        migration.name,
                    )
                    done.append(migration.version)
                if state.note:
                    logger.warning("%s", state.note)
                return done
            finally:
                await conn.execute(_QUERIES["unlock_migrations"])

    async def schema_version(self) -> int:
        """Newest migration applied, 0 for an empty database."""
        async with self.connection() as conn:
            await self._migrations_table(conn)
            cursor = await conn.execute(_QUERIES["applied_migrations"])
            versions = [row[1] for row in await cursor.fetchall()]
        return max(versions, default=0)

    async def _migrations_table(self, conn: Connection) -> None:
        """The table of applied migrations, brought to one row per (owner, version).

        Before the schema was split by owner, a row was a version of one shared folder;
        such a row stands for every owner's file of that number, whose contents are
        those of the old file split by table.
        """
        await conn.execute(_QUERIES["create_migrations_table"])
        cursor = await conn.execute(_QUERIES["migrations_have_owners"])
        row = await cursor.fetchone()
        if row is not None and row[0]:
            return
        await conn.execute(_QUERIES["add_migration_owners"])
        cursor = await conn.execute(_QUERIES["unowned_migrations"])
        legacy = {version for (version,) in await cursor.fetchall()}
        for migration in migrations():
            if migration.version in legacy:
                await conn.execute(
                    _QUERIES["record_migration"],
                    {
                        "owner": migration.owner,
                        "version": migration.version,
                        "name": migration.name,
                    },
                )
        await conn.execute(_QUERIES["drop_unowned_migrations"])

    async def _timescaledb_state(self, conn: Connection) -> TimescaleState:
        cursor = await conn.execute(_QUERIES["timescaledb_state"])
        row = await cursor.fetchone()
        assert row is not None
        return TimescaleState(installed=row[0], available=row[1], preloaded=row[2])

    async def deployment_key(self, name: str) -> bytes:
        """A secret the migrations generated once for the whole deployment (see 0060)."""
        async with self.connection() as conn:
            cursor = await conn.execute(_QUERIES["deployment_key"], {"name": name})
            row = await cursor.fetchone()
        if row is None:
            raise Unavailable(
                f"deployment key {name!r} is missing; run the migrations",
                reason="DATABASE_UNAVAILABLE",
            )
        return bytes(row[0])

    async def has_timescaledb(self) -> bool:
        """Whether the TimescaleDB extension is installed in the database."""
        async with self.connection() as conn:
            cursor = await conn.execute(_QUERIES["timescaledb_installed"])
            row = await cursor.fetchone()
        return bool(row and row[0])


@dataclass(frozen=True)
class TimescaleState:
    """Whether TimescaleDB can hold the samples on this server."""

    installed: bool
    """The extension is created in this database."""
    available: bool
    """The server has the extension's files."""
    preloaded: bool
    """It is in ``shared_preload_libraries``, without which it refuses to be created."""

    @property
    def usable(self) -> bool:
        return self.installed or (self.available and self.preloaded)

    @property
    def note(self) -> str | None:
        """One line for an operator when TimescaleDB is there but cannot be used."""
        if self.available and not self.usable:
            return (
                "TimescaleDB is installed but not in shared_preload_libraries; "
                "samples use native PostgreSQL partitions"
            )
        return None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def latest_migration() -> int:
    """Version of the newest migration shipped."""
    return migrations()[-1].version
