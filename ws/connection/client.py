"""The client half of ``WebSocket``: URL checks, connecting, the opening handshake.

Kept apart from ``websocket.py`` so that the connection logic (TCP, TLS,
proxies, redirects) can grow without touching the message hot path.
``websockets``' ``ClientProtocol`` builds the request and checks the answer.
"""

from __future__ import annotations

import asyncio
import errno
import http
import os
import re
import socket
import ssl as _ssl
from typing import TYPE_CHECKING, Any, Iterable, Mapping
from urllib.parse import urljoin, urlsplit

import h11
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus, InvalidURI
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.http11 import Response
from websockets.uri import WebSocketURI, parse_uri

from ..protocol import _websockets as _protocol
from ..protocol.handshake import DEFAULT_MAX_PAYLOAD_DEFLATE
from . import proxy as _proxy
from .keepalive import DEFAULT_MESSAGE_TIMEOUT, Heartbeat, check_message_timeout
from ..events import ReadyState
from ..exceptions import ConnectError, HandshakeError, describe
from .._runtime.compat import normalize_options
from .._runtime.net import check_port, format_host_port

if TYPE_CHECKING:  # pragma: no cover
    from .websocket import WebSocket

__all__ = ["parse_url", "parse_protocols", "client_arguments", "ClientConfig"]

DEFAULT_HANDSHAKE_TIMEOUT = 30.0

#: The largest response head (status line and headers) the client reads, as
#: Node's HTTP parser and a proxy's answer to CONNECT (``proxy.py``).
MAX_RESPONSE_HEAD = _proxy.MAX_RESPONSE_HEAD
#: The most of a refusal's body (a non-101 answer) the client reads and hands
#: to ``'unexpected-response'``; the connection is dropped past it.
MAX_RESPONSE_BODY = 64 * 1024

CLIENT_OPTIONS = frozenset(
    {
        "headers",
        "origin",
        "handshake_timeout",
        "max_payload",
        "max_fragments",
        "per_message_deflate",
        "ping_interval",
        "ping_timeout",
        "close_timeout",
        "ssl",
        "proxy",
        "follow_redirects",
        "max_redirects",
        "socket_path",
        "max_buffered_amount",
        "high_water_mark",
        "low_water_mark",
        "message_timeout",
        "rate_limit",
        "byte_rate_limit",
        "rate_limit_action",
    }
)

#: Node ``ws`` client options that ``ws`` spells differently or has no use
#: for: what to write instead, for the ``TypeError`` of an unknown option.
NODE_OPTION_HINTS: dict[str, str] = {
    **dict.fromkeys(
        ("rejectUnauthorized", "ca", "cert", "key", "pfx", "passphrase", "checkServerIdentity", "servername"),
        "TLS settings go in one ssl.SSLContext: ssl=context (docs/interop.md)",
    ),
    "agent": "an HTTP proxy is proxy='http://host:port' (docs/interop.md)",
    "protocolVersion": "version 13 (RFC 6455) is the only one: leave it out",
    "timeout": "the opening handshake's limit is handshake_timeout (seconds)",
    "auth": "put the credentials in the URL ('ws://user:pass@host/') or in headers={'Authorization': ...}",
    "autoPong": "pings are always answered",
    "protocols": "subprotocols are the second argument: WebSocket(url, ['chat'], options)",
}

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def parse_url(url: Any) -> WebSocketURI:
    """Check ``url`` at once, as browsers and Node do: ``TypeError`` / ``ValueError``."""
    if not isinstance(url, str):
        raise TypeError(f"URL must be a string, got {type(url).__name__}")
    split = urlsplit(url)
    scheme = split.scheme.lower()
    if scheme in ("http", "https"):
        url = ("ws" if scheme == "http" else "wss") + url[len(split.scheme):]
    elif scheme not in ("ws", "wss"):
        raise ValueError(
            f"Invalid URL {url!r}: the scheme must be 'ws', 'wss', 'http' or 'https', got {split.scheme!r}"
            if split.scheme
            else f"Invalid URL {url!r}: no scheme"
        )
    if split.fragment:
        raise ValueError(f"Invalid URL {url!r}: the URL contains a fragment identifier")
    try:
        split.port
    except ValueError:  # urllib's bare "Port out of range 0-65535": say which port, in which URL
        host_port = split.netloc.rpartition("@")[2]
        check_port(host_port.rpartition("]")[2].rpartition(":")[2], repr(url))
        raise
    try:
        return parse_uri(url)
    except InvalidURI as exc:
        raise ValueError(f"Invalid URL {url!r}: {exc}") from None


