"""One suite for the tests of this package (five service processes on a temporary database and
free local ports), shared by the Node.js client tests and the grpcurl tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cfgclone.cli.suite import RunningSuite
from tests.clients.support import suite_on_temporary_database


@pytest.fixture(scope="package")
def suite() -> Iterator[RunningSuite]:
    """All five services as separate processes, each SERVING, on an empty database."""
    with suite_on_temporary_database() as running:
        yield running
