"""``cfgclone-pg-stats``: an agent plugin that reports a PostgreSQL server's load and
transaction time, in the Prometheus text format.

Run by the agent as an ``[[exec]]`` command on the database machine
(``deploy/agent.postgresql.toml``). It connects with libpq's usual settings (the
``PG*`` variables, or ``--dsn``) and prints the running totals of
``pg_stat_database`` for the databases it is asked about, as the histogram
``postgresql_transaction_duration_seconds``: ``_count`` is the transactions
committed, ``_sum`` the seconds backends were active (``active_time``, PostgreSQL 14
and later). The agent turns the two totals into ``postgresql.commits`` (committed
transactions per second: the offered load) and ``db.client.operation.duration`` (the
mean time a transaction was active in the server) between runs. Statistics reach
``pg_stat_database`` within a second of a transaction's end, so run it every few
seconds or slower.

Exit status: 0 when it printed the totals, 1 when the server could not be read (the
agent then discards the run and logs it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import psycopg

__all__ = ["main", "read_totals"]

FAMILY = "postgresql_transaction_duration_seconds"

_TOTALS = """
SELECT coalesce(sum(xact_commit), 0)::float8,
       coalesce(sum(active_time), 0)::float8 / 1000.0
FROM pg_stat_database
WHERE datname = ANY(%(databases)s) OR cardinality(%(databases)s::text[]) = 0
"""


def read_totals(conninfo: str, databases: Sequence[str]) -> tuple[float, float]:
    """``(transactions committed, seconds active)`` since the statistics were reset."""
    with psycopg.connect(conninfo, connect_timeout=5, autocommit=True) as conn:
        row = conn.execute(_TOTALS, {"databases": list(databases)}).fetchone()
    assert row is not None  # an aggregate always returns a row
    return float(row[0]), float(row[1])


def exposition(commits: float, active_seconds: float) -> str:
    """The totals in the Prometheus text format."""
    return (
        f"# HELP {FAMILY} Transactions committed and the seconds backends were active.\n"
        f"# TYPE {FAMILY} histogram\n"
        f'{FAMILY}_bucket{{le="+Inf"}} {commits:.17g}\n'
        f"{FAMILY}_count {commits:.17g}\n"
        f"{FAMILY}_sum {active_seconds:.17g}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cfgclone-pg-stats",
        description="Print a PostgreSQL server's transaction totals for the cfgclone agent.",
    )
    parser.add_argument(
        "--dsn", default="", help="libpq connection string (default: the PG* variables)"
    )
    parser.add_argument(
        "--database",
        action="append",
        default=[],
        help="count only this database (repeatable; default: every database)",
    )
    args = parser.parse_args(argv)
    try:
        commits, active = read_totals(args.dsn, args.database)
    except psycopg.Error as error:
        print(f"cfgclone-pg-stats: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    sys.stdout.write(exposition(commits, active))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
