"""The in-process backplane: what one process uses, with the semantics of the Redis one.

A ``MemoryHub`` plays the part Redis plays for ``RedisBackplane``: the
shared state of the nodes attached to it.  ``MemoryBackplane()`` gets a hub
of its own (a cluster of one: publishing reaches nobody else, presence and
the store are this process's), so two servers in one process share nothing
unless they are given the same hub.  Nodes may live on different event
loops (threads): the hub is locked, and a message is handed to each
subscriber node with ``call_soon_threadsafe`` on that node's loop, in
publish order.  Payloads are passed as the same ``bytes`` objects, never
copied or encoded.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import threading
import time

from .base import DEFAULT_PRESENCE_TTL, Backplane, BackplaneError, Member, Message, as_bytes, check_name, check_ttl
from .history import Position, Recovery, Replay, new_epoch

__all__ = ["MemoryHub", "MemoryBackplane"]


class MemoryHub:
    """Shared state of in-process nodes: channels, the key-value store, presence."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, MemoryBackplane] = {}
        self._channels: dict[str, set[str]] = {}  # channel -> subscribed node ids
        self._values: dict[str, tuple[bytes, float | None]] = {}  # key -> (value, deadline)
        self._expiries: list[tuple[float, str]] = []  # heap of (deadline, key)
        self._presence: dict[str, dict[str, dict[str, bytes]]] = {}  # group -> node -> member -> info
        self._alive: dict[str, float] = {}  # node -> deadline of its presence
        self._logs: dict[str, _Log] = {}  # recorded channel -> its history
        self._swept = 0.0

    # -- nodes and channels ------------------------------------------------------------

    def attach(self, node: "MemoryBackplane") -> None:
        with self._lock:
            if node.node_id in self._nodes:
                raise BackplaneError(f"node id {node.node_id!r} is already attached to this hub")
            self._nodes[node.node_id] = node

    def detach(self, node_id: str) -> None:
        with self._lock:
            self._nodes.pop(node_id, None)
            for channel in [c for c, nodes in self._channels.items() if node_id in nodes]:
                self._remove_subscriber(channel, node_id)
            self._forget(node_id)

    def subscribe(self, channel: str, node_id: str) -> None:
        with self._lock:
            self._channels.setdefault(channel, set()).add(node_id)

    def unsubscribe(self, channel: str, node_id: str) -> None:
        with self._lock:
            self._remove_subscriber(channel, node_id)

    def _remove_subscriber(self, channel: str, node_id: str) -> None:
        nodes = self._channels.get(channel)
        if nodes is not None:
            nodes.discard(node_id)
            if not nodes:
                del self._channels[channel]

    def publish(self, message: Message) -> int:
        with self._lock:
            targets = [self._nodes[n] for n in self._channels.get(message.channel, ()) if n != message.origin]
        return sum(target._post(message) for target in targets)

    # -- recorded channels -----------------------------------------------------------

    def _log(self, channel: str, recovery: Recovery, now: float) -> "_Log":
        """The channel's history, trimmed to ``recovery`` (a new epoch if it was idle past ``idle_ttl``)."""
        if now - self._swept >= 1.0:  # channels nobody touches any more: dropped within a second of their idle_ttl
            self._swept = now
            for name in [c for c, log in self._logs.items() if now - log.touched > log.idle_ttl]:
                del self._logs[name]
        log = self._logs.get(channel)
        if log is None or now - log.touched > recovery.idle_ttl:
            log = self._logs[channel] = _Log()
        log.touched, log.idle_ttl = now, recovery.idle_ttl
        entries, oldest = log.entries, now - recovery.window
        while entries and (len(entries) > recovery.max_messages or entries[0][1] < oldest):
            entries.popleft()
        return log

    def publish_recorded(self, message: Message, recovery: Recovery) -> Position:
        with self._lock:
            now = time.monotonic()
            log = self._log(message.channel, recovery, now)
            log.top += 1
            position = Position(log.top, log.epoch)
            recorded = message._replace(position=position)
            log.entries.append((position.offset, now, recorded))
            if len(log.entries) > recovery.max_messages:
                log.entries.popleft()
            # Posted under the lock: every node gets the channel's messages in offset order.
            for node_id in self._channels.get(message.channel, ()):
                self._nodes[node_id]._post(recorded)
            return position

    def history(self, channel: str, since: Position | None, recovery: Recovery) -> Replay:
        with self._lock:
            now = time.monotonic()
            log = self._log(channel, recovery, now)
            top = Position(log.top, log.epoch)
            if since is None or since == top:
                return Replay(True, top, [])
            if since.epoch != log.epoch:
                return Replay(False, top, [], "epoch")
            if since.offset > log.top:
                return Replay(False, top, [], "ahead")
            entries = log.entries
            first = entries[0][0] if entries else log.top + 1
            if first > since.offset + 1:
                # Missing because it aged out of the window, or because max_messages pushed it out.
                return Replay(False, top, [], "window" if log.aged_out(since.offset, recovery) else "trimmed")
            skip = since.offset + 1 - first
            return Replay(True, top, [entry[2] for entry in list(entries)[skip:]])

    # -- key-value store -----------------------------------------------------------------

    def _expire(self, now: float) -> None:
        heap = self._expiries
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            entry = self._values.get(key)
            if entry is not None and entry[1] == deadline:
                del self._values[key]

    def get(self, key: str) -> bytes | None:
        with self._lock:
            self._expire(time.monotonic())
            entry = self._values.get(key)
            return None if entry is None else entry[0]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            self._put(key, value, ttl, now)

    def _put(self, key: str, value: bytes, ttl: float | None, now: float) -> None:
        deadline = None if ttl is None else now + ttl
        self._values[key] = (value, deadline)
        if deadline is not None:
            heapq.heappush(self._expiries, (deadline, key))

    def delete(self, key: str) -> bool:
        with self._lock:
            self._expire(time.monotonic())
            return self._values.pop(key, None) is not None

    def incr(self, key: str, amount: int, ttl: float | None) -> int:
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            entry = self._values.get(key)
            try:
                value = (0 if entry is None else int(entry[0])) + amount
            except ValueError:
                raise BackplaneError(f"the value of {key!r} is not an integer") from None
            if ttl is None and entry is not None:
                self._values[key] = (str(value).encode(), entry[1])  # as Redis' INCR: the expiry stays
            else:
                self._put(key, str(value).encode(), ttl, now)
            return value

    def keys(self, prefix: str) -> list[str]:
        with self._lock:
            self._expire(time.monotonic())
            return sorted(k for k in self._values if k.startswith(prefix))

    # -- presence ------------------------------------------------------------------------

    def _forget(self, node_id: str) -> None:
        self._alive.pop(node_id, None)
        for group in [g for g, nodes in self._presence.items() if node_id in nodes]:
            del self._presence[group][node_id]
            if not self._presence[group]:
                del self._presence[group]

    def _prune(self) -> None:
        now = time.monotonic()
        for node_id in [n for n, deadline in self._alive.items() if deadline <= now]:
            self._forget(node_id)

    def _restore(self, node: "MemoryBackplane") -> None:
        """Write all of ``node``'s records (it is new, or had expired: its loop stalled past the TTL)."""
        for group, members in node._tracked.items():
            self._presence.setdefault(group, {})[node.node_id] = dict(members)
        self._alive[node.node_id] = time.monotonic() + node.presence_ttl

    def track(self, node: "MemoryBackplane", group: str, member: str, info: bytes) -> None:
        with self._lock:
            self._prune()
            if node.node_id in self._alive:
                self._presence.setdefault(group, {}).setdefault(node.node_id, {})[member] = info
            else:
                self._restore(node)

    def untrack(self, node_id: str, group: str, member: str) -> None:
        with self._lock:
            members = self._presence.get(group, {}).get(node_id)
            if members is not None and members.pop(member, None) is not None and not members:
                del self._presence[group][node_id]
                if not self._presence[group]:
                    del self._presence[group]

    def refresh(self, node: "MemoryBackplane") -> None:
        with self._lock:
            self._prune()
            if node.node_id in self._alive:
                self._alive[node.node_id] = time.monotonic() + node.presence_ttl
            else:
                self._restore(node)

    def members(self, group: str) -> list[Member]:
        with self._lock:
            self._prune()
            nodes = self._presence.get(group, {})
            return sorted(Member(m, n, info) for n, members in nodes.items() for m, info in members.items())

    def count(self, group: str) -> int:
        with self._lock:
            self._prune()
            return sum(len(members) for members in self._presence.get(group, {}).values())

    def locate(self, group: str, member: str) -> Member | None:
        with self._lock:
            self._prune()
            for node_id, members in sorted(self._presence.get(group, {}).items()):
                if member in members:
                    return Member(member, node_id, members[member])
            return None

    def nodes(self) -> list[str]:
        with self._lock:
            self._prune()
            return sorted(self._alive)


