"""Checks shared by every servicer: resource names and pagination (AIP-122, AIP-158).

Each check raises :class:`InvalidArgument` with a field violation naming the
field, so a bad request is refused before anything is read or written.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import datetime

from cfgclone.common.errors import InvalidArgument
from cfgclone.common.limits import EARLIEST_SAMPLE_TIME, LATEST_SAMPLE_TIME, MAX_RESOURCE_ID
from cfgclone.common.message_checks import quote
from cfgclone.common.page_tokens import TokenKind, open_token, query_digest, seal_token

SYSTEM_ID_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}")
"""A system id, or any top-level resource id; use with ``fullmatch`` (``$`` would
accept a trailing newline)."""


def top_level_id(name: str, collection: str, field: str = "name") -> str:
    """The id of ``{collection}/{id}`` (AIP-122: 1-63 lower-case letters, digits and '-',
    starting with a letter); INVALID_ARGUMENT naming ``field`` otherwise."""
    prefix = f"{collection}/"
    ident = name[len(prefix) :] if name.startswith(prefix) else ""
    if SYSTEM_ID_PATTERN.fullmatch(ident) is None:
        singular = collection.removesuffix("s")
        raise InvalidArgument.for_field(
            field,
            f"must be {collection}/{{{singular}_id}} with an id of 1-63 lower-case letters, "
            f"digits and '-', starting with a letter (got {quote(name)})",
        )
    return ident


def system_id_from_name(name: str, field: str = "name") -> str:
    """The id of ``systems/{system_id}``; INVALID_ARGUMENT when the name is not of that form."""
    return top_level_id(name, "systems", field)


def policy_id_from_name(name: str, field: str = "name") -> str:
    """The id of ``policies/{policy_id}``; INVALID_ARGUMENT when the name is not of that form."""
    return top_level_id(name, "policies", field)


def child_id_from_name(name: str, collection: str, field: str = "name") -> tuple[str, str]:
    """``(system_id, child_id)`` of ``systems/{system_id}/{collection}/{child_id}``."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "systems" or parts[2] != collection or not parts[3]:
        raise InvalidArgument.for_field(
            field, f"must be systems/{{system_id}}/{collection}/{{id}} (got {quote(name)})"
        )
    return system_id_from_name("/".join(parts[:2]), field), parts[3]


def sample_time(moment: datetime, field: str) -> datetime:
    """``moment``, when samples can exist then; INVALID_ARGUMENT otherwise.

    Samples carry int64 nanoseconds since the Unix epoch, so a window over
    samples lies within 1678 to 2262; later arithmetic on it cannot overflow.
    """
    if not EARLIEST_SAMPLE_TIME <= moment <= LATEST_SAMPLE_TIME:
        raise InvalidArgument.for_field(
            field,
            f"must be between {EARLIEST_SAMPLE_TIME.date()} and {LATEST_SAMPLE_TIME.date()}, "
            f"the range of sample times (got {moment.isoformat()})",
        )
    return moment


def numeric_id(ident: str, field: str, what: str = "id", maximum: int = MAX_RESOURCE_ID) -> int:
    """A numeric resource id, 1 to ``maximum``; INVALID_ARGUMENT otherwise."""
    if not (ident.isascii() and ident.isdigit()) or len(ident) > 19 or int(ident) < 1:
        raise InvalidArgument.for_field(
            field, f"{what} must be a whole number of at least 1 (got {quote(ident)})"
        )
    number = int(ident)
    if number > maximum:
        raise InvalidArgument.for_field(field, f"{what} {quote(ident)} is out of range")
    return number


def require(value: object, field: str) -> None:
    """INVALID_ARGUMENT when a required field is empty (AIP-203)."""
    if value in ("", None, 0) or (hasattr(value, "ByteSize") and not value.ByteSize()):
        raise InvalidArgument.for_field(field, "is required")


_OFFSET_TOKEN = TokenKind(1, struct.Struct(">q"))
MAX_OFFSET = 2**62
"""Largest offset a List page may start at."""


@dataclass(frozen=True)
class Page:
    """A validated page request: how many items and from which offset."""

    size: int
    offset: int
    query_key: bytes

    def next_token(self, returned: int, has_more: bool) -> str:
        """The token of the next page, empty when this was the last."""
        if not has_more:
            return ""
        return seal_token(_OFFSET_TOKEN, self.query_key, self.offset + returned)


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
    cannot page through one list with the token of another. Tokens are signed
    (:mod:`cfgclone.common.page_tokens`): a forged one is INVALID_ARGUMENT.
    """
    if page_size < 0:
        raise InvalidArgument.for_field("page_size", f"must not be negative (got {page_size})")
    size = min(page_size or default_size, max_size)
    key = query_digest(query)
    if not page_token:
        return Page(size=size, offset=0, query_key=key)
    (offset,) = open_token(_OFFSET_TOKEN, key, page_token)
    if not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidArgument.for_field("page_token", "holds an offset out of range")
    return Page(size=size, offset=offset, query_key=key)


def parse_label_selector(selector: str, field: str = "label_selector") -> dict[str, str]:
    """``key=value,key=value`` into a dict; INVALID_ARGUMENT on a malformed term."""
    labels: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument.for_field(field, f"term {quote(term)} is not key=value")
        labels[key.strip()] = value.strip()
    return labels
