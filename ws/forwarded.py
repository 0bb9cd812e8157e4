"""Who the client is behind reverse proxies: ``X-Forwarded-For``, RFC 7239 ``Forwarded``, trusted proxies.

A proxy in front of the server makes every TCP peer the proxy; the client's
address travels in a header each proxy appends to.  Anyone can send such a
header, so it is believed only from a peer listed in ``trusted_proxies``,
and only as far as the chain of trusted proxies reaches:

1. The TCP peer is not a trusted proxy: it is the client, headers ignored.
2. Otherwise walk the header's addresses from the right (the hop nearest to
   us) to the left, skipping trusted proxies: the first address that is not
   a trusted proxy is the client.  If every address is trusted, the leftmost
   one is the client.
3. A hop met on that walk that is not an IP address (garbage, ``unknown``,
   an obfuscated ``_name``, a missing ``for=``) ends the walk: the client is
   the TCP peer.  What lies left of the client is never read, so whatever a
   client puts at the front of its own header changes nothing.
4. With both headers present, they must name the same client, else the TCP
   peer is taken: a proxy that sets one header usually passes the other on
   untouched, and that one is the client's to write.

Pure functions and one immutable class, no I/O (``ws.request`` uses them for
``Request.client_ip``; the server's connection limits count by that address).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, Mapping, Union

__all__ = ["TrustedProxies", "client_ip", "ip_group", "normalize_ip", "parse_forwarded", "parse_x_forwarded_for"]

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

#: ``trusted_proxies`` entry that trusts peers without an IP address (a unix socket, an ASGI scope without client).
UNIX = "unix"


def normalize_ip(text: str) -> str | None:
    """``text`` as a canonical IP address (IPv4-mapped IPv6 as IPv4), or ``None`` if it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def ip_group(ip: str, ipv6_prefix: int = 128) -> str:
    """The key ``ip`` is counted under: itself, or for IPv6 its ``/ipv6_prefix`` network (``'2001:db8::/64'``)."""
    if ipv6_prefix >= 128 or ":" not in ip:
        return ip
    try:
        return str(ipaddress.IPv6Network((ip.partition("%")[0], ipv6_prefix), strict=False))
    except ValueError:
        return ip


def _network(entry: str) -> _Network:
    network = ipaddress.ip_network(entry.strip(), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


class TrustedProxies:
    """The proxies whose forwarding headers are believed: IP addresses and CIDR networks.

    ``TrustedProxies(['127.0.0.1', '10.0.0.0/8', '::1'])``; the entry
    ``'unix'`` trusts peers that have no IP address (a unix socket).  An
    entry that is neither raises ``ValueError`` here, when the server is built.
    """

    __slots__ = ("networks", "unix", "_exact")

    def __init__(self, entries: Iterable[str] | str) -> None:
        if isinstance(entries, str):
            entries = [entries]  # one entry, not its characters
        networks: list[_Network] = []
        unix = False
        for entry in entries:
            if not isinstance(entry, str):
                raise TypeError(f"trusted_proxies entries are IP addresses or networks as strings, got {entry!r}")
            if entry.strip().lower() == UNIX:
                unix = True
                continue
            try:
                networks.append(_network(entry))
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network ('10.0.0.0/8')") from None
        self.networks: tuple[_Network, ...] = tuple(networks)
        self.unix = unix
        # Single addresses answer from a set: the common list is a few proxies.
        self._exact = frozenset(str(n.network_address) for n in networks if n.num_addresses == 1)

    def __contains__(self, ip: object) -> bool:
        """Whether ``ip`` (a normalized address, see :func:`normalize_ip`) is a trusted proxy."""
        if not isinstance(ip, str):
            return False
        if ip in self._exact:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def trusts_peer(self, peer_ip: str | None) -> bool:
        """Whether a TCP peer (its normalized IP; ``None``: it has none) is a trusted proxy."""
        return self.unix if peer_ip is None else peer_ip in self

    def __repr__(self) -> str:
        entries = [str(n) for n in self.networks] + ([UNIX] if self.unix else [])
        return f"TrustedProxies({entries!r})"


def _hop(text: str) -> str | None:
    """One hop of a chain (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]``, ``[::1]:80``, ``::1``) as an IP, else ``None``."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1:]
        if end < 0 or (rest and not _is_port(rest)):
            return None
        return normalize_ip(text[1:end]) if ":" in text[1:end] else None
    if text.count(":") == 1:  # IPv4 with a port
        host, _, port = text.partition(":")
        return normalize_ip(host) if _is_port(":" + port) and "." in host else None
    return normalize_ip(text)


def _is_port(text: str) -> bool:
    return len(text) > 1 and text[0] == ":" and text[1:].isascii() and text[1:].isdigit() and len(text) <= 6


def parse_x_forwarded_for(value: str) -> list[str | None]:
    """The hops of an ``X-Forwarded-For`` value, left (furthest) to right; ``None`` for one that is no IP."""
    return [_hop(part) for part in value.split(",")]


# RFC 7239 section 4: forwarded-pair = token "=" ( token / quoted-string ), pairs joined by ";", elements by ",".
_PAIR = re.compile(r"""[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+|"(?:[^"\\]|\\.)*")[ \t]*""")


def parse_forwarded(value: str) -> list[str | None]:
    """The ``for=`` of each element of a ``Forwarded`` value, left to right; ``None`` where it is not an IP.

    An element that does not parse, has no ``for=`` or has two, or whose
    ``for=`` is ``unknown`` or an obfuscated ``_name``, is ``None``; parsing
    goes on at the next comma, so one bad element spoils no other.
    """
    hops: list[str | None] = []
    pos, end = 0, len(value)
    while pos <= end:
        found: list[str] = []
        valid = True
        while True:
            match = _PAIR.match(value, pos)
            if match is None:
                valid = False
                break
            name, raw = match.group(1), match.group(2)
            if name.lower() == "for":
                found.append(re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw)
            pos = match.end()
            if pos < end and value[pos] == ";":
                pos += 1
                continue
            if pos < end and value[pos] != ",":
                valid = False
            break
        if not valid:
            comma = value.find(",", pos)
            pos = end if comma < 0 else comma
        hops.append(_hop(found[0]) if valid and len(found) == 1 else None)
        pos += 1  # past the comma (or the end)
    return hops


def _walk(peer_ip: str | None, hops: list[str | None], trusted: TrustedProxies) -> str | None:
    """Right to left past trusted proxies: the first untrusted hop, the leftmost if all are trusted, the peer on garbage."""
    client = peer_ip
    for hop in reversed(hops):
        if hop is None:
            return peer_ip
        client = hop
        if hop not in trusted:
            return hop
    return client


def client_ip(peer_ip: str | None, headers: Mapping[str, str], trusted: TrustedProxies | None) -> str | None:
    """The client's IP address for a request from ``peer_ip`` (normalized) with ``headers`` (lower-case names).

    The algorithm is the module's (see its docstring); ``trusted`` ``None``:
    no proxy is trusted and the peer is the client.
    """
    if trusted is None or not trusted.trusts_peer(peer_ip):
        return peer_ip
    found: set[str | None] = set()
    xff = headers.get("x-forwarded-for")
    if xff is not None:
        found.add(_walk(peer_ip, parse_x_forwarded_for(xff), trusted))
    forwarded = headers.get("forwarded")
    if forwarded is not None:
        found.add(_walk(peer_ip, parse_forwarded(forwarded), trusted))
    if len(found) != 1:
        return peer_ip  # no header, or two that disagree
    return found.pop()
