"""``ws.asgi``: a ``WebSocketServer`` as an ASGI application (uvicorn, hypercorn, Starlette).

    wss = WebSocketServer(no_server=True, verify_client=check)
    wss.on('connection', lambda sock, req: sock.on('message', lambda e: sock.send(e.data)))
    app = ASGIApp(wss, fallback=other_asgi_app)   # uvicorn module:app

Under ASGI the server owns the socket and does the framing; it hands the
application events (``websocket.receive``, ``websocket.disconnect``) and
takes messages (``websocket.send``, ``websocket.close``).  So the sockets
given to ``'connection'`` listeners are ``ASGIWebSocket``: a ``WebSocket``
whose transport seam is replaced -- received ASGI events are delivered as
``'message'``/``'close'`` exactly as frames are, and ``send``/``close``
become ASGI messages, written in order by one writer per connection.  The
handshake decisions are the server's own: ``verify_client`` (a refusal
answers with its HTTP status through the ``websocket.http.response``
extension when the ASGI server offers it, else with a close before accept,
which the server turns into a 403), ``handle_protocols``/``protocols``,
and the ``'headers'`` event.

Limits of ASGI, not of ``ws``: there are no ping/pong frames for the
application (keepalive is the ASGI server's: ``uvicorn --ws-ping-interval``),
``terminate()`` ends the application's side (the server closes the
connection) and ``per_message_deflate`` is the server's setting.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from time import monotonic
from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import quote

from ._runtime.emitter import EventEmitter
from ._runtime.flow import FlowGate
from .events import BINARY, TEXT
from .http.responses import phrase
from .protocol.handshake import Accepted, Pending, Refused, admit
from .protocol.limits import Slot
from .request import Request
from .server import WebSocketServer
from .connection.websocket import CLOSED, DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, OPEN, WebSocket

__all__ = ["ASGIApp", "ASGIWebSocket"]

logger = logging.getLogger("ws.asgi")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Response headers the ASGI server writes itself; the rest of a 'headers' edit is passed on.
_SERVER_HEADERS = frozenset(
    {"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions", "date", "server"}
)


class ASGIApp:
    """An ASGI 3 application serving ``wss``; other scopes go to ``fallback`` (or get a 426)."""

    def __init__(self, wss: WebSocketServer, fallback: Callable[..., Awaitable[None]] | None = None) -> None:
        if not isinstance(wss, WebSocketServer):
            raise TypeError(f"ASGIApp needs a WebSocketServer, got {type(wss).__name__}")
        if fallback is not None and not callable(fallback):
            raise TypeError(f"fallback must be an ASGI application, got {type(fallback).__name__}")
        self.wss = wss
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif self.fallback is not None:
            await self.fallback(scope, receive, send)
        elif kind == "http":
            await _upgrade_required(send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.wss._going_away()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- one WebSocket connection ------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        wss = self.wss
        wss._rebind(asyncio.get_running_loop())
        message = await receive()
        if message.get("type") != "websocket.connect":
            return
        request = request_from_scope(scope)
        slot = self._admit(scope, request)
        if isinstance(slot, Refused):
            wss._report(slot, request)
            await _reject(scope, send, slot)
            return
        try:
            sock = await self._open(scope, request, send)
        except BaseException:  # cancelled (the client left) or the ASGI server failed us
            slot.release()
            raise
        if sock is None:
            slot.release()
            return
        wss._adopt(sock, slot)
        wss.emit("connection", sock, request)
        await sock._run(receive)

    async def _open(self, scope: Scope, request: Request, send: Send) -> ASGIWebSocket | None:
        """The user's hooks, then ``websocket.accept`` and the socket; ``None`` once refused."""
        wss = self.wss
        try:
            offered = [str(p) for p in scope.get("subprotocols") or ()]
            decided = admit(request, wss._policy(), offered)
            # verify_client answers later (Node's callback, an async def): wait for it, bounded.
            decision = await wss._verdict(decided) if isinstance(decided, Pending) else decided
        except Exception as exc:  # a bug of ours: answer, report, keep serving
            logger.exception("WebSocket handshake failed")
            wss.emit("error", exc)
            decision = Refused(500, "Internal Server Error")
        if isinstance(decision, Refused):
            wss._report(decision, request)
            await _reject(scope, send, decision)
            return None
        decision = wss._edit_headers(decision, request)
        await send({"type": "websocket.accept", "subprotocol": decision.subprotocol, "headers": _accept_headers(decision)})
        return ASGIWebSocket._from_scope(
            request, decision.subprotocol or "", send, wss.loop, wss._new_socket_options(), wss._socket_closed
        )

    def _path_matches(self, scope: Scope, request: Request) -> bool:
        """``path='/'`` (the default) takes every path the ASGI router sends here."""
        path = self.wss.path
        if path == "/" or request.path == path:
            return True
        root = scope.get("root_path") or ""
        return bool(root) and request.path.startswith(root) and request.path[len(root):] == path

    def _admit(self, scope: Scope, request: Request) -> Slot | Refused:
        """Closed, wrong path, or past a connection limit: the refusal; else the connection's slot.

        The ASGI server already checked the request and negotiates extensions;
        the user's hooks run after this (``_open``), as on the server's own path.
        """
        wss = self.wss
        if not wss._accepting():
            return Refused(503, "WebSocket server is closed")
        if not self._path_matches(scope, request):
            return Refused(404, "Not Found")
        return wss.admit(request)


