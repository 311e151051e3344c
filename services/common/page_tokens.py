"""Page tokens that cannot be forged, replayed against another query, or overflow.

A token is ``base64url(version | kind | query digest | fields | mac)``: the
fields of one kind of position (an offset, a sample key) packed in fixed
binary, bound to a digest of the query it was issued for, and signed with
HMAC-SHA256 under the deployment's page-token key. Its size is fixed by its
kind, so decoding is bounded; anything that is not exactly a token this
deployment issued is INVALID_ARGUMENT naming ``page_token``.

The key is per deployment, so every replica accepts every other's tokens:
``CFGCLONE_PAGE_TOKEN_KEY`` when set, otherwise a random key generated once by
migration 0060 and kept in the database (table ``deployment_keys``), which each
service loads when it first reaches the database. A server started without
either (tests, an embedded single process) signs with a random key of its own
process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import struct
from dataclasses import dataclass

from cfgclone.common.errors import InvalidArgument

__all__ = [
    "PAGE_TOKEN_KEY_NAME",
    "TokenKind",
    "open_token",
    "query_digest",
    "seal_token",
    "use_page_token_key",
]

PAGE_TOKEN_KEY_NAME = "page_tokens"
"""Name of the page-token key in the ``deployment_keys`` table."""

VERSION = 1
"""Format of the tokens issued now; a token of another version is refused."""

_DIGEST_BYTES = 16
_MAC_BYTES = 16
_HEADER = struct.Struct(">BB")


@dataclass(frozen=True)
class TokenKind:
    """One kind of page position: an id byte and the struct format of its fields."""

    ident: int
    layout: struct.Struct

    @property
    def token_bytes(self) -> int:
        return _HEADER.size + _DIGEST_BYTES + self.layout.size + _MAC_BYTES


class _Key:
    """The signing key of this process (see the module docstring for where it comes from)."""

    def __init__(self) -> None:
        self.value = secrets.token_bytes(32)


_KEY = _Key()


def use_page_token_key(key: bytes) -> None:
    """Sign and check page tokens with the deployment's ``key`` from now on."""
    if len(key) < 16:
        raise ValueError("a page-token key must have at least 16 bytes")
    _KEY.value = key


def query_digest(query: object) -> bytes:
    """A fixed-size digest of a request's filters, so a token serves only its own query."""
    text = json.dumps(query, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()[:_DIGEST_BYTES]


def _mac(body: bytes) -> bytes:
    return hmac.new(_KEY.value, body, hashlib.sha256).digest()[:_MAC_BYTES]


def seal_token(kind: TokenKind, digest: bytes, *fields: int | float) -> str:
    """The token for position ``fields`` of the query with ``digest``."""
    body = _HEADER.pack(VERSION, kind.ident) + digest + kind.layout.pack(*fields)
    return base64.urlsafe_b64encode(body + _mac(body)).decode().rstrip("=")


def _not_issued() -> InvalidArgument:
    return InvalidArgument.for_field(
        "page_token", "is not a token this service issued; start again without a token"
    )


def open_token(kind: TokenKind, digest: bytes, token: str) -> tuple[int | float, ...]:
    """The fields sealed in ``token``; INVALID_ARGUMENT unless it is genuine and for this query."""
    expected_chars = -(-kind.token_bytes * 4 // 3)
    if len(token) != expected_chars:
        raise _not_issued()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise _not_issued() from None
    if len(raw) != kind.token_bytes:
        raise _not_issued()
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    version, ident = _HEADER.unpack_from(body)
    if version != VERSION or ident != kind.ident or not hmac.compare_digest(mac, _mac(body)):
        raise _not_issued()
    if not hmac.compare_digest(body[_HEADER.size : _HEADER.size + _DIGEST_BYTES], digest):
        raise InvalidArgument.for_field(
            "page_token", "was issued for a different query; start again without a token"
        )
    return kind.layout.unpack_from(body, _HEADER.size + _DIGEST_BYTES)
