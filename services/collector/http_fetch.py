"""HTTP GET for scrapes and probes, off the event loop and with a deadline.

The standard library's client runs in a worker thread: it speaks HTTP/1.1
fully (chunked bodies, redirects, TLS) and keeps the agent free of extra
dependencies. Proxies from the environment are ignored on purpose: scrape
targets and probed URLs are addresses on the machine's own network, and a
proxy in between would measure the proxy.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cfgclone.common.message_checks import quote

__all__ = ["FetchError", "HttpResult", "check_http_url", "http_get"]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_USER_AGENT = "cfgclone/1"


class FetchError(Exception):
    """The URL could not be fetched: refused, unreachable, timed out, or too large."""


@dataclass(frozen=True, slots=True)
class HttpResult:
    """An HTTP answer (any status) and how long it took to read in full."""

    status: int
    body: bytes
    seconds: float


def check_http_url(url: str) -> str | None:
    """What is wrong with ``url`` as an http(s) URL to fetch, or None when it is fine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"must be an http:// or https:// URL (got {quote(url)})"
    if not parts.hostname:
        return f"has no host (got {quote(url)})"
    return None


Guard = Callable[[str], None]
"""Checks a URL about to be fetched (the first and every redirect); raises to refuse it."""


class _GuardedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        self._guard(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _get(url: str, timeout: float, max_bytes: int, guard: Guard | None = None) -> HttpResult:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    opener = _OPENER
    if guard is not None:
        guard(url)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), _GuardedRedirects(guard)
        )
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
            status = int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            body = error.read(max_bytes + 1)
        status = error.code
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise FetchError(f"GET {url}: {reason}") from error
    if len(body) > max_bytes:
        raise FetchError(f"GET {url}: the body is larger than {max_bytes} bytes")
    return HttpResult(status, body, time.perf_counter() - started)


async def http_get(
    url: str,
    within_seconds: float,
    max_bytes: int = 16 * 1024 * 1024,
    *,
    guard: Guard | None = None,
) -> HttpResult:
    """GET ``url``; any status is an answer, no answer ``within_seconds`` is a FetchError.

    ``guard`` is called in the fetching thread with the URL and with every redirect
    target before it is fetched; whatever it raises ends the fetch.
    """
    problem = check_http_url(url)
    if problem is not None:
        raise FetchError(problem)
    return await asyncio.to_thread(_get, url, within_seconds, max_bytes, guard)
