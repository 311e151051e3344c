"""Schema migrations: from empty, re-run, and two runners at once."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from cfgclone.common.store import Store, latest_migration, migrations

EXPECTED_TABLES = {
    "change_states",
    "changes",
    "collector_secrets",
    "configurations",
    "deployment_keys",
    "fingerprints",
    "flagged_systems",
    "history_imports",
    "fingerprint_progress",
    "load_scales",
    "ingested_batches",
    "metrics",
    "operations",
    "policies",
    "rollback_reasons",
    "rollbacks",
    "samples",
    "schema_migrations",
    "scrape_targets",
    "series",
    "systems",
    "training_examples",
}

EXPECTED_SAMPLE_COLUMNS = [
    ("ts", "timestamp with time zone"),
    ("system_id", "integer"),
    ("metric_id", "integer"),
    ("value", "double precision"),
]


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        ).fetchall()
    return {row[0] for row in rows}


async def test_migrations_build_the_schema_from_empty(fresh_database: str) -> None:
    store = Store(fresh_database)
    await store.open(wait=True)
    try:
        assert await store.schema_version() == 0
        applied = await store.migrate()
        assert applied == [m.version for m in migrations()]
        assert await store.schema_version() == latest_migration()
    finally:
        await store.close()
    assert _tables(fresh_database) == EXPECTED_TABLES
    with psycopg.connect(fresh_database) as conn:
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'samples' ORDER BY ordinal_position"
        ).fetchall()
    assert columns == EXPECTED_SAMPLE_COLUMNS


@pytest.mark.plain_postgres
async def test_without_timescaledb_samples_are_partitioned_by_time(store: Store) -> None:
    async with store.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.relname = 'samples'"
        )
        assert await cursor.fetchone() == (1,)


async def test_migrations_rerun_apply_nothing(fresh_database: str) -> None:
    store = Store(fresh_database)
    await store.open(wait=True)
    try:
        first = await store.migrate()
        second = await store.migrate()
    finally:
        await store.close()
    assert first
    assert second == []
    with psycopg.connect(fresh_database) as conn:
        recorded = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [row[0] for row in recorded] == first


async def test_two_services_migrating_at_once_apply_each_migration_once(
    fresh_database: str,
) -> None:
    stores = [Store(fresh_database, name=f"runner-{i}") for i in range(3)]
    for store in stores:
        await store.open(wait=True)
    try:
        results = await asyncio.gather(*(store.migrate() for store in stores))
    finally:
        for store in stores:
            await store.close()
    applied = sorted(v for result in results for v in result)
    assert applied == [m.version for m in migrations()]
    assert _tables(fresh_database) == EXPECTED_TABLES


async def test_state_and_reason_names_agree_with_the_protobuf_enums(store: Store) -> None:
    from cfgclone.v1 import common_pb2

    async with store.connection() as conn:
        states = await (await conn.execute("SELECT state, name FROM change_states")).fetchall()
        reasons = await (await conn.execute("SELECT reason, name FROM rollback_reasons")).fetchall()
    assert dict(states) == {
        v.number: v.name.removeprefix("CHANGE_STATE_").lower()
        for v in common_pb2.ChangeState.DESCRIPTOR.values
    }
    assert dict(reasons) == {
        v.number: v.name.removeprefix("ROLLBACK_REASON_").lower()
        for v in common_pb2.RollbackReason.DESCRIPTOR.values
    }


async def test_a_database_migrated_before_the_split_by_owner_is_adopted_as_it_stands(
    fresh_database: str,
) -> None:
    """A database whose schema_migrations has one row per version of the old shared
    folder: every owner's file of an applied version counts as applied, nothing runs
    twice, and the migrations since then apply."""
    store = Store(fresh_database)
    await store.open(wait=True)
    try:
        await store.migrate()
        shipped = migrations()
        before_split = {m.version for m in shipped if m.version <= 60}
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            # Back to the old layout, as a database left by an earlier release has it.
            conn.execute("DELETE FROM schema_migrations WHERE version > 60")
            for view in ("published_systems", "published_series"):
                conn.execute(f"DROP VIEW {view}")
            conn.execute("DROP VIEW published_fingerprints")
            conn.execute("DROP VIEW published_configurations")
            conn.execute("DROP TABLE flagged_systems")
            conn.execute("ALTER TABLE systems ADD COLUMN flagged_reason text")
            conn.execute("UPDATE systems SET flagged_reason = NULL")
            conn.execute("DROP TABLE schema_migrations")
            conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version in sorted(before_split):
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, 'old')", (version,)
                )
        applied = await store.migrate()
        assert applied == [m.version for m in shipped if m.version > 60]
        assert await store.migrate() == []
    finally:
        await store.close()
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT owner, version FROM schema_migrations").fetchall()
    assert sorted(rows) == sorted((m.owner, m.version) for m in shipped)
    assert _tables(fresh_database) == EXPECTED_TABLES
