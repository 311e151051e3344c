"""PostgreSQL applier: ``ALTER SYSTEM`` plus a configuration reload.

The configuration this applier manages is the ``ALTER SYSTEM`` layer, the
contents of ``postgresql.auto.conf``: ``read_current`` returns it, ``apply``
sets parameters in it and ``rollback`` makes it equal to an earlier reading
(resetting what was added since). Settings from ``postgresql.conf`` and the
command line are left alone, so a rollback undoes exactly what was applied.

Names are checked against ``pg_settings`` before anything is written and
unknown ones are refused; names are quoted as identifiers and values passed as
literals, never pasted into SQL. Parameters that only take effect after a
server restart are reported, not restarted: restarting is the operator's call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from cfgclone.common.queries import load_queries
from cfgclone.predictor.appliers.model import (
    ApplyFailed,
    ApplyResult,
    Configuration,
    ConfigValue,
    ManagedSystem,
)

__all__ = ["PostgresApplier", "PostgresApplierSettings", "setting_text"]

logger = logging.getLogger(__name__)

_QUERIES = load_queries("cfgclone.predictor.appliers", "postgres_settings.sql")


@dataclass(frozen=True)
class PostgresApplierSettings:
    """Limits of the PostgreSQL applier."""

    connect_timeout_s: int = 10
    """Seconds to wait for a connection."""
    statement_timeout_ms: int = 10_000
    """Limit of each statement, so a stuck server cannot hold a change forever."""
    reload_timeout_s: float = 10.0
    """Seconds to wait for the server to take in a reload."""

    def __post_init__(self) -> None:
        if self.connect_timeout_s < 1:
            raise ValueError("connect_timeout_s must be at least 1")
        if self.statement_timeout_ms < 1:
            raise ValueError("statement_timeout_ms must be positive")
        if self.reload_timeout_s <= 0:
            raise ValueError("reload_timeout_s must be positive")


@dataclass(frozen=True)
class _Setting:
    setting: str
    context: str
    pending_restart: bool


def setting_text(value: ConfigValue) -> str:
    """A value as PostgreSQL reads it from a configuration file (booleans as on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


class PostgresApplier:
    """Applies PostgreSQL settings through ``ALTER SYSTEM`` and ``pg_reload_conf()``.

    ``system.endpoint`` is the libpq connection string of the server; the role
    needs superuser or the ALTER SYSTEM privilege and may read
    ``pg_file_settings``.
    """

    def __init__(self, settings: PostgresApplierSettings | None = None) -> None:
        self._settings = settings or PostgresApplierSettings()

    @property
    def name(self) -> str:
        return "postgresql"

    async def apply(self, system: ManagedSystem, configuration: Configuration) -> ApplyResult:
        """Set each parameter; all or nothing: a refused value undoes the ones before it."""
        return await self._change(
            system,
            {name: setting_text(value) for name, value in configuration.items()},
            resets=(),
            atomic=True,
        )

    async def read_current(self, system: ManagedSystem) -> dict[str, ConfigValue]:
        """The parameters set through ``ALTER SYSTEM``, as written (strings)."""
        try:
            async with await self._connect(system) as connection:
                return dict(await _auto_conf(connection))
        except psycopg.Error as error:
            raise ApplyFailed(f"cannot read the settings of {system.name}: {error}") from error

    async def rollback(
        self, system: ManagedSystem, previous_configuration: Configuration
    ) -> ApplyResult:
        """Make ``postgresql.auto.conf`` equal to ``previous_configuration``.

        Parameters absent from it are reset. Every statement is tried even when
        one fails, so as much as possible is restored before ``ApplyFailed``.
        """
        wanted = {name: setting_text(value) for name, value in previous_configuration.items()}
        try:
            async with await self._connect(system) as connection:
                current = await _auto_conf(connection)
        except psycopg.Error as error:
            raise ApplyFailed(f"cannot read the settings of {system.name}: {error}") from error
        sets = {name: value for name, value in wanted.items() if current.get(name) != value}
        resets = sorted(name for name in current if name not in wanted)
        return await self._change(system, sets, resets=resets, atomic=False)

    async def _connect(self, system: ManagedSystem) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if not system.endpoint:
            raise ApplyFailed(f"{system.name} has no PostgreSQL connection string (endpoint)")
        return await psycopg.AsyncConnection.connect(
            system.endpoint,
            autocommit=True,
            connect_timeout=self._settings.connect_timeout_s,
            options=f"-c statement_timeout={self._settings.statement_timeout_ms}",
            application_name="cfgclone-applier",
        )

    async def _change(
        self,
        system: ManagedSystem,
        sets: Mapping[str, str],
        *,
        resets: Collection[str],
        atomic: bool,
    ) -> ApplyResult:
        started = time.monotonic()
        names = sorted(set(sets) | set(resets))
        statements: list[str] = []
        if not names:
            return ApplyResult(system.name, self.name, (), (), "nothing to change", 0.0)
        try:
            async with await self._connect(system) as connection:
                before = await _settings(connection, names)
                unknown = sorted(name for name in sets if name not in before)
                if unknown:
                    raise ApplyFailed(
                        f"unknown PostgreSQL parameters for {system.name}: {', '.join(unknown)}"
                    )
                auto_conf = await _auto_conf(connection)
                loaded_at = await _conf_load_time(connection)
                failures = await self._write(
                    connection, sets, resets, auto_conf, atomic, statements
                )
                await connection.execute(_QUERIES["reload_conf"])
                statements.append(_QUERIES["reload_conf"])
            after = await self._settings_after_reload(system, names, loaded_at)
        except psycopg.Error as error:
            raise ApplyFailed(
                f"changing the settings of {system.name} failed: {error}",
                output="\n".join(statements),
                duration_s=time.monotonic() - started,
            ) from error
        output = "\n".join(statements)
        if failures:
            raise ApplyFailed(
                f"some settings of {system.name} were refused: {'; '.join(failures)}",
                output=output,
                duration_s=time.monotonic() - started,
            )
        changed = tuple(
            name
            for name in names
            if name in after
            and (
                name not in before
                or after[name].setting != before[name].setting
                or after[name].pending_restart
            )
        )
        restart = tuple(
            name
            for name in changed
            if after[name].pending_restart or after[name].context == "postmaster"
        )
        if restart:
            logger.info("%s needs a restart for %s", system.name, ", ".join(restart))
        return ApplyResult(
            system=system.name,
            applier=self.name,
            changed=changed,
            restart_required=restart,
            output=output,
            duration_s=time.monotonic() - started,
        )

    async def _write(
        self,
        connection: psycopg.AsyncConnection[tuple[object, ...]],
        sets: Mapping[str, str],
        resets: Collection[str],
        auto_conf: Mapping[str, str],
        atomic: bool,
        statements: list[str],
    ) -> list[str]:
        """Run the ALTER SYSTEM statements; returns the refusals when not atomic."""
        done: list[str] = []
        failures: list[str] = []
        plan: list[tuple[str, str | None]] = [*sets.items(), *((name, None) for name in resets)]
        for name, value in plan:
            statement = _alter_system(name, value)
            try:
                await connection.execute(statement)
            except psycopg.Error as error:
                if not atomic:
                    failures.append(f"{name}: {error}")
                    continue
                await _restore(connection, done, auto_conf)
                raise ApplyFailed(
                    f"PostgreSQL refused {name} = {value!r}: {error}",
                    output="\n".join(statements),
                ) from error
            done.append(name)
            statements.append(statement.as_string(connection))
        return failures

    async def _settings_after_reload(
        self, system: ManagedSystem, names: list[str], loaded_before: datetime
    ) -> dict[str, _Setting]:
        """Settings as a new session sees them once the server has re-read its files.

        ``pg_reload_conf()`` only signals the postmaster; a new session started
        after the postmaster re-read the files reports a later load time.
        """
        deadline = time.monotonic() + self._settings.reload_timeout_s
        while True:
            async with await self._connect(system) as connection:
                if await _conf_load_time(connection) > loaded_before:
                    return await _settings(connection, names)
            if time.monotonic() > deadline:
                raise ApplyFailed(
                    f"{system.name} did not reload its configuration within "
                    f"{self._settings.reload_timeout_s:.0f} s"
                )
            await asyncio.sleep(0.05)


def _alter_system(name: str, value: str | None) -> sql.Composed:
    if value is None:
        return sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name))
    return sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))


