"""The PostgreSQL applier against a throw-away cluster (never the shared test server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from cfgclone.predictor.appliers import (
    ApplyFailed,
    ManagedSystem,
    PostgresApplier,
)
from cfgclone.predictor.shadow import ClusterSettings, ThrowawayCluster, throwaway_cluster
from tests.predictor.shadow.support import needs_postgres, open_parent_folder

pytestmark = [needs_postgres]


@pytest.fixture
async def cluster() -> AsyncIterator[ThrowawayCluster]:
    with open_parent_folder() as parent:
        async with throwaway_cluster(ClusterSettings(parent=parent)) as running:
            yield running


@pytest.fixture
def system(cluster: ThrowawayCluster) -> ManagedSystem:
    return ManagedSystem("systems/db-01", host="localhost", endpoint=cluster.conninfo)


async def _show(cluster: ThrowawayCluster, name: str) -> str:
    """SHOW in a new session, as an operator checking by hand would."""
    async with await psycopg.AsyncConnection.connect(cluster.conninfo) as connection:
        cursor = await connection.execute(
            psycopg.sql.SQL("SHOW {}").format(psycopg.sql.Identifier(name))
        )
        row = await cursor.fetchone()
        assert row is not None
        return str(row[0])


async def test_apply_then_rollback_is_confirmed_by_show(
    cluster: ThrowawayCluster, system: ManagedSystem
) -> None:
    applier = PostgresApplier()
    assert await _show(cluster, "work_mem") == "4MB"
    previous = await applier.read_current(system)
    assert "work_mem" not in previous

    applied = await applier.apply(system, {"work_mem": "64MB", "commit_delay": 100})
    assert applied.changed == ("commit_delay", "work_mem")
    assert applied.restart_required == ()
    assert "ALTER SYSTEM SET \"work_mem\" = '64MB'" in applied.output
    assert await _show(cluster, "work_mem") == "64MB"
    assert await _show(cluster, "commit_delay") == "100"
    assert await applier.read_current(system) == {
        **previous,
        "work_mem": "64MB",
        "commit_delay": "100",
    }

    rolled_back = await applier.rollback(system, previous)
    assert rolled_back.changed == ("commit_delay", "work_mem")
    assert 'ALTER SYSTEM RESET "work_mem"' in rolled_back.output
    assert await _show(cluster, "work_mem") == "4MB"
    assert await _show(cluster, "commit_delay") == "0"
    assert await applier.read_current(system) == previous


async def test_rollback_restores_an_earlier_value_rather_than_the_default(
    cluster: ThrowawayCluster, system: ManagedSystem
) -> None:
    applier = PostgresApplier()
    await applier.apply(system, {"work_mem": "16MB"})
    previous = await applier.read_current(system)
    await applier.apply(system, {"work_mem": "32MB", "random_page_cost": 1.1})
    assert await _show(cluster, "random_page_cost") == "1.1"
    await applier.rollback(system, previous)
    assert await _show(cluster, "work_mem") == "16MB"
    assert await _show(cluster, "random_page_cost") == "4"


async def test_a_parameter_that_needs_a_restart_is_reported_not_restarted(
    cluster: ThrowawayCluster, system: ManagedSystem
) -> None:
    applier = PostgresApplier()
    result = await applier.apply(system, {"max_connections": 50, "work_mem": "8MB"})
    assert result.restart_required == ("max_connections",)
    assert set(result.changed) == {"max_connections", "work_mem"}
    assert await _show(cluster, "max_connections") == "100"  # still the running value
    await cluster.restart()
    assert await _show(cluster, "max_connections") == "50"


async def test_unknown_parameters_are_refused_and_nothing_is_written(
    cluster: ThrowawayCluster, system: ManagedSystem
) -> None:
    applier = PostgresApplier()
    with pytest.raises(ApplyFailed, match=r"unknown PostgreSQL parameters.*no_such_thing"):
        await applier.apply(system, {"work_mem": "8MB", "no_such_thing": 1})
    assert await applier.read_current(system) == {}
    assert await _show(cluster, "work_mem") == "4MB"


async def test_a_refused_value_undoes_the_settings_written_before_it(
    cluster: ThrowawayCluster, system: ManagedSystem
) -> None:
    applier = PostgresApplier()
    with pytest.raises(ApplyFailed, match="refused shared_buffers") as failure:
        await applier.apply(system, {"work_mem": "8MB", "shared_buffers": "lots"})
    assert "work_mem" in failure.value.output
    assert await applier.read_current(system) == {}


async def test_a_quote_in_a_value_stays_a_value() -> None:
    # Values are literals: a quote cannot end the statement and start another.
    with open_parent_folder() as parent:
        async with throwaway_cluster(ClusterSettings(parent=parent)) as cluster:
            system = ManagedSystem("systems/db-01", "localhost", cluster.conninfo)
            applier = PostgresApplier()
            await applier.apply(system, {"application_name": "x'; DROP TABLE t; --"})
            assert await _show(cluster, "application_name") == "x'; DROP TABLE t; --"
            assert (await applier.read_current(system))["application_name"] == (
                "x'; DROP TABLE t; --"
            )


async def test_a_system_without_an_endpoint_cannot_be_changed() -> None:
    with pytest.raises(ApplyFailed, match="no PostgreSQL connection string"):
        await PostgresApplier().apply(ManagedSystem("systems/x", "x"), {"work_mem": "8MB"})