class ASGIWebSocket(WebSocket):
    """A server-side ``WebSocket`` driven by ASGI events instead of a transport.

    Everything above the wire is inherited (events, ``send`` argument rules,
    thread hopping, ``recv``/``async for``, close-code checks).  It plugs in
    through ``WebSocket``'s one seam for hosts that frame themselves, a
    :class:`~ws.connection.websocket.MessageLink` (here :class:`_ASGILink`:
    sending queues ASGI messages for one writer coroutine); receiving
    delivers ASGI events as messages.
    """

    _asgi: "_ASGILink"

    @classmethod
    def _from_scope(
        cls,
        request: Request,
        subprotocol: str,
        send: Send,
        loop: asyncio.AbstractEventLoop,
        options: dict[str, Any],
        on_finish: Callable[[WebSocket], object],
    ) -> ASGIWebSocket:
        """A socket for one accepted ASGI connection; ``on_finish`` runs once it is closed."""
        self = cls.__new__(cls)
        EventEmitter.__init__(self)
        self._setup(loop, is_server=True, options=options, rate=options.get("rate_policy"))
        self._request = request
        self._when_finished(on_finish)
        self._url = request.url
        self._subprotocol = subprotocol
        self._remote_address = request.remote_address
        self._ready_state = OPEN
        self._asgi = self._link = _ASGILink(self, send, options, loop)
        self._ref.hold()
        return self

    async def _run(self, receive: Receive) -> None:
        """Deliver the ASGI server's events until the connection ends."""
        link = self._asgi
        link.runner = asyncio.current_task()
        writer = self._loop.create_task(link.write_all())
        try:
            # Let async 'connection' listeners start (and reach their first
            # recv()) before any message is delivered.  Inside the try: a
            # terminate() from a listener cancels us here already.
            await asyncio.sleep(0)
            while self._ready_state != CLOSED:
                if not link.reading.is_set():
                    await link.reading.wait()
                message = await receive()
                kind = message.get("type")
                if kind == "websocket.receive":
                    self._received(message)
                elif kind == "websocket.disconnect":
                    self._finish(int(message.get("code") or 1005), str(message.get("reason") or ""))
        except asyncio.CancelledError:
            if not link.terminated:
                raise
        except Exception as exc:  # the ASGI server failed us: the connection is gone
            logger.debug("ASGI receive failed: %r", exc)
        finally:
            writer.cancel()
            if self._ready_state != CLOSED:
                self._finish(1006, "")

    def _received(self, message: MutableMapping[str, Any]) -> None:
        text = message.get("text")
        data: str | bytes = text if text is not None else bytes(message.get("bytes") or b"")
        if self.max_payload is not None and len(data) > self.max_payload:
            self._close_now(1009, "message too big")
            return
        rate = self._rate
        if rate is None:
            self._deliver(TEXT if text is not None else BINARY, data)
            return
        rate.now = monotonic()  # one message per ASGI event: its own clock read
        rate.offer(TEXT if text is not None else BINARY, data)


