"""The caller's IP, believing `X-Forwarded-For` only from configured trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


# The longest text form of an address (IPv6 with an embedded IPv4 and a zone) is well
# under this; a longer hop is not an address, and never takes room in the cache.
_MAX_ADDRESS_LENGTH = 64


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    return len(address) <= _MAX_ADDRESS_LENGTH and _is_trusted_address(address, trusted)


@lru_cache(maxsize=4096)
def _is_trusted_address(address: str, trusted: tuple[Network, ...]) -> bool:
    """Whether `address` is one of the trusted proxies (a handful of addresses, cached)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _forwarded_for(scope: dict[str, Any]) -> str:
    """Every `X-Forwarded-For` line, in order, as one list (RFC 9110 §5.3).

    A proxy may add a line of its own rather than append to the client's: reading
    only the first line would take the hops the client wrote for the proxy's.
    """
    return ",".join(
        value.decode("latin-1")
        for key, value in scope.get("headers", ())
        if key == b"x-forwarded-for"
    )


def client_ip(scope: dict[str, Any], trusted: tuple[Network, ...]) -> str:
    """Walk `X-Forwarded-For` from the right while hops are trusted proxies.

    The first untrusted hop is the client. A peer that is not a trusted proxy
    is the client itself, whatever headers it sends.
    """
    peer = (scope.get("client") or ("unknown", 0))[0]
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = _forwarded_for(scope)
    if not forwarded:
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    candidate = peer
    for hop in reversed(hops):
        candidate = hop
        if not _is_trusted(hop, trusted):
            break
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer
