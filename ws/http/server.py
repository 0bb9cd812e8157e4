"""The embedded HTTP/1.1 server: routes, static files and the WebSocket hand-off.

h11 does all of the parsing and framing; this module only decides what to
answer and when to close.  Each connection is one ``asyncio.BufferedProtocol``
fed by the loop's callbacks (no reading task per connection, reads into the
thread's shared buffer), so an idle keep-alive connection costs a few objects
and a timer.

The server binds like Node: the object can be created anywhere and lives on
the loop chosen by ``_loop.bind()`` at construction (the running loop, or the
shared reactor of plain scripts).  Sockets are bound synchronously in
``serve()`` so that a taken port fails at once, in the caller's code.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import re
import socket
import stat
import time
from email.utils import formatdate
from typing import Any, Awaitable, Callable, Mapping, Protocol
from urllib.parse import unquote

import h11

from .._runtime import loop as _loop
from .._runtime.emitter import EventEmitter
from .._runtime.reads import read_buffer
from ..request import Request
from . import status as _status
from .context import Context, Response
from .static import StaticFiles

__all__ = ["Server"]

logger = logging.getLogger("ws.http")

SERVER_NAME = "ws-python"

Handler = Callable[[Context], Any]

_NO_BODY_STATUSES = frozenset({204, 304})
_CHUNK = 64 * 1024
# How long a connection we decided to close keeps draining the peer's input,
# so that unread bytes do not turn our close into a reset that eats the
# response (RFC 9112, section 9.6).
_LINGER = 2.0


class UpgradeHandler(Protocol):
    """What the WebSocket layer registers with ``_add_upgrade_handler``."""

    def _handle_http_upgrade(self, request: Request, transport: asyncio.Transport, head: bytes) -> None: ...


# -- small helpers -------------------------------------------------------------

_date_cache: list[Any] = [0, ""]


def _http_date() -> str:
    """The ``Date`` header value, formatted at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True)
    return _date_cache[1]


def _parse_address(network: str, address: Any) -> tuple[str | None, int] | str:
    """``'host:port'`` (or a port) -> ``(host, port)``; unix: the path.

    A missing host (``':3000'`` or ``3000``) means every interface, as in
    Node and Go.
    """
    if network == "unix":
        if not isinstance(address, (str, os.PathLike)) or not os.fspath(address):
            raise ValueError(f"a unix server needs a socket path, not {address!r}")
        return os.fspath(address)
    if network != "tcp":
        raise ValueError(f"network must be 'tcp' or 'unix', not {network!r}")
    if isinstance(address, bool):
        raise TypeError(f"invalid address: {address!r}")
    if isinstance(address, int):
        host, port_text = None, str(address)
    elif isinstance(address, str):
        text = address.strip()
        if text.startswith("["):  # [::1]:3000
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ValueError(f"invalid address {address!r}: expected '[host]:port'")
            host, port_text = text[1:end], text[end + 2 :]
        elif text.isdigit():
            host, port_text = None, text
        elif ":" in text:
            host, _, port_text = text.rpartition(":")
        else:
            raise ValueError(f"invalid address {address!r}: expected 'host:port'")
        host = host or None
    else:
        raise TypeError(f"invalid address: {address!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid port in address {address!r}")
    return host, int(port_text)


def _format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _swallow(future: asyncio.Future) -> None:
    """Mark a future's exception as seen (it was logged where it happened)."""
    if not future.cancelled():
        future.exception()


# -- routing -------------------------------------------------------------------

_PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")


class _Router:
    """Exact paths, ``/users/:id`` patterns, then static prefixes (longest first)."""

    def __init__(self) -> None:
        self.exact: dict[str, dict[str, Handler]] = {}
        self.patterns: list[tuple[str, re.Pattern[str], dict[str, Handler]]] = []
        self.mounts: list[StaticFiles] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        if not path.startswith("/"):
            raise ValueError(f"route path must start with '/': {path!r}")
        if _PARAM.search(path):
            for text, _, methods in self.patterns:
                if text == path:
                    break
            else:
                regex = re.compile(
                    "^"
                    + "/".join(
                        f"(?P<{seg[1:]}>[^/]+)" if _PARAM.fullmatch(seg) else re.escape(seg)
                        for seg in path.split("/")
                    )
                    + "$"
                )
                methods = {}
                self.patterns.append((path, regex, methods))
        else:
            methods = self.exact.setdefault(path, {})
        methods[method] = handler

    def mount(self, static: StaticFiles) -> None:
        self.mounts.append(static)
        self.mounts.sort(key=lambda s: len(s.prefix), reverse=True)

    def resolve(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], list[str]]:
        """``(handler, params, allowed_methods)``; no handler and no methods: unknown path."""
        params: dict[str, str] = {}
        methods = self.exact.get(path)
        if methods is None:
            for _, regex, candidate in self.patterns:
                match = regex.match(path)
                if match:
                    methods = candidate
                    params = {k: unquote(v) for k, v in match.groupdict().items()}
                    break
        if methods is None:
            for static in self.mounts:
                if static.matches(path):
                    methods = {"GET": static, "HEAD": static}
                    break
        if not methods:
            return None, {}, []
        handler = methods.get(method)
        if handler is None and method == "HEAD":
            handler = methods.get("GET")
        allowed = set(methods)
        if "GET" in allowed:
            allowed.add("HEAD")
        return handler, params, sorted(allowed)


