"""Parameters a person sets by hand (``cfgclone apply --set``), checked against what is known.

A kind with a schema knows its declared parameters, and a system's current
configuration knows the ones it already has; a key known to neither is most
likely a typo, so it is refused with the nearest known names. A kind without
a schema cannot tell, so its new keys pass with a warning.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from cfgclone.adaptation import Schema


@dataclass(frozen=True)
class UnknownParameter:
    """A key neither the schema nor the current configuration has."""

    key: str
    nearest: tuple[str, ...]
    """The closest known keys, best first (may be empty)."""

    def describe(self, kind: str) -> str:
        hint = f"; did you mean {' or '.join(self.nearest)}?" if self.nearest else ""
        return f"{kind} has no parameter {self.key}{hint}"


def unknown_parameters(
    schema: Schema, current: Iterable[str], keys: Iterable[str], *, nearest: int = 3
) -> list[UnknownParameter]:
    """The ``keys`` that neither ``schema`` nor the ``current`` configuration's keys know."""
    known = sorted({spec.key for spec in schema.parameters} | set(current))
    return [
        UnknownParameter(key, tuple(difflib.get_close_matches(key, known, n=nearest)))
        for key in keys
        if schema.spec(key) is None and key not in known
    ]
