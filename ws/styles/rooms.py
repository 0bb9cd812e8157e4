"""Rooms: named groups with members, publish/subscribe and join/leave announcements.

    room = ws.rooms.get('general')    # the module is the API: ws.rooms.join(...), ...
    unsubscribe = room.subscribe(ctx.send)
    room.join('alice')                 # subscribers get {'type': 'joined', ...}
    room.publish({'type': 'message', 'content': 'hi'})
    room.leave('alice'); unsubscribe()  # an empty room disappears

The state lives in a backend behind ``RoomBackend`` (a handful of
methods); ``MemoryBackend`` keeps it in this process.  ``BackplaneBackend``
shares it between the processes of a backplane (``ws.backplane``): a
``publish`` reaches the room's subscribers on every node, and the members
are the cluster's.  The process-wide rooms move onto it by themselves when
a style is attached to an ``http.Server`` with a backplane (see
``ws.styles.cluster``).  On a cluster, read the members with
``await room.members_async()``: the synchronous ``members()`` would have to
block, so inside an event loop it raises ``RuntimeError`` instead.
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import threading
import time
from typing import Any, Callable, Hashable, Iterator, Protocol

from .._runtime import loop as _loop
from .._runtime.emitter import EventEmitter, invoke
from ..backplane.base import Backplane, Message, Subscription
from ..backplane.link import Link
from . import cluster

__all__ = [
    "Rooms",
    "Room",
    "RoomBackend",
    "MemoryBackend",
    "BackplaneBackend",
    "default",
    "get",
    "join",
    "leave",
    "publish",
    "subscribe",
    "members",
    "names",
    "members_async",
    "count_async",
    "names_async",
    "use_backend",
]

logger = logging.getLogger("ws.rooms")

Subscriber = Callable[[Any], Any]


class RoomBackend(Protocol):
    """Where rooms live.  Every method must be safe to call from any thread."""

    def subscribe(self, room: str, callback: Subscriber) -> Hashable:
        """Deliver the room's messages to ``callback``; returns a token for ``unsubscribe``."""

    def unsubscribe(self, room: str, token: Hashable) -> None: ...

    def publish(self, room: str, message: Any) -> int:
        """Deliver ``message`` to the room's subscribers; returns how many got it here."""

    def add_member(self, room: str, member: Hashable) -> bool:
        """Add ``member``; ``False`` when it was already in."""

    def remove_member(self, room: str, member: Hashable) -> bool:
        """Remove ``member``; ``False`` when it was not in."""

    def members(self, room: str) -> list[Hashable]: ...

    def names(self) -> list[str]:
        """Rooms that have members or subscribers."""


class MemoryBackend:
    """Rooms in this process; a room with no member and no subscriber is dropped."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._subscribers: dict[str, dict[int, Subscriber]] = {}
        self._members: dict[str, dict[Hashable, None]] = {}  # insertion-ordered sets
        self._tokens = itertools.count(1)

    def subscribe(self, room: str, callback: Subscriber) -> Hashable:
        with self._lock:
            token = next(self._tokens)
            self._subscribers.setdefault(room, {})[token] = callback
            return token

    def unsubscribe(self, room: str, token: Hashable) -> None:
        with self._lock:
            subscribers = self._subscribers.get(room)
            if subscribers is not None:
                subscribers.pop(token, None)  # type: ignore[call-overload]
                if not subscribers:
                    del self._subscribers[room]

    def publish(self, room: str, message: Any) -> int:
        with self._lock:
            callbacks = list(self._subscribers.get(room, {}).values())
        for callback in callbacks:
            invoke(callback, message, what=f"subscriber of room {room!r}")
        return len(callbacks)

    def add_member(self, room: str, member: Hashable) -> bool:
        with self._lock:
            members = self._members.setdefault(room, {})
            if member in members:
                return False
            members[member] = None
            return True

    def remove_member(self, room: str, member: Hashable) -> bool:
        with self._lock:
            members = self._members.get(room)
            if members is None or member not in members:
                return False
            del members[member]
            if not members:
                del self._members[room]
            return True

    def members(self, room: str) -> list[Hashable]:
        with self._lock:
            return list(self._members.get(room, ()))

    def names(self) -> list[str]:
        with self._lock:
            return sorted(set(self._subscribers) | set(self._members))


#: The presence group whose members are the rooms that have members or subscribers, per node.
ROOMS = "rooms"

_JSON, _TEXT, _BYTES = b"j", b"s", b"b"


def _encode(message: Any) -> bytes:
    """A room message for the other nodes: its kind (JSON, text, bytes) in one byte, then the data."""
    if isinstance(message, str):
        return _TEXT + message.encode()
    if isinstance(message, (bytes, bytearray, memoryview)):
        return _BYTES + bytes(message)
    try:
        return _JSON + json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a room message on a backplane must be str, bytes or JSON-serializable, got {type(message).__name__} ({exc})") from None


def _decode(data: bytes) -> Any:
    kind, body = data[:1], data[1:]
    if kind == _TEXT:
        return body.decode()
    if kind == _BYTES:
        return body
    return json.loads(body)


def _member_key(member: Hashable) -> str:
    """A member as a presence id: its JSON (so that ``'ann'`` and ``1`` come back as they were)."""
    try:
        return json.dumps(member, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        raise TypeError(f"a room member on a backplane must be a str, number or tuple of them, got {member!r}") from None


def _member_value(key: str) -> Hashable:
    def frozen(value: Any) -> Any:
        return tuple(frozen(v) for v in value) if isinstance(value, list) else value

    result: Hashable = frozen(json.loads(key))
    return result


class BackplaneBackend(EventEmitter):
    """Rooms shared by every node of ``backplane``.

    This node keeps its own subscribers and members (a ``MemoryBackend``);
    the backplane carries the rest:

    * ``publish`` delivers to this node's subscribers at once and publishes
      on the room's channel, ``room:{name}``, which only the nodes with
      subscribers in the room receive (they subscribe with the first and
      leave with the last).  Messages cross as JSON (``str`` and ``bytes``
      as they are).  A publish that fails is an ``'error'`` event of this
      backend (logged when nobody listens).
    * members are tracked in the presence group ``room:{name}`` (by their
      JSON), with the time they joined: ``members_async`` is the cluster's
      list in joining order, a member present on two nodes once.  ``join``
      and ``leave`` answer for this node (a member may join on two nodes).
    * the group ``rooms`` lists, per node, the rooms it has members or
      subscribers in (``names_async``).

    Every method may be called from any thread; the backplane's work runs
    on ``loop`` (the server's), in order.
    """

    def __init__(self, backplane: Backplane, *, loop: Any = None) -> None:
        super().__init__()
        self.backplane = backplane
        self._local = MemoryBackend()
        self._link = Link(backplane, loop if loop is not None else _loop.bind(), self._failed)
        # Touched by the link's worker only: the channel subscriptions and listed rooms of this node.
        self._channels: dict[str, Subscription] = {}
        self._listed: set[str] = set()

    # -- what this node changes ----------------------------------------------------------

    def subscribe(self, room: str, callback: Subscriber) -> Hashable:
        with self._local._lock:
            first = room not in self._local._subscribers
            token = self._local.subscribe(room, callback)
        if first:
            self._link.apply(lambda: self._sync(room))
        return token

    def unsubscribe(self, room: str, token: Hashable) -> None:
        with self._local._lock:
            self._local.unsubscribe(room, token)
            last = room not in self._local._subscribers
        if last:
            self._link.apply(lambda: self._sync(room))

    def publish(self, room: str, message: Any) -> int:
        data = _encode(message)
        count = self._local.publish(room, message)
        self._link.publish(f"room:{room}", data)
        return count

    def add_member(self, room: str, member: Hashable) -> bool:
        key, since = _member_key(member), repr(time.time()).encode()
        with self._local._lock:
            first = room not in self._local._members
            added = self._local.add_member(room, member)
        if added:
            self._link.apply(lambda: self.backplane.track(f"room:{room}", key, since))
            if first:
                self._link.apply(lambda: self._sync(room))
        return added

    def remove_member(self, room: str, member: Hashable) -> bool:
        key = _member_key(member)
        with self._local._lock:
            removed = self._local.remove_member(room, member)
            last = room not in self._local._members
        if removed:
            self._link.apply(lambda: self.backplane.untrack(f"room:{room}", key))
            if last:
                self._link.apply(lambda: self._sync(room))
        return removed

    def _failed(self, exc: BaseException) -> None:
        self.emit("error", exc)

    async def _sync(self, room: str) -> None:
        """Bring the room's channel and listing on the backplane in line with this node's state now."""
        with self._local._lock:
            wanted = room in self._local._subscribers
            present = wanted or room in self._local._members
        subscription = self._channels.get(room)
        if wanted and subscription is None:
            self._channels[room] = await self.backplane.subscribe(f"room:{room}", lambda message: self._received(room, message))
        elif not wanted and subscription is not None:
            del self._channels[room]
            await subscription.unsubscribe()
        if present and room not in self._listed:
            self._listed.add(room)
            await self.backplane.track(ROOMS, room)
        elif not present and room in self._listed:
            self._listed.discard(room)
            await self.backplane.untrack(ROOMS, room)

    def _received(self, room: str, message: Message) -> None:
        """A message another node published in ``room``: to this node's subscribers."""
        self._local.publish(room, _decode(message.data))

    # -- what the cluster knows ------------------------------------------------------------

    async def members_async(self, room: str) -> list[Hashable]:
        """The room's members on every node, in the order they joined (once each)."""

        async def read() -> list[Hashable]:
            await self._link.drain()  # this node's own joins and leaves first
            first: dict[str, float] = {}
            for entry in await self.backplane.members(f"room:{room}"):
                since = float(entry.info or b"0")
                first[entry.member] = min(since, first.get(entry.member, since))
            return [_member_value(key) for key, _ in sorted(first.items(), key=lambda item: (item[1], item[0]))]

        return await self._link.call(read)

    async def count_async(self, room: str) -> int:
        """How many members the room has on every node."""
        return len(await self.members_async(room))

    async def names_async(self) -> list[str]:
        """The rooms with members or subscribers on any node."""

        async def read() -> list[str]:
            await self._link.drain()
            return sorted({entry.member for entry in await self.backplane.members(ROOMS)})

        return await self._link.call(read)

    def local_members(self, room: str) -> list[Hashable]:
        """This node's members of ``room``, in the order they joined."""
        return self._local.members(room)

    def members(self, room: str) -> list[Hashable]:
        """The cluster's members (blocks: from a thread only; in a coroutine ``await members_async``)."""
        members: list[Hashable] = self._blocking("members", self.members_async(room))
        return members

    def names(self) -> list[str]:
        """The cluster's rooms (blocks: from a thread only; in a coroutine ``await names_async``)."""
        names: list[str] = self._blocking("names", self.names_async())
        return names

    def _blocking(self, name: str, coro: Any) -> Any:
        if _loop._get_running_loop() is not None:
            coro.close()
            raise RuntimeError(f"rooms on a backplane: {name}() would block the event loop; use 'await ...{name}_async()'")
        return _loop.run_blocking(self._link.loop, coro)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Room:
    """A handle on one room; cheap to get, holds no state of its own."""

    __slots__ = ("name", "_rooms")

    def __init__(self, rooms: "Rooms", name: str) -> None:
        self.name = name
        self._rooms = rooms

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(message)`` for every message published here; returns ``unsubscribe()``."""
        if not callable(callback):
            raise TypeError(f"subscriber must be callable, got {type(callback).__name__}")
        backend = self._rooms.backend
        token = backend.subscribe(self.name, callback)
        done = False

        def unsubscribe() -> None:
            nonlocal done
            if not done:
                done = True
                backend.unsubscribe(self.name, token)

        return unsubscribe

    def publish(self, message: Any) -> int:
        """Send ``message`` to every subscriber (the publisher's own included); returns how many."""
        return self._rooms.backend.publish(self.name, message)

    def join(self, member: Hashable, *, announce: bool = True) -> bool:
        """Add ``member``; with ``announce``, publish ``{'type': 'joined', ...}`` when it is new."""
        added = self._rooms.backend.add_member(self.name, member)
        if added and announce:
            self.publish(self._announcement("joined", member))
        return added

    def leave(self, member: Hashable, *, announce: bool = True) -> bool:
        """Remove ``member``; with ``announce``, publish ``{'type': 'left', ...}`` when it was in."""
        removed = self._rooms.backend.remove_member(self.name, member)
        if removed and announce:
            self.publish(self._announcement("left", member))
        return removed

    def members(self) -> list[Hashable]:
        """The members, in the order they joined (on a backplane: from a thread only, see ``members_async``)."""
        return self._rooms.backend.members(self.name)

    async def members_async(self) -> list[Hashable]:
        """The members, in the order they joined; on a backplane, those of every node."""
        backend = self._rooms.backend
        read = getattr(backend, "members_async", None)
        return list(await read(self.name)) if read is not None else backend.members(self.name)

    async def count_async(self) -> int:
        """How many members the room has (on a backplane, on every node)."""
        return len(await self.members_async())

    def _announcement(self, kind: str, member: Hashable) -> dict[str, Any]:
        return {"type": kind, "room": self.name, "member": member, "timestamp": _now()}

    def __repr__(self) -> str:
        backend = self._rooms.backend
        members = getattr(backend, "local_members", backend.members)(self.name)
        return f"<Room {self.name!r} members={len(members)}>"


class Rooms:
    """Every room, by name, on one backend (``MemoryBackend`` unless given)."""

    def __init__(self, backend: RoomBackend | None = None) -> None:
        self._backend: RoomBackend = backend if backend is not None else MemoryBackend()
        #: The process-wide rooms follow the first server with a backplane (``ws.styles.cluster``).
        self._follows_cluster = False

    @property
    def backend(self) -> RoomBackend:
        if self._follows_cluster:
            shared = cluster.link()
            if shared is not None and getattr(self._backend, "backplane", None) is not shared.backplane:
                self._follow(shared)
        return self._backend

    @backend.setter
    def backend(self, backend: RoomBackend) -> None:
        self._backend = backend
        self._follows_cluster = False

    def _follow(self, shared: Link) -> None:
        """Move onto the process's backplane: from the untouched in-memory rooms, or a closed backplane's."""
        current = self._backend
        unused = type(current) is MemoryBackend and not current.names()
        gone = isinstance(current, BackplaneBackend) and current.backplane.closed
        if unused or gone:
            self._backend = BackplaneBackend(shared.backplane, loop=shared.loop)
        else:
            self._follows_cluster = False
            logger.warning("the process-wide rooms were used before a server brought its backplane: they stay in this process")

    async def members_async(self, name: str) -> list[Hashable]:
        return await self.get(name).members_async()

    async def count_async(self, name: str) -> int:
        return await self.get(name).count_async()

    async def names_async(self) -> list[str]:
        """The rooms that exist now; on a backplane, on any node."""
        backend = self.backend
        read = getattr(backend, "names_async", None)
        return list(await read()) if read is not None else backend.names()

    def get(self, name: str) -> Room:
        """The room called ``name`` (it exists while it has members or subscribers)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"room name must be a non-empty string, got {name!r}")
        return Room(self, name)

    __getitem__ = get

    def join(self, name: str, member: Hashable, *, announce: bool = True) -> bool:
        return self.get(name).join(member, announce=announce)

    def leave(self, name: str, member: Hashable, *, announce: bool = True) -> bool:
        return self.get(name).leave(member, announce=announce)

    def publish(self, name: str, message: Any) -> int:
        return self.get(name).publish(message)

    def subscribe(self, name: str, callback: Subscriber) -> Callable[[], None]:
        return self.get(name).subscribe(callback)

    def members(self, name: str) -> list[Hashable]:
        return self.get(name).members()

    def names(self) -> list[str]:
        """The rooms that exist now (empty ones are cleaned up)."""
        return self.backend.names()

    def __contains__(self, name: object) -> bool:
        return name in self.backend.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.backend.names())

    def __len__(self) -> int:
        return len(self.backend.names())


#: The process-wide rooms; the functions below (``ws.rooms.join``...) use them.
default = Rooms()
default._follows_cluster = True


def get(name: str) -> Room:
    """The process-wide room called ``name``."""
    return default.get(name)


def join(name: str, member: Hashable, *, announce: bool = True) -> bool:
    return default.join(name, member, announce=announce)


def leave(name: str, member: Hashable, *, announce: bool = True) -> bool:
    return default.leave(name, member, announce=announce)


def publish(name: str, message: Any) -> int:
    return default.publish(name, message)


def subscribe(name: str, callback: Subscriber) -> Callable[[], None]:
    return default.subscribe(name, callback)


def members(name: str) -> list[Hashable]:
    return default.members(name)


def names() -> list[str]:
    return default.names()


async def members_async(name: str) -> list[Hashable]:
    """The members of the process-wide room ``name`` (on a backplane, of every node)."""
    return await default.members_async(name)


async def count_async(name: str) -> int:
    return await default.count_async(name)


async def names_async() -> list[str]:
    """The process-wide rooms that exist (on a backplane, on any node)."""
    return await default.names_async()


def use_backend(backend: RoomBackend) -> None:
    """Put the process-wide rooms on ``backend`` (a broker, say) before they are used."""
    default.backend = backend
