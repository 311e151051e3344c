"""The schemas cfgclone knows without being told: PostgreSQL and the simulated system.

Bounds and units of the PostgreSQL schema are PostgreSQL's own (as `pg_settings` lists
them), so a value the schema accepts is one the server accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from .schema import Schema
from .spec import Floor, ParameterSpec, ParameterType, Scaling

__all__ = ["BUILTIN_SCHEMAS", "POSTGRESQL", "SIMULATED", "schema_for"]

_INT_MAX = 2147483647

_INTEGER = ParameterType.INTEGER
_FLOAT = ParameterType.FLOAT
_BYTES = ParameterType.BYTES
_DURATION = ParameterType.DURATION
_ENUM = ParameterType.ENUM
_MEMORY = Scaling.MEMORY
_CORES = Scaling.CORES
_DISK = Scaling.DISK_THROUGHPUT

POSTGRESQL = Schema(
    "postgresql",
    (
        ParameterSpec(
            "shared_buffers",
            _BYTES,
            "8kB",
            16,
            1073741823,
            scaling=_MEMORY,
            requires_restart=True,
            floor=Floor.WORKING_SET,
        ),
        ParameterSpec("effective_cache_size", _BYTES, "8kB", 1, _INT_MAX, scaling=_MEMORY),
        ParameterSpec("work_mem", _BYTES, "kB", 64, _INT_MAX, scaling=_MEMORY),
        ParameterSpec("maintenance_work_mem", _BYTES, "kB", 1024, _INT_MAX, scaling=_MEMORY),
        # -1 means "use maintenance_work_mem", a special value adaptation leaves alone.
        ParameterSpec("autovacuum_work_mem", _BYTES, "kB", -1, _INT_MAX, scaling=_MEMORY),
        ParameterSpec(
            "max_worker_processes", _INTEGER, "", 0, 262143, scaling=_CORES, requires_restart=True
        ),
        ParameterSpec("max_parallel_workers", _INTEGER, "", 0, 1024, scaling=_CORES),
        ParameterSpec("max_parallel_workers_per_gather", _INTEGER, "", 0, 1024, scaling=_CORES),
        ParameterSpec("max_parallel_maintenance_workers", _INTEGER, "", 0, 1024, scaling=_CORES),
        ParameterSpec("effective_io_concurrency", _INTEGER, "", 0, 1000, scaling=_DISK),
        ParameterSpec("maintenance_io_concurrency", _INTEGER, "", 0, 1000, scaling=_DISK),
        ParameterSpec("max_connections", _INTEGER, "", 1, 262143, requires_restart=True),
        ParameterSpec("random_page_cost", _FLOAT, "", 0),
        ParameterSpec("seq_page_cost", _FLOAT, "", 0),
        ParameterSpec("checkpoint_completion_target", _FLOAT, "", 0, 1),
        ParameterSpec("commit_delay", _INTEGER, "microseconds", 0, 100000),
        ParameterSpec("commit_siblings", _INTEGER, "", 0, 1000),
        ParameterSpec("checkpoint_timeout", _DURATION, "s", 30, 86400),
        ParameterSpec("statement_timeout", _DURATION, "ms", 0, _INT_MAX),
        ParameterSpec("max_wal_size", _BYTES, "MB", 2, _INT_MAX),
        # -1 means "a 32nd of shared_buffers".
        ParameterSpec("wal_buffers", _BYTES, "8kB", -1, 262143, requires_restart=True),
        ParameterSpec(
            "synchronous_commit",
            _ENUM,
            allowed_values=("local", "remote_write", "remote_apply", "on", "off"),
        ),
        ParameterSpec(
            "wal_level",
            _ENUM,
            allowed_values=("minimal", "replica", "logical"),
            requires_restart=True,
        ),
        ParameterSpec(
            "huge_pages", _ENUM, allowed_values=("off", "on", "try"), requires_restart=True
        ),
        ParameterSpec("jit", ParameterType.BOOLEAN),
    ),
)
"""PostgreSQL: memory settings follow memory, worker counts follow cores, I/O concurrency
follows disk throughput; shared_buffers never drops below the source's working set;
connection limits, planner costs and durability settings are
choices, not capacities, and are copied."""

SIMULATED = Schema(
    "simulated",
    (
        ParameterSpec("workers", _INTEGER, "", 1, 1024, scaling=_CORES, floor=Floor.CONCURRENCY),
        ParameterSpec(
            "cache_mb", _INTEGER, "MB", 1, 1 << 20, scaling=_MEMORY, floor=Floor.WORKING_SET
        ),
        ParameterSpec("io_depth", _INTEGER, "", 1, 1024, scaling=_DISK),
        ParameterSpec("request_timeout_s", _INTEGER, "s", 1, 86400),
        ParameterSpec("debug_logging", ParameterType.BOOLEAN),
    ),
)
"""The simulated system of tests and the demo (the predictor's simulated shadow provider
and applier): `workers` follows cores, `cache_mb` memory, `io_depth` disk throughput;
neither `workers` nor `cache_mb` drops below what the source's data shows it needs."""

BUILTIN_SCHEMAS: Mapping[str, Schema] = MappingProxyType(
    {"postgresql": POSTGRESQL, "postgres": POSTGRESQL, "simulated": SIMULATED}
)
"""Built-in schemas by configuration kind (`postgres` is another name of `postgresql`)."""


def schema_for(kind: str, declared: Iterable[ParameterSpec] = ()) -> Schema:
    """The schema of a configuration of `kind`, with its own `declared` parameters winning.

    A kind cfgclone has no schema for gets the declared parameters only (none: every
    parameter is copied unchanged). Kinds are matched without regard to case.
    """
    own = tuple(declared)
    builtin = BUILTIN_SCHEMAS.get(kind.strip().lower())
    if builtin is None:
        return Schema(kind, own)
    return builtin.overridden_by(own) if own else builtin