class _Log:
    """One recorded channel in memory: its epoch, last offset and retained messages."""

    __slots__ = ("epoch", "top", "entries", "touched", "idle_ttl")

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.top = 0
        self.entries: collections.deque[tuple[int, float, Message]] = collections.deque()  # (offset, time, message)
        self.touched = 0.0
        self.idle_ttl = 0.0

    def aged_out(self, offset: int, recovery: Recovery) -> bool:
        """Whether the message after ``offset`` is gone because of the window (not the count).

        Messages are trimmed by count first only when more than
        ``max_messages`` came after it; otherwise it left by age.
        """
        return self.top - offset <= recovery.max_messages


class MemoryBackplane(Backplane):
    """A node of an in-process cluster (its own ``MemoryHub`` unless given one)."""

    @property
    def crosses_processes(self) -> bool:
        """No: the hub lives in this process (each worker of ``workers=N`` would get its own)."""
        return False

    def __init__(
        self,
        hub: MemoryHub | None = None,
        *,
        node_id: str | None = None,
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
    ) -> None:
        super().__init__(node_id=node_id, presence_ttl=presence_ttl)
        self.hub = MemoryHub() if hub is None else hub

    async def _open(self) -> None:
        self.hub.attach(self)
        self.hub.refresh(self)

    async def _shut(self) -> None:
        self.hub.detach(self.node_id)

    def _post(self, message: Message) -> int:
        """Queue ``message`` for this node's loop; 1 if it was queued (the loop still runs)."""
        try:
            if asyncio._get_running_loop() is self._loop:
                self._loop.call_soon(self._deliver, message)
            else:
                self._loop.call_soon_threadsafe(self._deliver, message)
        except RuntimeError:  # its loop is closed: the node is gone
            return 0
        return 1

    # -- publish / subscribe -------------------------------------------------------------

    async def publish(self, channel: str, data: bytes) -> int:
        self._check_open()
        return self.hub.publish(Message(check_name("channel", channel), as_bytes("data", data), self.node_id))

    async def publish_recorded(self, channel: str, data: bytes, recovery: Recovery) -> Position:
        self._check_open()
        message = Message(check_name("channel", channel), as_bytes("data", data), self.node_id)
        return self.hub.publish_recorded(message, recovery)

    async def history(self, channel: str, since: Position | None, recovery: Recovery) -> Replay:
        self._check_open()
        return self.hub.history(check_name("channel", channel), since, recovery)

    async def _subscribe_channel(self, channel: str) -> None:
        self.hub.subscribe(channel, self.node_id)

    async def _unsubscribe_channel(self, channel: str) -> None:
        self.hub.unsubscribe(channel, self.node_id)

    # -- key-value store -----------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        return self.hub.get(check_name("key", key))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._check_open()
        self.hub.set(check_name("key", key), as_bytes("value", value), check_ttl(ttl))

    async def delete(self, key: str) -> bool:
        self._check_open()
        return self.hub.delete(check_name("key", key))

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        self._check_open()
        return self.hub.incr(check_name("key", key), int(amount), check_ttl(ttl))

    async def keys(self, prefix: str = "") -> list[str]:
        self._check_open()
        return self.hub.keys(prefix)

    # -- presence ------------------------------------------------------------------------

    async def _track(self, group: str, member: str, info: bytes) -> None:
        self.hub.track(self, group, member, info)

    async def _untrack(self, group: str, member: str) -> None:
        self.hub.untrack(self.node_id, group, member)

    async def _refresh(self) -> None:
        self.hub.refresh(self)

    async def count(self, group: str) -> int:
        self._check_open()
        return self.hub.count(group)

    async def members(self, group: str) -> list[Member]:
        self._check_open()
        return self.hub.members(group)

    async def locate(self, group: str, member: str) -> Member | None:
        self._check_open()
        return self.hub.locate(group, member)

    async def nodes(self) -> list[str]:
        self._check_open()
        return self.hub.nodes()
