"""The throw-away cluster: runs on a private socket, and leaves nothing however it ends."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cfgclone.predictor.shadow import ClusterSettings, ShadowFailed, throwaway_cluster
from tests.predictor.shadow.support import (
    closed_folder,
    leftovers,
    needs_postgres,
    open_parent_folder,
    shared_memory_ids,
)

pytestmark = [needs_postgres]


@pytest.fixture
def parent() -> Iterator[Path]:
    with open_parent_folder() as folder:
        yield folder


async def test_the_cluster_answers_on_a_socket_in_its_own_folder(parent: Path) -> None:
    async with throwaway_cluster(ClusterSettings(parent=parent)) as cluster:
        assert cluster.workdir.parent == parent
        async with await psycopg.AsyncConnection.connect(cluster.conninfo) as connection:
            cursor = await connection.execute(
                "SELECT current_setting('listen_addresses'), current_setting('data_directory')"
            )
            assert await cursor.fetchone() == ("", str(cluster.data_dir))
        assert cluster.server_pid is not None
        assert len(cluster.server_processes()) > 1  # the postmaster and its workers
    assert leftovers(parent) == []


async def test_an_error_inside_the_block_still_removes_everything(parent: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with throwaway_cluster(ClusterSettings(parent=parent)):
            raise RuntimeError("boom")
    assert leftovers(parent) == []


async def test_a_killed_server_leaves_no_shared_memory_behind(parent: Path) -> None:
    async with throwaway_cluster(ClusterSettings(parent=parent)) as cluster:
        fields = (cluster.data_dir / "postmaster.pid").read_text().splitlines()[6].split()
        segment = fields[1]
        assert segment in shared_memory_ids()
        assert cluster.server_pid is not None
        os.kill(cluster.server_pid, signal.SIGKILL)
    assert segment not in shared_memory_ids()
    assert leftovers(parent) == []


async def test_a_folder_closed_to_the_server_user_is_refused_clearly(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root hands the cluster to another user")
    closed = closed_folder(tmp_path / "closed")
    with pytest.raises(ShadowFailed, match="closed to the postgres user"):
        async with throwaway_cluster(ClusterSettings(parent=closed)):
            pass
    assert leftovers(closed) == []


async def test_missing_server_binaries_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ShadowFailed, match="no PostgreSQL server binaries"):
        async with throwaway_cluster(ClusterSettings(bin_dir=tmp_path, parent=tmp_path)):
            pass