# -- one connection --------------------------------------------------------------

# Phases of a connection.
_HEAD = "head"  # waiting for (the rest of) a request head
_BODY = "body"  # reading a request body
_BUSY = "busy"  # the handler runs or the response is being sent
_IDLE = "idle"  # keep-alive, between requests
_CLOSING = "closing"  # answered for the last time; draining input until close


class _Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection, driven by h11.

    Every callback is wrapped: a bug here aborts this connection and is
    logged, it never reaches the event loop.  Reads land in the thread's
    shared buffer (``ws/_reads.py``), which h11 copies from at once.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server._loop
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_header_size)
        self.transport: asyncio.Transport | None = None
        self.peername: Any = None
        self.phase = _HEAD
        self.detached = False  # handed to an upgrade handler: not ours anymore
        self.lost = False
        self.timer: asyncio.TimerHandle | None = None
        self.head: h11.Request | None = None
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.upgrade: Any = None
        self.processing = False
        self.reading_paused = False
        self.peer_eof = False
        self.close_after = False
        self.request: Request | None = None
        self.drain: asyncio.Future | None = None
        self.writing_paused = False
        self.backpressure = False  # next request waits until the peer reads

    # -- asyncio callbacks --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        try:
            self.transport = transport  # type: ignore[assignment]
            self.peername = transport.get_extra_info("peername")
            server = self.server
            if server._state not in ("listening", "starting"):
                transport.close()
                self.lost = True
                return
            if server.max_pending_handshakes is not None and len(server._pending) >= server.max_pending_handshakes:
                self._refuse_busy()
                return
            server._connections.add(self)
            server._pending.add(self)
            self._set_timer(server.header_timeout, self._on_head_timeout)
        except Exception:
            logger.exception("HTTP connection setup failed")
            transport.abort()  # type: ignore[attr-defined]

    def get_buffer(self, sizehint: int) -> memoryview:
        return read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(read_buffer()[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self.detached or self.lost:
            return
        try:
            phase = self.phase
            if phase == _CLOSING:
                return  # draining the peer before closing
            self.h11.receive_data(data)
            if phase == _IDLE:
                self.phase = _HEAD
                self._set_timer(self.server.header_timeout, self._on_head_timeout)
            elif phase == _BODY:
                # An idle timer, not a deadline: slow uploads are fine,
                # a stalled one is not.
                self._set_timer(self.server.header_timeout, self._on_head_timeout)
            elif phase == _BUSY:
                if len(self.h11.trailing_data[0]) > _CHUNK and not self.reading_paused:
                    self.transport.pause_reading()  # type: ignore[union-attr]
                    self.reading_paused = True
                return
            self._process()
        except Exception:
            logger.exception("HTTP connection failed")
            self._abort()

    def eof_received(self) -> bool | None:
        if self.detached or self.lost:
            return None
        try:
            if self.phase == _BUSY:
                # The client half-closed after its request: answer first.
                self.peer_eof = True
                return None if self.server._ssl is not None else True
            if self.phase == _CLOSING:
                return None
            self.h11.receive_data(b"")
            self._process()
        except Exception:
            logger.exception("HTTP connection failed")
            self._abort()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        try:
            self.server._pending.discard(self)
            self._cancel_timer()
            if self.drain is not None and not self.drain.done():
                self.drain.set_result(None)
            if not self.detached:
                self.server._connection_gone(self)
        except Exception:
            logger.exception("HTTP connection cleanup failed")

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)
        if self.backpressure and not self.lost and not self.detached:
            self.backpressure = False
            try:
                self._next_request()
            except Exception:
                logger.exception("HTTP connection failed")
                self._abort()

    # -- timers --

    def _set_timer(self, delay: float | None, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        if delay is not None and delay > 0:
            self.timer = self.loop.call_later(delay, self._guarded, callback)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _guarded(self, callback: Callable[[], None]) -> None:
        self.timer = None
        if self.detached or self.lost:
            return
        try:
            callback()
        except Exception:
            logger.exception("HTTP connection timer failed")
            self._abort()

    def _on_head_timeout(self) -> None:
        """Slowloris defence: no complete head (or no body progress) in time."""
        if self.phase == _BODY or self.h11.trailing_data[0]:
            self._fail(_status.REQUEST_TIMEOUT)
        else:
            self._close_now()

    def _on_idle_timeout(self) -> None:
        if self.phase == _IDLE:
            self._close_now()

    # -- reading --

    def _process(self) -> None:
        """Pull events out of h11 until it needs more data or we must answer."""
        if self.processing:
            return  # the outer loop picks up the new state
        self.processing = True
        try:
            while not self.detached and not self.lost and self.phase in (_HEAD, _BODY):
                try:
                    event = self.h11.next_event()
                except h11.RemoteProtocolError as exc:
                    logger.debug("bad request from %s: %s", self.peername, exc)
                    self._fail(exc.error_status_hint or _status.BAD_REQUEST)
                    return
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    if self.phase is _BODY and self.timer is None:
                        # A body still to come: an idle timer, re-armed on every read.
                        self._set_timer(self.server.header_timeout, self._on_head_timeout)
                    return
                kind = type(event)
                if kind is h11.Request:
                    self._on_head(event)  # type: ignore[arg-type]
                elif kind is h11.Data:
                    self._on_body(event.data)  # type: ignore[union-attr]
                elif kind is h11.EndOfMessage:
                    self._on_complete()
                elif kind is h11.ConnectionClosed:
                    self._close_now()
                    return
        finally:
            self.processing = False

    def _on_head(self, event: h11.Request) -> None:
        server = self.server
        server._pending.discard(self)
        self._cancel_timer()
        self.phase = _BODY  # its idle timer starts only if the body does not follow at once (_process)
        raw = event.headers.raw_items()
        if len(raw) > server.max_header_count:
            self._fail(_status.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return
        # h11 only enforces its limit on heads that arrive in pieces; a
        # whole oversized head in one read is caught here.  One pass over the
        # raw items (iterating h11's Headers goes through __getitem__).
        size = len(event.target)
        length = None
        upgrade = None
        for name, value in raw:
            size += len(name) + len(value) + 4
            if len(name) == 14 and name.lower() == b"content-length":
                length = int(value)  # h11 validated it
            elif len(name) == 7 and name.lower() == b"upgrade":
                upgrade = value
        if size > server.max_header_size:
            self._fail(_status.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return
        self.head = event
        self.raw_headers = raw
        self.body = bytearray()
        self.upgrade = upgrade
        if length is not None and length > server.max_body_size:
            self._fail(_status.REQUEST_ENTITY_TOO_LARGE)
            return
        if self.h11.they_are_waiting_for_100_continue:
            self._write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))

    def _on_body(self, data: bytes) -> None:
        self.body += data
        if len(self.body) > self.server.max_body_size:
            self._fail(_status.REQUEST_ENTITY_TOO_LARGE)

    def _on_complete(self) -> None:
        self._cancel_timer()
        self.phase = _BUSY
        event = self.head
        assert event is not None
        try:
            target = event.target.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(_status.BAD_REQUEST)
            return
        server = self.server
        request = Request(
            event.method.decode("ascii"),
            target,
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw_headers],
            http_version=event.http_version.decode("ascii"),
            peername=self.peername,
            secure=server._ssl is not None,
            body=bytes(self.body),
            complete=True,
        )
        self.request = request
        self.body = bytearray()
        if self.upgrade is not None:
            handler = server._upgrade_handler_for(request.path)
            if handler is not None:
                self._hand_off(handler, request)
                return
        self._dispatch(request)

    # -- the WebSocket hand-off --

    def _hand_off(self, handler: Any, request: Request) -> None:
        """Give the socket away: from now on every callback here is ignored."""
        self.detached = True
        self._cancel_timer()
        self.server._connection_gone(self)
        transport = self.transport
        assert transport is not None
        head = b""
        if self.h11.their_state is h11.MIGHT_SWITCH_PROTOCOL:
            head = bytes(self.h11.trailing_data[0])
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        try:
            handler._handle_http_upgrade(request, transport, head)
        except Exception:
            logger.exception("upgrade handler %r failed", handler)
            transport.abort()

    # -- answering --

    def _dispatch(self, request: Request) -> None:
        server = self.server
        ctx = Context(request, server, self._send, loop=self.loop)
        if server._events.get("request"):
            server.emit("request", ctx)
            if ctx.responded:
                return
        handler, params, allowed = server._router.resolve(request.method, request.path)
        if handler is None:
            if allowed:
                ctx.set_header("Allow", ", ".join(allowed))
                ctx.text(_status.METHOD_NOT_ALLOWED, "405 Method Not Allowed\n")
            elif self.upgrade is None and server._upgrade_handler_for(request.path) is not None:
                ctx.set_header("Upgrade", "websocket")
                ctx.set_header("Connection", "Upgrade")
                ctx.text(_status.UPGRADE_REQUIRED, "426 Upgrade Required: this path speaks WebSocket\n")
            else:
                ctx.text(_status.NOT_FOUND, "404 Not Found\n")
            return
        ctx.params = params
        try:
            result = handler(ctx)
        except Exception:
            logger.exception("handler for %s %s raised", request.method, request.path)
            self._internal_error(ctx)
            return
        if inspect.isawaitable(result):
            task = self.loop.create_task(self._run_async(ctx, result))
            server._tasks.add(task)
            task.add_done_callback(server._tasks.discard)
        else:
            self._finish(ctx, result)

    async def _run_async(self, ctx: Context, awaitable: Awaitable[Any]) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:
            if not ctx.responded:
                self._close_now()
            raise
        except Exception:
            logger.exception("handler for %s %s raised", ctx.request.method, ctx.request.path)
            self._internal_error(ctx)
            return
        try:
            self._finish(ctx, result)
        except Exception:
            logger.exception("HTTP connection failed")
            self._abort()

    def _finish(self, ctx: Context, result: Any) -> None:
        """A handler returned: answer for it if it did not (documented defaults)."""
        if ctx.responded:
            return
        if result is None:
            ctx.status(_status.NO_CONTENT)
        elif isinstance(result, str):
            ctx.text(_status.OK, result)
        elif isinstance(result, (bytes, bytearray, memoryview)):
            ctx.bytes(_status.OK, bytes(result))
        elif isinstance(result, (dict, list)):
            ctx.json(_status.OK, result)
        else:
            logger.error("handler for %s %s returned %r", ctx.request.method, ctx.request.path, type(result))
            self._internal_error(ctx)

    def _internal_error(self, ctx: Context) -> None:
        if not ctx.responded:
            ctx.headers.clear()
            ctx.text(_status.INTERNAL_SERVER_ERROR, "500 Internal Server Error\n")

    def _headers_for(self, response: Response, closing: bool) -> list[tuple[str, str]]:
        headers = [("Server", SERVER_NAME), ("Date", _http_date())]
        for name, value in response.headers:
            key = name.lower()
            if key in ("server", "date"):
                headers = [h for h in headers if h[0].lower() != key]
            headers.append((name, value))
        if response.status not in _NO_BODY_STATUSES and response.status >= 200:
            headers.append(("Content-Length", str(response.length)))
        if closing:
            for i, (name, value) in enumerate(headers):
                if name.lower() == "connection":
                    if "close" not in value.lower():
                        headers[i] = (name, value + ", close")
                    break
            else:
                headers.append(("Connection", "close"))
        return headers

    def _send(self, response: Response) -> None:
        """Send a handler's response (called by the context, on our loop)."""
        if self.detached or self.lost or self.phase != _BUSY:
            if response.file is not None:
                response.file.close()
            return
        try:
            self._send_response(response)
        except Exception:
            logger.exception("sending a response failed")
            if response.file is not None:
                response.file.close()
            self._abort()

    def _send_response(self, response: Response) -> None:
        server = self.server
        closing = (
            self.close_after
            or self.peer_eof
            or server._state != "listening"
            or server.keep_alive_timeout == 0
        )
        head = h11.Response(
            status_code=response.status,
            headers=self._headers_for(response, closing),
            reason=_status.reason(response.status).encode("ascii"),
        )
        no_body = (
            self.request is not None and self.request.method == "HEAD"
        ) or response.status in _NO_BODY_STATUSES
        out = self.h11.send(head)
        if response.file is not None:
            if no_body or response.length <= _CHUNK:
                try:
                    data = b"" if no_body else response.file.read(response.length)
                finally:
                    response.file.close()
                if data:
                    out += self.h11.send(h11.Data(data=data))
            else:
                self._write(out)
                task = self.loop.create_task(self._stream(response.file))
                server._tasks.add(task)
                task.add_done_callback(server._tasks.discard)
                return
        elif response.body and not no_body:
            out += self.h11.send(h11.Data(data=response.body))
        out += self.h11.send(h11.EndOfMessage())
        self._write(out)
        self._response_done()

    async def _stream(self, file: Any) -> None:
        """Write a large file in chunks, respecting the transport's flow control."""
        try:
            with file:
                while not self.lost:
                    chunk = file.read(_CHUNK)
                    if not chunk:
                        break
                    self._write(self.h11.send(h11.Data(data=chunk)))
                    if self.writing_paused and not self.lost:
                        self.drain = self.loop.create_future()
                        await self.drain
                        self.drain = None
            if self.lost:
                return
            self._write(self.h11.send(h11.EndOfMessage()))
            self._response_done()
        except Exception:
            logger.exception("streaming a file failed")
            self._abort()

    def _response_done(self) -> None:
        """One exchange is over: keep the connection alive or close it."""
        if self.lost or self.detached:
            return
        conn = self.h11
        self.request = None
        if (
            conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            and not (self.close_after or self.peer_eof or self.server._state != "listening")
        ):
            conn.start_next_cycle()
            self.phase = _IDLE
            self._next_request()
        else:
            self._close_gracefully()

    def _next_request(self) -> None:
        """Between requests: read the next one, unless the peer is not reading ours."""
        transport = self.transport
        assert transport is not None
        if self.writing_paused:
            # Answers pile up unread: stop taking requests until they drain
            # (the idle timer closes a peer that never reads).
            self.backpressure = True
            if not self.reading_paused:
                self.reading_paused = True
                transport.pause_reading()
            self._set_timer(self.server.keep_alive_timeout, self._on_idle_timeout)
            return
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        if self.h11.trailing_data[0]:  # a pipelined request is waiting
            self.phase = _HEAD
            self._set_timer(self.server.header_timeout, self._on_head_timeout)
            self._process()
        else:
            self._set_timer(self.server.keep_alive_timeout, self._on_idle_timeout)

    def _fail(self, code: int) -> None:
        """Answer a protocol-level error (if still possible) and close."""
        self._cancel_timer()
        conn = self.h11
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and self.transport is not None:
            body = f"{code} {_status.reason(code)}\n".encode("ascii")
            headers = [
                ("Server", SERVER_NAME),
                ("Date", _http_date()),
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ]
            try:
                out = conn.send(h11.Response(status_code=code, headers=headers, reason=_status.reason(code).encode()))
                out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                self._write(out)
            except h11.LocalProtocolError:
                logger.debug("could not send %s", code, exc_info=True)
        self._close_gracefully()

    def _refuse_busy(self) -> None:
        """Too many connections are still sending their request head: 503, close.

        Answered before the request is read (the peer may see a reset
        instead if it already sent one); the cap keeps slow or silent clients
        from holding every socket while the header timeout runs.
        """
        self.lost = True
        body = b"503 Service Unavailable: too many pending connections\n"
        head = (
            f"HTTP/1.1 503 Service Unavailable\r\nServer: {SERVER_NAME}\r\nDate: {_http_date()}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            "Retry-After: 1\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        transport = self.transport
        assert transport is not None
        transport.write(head + body)
        transport.close()

    # -- closing --

    def _write(self, data: bytes | None) -> None:
        if data and self.transport is not None and not self.lost:
            self.transport.write(data)

    def _close_gracefully(self) -> None:
        """Flush, half-close and drain the peer for a moment, then close."""
        self.phase = _CLOSING
        self.server._pending.discard(self)  # a closing connection holds no handshake slot
        self._cancel_timer()
        transport = self.transport
        if transport is None or self.lost:
            return
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        if transport.can_write_eof() and not self.peer_eof and self.server._state == "listening":
            # (A closing server does not linger: close() should be prompt.)
            try:
                transport.write_eof()
            except OSError:  # the peer reset the connection meanwhile
                transport.abort()
                return
            self._set_timer(_LINGER, self._close_now)
        else:
            transport.close()

    def _close_now(self) -> None:
        self.phase = _CLOSING
        self.server._pending.discard(self)  # a closing connection holds no handshake slot
        self._cancel_timer()
        if self.transport is not None and not self.lost:
            self.transport.close()

    def _abort(self) -> None:
        self.phase = _CLOSING
        self.server._pending.discard(self)  # a closing connection holds no handshake slot
        self._cancel_timer()
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def _server_closing(self) -> None:
        """The server closes: idle connections go now, busy ones after answering."""
        if self.phase in (_IDLE, _HEAD, _CLOSING):
            self._close_now()
        else:
            self.close_after = True


# -- the server --------------------------------------------------------------------

_OPTIONS = (
    "network",
    "ssl",
    "max_body_size",
    "max_header_size",
    "max_header_count",
    "header_timeout",
    "keep_alive_timeout",
    "close_timeout",
    "backlog",
    "max_pending_handshakes",
)


class Server(EventEmitter):
    """An HTTP/1.1 server with routes, static files and WebSocket upgrades.

    Events: ``'listening'`` (address), ``'request'`` (ctx, before routing: a
    synchronous listener that answers skips the routes), ``'error'``
    (exception) and ``'close'``.
    """

    def __init__(
        self,
        address: str | int | Mapping[str, Any] | None = None,
        *,
        network: str = "tcp",
        ssl: Any = None,
        max_body_size: int = 1024 * 1024,
        max_header_size: int = 16 * 1024,
        max_header_count: int = 100,
        header_timeout: float | None = 10.0,
        keep_alive_timeout: float | None = 5.0,
        close_timeout: float | None = 5.0,
        backlog: int = 511,
        max_pending_handshakes: int | None = 1024,
    ) -> None:
        super().__init__()
        config: dict[str, Any] = dict(
            network=network,
            ssl=ssl,
            max_body_size=max_body_size,
            max_header_size=max_header_size,
            max_header_count=max_header_count,
            header_timeout=header_timeout,
            keep_alive_timeout=keep_alive_timeout,
            close_timeout=close_timeout,
            backlog=backlog,
            max_pending_handshakes=max_pending_handshakes,
        )
        if isinstance(address, Mapping):
            # The JSH form: Server({'network': 'tcp', 'address': ':8080', ...}).
            unknown = set(address) - set(_OPTIONS) - {"address"}
            if unknown:
                raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}")
            config.update(address)
            address = address.get("address")
        if address is None:
            address = "127.0.0.1:3000"
        self.network: str = config["network"]
        self._target = _parse_address(self.network, address)
        self._ssl = config["ssl"]
        self.max_body_size: int = config["max_body_size"]
        self.max_header_size: int = config["max_header_size"]
        self.max_header_count: int = config["max_header_count"]
        self.header_timeout: float | None = config["header_timeout"]
        self.keep_alive_timeout: float | None = config["keep_alive_timeout"]
        self.close_timeout: float | None = config["close_timeout"]
        self.backlog: int = config["backlog"]
        # Connections that have not sent a complete request head yet.
        self.max_pending_handshakes: int | None = config["max_pending_handshakes"]
        if self.max_pending_handshakes is not None and self.max_pending_handshakes < 1:
            raise ValueError(f"max_pending_handshakes must be positive or None, got {self.max_pending_handshakes!r}")

        self._loop = _loop.bind()
        self._ref = _loop.Ref(self._loop)
        self._router = _Router()
        self._upgrades: dict[str | None, Any] = {}
        self._connections: set[_Connection] = set()
        self._pending: set[_Connection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._sockets: list[socket.socket] = []
        self._state = "new"  # new -> starting -> listening -> closing -> closed
        self._close_requested = False
        self._closed_waiters: list[asyncio.Future] = []
        self._force_timer: asyncio.TimerHandle | None = None
        self._unix_inode: int | None = None
        self._shutdown_hook = self._on_shutdown

    # -- addresses --

    @property
    def listening(self) -> bool:
        """Whether the server accepts connections."""
        return self._state == "listening"

    @property
    def secure(self) -> bool:
        """Whether the server speaks TLS (https:, wss:)."""
        return self._ssl is not None

    @property
    def address(self) -> str | None:
        """The bound ``'host:port'`` (the path for unix sockets); ``None`` before binding."""
        if not self._sockets:
            return None
        if self.network == "unix":
            return self._target  # type: ignore[return-value]
        name = self._sockets[0].getsockname()
        return _format_host_port(name[0], name[1])

    @property
    def host(self) -> str | None:
        """The bound host (``None`` before binding and for unix sockets)."""
        if not self._sockets or self.network == "unix":
            return None
        return self._sockets[0].getsockname()[0]

    @property
    def port(self) -> int | None:
        """The bound port (``None`` before binding and for unix sockets)."""
        if not self._sockets or self.network == "unix":
            return None
        return self._sockets[0].getsockname()[1]

    @property
    def url(self) -> str | None:
        """``http://host:port`` (or https) once bound, handy in logs and tests."""
        if self.network == "unix" or self.address is None:
            return None
        return f"{'https' if self._ssl is not None else 'http'}://{self.address}"

    # -- routes --

    def route(self, method: str, path: str, handler: Handler | None = None) -> Any:
        """Register ``handler(ctx)`` for ``method`` on ``path``; a decorator without ``handler``.

        ``path`` is matched exactly against the request path (query
        excluded); segments written ``:name`` match one segment and land in
        ``ctx.params``.  Handlers may be plain or ``async def`` functions.
        """
        method = method.upper()

        def register(fn: Handler) -> Handler:
            if not callable(fn):
                raise TypeError(f"handler must be callable, not {fn!r}")
            self._router.add(method, path, fn)
            return fn

        return register if handler is None else register(handler)

    def get(self, path: str, handler: Handler | None = None) -> Any:
        """``route('GET', ...)``; HEAD requests are answered by GET routes too."""
        return self.route("GET", path, handler)

    def post(self, path: str, handler: Handler | None = None) -> Any:
        """``route('POST', ...)``."""
        return self.route("POST", path, handler)

    def put(self, path: str, handler: Handler | None = None) -> Any:
        """``route('PUT', ...)``."""
        return self.route("PUT", path, handler)

    def delete(self, path: str, handler: Handler | None = None) -> Any:
        """``route('DELETE', ...)``."""
        return self.route("DELETE", path, handler)

    def patch(self, path: str, handler: Handler | None = None) -> Any:
        """``route('PATCH', ...)``."""
        return self.route("PATCH", path, handler)

    def head(self, path: str, handler: Handler | None = None) -> Any:
        """``route('HEAD', ...)``, for a HEAD answer other than the GET route's."""
        return self.route("HEAD", path, handler)

    def static(self, prefix: str, root: str | os.PathLike[str], *, index: str | None = "index.html") -> StaticFiles:
        """Serve the files below folder ``root`` at paths under ``prefix`` (GET/HEAD)."""
        files = StaticFiles(prefix, root, index=index)
        self._router.mount(files)
        return files

    def ws(self, path: str, handler: Callable[..., Any] | None = None, **options: Any) -> Any:
        """A ``WebSocketServer`` on ``path`` of this server, ``handler(socket, request)`` on 'connection'.

        With ``handler`` it returns the ``WebSocketServer``; without, it is
        a decorator that registers the function and returns it unchanged.
        """
        from ..server import WebSocketServer

        def attach(fn: Callable[..., Any]) -> Any:
            wss = WebSocketServer(server=self, path=path, **options)
            wss.on("connection", fn)
            return wss

        if handler is None:

            def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
                attach(fn)
                return fn

            return decorator
        return attach(handler)

    # -- the application styles (ws.endpoints, ws.handlers, ws.routes, ws.connections) --

    def websockets(self, endpoints: Mapping[str, Any], prefix: str = "/api/_websockets", **options: Any) -> Any:
        """Declarative endpoints ``{name: {'on_open': ..., ...}}`` under ``prefix`` (see ``ws.endpoints``)."""
        from ..styles.endpoints import define

        return define(self, endpoints, prefix, **options)

    def load_websockets(self, folder: str | os.PathLike[str], prefix: str = "/websockets/v4/service", **options: Any) -> Any:
        """Serve the ``*.websocket`` descriptor files of ``folder`` under ``prefix`` (see ``ws.handlers``)."""
        from ..styles.handlers import load_websockets

        return load_websockets(self, folder, prefix, **options)

    def route_ws(self, path: str, handler: Callable[..., Any] | None = None, **options: Any) -> Any:
        """A WebSocket route with ``:name`` parameters, ``message=`` and ``guard=`` (see ``ws.routes``)."""
        from ..styles.routes import route

        return route(self, path, handler, **options)

    def websocket(self, name: str, **options: Any) -> Any:
        """A named socket with connect/disconnect/message handlers (see ``ws.connections``)."""
        from ..styles.connections import Socket

        return Socket(self, name, **options)

    # -- the upgrade interface of the WebSocket layer --

    def _add_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        """Route upgrade requests for ``path`` (``None``: any other path) to ``handler``."""
        if path is not None and not path.startswith("/"):
            raise ValueError(f"upgrade path must start with '/': {path!r}")
        if path in self._upgrades:
            raise ValueError(f"an upgrade handler is already registered on {path!r}")
        self._upgrades[path] = handler

    def _remove_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        """Undo ``_add_upgrade_handler`` (no error when it is not registered)."""
        if self._upgrades.get(path) is handler:
            del self._upgrades[path]

    def _upgrade_handler_for(self, path: str) -> Any:
        handler = self._upgrades.get(path)
        if handler is None:
            handler = self._upgrades.get(None)
            # A catch-all may serve only some paths (the patterns of ws.routes).
            handles_path = getattr(handler, "handles_path", None)
            if handles_path is not None and not handles_path(path):
                return None
        return handler

    # -- serving --

    def _bind(self) -> list[socket.socket]:
        """Create, bind and listen synchronously, so errors reach the caller at once."""
        if self.network == "unix":
            return [self._bind_unix(self._target)]  # type: ignore[arg-type]
        host, port = self._target  # type: ignore[misc]
        shown = _format_host_port(host or "*", port)
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise OSError(exc.errno, f"cannot resolve {shown}: {exc.strerror}") from None
        sockets: list[socket.socket] = []
        seen: set[tuple[int, Any]] = set()
        bound_port = port
        try:
            for family, kind, proto, _, sockaddr in infos:
                if (family, sockaddr) in seen:
                    continue
                seen.add((family, sockaddr))
                try:
                    sock = socket.socket(family, kind, proto)
                except OSError:
                    continue  # e.g. no IPv6 on this host
                sockets.append(sock)
                if os.name == "posix":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                # With port 0 and several interfaces, use one port for all.
                sockaddr = (sockaddr[0], bound_port, *sockaddr[2:])
                try:
                    sock.bind(sockaddr)
                except OSError as exc:
                    where = _format_host_port(sockaddr[0], bound_port)
                    raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
                bound_port = sock.getsockname()[1]
                sock.listen(self.backlog)
                sock.setblocking(False)
            if not sockets:
                raise OSError(errno.EADDRNOTAVAIL, f"no usable address for {shown}")
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return sockets

    def _bind_unix(self, path: str) -> socket.socket:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(mode):
                raise OSError(errno.EADDRINUSE, f"cannot listen on {path}: a file is in the way")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)  # a stale socket of a dead process
            except OSError:
                pass
            else:
                raise OSError(errno.EADDRINUSE, f"cannot listen on {path}: address already in use")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.bind(path)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {path}: {exc.strerror}") from None
            self._unix_inode = os.stat(path).st_ino
            sock.listen(self.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def serve(self, callback: Callable[..., Any] | None = None) -> Any:
        """Bind and start serving; ``callback(address)`` runs once listening.

        A taken address raises ``OSError`` here, synchronously.  In a plain
        thread it returns the bound address once listening, the process
        staying alive until ``close()``; with a loop running in the calling
        thread it returns an awaitable of the address (``await server.serve()``;
        serving starts even if it is not awaited).
        """
        if self._state not in ("new", "closed"):
            raise RuntimeError(f"server is already {self._state}")
        if self._loop.is_closed():
            if self._connections:
                raise RuntimeError("the server's event loop is closed")
            self._loop = _loop.bind()
            self._ref = _loop.Ref(self._loop)
        self._sockets = self._bind()
        self._state = "starting"
        self._close_requested = False
        if callback is not None:
            self.once("listening", callback)
        running = _loop._get_running_loop()
        if running is self._loop:
            task = self._loop.create_task(self._start())
            task.add_done_callback(_swallow)
            return task
        if running is not None:
            return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._start(), self._loop))
        return _loop.run_blocking(self._loop, self._start(), timeout=30)

    async def _start(self) -> str:
        loop = self._loop
        try:
            for sock in self._sockets:
                if self.network == "unix":
                    server = await loop.create_unix_server(
                        self._protocol, sock=sock, ssl=self._ssl, backlog=self.backlog,
                        ssl_handshake_timeout=self.header_timeout if self._ssl is not None else None,
                    )
                else:
                    server = await loop.create_server(
                        self._protocol, sock=sock, ssl=self._ssl, backlog=self.backlog,
                        ssl_handshake_timeout=self.header_timeout if self._ssl is not None else None,
                    )
                self._servers.append(server)
        except Exception as exc:
            logger.error("HTTP server could not start on %s: %s", self.address, exc)
            for server in self._servers:
                server.close()
            for sock in self._sockets:
                sock.close()
            self._servers = []
            self._sockets = []
            self._state = "closed"
            raise
        self._state = "listening"
        self._ref.hold()
        _loop.reactor.on_shutdown(self._shutdown_hook)
        address = self.address
        logger.debug("HTTP server listening on %s", address)
        self._emit_kept("listening", address)
        if self._close_requested:
            self._begin_close()
        return address  # type: ignore[return-value]

    def _protocol(self) -> _Connection:
        return _Connection(self)

    # -- closing --

    def close(self, callback: Callable[..., Any] | None = None) -> Any:
        """Stop listening and close every connection; ``callback()`` once closed.

        Idle connections close at once; one busy answering a request closes
        after its response (forcibly after ``close_timeout``).  Upgraded
        (WebSocket) connections are not touched.  With a loop running in the
        calling thread it returns an awaitable (``await server.close()``,
        optional); in a plain thread it waits until the server is closed.
        """
        if callback is not None:
            if self._state not in ("new", "closed"):
                self.once("close", callback)
            elif self._loop.is_closed():
                callback()
            else:
                self._loop.call_soon_threadsafe(callback)
        running = _loop._get_running_loop()
        if running is self._loop:
            waiter = self._loop.create_future()
            self._closed_waiters.append(waiter)
            self._begin_close()
            return waiter
        if self._loop.is_closed() or self._state in ("new", "closed"):
            if running is not None:
                done = running.create_future()
                done.set_result(None)
                return done
            return None
        future = asyncio.run_coroutine_threadsafe(self._close_and_wait(), self._loop)
        if running is not None:
            return asyncio.wrap_future(future)
        timeout = (self.close_timeout or 0) + 10
        try:
            future.result(timeout)
        except Exception:
            logger.warning("HTTP server did not close within %s s", timeout)
        return None

    async def close_async(self) -> None:
        """``await``-able close from any loop (same as awaiting ``close()``)."""
        result = self.close()
        if result is not None:
            await result

    async def _close_and_wait(self) -> None:
        waiter = self._loop.create_future()
        self._closed_waiters.append(waiter)
        self._begin_close()
        await waiter

    def _begin_close(self) -> None:
        """Start closing (on the loop); idempotent."""
        if self._state == "starting":
            self._close_requested = True
            return
        if self._state != "listening":
            self._check_closed()
            return
        self._state = "closing"
        for server in self._servers:
            server.close()
        self._servers = []
        self._unlink_unix()
        for conn in list(self._connections):
            try:
                conn._server_closing()
            except Exception:
                logger.exception("closing an HTTP connection failed")
                conn._abort()
        if self._connections and self.close_timeout is not None:
            self._force_timer = self._loop.call_later(self.close_timeout, self._force_close)
        self._check_closed()

    def _force_close(self) -> None:
        self._force_timer = None
        for conn in list(self._connections):
            conn._abort()
        self._connections.clear()
        self._check_closed()

    def _unlink_unix(self) -> None:
        if self.network != "unix" or self._unix_inode is None:
            return
        path = self._target
        try:
            if os.stat(path).st_ino == self._unix_inode:  # type: ignore[arg-type]
                os.unlink(path)  # type: ignore[arg-type]
        except OSError:
            pass
        self._unix_inode = None

    def _connection_gone(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        if self._state == "closing":
            self._check_closed()

    def _check_closed(self) -> None:
        if self._state == "closing" and not self._connections:
            self._state = "closed"
            if self._force_timer is not None:
                self._force_timer.cancel()
                self._force_timer = None
            for sock in self._sockets:
                sock.close()
            self._sockets = []
            self._ref.release()
            _loop.reactor.remove_shutdown(self._shutdown_hook)
            logger.debug("HTTP server closed")
            self.emit("close")
        if self._state in ("closed", "new"):
            waiters, self._closed_waiters = self._closed_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _on_shutdown(self) -> None:
        """SIGINT/SIGTERM on the reactor: close, on our own loop."""
        _loop.call(self._loop, self._begin_close)

    # -- keep-alive and context managers --

    def ref(self) -> Server:
        """Keep the process alive while serving (the default)."""
        self._ref.ref()
        return self

    def unref(self) -> Server:
        """Let a plain script exit even though this server still listens."""
        self._ref.unref()
        return self

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        # In a plain thread this waits; inside a loop a plain ``with`` cannot
        # wait, and closing simply goes on (use ``async with`` to wait).
        self.close()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_async()

    def __repr__(self) -> str:
        where = self.address or _describe_target(self._target)
        return f"<ws.http.Server {where} {self._state}>"


def _describe_target(target: tuple[str | None, int] | str) -> str:
    if isinstance(target, str):
        return target
    host, port = target
    return _format_host_port(host or "*", port)


