"""Which addresses the collector may scrape: never link-local or cloud metadata endpoints.

A scrape target is a URL an operator gives; the collector fetches it from inside
the deployment. Pointed at a cloud metadata service (``169.254.169.254``,
``fd00:ec2::254``, ...) it would fetch instance credentials and store them as
samples; pointed at loopback it would reach the collector's own machine. So the
host of a target is resolved and every address it resolves to is checked: when the
target is created (a name that does not resolve yet is accepted and checked later)
and again at every scrape, in the thread that fetches and for every redirect, so a
name that changes its address later is caught too. Loopback is refused unless the
deployment allows it (``CFGCLONE_COLLECTOR_SCRAPE_ALLOW_LOOPBACK=1``, for a collector
that scrapes exporters on its own machine).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cfgclone.collector.http_fetch import FetchError

__all__ = ["METADATA_ADDRESSES", "AddressPolicy", "ForbiddenAddress"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
"""Instance metadata services, refused whatever network they are in."""

_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_LOOPBACK = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("0.0.0.0/32"),  # connects to this machine
    ipaddress.ip_network("::/128"),
)
_RESOLVE_SECONDS = 2.0


class ForbiddenAddress(FetchError):
    """The URL's host is, or resolves to, an address the collector must not scrape."""


def _plain(address: IpAddress) -> IpAddress:
    """An IPv4 address written as IPv6 (``::ffff:169.254.169.254``) as the IPv4 it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Addresses a scrape may reach."""

    allow_loopback: bool = False
    """Whether loopback (``127.0.0.0/8``, ``::1``) may be scraped."""

    def problem(self, address: IpAddress) -> str | None:
        """Why ``address`` may not be scraped, or None when it may."""
        plain = _plain(address)
        if plain in METADATA_ADDRESSES:
            return f"{address} is a cloud metadata address"
        if any(plain in network for network in _LINK_LOCAL):
            return f"{address} is link-local"
        if not self.allow_loopback and any(plain in network for network in _LOOPBACK):
            return (
                f"{address} is this machine (loopback); set "
                "CFGCLONE_COLLECTOR_SCRAPE_ALLOW_LOOPBACK=1 to scrape local exporters"
            )
        return None

    def check_addresses(self, host: str, addresses: list[IpAddress]) -> None:
        """ForbiddenAddress naming the first address of ``host`` that may not be scraped."""
        for address in addresses:
            problem = self.problem(address)
            if problem is not None:
                raise ForbiddenAddress(problem if host == str(address) else f"{host}: {problem}")

    def check_url(self, url: str) -> None:
        """Resolve the URL's host now (blocking) and check every address it has."""
        host, port = _host_port(url)
        literal = _literal(host)
        if literal is not None:
            self.check_addresses(host, [literal])
            return
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return  # the fetch reports that the name does not resolve
        self.check_addresses(host, _addresses(infos))

    async def check_url_async(self, url: str) -> None:
        """:meth:`check_url` off the event loop; a name that does not resolve yet passes."""
        host, port = _host_port(url)
        literal = _literal(host)
        if literal is not None:
            self.check_addresses(host, [literal])
            return
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), _RESOLVE_SECONDS
            )
        except (OSError, TimeoutError):
            return
        self.check_addresses(host, _addresses(infos))


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or "", port or (443 if parts.scheme == "https" else 80)


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _addresses(infos: Sequence[tuple[Any, ...]]) -> list[IpAddress]:
    found: list[IpAddress] = []
    for info in infos:
        sockaddr = info[4]
        text = str(sockaddr[0]).split("%", 1)[0]
        try:
            found.append(ipaddress.ip_address(text))
        except ValueError:
            continue
    return found
