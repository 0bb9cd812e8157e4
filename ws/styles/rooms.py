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

**Recovery** (opt-in per room, or for every room of a ``Rooms``):

    room = rooms.get('general', recovery=ws.Recovery(window=120, max_messages=10_000))
    unsubscribe = room.subscribe(ctx.send, since=ctx.query)   # ?offset=41&epoch=k2Jx...

A recorded room keeps its recent messages with their positions (in this
process for ``MemoryBackend``, in the backplane's history for
``BackplaneBackend``), and its subscribers get JSON objects:

* first a **status**, ``{"type": "recovery", "room": "general",
  "recovered": true, "reason": null, "epoch": "k2Jx...", "offset": 41}``:
  the messages that follow continue from ``offset``.  ``reason`` is
  ``"new"`` without a position, else why it was not recovered
  (``"epoch"``, ``"trimmed"``, ``"window"``, ``"ahead"``, ``"invalid"``,
  ``"unavailable"``); a status comes again if the numbering is reset
  while subscribed;
* then every message wrapped with its offset, ``{"room": "general",
  "offset": 42, "data": <the published message>}``.

A subscriber that gives ``since`` (the ``offset`` and ``epoch`` it last
received: a query string, a first message's JSON, a mapping or a
``Position``) gets exactly the messages it missed, in order, once, then the
live stream.  When the history cannot serve it, the status says
``"recovered": false`` and nothing of the history is delivered.  Recorded
messages must be JSON values (``str`` included, ``bytes`` not).  The
details, and a browser's side: docs/coming-from-justscale.md.
"""

from __future__ import annotations

import collections
import datetime
import itertools
import json
import logging
import threading
import time
from collections.abc import Container, Iterable, Mapping
from typing import Any, Callable, Hashable, Iterator, Protocol, cast
from urllib.parse import parse_qs

from .._runtime import loop as _loop
from .._runtime.emitter import EventEmitter, invoke
from ..backplane.base import Backplane, Message, Subscription
from ..backplane.history import Position, Recovery
from ..backplane.link import Link
from ..backplane.memory import MemoryHub
from ..recovery import RecordedStream
from . import cluster

__all__ = [
    "Rooms",
    "Room",
    "RoomBackend",
    "RecordingBackend",
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
    "read_position",
    "envelope",
    "status",
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


#: What a recorded subscription starts from: a position, ``None`` (a new subscriber) or why it has
#: none (``"invalid"``: the one it gave is malformed).
Since = Position | str | None


class RecordingBackend(RoomBackend, Protocol):
    """A backend that can record rooms (``recovery=``): ``MemoryBackend`` and ``BackplaneBackend``.

    A recorded subscriber is called with JSON objects: the status, then
    the envelopes (module documentation).  ``unsubscribe`` ends it as any
    other.
    """

    def subscribe_recorded(self, room: str, callback: Subscriber, recovery: Recovery, since: Since) -> Hashable:
        """Status, then the messages after ``since``, then the live ones, to ``callback``; a token."""

    def publish_recorded(self, room: str, message: Any, recovery: Recovery) -> int:
        """Record ``message`` with its position and deliver it, in position order; how many subscribers are here."""


def envelope(room: str, offset: int, data: Any) -> dict[str, Any]:
    """A recorded room's message as its subscribers get it: the message, with where it stands."""
    return {"room": room, "offset": offset, "data": data}


def status(room: str, recovered: bool, reason: str | None, position: Position) -> dict[str, Any]:
    """What a recorded room's subscriber gets first: whether it recovered, and where the stream goes on from."""
    return {"type": "recovery", "room": room, "recovered": recovered, "reason": reason, "epoch": position.epoch, "offset": position.offset}


def _since(source: Any) -> Since:
    """A subscriber's ``since=`` as ``Position``, ``None`` or ``"invalid"`` (see ``read_position``)."""
    if source is None or isinstance(source, Position):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = bytes(source).decode("utf-8", "replace")
    if isinstance(source, str):
        text = source.strip()
        if text[:1] in ("{", "["):  # JSON: a first message
            try:
                source = json.loads(text)
            except ValueError:
                return "invalid"
            if not isinstance(source, dict):
                return "invalid"
        else:
            source = {name: values[0] for name, values in parse_qs(text.lstrip("?"), keep_blank_values=True).items()}
    elif not isinstance(source, Mapping):
        query = getattr(source, "query_string", None)  # a ws.Request
        if not isinstance(query, str):
            raise TypeError(f"since must be a position, a mapping, a query string, JSON text or a request, got {type(source).__name__}")
        return _since(query or "")

    def first(name: str) -> Any:
        value = source.get(name)
        if isinstance(value, (list, tuple)):  # a query as name -> values
            value = value[0] if value else None
        return value

    offset, epoch = first("offset"), first("epoch")
    if offset is None and epoch is None:
        return None
    try:
        return Position.parse(offset, epoch)
    except ValueError:
        return "invalid"


