"""The Redis backplane on a real three-master Redis Cluster (redis_cluster.py), nothing mocked.

Sharded pub/sub between nodes, with proof that a channel's traffic touches
its shard only; presence and the store across masters; a master restarted,
frozen, or losing a slot to another master mid-run; configuration.  The
cluster is shared by the session: each test's nodes use a prefix of their own.
The contract (test_contract.py) runs on the same cluster too.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator, Callable

import pytest

from ws.backplane import ENV_VAR, BackplaneError, Member, Message, Recovery, backplane_from, from_url

from ..conftest import run, until
from .conftest import RedisServer, free_port
from .redis_cluster import Master, RedisClusterServers

pytest.importorskip("redis", reason="the redis package is not installed: pip install 'ws-js[redis]'")

from ws.backplane import RedisClusterBackplane  # noqa: E402  (after the skip: it needs redis)

FAST = {"connect_timeout": 0.5, "command_timeout": 1.0, "reconnect_max_delay": 0.3}
KEEP = Recovery(window=60, max_messages=100, idle_ttl=120)


@contextlib.asynccontextmanager
async def started(servers: RedisClusterServers, count: int, **options: Any) -> AsyncIterator[list[RedisClusterBackplane]]:
    """``count`` started nodes sharing a fresh prefix, with short timeouts; closed at the end."""
    prefix = f"t{secrets.token_hex(4)}:"
    made = [RedisClusterBackplane(servers.url, prefix=prefix, **{**FAST, **options}) for _ in range(count)]
    try:
        for node in made:
            await node.start()
        yield made
    finally:
        for node in made:
            await node.close()


def channel_key(node: RedisClusterBackplane, channel: str) -> str:
    return f"{node.prefix}ch:{{{channel}}}"


def presence_key(node: RedisClusterBackplane, group: str) -> str:
    return f"{node.prefix}presence:{{{group}}}"


def shard_subscribers(master: Master, key: str) -> int:
    reply = master.call("PUBSUB", "SHARDNUMSUB", key)
    return int(reply[1])


def spublish_calls(master: Master) -> int:
    return int(master.info("commandstats").get("cmdstat_spublish", {}).get("calls", 0))


def bus_publishes(master: Master) -> int:
    """Pub/sub messages this master received over the cluster bus (PUBLISH is copied to every node)."""
    info = master.cluster_info()
    return sum(int(info.get(f"cluster_stats_messages_{kind}_received", "0")) for kind in ("publish", "publishshard"))


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def on(self, channel: str) -> list[bytes]:
        return [m.data for m in self.messages if m.channel == channel]


# -- configuration (no server) -------------------------------------------------------------------------


def test_the_cluster_is_given_by_url_or_by_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    made = from_url("redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001/", prefix="chat:")
    assert isinstance(made, RedisClusterBackplane) and not made.started
    assert made.startup_nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)] and made.prefix == "chat:"
    monkeypatch.setenv(ENV_VAR, "rediss+cluster://cache.internal:6380")
    tls = backplane_from()
    assert isinstance(tls, RedisClusterBackplane) and tls.startup_nodes == [("cache.internal", 6380)]
    keywords = RedisClusterBackplane(nodes=["h1:7000", ("h2", 7001), "[::1]:7002", "h4"], password="pw")
    assert keywords.startup_nodes == [("h1", 7000), ("h2", 7001), ("::1", 7002), ("h4", 6379)]
    assert keywords.url == "redis+cluster://h1:7000,h2:7001,[::1]:7002,h4:6379/"  # for messages: no password in it
    for url, refused in [
        ("redis+cluster://h1:7000/1", "database 0 only"),
        ("redis+cluster://h1:7000/?protocol=3", "no options"),
        ("redis+cluster://:pw@/", "at least one node"),
        ("redis+cluster://h1:99999/", "host:port"),
    ]:
        with pytest.raises(ValueError, match=refused) as failure:
            from_url(url)
        assert "pw" not in str(failure.value)
    with pytest.raises(TypeError, match="either as a URL or as nodes"):
        RedisClusterBackplane("redis+cluster://h1:7000/", nodes=["h2:7000"])
    with pytest.raises(TypeError, match="needs url="):
        RedisClusterBackplane()
    with pytest.raises(ValueError, match=r"redis\+cluster://host:port,host:port/"):
        from_url("cluster://h1:7000")


def test_start_fails_clearly_without_a_cluster(redis_server: RedisServer) -> None:
    async def main() -> None:
        nobody = RedisClusterBackplane(nodes=[f"127.0.0.1:{free_port()}"], connect_timeout=0.5)
        began = time.monotonic()
        with pytest.raises(BackplaneError, match=r"could not connect to Redis Cluster at redis\+cluster://127\.0\.0\.1:\d+/"):
            await nobody.start()
        assert time.monotonic() - began < 1.5 and not nobody.started
        single = RedisClusterBackplane(nodes=[f"127.0.0.1:{redis_server.port}"], password=None, connect_timeout=1.0)
        with pytest.raises(BackplaneError, match="(?i)cluster mode is not enabled"):
            await single.start()  # a plain Redis is not a cluster: said so, not a hang or a half start

    run(main)


# -- sharded pub/sub ---------------------------------------------------------------------------------------


def test_publishes_reach_the_other_nodes_through_their_channel_s_shard_only(redis_cluster: RedisClusterServers) -> None:
    async def main() -> None:
        async with started(redis_cluster, 3) as (a, b, c):
            channels = redis_cluster.spread(lambda name: channel_key(a, name), "room")
            got_b, got_c, own = Inbox(), Inbox(), Inbox()
            for channel in channels.values():
                await b.subscribe(channel, got_b)
                await c.subscribe(channel, got_c)
                await a.subscribe(channel, own)
            calls = {m: spublish_calls(m) for m in redis_cluster.masters}
            bus = {m: bus_publishes(m) for m in redis_cluster.masters}

            for i in range(20):
                for channel in channels.values():
                    assert await a.publish(channel, b"%d" % i) == 2  # b and c; the publisher's own node is left out
            await until(lambda: len(got_b.messages) == 60 and len(got_c.messages) == 60, timeout=5, what="60 messages on b and c")
            for channel in channels.values():
                assert got_b.on(channel) == got_c.on(channel) == [b"%d" % i for i in range(20)]  # in publish order
            assert {m.origin for m in got_b.messages} == {a.node_id}
            await asyncio.sleep(0.05)
            assert own.messages == []

            for master, channel in channels.items():
                key = channel_key(a, channel)
                # Subscribed on its master only (three nodes each), and published there only:
                assert [shard_subscribers(m, key) for m in redis_cluster.masters] == [3 if m is master else 0 for m in redis_cluster.masters]
                assert spublish_calls(master) - calls[master] == 20
            # A recorded publish runs its script on the channel's master, which ends with SPUBLISH:
            # every node gets it, the publisher's own too, with its position.
            for channel in channels.values():
                position = await a.publish_recorded(channel, b"recorded", KEEP)
                assert position.offset == 1
            await until(lambda: len(own.messages) == 3 and len(got_b.messages) == 63, timeout=5, what="the recorded messages")
            assert {m.data for m in own.messages} == {b"recorded"} and all(m.position is not None for m in own.messages)
            # Nothing went over the cluster bus: SPUBLISH without replicas stays on its master.
            assert {m: bus_publishes(m) for m in redis_cluster.masters} == bus
            # Whereas a plain PUBLISH, what RedisBackplane sends, is copied to every other master.
            redis_cluster.masters[0].call("PUBLISH", channel_key(a, "anything"), b"x")
            await until(lambda: all(bus_publishes(m) == bus[m] + 1 for m in redis_cluster.masters[1:]), timeout=5, what="the bus copies")

    run(main)


def test_unsubscribing_ends_the_shard_subscription(redis_cluster: RedisClusterServers) -> None:
    async def main() -> None:
        async with started(redis_cluster, 2) as (a, b):
            channel = "room:solo"
            master = redis_cluster.owner(channel_key(a, channel))
            got = Inbox()
            sub = await b.subscribe(channel, got)
            assert shard_subscribers(master, channel_key(a, channel)) == 1
            assert await a.publish(channel, b"one") == 1
            await until(lambda: got.messages, timeout=5)
            await sub.unsubscribe()
            await until(lambda: shard_subscribers(master, channel_key(a, channel)) == 0, timeout=5, what="SUNSUBSCRIBE")
            assert await a.publish(channel, b"two") == 0
            await b.subscribe(channel, got)  # again, at once: the answer to the SUNSUBSCRIBE is not taken for Redis dropping it
            assert await a.publish(channel, b"three") == 1
            await until(lambda: len(got.messages) == 2, timeout=5)
            assert got.on(channel) == [b"one", b"three"] and b.connected

    run(main)


# -- presence and the store across masters ------------------------------------------------------------------


@pytest.mark.parametrize("pipelined", [True, False], ids=["scripts-pipelined", "redis-py-before-8.2"])
def test_presence_and_the_store_span_the_masters(
    redis_cluster: RedisClusterServers, monkeypatch: pytest.MonkeyPatch, pipelined: bool
) -> None:
    """Also as redis-py before 8.2 has it, refusing EVALSHA in a cluster pipeline: then one call per script."""
    if not pipelined:
        from ws.backplane import redis_cluster as module

        real = module._import_cluster
        monkeypatch.setattr(module, "_import_cluster", lambda: SimpleNamespace(**{**vars(real()), "pipelines_scripts": False}))
    async def main() -> None:
        async with started(redis_cluster, 3) as (a, b, c):
            groups = list(redis_cluster.spread(lambda name: presence_key(a, name), "room").values())
            for group in groups:
                await a.track(group, "a1", b"ann")
                await b.track(group, "b1")
                await b.track(group, "b2")
            for group in groups:
                assert await c.count(group) == 3
                assert await c.members(group) == sorted([Member("a1", a.node_id, b"ann"), Member("b1", b.node_id, b""), Member("b2", b.node_id, b"")])
                assert await c.locate(group, "b2") == Member("b2", b.node_id, b"")
                # A group's keys share its slot, whichever master that is:
                members_key = f"{a.prefix}members:{{{group}}}@{a.node_id}"
                assert redis_cluster.owner(members_key) is redis_cluster.owner(presence_key(a, group))
            assert await c.nodes() == sorted([a.node_id, b.node_id, c.node_id])
            assert await b.untrack(groups[0], "b2") is True
            assert await c.count(groups[0]) == 2
            await b._refresh()  # a periodic refresh, one call per slot: changes nothing
            assert [await c.count(g) for g in groups] == [2, 3, 3]
            await a.close()
            assert [await c.count(g) for g in groups] == [1, 2, 2]  # a's members left at once
            assert await c.nodes() == sorted([b.node_id, c.node_id])

            names = [f"user:{i}" for i in range(30)]  # keys on every master
            assert len({redis_cluster.owner(f"{b.prefix}kv:{name}") for name in names}) == 3
            for name in names:
                await b.set(name, name.encode())
            assert await c.keys("user:") == sorted(names)
            assert await c.get("user:7") == b"user:7"
            assert await c.incr("hits", 5, ttl=30) == 5 and await b.incr("hits") == 6
            assert await b.delete("user:7") is True and await c.get("user:7") is None

    run(main)


# -- failures -------------------------------------------------------------------------------------------------


def test_a_master_restarted_mid_run(redis_cluster: RedisClusterServers) -> None:
    """Stopped: its slots fail (BackplaneError), the others work.  Back: resubscribed, presence rewritten."""

    async def main() -> None:
        async with started(redis_cluster, 2, presence_ttl=3.0) as (a, b):
            events: list[tuple[str, str]] = []
            for node, name in ((a, "a"), (b, "b")):
                node.on("disconnected", lambda error, name=name: events.append((name, f"disconnected: {error}")))
                node.on("reconnected", lambda name=name: events.append((name, "reconnected")))
            channels = redis_cluster.spread(lambda name: channel_key(a, name), "room")
            groups = redis_cluster.spread(lambda name: presence_key(a, name), "group")
            keys = redis_cluster.spread(lambda name: f"{a.prefix}kv:{name}", "key")
            victim = redis_cluster.masters[1]
            others = [m for m in redis_cluster.masters if m is not victim]
            got = Inbox()
            for channel in channels.values():
                await b.subscribe(channel, got)
            for group in groups.values():
                await a.track(group, "a1")
                await b.track(group, "b1")

            victim.stop()
            await until(lambda: not a.connected and not b.connected, timeout=5, what="both nodes see the master go")
            assert {name for name, event in events if event.startswith("disconnected")} == {"a", "b"}
            assert all(victim.name in event for _, event in events)
            began = time.monotonic()
            with pytest.raises(BackplaneError, match="publish failed") as failure:
                await a.publish(channels[victim], b"lost")
            assert time.monotonic() - began < 2.0 and failure.value.__cause__ is not None
            with pytest.raises(BackplaneError, match="get failed"):
                await a.get(keys[victim])
            with pytest.raises(BackplaneError, match="publish_recorded failed|publish failed"):
                await a.publish_recorded(channels[victim], b"lost", KEEP)
            for master in others:  # the other shards keep working meanwhile
                assert await a.publish(channels[master], b"during") == 1
                await a.set(keys[master], b"kept")
                assert await b.get(keys[master]) == b"kept"
                assert await b.count(groups[master]) == 2
            await until(lambda: len(got.messages) == 2, timeout=5, what="the other shards' messages")
            await b.track(groups[victim], "b2")  # recorded; written when its master is back
            assert not any(event == "reconnected" for _, event in events)

            victim.start()
            await until(lambda: a.connected and b.connected, timeout=15, what="both nodes resubscribe on the restarted master")
            await until(lambda: events.count(("a", "reconnected")) == 1 and events.count(("b", "reconnected")) == 1, timeout=5)
            assert shard_subscribers(victim, channel_key(a, channels[victim])) == 1
            assert await a.publish(channels[victim], b"back") == 1
            await until(lambda: got.on(channels[victim]) == [b"back"], timeout=5, what="its channel delivered again")
            assert (await a.publish_recorded(channels[victim], b"recorded", KEEP)).offset == 1  # a new epoch: no persistence
            await until(lambda: got.on(channels[victim]) == [b"back", b"recorded"], timeout=5)
            assert await a.count(groups[victim]) == 3  # a1, b1, b2: rewritten after the restart erased them
            assert await a.nodes() == sorted([a.node_id, b.node_id])
            assert await a.get(keys[victim]) is None  # the store's keys on that master went with the restart
            assert await a.get(keys[others[0]]) == b"kept"
        redis_cluster.wait_ok()

    run(main, timeout=60)


def test_a_frozen_master_holds_up_only_its_own_publishes(redis_cluster: RedisClusterServers) -> None:
    """SIGSTOP: no error, no EOF.  The watchdog notices; a publish to it fails after command_timeout; other shards never wait."""

    async def main() -> None:
        ttl = 0.6
        async with started(redis_cluster, 2, presence_ttl=ttl) as (a, b):
            lost: list[BaseException] = []
            b.on("disconnected", lost.append)
            channels = redis_cluster.spread(lambda name: channel_key(a, name), "room")
            victim = redis_cluster.masters[2]
            free = channels[redis_cluster.masters[0]]
            got = Inbox()
            for channel in channels.values():
                await b.subscribe(channel, got)
            victim.freeze()
            frozen = time.monotonic()
            try:
                stuck = asyncio.ensure_future(a.publish(channels[victim], b"stuck"))
                await asyncio.sleep(0.05)
                began = time.monotonic()
                assert await a.publish(free, b"free") == 1
                assert time.monotonic() - began < 0.5  # another lane: not behind the stuck one
                with pytest.raises(BackplaneError, match="publish failed"):
                    await asyncio.wait_for(stuck, 5)
                await until(lambda: lost, timeout=3, what="the silent link is dropped")
                assert time.monotonic() - frozen < 2 * ttl / 3 + 1.0
                assert "no answer to PING" in str(lost[0]) and victim.name in str(lost[0])
            finally:
                victim.thaw()
            await until(lambda: a.connected and b.connected, timeout=10, what="the links come back")
            assert await a.publish(channels[victim], b"after") == 1
            await until(lambda: got.on(channels[victim]) == [b"after"], timeout=5)
            assert got.on(free) == [b"free"]
        redis_cluster.wait_ok()

    run(main, timeout=60)


def _move_slot(servers: RedisClusterServers, slot: int, source: Master, target: Master) -> None:
    """Give ``slot`` (which holds no key) to ``target``, as a resharding does, and tell every master."""
    ids = {m: m.call("CLUSTER", "MYID").decode() for m in servers.masters}
    target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    for master in (target, source, *(m for m in servers.masters if m not in (source, target))):
        master.call("CLUSTER", "SETSLOT", slot, "NODE", ids[target])


def test_a_slot_that_moves_to_another_master_takes_its_subscriptions_along(redis_cluster: RedisClusterServers) -> None:
    """Redis drops the old master's shard subscriptions (``sunsubscribe``); the node subscribes on the new owner."""
    from redis.crc import key_slot

    async def main() -> None:
        async with started(redis_cluster, 2) as (a, b):
            events: list[str] = []
            b.on("disconnected", lambda error: events.append(str(error)))
            channel = "room:moving"
            key = channel_key(a, channel)
            slot = key_slot(key.encode())
            source = redis_cluster.owner(key)
            target = next(m for m in redis_cluster.masters if m is not source)
            assert int(source.call("CLUSTER", "COUNTKEYSINSLOT", slot)) == 0
            got = Inbox()
            await b.subscribe(channel, got)
            assert await a.publish(channel, b"before") == 1
            await until(lambda: got.messages, timeout=5)
            _move_slot(redis_cluster, slot, source, target)
            try:
                await until(lambda: shard_subscribers(target, key) == 1, timeout=5, what="b subscribed on the new owner")
                assert shard_subscribers(source, key) == 0
                assert await a.publish(channel, b"after") == 1  # redis-py follows the MOVED
                await until(lambda: len(got.messages) == 2, timeout=5)
                assert got.on(channel) == [b"before", b"after"]
                assert events == [] and a.connected and b.connected  # a move is no outage
            finally:
                _move_slot(redis_cluster, slot, target, source)
            await until(lambda: shard_subscribers(source, key) == 1, timeout=5, what="and back")
            assert await a.publish(channel, b"home") == 1
            await until(lambda: len(got.messages) == 3, timeout=5)
        redis_cluster.wait_ok()

    run(main, timeout=60)


