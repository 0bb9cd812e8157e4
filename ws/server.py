"""``WebSocketServer``: accepts WebSocket upgrades on a path of an HTTP server.

The HTTP server (``ws.http.Server``) parses the request with h11 and hands
over upgrades on our path with the transport and any bytes already read.
Here the handshake is decided synchronously, in one call: ``websockets``
validates the request, ``verify_client`` and ``handle_protocols`` (the
user's hooks) run, and either a 101 goes out and a ``WebSocket`` is born, or
a plain-text HTTP error answers and the connection closes.  Nothing on this
path may raise into the event loop.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Any, Callable, Iterable

from websockets.datastructures import Headers
from websockets.exceptions import (
    InvalidHandshake,
    InvalidHeaderValue,
    InvalidMethod,
    InvalidProtocol,
    InvalidUpgrade,
)
from websockets.extensions.permessage_deflate import (
    ServerPerMessageDeflateFactory,
    enable_server_permessage_deflate,
)
from websockets.http11 import Request as _WsRequest
from websockets.http11 import Response
from websockets.protocol import State

from .protocol.writer import serialize as _serialize
from ._runtime import loop as _loop
from .protocol import _websockets as _protocol
from ._runtime.compat import normalize_options
from ._runtime.emitter import EventEmitter
from .connection.keepalive import Heartbeat
from .exceptions import Reject, WebSocketError
from .http.server import _http_date
from .request import Request
from .connection.websocket import DEFAULT_MAX_PAYLOAD, OPEN, WebSocket, check_byte_limit

__all__ = ["WebSocketServer", "VerifyInfo"]

logger = logging.getLogger("ws.server")

SERVER_OPTIONS = frozenset(
    {
        "server",
        "port",
        "host",
        "path",
        "client_tracking",
        "verify_client",
        "handle_protocols",
        "protocols",
        "max_payload",
        "max_fragments",
        "per_message_deflate",
        "no_server",
        "ping_interval",
        "ping_timeout",
        "close_timeout",
        "high_water_mark",
        "low_water_mark",
        "max_buffered_amount",
    }
)

DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0


class VerifyInfo:
    """What ``verify_client(info)`` receives: ``origin``, ``req``, ``secure``.

    Subscriptable too (``info['req']``), for code written against Node.
    """

    __slots__ = ("origin", "req", "secure")

    def __init__(self, origin: str | None, req: Request, secure: bool) -> None:
        self.origin = origin
        self.req = req
        self.secure = secure

    def __getitem__(self, key: str) -> Any:
        if key not in self.__slots__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self.__slots__ else default


class WebSocketServer(EventEmitter):
    """A WebSocket endpoint on an HTTP server.

    ``WebSocketServer(server=http_server, path='/ws', ...)`` attaches to an
    existing ``ws.http.Server``; ``WebSocketServer(port=8080)`` makes its own;
    ``WebSocketServer(no_server=True)`` leaves routing to ``handle_upgrade``.
    Options may also come as one dict (``WebSocketServer({'server': s})``)
    and in their camelCase spellings.

    Events: ``'connection'`` ``(socket, request)``, ``'headers'``
    ``(headers, request)``, ``'error'`` ``(exc)``, ``'listening'``, ``'close'``.
    """

    def __init__(self, options: dict[str, Any] | None = None, callback: Callable[..., Any] | None = None, **kwargs: Any) -> None:
        super().__init__()
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict, got {type(options).__name__}")
        opts = normalize_options({**(options or {}), **kwargs})
        unknown = set(opts) - SERVER_OPTIONS
        if unknown:
            raise TypeError(f"unknown WebSocketServer option(s): {', '.join(sorted(unknown))}")
        server = opts.get("server")
        port = opts.get("port")
        no_server = bool(opts.get("no_server"))
        if (server is not None) + (port is not None) + no_server != 1:
            raise TypeError('One and only one of the "port", "server", or "no_server" options must be specified')
        if server is not None and not hasattr(server, "_add_upgrade_handler"):
            server = _adapt_server(server)
        path = opts.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path must be a string starting with '/', got {path!r}")
        verify = opts.get("verify_client")
        handle = opts.get("handle_protocols")
        for name, hook in (("verify_client", verify), ("handle_protocols", handle)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{name} must be callable, got {type(hook).__name__}")

        self.path = path
        self.client_tracking = bool(opts.get("client_tracking", True))
        self.verify_client = verify
        self.handle_protocols = handle
        protocols = opts.get("protocols")
        if isinstance(protocols, str):
            protocols = [protocols]  # one name, not its letters
        self.protocols: list[str] | None = list(protocols) if protocols else None
        self.max_payload = opts.get("max_payload", DEFAULT_MAX_PAYLOAD)
        check_byte_limit("max_buffered_amount", opts.get("max_buffered_amount"))
        self.per_message_deflate = opts.get("per_message_deflate", False)
        self._socket_options = {
            key: opts[key]
            for key in (
                "max_payload", "max_fragments", "close_timeout", "high_water_mark", "low_water_mark",
                "max_buffered_amount",
            )
            if key in opts
        }
        self._sockets: set[WebSocket] = set()
        self._closed = False
        self._close_callbacks: list[Callable[[], Any]] = []
        self._closed_future: asyncio.Future | None = None
        self._own_server: Any = None

        if server is not None:
            self._loop = server._loop
        else:
            self._loop = _loop.bind()
        ping_interval = opts.get("ping_interval", DEFAULT_PING_INTERVAL)
        ping_timeout = opts.get("ping_timeout", DEFAULT_PING_TIMEOUT if ping_interval else None)
        self._heartbeat = Heartbeat(self._loop, ping_interval, ping_timeout) if ping_interval else None
        # Shutdown hooks run on the reactor; this server may live on another loop.
        self._shutdown_hook = lambda: _loop.call(self._loop, self._close_now, 1001, "server shutting down")
        _loop.reactor.on_shutdown(self._shutdown_hook)

        if port is not None:
            from .http import Server as HttpServer

            host = opts.get("host") or "127.0.0.1"
            server = HttpServer(address=f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            self._own_server = server
            self._loop = server._loop
            server._add_upgrade_handler(path, self)
            server.on("listening", lambda *args: self._emit_kept("listening"))
            server.on("error", lambda exc: self.emit("error", exc))
            if callback is not None:
                self.once("listening", callback)
            server.serve()
        elif server is not None:
            server._add_upgrade_handler(path, self)
        self.server = server

    # -- public API ---------------------------------------------------------------

    @property
    def clients(self) -> set[WebSocket] | None:
        """Open sockets accepted by this server, or ``None`` with ``client_tracking=False``."""
        return self._sockets if self.client_tracking else None

    def address(self) -> dict[str, Any] | str | None:
        """Where the HTTP server listens, shaped as Node's ``server.address()``.

        ``{'address': '127.0.0.1', 'family': 'IPv4', 'port': 8080}`` for TCP
        (so ``WebSocketServer(port=0)`` users can learn the port), the path
        for a unix socket, ``None`` before listening or with ``no_server``.
        """
        server = self.server
        if server is None or getattr(server, "address", None) is None:
            return None
        if getattr(server, "network", "tcp") == "unix":
            return server.address
        host = server.host
        return {"address": host, "family": "IPv6" if ":" in host else "IPv4", "port": server.port}

    def should_handle(self, request: Request) -> bool:
        """Whether ``request`` targets this server's path."""
        return request.path == self.path

    def handle_upgrade(
        self,
        request: Request,
        transport: asyncio.Transport,
        head: bytes = b"",
        callback: Callable[[WebSocket, Request], Any] | None = None,
    ) -> None:
        """Complete a handshake for an upgrade the caller routed here (``no_server``).

        ``callback(socket, request)`` replaces the ``'connection'`` event when given.
        """
        _loop.call(self._loop, self._upgrade, request, transport, head, callback)

    def broadcast(self, data: str | bytes, *, exclude: WebSocket | Iterable[WebSocket] | None = None) -> int:
        """Send ``data`` to every open client; returns how many it was sent to.

        The frame is built once and the same bytes are written to every
        client that has no extension (compressed clients get their own).
        """
        if isinstance(data, str):
            is_text, payload = True, data.encode()
        elif isinstance(data, (bytes, bytearray, memoryview)):
            is_text, payload = False, bytes(data)
        else:
            raise TypeError(f"data must be str or bytes-like, got {type(data).__name__}")
        if not _loop.in_loop(self._loop):
            _loop.call(self._loop, self._broadcast, is_text, payload, exclude)
            return len(self._sockets)
        return self._broadcast(is_text, payload, exclude)

    def _broadcast(self, is_text: bool, payload: bytes, exclude: Any) -> int:
        excluded = () if exclude is None else ({exclude} if isinstance(exclude, WebSocket) else set(exclude))
        # One frame for all; per client only the checks and the write.
        wire = b"".join(_serialize(_FIN_TEXT if is_text else _FIN_BINARY, payload, False))
        count = 0
        for ws in list(self._sockets):
            if excluded and ws in excluded:
                continue
            if ws._send_broadcast(wire, is_text, payload):
                count += 1
        return count

    def close(self, callback: Callable[[], Any] | None = None) -> None:
        """Stop accepting, close every client with 1001, then emit ``'close'``.

        Clients that never answer are dropped after their ``close_timeout``.
        """
        if callback is not None:
            self._close_callbacks.append(callback)
        _loop.call(self._loop, self._close_now, 1001, "")

    async def wait_closed(self) -> None:
        """Inside asyncio: wait until ``close()`` has finished."""
        if self._closed_future is None:
            self._closed_future = self._loop.create_future()
            if self._closed and not self._sockets:
                self._closed_future.set_result(None)
        await asyncio.shield(self._closed_future)

    def ref(self) -> "WebSocketServer":
        if self._own_server is not None:
            self._own_server.ref()
        return self

    def unref(self) -> "WebSocketServer":
        if self._own_server is not None:
            self._own_server.unref()
        return self

    def __repr__(self) -> str:
        return f"<WebSocketServer path={self.path!r} clients={len(self._sockets)}>"

    # -- closing ------------------------------------------------------------------

    def _close_now(self, code: int, reason: str) -> None:
        first = not self._closed
        self._closed = True
        if first:
            _loop.reactor.remove_shutdown(self._shutdown_hook)
            server = self.server
            if server is not None:
                try:
                    server._remove_upgrade_handler(self.path, self)
                except Exception:  # already gone
                    pass
            if self._own_server is not None:
                self._own_server.close()
        for ws in list(self._sockets):
            try:
                ws._close_now(code, reason)
            except Exception:  # pragma: no cover - defensive
                logger.exception("error while closing %r", ws)
        self._maybe_closed()

    def _maybe_closed(self) -> None:
        if not self._closed or self._sockets:
            return
        if self._heartbeat is not None:
            self._heartbeat.stop()
        callbacks, self._close_callbacks = self._close_callbacks, []
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(None)
        if callbacks or not getattr(self, "_close_emitted", False):
            if not getattr(self, "_close_emitted", False):
                self._close_emitted = True
                self.emit("close")
            for cb in callbacks:
                self._emit_run(cb, (), {})

    def _socket_closed(self, ws: WebSocket) -> None:
        self._sockets.discard(ws)
        if self._closed:
            self._maybe_closed()

    # -- the handshake --------------------------------------------------------------

    def _handle_http_upgrade(self, request: Request, transport: asyncio.Transport, head: bytes) -> None:
        """Called by the HTTP server for an upgrade request on our path."""
        self._upgrade(request, transport, head, None)

    def _upgrade(
        self,
        request: Request,
        transport: asyncio.Transport,
        head: bytes,
        callback: Callable[[WebSocket, Request], Any] | None,
    ) -> None:
        try:
            self._accept(request, transport, head, callback)
        except Exception as exc:  # a bug of ours or of a listener: answer, report, keep serving
            logger.exception("WebSocket handshake failed")
            _respond(transport, 500, "Internal Server Error")
            self.emit("error", exc)

    def _accept(
        self,
        request: Request,
        transport: asyncio.Transport,
        head: bytes,
        callback: Callable[[WebSocket, Request], Any] | None,
    ) -> None:
        if self._closed:
            _respond(transport, 503, "WebSocket server is closed")
            return
        if transport.is_closing():
            return
        offered: list[str] = []

        def record(_proto: Any, subprotocols: Any) -> None:
            offered.extend(subprotocols)
            return None

        proto = _protocol.Server(
            extensions=self._extension_factories(),
            select_subprotocol=record,
            max_size=self.max_payload,
            logger=_quiet,
        )
        try:
            # Headers() itself refuses values websockets deems invalid (non-ASCII...): a 400 too.
            ws_request = _WsRequest(
                path=request.url,
                headers=Headers(request.raw_headers),
                method=request.method,
                protocol=f"HTTP/{request.http_version}",
            )
            accept_key, extensions_header, _ = proto.process_request(ws_request)
        except InvalidMethod:
            _respond(transport, 405, "Method Not Allowed: a WebSocket handshake uses GET", [("Allow", "GET")])
            return
        except InvalidProtocol:
            _respond(transport, 505, "HTTP Version Not Supported: a WebSocket handshake uses HTTP/1.1")
            return
        except InvalidHeaderValue as exc:
            if exc.name == "Sec-WebSocket-Version":
                _respond(transport, 426, f"Unsupported WebSocket version: {exc.value}", [("Sec-WebSocket-Version", "13")])
            else:
                _respond(transport, 400, f"Bad Request: {exc}")
            return
        except (InvalidUpgrade, InvalidHandshake) as exc:
            _respond(transport, 400, f"Bad Request: {_chain(exc)}")
            return

        origin = request.get_header("origin") or request.get_header("sec-websocket-origin")
        extra_headers: list[tuple[str, str]] = []
        if self.verify_client is not None:
            try:
                verdict = self.verify_client(VerifyInfo(origin, request, request.secure))
            except Reject as rejection:
                _respond(transport, rejection.status, rejection.reason, rejection.headers)
                return
            except Exception as exc:
                logger.error("verify_client raised", exc_info=exc)
                _respond(transport, 500, "Internal Server Error")
                self.emit("error", exc)
                return
            accepted, status, reason, extra_headers = _parse_verdict(verdict)
            if not accepted:
                _respond(transport, status, reason, extra_headers)
                return
            extra_headers = []

        chosen = self._choose_protocol(offered, request, transport)
        if chosen is False:
            return  # already answered with 500

        proto.subprotocol = chosen or None  # type: ignore[assignment]
        if self._events.get("headers"):
            self._send_edited_101(proto, request, accept_key, extensions_header, chosen)
        else:
            # The common case: the 101 bytes straight from a template, no
            # Headers/Response objects (a measurable share of a handshake).
            transport.write(_response_101(accept_key, extensions_header, chosen))
            proto.state = _OPEN_STATE
        proto.read_frames()

        ws = WebSocket._accepted(self._loop, proto, transport, request, self._socket_closed, self._socket_options, extensions_header or "")
        ws._extensions = extensions_header or ""
        ws._flush()
        self._sockets.add(ws)
        if self._heartbeat is not None:
            self._heartbeat.add(ws)
        if callback is not None:
            self._emit_run(callback, (ws, request), {})
        else:
            self.emit("connection", ws, request)
        if head:
            # Bytes that came with the handshake wait one loop turn, so that an
            # ``async def`` 'connection' listener (a task, started next) can
            # attach its 'message' listener first; later reads queue behind.
            self._loop.call_soon(_deliver_head, ws, head)

    def _send_edited_101(
        self, proto: Any, request: Request, accept_key: str, extensions_header: str | None, chosen: str | None
    ) -> None:
        """The 101 as lines a ``'headers'`` listener may edit, then through ``websockets``."""
        lines: list[Any] = [
            "HTTP/1.1 101 Switching Protocols",
            *(f"{name}: {value}" for name, value in _headers_101(accept_key, extensions_header, chosen)),
        ]
        self.emit("headers", lines, request)
        headers = _headers_from_lines(lines[1:] if lines and str(lines[0]).startswith("HTTP/") else lines)
        proto.send_response(Response(101, "Switching Protocols", headers))

    def _extension_factories(self) -> list[Any] | None:
        pmd = self.per_message_deflate
        if not pmd:
            return None
        if isinstance(pmd, dict):
            return [ServerPerMessageDeflateFactory(**pmd)]
        # websockets' recommended settings: 4 KiB windows and memLevel 5 keep a
        # compressed connection near 60 KiB instead of ~300 KiB at zlib's defaults.
        return list(enable_server_permessage_deflate(None))

    def _choose_protocol(self, offered: list[str], request: Request, transport: asyncio.Transport) -> str | None | bool:
        """The subprotocol to accept: ``None`` for none, ``False`` if we already answered 500."""
        if not offered:
            return None
        if self.handle_protocols is not None:
            try:
                chosen = self.handle_protocols(list(offered), request)
            except Exception as exc:
                logger.error("handle_protocols raised", exc_info=exc)
                _respond(transport, 500, "Internal Server Error")
                self.emit("error", exc)
                return False
            if chosen is None or chosen is False or chosen == "":
                return None
            if chosen not in offered:
                exc = WebSocketError(f"handle_protocols returned {chosen!r}, which the client did not offer ({offered})")
                logger.error("%s", exc)
                _respond(transport, 500, "Internal Server Error")
                self.emit("error", exc)
                return False
            return str(chosen)
        if self.protocols is not None:
            for name in self.protocols:
                if name in offered:
                    return name
            return None
        return offered[0]


