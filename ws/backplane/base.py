"""The ``Backplane`` interface: how the processes of one ``ws`` deployment share messages and state.

Sockets stay in the memory of the process that accepted them; what crosses
processes goes through a backplane, as Socket.IO's adapters and Django
Channels' layers do.  A backplane is one *node* of a cluster and offers:

* **publish/subscribe by channel.**  ``publish(channel, data)`` reaches the
  subscribers of ``channel`` on every *other* node that subscribed to it,
  and no node that did not (a channel per room, not one firehose).  The
  publishing node is left out on purpose: the layer above delivers to its
  own sockets directly, so local delivery never waits for, or depends on,
  the backplane.  Delivery is **at most once**: a message published while
  a subscriber is disconnected is lost for it (as with every pub/sub bus);
  a publish that could not be handed over *fails* (``BackplaneError``).
  Messages one node publishes reach another node in the order in which
  its ``publish`` coroutines start running (so tasks made one per publish,
  as a synchronous ``broadcast`` would, keep the order they were made in).
* **a key-value store with expiry** (``get``/``set``/``delete``/``incr``/
  ``keys``), shared by every node.  Values are bytes; encoding is the
  caller's business.
* **presence.**  A node ``track``\\ s members (connection ids) in groups
  (``"path:/chat"``, ``"room:lobby"``) with a little ``info``;
  ``count``/``members``/``locate`` answer for the whole cluster.  Each node
  refreshes its own entries every ``presence_ttl / 3`` seconds, so a node
  that dies without closing (SIGKILL, power loss) vanishes from presence
  within ``presence_ttl``.  A node that closes removes its entries at once.

Every method is a coroutine of the event loop that ran ``start()``;
subscription callbacks run on that loop.  The emitter events let the layer
above report outages: ``'disconnected'`` (with the cause), ``'reconnected'``
(subscriptions and presence restored) and ``'error'`` (a failure in the
background, e.g. a callback that raised).
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import logging
import os
import re
import secrets
import socket
from typing import Any, Callable, NamedTuple

from .._runtime.emitter import EventEmitter, report
from ..exceptions import WebSocketError
from .history import Position, Recovery, Replay

__all__ = ["Backplane", "BackplaneError", "Message", "Member", "Subscription", "Callback"]

logger = logging.getLogger("ws.backplane")

#: Seconds after which the entries of a node that stopped refreshing them disappear.
DEFAULT_PRESENCE_TTL = 10.0

#: What a node id may contain: it ends Redis key names and rides in every message's header.
NODE_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


class BackplaneError(WebSocketError):
    """The backplane could not do what was asked; ``__cause__`` holds why (e.g. Redis unreachable)."""


class Message(NamedTuple):
    """One published message, as a subscriber receives it."""

    channel: str
    data: bytes
    #: ``node_id`` of the node that published it.
    origin: str
    #: Its place in the channel's history, for a recorded publish (``publish_recorded``); else ``None``.
    position: Position | None = None


class Member(NamedTuple):
    """One tracked member, wherever in the cluster it is."""

    member: str
    node: str
    info: bytes


#: A subscription callback.  It runs on the backplane's loop, in the task that reads the
#: messages: it must be quick (hand the data to sockets, never wait).  An ``async def``
#: callback runs as a task of its own, so a slow one holds up nothing else.
Callback = Callable[[Message], Any]


class Subscription:
    """What ``subscribe`` returns: ``await sub.unsubscribe()`` ends it (twice is harmless)."""

    __slots__ = ("channel", "callback", "_owner", "active")

    def __init__(self, owner: "Backplane", channel: str, callback: Callback) -> None:
        self._owner = owner
        self.channel = channel
        self.callback = callback
        self.active = True

    async def unsubscribe(self) -> None:
        if self.active:
            self.active = False
            await self._owner._drop_subscription(self)

    def __repr__(self) -> str:
        state = "active" if self.active else "ended"
        return f"<Subscription {self.channel!r} {state}>"


def default_node_id() -> str:
    """``host-pid-random``: readable in Redis and in logs, unique across restarts."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:60] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def check_name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} must be a non-empty string, got {value!r}")
    return value


