"""The ``Backplane`` contract, run against both implementations: in process, and on a real Redis.

Several nodes in one test process stand for several processes; what only a
real second process can show (SIGKILL) and Redis outages are in
``test_redis.py``.  "Nothing arrived" is checked with a marker: a node's
messages reach another node in publish order, so once a later message on
another channel has arrived, an earlier one would have too.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any, AsyncIterator, Callable

import pytest

from ws.backplane import Backplane, BackplaneError, Member, MemoryBackplane, MemoryHub, Message, RedisBackplane

from ..conftest import run, until

Make = Callable[..., Backplane]


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def make(request: pytest.FixtureRequest) -> Make:
    """A factory of nodes of one cluster: sharing a ``MemoryHub``, one ``redis-server``, or a Redis Cluster.

    The Redis Cluster is shared by the session's tests: each test's nodes get a prefix of their own.
    """
    if request.param == "memory":
        hub = MemoryHub()
        return lambda **options: MemoryBackplane(hub, **options)
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return lambda **options: RedisBackplane(server.url, **options)
    from ws.backplane import RedisClusterBackplane

    servers = request.getfixturevalue("redis_cluster")
    prefix = f"contract-{secrets.token_hex(4)}:"
    return lambda **options: RedisClusterBackplane(servers.url, prefix=prefix, **options)


@contextlib.asynccontextmanager
async def cluster(make: Make, count: int, **options: Any) -> AsyncIterator[list[Backplane]]:
    nodes = [make(**options) for _ in range(count)]
    try:
        for node in nodes:
            await node.start()
        yield nodes
    finally:
        for node in nodes:
            await node.close()


class Inbox:
    """Collects what a subscription receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def data(self) -> list[bytes]:
        return [m.data for m in self.messages]

    async def wait(self, count: int, timeout: float = 5.0) -> list[bytes]:
        await until(lambda: len(self.messages) >= count, timeout, what=f"{count} messages (got {len(self.messages)})")
        return self.data


async def marker(publisher: Backplane, inbox: Inbox, channel: str = "marker") -> None:
    """Publish on ``channel`` (``inbox`` is subscribed to it) and wait until it arrived."""
    before = len(inbox.messages)
    await publisher.publish(channel, b"marker")
    await inbox.wait(before + 1)


# -- publish / subscribe -----------------------------------------------------------------------------


def test_publish_reaches_every_subscriber_on_the_other_nodes(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 3) as (a, b, c):
            own, b1, b2, c1 = Inbox(), Inbox(), Inbox(), Inbox()
            await a.subscribe("room:x", own)
            await b.subscribe("room:x", b1)
            await b.subscribe("room:x", b2)
            await c.subscribe("room:x", c1)
            assert await a.publish("room:x", b"hello") == 2  # two other nodes
            for inbox in (b1, b2, c1):
                assert await inbox.wait(1) == [b"hello"]
                assert inbox.messages[0] == Message("room:x", b"hello", a.node_id)
            await b.publish("room:x", bytearray(b"back"))  # bytes-like is accepted
            assert await own.wait(1) == [b"back"]
            assert await c1.wait(2) == [b"hello", b"back"]
            assert own.messages[0].origin == b.node_id
            assert b1.data == [b"hello"]  # the publisher's own subscribers are left to the layer above

    run(main)


def test_only_nodes_subscribed_to_a_channel_receive_it(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 3) as (a, b, c):
            x, y = Inbox(), Inbox()
            await b.subscribe("room:x", x)
            await c.subscribe("room:y", y)
            await c.subscribe("marker", y)
            assert await a.publish("room:x", b"for x") == 1
            assert await a.publish("room:nobody", b"lost") == 0
            await marker(a, y)
            assert await x.wait(1) == [b"for x"]
            assert y.data == [b"marker"]  # c never saw room:x nor room:nobody

    run(main)