_quiet = logging.getLogger("ws.server.protocol")
_OPEN_STATE = State.OPEN
_FIN_TEXT = 0x81
_FIN_BINARY = 0x82


def _headers_101(accept_key: str, extensions_header: str | None, chosen: str | None) -> list[tuple[str, str]]:
    """The header lines of our 101 answer, in order."""
    headers = [
        ("Date", _http_date()),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key),
    ]
    if extensions_header is not None:
        headers.append(("Sec-WebSocket-Extensions", extensions_header))
    if chosen:
        headers.append(("Sec-WebSocket-Protocol", chosen))
    return headers


def _response_101(accept_key: str, extensions_header: str | None, chosen: str | None) -> bytes:
    """The serialised 101 (values already validated: base64, websockets' extension header, an offered token)."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in _headers_101(accept_key, extensions_header, chosen))
    return f"HTTP/1.1 101 Switching Protocols\r\n{lines}\r\n".encode("latin-1")


def _deliver_head(ws: WebSocket, head: bytes) -> None:
    ws._receive_head(head)


def _chain(exc: BaseException) -> str:
    text = str(exc)
    cause = exc.__cause__
    while cause is not None:
        text += f"; {cause}"
        cause = cause.__cause__
    return text


def _parse_verdict(verdict: Any) -> tuple[bool, int, str, list[tuple[str, str]]]:
    """``verify_client``'s answer as (accepted, status, reason, headers)."""
    if isinstance(verdict, tuple):
        if not verdict:
            return False, 401, "Unauthorized", []
        accepted = bool(verdict[0])
        status = int(verdict[1]) if len(verdict) > 1 and verdict[1] is not None else 401
        reason = str(verdict[2]) if len(verdict) > 2 and verdict[2] is not None else _phrase(status)
        headers = _header_pairs(verdict[3]) if len(verdict) > 3 and verdict[3] else []
        return accepted, status, reason, headers
    if verdict:
        return True, 101, "", []
    return False, 401, "Unauthorized", []


