"""Which pages may open a WebSocket: ``allowed_origins``, checked once when set, matched per handshake.

A browser sends a site's cookies with a WebSocket handshake whatever page
opens it, and says which page that is in the ``Origin`` header (RFC 6454,
RFC 6455 section 10.2): the only thing that tells the site's own page from
evil.example's.  :class:`AllowedOrigins` is the server's list of pages it
trusts.  An entry is an exact origin (``'https://app.example.com'``), a
pattern whose first label is a wildcard (``'https://*.example.com'``: any
subdomain, not example.com itself), ``None`` (clients that send no
``Origin``: not a browser) or ``'null'`` (sandboxed iframes, ``file:``
pages), literally.

Origins compare as RFC 6454 tuples: scheme and host without regard to case,
a default port equal to no port (``https://x`` is ``https://x:443``).  A
malformed entry is a ``ValueError`` naming the fix when the list is built,
so a typo never becomes a check that refuses everyone (or lets anyone in).
Pure functions: no I/O, no asyncio.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, NamedTuple, Union

__all__ = ["AllowedOrigins", "Origin", "OriginEntry", "page_origins", "parse_origin"]

#: An ``allowed_origins`` entry: an origin, a ``*.`` pattern, ``'null'``, or ``None`` (no ``Origin`` header).
OriginEntry = Union[str, None]

#: The ports an origin leaves out (RFC 6454 section 6.1 omits the scheme's default port).
DEFAULT_PORTS = {"http": 80, "https": 443}

#: What a page opening a WebSocket is served over; its WebSocket URL's scheme is not an origin.
_WEBSOCKET_SCHEMES = {"ws": "http", "wss": "https"}

_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
_LABEL = re.compile(r"(?!-)[a-z0-9_\-]{1,63}(?<!-)")
_PORT = re.compile(r"[0-9]{1,5}")


class Origin(NamedTuple):
    """An origin as RFC 6454's tuple: lower-case ``scheme`` and ``host``, the port (default filled in)."""

    scheme: str
    host: str  # an IPv6 address keeps its brackets: '[::1]'
    port: int | None  # None: a scheme without a default port, given without one

    def __str__(self) -> str:
        """The serialization a browser sends (the default port left out)."""
        if self.port is None or DEFAULT_PORTS.get(self.scheme) == self.port:
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"


class _Malformed(ValueError):
    """Why a text is not an origin (internal: an entry's error names it; a header's is just refused)."""


