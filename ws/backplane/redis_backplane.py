"""The Redis backplane, on redis-py's asyncio client (``pip install 'ws-js[redis]'``).

Connections (per node):

* one dedicated **subscriber** connection, read by one task: ``SUBSCRIBE``/
  ``UNSUBSCRIBE`` are sent on it as channels gain their first or lose their
  last local subscriber.  When it breaks (or stays silent for two ticks of
  its watchdog: a ``PING`` goes out every ``presence_ttl / 3`` seconds), the node
  emits ``'disconnected'``, reconnects with exponential backoff (0.1 s up to
  ``reconnect_max_delay``, 0.5 s by default), subscribes every channel again, rewrites its
  presence, and emits ``'reconnected'``.
* a **pool** for everything else.  Publishes go through one queue, sent in
  pipelined batches by one task: they reach Redis in call order, and a
  failed batch fails each of its ``publish`` calls (``BackplaneError``).
  At most ``max_pending`` publishes wait; one more fails at once.  Nothing
  is retried, so nothing is delivered twice.

Every message carries its publisher's node id in front (one length byte,
the id, the payload), so a node skips its own messages.  Recorded publishes
(``publish_recorded``, a Lua script in ``redis_history``) go through the
same queue, so one node's publishes of both kinds keep their call order;
their messages start with a zero byte and reach this node too.

Key layout (``prefix`` defaults to ``ws:``; pub/sub ignores the database
number, so give each application on one Redis its own prefix)::

    {prefix}ch:{{channel}}            pub/sub channel
    {prefix}kv:{key}                  string, SET ... PX for expiry
    {prefix}nodes                     zset: node id -> expiry (ms, Redis clock)
    {prefix}presence:{{group}}        zset: node id -> expiry, the nodes with members in group
    {prefix}members:{{group}}@{node}  hash: member -> info, PEXPIRE presence_ttl

The braces are Redis Cluster hash tags (``hash_tag``): a channel's keys, and
a group's, share one slot, so each script touches one slot and the same
layout serves ``RedisClusterBackplane`` (redis_cluster.py).  On one Redis
they cost nothing.

A count walks the group's zset (live nodes only: score above Redis' TIME)
and adds the ``HLEN`` of each node's hash, in one Lua script: its cost is
the number of nodes in the group, never a ``KEYS``/``SCAN`` of the
keyspace.  Each node renews its entries (zset scores and hash expiry) every
``presence_ttl / 3`` seconds in one script; a hash found missing (Redis was
restarted, or the node stalled past the TTL) is written again from the
node's own records.  Expired zset entries are pruned by the renewals.  The
scripts build the hash keys from the zset members: keys of the group's
slot, which is what lets them run on a Redis Cluster too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import importlib
import logging
import random
import re
import urllib.parse
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, Iterable, Iterator, NamedTuple

from ..exceptions import describe
from . import redis_history
from .base import DEFAULT_PRESENCE_TTL, Backplane, BackplaneError, Member, Message, as_bytes, check_name, check_ttl
from .history import Position, Recovery, Replay

__all__ = ["RedisBackplane", "INSTALL_HINT"]

logger = logging.getLogger("ws.backplane")

INSTALL_HINT = "the Redis backplane needs the redis package (redis-py 5.0.1 or later): pip install 'ws-js[redis]'"

#: Publishes sent in one pipeline.
BATCH = 256
#: Groups renewed by one script call.
REFRESH_CHUNK = 256


def _import_redis() -> SimpleNamespace:
    """redis-py, imported on first use so that ``ws`` runs without it.

    Its annotations changed between 5 and 8; this module treats its objects as ``Any``.
    """
    try:
        modules = [importlib.import_module(f"redis.{name}") for name in ("asyncio", "asyncio.retry", "backoff", "exceptions")]
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    aioredis, retry, backoff, exceptions = modules
    return SimpleNamespace(
        Redis=aioredis.Redis,
        ConnectionPool=aioredis.ConnectionPool,
        no_retry=lambda: retry.Retry(backoff.NoBackoff(), 0),
        errors=(exceptions.RedisError, OSError, asyncio.TimeoutError),
    )


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


# -- Lua: presence, with Redis' clock so that nodes' clocks never matter ------------------------

_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function keep(key, node, ttl)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, now + ttl, node)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
local function live(key)
  return redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')
end
"""

