"""Label selectors: which systems a query may return, for example only `role=db`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .errors import InvalidEmbedding, InvalidQuery

__all__ = ["Labels", "check_selector", "freeze_labels", "parse_label_selector"]

Labels = Mapping[str, str]
"""A system's labels, or a selector: every pair must match."""

_NO_LABELS: Labels = MappingProxyType({})


def parse_label_selector(selector: str) -> dict[str, str]:
    """Parses `key=value[,key=value...]` (as in `FindSimilarSystemsRequest.label_selector`).

    An empty string selects everything. Every pair must match; a key given twice is
    an error rather than an "or", so a typo cannot silently widen a rollout.
    """
    parsed: dict[str, str] = {}
    if not selector.strip():
        return parsed
    for term in selector.split(","):
        key, equals, value = term.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            raise InvalidQuery(f"label selector term {term!r} is not key=value")
        if key in parsed:
            raise InvalidQuery(f"label selector names {key!r} twice")
        parsed[key] = value
    return parsed


def check_selector(selector: Mapping[str, str] | None) -> Labels:
    """Validates a selector given as a mapping; None and {} select everything."""
    if not selector:
        return _NO_LABELS
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in selector.items()):
        raise InvalidQuery("label selector keys and values must be strings")
    return MappingProxyType(dict(selector))


def freeze_labels(
    labels: Mapping[str, str] | None, interned: dict[tuple[tuple[str, str], ...], Labels]
) -> Labels:
    """A read-only copy of a system's labels, shared with every system labelled the same.

    A fleet of a million has a handful of distinct label sets; sharing them keeps the
    index from holding a million dictionaries.
    """
    if not labels:
        return _NO_LABELS
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise InvalidEmbedding("label keys and values must be strings")
    key = tuple(sorted(labels.items()))
    frozen = interned.get(key)
    if frozen is None:
        frozen = MappingProxyType(dict(key))
        interned[key] = frozen
    return frozen
