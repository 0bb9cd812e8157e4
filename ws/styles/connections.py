"""connect / disconnect / message handlers with connection ids.

    from ws.styles.connections import websocket

    socket = websocket(server, 'socket')           # ws://host:port/socket (seed: server.websocket('socket'))

    @socket.on('connect')
    async def connect(ctx):
        if ctx.req.query.get('token') != ['secret']:
            ctx.res.success = False                 # the client gets 403, no WebSocket opens

    @socket.on('message')
    async def message(ctx):
        await socket.send(ctx.req.connection_id, {'echo': ctx.req.data})

Each connection gets an id at connect time that stays valid until it
closes; ``socket.send(id, data)`` and ``socket.close(id)`` work from any
handler, task or thread (``await`` them, or not, in plain code).  The
connect handlers run while the upgrade waits, before the 101.  Connection
metadata (id, query, address, time) goes to a key-value store behind
``KeyValueStore`` (``MemoryStore`` unless given) until disconnect.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from typing import Any, Callable, Generator, Protocol

from .._runtime.emitter import adapt_arity, spawn
from .._runtime.log import report_error
from ..exceptions import ConnectionNotFound
from .messages import decode, encode
from .endpoints import join_path
from ..request import Request
from ..protocol.handshake import Refused
from ..server import WebSocketServer, write_refusal
from ..connection.websocket import OPEN, WebSocket
from ..upgrade import UpgradeHandler, UpgradeHost

__all__ = [
    "websocket",
    "Socket",
    "EventContext",
    "ConnectionRequest",
    "ConnectionResponse",
    "ConnectionNotFound",
    "KeyValueStore",
    "MemoryStore",
    "kv",
    "EVENTS",
]

logger = logging.getLogger("ws.connections")

EVENTS = ("connect", "disconnect", "message")
DEFAULT_CONNECT_TIMEOUT = 10.0


# -- key-value stores -------------------------------------------------------------------


class KeyValueStore(Protocol):
    """Where connection metadata is kept; async so that a remote store fits."""

    async def get(self, key: str, default: Any = None) -> Any: ...

    async def set(self, key: str, value: Any) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def keys(self, prefix: str = "") -> list[str]: ...


class MemoryStore:
    """A ``KeyValueStore`` in this process (thread-safe)."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()

    async def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"key must be a string, got {type(key).__name__}")
        with self._lock:
            self._data[key] = value

    async def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    async def keys(self, prefix: str = "") -> list[str]:
        with self._lock:
            return [key for key in self._data if key.startswith(prefix)]


_stores: dict[str, MemoryStore] = {}
_stores_lock = threading.Lock()


def kv(name: str) -> MemoryStore:
    """The process-wide in-memory store called ``name`` (created on first use)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"store name must be a non-empty string, got {name!r}")
    with _stores_lock:
        return _stores.setdefault(name, MemoryStore())


# -- what handlers receive -------------------------------------------------------------------


class ConnectionRequest:
    """``ctx.req``: ``connection_id``, ``query`` (name -> list of values), ``data``, ``request``."""

    __slots__ = ("connection_id", "query", "data", "request")

    def __init__(self, connection_id: str, request: Request, data: str | bytes | None = None) -> None:
        self.connection_id = connection_id
        self.query: dict[str, list[str]] = {k: list(v) for k, v in request.params.items()}
        self.data = data
        self.request = request

    def json(self) -> Any:
        """``data`` parsed as JSON (the raw data when it is not JSON)."""
        return None if self.data is None else decode(self.data)

    @property
    def connectionId(self) -> str:
        """JavaScript spelling of ``connection_id`` (a slot, so not a plain alias)."""
        return self.connection_id

    @connectionId.setter
    def connectionId(self, value: str) -> None:
        self.connection_id = value


class ConnectionResponse:
    """``ctx.res``: set ``success = False`` in a connect handler to refuse the connection."""

    __slots__ = ("success",)

    def __init__(self) -> None:
        self.success = True


class EventContext:
    """What ``connect``/``message``/``disconnect`` handlers get: ``req``, ``res``, ``socket``."""

    __slots__ = ("event", "req", "res", "socket")

    def __init__(self, event: str, socket: "Socket", req: ConnectionRequest) -> None:
        self.event = event
        self.socket = socket
        self.req = req
        self.res = ConnectionResponse()


class _Done:
    """An already finished awaitable: ``await socket.send(...)`` and plain calls both work."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


