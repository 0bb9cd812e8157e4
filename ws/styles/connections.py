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

With a backplane (the HTTP server's, or ``backplane=``) the ids are the
cluster's: ``send``/``close`` of an id held by another node find its node
(presence, ``locate``) and go through that node's channel,
``direct:{path}@{node}``.  They return a ``Delivery`` then: ``await`` it to
learn the outcome (``ConnectionNotFound`` once the cluster has been asked,
``BackplaneError`` when the backplane could not carry it); one nobody awaits
reports its failure as an ``'error'`` of ``socket.wss``.  ``kv(name)``
stores live in the backplane's store once a server brought one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import threading
import time
import uuid
from typing import Any, Callable, Generator, Protocol

from .._runtime import loop as _loop
from .._runtime.emitter import adapt_arity, spawn
from .._runtime.log import report_error
from ..backplane.base import BackplaneError, Message
from ..backplane.link import Link
from ..cluster import path_group
from ..exceptions import ConnectionNotFound
from . import cluster as _cluster
from .messages import decode, encode
from .endpoints import join_path
from ..request import Request
from ..protocol.handshake import Refused, check_origin
from ..protocol.limits import Slot
from ..server import WebSocketServer
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
    "Delivery",
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


class SharedStore(MemoryStore):
    """``kv(name)``: in this process, or in the backplane's store once a server brought one.

    On a backplane (``ws.styles.cluster``) the values are JSON, under the
    backplane's keys ``kv:{name}:{key}`` (``{prefix}kv:kv:...`` in Redis),
    and every node sees the same ones.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def _key(self, key: str) -> str:
        if not isinstance(key, str):
            raise TypeError(f"key must be a string, got {type(key).__name__}")
        return f"kv:{self.name}:{key}"

    async def get(self, key: str, default: Any = None) -> Any:
        link = _cluster.link()
        if link is None:
            return await super().get(key, default)
        name = self._key(key)
        raw = await link.call(lambda: link.backplane.get(name))
        return default if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any) -> None:
        link = _cluster.link()
        if link is None:
            return await super().set(key, value)
        name = self._key(key)
        try:
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"a kv() value on a backplane must be JSON-serializable ({exc})") from None
        await link.call(lambda: link.backplane.set(name, data))

    async def delete(self, key: str) -> None:
        link = _cluster.link()
        if link is None:
            return await super().delete(key)
        name = self._key(key)
        await link.call(lambda: link.backplane.delete(name))

    async def keys(self, prefix: str = "") -> list[str]:
        link = _cluster.link()
        if link is None:
            return await super().keys(prefix)
        base = self._key("")
        found = await link.call(lambda: link.backplane.keys(base + prefix))
        return [key[len(base) :] for key in found]


_stores: dict[str, SharedStore] = {}
_stores_lock = threading.Lock()


def kv(name: str) -> MemoryStore:
    """The process-wide store called ``name`` (created on first use; shared by the cluster on a backplane)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"store name must be a non-empty string, got {name!r}")
    with _stores_lock:
        return _stores.setdefault(name, SharedStore(name))


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


