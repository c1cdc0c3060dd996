"""Egress rules: where the app's own outbound requests (webhooks) may connect.

An operator's admin registers a webhook URL, and the head node then sends to it; left
alone, that is a way to reach anything the head reaches (loopback, the Ray dashboard,
the cloud's metadata service at 169.254.169.254, private ranges), and the attempt
history would report what answered. So a URL's host is resolved and refused when any
of its addresses is loopback, private, link-local, multicast, reserved, unspecified or
one of the cluster's own nodes, unless the operator's allow-list (`egress_allow`:
host names, addresses or networks) names it.

The check's answer is what the request uses: `Target.url` carries the checked address
in place of the name (the Host header and TLS's server name keep the name), so a DNS
answer that changes between the check and the connection (rebinding) changes nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

RESOLVE_S = 3.0
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressRefused(ValueError):
    """The URL may not be reached; the message says why, naming no address it resolved."""


@dataclass(frozen=True)
class Target:
    url: str    # the URL with the checked address as its host
    host: str   # the name, for the Host header and TLS's server name
    netloc: str  # the name and the port as the URL gave them (the Host header)


def _address(text: str) -> Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone is not ours
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def internal(address: Address) -> bool:
    return (address.is_loopback or address.is_private or address.is_link_local
            or address.is_multicast or address.is_reserved or address.is_unspecified)


class EgressPolicy:
    def __init__(self, allow: Iterable[str] = (), own: Iterable[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                self.hosts.add(entry.strip().lower().rstrip("."))
        self.own = {_address(a) for a in own}

    def permits(self, host: str, address: Address) -> bool:
        if host.lower().rstrip(".") in self.hosts or any(address in n for n in self.networks):
            return True
        return not internal(address) and address not in self.own

    async def resolve(self, url: str) -> Target:
        """The URL pinned to a checked address; EgressRefused when it may not be reached."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise EgressRefused("not an http or https URL with a host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise EgressRefused("not a valid port") from None
        try:
            addresses = [_address(host)]
        except ValueError:
            addresses = await _lookup(host, port)
        refused = [a for a in addresses if not self.permits(host, a)]
        if refused:
            raise EgressRefused(f"{host} is an internal address (loopback, private, "
                                "link-local or the cluster's own); an operator can "
                                "allow it with COMMS_EGRESS_ALLOW")
        pinned = f"[{addresses[0]}]" if addresses[0].version == 6 else str(addresses[0])
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return Target(urlunsplit(parts._replace(netloc=f"{pinned}:{port}")), host, netloc)


async def _lookup(host: str, port: int) -> list[Address]:
    try:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM), RESOLVE_S)
    except (OSError, TimeoutError, UnicodeError):
        raise EgressRefused(f"{host} does not resolve") from None
    addresses = list(dict.fromkeys(_address(str(info[4][0])) for info in infos))
    if not addresses:
        raise EgressRefused(f"{host} does not resolve")
    return addresses