def as_bytes(what: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes-like, got {type(value).__name__}")


def check_ttl(ttl: float | None) -> float | None:
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0):
        raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
    return ttl


class Backplane(EventEmitter, abc.ABC):
    """One node's handle on the cluster; see the module documentation for the semantics.

    Subclasses implement the abstract methods; this class keeps what every
    implementation shares: the lifecycle, the node's subscription table
    (one backplane subscription per channel, fanned out here), the node's
    own presence records and the task that refreshes them.
    """

    #: One ``'reconnected'`` listener per feed (a recorded path, a room): as many as channels, no leak warning.
    _max_listeners = 0

    def __init__(self, *, node_id: str | None = None, presence_ttl: float = DEFAULT_PRESENCE_TTL) -> None:
        super().__init__()
        node = default_node_id() if node_id is None else node_id
        if not isinstance(node, str) or not NODE_ID.fullmatch(node):
            raise ValueError(f"node_id must be 1-100 characters of A-Z a-z 0-9 . _ : -, got {node!r}")
        if check_ttl(presence_ttl) is None:
            raise ValueError("presence_ttl must be a positive number of seconds")
        self.node_id = node
        self.presence_ttl = float(presence_ttl)
        self._state = "new"  # new -> open -> closed
        self._channels: dict[str, tuple[Subscription, ...]] = {}
        #: This node's presence: group -> member -> info.  The source of truth for refreshes.
        self._tracked: dict[str, dict[str, bytes]] = {}
        self._keeper: asyncio.Task[None] | None = None
        # Shared use by servers (acquire/release): how many hold it, the start in progress,
        # whether acquire() started it (then the last release() closes it), who waits for the start.
        self._users = 0
        self._starting: asyncio.Future[None] | None = None
        self._acquired_start = False
        self._start_waiters: list[asyncio.Future[None]] = []

    # -- lifecycle -------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """``start()`` has succeeded and ``close()`` has not been called."""
        return self._state == "open"

    @property
    def closed(self) -> bool:
        """``close()`` has been called."""
        return self._state == "closed"

    @property
    def crosses_processes(self) -> bool:
        """Whether nodes in other processes (workers, machines) share this cluster; ``MemoryBackplane``: no."""
        return True

    @property
    def connected(self) -> bool:
        """Whether the node currently reaches the cluster (always, in process)."""
        return self.started

    async def start(self) -> None:
        """Connect; raises ``BackplaneError`` (within the implementation's timeout) when it cannot."""
        if self._state != "new":
            raise BackplaneError(f"backplane already {'started' if self._state == 'open' else 'closed'}")
        self._loop = asyncio.get_running_loop()
        await self._open()
        if self._state == "closed":  # close() came while it connected: undo the connection, never reopen
            await self._shut()
            raise BackplaneError("backplane closed while it was starting")
        self._state = "open"
        self._keeper = self._loop.create_task(self._keep(), name=f"ws-backplane-keeper-{self.node_id}")
        waiters, self._start_waiters = self._start_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def close(self) -> None:
        """Remove this node's presence, end its subscriptions and disconnect.  Idempotent."""
        if self._state == "closed":
            return
        was_open, self._state = self._state == "open", "closed"
        waiters, self._start_waiters = self._start_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(BackplaneError("backplane closed before it started"))
                waiter.exception()  # retrieved: a waiter that went away must not log it
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        for subs in self._channels.values():
            for sub in subs:
                sub.active = False
        self._channels.clear()
        if was_open:
            await self._shut()
        self._tracked.clear()

    async def wait_started(self) -> None:
        """Return once ``start()`` has succeeded (at once if it has); ``BackplaneError`` once closed.

        For the layers above, which make their subscriptions and presence
        when the server that owns the backplane starts it.
        """
        if self._state == "open":
            return
        if self._state == "closed":
            raise BackplaneError("backplane is closed")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._start_waiters.append(waiter)
        await waiter

    async def acquire(self) -> None:
        """Start the backplane unless it runs already, and count one more user (a server).

        Servers call it when they start serving.  Concurrent calls share one
        attempt; a failed attempt raises ``BackplaneError`` in each caller,
        and the next call tries again.  ``release()`` undoes it.
        """
        if self._state == "closed":
            raise BackplaneError("backplane is closed")
        if self._state == "new":
            if self._starting is None:
                self._starting = starting = asyncio.get_running_loop().create_future()
                try:
                    await self.start()
                except BaseException as exc:
                    self._starting = None
                    starting.set_exception(exc)
                    starting.exception()  # retrieved: nobody else may be waiting
                    raise
                self._acquired_start = True
                starting.set_result(None)
            else:
                await asyncio.shield(self._starting)
        self._users += 1

    async def release(self) -> None:
        """One user is done with it: the last one closes a backplane that ``acquire()`` started.

        One that its owner started (``await backplane.start()``) stays open:
        its owner closes it.
        """
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._acquired_start:
            await self.close()

    async def __aenter__(self) -> "Backplane":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._state != "open":
            raise BackplaneError("backplane is closed" if self._state == "closed" else "backplane not started: await start() first")

    async def _keep(self) -> None:
        """Call ``_tick`` every ``presence_ttl / 3`` seconds, until closed."""
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            try:
                await self._tick()
            except Exception as exc:  # never let the keeper die: the next tick tries again
                logger.warning("backplane %s: presence refresh failed: %s", self.node_id, exc)

    async def _tick(self) -> None:
        """The keeper's periodic work: refresh presence (implementations may check their link too)."""
        await self._refresh()

    # -- publish / subscribe ---------------------------------------------------------

    @abc.abstractmethod
    async def publish(self, channel: str, data: bytes) -> int:
        """Send ``data`` to the subscribers of ``channel`` on the other nodes.

        Returns how many other nodes it reached (for Redis, as counted when
        Redis received it).  Raises ``BackplaneError`` when it could not be
        handed over; it is never dropped silently.
        """

    @abc.abstractmethod
    async def publish_recorded(self, channel: str, data: bytes, recovery: Recovery) -> Position:
        """Append ``data`` to the history of ``channel`` and deliver it, with its position, everywhere.

        Unlike ``publish``, the subscribers on **this** node get it too
        (through their subscription, with ``Message.position`` set): every
        node then sees the channel's messages in one order, the order of
        their offsets, which is what makes an exact recovery possible.  The
        history is trimmed to ``recovery`` here (``max_messages``, ``window``,
        ``idle_ttl``).  Returns the message's position; raises
        ``BackplaneError`` when it could not be recorded.  One caveat: when the
        link to Redis breaks while the publish is in flight, the caller gets
        the error although Redis may have recorded (and delivered) it; the
        message is then in the history, never half there.
        """

    @abc.abstractmethod
    async def history(self, channel: str, since: Position | None, recovery: Recovery) -> Replay:
        """The recorded messages of ``channel`` after ``since``, all of them or none (see ``Replay``).

        ``since=None`` reads only the channel's last position (and creates its
        epoch if the channel has none yet, so that the position is stable).
        """

    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        """Call ``callback(message)`` for each message other nodes publish on ``channel``.

        Returns once the subscription is in force (messages published after
        that reach it) or, while the node is disconnected, at once: it is
        made again on reconnection.
        """
        self._check_open()
        check_name("channel", channel)
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        sub = Subscription(self, channel, callback)
        subs = self._channels.get(channel)
        self._channels[channel] = (sub,) if subs is None else (*subs, sub)
        if subs is None:
            await self._subscribe_channel(channel)
        return sub

    async def _drop_subscription(self, sub: Subscription) -> None:
        subs = self._channels.get(sub.channel)
        if subs is None or sub not in subs:
            return
        rest = tuple(s for s in subs if s is not sub)
        if rest:
            self._channels[sub.channel] = rest
            return
        del self._channels[sub.channel]
        if self._state == "open":
            await self._unsubscribe_channel(sub.channel)

    def _deliver(self, message: Message) -> None:
        """Hand ``message`` to this node's callbacks for its channel (on the loop)."""
        for sub in self._channels.get(message.channel, ()):
            try:
                result = sub.callback(message)
            except Exception as exc:
                self._fail("subscriber of channel %r raised", message.channel, exc)
                continue
            if result is not None and inspect.isawaitable(result):
                self._schedule(result)

    def _fail(self, text: str, what: object, exc: Exception) -> None:
        """A background failure: logged, and emitted as ``'error'`` when someone listens."""
        if self.listener_count("error"):
            logger.warning("backplane %s: " + text + ": %s", self.node_id, what, exc)
            self.emit("error", exc)
        else:
            report("backplane %s: " + text, self.node_id, what, error=exc, log=logger)

    @abc.abstractmethod
    async def _subscribe_channel(self, channel: str) -> None:
        """Start receiving ``channel`` on this node (its first subscription)."""

    @abc.abstractmethod
    async def _unsubscribe_channel(self, channel: str) -> None:
        """Stop receiving ``channel`` on this node (its last subscription ended)."""

    # -- key-value store -------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or ``None`` when it is missing or expired."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``; it expires after ``ttl`` seconds (``None``: never)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""

    @abc.abstractmethod
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer at ``key`` (missing: 0) atomically; the new value.

        ``ttl`` (re)sets the key's expiry at each call.
        """

    @abc.abstractmethod
    async def keys(self, prefix: str = "") -> list[str]:
        """The live keys that start with ``prefix``, sorted (Redis: a SCAN, so keep it off hot paths)."""

    # -- presence --------------------------------------------------------------------

    async def track(self, group: str, member: str, info: bytes = b"") -> None:
        """Record ``member`` (e.g. a connection id) in ``group`` on this node, with ``info``.

        Tracking it again replaces its ``info``.  The record is kept by this
        node and refreshed until ``untrack`` or ``close``; while the node is
        disconnected the call succeeds and the record reaches the cluster on
        reconnection.
        """
        self._check_open()
        check_name("group", group)
        check_name("member", member)
        payload = as_bytes("info", info)
        self._tracked.setdefault(group, {})[member] = payload
        await self._track(group, member, payload)

    async def untrack(self, group: str, member: str) -> bool:
        """Remove ``member`` from ``group`` on this node; whether this node had tracked it."""
        self._check_open()
        members = self._tracked.get(group)
        if members is None or member not in members:
            return False
        del members[member]
        if not members:
            del self._tracked[group]
        await self._untrack(group, member)
        return True

    @abc.abstractmethod
    async def _track(self, group: str, member: str, info: bytes) -> None: ...

    @abc.abstractmethod
    async def _untrack(self, group: str, member: str) -> None: ...

    @abc.abstractmethod
    async def _refresh(self) -> None:
        """Renew this node's liveness and presence entries (rewriting any the cluster lost)."""

    @abc.abstractmethod
    async def count(self, group: str) -> int:
        """How many members ``group`` has on every live node."""

    @abc.abstractmethod
    async def members(self, group: str) -> list[Member]:
        """Every member of ``group`` on every live node, sorted (by member, then node)."""

    @abc.abstractmethod
    async def locate(self, group: str, member: str) -> Member | None:
        """Where ``member`` of ``group`` is (its node and info), or ``None``."""

    @abc.abstractmethod
    async def nodes(self) -> list[str]:
        """The ids of the live nodes (started, refreshing, not closed), sorted."""

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _shut(self) -> None: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node_id} {self._state}>"