def test_a_failover_moves_the_channels_to_the_promoted_replica(redis_cluster: RedisClusterServers, tmp_path: Path) -> None:
    """A replica joins one master, then takes over (CLUSTER FAILOVER): the old master's channels follow it there."""
    source = redis_cluster.masters[0]
    replica = Master(tmp_path, free_port(), free_port())
    replica.start()
    ids = {m: m.call("CLUSTER", "MYID").decode() for m in (*redis_cluster.masters, replica)}
    try:
        replica.call("CLUSTER", "MEET", "127.0.0.1", source.port, source.bus_port)
        settle(lambda: ids[source] in replica.call("CLUSTER", "NODES").decode(), "the replica meets the cluster")
        replica.call("CLUSTER", "REPLICATE", ids[source])
        settle(lambda: replica.info("replication").get("master_link_status") == "up", "the replica syncs")
        for master in redis_cluster.masters:  # a failover needs the masters' votes: each must know the replica
            settle(lambda: ids[replica] in str(master.call("CLUSTER", "REPLICAS", ids[source])), "the masters learn of the replica")

        async def main() -> None:
            async with started(redis_cluster, 2, presence_ttl=1.5) as (a, b):
                events: list[str] = []
                b.on("disconnected", lambda error: events.append(str(error)))
                channel = redis_cluster.spread(lambda name: channel_key(a, name), "room")[source]
                key = channel_key(a, channel)
                got = Inbox()
                await b.subscribe(channel, got)
                assert await a.publish(channel, b"before") == 1
                await until(lambda: got.messages, timeout=5)
                await asyncio.to_thread(fail_over_to, replica)
                await until(lambda: shard_subscribers(replica, key) == 1, timeout=15, what="b subscribed on the promoted replica")
                assert shard_subscribers(source, key) == 0
                # a subscribes nothing there, so it learns of the failover from the cluster's epoch, within a tick;
                # meanwhile its publishes go to the demoted master, which forwards them to its shard.
                sent, deadline = 0, time.monotonic() + 5
                while True:
                    sent += 1
                    if await a.publish(channel, b"after") == 1:
                        break
                    assert time.monotonic() < deadline, "a still publishes to the demoted master"
                    await asyncio.sleep(0.1)
                await until(lambda: got.on(channel) == [b"before"] + [b"after"] * sent, timeout=5, what="every publish delivered")
                assert events == [] and b.connected  # no outage: the old master said goodbye (sunsubscribe)

        run(main, timeout=60)
    finally:
        try:
            if source.info("replication").get("role") == "slave":  # give the slots back to the session's master
                settle(lambda: source.info("replication").get("master_link_status") == "up", "the old master syncs from the new")
                for master in (replica, *redis_cluster.masters[1:]):
                    settle(lambda: ids[source] in str(master.call("CLUSTER", "REPLICAS", ids[replica])), "the masters learn of the demotion")
                source.call("CLUSTER", "FAILOVER")
                settle(lambda: source.info("replication").get("role") == "master", "the old master takes over again")
        finally:
            replica.stop()
            for master in redis_cluster.masters:
                with contextlib.suppress(Exception):
                    master.call("CLUSTER", "FORGET", ids[replica])
    redis_cluster.wait_ok()


def fail_over_to(replica: Master, attempts: int = 5) -> None:
    """``CLUSTER FAILOVER`` on ``replica`` until it is a master: a manual failover that does not complete in
    time (the masters' votes come late on a loaded machine) is abandoned by Redis, so ask again."""
    for attempt in range(attempts):
        replica.call("CLUSTER", "FAILOVER")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            if replica.info("replication").get("role") == "master":
                return
            time.sleep(0.05)
    raise AssertionError(f"the replica did not take over after {attempts} CLUSTER FAILOVER")


def settle(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """``until`` for the test thread (no loop running): poll ``predicate`` until true, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} (not within {timeout} s)"
        time.sleep(0.05)