def parse_protocols(protocols: str | Iterable[str] | None) -> list[str]:
    """Subprotocols to offer, in order; each an HTTP token, no duplicates."""
    if protocols is None:
        return []
    if isinstance(protocols, Mapping):
        raise TypeError(_options_as_protocols(protocols))
    items = [protocols] if isinstance(protocols, str) else list(protocols)
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Mapping):
            raise TypeError(_options_as_protocols(item))
        if not isinstance(item, str) or not _TOKEN.match(item) or item in seen:
            raise ValueError(f"An invalid or duplicated subprotocol was specified: {item!r}")
        seen.add(item)
    return items


def _options_as_protocols(options: Mapping[Any, Any]) -> str:
    return (
        f"subprotocols are names (a str or a list of str), not a dict ({sorted(map(str, options))}): options go "
        "second when there are no protocols, WebSocket(url, {...}), or third, WebSocket(url, protocols, {...}), "
        "or as keywords"
    )


def client_arguments(protocols: Any, options: Any, keywords: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Node's argument shapes: ``(url, options)`` and ``(url, protocols, options)``, plus keywords.

    As Node's ``ws`` does, a dict in the protocols position is the options
    (``new WebSocket(url, {headers})``).  An options dict and keywords
    merge; a name given in both (in either spelling) is a ``TypeError``.
    Returns the protocols and the options, snake_case.
    """
    if isinstance(protocols, Mapping):
        if options is not None:
            raise TypeError(
                "WebSocket(url, options, options): the second argument is the protocols (a str or a list of str) "
                "when a third, the options, follows"
            )
        protocols, options = None, protocols
    if options is None:
        return protocols, normalize_options(keywords)
    if not isinstance(options, Mapping):
        raise TypeError(
            f"WebSocket options must be a dict, got {type(options).__name__}: WebSocket(url, protocols, {{...}})"
        )
    merged = normalize_options(dict(options))
    if keywords:
        extra = normalize_options(keywords)
        twice = sorted(set(merged) & set(extra))
        if twice:
            raise TypeError(f"option(s) given both in the options dict and as keywords: {', '.join(twice)}")
        merged.update(extra)
    return protocols, merged


def unknown_options_message(kind: str, unknown: Iterable[str], hints: Mapping[str, str]) -> str:
    """``unknown WebSocket option(s): ...``, each with what to write instead when we know it."""
    described = [f"{name} ({hints[name]})" if name in hints else name for name in sorted(unknown)]
    return f"unknown {kind} option(s): {', '.join(described)}"



def status_text(status: int) -> str:
    """``401 Unauthorized``: a status with its reason phrase (just the number for one HTTP does not name)."""
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)

class ClientConfig:
    """What one client connection was asked for, and its connecting state."""

    def __init__(self, target: WebSocketURI, offered: list[str], options: dict[str, Any]) -> None:
        unknown = set(options) - CLIENT_OPTIONS
        if unknown:
            raise TypeError(unknown_options_message("WebSocket", unknown, NODE_OPTION_HINTS))
        self.target = target
        self.offered = offered
        headers = options.get("headers") or {}
        self.headers: list[tuple[str, str]] = list(headers.items() if isinstance(headers, dict) else headers)
        self.origin: str | None = options.get("origin")
        self.handshake_timeout: float = options.get("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT)
        self.per_message_deflate = options.get("per_message_deflate", True)
        # Unless set, a compressed connection gets DEFAULT_MAX_PAYLOAD_DEFLATE (``handshake_response``).
        self.max_payload_set = "max_payload" in options
        self.ssl: _ssl.SSLContext | bool | None = options.get("ssl")
        if self.ssl is not None and self.ssl is not True and not isinstance(self.ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext (or None for the system's trust store), got {self.ssl!r}")
        self.ping_interval: float | None = options.get("ping_interval")
        self.ping_timeout: float | None = options.get("ping_timeout", self.ping_interval)
        self.message_timeout: float | None = options.get("message_timeout", DEFAULT_MESSAGE_TIMEOUT)
        check_message_timeout(self.message_timeout)
        proxy = options.get("proxy", "env")
        self.proxy: Any = proxy if proxy in (None, False, "", "env") else _proxy.parse_proxy(proxy)
        self.follow_redirects: bool = bool(options.get("follow_redirects", False))
        # Node's socketPath: reach a server on a unix socket; the URL still
        # gives the Host header, the path and ws/wss.
        socket_path = options.get("socket_path")
        if socket_path is not None and not isinstance(socket_path, (str, os.PathLike)):
            raise TypeError(f"socket_path must be a path, got {type(socket_path).__name__}")
        self.socket_path: str | None = os.fspath(socket_path) if socket_path is not None else None
        max_redirects = options.get("max_redirects", 10)
        if isinstance(max_redirects, bool) or not isinstance(max_redirects, int) or max_redirects < 0:
            raise ValueError(f"max_redirects must be a non-negative int, got {max_redirects!r}")
        self.max_redirects: int = max_redirects
        self.write_limits: dict[str, Any] = {k: options[k] for k in ("high_water_mark", "low_water_mark") if k in options}
        self.redirects = 0
        self.loop: asyncio.AbstractEventLoop | None = None  # the socket's, set by WebSocket
        self.proto: _protocol.Client | None = None  # the current connection's protocol object
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        # The response head read so far (at most MAX_RESPONSE_HEAD bytes), and
        # a refusal (a non-101 answer) whose body is being read.
        self.head = bytearray()
        self.refusal: _Refusal | None = None

    @property
    def address(self) -> str:
        if self.socket_path is not None:
            return self.socket_path
        return format_host_port(self.target.host, self.target.port)

    def ssl_context(self) -> _ssl.SSLContext | None:
        if not self.target.secure:
            return None
        if isinstance(self.ssl, _ssl.SSLContext):
            return self.ssl
        return _ssl.create_default_context()

    def extensions(self) -> list[Any] | None:
        if not self.per_message_deflate:
            return None
        if isinstance(self.per_message_deflate, dict):
            return [ClientPerMessageDeflateFactory(**self.per_message_deflate)]
        # Let the server pick our window size; memLevel 5 as websockets recommends.
        return [ClientPerMessageDeflateFactory(client_max_window_bits=True, compress_settings={"memLevel": 5})]

    # -- lifecycle, driven by WebSocket -------------------------------------------

    def connection_made(self, ws: "WebSocket", transport: asyncio.Transport) -> None:
        """TCP (and TLS) is up: send the upgrade request."""
        peer = transport.get_extra_info("peername")
        proto = _protocol.Client(
            self.target,
            origin=self.origin,  # type: ignore[arg-type,unused-ignore]
            extensions=self.extensions(),
            subprotocols=self.offered or None,  # type: ignore[arg-type,unused-ignore]
            max_size=ws.max_payload,
        )
        request = proto.connect()
        for name, value in self.headers:
            if name in request.headers:
                del request.headers[name]
            request.headers[name] = value
        proto.send_request(request)
        self.proto = proto
        self.head = bytearray()
        self.refusal = None
        ws._connected(proto, peer[0] if isinstance(peer, tuple) else peer, self.write_limits)

    def receive(self, ws: "WebSocket", data: bytes | memoryview) -> tuple[bytes, int] | None:
        """Bytes read before the handshake finished: ``(head, end)`` once the response head is complete.

        The head is kept until it is complete (at most ``MAX_RESPONSE_HEAD``
        bytes); the socket then feeds it to ``websockets`` in one piece, so
        that its parser stands at a frame boundary after a 101, and calls
        :meth:`answered` with ``data[end:]``.  A refusal's body is read here
        (``None``): the client never reads more than the head plus
        ``MAX_RESPONSE_BODY`` of a refusal.
        """
        if self.refusal is not None:
            self._read_refusal(ws, data)
            return None
        end = self.handshake_end(data)
        if end < 0:
            if len(self.head) > MAX_RESPONSE_HEAD:
                self._invalid(ws, f"response head larger than {MAX_RESPONSE_HEAD:,} bytes")
            return None
        head = bytes(self.head)
        self.head = bytearray()
        return head, end

    def answered(
        self, ws: "WebSocket", proto: object, head: bytes, rest: bytes | memoryview
    ) -> bytes | memoryview | None:
        """``proto`` (the socket's protocol object) read the response ``head``: the bytes after a 101 (frames), or ``None``.

        An answer ``websockets`` could not read, or one that is not a 101, is
        settled at once.  A listener may have closed the socket or a redirect
        replaced ``proto`` meanwhile: then nothing is left to do.
        """
        if ws.ready_state is ReadyState.OPEN:
            return rest
        current = self.proto
        if ws.ready_state is not ReadyState.CONNECTING or current is None or current is not proto:
            return None  # refused, redirected or closed by a listener
        # No answer from websockets: it found the head invalid, or it waits
        # for a body, which only a non-101 answer has.
        refusal = _Refusal.parse(head)
        if refusal is None:
            exc = current.handshake_exc
            cause = exc.__cause__ if exc is not None and exc.__cause__ is not None else exc
            self._invalid(ws, describe(cause) if cause is not None else "not a 101 response", cause)
            return None
        self.refusal = refusal
        if self._wants_redirect(refusal.response()):
            self._refused(ws, refusal.response())
        else:
            self._read_refusal(ws, rest)
        return None

    def handshake_end(self, data: bytes | memoryview) -> int:
        """Keep the response head from ``data``; where it ends in ``data`` (frames may follow), or -1."""
        head = self.head
        kept = len(head)
        chunk = bytes(data[: MAX_RESPONSE_HEAD + 1 - kept]) if kept <= MAX_RESPONSE_HEAD else b""
        back = min(kept, 3)  # ``\r\n\r\n`` may span two reads
        at = (bytes(head[kept - back:]) + chunk).find(b"\r\n\r\n")
        if at < 0:
            head += chunk
            return -1
        end = at + 4 - back
        head += chunk[:end]
        return end

    def handshake_response(self, ws: "WebSocket", response: Response) -> None:
        """The server answered the upgrade request."""
        self._stop_timer()
        proto = self.proto
        assert proto is not None
        exc = proto.handshake_exc
        if exc is not None:
            if isinstance(exc, InvalidStatus):
                self._refused(ws, response)
                return
            error = HandshakeError(f"Invalid WebSocket handshake response from {self.address}: {describe(exc)}")
            error.__cause__ = exc
            ws._abort_connecting(error)
            return
        extensions = response.headers.get("Sec-WebSocket-Extensions", "")
        if extensions and not self.max_payload_set:  # compressed: a message may inflate ~1,000x
            proto.set_message_limit(DEFAULT_MAX_PAYLOAD_DEFLATE)
        if self.ping_interval or self.message_timeout:
            assert self.loop is not None
            Heartbeat(self.loop, self.ping_interval or None, self.ping_timeout, self.message_timeout).add(ws)
        ws._opened(proto, extensions, proto.message_limit())

    def _invalid(self, ws: "WebSocket", why: str, cause: BaseException | None = None) -> None:
        """The answer is not valid HTTP, or too large to read: fail at once, reading no more."""
        error = HandshakeError(f"Invalid WebSocket handshake response from {self.address}: {why}")
        error.__cause__ = cause
        ws._abort_connecting(error)

    def _read_refusal(self, ws: "WebSocket", data: bytes | memoryview) -> None:
        refusal = self.refusal
        assert refusal is not None
        if refusal.receive(data):
            self._refused(ws, refusal.response(), refusal.note)

    def _refused(self, ws: "WebSocket", response: Response, note: str = "") -> None:
        """A non-101 answer: follow a redirect, or ``'unexpected-response'`` then ``'error'``."""
        self._stop_timer()
        self.refusal = None
        if self._wants_redirect(response):
            self._redirect(ws, response)
            return
        status = response.status_code
        headers = list(response.headers.raw_items())
        body = bytes(response.body or b"")
        ws._emit_event("unexpected-response", status, headers, body)
        if ws.ready_state is ReadyState.CONNECTING:
            message = f"Unexpected server response: {status_text(status)}" + (f" ({note})" if note else "")
            ws._abort_connecting(HandshakeError(message, status, headers, body))

    # -- redirects (Node's followRedirects) ------------------------------------------

    def _wants_redirect(self, response: Response) -> bool:
        return self.follow_redirects and 300 <= response.status_code < 400 and "Location" in response.headers

    def _redirect(self, ws: "WebSocket", response: Response) -> None:
        """Reconnect the same socket to the ``Location``, after a ``'redirect'`` event.

        As Node's ``ws``: ``'redirect'`` gets the new URL and the list of
        extra request headers (a listener may edit it); credentials
        (``Authorization``, ``Cookie``) are dropped when the host or port
        changes, and on a downgrade from ``wss`` to ``ws``.
        """
        location = response.headers["Location"]
        base = ("https" if self.target.secure else "http") + ws.url[ws.url.index(":"):]
        try:
            url = urljoin(base, location)
            target = parse_url(url)
        except ValueError as exc:
            ws._abort_connecting(HandshakeError(f"Invalid redirect location {location!r}: {exc}", response.status_code))
            return
        self.redirects += 1
        if self.redirects > self.max_redirects:
            ws._abort_connecting(HandshakeError(f"Maximum redirects exceeded ({self.max_redirects})", response.status_code))
            return
        old = self.target
        self._drop_connection(ws)
        if (target.host, target.port) != (old.host, old.port) or (old.secure and not target.secure):
            self.headers = [(k, v) for k, v in self.headers if k.lower() not in ("authorization", "cookie")]
        ws._redirected(("wss" if target.secure else "ws") + url[url.index(":"):])
        self.target = target
        ws._emit_event("redirect", ws.url, self.headers)
        if ws.ready_state is ReadyState.CONNECTING:  # a listener may have closed it
            self.start(ws)

    def _drop_connection(self, ws: "WebSocket") -> None:
        """Close the current connection quietly: its end is not the socket's end."""
        transport = ws._disconnect()
        self.proto = None
        if transport is not None:
            transport.set_protocol(_Ignore())
            transport.abort()

    def connection_lost(self, ws: "WebSocket", exc: Exception | None) -> None:
        """The connection ended before the handshake finished."""
        self._stop_timer()
        refusal, proto = self.refusal, self.proto
        if refusal is not None:  # the end of a refusal's body (or its interruption)
            refusal.receive(b"", eof=True)
            self._refused(ws, refusal.response(), refusal.note)
            if ws.ready_state is not ReadyState.CONNECTING or self.proto is not proto:
                return  # reported (or redirected)
        reason = f": {describe(exc)}" if exc else ""
        ws._lost_before_open(
            ConnectError(f"connection to {self.address} closed before the handshake completed{reason}", self.address)
        )

    def start(self, ws: "WebSocket") -> None:
        """Begin connecting (on the socket's loop)."""
        if ws.ready_state is not ReadyState.CONNECTING:  # closed before we even started
            return
        loop = self.loop
        assert loop is not None
        self.task = loop.create_task(_connect(ws, self, loop))
        if self.handshake_timeout:
            self.timer = loop.call_later(self.handshake_timeout, _timed_out, ws, self)

    def cancel(self) -> None:
        """Stop connecting: the handshake timer, and the connect task while no connection is made.

        Once ``connection_made`` ran, the task only waits for ``create_connection``
        to return, and the caller aborts the transport, whose ``connection_lost``
        ends the socket.  Cancelling the task then would make uvloop close the
        transport without ever calling ``connection_lost`` (asyncio calls it):
        the socket would wait for good without ``'close'`` (a refusal answered
        before ``create_connection`` returned: 5 runs in 12 on loopback).
        """
        self._stop_timer()
        if self.task is not None and not self.task.done() and self.proto is None:
            self.task.cancel()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Refusal:
    """A non-101 answer: h11 reads its head and body; the body is kept up to ``MAX_RESPONSE_BODY``."""

    def __init__(self, conn: h11.Connection, head: h11.Response) -> None:
        self._conn = conn
        self.status: int = head.status_code
        self.reason = head.reason.decode("iso-8859-1")
        self.headers = [(k.decode("iso-8859-1"), v.decode("iso-8859-1")) for k, v in head.headers.raw_items()]
        self.body = bytearray()
        self.note = ""

    @classmethod
    def parse(cls, head: bytes) -> "_Refusal | None":
        """The answer whose head is ``head``, if it is a valid HTTP response other than 1xx."""
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD + 1)
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "ws")]))
        conn.receive_data(head)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return None
        return cls(conn, event) if isinstance(event, h11.Response) else None

    def receive(self, data: bytes | memoryview, *, eof: bool = False) -> bool:
        """More of the body, or its end; ``True`` once it is complete, cut or broken."""
        conn = self._conn
        if eof:
            conn.receive_data(b"")
        elif data:
            conn.receive_data(bytes(data))  # one read at most: h11 holds no more than that
        try:
            while True:
                event = conn.next_event()
                if isinstance(event, h11.Data):
                    self.body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return True
                elif event is h11.NEED_DATA or event is h11.PAUSED:
                    break
        except h11.RemoteProtocolError as exc:
            self.note = f"its body is incomplete: {exc}"
            return True
        if len(self.body) > MAX_RESPONSE_BODY:
            del self.body[MAX_RESPONSE_BODY:]
            self.note = f"its body was cut at {MAX_RESPONSE_BODY:,} bytes"
            return True
        if eof:
            self.note = "its body is incomplete"
            return True
        return False

    def response(self) -> Response:
        return Response(self.status, self.reason, Headers(self.headers), bytes(self.body))