# A script's keys are (presence, members) pairs, after the nodes key when their number is odd:
# one Redis takes them all in one call; on a Redis Cluster the nodes key (a slot of its own)
# goes alone, and each call holds the groups of one slot.
SCRIPTS = {
    # KEYS: [nodes], then (presence, members) per group.  ARGV: node, ttl.  -> groups (1-based) whose hash is gone
    "refresh": """
local node, ttl, first = ARGV[1], tonumber(ARGV[2]), 1
if #KEYS % 2 == 1 then keep(KEYS[1], node, ttl); first = 2 end
local missing = {}
for i = first, #KEYS, 2 do
  keep(KEYS[i], node, ttl)
  if redis.call('PEXPIRE', KEYS[i + 1], ttl) == 0 then missing[#missing + 1] = (i - first) / 2 + 1 end
end
return missing
""",
    # KEYS: [nodes], presence, members.  ARGV: node, ttl, replace ('1': the pairs are the whole group), member, info, ...
    "put": """
local node, ttl, n = ARGV[1], tonumber(ARGV[2]), #KEYS
local presence, members = KEYS[n - 1], KEYS[n]
if ARGV[3] == '1' then redis.call('DEL', members) end
for i = 4, #ARGV, 2 do redis.call('HSET', members, ARGV[i], ARGV[i + 1]) end
if redis.call('EXISTS', members) == 1 then
  redis.call('PEXPIRE', members, ttl)
  keep(presence, node, ttl)
else
  redis.call('ZREM', presence, node)
end
if n == 3 then keep(KEYS[1], node, ttl) end
return 1
""",
    # KEYS: presence, members.  ARGV: node, member.
    "untrack": """
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
""",
    # KEYS: [nodes], then (presence, members) per group.  ARGV: node.
    "leave": """
local first = 1
if #KEYS % 2 == 1 then redis.call('ZREM', KEYS[1], ARGV[1]); first = 2 end
for i = first, #KEYS, 2 do
  redis.call('ZREM', KEYS[i], ARGV[1])
  redis.call('DEL', KEYS[i + 1])
end
return 1
""",
    # KEYS: presence.  ARGV: members key up to the '@'.
    "count": """
local n = 0
for _, node in ipairs(live(KEYS[1])) do n = n + redis.call('HLEN', ARGV[1] .. node) end
return n
""",
    # KEYS: presence.  ARGV: members key up to the '@'.  -> node, {member, info, ...}, ...
    "members": """
local out = {}
for _, node in ipairs(live(KEYS[1])) do
  out[#out + 1] = node
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. node)
end
return out
""",
    # KEYS: presence.  ARGV: members key up to the '@', member.  -> {node, info} or nil
    "locate": """
for _, node in ipairs(live(KEYS[1])) do
  local info = redis.call('HGET', ARGV[1] .. node, ARGV[2])
  if info then return {node, info} end
end
return false
""",
    # KEYS: nodes.
    "nodes": "return live(KEYS[1])",
}


def hash_tag(name: str) -> str:
    """``{name}``: the part of a key Redis Cluster hashes, so a channel's keys share one slot.

    A name holding a brace would end the tag early, so it is replaced by its digest.
    """
    if "{" in name or "}" in name:
        name = hashlib.sha1(name.encode()).hexdigest()[:20]
    return "{" + name + "}"