_DONE = _Done()


# -- the socket ---------------------------------------------------------------------------------


class Socket:
    """A named WebSocket endpoint with ``connect``/``disconnect``/``message`` handlers.

    Towards its ``WebSocketServer`` it poses as the HTTP server, so that the
    connect handlers can run (and refuse) before the handshake is answered.
    """

    def __init__(
        self,
        server: Any,
        name: str,
        *,
        prefix: str = "/",
        store: KeyValueStore | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        **options: Any,
    ) -> None:
        if not isinstance(name, str) or not name.strip("/"):
            raise TypeError(f"websocket name must be a non-empty string, got {name!r}")
        if not isinstance(server, UpgradeHost):
            raise TypeError(f"server must be a ws.http.Server, got {type(server).__name__}")
        if "verify_client" in options or "verifyClient" in options:
            raise TypeError("use a 'connect' handler to accept or refuse connections, not verify_client")
        self.name = name
        self.server = server
        self.path = join_path(prefix, name)
        self.store: KeyValueStore = store if store is not None else MemoryStore()
        self.connect_timeout = connect_timeout
        self._handlers: dict[str, list[Callable[[EventContext], Any]]] = {event: [] for event in EVENTS}
        self._open: dict[str, WebSocket] = {}
        self._inner: UpgradeHandler | None = None
        self.wss = WebSocketServer(server=self, path=self.path, **options)
        self.wss.on("connection", self._connected)

    # -- handlers --

    def on(self, event: str, *handlers: Callable[[EventContext], Any]) -> Any:
        """Add handlers for ``'connect'``, ``'disconnect'`` or ``'message'``; a decorator without them.

        Handlers (plain or ``async def``) run in order; a connect handler
        that sets ``ctx.res.success = False`` stops the chain and refuses.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown websocket event {event!r} (expected {', '.join(EVENTS)})")
        for handler in handlers:
            if not callable(handler):
                raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        if not handlers:

            def decorator(fn: Callable[[EventContext], Any]) -> Callable[[EventContext], Any]:
                self.on(event, fn)
                return fn

            return decorator
        self._handlers[event].extend(adapt_arity(handler) for handler in handlers)
        return handlers[0]

    # -- pushing to connections --

    def send(self, connection_id: str, data: Any) -> _Done:
        """Send ``data`` (dicts and lists as JSON) to one open connection; safe from any thread.

        Raises ``ConnectionNotFound`` for an unknown or closed id.
        """
        self._socket_for(connection_id).send(encode(data))
        return _DONE

    def close(self, connection_id: str, code: int = 1000, reason: str = "") -> _Done:
        """Close one open connection; ``ConnectionNotFound`` for an unknown or closed id."""
        self._socket_for(connection_id).close(code, reason)
        return _DONE

    def connections(self) -> list[str]:
        """The ids of the open connections."""
        return [cid for cid, ws in list(self._open.items()) if ws.ready_state == OPEN]

    def _socket_for(self, connection_id: str) -> WebSocket:
        ws = self._open.get(connection_id)
        if ws is None or ws.ready_state != OPEN:
            raise ConnectionNotFound(f"websocket {self.name!r} has no open connection with id {connection_id!r}")
        return ws

    # -- posing as the HTTP server of self.wss --

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.server.loop

    @property
    def address(self) -> str | None:
        return self.server.address

    def add_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        self.server.add_upgrade_handler(path, self)
        self._inner = handler

    def remove_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        self.server.remove_upgrade_handler(path, self)

    def handle_upgrade(self, request: Request, transport: asyncio.Transport, head: bytes) -> None:
        request.state.connection_id = uuid.uuid4().hex
        if not self._handlers["connect"]:
            self._accept(request, transport, head)
            return
        transport.pause_reading()  # nothing is read until the connect handlers decided
        spawn(self._decide(request, transport, head), what=f"connect of websocket {self.name!r}")

    async def _decide(self, request: Request, transport: asyncio.Transport, head: bytes) -> None:
        ctx = EventContext("connect", self, ConnectionRequest(request.state.connection_id, request))
        try:
            await asyncio.wait_for(self._run(ctx, self._handlers["connect"]), self.connect_timeout)
        except asyncio.TimeoutError:
            logger.error("connect handlers of websocket %r took more than %s s", self.name, self.connect_timeout)
            write_refusal(transport, Refused(503, "Service Unavailable: the connect handler timed out"))
            return
        except Exception as exc:
            report_error(logger, "connect handler of websocket %r raised", self.name, error=exc)
            write_refusal(transport, Refused(500, "Internal Server Error"))
            return
        if not ctx.res.success:
            write_refusal(transport, Refused(403, "Forbidden: the connection was refused"))
            return
        if transport.is_closing():
            return
        transport.resume_reading()
        self._accept(request, transport, head)

    def _accept(self, request: Request, transport: asyncio.Transport, head: bytes) -> None:
        assert self._inner is not None
        self._inner.handle_upgrade(request, transport, head)

    async def _run(self, ctx: EventContext, handlers: list[Callable[[EventContext], Any]], first: Any = None) -> None:
        """Await ``first`` (if given), then run ``handlers`` in order, awaiting the async ones."""
        if first is not None:
            await first
        for handler in handlers:
            if not ctx.res.success:
                return
            result = handler(ctx)
            if result is not _DONE and inspect.isawaitable(result):
                await result

    async def _run_logged(self, ctx: EventContext, handlers: list[Callable[[EventContext], Any]], first: Any = None) -> None:
        try:
            await self._run(ctx, handlers, first)
        except Exception as exc:
            report_error(logger, "%s handler of websocket %r raised", ctx.event, self.name, error=exc)

    def _dispatch(self, ctx: EventContext) -> None:
        """Run the handlers of ``ctx.event``: inline while they are plain functions, in a task from the first async one."""
        handlers = self._handlers[ctx.event]
        for index, handler in enumerate(handlers):
            if not ctx.res.success:
                return
            try:
                result = handler(ctx)
            except Exception as exc:
                report_error(logger, "%s handler of websocket %r raised", ctx.event, self.name, error=exc)
                return
            if result is not _DONE and inspect.isawaitable(result):  # (a lambda returning socket.send's result)
                spawn(self._run_logged(ctx, handlers[index + 1 :], result), what=f"{ctx.event} handler")
                return

    # -- open connections --

    def _connected(self, ws: WebSocket, request: Request) -> None:
        connection_id: str = request.state.connection_id
        self._open[connection_id] = ws
        metadata = {
            "connection_id": connection_id,
            "query": {k: list(v) for k, v in request.params.items()},
            "remote_address": request.remote_address,
            "connected_at": time.time(),
        }
        spawn(self.store.set(connection_id, metadata), what="connection store set")
        ws.on("error", lambda exc: logger.debug("websocket %r connection %s: %s", self.name, connection_id, exc))
        if self._handlers["message"]:
            ws.on("message", lambda event: self._message(connection_id, request, event.data))
        ws.on("close", lambda code, reason: self._disconnected(connection_id, request))

    def _message(self, connection_id: str, request: Request, data: str | bytes) -> None:
        self._dispatch(EventContext("message", self, ConnectionRequest(connection_id, request, data)))

    def _disconnected(self, connection_id: str, request: Request) -> None:
        self._open.pop(connection_id, None)
        ctx = EventContext("disconnect", self, ConnectionRequest(connection_id, request))

        async def finish() -> None:
            await self._run_logged(ctx, self._handlers["disconnect"])
            await self.store.delete(connection_id)

        spawn(finish(), what="disconnect handler")

    def __repr__(self) -> str:
        return f"<Socket {self.name!r} at {self.path} open={len(self._open)}>"


def websocket(server: Any, name: str, **options: Any) -> Socket:
    """The named socket ``name`` on ``server`` (seed idiom: ``server.websocket(name)``).

    ``options``: ``prefix``, ``store``, ``connect_timeout`` and the
    ``WebSocketServer`` options; see ``Socket``.
    """
    return Socket(server, name, **options)