def read_position(source: Any) -> Position | None:
    """The position a client came back with: ``None`` when it gave none; ``ValueError`` when malformed.

    ``source``: a mapping with ``offset`` and ``epoch`` (``ctx.query``, a
    connection's query, the decoded first message the client sent), a
    query string (``"offset=41&epoch=k2Jx..."``), JSON text
    (``'{"offset": 41, "epoch": "k2Jx..."}'``), a ``ws.Request``, or a
    ``Position``.  ``room.subscribe(..., since=source)`` takes the same and
    tells a malformed one to the subscriber instead of raising.
    """
    since = _since(source)
    if isinstance(since, str):
        raise ValueError(f"malformed position (offset must be a non-negative integer and epoch 1-64 of A-Z a-z 0-9 _ -): {source!r}")
    return since


def _channel(room: str) -> str:
    """The backplane channel (and in-memory history) of a room."""
    return f"room:{room}"


def _encode_recorded(message: Any) -> bytes:
    """A recorded room's message: a JSON value (subscribers get it inside a JSON envelope)."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        raise TypeError("a recorded room's messages are JSON values (they reach subscribers in a JSON envelope), not bytes")
    return _encode(message)


class _Recorded:
    """A recorded room of a ``MemoryBackend``: its subscribers, and what waits to reach them in order."""

    __slots__ = ("subscribers", "queue", "draining", "last")

    def __init__(self) -> None:
        self.subscribers: dict[int, Subscriber] = {}
        #: (the subscribers it is for, the object): statuses and envelopes, in the order they were made.
        self.queue: collections.deque[tuple[tuple[int, ...], Any]] = collections.deque()
        self.draining = False
        #: The position of the room this object last saw (to notice a new epoch).
        self.last: Position | None = None


class MemoryBackend:
    """Rooms in this process; a room with no member and no subscriber is dropped."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._subscribers: dict[str, dict[int, Subscriber]] = {}
        self._members: dict[str, dict[Hashable, None]] = {}  # insertion-ordered sets
        self._tokens = itertools.count(1)
        self._recorded: dict[str, _Recorded] = {}
        #: The recorded rooms' history: a hub of its own, so the rules (window, max_messages,
        #: epochs) are those of every backplane's history, implemented once.
        self._history: MemoryHub | None = None

    def subscribe(self, room: str, callback: Subscriber) -> Hashable:
        with self._lock:
            token = next(self._tokens)
            self._subscribers.setdefault(room, {})[token] = callback
            return token

    def unsubscribe(self, room: str, token: Hashable) -> None:
        with self._lock:
            record = self._recorded.get(room)
            if record is not None and token in record.subscribers:
                del record.subscribers[token]
                if not record.subscribers and not record.draining:
                    del self._recorded[room]
                return
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

    # -- recorded rooms --------------------------------------------------------------------

    def _hub(self) -> MemoryHub:
        if self._history is None:
            self._history = MemoryHub()
        return self._history

    def subscribe_recorded(self, room: str, callback: Subscriber, recovery: Recovery, since: Since) -> Hashable:
        """The status, the messages after ``since`` (or none), then the live ones, in order.

        The history is read and the subscriber added under one lock, which
        every recorded publish takes too: the seam has no gap and no
        duplicate by construction.
        """
        with self._lock:
            token = next(self._tokens)
            record = self._recorded.get(room)
            if record is None:
                record = self._recorded[room] = _Recorded()
            replay = self._hub().history(_channel(room), since if isinstance(since, Position) else None, recovery)
            top = replay.position
            self._observe(room, record, top, top)
            items: list[Any]
            if not isinstance(since, Position):
                items = [status(room, False, "new" if since is None else since, top)]
            elif replay.recovered:
                items = [status(room, True, None, since)]
                items += [envelope(room, m.position.offset, _decode(m.data)) for m in replay.messages if m.position is not None]
            else:
                items = [status(room, False, replay.reason, top)]
            record.subscribers[token] = callback
            record.queue.extend(((token,), item) for item in items)
        self._drain(room, record)
        return token

    def publish_recorded(self, room: str, message: Any, recovery: Recovery) -> int:
        """Record ``message`` (the next offset) and hand it to the subscribers after what is queued for them."""
        data = _encode_recorded(message)
        with self._lock:
            position = self._hub().publish_recorded(Message(_channel(room), data, "rooms"), recovery)
            record = self._recorded.get(room)
            if record is None:
                return 0
            self._observe(room, record, position, Position(position.offset - 1, position.epoch))
            record.queue.append((tuple(record.subscribers), envelope(room, position.offset, _decode(data))))
            count = len(record.subscribers)
        self._drain(room, record)
        return count

    def _observe(self, room: str, record: _Recorded, position: Position, reset: Position) -> None:
        """A new epoch (the room was idle past ``idle_ttl``): its subscribers are told before anything else."""
        last = record.last
        if last is not None and last.epoch != position.epoch and record.subscribers:
            record.queue.append((tuple(record.subscribers), status(room, False, "epoch", reset)))
        record.last = position

    def _drain(self, room: str, record: _Recorded) -> None:
        """Hand the queued objects on, in order, outside the lock; one thread at a time does it."""
        with self._lock:
            if record.draining:
                return  # the thread that drains will hand ours on too, in turn
            record.draining = True
        try:
            while True:
                with self._lock:
                    if not record.queue:
                        record.draining = False
                        if not record.subscribers and self._recorded.get(room) is record:
                            del self._recorded[room]
                        return
                    tokens, item = record.queue.popleft()
                    callbacks = [record.subscribers[t] for t in tokens if t in record.subscribers]
                for callback in callbacks:
                    invoke(callback, item, what=f"subscriber of room {room!r}")
        except BaseException:
            with self._lock:
                record.draining = False
            raise

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
            recorded = {room for room, record in self._recorded.items() if record.subscribers}
            return sorted(set(self._subscribers) | set(self._members) | recorded)


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