class _Send(NamedTuple):
    """One publish waiting in the outbox: the command, its caller's future, and what its reply means."""

    command: tuple[Any, ...]
    future: asyncio.Future[Any]
    channel: str
    recorded: bool


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RedisBackplane(Backplane):
    """A node of a cluster that shares one Redis server (see the module documentation)."""

    #: Whether one script call may hold keys of several slots (the nodes key and any groups): one Redis, yes.
    _cross_slot = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "ws:",
        node_id: str | None = None,
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
        connect_timeout: float = 5.0,
        command_timeout: float = 5.0,
        reconnect_max_delay: float = 0.5,
        max_pending: int = 10_000,
    ) -> None:
        super().__init__(node_id=node_id, presence_ttl=presence_ttl)
        self._redis = _import_redis()
        self.url = check_name("url", url)
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self.max_pending = max_pending
        self._errors: tuple[type[BaseException], ...] = self._redis.errors
        self._origin = self.node_id.encode()
        self._header = bytes([len(self._origin)]) + self._origin
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._sub: Any = None  # the subscriber connection while it is up
        self._send_lock = asyncio.Lock()  # writes on the subscriber connection
        self._keys: dict[bytes, str] = {}  # subscribed Redis channel -> channel
        self._confirming: dict[bytes, list[asyncio.Future[None]]] = {}
        self._outbox: collections.deque[_Send] = collections.deque()
        #: How a message is published: ``SPUBLISH`` (sharded pub/sub) on a Redis Cluster.
        self._publish_command = "PUBLISH"
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Where the recorded-publish script is known to be loaded (``None``: the one Redis; a cluster's
        #: master names).  Forgotten on any failure there, so a restarted Redis gets it again first.
        self._script_loaded: set[str | None] = set()
        self._dirty: set[str] = set()  # groups whose copy in Redis may be stale
        self._rewriting: set[str] = set()
        self._recovering = False
        self._seen_at = 0.0
        self._pinged_at: float | None = None
        self._stall: BaseException | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "RedisBackplane":
        """``RedisBackplane.from_url('redis://host:6379/0', prefix='chat:')``."""
        return cls(url, **options)

    @property
    def connected(self) -> bool:
        return self.started and self._sub is not None

    # -- names -----------------------------------------------------------------------------

    def _channel_key(self, channel: str) -> bytes:
        return f"{self.prefix}ch:{hash_tag(channel)}".encode()

    def _group_keys(self, group: str) -> tuple[str, str]:
        return f"{self.prefix}presence:{hash_tag(group)}", f"{self._members_base(group)}{self.node_id}"

    def _members_base(self, group: str) -> str:
        return f"{self.prefix}members:{hash_tag(group)}@"

    @property
    def _nodes_key(self) -> str:
        return f"{self.prefix}nodes"

    def _error(self, what: str, exc: BaseException) -> BackplaneError:
        error = BackplaneError(f"{what} failed: Redis at {redact(self.url)}: {describe(exc)}")
        error.__cause__ = exc
        return error

    @contextlib.contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """Turn redis-py's and the network's errors into ``BackplaneError`` (with the cause)."""
        self._check_open()
        try:
            yield
        except self._errors as exc:
            raise self._error(what, exc) from exc

    # -- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        pool = self._redis.ConnectionPool.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.command_timeout,
            retry=self._redis.no_retry(),
            protocol=2,  # pub/sub replies read as plain arrays (redis-py 8 defaults to RESP3 pushes)
        )
        if str(pool.connection_kwargs.get("protocol")) != "2":
            await pool.disconnect()
            raise BackplaneError("the backplane reads pub/sub replies in RESP2: drop protocol=3 from the Redis URL")
        self._client = self._redis.Redis(connection_pool=pool)
        self._register_scripts()
        try:
            await asyncio.wait_for(self._client.ping(), self.connect_timeout)
            conn = await self._connect_subscriber()
        except self._errors as exc:
            await self._dispose()
            raise BackplaneError(f"could not connect to Redis at {redact(self.url)} (within {self.connect_timeout} s): {describe(exc)}") from exc
        await self._attach(conn)
        self._tasks = [
            self._loop.create_task(self._listen(conn), name=f"ws-backplane-listen-{self.node_id}"),
            self._loop.create_task(self._write(), name=f"ws-backplane-publish-{self.node_id}"),
            self._loop.create_task(self._watchdog(), name=f"ws-backplane-watchdog-{self.node_id}"),
        ]
        try:
            await self._refresh()  # the node appears in nodes() now, not one tick later
        except self._errors as exc:
            logger.warning("backplane %s: first refresh failed: %s", self.node_id, describe(exc))

    def _register_scripts(self) -> None:
        self._scripts = {name: self._client.register_script(_PRELUDE + body) for name, body in SCRIPTS.items()}
        self._scripts["history"] = self._client.register_script(redis_history.HISTORY_SCRIPT)

    async def _shut(self) -> None:
        if self._sub is not None:
            try:
                for chunk in _chunks(list(self._tracked), REFRESH_CHUNK) if self._tracked else iter([[]]):
                    keys = [self._nodes_key] + [k for g in chunk for k in self._group_keys(g)]
                    await asyncio.wait_for(self._scripts["leave"](keys=keys, args=[self.node_id]), self.command_timeout)
            except self._errors as exc:
                logger.warning("backplane %s: could not remove its presence (it expires in %s s): %s", self.node_id, self.presence_ttl, describe(exc))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_publishes(self._outbox, lambda: BackplaneError("backplane closed before the publish was sent"))
        self._outbox.clear()
        self._release_confirmations()
        conn, self._sub = self._sub, None
        if conn is not None:
            await self._discard(conn)
        await self._dispose()

    async def _dispose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), self.command_timeout)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.connection_pool.disconnect(), self.command_timeout)

    # -- the subscriber connection -------------------------------------------------------

    async def _connect_subscriber(self) -> Any:
        pool = self._client.connection_pool
        # Reads wait for messages as long as it takes: the keeper's PING watches the link.
        conn = pool.connection_class(**dict(pool.connection_kwargs, socket_timeout=None))
        try:
            await asyncio.wait_for(conn.connect(), self.connect_timeout)
        except BaseException:
            await self._discard(conn)
            raise
        return conn

    async def _attach(self, conn: Any) -> None:
        """Subscribe ``conn`` to every channel this node has, and make it the subscriber."""
        async with self._send_lock:
            if self._keys:
                await asyncio.wait_for(conn.send_command("SUBSCRIBE", *self._keys), self.command_timeout)
            # Every group is rewritten whole by the refresh that follows: a change made between now
            # and then (the link is up) must not recreate a lost group with its one member only.
            self._dirty.update(self._tracked)
            self._sub = conn
            self._seen_at, self._pinged_at, self._stall = self._loop.time(), None, None

    async def _discard(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.disconnect(nowait=True), 1.0)

    async def _listen(self, conn: Any) -> None:
        """Read the subscriber connection; on failure, reconnect with backoff and restore everything."""
        delay = 0.0
        while True:
            try:
                await self._read(conn)
            except Exception as exc:  # a closed link, or a reply we cannot read: start afresh
                self._lost(self._stall or exc)
                await self._discard(conn)
            while True:
                delay = min(max(delay * 2, 0.1), self.reconnect_max_delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                try:
                    conn = await self._connect_subscriber()
                except Exception as exc:
                    logger.debug("backplane %s: reconnecting to Redis failed: %s", self.node_id, describe(exc))
                    continue
                try:
                    await self._attach(conn)
                except Exception as exc:
                    logger.debug("backplane %s: resubscribing failed: %s", self.node_id, describe(exc))
                    await self._discard(conn)
                    continue
                break
            delay = 0.0
            logger.info("backplane %s: reconnected to Redis; restoring presence", self.node_id)
            self._recovering = True
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(self._loop.create_task(self._recover()))

    async def _read(self, conn: Any) -> None:
        while True:
            response = await conn.read_response()
            self._seen_at = self._loop.time()
            if type(response) is not list or len(response) < 3:
                continue  # PONG
            kind = response[0]
            if kind == b"message":
                self._on_message(response[1], response[2])
            elif kind == b"subscribe":
                for waiter in self._confirming.pop(response[1], ()):
                    if not waiter.done():
                        waiter.set_result(None)

    def _on_message(self, key: bytes, envelope: bytes) -> None:
        channel = self._keys.get(key)
        if channel is None or not envelope:
            return
        if envelope[0] == redis_history.MARKER:  # recorded: every node delivers it, this one too
            recorded = redis_history.parse_envelope(envelope)
            if recorded is None:
                logger.warning("backplane %s: malformed recorded message on %r dropped", self.node_id, channel)
                return
            self._deliver(Message(channel, recorded[1], recorded[0], recorded[2]))
            return
        end = 1 + envelope[0]
        origin = envelope[1:end]
        if origin == self._origin:
            return
        self._deliver(Message(channel, envelope[end:], origin.decode("ascii", "replace")))

    def _lost(self, cause: BaseException) -> None:
        if self._sub is None:
            return
        self._sub = None
        self._script_loaded.clear()
        self._release_confirmations()
        error = BackplaneError(f"lost the connection to Redis at {redact(self.url)}: {describe(cause)}; reconnecting")
        error.__cause__ = cause
        logger.warning("backplane %s: %s", self.node_id, error)
        self.emit("disconnected", error)

    def _release_confirmations(self) -> None:
        """Subscriptions waiting for Redis' confirmation return: they are made again on reconnection."""
        for waiters in self._confirming.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._confirming.clear()

    async def _recover(self) -> None:
        try:
            await self._refresh()
        except self._errors as exc:  # the keeper tries again
            logger.warning("backplane %s: restoring presence failed: %s", self.node_id, describe(exc))

    async def _watchdog(self) -> None:
        """Every ``presence_ttl / 3`` seconds, on its own schedule (a slow refresh must not delay it)."""
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            await self._watch()

    async def _watch(self) -> None:
        """PING the subscriber connection; one that answered nothing since the last PING is dropped."""
        conn = self._sub
        if conn is None:
            return
        if self._pinged_at is not None and self._seen_at < self._pinged_at:
            silent = self._loop.time() - self._pinged_at
            self._stall = TimeoutError(f"no answer to PING for {silent:.1f} s")
            await self._discard(conn)  # the reading task sees it closed and reconnects
            return
        self._pinged_at = self._loop.time()
        try:
            async with self._send_lock:
                await asyncio.wait_for(conn.send_command("PING"), self.command_timeout)
        except self._errors as exc:
            self._stall = exc
            await self._discard(conn)

    # -- publish / subscribe -------------------------------------------------------------

    async def publish(self, channel: str, data: bytes) -> int:
        self._check_open()
        key, payload = self._channel_key(check_name("channel", channel)), as_bytes("data", data)
        return int(await self._send((self._publish_command, key, self._header + payload), channel, False))

    async def publish_recorded(self, channel: str, data: bytes, recovery: Recovery) -> Position:
        """One script appends to the stream and publishes (see ``redis_history``); queued as ``publish`` is."""
        self._check_open()
        keys, payload = self._history_keys(check_name("channel", channel)), as_bytes("data", data)
        if not isinstance(recovery, Recovery):
            raise TypeError(f"recovery must be a Recovery, got {type(recovery).__name__}")
        args = redis_history.publish_args(keys, self._channel_key(channel), self._origin, payload, recovery, self._publish_command)
        result: Position = await self._send(("EVALSHA", *args), channel, True)
        return result

    async def history(self, channel: str, since: Position | None, recovery: Recovery) -> Replay:
        keys = self._history_keys(check_name("channel", channel))
        if not isinstance(recovery, Recovery):
            raise TypeError(f"recovery must be a Recovery, got {type(recovery).__name__}")
        args = redis_history.history_args(since, recovery)
        with self._failing("history"):
            reply = await self._scripts["history"](keys=keys, args=args)
        return redis_history.replay(channel, reply)

    def _history_keys(self, channel: str) -> list[str]:
        return redis_history.history_keys(self.prefix, hash_tag(channel))

    def _send(self, command: tuple[Any, ...], channel: str, recorded: bool) -> asyncio.Future[Any]:
        """Queue one publish for the writer: publishes reach Redis in the order of these calls."""
        if len(self._outbox) >= self.max_pending:
            raise BackplaneError(f"{len(self._outbox)} publishes already wait for Redis at {redact(self.url)}: it is slow or unreachable")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._outbox.append(_Send(command, future, channel, recorded))
        self._wake.set()
        return future

    async def _write(self) -> None:
        """Send queued publishes in order, a pipeline at a time."""
        await self._drain(self._outbox, self._wake, None)

    async def _drain(self, outbox: collections.deque[_Send], wake: asyncio.Event, master: str | None) -> None:
        """Send ``outbox``'s publishes in order, a pipeline at a time (``master``: the cluster master they go to)."""
        while True:
            await wake.wait()
            wake.clear()
            while outbox:
                batch = [outbox.popleft() for _ in range(min(len(outbox), BATCH))]
                # The first batch with recorded publishes loads their script, in the same pipeline: a
                # Redis that restarted (and forgot it) must not answer NOSCRIPT, which could not be retried
                # without reordering.  Any failure there forgets that it was loaded, so the next batch
                # loads it again (a restart breaks the connections, which fails a batch or the link).
                load = master not in self._script_loaded and any(send.recorded for send in batch)
                try:
                    pipe = self._client.pipeline(transaction=False)
                    if load:
                        self._load_publish_script(pipe, master)
                    for send in batch:
                        pipe.execute_command(*send.command)
                    replies = await pipe.execute(raise_on_error=False)
                except self._errors as exc:
                    self._script_loaded.discard(master)
                    self._fail_publishes(batch, lambda: self._error("publish", exc))
                    continue
                except asyncio.CancelledError:
                    self._fail_publishes(batch, lambda: BackplaneError("backplane closed while the publish was in flight"))
                    raise
                if load:
                    if isinstance(replies[0], Exception):
                        self._script_loaded.discard(master)
                    else:
                        self._script_loaded.add(master)
                for send, reply in zip(batch, replies[load:]):
                    if send.future.done():
                        continue
                    if isinstance(reply, Exception):  # this command failed (a script error): the others stand
                        self._script_loaded.discard(master)  # NOSCRIPT after all: load it with the next batch
                        send.future.set_exception(self._error("publish_recorded" if send.recorded else "publish", reply))
                    elif send.recorded:
                        send.future.set_result(redis_history.position(reply))
                    else:
                        send.future.set_result(max(0, int(reply) - self._hears(send.channel)))

    def _load_publish_script(self, pipe: Any, master: str | None) -> None:
        pipe.script_load(redis_history.PUBLISH_SCRIPT)

    def _hears(self, channel: str) -> bool:
        """Whether Redis counted this node's own subscription in the reply to a publish on ``channel``."""
        return self._sub is not None and channel in self._channels

    @staticmethod
    def _fail_publishes(entries: Iterable[_Send], error: Callable[[], BackplaneError]) -> None:
        for send in entries:
            if not send.future.done():
                send.future.set_exception(error())  # one exception each: each caller gets its own traceback

    async def _subscribe_channel(self, channel: str) -> None:
        key = self._channel_key(channel)
        self._keys[key] = channel
        waiter: asyncio.Future[None] = self._loop.create_future()
        async with self._send_lock:
            conn = self._sub
            if conn is None:
                return  # made on reconnection
            self._confirming.setdefault(key, []).append(waiter)
            try:
                await asyncio.wait_for(conn.send_command("SUBSCRIBE", key), self.command_timeout)
            except self._errors:
                return  # the reading task sees the broken link; reconnection subscribes again
        try:
            await asyncio.wait_for(waiter, self.command_timeout)
        except asyncio.TimeoutError:
            logger.warning("backplane %s: Redis did not confirm the subscription to %r in time", self.node_id, channel)

    async def _unsubscribe_channel(self, channel: str) -> None:
        key = self._channel_key(channel)
        self._keys.pop(key, None)
        async with self._send_lock:
            conn = self._sub
            if conn is not None:
                with contextlib.suppress(*self._errors):
                    await asyncio.wait_for(conn.send_command("UNSUBSCRIBE", key), self.command_timeout)

    # -- key-value store -----------------------------------------------------------------

    def _kv(self, key: str) -> str:
        return f"{self.prefix}kv:{check_name('key', key)}"

    async def get(self, key: str) -> bytes | None:
        with self._failing("get"):
            value = await self._client.get(self._kv(key))
        return None if value is None else bytes(value)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        name, payload, ttl = self._kv(key), as_bytes("value", value), check_ttl(ttl)
        with self._failing("set"):
            await self._client.set(name, payload, px=None if ttl is None else max(1, round(ttl * 1000)))

    async def delete(self, key: str) -> bool:
        with self._failing("delete"):
            return bool(await self._client.delete(self._kv(key)))

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        name, ttl = self._kv(key), check_ttl(ttl)
        with self._failing("incr"):
            pipe = self._client.pipeline(transaction=True)
            pipe.incrby(name, int(amount))
            if ttl is not None:
                pipe.pexpire(name, max(1, round(ttl * 1000)))
            try:
                results = await pipe.execute()
            except self._redis.errors[0] as exc:
                if "not an integer" not in str(exc):
                    raise
                raise BackplaneError(f"the value of {key!r} is not an integer") from exc
        return int(results[0])

    async def keys(self, prefix: str = "") -> list[str]:
        start = f"{self.prefix}kv:"
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", start + prefix) + "*"
        with self._failing("keys"):
            found = [key async for key in self._client.scan_iter(match=pattern, count=1000)]
        return sorted(bytes(key).decode()[len(start) :] for key in found)

    # -- presence ------------------------------------------------------------------------

    async def _put(self, group: str, members: dict[str, bytes], replace: bool) -> None:
        presence, hashed = self._group_keys(group)
        args: list[Any] = [self.node_id, round(self.presence_ttl * 1000), "1" if replace else "0"]
        for member, info in members.items():
            args += (member, info)
        keys = [self._nodes_key, presence, hashed] if self._cross_slot else [presence, hashed]
        await self._scripts["put"](keys=keys, args=args)

    async def _track(self, group: str, member: str, info: bytes) -> None:
        await self._change(group, lambda: self._put(group, {member: info}, False))

    async def _untrack(self, group: str, member: str) -> None:
        keys = list(self._group_keys(group))
        await self._change(group, lambda: self._scripts["untrack"](keys=keys, args=[self.node_id, member]))

    def _linked(self, group: str) -> bool:
        """Whether the link to the Redis that holds ``group`` is up (one Redis: the subscriber connection)."""
        return self._sub is not None

    async def _change(self, group: str, write: Callable[[], Awaitable[Any]]) -> None:
        """Apply one presence change; while disconnected (or if it fails) the next refresh rewrites the group."""
        linked = self._linked(group)
        if group in self._rewriting or not linked:
            self._dirty.add(group)
            if not linked:
                return
        try:
            await write()
        except self._errors as exc:
            logger.debug("backplane %s: presence change in %r postponed: %s", self.node_id, group, describe(exc))
            self._dirty.add(group)

    async def _refresh(self) -> None:
        if self._sub is None:
            return  # reconnection refreshes
        groups = list(self._tracked)
        for chunk in _chunks(groups, REFRESH_CHUNK) if groups else iter([[]]):
            keys = [self._nodes_key] + [k for g in chunk for k in self._group_keys(g)]
            missing = await self._scripts["refresh"](keys=keys, args=[self.node_id, round(self.presence_ttl * 1000)])
            self._dirty.update(chunk[int(i) - 1] for i in missing)
        for group in list(self._dirty):
            self._dirty.discard(group)
            self._rewriting.add(group)
            try:
                await self._put(group, dict(self._tracked.get(group, {})), True)
            except BaseException:
                self._dirty.add(group)
                raise
            finally:
                self._rewriting.discard(group)
        if self._recovering and self._sub is not None:
            self._recovering = False
            self.emit("reconnected")

    async def count(self, group: str) -> int:
        with self._failing("count"):
            return int(await self._scripts["count"](keys=[self._group_keys(group)[0]], args=[self._members_base(group)]))

    async def members(self, group: str) -> list[Member]:
        with self._failing("members"):
            reply = await self._scripts["members"](keys=[self._group_keys(group)[0]], args=[self._members_base(group)])
        found = []
        for node, pairs in zip(reply[::2], reply[1::2]):
            name = bytes(node).decode()
            found += [Member(bytes(m).decode(), name, bytes(i)) for m, i in zip(pairs[::2], pairs[1::2])]
        return sorted(found)

    async def locate(self, group: str, member: str) -> Member | None:
        with self._failing("locate"):
            reply = await self._scripts["locate"](keys=[self._group_keys(group)[0]], args=[self._members_base(group), member])
        return None if reply is None else Member(member, bytes(reply[0]).decode(), bytes(reply[1]))

    async def nodes(self) -> list[str]:
        with self._failing("nodes"):
            reply = await self._scripts["nodes"](keys=[self._nodes_key])
        return sorted(bytes(node).decode() for node in reply)
