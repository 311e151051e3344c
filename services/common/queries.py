"""Named SQL queries kept in ``.sql`` files.

A file holds blocks that start with ``-- name: <query_name>``; the text up to
the next such line is the query. Keeping SQL in files lets it be read,
linted and reviewed as SQL.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split the text of a queries file into ``{name: sql}``."""
    parts = _NAME_LINE.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


def load_queries(package: str, filename: str) -> dict[str, str]:
    """Queries of ``<package>/sql/<filename>``."""
    text = resources.files(package).joinpath("sql", filename).read_text(encoding="utf-8")
    return parse_queries(text)
