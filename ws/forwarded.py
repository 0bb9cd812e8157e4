"""Who the client is behind reverse proxies: ``X-Forwarded-For``, RFC 7239 ``Forwarded``, trusted proxies.

A proxy in front of the server makes every TCP peer the proxy; the client's
address travels in a header each proxy appends to.  Anyone can send such a
header, so it is believed only from a peer listed in ``trusted_proxies``,
only in the one header those proxies write (``X-Forwarded-For`` or
``Forwarded``, the operator's choice), and only as far as the chain of
trusted proxies reaches:

1. The TCP peer is not a trusted proxy: it is the client, headers ignored.
2. Otherwise walk the chosen header's addresses from the right (the hop
   nearest to us) to the left, skipping trusted proxies: the first address
   that is not a trusted proxy is the client.  If every address is trusted,
   the leftmost one is the client.  No header: the peer.
3. A hop met on that walk that is not an IP address (garbage, ``unknown``,
   an obfuscated ``_name``, a missing ``for=``) ends the walk: the client is
   the last address reached (the peer, when it is the nearest hop).
4. The other header is never read: a proxy that writes one passes the other
   on as the client sent it, so reading it would let the client pick the
   answer (two that disagree used to mean the peer: the proxy's address).

What lies left of the client is never read, so whatever a client puts at
the front of the header (a line of its own before the proxy's, an
unterminated quote in ``Forwarded``) changes nothing: repeated lines are
read in order, and ``Forwarded`` is split into elements from the right.

Pure functions and one immutable class, no I/O (``ws.request`` uses them for
``Request.client_ip``; the server's connection limits count by that address).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, Mapping, Union

__all__ = [
    "FORWARDED_HEADERS", "TrustedProxies", "client_ip", "forwarded_header", "ip_group", "normalize_ip",
    "parse_forwarded", "parse_x_forwarded_for",
]

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


def _elements(value: str) -> list[str]:
    """``value`` split at the commas outside quoted strings, found from the right.

    From the right because the right end is the proxies': read from the
    left, a client's unterminated quote would swallow the elements its
    proxy appended after it.  Leftwards, a quote ends a quoted string unless
    an odd number of backslashes precede it (an escaped quote).
    """
    elements: list[str] = []
    end = len(value)
    quoted = False
    for pos in range(end - 1, -1, -1):
        char = value[pos]
        if char == '"':
            if not quoted:
                quoted = True
            else:
                first = pos
                while first and value[first - 1] == "\\":
                    first -= 1
                quoted = (pos - first) % 2 == 1  # escaped: still inside
        elif char == "," and not quoted:
            elements.append(value[pos + 1:end])
            end = pos
    elements.append(value[:end])
    elements.reverse()
    return elements


def _element_for(element: str) -> str | None:
    """The ``for=`` of one element as an IP; ``None`` if the element does not parse or has no single ``for=``."""
    found: list[str] = []
    pos, end = 0, len(element)
    while True:
        match = _PAIR.match(element, pos)
        if match is None:
            return None
        name, raw = match.group(1), match.group(2)
        if name.lower() == "for":
            found.append(re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw)
        pos = match.end()
        if pos == end:
            break
        if element[pos] != ";":
            return None
        pos += 1
    return _hop(found[0]) if len(found) == 1 else None


def parse_forwarded(value: str) -> list[str | None]:
    """The ``for=`` of each element of a ``Forwarded`` value, left to right; ``None`` where it is not an IP.

    An element that does not parse, has no ``for=`` or has two, or whose
    ``for=`` is ``unknown`` or an obfuscated ``_name``, is ``None``; one bad
    element spoils no other, and none spoils the elements to its right.
    """
    return [_element_for(element) for element in _elements(value)]


#: The headers a proxy names the client in, as ``forwarded_header`` takes them (any case).
FORWARDED_HEADERS = ("X-Forwarded-For", "Forwarded")
_PARSERS = {"x-forwarded-for": parse_x_forwarded_for, "forwarded": parse_forwarded}


def forwarded_header(name: object) -> str:
    """``name`` (any case) as one of :data:`FORWARDED_HEADERS`; else ``ValueError`` (``TypeError``: not a string)."""
    if not isinstance(name, str):
        raise TypeError(f"forwarded_header must be a header name as a string, got {type(name).__name__}")
    for header in FORWARDED_HEADERS:
        if name.strip().lower() == header.lower():
            return header
    raise ValueError(
        f"forwarded_header must be 'X-Forwarded-For' (nginx, Caddy, HAProxy, cloud balancers) or 'Forwarded' "
        f"(RFC 7239 proxies), the one header your proxies write, got {name!r}"
    )


def _walk(peer_ip: str | None, hops: list[str | None], trusted: TrustedProxies) -> str | None:
    """Right to left past trusted proxies: the first untrusted hop, else the last address reached."""
    client = peer_ip
    for hop in reversed(hops):
        if hop is None:
            return client  # garbage: believe nothing further left
        client = hop
        if hop not in trusted:
            return hop
    return client


def client_ip(
    peer_ip: str | None, headers: Mapping[str, str], trusted: TrustedProxies | None, header: str = "X-Forwarded-For"
) -> str | None:
    """The client's IP address for a request from ``peer_ip`` (normalized) with ``headers`` (lower-case names).

    Only ``header`` (see :func:`forwarded_header`) is read, repeated lines
    joined in order; the algorithm is the module's (see its docstring).
    ``trusted`` ``None``: no proxy is trusted and the peer is the client.
    """
    parse = _PARSERS[forwarded_header(header).lower()]
    if trusted is None or not trusted.trusts_peer(peer_ip):
        return peer_ip
    value = headers.get(header.strip().lower())
    if value is None:
        return peer_ip
    return _walk(peer_ip, parse(value), trusted)