class _Ignore(asyncio.Protocol):
    """Takes the callbacks of a connection left behind by a redirect."""


def _timed_out(ws: "WebSocket", config: ClientConfig) -> None:
    config.timer = None
    refusal = config.refusal
    if refusal is not None and ws.ready_state is ReadyState.CONNECTING:  # a refusal's body that never ends
        config._refused(ws, refusal.response(), f"its body did not arrive within {config.handshake_timeout} s")
        return
    if ws.ready_state is ReadyState.CONNECTING:
        ws._abort_connecting(ConnectError(f"Opening handshake has timed out ({config.address})", config.address))


async def _connect(ws: "WebSocket", config: ClientConfig, loop: asyncio.AbstractEventLoop) -> None:
    stream = ws._stream  # the asyncio protocol that feeds this socket (a new one per connection)
    target = config.target
    ssl_context = config.ssl_context()
    server_hostname = target.host if ssl_context is not None else None
    try:
        proxy = None if config.socket_path else _proxy.proxy_for(config.proxy, target.secure, target.host, target.port)
        if config.socket_path is not None:
            await loop.create_unix_connection(
                stream, config.socket_path, ssl=ssl_context, server_hostname=server_hostname
            )
        elif proxy is None:
            await loop.create_connection(
                stream, target.host, target.port, ssl=ssl_context, server_hostname=server_hostname
            )
        else:
            sock = await _proxy.open_tunnel(loop, proxy, target.host, target.port)
            try:
                await loop.create_connection(
                    stream, sock=sock, ssl=ssl_context, server_hostname=server_hostname
                )
            except BaseException:
                sock.close()
                raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if ws.ready_state is ReadyState.CONNECTING:
            if config.socket_path is not None:
                error = ConnectError(f"connect to unix socket {config.socket_path} failed: {describe(exc)}", config.address)
            else:
                error = ConnectError(describe_connect_error(exc, target.host, target.port), config.address)
            error.__cause__ = exc
            ws._abort_connecting(error)


def describe_connect_error(exc: BaseException, host: str, port: int) -> str:
    """Node-style one-liners: ``connect ECONNREFUSED 127.0.0.1:8080 (Connection refused)``."""
    address = format_host_port(host, port)
    if isinstance(exc, _proxy.ProxyError):
        return str(exc)
    if isinstance(exc, socket.gaierror):
        return f"getaddrinfo ENOTFOUND {host} ({exc.strerror or exc})"
    if isinstance(exc, _ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed for {address}: {exc.verify_message or exc.reason}"
    if isinstance(exc, _ssl.SSLError):
        return f"TLS handshake with {address} failed: {exc.reason or exc}"
    code = exc.errno if isinstance(exc, OSError) else None
    if code is not None and code in errno.errorcode:
        return f"connect {errno.errorcode[code]} {address} ({os.strerror(code)})"
    return f"connect to {address} failed: {describe(exc)}"
