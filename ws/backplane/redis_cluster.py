"""The Redis backplane on a Redis Cluster: sharded pub/sub, and scripts that each touch one slot.

``RedisClusterBackplane("redis+cluster://10.0.0.1:7000,10.0.0.2:7000/")`` (or
``nodes=["10.0.0.1:7000", ...]``) is a ``RedisBackplane`` whose commands go
through redis-py's ``RedisCluster`` (each routed by the slot of its first
key) and whose pub/sub is **sharded**:

* A channel's key ``{prefix}ch:{{channel}}`` lives in one slot.  A publish is
  an ``SPUBLISH`` that reaches the master owning that slot only, where a plain
  ``PUBLISH`` is copied over the cluster bus to every node of the cluster,
  which is what stops plain pub/sub from scaling with the cluster.
* Each node keeps one subscriber connection per master (a *link*), which
  ``SSUBSCRIBE``\\ s the channels of that master's slots.
* Publishes, plain and recorded (``redis_history``'s script, which ends with
  ``SPUBLISH`` here), wait in one queue per master, sent in pipelined batches
  by one task each: order per channel holds (a channel has one master), and a
  master that is down or frozen fails or holds up only the publishes to its slots.
* Presence: a group's keys share the group's hash tag, so each script touches
  one slot.  The nodes key (a slot of its own) is renewed by its own call, and
  the periodic refresh makes one call per slot, pipelined per master.

A link that breaks (its master stopped, restarted or frozen: the watchdog's
PING), an error reply on it and a ``sunsubscribe`` that Redis sends (the
slot moved) all lead to the same repair: ``'disconnected'`` for a break, a
fresh slot map (``CLUSTER SLOTS``), reconnection with the backoff of one
Redis, every channel subscribed again on its current master, the presence of
that master's groups rewritten, then ``'reconnected'`` once every link is up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import logging
import random
import urllib.parse
from types import SimpleNamespace
from typing import Any, Iterable, Iterator

from ..exceptions import describe
from .base import DEFAULT_PRESENCE_TTL, BackplaneError, as_bytes, check_name
from . import redis_history
from .redis_backplane import INSTALL_HINT, REFRESH_CHUNK, RedisBackplane, _Send, redact

__all__ = ["RedisClusterBackplane", "CLUSTER_SCHEMES", "parse_cluster_url"]

logger = logging.getLogger("ws.backplane")

#: URL schemes of a Redis Cluster (``rediss+``: TLS).
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def _import_cluster() -> SimpleNamespace:
    try:
        cluster = importlib.import_module("redis.asyncio.cluster")
        exceptions = importlib.import_module("redis.exceptions")
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return SimpleNamespace(
        RedisCluster=cluster.RedisCluster,
        ClusterNode=cluster.ClusterNode,
        ClusterException=exceptions.RedisClusterException,
        MovedError=exceptions.MovedError,
        NoScriptError=exceptions.NoScriptError,
        # redis-py before 8.2 refuses EVALSHA in a cluster pipeline: the scripts then go one call each.
        pipelines_scripts="EVALSHA" not in getattr(importlib.import_module("redis.cluster"), "PIPELINE_BLOCKED_COMMANDS", ()),
    )


def _address(item: object) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``host`` (port 6379) or a ``(host, port)`` pair."""
    if isinstance(item, tuple) and len(item) == 2:
        host, port = item
    elif isinstance(item, str):
        text = item.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else (rest or 6379)
        elif text.count(":") == 1:
            host, port = text.split(":")
        else:
            host, port = text, 6379
    else:
        raise TypeError(f"a cluster node is 'host:port' or (host, port), got {item!r}")
    try:
        number = int(port)
    except (TypeError, ValueError):
        number = 0
    if not isinstance(host, str) or not host or not 0 < number < 65536:
        raise ValueError(f"a cluster node is 'host:port' or (host, port), got {item!r}")
    return host, number


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None, str | None, bool]:
    """``redis+cluster://[user:password@]host:port[,host:port...][/]``: (nodes, username, password, tls)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"a Redis Cluster URL starts with redis+cluster:// or rediss+cluster://, got {redact(url)!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"a Redis Cluster URL takes no options after '?' (pass them as keywords): {redact(url)!r}")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has database 0 only, got {redact(url)!r}")
    hosts = [host for host in parts.netloc.rpartition("@")[2].split(",") if host.strip()]
    if not hosts:
        raise ValueError(f"a Redis Cluster URL names at least one node (host:port), got {redact(url)!r}")
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return [_address(host) for host in hosts], username, password, scheme == "rediss+cluster"


class _Link:
    """The subscriber connection to one master, and the channel keys of its slots."""

    __slots__ = ("node", "conn", "keys", "confirming", "leaving", "lock", "task", "seen_at", "pinged_at", "stall", "retired")

    def __init__(self, node: Any) -> None:
        self.node = node  # redis-py's ClusterNode: name 'host:port', connection_class, connection_kwargs
        self.conn: Any = None  # while it is up: subscribed to every key of ``keys``
        self.keys: set[bytes] = set()
        self.confirming: dict[bytes, list[asyncio.Future[None]]] = {}
        self.leaving: collections.Counter[bytes] = collections.Counter()  # our SUNSUBSCRIBEs not answered yet
        self.lock = asyncio.Lock()  # writes on the connection
        self.task: asyncio.Task[None] | None = None
        self.seen_at = 0.0
        self.pinged_at: float | None = None
        self.stall: BaseException | None = None
        self.retired = False

    @property
    def name(self) -> str:
        return str(self.node.name)


class _Lane:
    """The publishes waiting for one master, sent in order by one task."""

    __slots__ = ("outbox", "wake", "task")

    def __init__(self) -> None:
        self.outbox: collections.deque[_Send] = collections.deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class RedisClusterBackplane(RedisBackplane):
    """A node of a cluster that shares one Redis Cluster (see the module documentation).

    Give the cluster as a URL, ``redis+cluster://[user:password@]host:port,host:port/``
    (``rediss+cluster://`` for TLS), or as ``nodes=["host:port", ...]`` with
    ``username``, ``password`` and ``ssl``.  One reachable node is enough to
    find the others; every master must answer at ``start()``.
    """

    _cross_slot = False

    def __init__(
        self,
        url: str | None = None,
        *,
        nodes: Iterable[str | tuple[str, int]] | None = None,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        prefix: str = "ws:",
        node_id: str | None = None,
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
        connect_timeout: float = 5.0,
        command_timeout: float = 5.0,
        reconnect_max_delay: float = 0.5,
        max_pending: int = 10_000,
    ) -> None:
        if url is not None:
            if nodes is not None or username is not None or password is not None or ssl:
                raise TypeError("give a Redis Cluster either as a URL or as nodes=[...] with username, password and ssl")
            startup, username, password, ssl = parse_cluster_url(check_name("url", url))
        elif nodes is not None:
            startup = [_address(node) for node in ([nodes] if isinstance(nodes, str) else nodes)]
            if not startup:
                raise ValueError("nodes=[...] names no node: give at least one 'host:port'")
            shown = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in startup)
            url = f"{'rediss' if ssl else 'redis'}+cluster://{shown}/"
        else:
            raise TypeError("RedisClusterBackplane needs url='redis+cluster://host:port,...' or nodes=['host:port', ...]")
        super().__init__(
            url,
            prefix=prefix,
            node_id=node_id,
            presence_ttl=presence_ttl,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            reconnect_max_delay=reconnect_max_delay,
            max_pending=max_pending,
        )
        self._publish_command = "SPUBLISH"  # plain publishes, and the recorded publish script's last step
        self._cluster = _import_cluster()
        self._errors = (*self._errors, self._cluster.ClusterException)
        self.startup_nodes = startup
        self._credentials = {"username": username, "password": password, "ssl": bool(ssl)}
        self._links: dict[str, _Link] = {}  # master name -> its link
        self._route: dict[bytes, _Link] = {}  # subscribed channel key -> the link that carries it
        self._lanes: dict[str, _Lane] = {}  # master name -> its publishes
        self._map_lock = asyncio.Lock()
        self._resyncing: asyncio.Task[None] | None = None
        self._resync_again = False
        self._epoch: object = None  # the cluster's current epoch when last looked at

    @property
    def connected(self) -> bool:
        """Every master's link is up."""
        return self.started and bool(self._links) and all(link.conn is not None for link in self._links.values())

    def _error(self, what: str, exc: BaseException) -> BackplaneError:
        error = BackplaneError(f"{what} failed: Redis Cluster at {redact(self.url)}: {describe(exc)}")
        error.__cause__ = exc
        return error

    # -- the slot map ------------------------------------------------------------------------

    def _master(self, key: str | bytes) -> Any:
        """redis-py's node for the master that owns ``key``'s slot (``SlotNotCoveredError`` when none does)."""
        return self._client.get_node_from_key(key)

    def _link_of(self, key: str | bytes) -> _Link | None:
        try:
            return self._links.get(self._master(key).name)
        except self._errors:
            return None

    def _linked(self, group: str) -> bool:
        link = self._link_of(self._group_keys(group)[0])
        return link is not None and link.conn is not None

    def _open_link(self, node: Any) -> _Link:
        """A link to a master found after the start (resharding, failover): connected by its own task."""
        link = self._links[node.name] = _Link(node)
        link.task = self._loop.create_task(self._serve(link, None), name=f"ws-backplane-link-{self.node_id}-{node.name}")
        return link

    def _schedule_resync(self) -> None:
        if self._resyncing is not None and not self._resyncing.done():
            self._resync_again = True
            return
        self._resyncing = self._loop.create_task(self._resync_soon(), name=f"ws-backplane-resync-{self.node_id}")

    async def _resync_soon(self) -> None:
        while not self.closed:
            await asyncio.sleep(0.05)  # the cluster's nodes learn a slot's move by gossip: give them a moment
            self._resync_again = False
            try:
                await self._resync()
            except Exception as exc:
                logger.warning("backplane %s: reading the Redis Cluster slot map failed: %s; trying again", self.node_id, describe(exc))
                self._resync_again = True
                await asyncio.sleep(self.reconnect_max_delay)
            if not self._resync_again:
                return

    async def _resync(self) -> None:
        """Read the slot map again, and move every channel to the link of the master that owns it now."""
        async with self._map_lock:
            await asyncio.wait_for(self._client.nodes_manager.initialize(), self.connect_timeout)
            primaries = {node.name: node for node in self._client.get_primaries()}
            for name, node in primaries.items():
                if name not in self._links:
                    self._open_link(node)
            for key in list(self._keys):
                try:
                    link = self._links.get(self._master(key).name)
                except self._errors:
                    continue  # a slot no master serves: placed by a later resync
                old = self._route.get(key)
                if link is None or old is link:
                    continue
                if old is not None:
                    old.keys.discard(key)  # its old master dropped it already (Redis does, when a slot leaves it)
                self._route[key] = link
                link.keys.add(key)
                async with link.lock:
                    if link.conn is not None and key in link.keys:
                        with contextlib.suppress(*self._errors):  # a broken link resubscribes when it is back
                            await asyncio.wait_for(link.conn.send_command("SSUBSCRIBE", key), self.command_timeout)
            for name, link in list(self._links.items()):
                if name not in primaries and not link.keys:
                    await self._retire(link)

    async def _check_map(self) -> None:
        """Read the slot map again when the cluster's epoch changed (a failover, a slot moved).

        A node that subscribes nothing on a master gets no ``sunsubscribe`` from it, and a
        master demoted to replica still takes ``SPUBLISH`` (it forwards it to its shard), so
        without this a publishing node's map would stay stale, each publish one hop longer.
        """
        node = next((link.node for link in self._links.values() if link.conn is not None), None)
        if node is None:
            return
        try:
            # No wait_for: the keeper runs this, and Python 3.11's wait_for can lose the cancellation of close().
            info = await self._client.execute_command("CLUSTER INFO", target_nodes=node)  # socket_timeout bounds it
        except self._errors as exc:
            logger.debug("backplane %s: CLUSTER INFO failed: %s", self.node_id, describe(exc))
            return
        epoch = info.get("cluster_current_epoch") if isinstance(info, dict) else None
        if epoch != self._epoch:
            if self._epoch is not None:
                self._schedule_resync()
            self._epoch = epoch

    async def _tick(self) -> None:
        await self._check_map()
        await self._refresh()

    async def _retire(self, link: _Link) -> None:
        """Forget a link whose node is no master any more (and carries no channel)."""
        link.retired = True
        del self._links[link.name]
        if link.task is not None and link.task is not asyncio.current_task():
            link.task.cancel()
        conn, link.conn = link.conn, None
        if conn is not None:
            await self._discard(conn)

    # -- lifecycle ---------------------------------------------------------------------------

    async def _open(self) -> None:
        cluster = self._cluster
        self._client = cluster.RedisCluster(
            startup_nodes=[cluster.ClusterNode(host, port) for host, port in self.startup_nodes],
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.command_timeout,
            retry=self._redis.no_retry(),  # nothing is sent twice: a failure fails its caller
            protocol=2,
            **self._credentials,
        )
        self._register_scripts()
        links: list[_Link] = []
        conns: list[Any] = []
        try:
            await asyncio.wait_for(self._client.initialize(), self.connect_timeout)
            links = [_Link(node) for node in self._client.get_primaries()]
            made = await asyncio.gather(*(self._connect_link(link) for link in links), return_exceptions=True)
            conns = [conn for conn in made if not isinstance(conn, BaseException)]
            for failure in made:
                if isinstance(failure, BaseException):
                    raise failure
            for link, conn in zip(links, conns):
                self._links[link.name] = link
                await self._attach_link(link, conn)
        except BaseException as exc:
            self._links.clear()
            for conn in conns:
                await self._discard(conn)
            await self._dispose()
            if isinstance(exc, self._errors):
                raise BackplaneError(
                    f"could not connect to Redis Cluster at {redact(self.url)} (within {self.connect_timeout} s): {describe(exc)}"
                ) from exc
            raise
        for link, conn in zip(links, conns):
            link.task = self._loop.create_task(self._serve(link, conn), name=f"ws-backplane-link-{self.node_id}-{link.name}")
        self._tasks = [
            self._loop.create_task(self._watchdog(), name=f"ws-backplane-watchdog-{self.node_id}"),
        ]
        await self._check_map()  # the epoch to compare with
        try:
            await self._refresh()  # the node appears in nodes() now, not one tick later
        except self._errors as exc:
            logger.warning("backplane %s: first refresh failed: %s", self.node_id, describe(exc))

    async def _shut(self) -> None:
        if any(link.conn is not None for link in self._links.values()):
            try:
                await asyncio.wait_for(self._leave(), self.command_timeout)
            except self._errors as exc:
                logger.warning("backplane %s: could not remove its presence (it expires in %s s): %s", self.node_id, self.presence_ttl, describe(exc))
        tasks = [*self._tasks, *(link.task for link in self._links.values()), *(lane.task for lane in self._lanes.values())]
        if self._resyncing is not None:
            tasks.append(self._resyncing)
        await self._stop([task for task in tasks if task is not None])
        closed = lambda: BackplaneError("backplane closed before the publish was sent")  # noqa: E731
        for lane in self._lanes.values():
            self._fail_publishes(lane.outbox, closed)
            lane.outbox.clear()
        for link in self._links.values():
            self._release(link)
            conn, link.conn = link.conn, None
            if conn is not None:
                await self._discard(conn)
        self._links.clear()
        self._route.clear()
        await self._dispose()

    async def _stop(self, tasks: list[asyncio.Task[None]]) -> None:
        """Cancel ``tasks`` and wait for them, cancelling again those that go on.

        Python 3.11's ``wait_for`` loses a cancellation that comes as the awaited
        operation completes, and a link's task then goes back to reading.  Its
        loops also stop once the node is closed; two seconds at most in all.
        """
        pending = {task for task in tasks if not task.done()}
        for _ in range(20):
            if not pending:
                return
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        logger.warning("backplane %s: %d background tasks did not stop", self.node_id, len(pending))

    async def _leave(self) -> None:
        calls = [([self._nodes_key], [self.node_id])]
        calls += [(keys, [self.node_id]) for _, keys in self._group_calls(self._tracked)]
        for failure in await self._eval_each("leave", calls):
            if isinstance(failure, BaseException):
                raise failure

    # -- the links ---------------------------------------------------------------------------

    async def _connect_link(self, link: _Link) -> Any:
        node = self._client.get_node(node_name=link.name) or link.node
        # Reads wait for messages as long as it takes: the watchdog's PING watches the link.
        conn = node.connection_class(**dict(node.connection_kwargs, socket_timeout=None))
        try:
            await asyncio.wait_for(conn.connect(), self.connect_timeout)
        except BaseException:
            await self._discard(conn)
            raise
        return conn

    async def _attach_link(self, link: _Link, conn: Any) -> None:
        """Make ``conn`` the link: load the scripts on its master, subscribe the channels of ``link``,
        wait for Redis to confirm them all, and drop redis-py's idle connections to that master.

        The scripts, because a master that restarted lost them (and loading them on demand
        would go to every master, failing while any is down); the idle connections, because
        redis-py hands them out without checking them, so after a restart each would fail
        the command that got it.
        """
        bodies = [script.script for script in self._scripts.values()] + [redis_history.PUBLISH_SCRIPT]
        for body in bodies:
            await asyncio.wait_for(conn.send_command("SCRIPT", "LOAD", body), self.command_timeout)
        for _ in bodies:
            await asyncio.wait_for(conn.read_response(), self.command_timeout)
        node = self._client.get_node(node_name=link.name)
        heal = getattr(node, "disconnect_free_connections", None)  # redis-py 6 and later
        if heal is not None:
            await heal()
        async with link.lock:
            pending = set(link.keys)
            by_slot: dict[int, list[bytes]] = {}
            for key in pending:
                by_slot.setdefault(self._client.keyslot(key), []).append(key)
            for keys in by_slot.values():  # one SSUBSCRIBE holds the channels of one slot
                await asyncio.wait_for(conn.send_command("SSUBSCRIBE", *keys), self.command_timeout)
            deadline = self._loop.time() + self.command_timeout
            while pending:
                response = await asyncio.wait_for(conn.read_response(), max(0.0, deadline - self._loop.time()))
                if type(response) is list and len(response) >= 3:
                    if response[0] == b"ssubscribe":
                        pending.discard(response[1])
                    elif response[0] == b"smessage":
                        self._on_message(response[1], response[2])
            # The refresh that follows rewrites this master's groups whole (see RedisBackplane._attach).
            self._dirty.update(group for group in self._tracked if self._link_of(self._group_keys(group)[0]) is link)
            link.leaving.clear()
            link.conn = conn
            link.seen_at, link.pinged_at, link.stall = self._loop.time(), None, None

    async def _serve(self, link: _Link, conn: Any) -> None:
        """Read ``link``; when it breaks, repair it: a fresh slot map, reconnection with backoff, resubscription."""
        delay = 0.0
        while True:
            if conn is not None:
                try:
                    await self._read_link(link, conn)
                except Exception as exc:  # a closed link, an error reply, a reply we cannot read: start afresh
                    self._lost_link(link, link.stall or exc)
                    await self._discard(conn)
                conn = None
            while conn is None:
                if self.closed:
                    return
                delay = min(max(delay * 2, 0.1), self.reconnect_max_delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                try:
                    await self._resync()  # the slot may have another master now (failover, resharding)
                except Exception as exc:
                    logger.debug("backplane %s: reading the slot map failed: %s", self.node_id, describe(exc))
                    continue
                if link.retired or self.closed:
                    return
                try:
                    conn = await self._connect_link(link)
                except Exception as exc:
                    logger.debug("backplane %s: reconnecting to %s failed: %s", self.node_id, link.name, describe(exc))
                    continue
                try:
                    await self._attach_link(link, conn)
                except BaseException as exc:  # e.g. CLUSTERDOWN from a master that has just restarted
                    await self._discard(conn)
                    conn = None
                    if not isinstance(exc, Exception):
                        raise  # closed meanwhile
                    logger.debug("backplane %s: resubscribing on %s failed: %s", self.node_id, link.name, describe(exc))
            delay = 0.0
            logger.info("backplane %s: reconnected to %s; restoring presence", self.node_id, link.name)
            self._tasks = [task for task in self._tasks if not task.done()]
            self._tasks.append(self._loop.create_task(self._recover()))

    async def _read_link(self, link: _Link, conn: Any) -> None:
        while True:
            try:
                response = await conn.read_response()
            except self._cluster.MovedError as exc:
                self._moved(link, int(exc.slot_id))
                continue
            link.seen_at = self._loop.time()
            if type(response) is not list or len(response) < 3:
                continue  # pong
            kind = response[0]
            if kind == b"smessage":
                self._on_message(response[1], response[2])
            elif kind == b"ssubscribe":
                for waiter in link.confirming.pop(response[1], ()):
                    if not waiter.done():
                        waiter.set_result(None)
            elif kind == b"sunsubscribe":
                key = response[1]
                if link.leaving[key] > 0:  # the answer to our SUNSUBSCRIBE
                    link.leaving[key] -= 1
                    if not link.leaving[key]:
                        del link.leaving[key]
                elif self._route.get(key) is link:  # Redis dropped it: its slot has left this master
                    self._moved(link, self._client.keyslot(key))

    def _moved(self, link: _Link, slot: int) -> None:
        """``slot`` is not ``link``'s master's any more: its channels go wherever the next slot map says."""
        logger.info("backplane %s: slot %d left %s; its channels follow it", self.node_id, slot, link.name)
        for key in [key for key in link.keys if self._client.keyslot(key) == slot]:
            link.keys.discard(key)
            if self._route.get(key) is link:
                del self._route[key]
            for waiter in link.confirming.pop(key, ()):
                if not waiter.done():
                    waiter.set_result(None)
        self._schedule_resync()

    def _lost_link(self, link: _Link, cause: BaseException) -> None:
        if link.conn is None:
            return
        link.conn = None
        self._script_loaded.discard(link.name)  # a master that comes back may have forgotten it
        self._release(link)
        self._recovering = True
        error = BackplaneError(f"lost the connection to Redis Cluster master {link.name} ({redact(self.url)}): {describe(cause)}; reconnecting")
        error.__cause__ = cause
        logger.warning("backplane %s: %s", self.node_id, error)
        self.emit("disconnected", error)

    @staticmethod
    def _release(link: _Link) -> None:
        """Subscriptions waiting for a confirmation return: they are made again on reconnection."""
        for waiters in link.confirming.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        link.confirming.clear()

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            for link in list(self._links.values()):
                await self._watch_link(link)

    async def _watch_link(self, link: _Link) -> None:
        """PING the link; one that answered nothing since the last PING is dropped (its reader reconnects)."""
        conn = link.conn
        if conn is None:
            return
        if link.pinged_at is not None and link.seen_at < link.pinged_at:
            link.stall = TimeoutError(f"no answer to PING for {self._loop.time() - link.pinged_at:.1f} s")
            await self._discard(conn)
            return
        link.pinged_at = self._loop.time()
        try:
            async with link.lock:
                await asyncio.wait_for(conn.send_command("PING"), self.command_timeout)
        except self._errors as exc:
            link.stall = exc
            await self._discard(conn)

    # -- publish / subscribe -----------------------------------------------------------------

    def _send(self, command: tuple[Any, ...], channel: str, recorded: bool) -> asyncio.Future[Any]:
        """Queue one publish (plain or recorded) in the lane of the master that owns ``channel``'s slot."""
        waiting = sum(len(lane.outbox) for lane in self._lanes.values())
        if waiting >= self.max_pending:
            raise BackplaneError(f"{waiting} publishes already wait for Redis Cluster at {redact(self.url)}: it is slow or unreachable")
        try:
            name = self._master(self._channel_key(channel)).name
        except self._errors as exc:
            raise self._error("publish_recorded" if recorded else "publish", exc) from exc
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = _Lane()
            lane.task = self._loop.create_task(self._drain(lane.outbox, lane.wake, name), name=f"ws-backplane-publish-{self.node_id}-{name}")
        future: asyncio.Future[Any] = self._loop.create_future()
        lane.outbox.append(_Send(command, future, channel, recorded))
        lane.wake.set()
        return future

    def _load_publish_script(self, pipe: Any, master: str | None) -> None:
        """On the lane's master only: a SCRIPT LOAD for every master would fail while any is down."""
        node = None if master is None else self._client.get_node(node_name=master)
        if node is None:
            super()._load_publish_script(pipe, master)
        else:
            pipe.execute_command("SCRIPT", "LOAD", redis_history.PUBLISH_SCRIPT, target_nodes=node)

    def _hears(self, channel: str) -> bool:
        link = self._route.get(self._channel_key(channel))
        return channel in self._channels and link is not None and link.conn is not None

    async def _subscribe_channel(self, channel: str) -> None:
        key = self._channel_key(channel)
        self._keys[key] = channel
        try:
            node = self._master(key)
        except self._errors:
            self._schedule_resync()  # no master serves its slot now: placed once one does
            return
        link = self._links.get(node.name) or self._open_link(node)
        self._route[key] = link
        link.keys.add(key)
        waiter: asyncio.Future[None] = self._loop.create_future()
        async with link.lock:
            if link.conn is None or self._route.get(key) is not link:
                return  # made on reconnection
            link.confirming.setdefault(key, []).append(waiter)
            try:
                await asyncio.wait_for(link.conn.send_command("SSUBSCRIBE", key), self.command_timeout)
            except self._errors:
                return  # its reader sees the broken link; reconnection subscribes again
        try:
            await asyncio.wait_for(waiter, self.command_timeout)
        except asyncio.TimeoutError:
            logger.warning("backplane %s: Redis did not confirm the subscription to %r in time", self.node_id, channel)

    async def _unsubscribe_channel(self, channel: str) -> None:
        key = self._channel_key(channel)
        self._keys.pop(key, None)
        link = self._route.pop(key, None)
        if link is None:
            return
        link.keys.discard(key)
        async with link.lock:
            if link.conn is not None:
                link.leaving[key] += 1
                with contextlib.suppress(*self._errors):
                    await asyncio.wait_for(link.conn.send_command("SUNSUBSCRIBE", key), self.command_timeout)

    # -- presence: one slot per script call ----------------------------------------------------

    async def _recover(self) -> None:
        """Restore presence after a link came back, retrying with the reconnection backoff until it works.

        A master that has just restarted accepts subscriptions but answers CLUSTERDOWN to
        writes for a moment (about 2 s), so one attempt would leave the rewrite to the next tick.
        """
        delay = 0.0
        while True:
            try:
                await self._refresh()
                return
            except self._errors as exc:
                logger.debug("backplane %s: restoring presence failed: %s; trying again", self.node_id, describe(exc))
            if not self._recovering or not self.connected:
                return  # done by a keeper's tick, or a link is down again (its reconnection recovers)
            delay = min(max(delay * 2, 0.1), self.reconnect_max_delay)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    def _group_calls(self, groups: Iterable[str]) -> Iterator[tuple[list[str], list[str]]]:
        """``groups`` by slot, at most REFRESH_CHUNK at a time: each chunk, and its (presence, members) keys."""
        by_slot: dict[int, list[str]] = {}
        for group in groups:
            by_slot.setdefault(self._client.keyslot(self._group_keys(group)[0]), []).append(group)
        for same in by_slot.values():
            for start in range(0, len(same), REFRESH_CHUNK):
                chunk = same[start : start + REFRESH_CHUNK]
                yield chunk, [key for group in chunk for key in self._group_keys(group)]

    async def _eval_each(self, name: str, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run script ``name`` once per ``(keys, args)``, pipelined per master; each result or exception, in order."""
        script = self._scripts[name]
        results: list[Any] = [None] * len(calls)
        by_master: dict[str, list[int]] = {}
        for index, (keys, _) in enumerate(calls):
            try:
                by_master.setdefault(self._master(keys[0]).name, []).append(index)
            except self._errors as exc:
                results[index] = exc

        async def one(index: int) -> None:
            keys, args = calls[index]
            try:
                results[index] = await script(keys=keys, args=args)  # loads the script where it is missing
            except self._errors as exc:
                results[index] = exc

        async def run(indexes: list[int]) -> None:
            if not self._cluster.pipelines_scripts:
                await asyncio.gather(*(one(index) for index in indexes))
                return
            try:
                pipe = self._client.pipeline(transaction=False)
                for index in indexes:
                    keys, args = calls[index]
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
            except self._errors as exc:
                for index in indexes:
                    results[index] = exc
                return
            for index, reply in zip(indexes, replies):
                if isinstance(reply, self._cluster.NoScriptError):  # a master that restarted: load it there, once
                    keys, args = calls[index]
                    try:
                        reply = await script(keys=keys, args=args)
                    except self._errors as exc:
                        reply = exc
                results[index] = reply

        await asyncio.gather(*(run(indexes) for indexes in by_master.values()))
        return results

    async def _refresh(self) -> None:
        """Renew the nodes key, then each slot's groups (masters that are down are left to their reconnection)."""
        ttl = round(self.presence_ttl * 1000)
        failures: list[BaseException] = []
        chunks = list(self._group_calls(group for group in self._tracked if self._linked(group)))
        calls = [(keys, [self.node_id, ttl]) for _, keys in chunks]
        if (link := self._link_of(self._nodes_key)) is not None and link.conn is not None:
            calls.append(([self._nodes_key], [self.node_id, ttl]))
        results = await self._eval_each("refresh", calls)
        for index, result in enumerate(results):
            if isinstance(result, BaseException):
                failures.append(result)
            elif index < len(chunks):  # a slot's groups: rewrite those whose hash is gone
                self._dirty.update(chunks[index][0][int(i) - 1] for i in result)
        for group in list(self._dirty):
            if not self._linked(group):
                continue  # its master's reconnection rewrites it
            self._dirty.discard(group)
            self._rewriting.add(group)
            try:
                await self._put(group, dict(self._tracked.get(group, {})), True)
            except self._errors as exc:
                self._dirty.add(group)
                failures.append(exc)
            finally:
                self._rewriting.discard(group)
        if failures:
            raise failures[0]
        if self._recovering and self.connected:
            self._recovering = False
            self.emit("reconnected")
