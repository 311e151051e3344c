"""Checks shared by every servicer: resource names and pagination (AIP-122, AIP-158).

Each check raises :class:`InvalidArgument` with a field violation naming the
field, so a bad request is refused before anything is read or written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass

from cfgclone.common.errors import InvalidArgument

SYSTEM_ID_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_SYSTEM_NAME = re.compile(r"^systems/([a-z][a-z0-9-]{0,62})$")


def system_id_from_name(name: str, field: str = "name") -> str:
    """The id of ``systems/{system_id}``; INVALID_ARGUMENT when the name is not of that form."""
    match = _SYSTEM_NAME.match(name)
    if match is None:
        raise InvalidArgument.for_field(
            field,
            f"must be systems/{{system_id}} with an id of 1-63 lower-case letters, digits "
            f"and '-', starting with a letter (got {name!r})",
        )
    return match.group(1)


def child_id_from_name(name: str, collection: str, field: str = "name") -> tuple[str, str]:
    """``(system_id, child_id)`` of ``systems/{system_id}/{collection}/{child_id}``."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "systems" or parts[2] != collection or not parts[3]:
        raise InvalidArgument.for_field(
            field, f"must be systems/{{system_id}}/{collection}/{{id}} (got {name!r})"
        )
    return system_id_from_name("/".join(parts[:2]), field), parts[3]


def require(value: object, field: str) -> None:
    """INVALID_ARGUMENT when a required field is empty (AIP-203)."""
    if value in ("", None, 0) or (hasattr(value, "ByteSize") and not value.ByteSize()):
        raise InvalidArgument.for_field(field, "is required")


@dataclass(frozen=True)
class Page:
    """A validated page request: how many items and from which offset."""

    size: int
    offset: int
    query_key: str

    def next_token(self, returned: int, has_more: bool) -> str:
        """The token of the next page, empty when this was the last."""
        if not has_more:
            return ""
        return encode_page_token(self.offset + returned, self.query_key)


def _query_key(query: object) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_page_token(offset: int, query_key: str) -> str:
    """An opaque token for the item at ``offset`` of the query identified by ``query_key``."""
    raw = json.dumps({"o": offset, "q": query_key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_request(
    page_size: int,
    page_token: str,
    *,
    query: object = None,
    default_size: int = 100,
    max_size: int = 1000,
) -> Page:
    """Validate ``page_size`` and ``page_token`` of a List request.

    A negative size is INVALID_ARGUMENT, zero means ``default_size`` and a size
    above ``max_size`` is lowered to it (AIP-158). ``query`` holds the request's
    other filters: a token made for different filters is refused, so a client
    cannot page through one list with the token of another.
    """
    if page_size < 0:
        raise InvalidArgument.for_field("page_size", f"must not be negative (got {page_size})")
    size = min(page_size or default_size, max_size)
    key = _query_key(query)
    if not page_token:
        return Page(size=size, offset=0, query_key=key)
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = int(decoded["o"])
        token_key = str(decoded["q"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidArgument.for_field(
            "page_token", "is not a token this service issued"
        ) from None
    if offset < 0 or token_key != key:
        raise InvalidArgument.for_field(
            "page_token", "was issued for a different query; start again without a token"
        )
    return Page(size=size, offset=offset, query_key=key)


def parse_label_selector(selector: str, field: str = "label_selector") -> dict[str, str]:
    """``key=value,key=value`` into a dict; INVALID_ARGUMENT on a malformed term."""
    labels: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument.for_field(field, f"term {term!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels
