"""Rooms: named groups with members, publish/subscribe and join/leave announcements.

    room = ws.rooms.get('general')    # the module is the API: ws.rooms.join(...), ...
    unsubscribe = room.subscribe(ctx.send)
    room.join('alice')                 # subscribers get {'type': 'joined', ...}
    room.publish({'type': 'message', 'content': 'hi'})
    room.leave('alice'); unsubscribe()  # an empty room disappears

The state lives in a backend behind ``RoomBackend`` (a handful of
methods); ``MemoryBackend`` keeps it in this process.  A broker backend for
several processes implements the same methods: ``publish`` reaching other
processes' subscribers and ``members`` answering from the shared state.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import threading
from typing import Any, Callable, Hashable, Iterator, Protocol

from .._runtime.emitter import invoke

__all__ = [
    "Rooms",
    "Room",
    "RoomBackend",
    "MemoryBackend",
    "default",
    "get",
    "join",
    "leave",
    "publish",
    "subscribe",
    "members",
    "names",
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
        """The members, in the order they joined."""
        return self._rooms.backend.members(self.name)

    def _announcement(self, kind: str, member: Hashable) -> dict[str, Any]:
        return {"type": kind, "room": self.name, "member": member, "timestamp": _now()}

    def __repr__(self) -> str:
        return f"<Room {self.name!r} members={len(self.members())}>"


class Rooms:
    """Every room, by name, on one backend (``MemoryBackend`` unless given)."""

    def __init__(self, backend: RoomBackend | None = None) -> None:
        self.backend: RoomBackend = backend if backend is not None else MemoryBackend()

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


def use_backend(backend: RoomBackend) -> None:
    """Put the process-wide rooms on ``backend`` (a broker, say) before they are used."""
    default.backend = backend