class _ASGILink:
    """Sends a socket's messages as ASGI messages, in order, through one writer coroutine."""

    def __init__(self, sock: ASGIWebSocket, send: Send, options: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.asgi_send = send
        self.outbox: collections.deque[tuple[dict[str, Any], int]] = collections.deque()
        self.outbox_bytes = 0
        self.fragments: tuple[bool, list[bytes]] | None = None
        high: int = options.get("high_water_mark", DEFAULT_HIGH_WATER)
        low: int = options.get("low_water_mark", DEFAULT_LOW_WATER)
        # Above the high-water mark the socket counts as blocked ('drain' later) until the outbox is down to low.
        self.gate = FlowGate(high + 1, min(low, high), sock._writing_blocked, sock._writing_resumed)
        self.wakeup = asyncio.Event()
        self.reading = asyncio.Event()
        self.reading.set()
        self.runner: asyncio.Task[Any] | None = None
        self.terminated = False
        self.close_timer: asyncio.TimerHandle | None = None
        sock._when_finished(self._finished)

    @property
    def buffered(self) -> int:
        return self.outbox_bytes

    def send(self, is_text: bool, payload: bytes, fin: bool) -> None:
        # ASGI sends whole messages only: fragments (send(fin=False)) are
        # gathered here and leave as one message when the last one comes.
        pending = self.fragments
        if not fin or pending is not None:
            if pending is None:
                self.fragments = pending = (is_text, [])
            pending[1].append(payload)
            if not fin:
                return
            self.fragments = None
            is_text, payload = pending[0], b"".join(pending[1])
        message: dict[str, Any]
        if is_text:
            try:
                message = {"type": "websocket.send", "text": payload.decode()}
            except UnicodeDecodeError as exc:
                self.sock._emit_error(ValueError(f"a text message must be valid UTF-8: {exc}"))
                return
        else:
            message = {"type": "websocket.send", "bytes": payload}
        self._enqueue(message, len(payload))

    def control(self, opcode: Any, payload: bytes) -> None:
        logger.debug("ping/pong frames are the ASGI server's job; %s not sent", opcode.name)

    def close(self, code: int | None, reason: str) -> None:
        self._enqueue({"type": "websocket.close", "code": code or 1000, "reason": reason}, 0)
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(self.sock.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self.close_timer = None
        self.abort()

    def abort(self) -> None:
        sock = self.sock
        if sock.ready_state == CLOSED:
            return
        self.terminated = True
        sock._finish(1006, "")
        runner = self.runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()  # the application returns; the ASGI server closes the connection

    def hold_reading(self, held: bool) -> None:
        if held:
            self.reading.clear()
        else:
            self.reading.set()

    def _finished(self, sock: WebSocket) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None

    def _enqueue(self, message: dict[str, Any], size: int) -> None:
        self.outbox.append((message, size))
        self.outbox_bytes += size
        self.gate.added(self.outbox_bytes)
        self.wakeup.set()

    async def write_all(self) -> None:
        while True:
            while not self.outbox:
                self.wakeup.clear()
                await self.wakeup.wait()
            message, size = self.outbox.popleft()
            try:
                await self.asgi_send(message)
            except Exception as exc:  # the peer is gone; receive() reports the disconnect
                logger.debug("ASGI send failed: %r", exc)
                self.outbox.clear()
                self.outbox_bytes = 0
                return
            self.outbox_bytes -= size
            self.gate.removed(self.outbox_bytes)
            if message["type"] == "websocket.close":
                return


def request_from_scope(scope: Scope) -> Request:
    """The request helper for an ASGI ``websocket`` (or ``http``) scope."""
    raw_path = scope.get("raw_path")
    target = raw_path.decode("latin-1") if raw_path else quote(scope.get("path") or "/")
    query = scope.get("query_string") or b""
    if query:
        target += "?" + query.decode("latin-1")
    headers = [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in scope.get("headers") or ()]
    return Request(
        "GET",
        target,
        headers,
        http_version=str(scope.get("http_version") or "1.1"),
        peername=tuple(scope["client"]) if scope.get("client") else None,
        secure=scope.get("scheme") == "wss",
    )


def _accept_headers(accepted: Accepted) -> list[tuple[bytes, bytes]]:
    """The 101's headers for ``websocket.accept``: those the ASGI server does not write itself."""
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in accepted.headers
        if name.lower() not in _SERVER_HEADERS
    ]


def _plain(refused: Refused) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A refusal as ASGI response headers and a plain-text body."""
    body = (refused.reason.rstrip("\n") + "\n").encode()
    pairs = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    pairs += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in refused.headers]
    return pairs, body


async def _reject(scope: Scope, send: Send, refused: Refused) -> None:
    """A refusal as an HTTP response if the ASGI server offers that extension, else a close before accept."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers, body = _plain(refused)
        await send({"type": "websocket.http.response.start", "status": refused.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        reason = refused.reason or phrase(refused.status)
        await send({"type": "websocket.close", "code": 1008, "reason": f"{refused.status} {reason}"[:123]})


async def _upgrade_required(send: Send) -> None:
    headers, body = _plain(Refused(426, "426 Upgrade Required: this is a WebSocket endpoint", (("Upgrade", "websocket"),)))
    await send({"type": "http.response.start", "status": 426, "headers": headers})
    await send({"type": "http.response.body", "body": body})
