"""Databases made and dropped on a PostgreSQL server: for the demo, the tests and benchmarks.

``admin_url`` names any database on the server (``postgres`` usually) as a user allowed
to create databases; the new database's URL is the same with its name in the path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

__all__ = ["database_url_for", "drop_database", "recreate_database", "temporary_database"]


def database_url_for(admin_url: str, name: str) -> str:
    """``admin_url`` with its database replaced by ``name`` (query string kept)."""
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def recreate_database(admin_url: str, name: str) -> str:
    """Drop ``name`` if it exists (closing its sessions), create it empty, return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url_for(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name`` if it exists, closing its sessions."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def temporary_database(admin_url: str, prefix: str = "cfgclone_tmp") -> Iterator[str]:
    """Create an empty database named ``{prefix}_{random}``, yield its URL, drop it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = recreate_database(admin_url, name)
    try:
        yield url
    finally:
        drop_database(admin_url, name)