def _split(text: str, *, wildcard: bool) -> tuple[Origin, bool]:
    """``text`` as an :class:`Origin` and whether its host starts with ``*.``; :class:`_Malformed` otherwise."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise _Malformed("has no scheme")
    scheme = scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        raise _Malformed(f"has no valid scheme ({scheme!r})")
    for char in "/?#":
        if char in rest:
            raise _Malformed("has a path" if char == "/" else "has a query or fragment")
    if "@" in rest:
        raise _Malformed("has user information ('user@')")
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise _Malformed("has an unclosed '[' (an IPv6 address is written '[::1]')")
        host, after = rest[: end + 1], rest[end + 1 :]
        if after and not after.startswith(":"):
            raise _Malformed(f"has {after!r} after its IPv6 address")
        port_text = after[1:] if after else None
    elif "[" in rest or "]" in rest:
        raise _Malformed("has a bracket that does not enclose its host (an IPv6 address is written '[::1]')")
    else:
        host, colon, port_text_ = rest.rpartition(":") if ":" in rest else (rest, "", "")
        port_text = port_text_ if colon else None
    port = DEFAULT_PORTS.get(scheme)
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or not 0 < int(port_text) <= 65535:
            raise _Malformed(f"has no valid port ({port_text!r}: 1-65535)")
        port = int(port_text)
    pattern = False
    if "*" in host:
        if not wildcard:
            raise _Malformed("has a wildcard")
        if not host.startswith("*.") or "*" in host[2:]:
            raise _Malformed("has a wildcard that is not the whole first label")
        pattern, host = True, host[2:]
    return Origin(scheme, _host(host, pattern), port), pattern


def _host(host: str, pattern: bool) -> str:
    """``host`` in the form a browser serializes it: lower case, punycode, IP addresses canonical."""
    if not host:
        raise _Malformed("has no host")
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _Malformed(f"has no valid IPv6 address ({host!r})") from None
        if pattern:
            raise _Malformed("puts a wildcard before an IP address")
        return f"[{address.compressed}]"
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _Malformed(f"has no valid host name ({host!r})") from None
    host = host.lower()
    if re.fullmatch(r"[0-9.]+", host):
        try:
            address4 = ipaddress.IPv4Address(host)
        except ValueError:
            raise _Malformed(f"has no valid IPv4 address ({host!r})") from None
        if pattern:
            raise _Malformed("puts a wildcard before an IP address")
        return str(address4)
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _Malformed(f"has no valid host name ({host!r})")
    if pattern and len(labels) < 2:
        raise _Malformed("puts a wildcard over a whole top-level domain")
    return host


def parse_origin(value: str) -> Origin | None:
    """An ``Origin`` header value as an :class:`Origin`; ``None`` for ``'null'`` or anything that is not one."""
    try:
        return _split(value, wildcard=False)[0]
    except _Malformed:
        return None


def _entry_error(entry: str, why: str) -> ValueError:
    """The ``ValueError`` for a malformed entry: what is wrong and what to write instead."""
    text = entry.strip()
    if text in ("*", "*.*") or text.startswith("*://") or text.endswith("://*"):
        return ValueError(
            f"allowed_origins: {entry!r} would let every page in, which is no check: leave allowed_origins unset "
            "(None) for no check, or list the origins ('https://app.example.com', 'https://*.example.com')"
        )
    if "://" not in text:
        fix = f"an origin starts with its scheme: write 'https://{text.strip('/')}' (or http://)"
    else:
        scheme, _, rest = text.partition("://")
        bare = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if why in ("has a path", "has a query or fragment") and bare:
            fix = f"an origin is scheme://host[:port], nothing after: write '{scheme}://{bare}'"
        elif "wildcard" in why:
            fix = "a wildcard stands only for the whole first label: 'https://*.example.com' (list the domain itself too if it serves pages)"
        elif "user information" in why:
            fix = f"an origin has no user: write '{scheme}://{bare.rpartition('@')[2]}'"
        else:
            fix = "an origin is scheme://host[:port], as the browser's Origin header shows it: 'https://app.example.com', 'http://127.0.0.1:8080'"
    return ValueError(f"allowed_origins: {entry!r} {why}; {fix}")


class AllowedOrigins:
    """An ``allowed_origins`` list, checked and compiled: :meth:`allows` answers per handshake.

    ``entries`` keeps the list as given.  Exact origins are kept as a set
    of their browser serializations (a browser's ``Origin`` is found with one
    lookup) and of their tuples (any other spelling of the same origin).
    """

    __slots__ = ("entries", "_serialized", "_exact", "_patterns", "_absent", "_null")

    def __init__(self, entries: Iterable[OriginEntry]) -> None:
        if isinstance(entries, (str, bytes)):
            raise TypeError("allowed_origins is a list of origins, not one string: ['https://app.example.com']")
        self.entries: tuple[OriginEntry, ...] = tuple(entries)
        self._exact: set[Origin] = set()
        self._patterns: list[tuple[str, int | None, str]] = []  # scheme, port, '.domain' the subdomains end with
        self._absent = False
        self._null = False
        for entry in self.entries:
            if entry is None:
                self._absent = True
                continue
            if not isinstance(entry, str):
                raise TypeError(
                    f"allowed_origins entries are strings or None, got {type(entry).__name__} ({entry!r})"
                )
            if entry == "null":
                self._null = True
                continue
            if entry != entry.strip():
                raise ValueError(f"allowed_origins: {entry!r} has spaces around it; write {entry.strip()!r}")
            try:
                origin, pattern = _split(entry, wildcard=True)
            except _Malformed as exc:
                raise _entry_error(entry, str(exc)) from None
            if origin.scheme in _WEBSOCKET_SCHEMES:
                page = _WEBSOCKET_SCHEMES[origin.scheme]
                raise ValueError(
                    f"allowed_origins: {entry!r} is a WebSocket URL; Origin names the page that opens the socket: "
                    f"write {page + entry[len(origin.scheme):]!r}"
                )
            if pattern:
                self._patterns.append((origin.scheme, origin.port, "." + origin.host))
            else:
                self._exact.add(origin)
        self._serialized = frozenset(str(origin) for origin in self._exact)

    @classmethod
    def of(cls, value: "AllowedOrigins | Iterable[OriginEntry] | str | None") -> "AllowedOrigins | None":
        """The option as given to a server: ``None`` (no check), one origin, a list, or compiled already."""
        if value is None or isinstance(value, AllowedOrigins):
            return value
        if isinstance(value, str):
            return cls((value,))  # one origin, not its letters
        return cls(value)

    def allows(self, origin: str | None) -> bool:
        """Whether a handshake whose ``Origin`` header is ``origin`` (``None``: absent) may go on."""
        if origin is None:
            return self._absent
        if origin in self._serialized:
            return True
        if origin == "null":
            return self._null
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if parsed in self._exact:
            return True
        for scheme, port, suffix in self._patterns:
            if parsed.scheme == scheme and parsed.port == port and parsed.host.endswith(suffix):
                return True
        return False

    def __repr__(self) -> str:
        return f"AllowedOrigins({list(self.entries)!r})"


def page_origins(host: str, port: int, *, secure: bool = False) -> list[str]:
    """The origins of the pages a server listening on ``host``:``port`` serves itself.

    ``http://HOST:PORT`` (https with ``secure``, the default port left
    out); a loopback or wildcard address (``127.0.0.1``, ``::1``,
    ``localhost``, ``0.0.0.0``, ``::``) also under the names a browser on
    this machine reaches it by: ``localhost`` and ``127.0.0.1`` (``[::1]``
    where it listens on IPv6).  Pages reached by another address (a LAN
    IP, a DNS name) are not among them: list those yourself.
    """
    scheme = "https" if secure else "http"
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    own = f"[{name}]" if ":" in name else name
    if name in ("0.0.0.0", "127.0.0.1"):
        names = [own, "127.0.0.1", "localhost"]
    elif name == "::1":
        names = [own, "localhost"]
    elif name in ("::", "localhost"):
        names = [own, "localhost", "127.0.0.1", "[::1]"]
    else:
        names = [own]
    names = list(dict.fromkeys(names))  # each once, the listening address first
    return [str(Origin(scheme, _host(item, False), port)) for item in names]
