"""A ``WebSocketServer``'s share of a cluster: its path's channel and its connections' presence.

Loaded only when a server has a backplane (``backplane=``, its HTTP
server's, or ``WS_BACKPLANE``): a server without one never imports this
module or ``ws.backplane``.

* **Broadcast.**  One channel per path, ``path:{path}``, subscribed by the
  nodes that serve the path (each ``WebSocketServer`` with a backplane, from
  the moment the backplane has started until the server has closed).
  ``publish`` sends ``kind + payload`` (one byte, 1 text or 2 binary); a node
  that receives it frames it once and writes it to its own clients.  The
  publishing node is left out by the backplane: it delivered locally
  already.
* **Presence.**  Each open connection is tracked in the group
  ``path:{path}`` under its id (the connections style's ``connection_id``,
  else a fresh random id).  The group ``paths`` holds the paths each node
  serves, so that a total over every path needs no scan.
* **Recovery** (``recovery=``): broadcasts are recorded on the path's
  channel instead, with positions, and reach this node's clients through
  it too (``ws.recovery``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any, Callable

from ._runtime import loop as _loop
from .backplane.base import Backplane, Member, Message
from .backplane.history import Recovery
from .backplane.link import Link
from .recovery import PathRecovery, Send, requested_position

if TYPE_CHECKING:
    from .connection.websocket import WebSocket
    from .request import Request

__all__ = ["PathCluster", "PATHS", "path_group"]

#: The presence group whose members are the paths served, one entry per node and path.
PATHS = "paths"

_TEXT, _BINARY = b"\x01", b"\x02"


def path_group(path: str) -> str:
    """The channel and the presence group of the clients of ``path``."""
    return f"path:{path}"


class PathCluster:
    """One ``WebSocketServer``'s use of a backplane (see the module documentation).

    ``deliver(is_text, payload)`` is the server's local broadcast;
    ``on_error(exc)`` its ``'error'`` event.  With ``owned`` the server
    acquires the backplane itself (it was given its own ``backplane=``); else
    the HTTP server that serves it does, and this waits for that.
    """

    def __init__(
        self,
        backplane: Backplane,
        loop: asyncio.AbstractEventLoop,
        path: str,
        deliver: Callable[[bool, bytes], int],
        on_error: Callable[[BaseException], None],
        *,
        owned: bool,
        recovery: Recovery | None = None,
        send: Send | None = None,
        close: Callable[[Any, int, str], Any] | None = None,
    ) -> None:
        self.backplane = backplane
        self.path = path
        self.group = path_group(path)
        self._deliver = deliver
        self._owned = owned
        self._ids: dict[Any, str] = {}  # socket -> its presence id
        self._link = Link(backplane, loop, on_error)
        self._subscription: Any = None
        self._recovery: PathRecovery | None = None
        if recovery is not None:
            if send is None or close is None:
                raise TypeError("a recorded path needs send= and close=")
            self._recovery = PathRecovery(backplane, self.group, recovery, send, close, on_error)
        if owned:
            loop.call_soon_threadsafe(self._acquire)
        self._link.apply(self._attach)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the backplane is used on (the server's when it was made)."""
        return self._link.loop

    # -- lifecycle -------------------------------------------------------------------

    def _acquire(self) -> None:
        async def acquire() -> None:
            try:
                await self.backplane.acquire()
            except Exception as exc:
                self._owned = False  # nothing to release
                self._link.on_error(exc)

        self._link.loop.create_task(acquire())

    async def _attach(self) -> None:
        if self._recovery is not None:
            await self._recovery.start()
        else:
            self._subscription = await self.backplane.subscribe(self.group, self._received)
        await self.backplane.track(PATHS, self.path)

    async def _detach(self) -> None:
        if self._recovery is not None:
            await self._recovery.close()
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        if self.backplane.started:
            await self.backplane.untrack(PATHS, self.path)
        if self._owned:
            self._owned = False
            await self.backplane.release()

    def close(self) -> None:
        """The server closed and its sockets are gone: leave the channel, release an owned backplane."""
        self._link.close(self._detach)

    # -- broadcast -------------------------------------------------------------------

    @property
    def recorded(self) -> bool:
        """Whether broadcasts are recorded (``recovery=``): then they reach this node's clients through the channel too."""
        return self._recovery is not None

    def publish(self, is_text: bool, payload: bytes) -> None:
        """Send a broadcast to the other nodes serving this path (in order; a failure is an ``'error'``).

        Recorded: to every node, this one included, with its position.
        """
        recovery = self._recovery
        if recovery is not None:
            self._link.start(lambda: recovery.publish(is_text, payload))
        else:
            self._link.publish(self.group, (_TEXT if is_text else _BINARY) + payload)

    def _received(self, message: Message) -> None:
        data = message.data
        if data:
            self._deliver(data[:1] == _TEXT, data[1:])

    # -- presence --------------------------------------------------------------------

    def joined(self, socket: "WebSocket", request: "Request | None", known: Callable[[], Any] | None = None) -> None:
        """Track an accepted socket under its connection id (the connections style's, else a new one).

        ``known()`` is called on the cluster's loop once a recorded path's recovery has the socket.
        """
        state = getattr(request, "state", None)
        member = getattr(state, "connection_id", None) or uuid.uuid4().hex
        self._ids[socket] = member
        group = self.group
        self._link.apply(lambda: self.backplane.track(group, member))
        recovery = self._recovery
        if recovery is not None:
            query = getattr(request, "query", None)
            since = requested_position(query("offset"), query("epoch")) if query is not None else None
            _loop.call(self._link.loop, self._join_recovery, recovery, socket, since, known)

    @staticmethod
    def _join_recovery(recovery: PathRecovery, socket: Any, since: Any, known: Callable[[], Any] | None) -> None:
        recovery.joined(socket, since)
        if known is not None:
            known()

    def left(self, socket: "WebSocket") -> None:
        recovery = self._recovery
        if recovery is not None:
            _loop.call(self._link.loop, recovery.left, socket)
        member = self._ids.pop(socket, None)
        if member is not None:
            group = self.group
            self._link.apply(lambda: self.backplane.untrack(group, member))

    def id_of(self, socket: "WebSocket") -> str | None:
        return self._ids.get(socket)

    # Reads wait for this node's own changes made so far (connections tracked, paths listed).

    async def count(self) -> int:
        """The clients of this path on every node."""

        async def count() -> int:
            await self._link.drain()
            return await self.backplane.count(self.group)

        return await self._link.call(count)

    async def members(self) -> list[Member]:
        """``Member(id, node, info)`` for each client of this path on every node."""

        async def members() -> list[Member]:
            await self._link.drain()
            return await self.backplane.members(self.group)

        return await self._link.call(members)

    async def total(self) -> int:
        """The clients of every path served by any node of the cluster."""

        async def total() -> int:
            await self._link.drain()
            paths = {m.member for m in await self.backplane.members(PATHS)}
            counts = await asyncio.gather(*(self.backplane.count(path_group(p)) for p in sorted(paths)))
            return sum(counts)

        return await self._link.call(total)