def _header_pairs(headers: Any) -> list[tuple[str, str]]:
    if isinstance(headers, dict):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


def _headers_from_lines(lines: list[Any]) -> Headers:
    headers = Headers()
    for line in lines:
        if isinstance(line, tuple):
            name, value = line
        else:
            name, _, value = str(line).partition(":")
        headers[str(name).strip()] = str(value).strip()
    return headers


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _respond(transport: asyncio.Transport, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> None:
    """Answer a refused handshake with a short plain-text HTTP response and close."""
    if transport.is_closing():
        return
    body = (text.rstrip("\n") + "\n").encode()
    response_headers = Headers()
    response_headers["Date"] = _http_date()
    response_headers["Connection"] = "close"
    response_headers["Content-Type"] = "text/plain; charset=utf-8"
    response_headers["Content-Length"] = str(len(body))
    for name, value in headers:
        response_headers[name] = value
    try:
        transport.write(Response(status, _phrase(status), response_headers, body).serialize())
    finally:
        transport.close()


def _adapt_server(server: Any) -> Any:
    """Other HTTP servers get an adapter (see ``ws._adapters``); unknown ones a ``TypeError``."""
    try:
        from .http.stdlib import adapt  # type: ignore[attr-defined]
    except ImportError:
        adapt = None
    adapted = adapt(server) if adapt is not None else None
    if adapted is None:
        raise TypeError(
            f"server must be a ws.http.Server (or a supported HTTP server), got {type(server).__name__}"
        )
    return adapted

