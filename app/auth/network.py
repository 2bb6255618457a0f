"""Who is calling: the client address behind trusted proxies, and IP allow-lists (pure).

    networks = parse_networks("203.0.113.7, 10.0.0.0/8")   # ValueError names a bad entry
    client = client_address("10.0.0.2", ["198.51.100.4, 10.0.0.1"], trusted=networks)
    is_allowed(client, networks)

The client is the TCP peer, unless the peer is a trusted proxy. Then `X-Forwarded-For`
is read from the right (each proxy appends the address it received the request from),
skipping trusted proxies, and the first other entry is the client. Entries to its left
were written by the client itself and are never believed. An entry that is not an IP
address ends the walk and is the client as written, so it matches no allow-list. Without
trusted proxies the header is ignored: anyone can send it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

IPNetwork = IPv4Network | IPv6Network
IPAddress = IPv4Address | IPv6Address
UNKNOWN_CLIENT = "unknown"
_MAX_HOPS = 32  # a longer header is read only this far from the right


@lru_cache(maxsize=32)
def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated IPs and CIDR networks; empty text is the empty tuple."""
    networks: list[IPNetwork] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an IP address or a CIDR network") from exc
    return tuple(networks)


def parse_address(text: str) -> IPAddress | None:
    """An address as peers and proxies write it (``[v6]:port`` and ``v4:port`` too)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], *, trusted: tuple[IPNetwork, ...]
) -> str:
    """The client's address: the peer, or the nearest untrusted `X-Forwarded-For` hop."""
    if peer is None:
        return UNKNOWN_CLIENT
    peer_address = parse_address(peer)
    if peer_address is None:
        return peer
    if not trusted or not _within(peer_address, trusted):
        return str(peer_address)
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    hops = [hop for hop in hops if hop][-_MAX_HOPS:]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return hop[:64]
        if not _within(address, trusted):
            return str(address)
    # Every hop is a trusted proxy: the leftmost one is as close to the client as we get.
    leftmost = parse_address(hops[0]) if hops else None
    return str(leftmost) if leftmost is not None else str(peer_address)


def is_allowed(client: str, networks: tuple[IPNetwork, ...]) -> bool:
    """True when ``networks`` is empty (no allow-list) or holds the client's address."""
    if not networks:
        return True
    address = parse_address(client)
    return address is not None and _within(address, networks)
