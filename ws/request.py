"""The request helper handed to ``'connection'`` listeners and ``verify_client``.

It is a small, read-only view of one HTTP request (similar to Node's
``IncomingMessage`` and JSH's request helper), built once by the HTTP layer
from what h11 parsed.  It owns no I/O.
"""

from __future__ import annotations

import types
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

from .forwarded import TrustedProxies, client_ip as _client_ip, normalize_ip

__all__ = ["Request", "RequestSocket"]


def _format_address(address: Any) -> str | None:
    """``('127.0.0.1', 5000)`` -> ``'127.0.0.1'``; unix paths stay as they are."""
    if address is None:
        return None
    if isinstance(address, (tuple, list)):
        return str(address[0]) if address else None
    return str(address) or None


class RequestSocket:
    """What ``request.socket`` exposes: the peer's address, as in Node."""

    __slots__ = ("remote_address", "remote_port", "encrypted")

    def __init__(self, peername: Any, encrypted: bool = False) -> None:
        self.remote_address = _format_address(peername)
        self.remote_port: int | None = (
            peername[1] if isinstance(peername, (tuple, list)) and len(peername) > 1 else None
        )
        self.encrypted = encrypted

    # Node's spellings (read-only views of the slots).

    @property
    def remoteAddress(self) -> str | None:
        return self.remote_address

    @property
    def remotePort(self) -> int | None:
        return self.remote_port


class Request:
    """One HTTP request: method, target, headers, body and the peer.

    ``headers`` is a dict with lower-cased names where repeated headers are
    joined with ``", "`` (RFC 9110, section 5.3), except ``cookie``
    which is joined with ``"; "`` as Node does; ``raw_headers`` keeps the
    wire order and spelling as a list of ``(name, value)`` pairs.
    """

    # Worked out on first use (most requests never ask), or set by resolve_client_ip().
    _client_ip: str | None = None
    _client_ip_known = False
    #: Every header value is visible ASCII with inner spaces and tabs at most: the HTTP layer's lean
    #: path checked them (the handshake then does not again).  Internal.
    _plain_values = False
    # Made on first use (most handshakes never ask): ``socket`` and ``state``.
    _socket: RequestSocket | None = None
    _state: types.SimpleNamespace | None = None

    @property
    def socket(self) -> RequestSocket:
        """The peer, as Node's ``request.socket``: ``remote_address``, ``remote_port``, ``encrypted``."""
        sock = self._socket
        if sock is None:
            sock = self._socket = RequestSocket(self._peername, self.secure)
        return sock

    @socket.setter
    def socket(self, value: RequestSocket) -> None:
        self._socket = value

    @property
    def state(self) -> types.SimpleNamespace:
        """A namespace of the application's own for this request (``request.state.user = ...``)."""
        state = self._state
        if state is None:
            state = self._state = types.SimpleNamespace()
        return state

    @state.setter
    def state(self, value: types.SimpleNamespace) -> None:
        self._state = value

    def __init__(
        self,
        method: str,
        target: str,
        raw_headers: Iterable[tuple[str, str]],
        *,
        http_version: str = "1.1",
        peername: Any = None,
        secure: bool = False,
        body: bytes = b"",
        complete: bool = True,
        _fields: dict[str, str] | None = None,
    ) -> None:
        """``_fields``: ``headers`` as the caller built them already from ``raw_headers``, no name repeated."""
        self.method = method.upper()
        self.url = target
        self.request_uri = target
        self.raw_headers: list[tuple[str, str]] = list(raw_headers)
        self.http_version = http_version
        self.secure = secure
        self.body = body
        self.complete = complete
        self._peername = peername
        self.remote_address = _format_address(peername)
        headers = {name.lower(): value for name, value in self.raw_headers} if _fields is None else _fields
        if len(headers) != len(self.raw_headers):  # a repeated header: joined (the comprehension kept the last)
            headers = {}
            for name, value in self.raw_headers:
                key = name.lower()
                if key in headers:
                    sep = "; " if key == "cookie" else ", "
                    headers[key] = headers[key] + sep + value
                else:
                    headers[key] = value
        self.headers = headers
        if target[:1] == "/" and target[1:2] != "/" and "?" not in target and "#" not in target:
            self.path, self.query_string = target, ""  # the common case, without urlsplit
        else:
            split = urlsplit(target)
            self.path = split.path or "/"
            self.query_string = split.query
        self._query: dict[str, list[str]] | None = None

    @property
    def client_ip(self) -> str | None:
        """The client's IP address: the peer's, or the one trusted proxies forwarded (``resolve_client_ip``).

        Canonical text (an IPv4-mapped IPv6 address as IPv4); ``None`` for a
        peer without one (a unix socket).  ``remote_address`` stays the TCP peer.
        """
        if not self._client_ip_known:
            self._client_ip = self._peer_ip()
            self._client_ip_known = True
        return self._client_ip

    def resolve_client_ip(
        self, trusted_proxies: TrustedProxies | Iterable[str], forwarded_header: str = "X-Forwarded-For"
    ) -> str | None:
        """Set ``client_ip`` from ``forwarded_header``, believed only from ``trusted_proxies``; returns it.

        ``forwarded_header`` is the one header the proxies write
        (``'X-Forwarded-For'`` or ``'Forwarded'``); the other is the client's
        to write and is never read.  A ``WebSocketServer(trusted_proxies=...)``
        calls it before its limits and ``verify_client``; an HTTP handler
        behind a proxy may call it too.  The algorithm is in ``ws.forwarded``
        and docs/security.md.
        """
        trusted = trusted_proxies if isinstance(trusted_proxies, TrustedProxies) else TrustedProxies(trusted_proxies)
        self._client_ip = _client_ip(self._peer_ip(), self.headers, trusted, forwarded_header)
        self._client_ip_known = True
        return self._client_ip

    def _peer_ip(self) -> str | None:
        peer = self.remote_address
        return normalize_ip(peer) if peer else None

    @property
    def host(self) -> str | None:
        """The ``Host`` header, as the client sent it."""
        return self.headers.get("host")

    @property
    def params(self) -> dict[str, list[str]]:
        """All query parameters, each with every value in order."""
        if self._query is None:
            self._query = parse_qs(self.query_string, keep_blank_values=True)
        return self._query

    def query(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or ``None``."""
        values = self.params.get(name)
        return values[0] if values else None

    def query_all(self, name: str) -> list[str]:
        """Every value of query parameter ``name`` (empty list when absent)."""
        return list(self.params.get(name, ()))

    def get_header(self, name: str) -> str | None:
        """Header ``name`` (any case), repeated values joined; ``None`` when absent."""
        return self.headers.get(name.lower())

    def has_header(self, name: str) -> bool:
        """Whether header ``name`` (any case) was sent."""
        return name.lower() in self.headers

    def text(self, encoding: str = "utf-8") -> str:
        """The request body decoded as text."""
        return self.body.decode(encoding)

    def json(self) -> Any:
        """The request body parsed as JSON."""
        import json

        return json.loads(self.body or b"null")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url} from {self.remote_address}>"

    # -- Node's and JSH's spellings ---------------------------------------------------------

    getHeader = get_header
    hasHeader = has_header
    queryAll = query_all

    @property
    def rawHeaders(self) -> list[tuple[str, str]]:
        return self.raw_headers

    @property
    def requestUri(self) -> str:
        return self.request_uri

    @property
    def httpVersion(self) -> str:
        return self.http_version

    @property
    def remoteAddress(self) -> str | None:
        return self.remote_address

    @property
    def clientIp(self) -> str | None:
        return self.client_ip

    resolveClientIp = resolve_client_ip