class Delivery:
    """What ``send``/``close`` return for a connection held by another node.

    ``await delivery`` (or ``delivery.result(timeout)`` in a thread) waits
    until the owning node's channel took the message; it raises
    ``ConnectionNotFound`` when no live node has the id, and
    ``BackplaneError`` when the backplane could not carry it.  A failure
    nobody awaits is emitted as ``'error'`` on ``socket.wss`` (logged when
    nobody listens): never dropped silently.  Delivery to the client itself
    is at most once, as every pub/sub hop is.
    """

    __slots__ = ("_future", "_awaited", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._awaited = False
        self._loop = loop  # the server's: the one that settles it

    def __await__(self) -> Generator[Any, None, None]:
        self._awaited = True
        return asyncio.wrap_future(self._future).__await__()

    def result(self, timeout: float | None = None) -> None:
        """Block until done (from a thread); raises as ``await`` does.

        ``RuntimeError`` on the server's own event loop, which settles it and
        would wait for itself forever: there, ``await delivery``.
        """
        if self._loop is not None and _loop.in_loop(self._loop):
            raise RuntimeError("delivery.result() would block the server's event loop, which delivers it: use 'await delivery' there")
        self._awaited = True
        self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()

    def __repr__(self) -> str:
        return f"<Delivery {'done' if self._future.done() else 'pending'}>"


_SEND_TEXT, _SEND_BYTES, _CLOSE = b"t", b"b", b"c"


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
        self.wss = WebSocketServer(server=self, path=self.path, **options)
        self.wss.on("connection", self._connected)
        _cluster.adopt(server)
        self._link: Link | None = None
        self._outgoing: list[tuple[bytes, str, bytes, Delivery]] = []
        self._publishing: set[asyncio.Task[None]] = set()
        backplane = self.wss.backplane
        if backplane is not None:
            self._link = Link(backplane, self.wss.loop, self._failed)
            self._link.apply(self._listen)

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

    def send(self, connection_id: str, data: Any) -> "_Done | Delivery":
        """Send ``data`` (dicts and lists as JSON) to one open connection; safe from any thread.

        Raises ``ConnectionNotFound`` for an unknown or closed id.  With a
        backplane, an id this node does not hold is looked up in the
        cluster: the ``Delivery`` returned raises it when awaited.
        """
        payload = encode(data)
        ws = self._socket_for(connection_id)
        if ws is None:
            if isinstance(payload, str):
                return self._remote(_SEND_TEXT, connection_id, payload.encode())
            return self._remote(_SEND_BYTES, connection_id, payload)
        ws.send(payload)
        return _DONE

    def close(self, connection_id: str, code: int = 1000, reason: str = "") -> "_Done | Delivery":
        """Close one open connection; ``ConnectionNotFound`` for an unknown or closed id (see ``send``)."""
        ws = self._socket_for(connection_id)
        if ws is None:
            return self._remote(_CLOSE, connection_id, json.dumps([code, reason]).encode())
        ws.close(code, reason)
        return _DONE

    async def send_async(self, connection_id: str, data: Any) -> None:
        """``send``, waiting for the cluster's answer when the connection is on another node."""
        await self.send(connection_id, data)

    async def close_async(self, connection_id: str, code: int = 1000, reason: str = "") -> None:
        """``close``, waiting for the cluster's answer when the connection is on another node."""
        await self.close(connection_id, code, reason)

    def connections(self) -> list[str]:
        """The ids of the open connections of this node."""
        return [cid for cid, ws in list(self._open.items()) if ws.ready_state == OPEN]

    async def connections_async(self) -> list[str]:
        """The ids of the open connections of every node (this node's without a backplane), sorted."""
        if self.wss.backplane is None:
            return sorted(self.connections())
        return sorted({member.member for member in await self.wss.members_async()})

    async def count_async(self) -> int:
        """How many connections are open on every node (this node's without a backplane)."""
        return await self.wss.count_async()

    @property
    def backplane(self) -> Any:
        """The HTTP server's backplane (towards ``self.wss``, which takes it unless given its own)."""
        return getattr(self.server, "backplane", None)

    def _socket_for(self, connection_id: str) -> WebSocket | None:
        """This node's open socket of ``connection_id``; ``None`` when the cluster must be asked."""
        ws = self._open.get(connection_id)
        if ws is None and self._link is not None:
            return None
        if ws is None or ws.ready_state != OPEN:
            raise ConnectionNotFound(f"websocket {self.name!r} has no open connection with id {connection_id!r}")
        return ws

    # -- connections held by other nodes --

    def _remote(self, op: bytes, connection_id: str, payload: bytes) -> Delivery:
        delivery = Delivery(self.wss.loop)
        _loop.call(self.wss.loop, self._queue, (op, connection_id, payload, delivery))
        return delivery

    def _queue(self, item: tuple[bytes, str, bytes, Delivery]) -> None:
        backplane = self.wss.backplane
        if backplane is not None and not backplane.started:  # never a wait with no end: fail now
            state = "closed" if backplane.closed else "not started (the server is not serving)"
            self._settle(item[3], BackplaneError(f"cannot reach connection {item[1]!r} on another node: the backplane is {state}"))
            return
        self._outgoing.append(item)
        if len(self._outgoing) == 1:
            assert self._link is not None
            self._link.apply(self._send_queued)

    async def _send_queued(self) -> None:
        """Find the nodes of the queued ids (one lookup each), then publish to them in the order sent."""
        items, self._outgoing = self._outgoing, []
        backplane = self.wss.backplane
        assert backplane is not None
        ids = sorted({item[1] for item in items})
        try:
            found = await asyncio.gather(*(backplane.locate(path_group(self.path), cid) for cid in ids))
        except BackplaneError as exc:
            for item in items:
                self._settle(item[3], exc)
            return
        where = dict(zip(ids, found))
        for op, cid, payload, delivery in items:
            member = where[cid]
            if member is None or member.node == backplane.node_id:
                self._settle(delivery, self._not_found(cid))
                continue
            task = asyncio.get_running_loop().create_task(self._publish(member.node, op, cid, payload, delivery))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def _publish(self, node: str, op: bytes, cid: str, payload: bytes, delivery: Delivery) -> None:
        backplane = self.wss.backplane
        assert backplane is not None
        try:
            reached = await backplane.publish(self._channel(node), op + cid.encode() + b"\0" + payload)
        except BackplaneError as exc:
            self._settle(delivery, exc)
            return
        self._settle(delivery, None if reached else self._not_found(cid, node))

    def _not_found(self, cid: str, node: str | None = None) -> ConnectionNotFound:
        where = f" (its node {node} does not answer)" if node else " on any node"
        return ConnectionNotFound(f"websocket {self.name!r} has no open connection with id {cid!r}{where}")

    def _settle(self, delivery: Delivery, error: BaseException | None) -> None:
        """Resolve ``delivery``; one its caller gave up on (cancelled) is skipped, not the rest of its batch."""
        try:
            if error is None:
                delivery._future.set_result(None)
                return
            delivery._future.set_exception(error)
        except concurrent.futures.InvalidStateError:  # cancelled by a caller that stopped waiting
            return
        self.wss.loop.call_soon(self._unclaimed, delivery, error)  # one turn for the caller to await it

    def _unclaimed(self, delivery: Delivery, error: BaseException) -> None:
        if not delivery._awaited:
            self.wss.emit("error", error)

    def _channel(self, node: str) -> str:
        return f"direct:{self.path}@{node}"

    async def _listen(self) -> None:
        backplane = self.wss.backplane
        assert backplane is not None
        subscription = await backplane.subscribe(self._channel(backplane.node_id), self._received)
        assert self._link is not None
        link = self._link
        self.wss.once("close", lambda: link.close(subscription.unsubscribe))

    def _received(self, message: Message) -> None:
        """Another node's ``send``/``close`` for a connection of ours."""
        op, data = message.data[:1], message.data[1:]
        raw_id, _, payload = data.partition(b"\0")
        cid = raw_id.decode()
        ws = self._open.get(cid)
        if ws is None or ws.ready_state != OPEN:
            logger.debug("websocket %r: %s from node %s for connection %s, which has closed", self.name, op, message.origin, cid)
            return
        if op == _SEND_TEXT:
            ws.send(payload.decode())
        elif op == _SEND_BYTES:
            ws.send(payload)
        elif op == _CLOSE:
            code, reason = json.loads(payload)
            ws.close(code, reason)

    def _failed(self, exc: BaseException) -> None:
        self.wss.emit("error", exc)

    # -- posing as the HTTP server of self.wss --

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.server.loop

    @property
    def address(self) -> str | None:
        return self.server.address

    def add_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        self.server.add_upgrade_handler(path, self)  # (handler is self.wss, which it reaches directly)

    def remove_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        self.server.remove_upgrade_handler(path, self)

    def handle_upgrade(self, request: Request, transport: asyncio.Transport, head: bytes) -> None:
        request.state.connection_id = uuid.uuid4().hex
        # Admitted first, as on the server's own path: the connect handlers see the client's address
        # (trusted_proxies), and no more of them run at once than max_connections lets in.
        slot = self.wss.admit(request)
        if isinstance(slot, Refused):
            self.wss._refuse(request, transport, slot)
            return
        # A page allowed_origins does not list is refused before any connect handler sees its cookies.
        refused = check_origin(request, self.wss._policy())
        if refused is not None:
            slot.release()
            self.wss._refuse(request, transport, refused)
            return
        if not self._handlers["connect"]:
            self.wss.handle_upgrade(request, transport, head, slot=slot)
            return
        transport.pause_reading()  # nothing is read until the connect handlers decided
        spawn(self._decide(request, transport, head, slot), what=f"connect of websocket {self.name!r}")

    async def _decide(self, request: Request, transport: asyncio.Transport, head: bytes, slot: Slot) -> None:
        """Run the connect handlers, then hand ``slot`` on to the handshake, or give it back (refused, gone, failed)."""
        try:
            refused = await self._connect_verdict(request)
            if refused is None and not transport.is_closing():
                transport.resume_reading()
                self.wss.handle_upgrade(request, transport, head, slot=slot)  # the handshake holds it from here
                return
        except BaseException:
            slot.release()
            raise
        slot.release()
        if refused is not None:
            self.wss._refuse(request, transport, refused)

    async def _connect_verdict(self, request: Request) -> Refused | None:
        """The connect handlers' refusal (403, or 503/500 when they time out or raise), or ``None``: admitted."""
        ctx = EventContext("connect", self, ConnectionRequest(request.state.connection_id, request))
        try:
            await asyncio.wait_for(self._run(ctx, self._handlers["connect"]), self.connect_timeout)
        except asyncio.TimeoutError:
            logger.error("connect handlers of websocket %r took more than %s s", self.name, self.connect_timeout)
            return Refused(503, "Service Unavailable: the connect handler timed out")
        except Exception as exc:
            report_error(logger, "connect handler of websocket %r raised", self.name, error=exc)
            return Refused(500, "Internal Server Error")
        if not ctx.res.success:
            return Refused(403, "Forbidden: the connection was refused")
        return None

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