class _RoomStream(RecordedStream):
    """A recorded room on one node of a backplane: this node's subscribers, fed from the room's channel.

    The catch-up (status, the history, then live with no gap and no
    duplicate) is ``RecordedStream``'s, as for a recorded path; only the
    delivery is the room's: JSON objects to subscriber callbacks.  On the
    backplane's loop only.
    """

    def __init__(self, backplane: Backplane, room: str, recovery: Recovery, on_error: Callable[[BaseException], None]) -> None:
        super().__init__(backplane, _channel(room), recovery, on_error)
        self.room = room
        self.subscribers: dict[Hashable, Subscriber] = {}

    def _hand(self, clients: Iterable[Hashable] | None, exclude: Iterable[Hashable], item: Any) -> None:
        subscribers = self.subscribers
        skip = exclude if isinstance(exclude, Container) else set(exclude)
        for token in list(subscribers) if clients is None else clients:
            callback = subscribers.get(token)
            if callback is not None and token not in skip:
                invoke(callback, item, what=f"subscriber of room {self.room!r}")

    def _status(self, clients: Iterable[Hashable] | None, recovered: bool, reason: str | None, position: Position, exclude: Iterable[Hashable]) -> None:
        self._hand(clients, exclude, status(self.room, recovered, reason, position))

    def _deliver(self, clients: Iterable[Hashable] | None, message: Message, exclude: Iterable[Hashable]) -> None:
        if message.position is None:
            return
        try:
            data = _decode(message.data)
        except ValueError as exc:  # not a rooms message: say so, never deliver it half-read
            self._on_error(exc)
            return
        self._hand(clients, exclude, envelope(self.room, message.position.offset, data))

    def _unavailable(self, client: Hashable) -> None:
        """Told so: it goes on live from here (it may come back later to try again)."""
        position = self.position
        assert position is not None  # started
        self._status((client,), False, "unavailable", position, ())


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
    * a recorded room (``recovery=``) is published with
      ``publish_recorded`` on its channel, and reaches this node's
      subscribers through the channel too (one order on every node, that
      of the offsets), with the catch-up of ``ws.recovery``.

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
        #: This node's recorded subscribers, by room (under the local lock).
        self._recorded: dict[str, dict[int, Subscriber]] = {}
        #: The recorded rooms' streams (on the loop only).
        self._streams: dict[str, _RoomStream] = {}
        # Under the local lock: the rooms whose stream runs; those with a subscriber waiting for its
        # stream to start; and how many recorded publishes of a room wait behind that start.
        self._running: set[str] = set()
        self._starting: set[str] = set()
        self._queued: dict[str, int] = {}

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
            recorded = self._recorded.get(room)
            if recorded is not None and token in recorded:
                del recorded[token]
                last = not recorded
                if last:
                    del self._recorded[room]
            else:
                recorded = None
                self._local.unsubscribe(room, token)
                last = room not in self._local._subscribers
        if recorded is not None:
            _loop.call(self._link.loop, self._leave, room, token)
        if last:
            self._link.apply(lambda: self._sync(room))

    def publish(self, room: str, message: Any) -> int:
        data = _encode(message)
        count = self._local.publish(room, message)
        self._link.publish(f"room:{room}", data)
        return count

    # -- recorded rooms --------------------------------------------------------------------

    def subscribe_recorded(self, room: str, callback: Subscriber, recovery: Recovery, since: Since) -> Hashable:
        """Served on the loop by the room's stream (``ws.recovery``): status, what was missed, live."""
        with self._local._lock:
            token = next(self._local._tokens)
            self._recorded.setdefault(room, {})[token] = callback
            if room not in self._running:
                self._starting.add(room)  # this node's next publishes wait for the stream: the subscriber gets them
        _loop.call(self._link.loop, self._join, room, token, callback, recovery, since)
        self._link.apply(lambda: self._sync(room))  # each time: starts the stream if it is not yet
        return token

    def publish_recorded(self, room: str, message: Any, recovery: Recovery) -> int:
        """Recorded on the room's channel; this node's subscribers get it from there, with its position.

        Publishes overlap (``Link.start``), except while a subscriber of
        this node waits for the room's stream to start: then they queue
        behind that start (``Link.apply``), so that what is published after
        ``subscribe`` returns reaches it.
        """
        data, channel = _encode_recorded(message), _channel(room)
        with self._local._lock:
            count = len(self._recorded.get(room, ()))
            behind = room in self._starting or room in self._queued
            if behind:
                self._queued[room] = self._queued.get(room, 0) + 1
        if not behind:
            self._link.start(lambda: self.backplane.publish_recorded(channel, data, recovery))
            return count

        async def publish() -> None:
            try:
                await self.backplane.publish_recorded(channel, data, recovery)
            finally:
                with self._local._lock:
                    left = self._queued[room] - 1
                    if left:
                        self._queued[room] = left
                    else:
                        del self._queued[room]

        self._link.apply(publish)
        return count

    def _join(self, room: str, token: int, callback: Subscriber, recovery: Recovery, since: Since) -> None:
        stream = self._streams.get(room)
        if stream is None:
            stream = self._streams[room] = _RoomStream(self.backplane, room, recovery, self._failed)
        stream.subscribers[token] = callback
        stream.joined(token, since)

    def _leave(self, room: str, token: int) -> None:
        stream = self._streams.get(room)
        if stream is not None:
            stream.subscribers.pop(token, None)
            stream.left(token)

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
        """Bring the room's channel, stream and listing on the backplane in line with this node's state now."""
        with self._local._lock:
            wanted = room in self._local._subscribers
            recorded = room in self._recorded
            present = wanted or recorded or room in self._local._members
            if not recorded:
                self._starting.discard(room)  # it left before its stream started
        # The stream first, before any await: a subscriber that joins meanwhile finds it (or none, and its own sync starts one).
        stream = self._streams.get(room)
        if not recorded and stream is not None:
            del self._streams[room]
            with self._local._lock:
                self._running.discard(room)
            await stream.close()
        elif recorded and stream is not None:
            try:
                if not stream.started:
                    await stream.start()
            finally:
                with self._local._lock:
                    self._starting.discard(room)
                    if stream.started:
                        self._running.add(room)
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