def test_unsubscribe_stops_delivery_to_that_subscription_only(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            first, second, marks = Inbox(), Inbox(), Inbox()
            sub1 = await b.subscribe("room", first)
            sub2 = await b.subscribe("room", second)
            await b.subscribe("marker", marks)
            await sub1.unsubscribe()
            await sub1.unsubscribe()  # harmless
            assert not sub1.active and sub2.active
            await a.publish("room", b"one")
            assert await second.wait(1) == [b"one"]
            await sub2.unsubscribe()
            assert await a.publish("room", b"two") == 0  # b left the channel
            await marker(a, marks)
            assert first.data == [] and second.data == [b"one"]
            again = Inbox()
            await b.subscribe("room", again)  # and may come back
            await a.publish("room", b"three")
            assert await again.wait(1) == [b"three"]

    run(main)


def test_messages_arrive_in_publish_order(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            inbox = Inbox()
            await b.subscribe("room", inbox)
            sent = [str(i).encode() for i in range(300)]
            # Not awaited one by one: the order is that of the calls.
            await asyncio.gather(*(a.publish("room", data) for data in sent))
            for data in sent[:50]:
                await a.publish("room", data)
            assert await inbox.wait(350) == sent + sent[:50]

    run(main)


def test_a_failing_callback_is_reported_and_delivery_goes_on(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            errors: list[BaseException] = []
            b.on("error", errors.append)

            def broken(message: Message) -> None:
                raise RuntimeError("handler bug")

            inbox = Inbox()
            await b.subscribe("room", broken)
            await b.subscribe("room", inbox)
            await a.publish("room", b"1")
            await a.publish("room", b"2")
            assert await inbox.wait(2) == [b"1", b"2"]
            assert [str(e) for e in errors] == ["handler bug", "handler bug"]

    run(main)


def test_a_slow_async_callback_holds_up_no_other_channel(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            release = asyncio.Event()
            slow_done: list[bytes] = []

            async def slow(message: Message) -> None:
                await release.wait()
                slow_done.append(message.data)

            fast = Inbox()
            await b.subscribe("slow", slow)
            await b.subscribe("fast", fast)
            for i in range(3):
                await a.publish("slow", b"s%d" % i)
            await a.publish("fast", b"f")
            assert await fast.wait(1) == [b"f"]
            assert slow_done == []
            release.set()
            await until(lambda: len(slow_done) == 3, what="the slow callbacks finish")

    run(main)


# -- key-value store ----------------------------------------------------------------------------------


def test_key_value_store_is_shared_and_expires(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            assert await b.get("missing") is None
            await a.set("user:1", b"alice")
            await a.set("session:1", b"token", ttl=0.3)
            assert await b.get("user:1") == b"alice"
            assert await b.get("session:1") == b"token"
            assert await b.keys("user:") == ["user:1"]
            assert await b.keys() == ["session:1", "user:1"]
            assert await b.incr("hits") == 1
            assert await a.incr("hits", 10) == 11
            assert await a.incr("visits", ttl=0.3) == 1
            await a.set("user:1", b"alice2", ttl=60)
            await a.set("user:1", b"alice3")  # a set without ttl keeps the key for good
            assert await b.delete("user:1") is True
            assert await b.delete("user:1") is False
            assert await a.get("user:1") is None
            await asyncio.sleep(0.45)
            assert await b.get("session:1") is None
            assert await b.get("visits") is None
            assert await b.keys() == ["hits"]
            await a.set("text", b"not a number")
            with pytest.raises(BackplaneError, match="not an integer"):
                await a.incr("text")

    run(main)


# -- presence -----------------------------------------------------------------------------------------


def test_presence_is_cluster_wide(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 3) as (a, b, c):
            await a.track("path:/chat", "c1", b'{"user": "ann"}')
            await a.track("path:/chat", "c2")
            await b.track("path:/chat", "c3")
            await b.track("room:lobby", "c3")
            for node in (a, b, c):
                assert await node.count("path:/chat") == 3
                assert await node.count("room:lobby") == 1
                assert await node.count("room:empty") == 0
            assert await c.members("path:/chat") == sorted(
                [Member("c1", a.node_id, b'{"user": "ann"}'), Member("c2", a.node_id, b""), Member("c3", b.node_id, b"")]
            )
            assert await c.locate("path:/chat", "c3") == Member("c3", b.node_id, b"")
            assert await c.locate("path:/chat", "nobody") is None
            assert await c.nodes() == sorted([a.node_id, b.node_id, c.node_id])

            await a.track("path:/chat", "c1", b"changed")  # tracking again replaces the info
            assert await c.locate("path:/chat", "c1") == Member("c1", a.node_id, b"changed")
            assert await a.untrack("path:/chat", "c2") is True
            assert await a.untrack("path:/chat", "c2") is False
            assert await b.untrack("path:/chat", "c1") is False  # only the node that tracked it
            assert await c.count("path:/chat") == 2
            assert await b.untrack("room:lobby", "c3") is True
            assert await c.count("room:lobby") == 0 and await c.members("room:lobby") == []

    run(main)


def test_a_closed_node_leaves_presence_at_once(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            await a.track("g", "mine")
            await b.track("g", "theirs-1")
            await b.track("g", "theirs-2")
            assert await a.count("g") == 3
            await b.close()
            assert await a.count("g") == 1
            assert await a.nodes() == [a.node_id]

    run(main)


def test_a_node_that_stops_refreshing_expires_then_comes_back(make: Make) -> None:
    """A frozen node (here: its keeper stopped) vanishes within the TTL; refreshing again restores it."""

    async def main() -> None:
        ttl = 0.6
        async with cluster(make, 2, presence_ttl=ttl) as (a, b):
            await a.track("g", "a1")
            await b.track("g", "b1")
            await b.track("h", "b2")
            assert await a.count("g") == 2
            keeper = b._keeper
            assert keeper is not None
            keeper.cancel()
            stopped = time.monotonic()
            while await a.count("g") != 1:
                assert time.monotonic() - stopped < ttl + 1.0, "the frozen node's presence outlived the TTL"
                await asyncio.sleep(0.05)
            assert await a.nodes() == [a.node_id]
            assert await a.count("h") == 0
            await b._refresh()  # it wakes up: everything it tracks is written again
            assert await a.count("g") == 2 and await a.count("h") == 1
            assert await a.nodes() == sorted([a.node_id, b.node_id])

    run(main)


# -- lifecycle and arguments ------------------------------------------------------------------------


def test_lifecycle_and_argument_errors(make: Make) -> None:
    async def main() -> None:
        node = make()
        with pytest.raises(BackplaneError, match="not started"):
            await node.publish("room", b"x")
        await node.start()
        assert node.started and node.connected
        with pytest.raises(BackplaneError, match="already started"):
            await node.start()
        with pytest.raises(TypeError, match="bytes-like"):
            await node.publish("room", "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="channel"):
            await node.subscribe("", lambda m: None)
        with pytest.raises(TypeError, match="callable"):
            await node.subscribe("room", None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ttl"):
            await node.set("k", b"v", ttl=0)
        with pytest.raises(TypeError, match="member"):
            await node.track("g", "")
        sub = await node.subscribe("room", lambda m: None)
        await node.close()
        await node.close()  # idempotent
        assert not sub.active and not node.started
        await sub.unsubscribe()  # after close: nothing to do
        with pytest.raises(BackplaneError, match="closed"):
            await node.get("k")
        with pytest.raises(ValueError, match="node_id"):
            make(node_id="has space")

    run(main)