async def _restore(
    connection: psycopg.AsyncConnection[tuple[object, ...]],
    names: list[str],
    auto_conf: Mapping[str, str],
) -> None:
    """Put back what ``postgresql.auto.conf`` held for ``names`` before a failed apply."""
    for name in names:
        try:
            await connection.execute(_alter_system(name, auto_conf.get(name)))
        except psycopg.Error:
            logger.exception("could not restore %s after a failed apply", name)


async def _settings(
    connection: psycopg.AsyncConnection[tuple[object, ...]], names: list[str]
) -> dict[str, _Setting]:
    cursor = await connection.execute(_QUERIES["settings_by_name"], {"names": names})
    return {
        str(name): _Setting(str(setting), str(context), bool(pending))
        for name, setting, context, pending in await cursor.fetchall()
    }


async def _auto_conf(connection: psycopg.AsyncConnection[tuple[object, ...]]) -> dict[str, str]:
    cursor = await connection.execute(_QUERIES["auto_conf_settings"])
    return {str(name): str(setting) for name, setting in await cursor.fetchall()}


async def _conf_load_time(connection: psycopg.AsyncConnection[tuple[object, ...]]) -> datetime:
    cursor = await connection.execute(_QUERIES["conf_load_time"])
    row = await cursor.fetchone()
    if row is None or not isinstance(row[0], datetime):
        raise ApplyFailed("the server did not report its configuration load time")
    return row[0]