def _recording(backend: RoomBackend) -> RecordingBackend:
    if not callable(getattr(backend, "subscribe_recorded", None)) or not callable(getattr(backend, "publish_recorded", None)):
        raise TypeError(
            f"the rooms backend {type(backend).__name__} does not record rooms (recovery=): "
            "use MemoryBackend or BackplaneBackend, or implement subscribe_recorded/publish_recorded (RecordingBackend)"
        )
    return cast(RecordingBackend, backend)


def _recovery_option(value: Any) -> Recovery | None:
    """``recovery=``: a ``ws.Recovery``, ``True`` for its defaults, or ``None``."""
    if value is None:
        return None
    if value is True:
        return Recovery()
    if isinstance(value, Recovery):
        return value
    raise TypeError(f"recovery must be a ws.Recovery (or True for its defaults), got {value!r}")


class Room:
    """A handle on one room; cheap to get, holds no state of its own."""

    __slots__ = ("name", "_rooms")

    def __init__(self, rooms: "Rooms", name: str) -> None:
        self.name = name
        self._rooms = rooms

    @property
    def recovery(self) -> Recovery | None:
        """The room's recovery policy (``None``: not recorded); see ``Rooms.get``."""
        return self._rooms.recovery_of(self.name)

    def subscribe(self, callback: Subscriber, *, since: Any = None) -> Callable[[], None]:
        """Call ``callback(message)`` for every message published here; returns ``unsubscribe()``.

        In a recorded room ``callback`` gets the status, then each message
        in its envelope (module documentation); ``since`` is where the
        subscriber's client left off (anything ``read_position`` reads:
        ``ctx.query``, a first message...): it gets exactly what it missed,
        then the live messages.  ``since`` in a room without recovery is a
        ``ValueError``.
        """
        if not callable(callback):
            raise TypeError(f"subscriber must be callable, got {type(callback).__name__}")
        backend = self._rooms.backend
        recovery = self.recovery
        if recovery is not None:
            token = _recording(backend).subscribe_recorded(self.name, callback, recovery, _since(since))
        elif since is not None:
            raise ValueError(f"room {self.name!r} is not recorded, so since= has nothing to start from: get it with recovery=ws.Recovery(...)")
        else:
            token = backend.subscribe(self.name, callback)
        done = False

        def unsubscribe() -> None:
            nonlocal done
            if not done:
                done = True
                backend.unsubscribe(self.name, token)

        return unsubscribe

    def publish(self, message: Any) -> int:
        """Send ``message`` to every subscriber (the publisher's own included); returns how many (of this process).

        In a recorded room it is recorded first, with the next offset, and
        must be a JSON value.
        """
        recovery = self.recovery
        if recovery is not None:
            return _recording(self._rooms.backend).publish_recorded(self.name, message, recovery)
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
    """Every room, by name, on one backend (``MemoryBackend`` unless given).

    ``recovery``: every room is recorded with this policy (``ws.Recovery``,
    or ``True`` for its defaults) unless ``get(name, recovery=...)`` gives
    it another.
    """

    def __init__(self, backend: RoomBackend | None = None, *, recovery: Recovery | bool | None = None) -> None:
        self._backend: RoomBackend = backend if backend is not None else MemoryBackend()
        #: The process-wide rooms follow the first server with a backplane (``ws.styles.cluster``).
        self._follows_cluster = False
        self._recovery = _recovery_option(recovery)
        self._policies: dict[str, Recovery] = {}  # rooms given their own with get(name, recovery=...)
        self._policies_lock = threading.Lock()

    def recovery_of(self, name: str) -> Recovery | None:
        """The recovery policy of room ``name`` (``None``: not recorded)."""
        return self._policies.get(name, self._recovery)

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

    def get(self, name: str, *, recovery: Recovery | bool | None = None) -> Room:
        """The room called ``name`` (it exists while it has members or subscribers).

        ``recovery``: record this room (module documentation).  It is kept
        by this ``Rooms``, so later ``get(name)`` calls need not repeat it;
        give it before the room's first subscribe or publish.  Another
        policy for a room that has one is a ``ValueError``.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"room name must be a non-empty string, got {name!r}")
        policy = _recovery_option(recovery)
        if policy is not None:
            with self._policies_lock:
                current = self._policies.setdefault(name, policy)
            if current != policy:
                raise ValueError(f"room {name!r} is recorded with {current!r} already; it cannot change to {policy!r}")
        return Room(self, name)

    __getitem__ = get

    def join(self, name: str, member: Hashable, *, announce: bool = True) -> bool:
        return self.get(name).join(member, announce=announce)

    def leave(self, name: str, member: Hashable, *, announce: bool = True) -> bool:
        return self.get(name).leave(member, announce=announce)

    def publish(self, name: str, message: Any) -> int:
        return self.get(name).publish(message)

    def subscribe(self, name: str, callback: Subscriber, *, since: Any = None) -> Callable[[], None]:
        return self.get(name).subscribe(callback, since=since)

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


def get(name: str, *, recovery: Recovery | bool | None = None) -> Room:
    """The process-wide room called ``name`` (``recovery``: record it, see ``Rooms.get``)."""
    return default.get(name, recovery=recovery)


def join(name: str, member: Hashable, *, announce: bool = True) -> bool:
    return default.join(name, member, announce=announce)


def leave(name: str, member: Hashable, *, announce: bool = True) -> bool:
    return default.leave(name, member, announce=announce)


def publish(name: str, message: Any) -> int:
    return default.publish(name, message)


def subscribe(name: str, callback: Subscriber, *, since: Any = None) -> Callable[[], None]:
    return default.subscribe(name, callback, since=since)


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
