"""Recorded channels (``publish_recorded``/``history``), run against both implementations.

Two nodes of one cluster: sharing a ``MemoryHub``, one real
``redis-server`` (conftest.py), or a real Redis Cluster (redis_cluster.py).  Every case that is not about Redis itself
(a restart, an outage, the key layout) runs on both, so that the in-process
backplane and the Redis one serve exactly the same history.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

import pytest

from ws.backplane import Backplane, BackplaneError, MemoryBackplane, MemoryHub, Message, Position, Recovery, RedisBackplane

from ..conftest import run, until
from .conftest import RedisServer
from .test_contract import Inbox, Make, cluster

KEEP = Recovery(window=60, max_messages=1000, idle_ttl=120)


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def make(request: pytest.FixtureRequest) -> Make:
    if request.param == "memory":
        hub = MemoryHub()
        return lambda **options: MemoryBackplane(hub, **options)
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return lambda **options: RedisBackplane(server.url, **options)
    from ws.backplane import RedisClusterBackplane

    servers = request.getfixturevalue("redis_cluster")  # shared by the session: a prefix per test
    prefix = f"history-{secrets.token_hex(4)}:"
    return lambda **options: RedisClusterBackplane(servers.url, prefix=prefix, **options)


def offsets(messages: list[Message]) -> list[int]:
    assert all(m.position is not None for m in messages)
    return [m.position.offset for m in messages if m.position is not None]


async def publish_many(node: Backplane, channel: str, count: int, recovery: Recovery = KEEP, tag: bytes = b"m") -> list[Position]:
    return [await node.publish_recorded(channel, tag + b"%d" % i, recovery) for i in range(count)]


async def burst(node: Backplane, channel: str, count: int, recovery: Recovery, tag: bytes = b"m") -> list[Position]:
    """``count`` recorded publishes at once (quicker than one by one, so that timing tests keep their margins)."""
    return list(await asyncio.gather(*(node.publish_recorded(channel, tag + b"%d" % i, recovery) for i in range(count))))


def test_offsets_are_contiguous_and_every_node_sees_one_order_publisher_included(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            mine, theirs = Inbox(), Inbox()
            await a.subscribe("room", mine)
            await b.subscribe("room", theirs)
            first = await a.publish_recorded("room", b"first", KEEP)
            assert first.offset == 1
            # Not awaited one by one: the offsets follow the calls.
            rest = await asyncio.gather(*(a.publish_recorded("room", b"%d" % i, KEEP) for i in range(49)))
            assert [p.offset for p in rest] == list(range(2, 51))
            assert {p.epoch for p in rest} == {first.epoch}
            sent = [b"first"] + [b"%d" % i for i in range(49)]
            for inbox in (mine, theirs):  # the publisher's own subscriber gets it too, in the same order
                assert await inbox.wait(50) == sent
                assert offsets(inbox.messages) == list(range(1, 51))
                assert inbox.messages[0] == Message("room", b"first", a.node_id, first)

    run(main)


def test_plain_and_recorded_publishes_from_one_node_keep_their_call_order(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            inbox = Inbox()
            await b.subscribe("room", inbox)
            calls = [a.publish_recorded("room", b"r%d" % i, KEEP) if i % 3 else a.publish("room", b"p%d" % i) for i in range(90)]
            await asyncio.gather(*calls)
            expected = [b"r%d" % i if i % 3 else b"p%d" % i for i in range(90)]
            assert await inbox.wait(90) == expected
            assert [m.position is None for m in inbox.messages] == [i % 3 == 0 for i in range(90)]
            own = Inbox()
            await a.subscribe("mine", own)
            await a.publish("mine", b"plain: not to its own node")
            await a.publish_recorded("mine", b"recorded: to its own node too", KEEP)
            assert await own.wait(1) == [b"recorded: to its own node too"]
            await asyncio.sleep(0.05)
            assert own.data == [b"recorded: to its own node too"]

    run(main)


def test_recovery_from_a_middle_position_is_exact(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            positions = await publish_many(a, "room", 10)
            epoch = positions[0].epoch
            replay = await b.history("room", Position(4, epoch), KEEP)
            assert replay.recovered and replay.reason is None
            assert replay.position == Position(10, epoch)
            assert [m.data for m in replay.messages] == [b"m%d" % i for i in range(4, 10)]
            assert offsets(replay.messages) == list(range(5, 11))
            assert replay.messages[0] == Message("room", b"m4", a.node_id, Position(5, epoch))
            everything = await b.history("room", Position(0, epoch), KEEP)
            assert everything.recovered and offsets(everything.messages) == list(range(1, 11))

    run(main)


def test_since_the_top_recovers_nothing_and_since_none_reads_the_top(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            start = await b.history("fresh", None, KEEP)  # creates the epoch: the position is stable
            assert start.recovered and start.position.offset == 0 and start.messages == []
            assert await a.history("fresh", None, KEEP) == start
            assert await a.history("fresh", start.position, KEEP) == start
            first = await a.publish_recorded("fresh", b"x", KEEP)
            assert first == Position(1, start.position.epoch)  # numbering goes on in that epoch
            await a.publish_recorded("fresh", b"y", KEEP)
            top = await b.history("fresh", None, KEEP)
            assert top.recovered and top.position == Position(2, first.epoch) and top.messages == []
            same = await b.history("fresh", top.position, KEEP)
            assert same.recovered and same.position == top.position and same.messages == []

    run(main)


def test_an_unknown_epoch_or_a_position_ahead_is_refused(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            positions = await publish_many(a, "room", 3)
            top = positions[-1]
            for since, reason in ((Position(2, "another-epoch"), "epoch"), (Position(3, "another-epoch"), "epoch"), (Position(4, top.epoch), "ahead")):
                replay = await b.history("room", since, KEEP)
                assert (replay.recovered, replay.reason, replay.messages, replay.position) == (False, reason, [], top)

    run(main)


def test_trimmed_by_max_messages(make: Make) -> None:
    async def main() -> None:
        small = Recovery(window=60, max_messages=3, idle_ttl=120)
        async with cluster(make, 2) as (a, b):
            positions = await publish_many(a, "room", 6, small)
            epoch = positions[0].epoch
            for since in (0, 1, 2):
                replay = await b.history("room", Position(since, epoch), small)
                assert (replay.recovered, replay.reason, replay.messages) == (False, "trimmed", [])
                assert replay.position == Position(6, epoch)
            kept = await b.history("room", Position(3, epoch), small)
            assert kept.recovered and [m.data for m in kept.messages] == [b"m3", b"m4", b"m5"]
            # Many more than max_messages (Redis trims whole stream nodes): still never more than 3 served.
            await publish_many(a, "room", 300, small, b"n")
            assert (await b.history("room", Position(302, epoch), small)).reason == "trimmed"
            last = await b.history("room", Position(303, epoch), small)
            assert last.recovered and [m.data for m in last.messages] == [b"n297", b"n298", b"n299"]

    run(main)


def test_window_refuses_what_is_older_and_trimmed_wins_when_both_apply(make: Make) -> None:
    async def main() -> None:
        short = Recovery(window=0.6, max_messages=3, idle_ttl=60)
        async with cluster(make, 2) as (a, b):
            epoch = (await a.publish_recorded("room", b"old-1", short)).epoch
            await a.publish_recorded("room", b"old-2", short)
            await asyncio.sleep(0.8)
            # Nothing published since: the whole history aged out.
            replay = await b.history("room", Position(1, epoch), short)
            assert (replay.recovered, replay.reason, replay.position) == (False, "window", Position(2, epoch))
            assert (await b.history("room", Position(2, epoch), short)).recovered  # nothing missed: nothing needed
            await a.publish_recorded("room", b"new-3", short)
            assert [m.data for m in (await b.history("room", Position(2, epoch), short)).messages] == [b"new-3"]
            assert (await b.history("room", Position(1, epoch), short)).reason == "window"
            await publish_many(a, "room", 2, short, b"new")  # top 5: from 0 and 1, more than 3 came since
            assert (await b.history("room", Position(1, epoch), short)).reason == "trimmed"
            assert (await b.history("room", Position(2, epoch), short)).recovered

    run(main)


def test_the_window_is_exact_within_a_busy_channel(make: Make) -> None:
    """Old messages among recent ones: served while younger than the window, refused after."""

    async def main() -> None:
        busy = Recovery(window=1.0, max_messages=1000, idle_ttl=60)
        async with cluster(make, 2) as (a, b):
            epoch = (await burst(a, "room", 100, busy))[0].epoch
            await asyncio.sleep(0.6)
            await burst(a, "room", 100, busy, b"late")
            assert len((await b.history("room", Position(0, epoch), busy)).messages) == 200
            await asyncio.sleep(0.5)  # the first 100 are older than the window now, the last 100 not
            assert (await b.history("room", Position(0, epoch), busy)).reason == "window"
            assert (await b.history("room", Position(99, epoch), busy)).reason == "window"
            late = await b.history("room", Position(100, epoch), busy)
            assert late.recovered and offsets(late.messages) == list(range(101, 201))

    run(main)


def test_an_idle_channel_starts_a_new_epoch_and_reads_keep_it(make: Make) -> None:
    async def main() -> None:
        brief = Recovery(window=0.2, max_messages=100, idle_ttl=0.6)
        async with cluster(make, 2) as (a, b):
            old = (await publish_many(a, "room", 2, brief))[-1]
            for _ in range(5):  # read every 0.2 s for 1 s, longer than idle_ttl: the numbering is kept
                await asyncio.sleep(0.2)
                assert (await b.history("room", None, brief)).position == old
            await asyncio.sleep(0.8)
            new = await a.publish_recorded("room", b"again", brief)
            assert new.offset == 1 and new.epoch != old.epoch
            replay = await b.history("room", old, brief)
            assert (replay.recovered, replay.reason, replay.position) == (False, "epoch", new)

    run(main)


def test_two_nodes_publishing_concurrently_share_one_numbering(make: Make) -> None:
    async def main() -> None:
        async with cluster(make, 2) as (a, b):
            inboxes = [Inbox(), Inbox()]
            await a.subscribe("room", inboxes[0])
            await b.subscribe("room", inboxes[1])
            epoch = (await a.history("room", None, KEEP)).position.epoch

            by_a, by_b = await asyncio.gather(burst(a, "room", 300, KEEP, b"a"), burst(b, "room", 300, KEEP, b"b"))
            assert sorted(p.offset for p in by_a + by_b) == list(range(1, 601))
            assert [p.offset for p in by_a] == sorted(p.offset for p in by_a)  # each node's calls in order
            assert [p.offset for p in by_b] == sorted(p.offset for p in by_b)
            for inbox in inboxes:
                await inbox.wait(600, timeout=10)
                assert offsets(inbox.messages) == list(range(1, 601))
            assert inboxes[0].messages == inboxes[1].messages
            replay = await b.history("room", Position(0, epoch), KEEP)
            assert replay.recovered and replay.messages == inboxes[0].messages
            for message in replay.messages:
                assert message.position is not None
                assert message.origin == (a.node_id if message.data.startswith(b"a") else b.node_id)

    run(main, timeout=40)


def test_binary_payloads_survive_both_paths(make: Make) -> None:
    async def main() -> None:
        payloads = [b"", b"\x00", b"\x00\x01\x00" * 7, os.urandom(70 * 1024) + b"\x00", bytes(range(256)) * 300]
        async with cluster(make, 2) as (a, b):
            inbox = Inbox()
            await b.subscribe("room", inbox)
            epoch = (await a.history("room", None, KEEP)).position.epoch
            for data in payloads:
                await a.publish_recorded("room", data, KEEP)
            await a.publish("room", b"\x00plain, starting with a zero byte")  # never taken for a recorded one
            assert await inbox.wait(len(payloads) + 1) == payloads + [b"\x00plain, starting with a zero byte"]
            assert inbox.messages[-1].position is None and inbox.messages[-1].origin == a.node_id
            replay = await b.history("room", Position(0, epoch), KEEP)
            assert [m.data for m in replay.messages] == payloads

    run(main)


def test_a_closed_node_refuses(make: Make) -> None:
    async def main() -> None:
        node = make()
        with pytest.raises(BackplaneError, match="not started"):
            await node.publish_recorded("room", b"x", KEEP)
        await node.start()
        with pytest.raises(TypeError, match="bytes-like"):
            await node.publish_recorded("room", "text", KEEP)  # type: ignore[arg-type]
        await node.close()
        with pytest.raises(BackplaneError, match="closed"):
            await node.publish_recorded("room", b"x", KEEP)
        with pytest.raises(BackplaneError, match="closed"):
            await node.history("room", None, KEEP)

    run(main)


# -- Redis only ------------------------------------------------------------------------------------

FAST: dict[str, Any] = {"connect_timeout": 0.5, "command_timeout": 1.0, "reconnect_max_delay": 0.3}


def test_redis_down_fails_the_caller_and_a_restart_without_persistence_is_a_new_epoch(redis_server: RedisServer) -> None:
    async def main() -> None:
        async with cluster(lambda **o: RedisBackplane(redis_server.url, **FAST, **o), 2) as (a, b):
            inbox = Inbox()
            await b.subscribe("room", inbox)
            before = (await publish_many(a, "room", 3))[-1]
            redis_server.stop()
            await until(lambda: not a.connected and not b.connected, timeout=5, what="both nodes see the outage")
            with pytest.raises(BackplaneError, match="publish failed") as failure:
                await a.publish_recorded("room", b"lost", KEEP)
            assert failure.value.__cause__ is not None
            with pytest.raises(BackplaneError, match="history failed"):
                await b.history("room", before, KEEP)
            redis_server.start()
            await until(lambda: a.connected and b.connected, timeout=5, what="both nodes reconnect")
            after = await a.publish_recorded("room", b"again", KEEP)  # the script is loaded again as needed
            assert after.offset == 1 and after.epoch != before.epoch
            replay = await b.history("room", before, KEEP)
            assert (replay.recovered, replay.reason, replay.position) == (False, "epoch", after)
            await inbox.wait(4)
            assert inbox.data == [b"m0", b"m1", b"m2", b"again"]
            assert (await b.history("room", Position(0, after.epoch), KEEP)).messages == inbox.messages[3:]

    run(main, timeout=30)


def test_key_layout_and_expiry(redis_server: RedisServer) -> None:
    import redis

    async def main() -> None:
        policy = Recovery(window=30, max_messages=50, idle_ttl=90)
        async with cluster(lambda **o: RedisBackplane(redis_server.url, prefix="app:", **o), 1) as (a,):
            position = await a.publish_recorded("room:1", b"x", policy)
        raw = redis.Redis(port=redis_server.port)
        try:
            assert sorted(raw.keys("*")) == [b"app:hist:{room:1}", b"app:hmeta:{room:1}"]
            assert raw.hgetall("app:hmeta:{room:1}") == {b"epoch": position.epoch.encode(), b"top": b"1"}
            assert 25_000 < raw.pttl("app:hist:{room:1}") <= 30_000
            assert 85_000 < raw.pttl("app:hmeta:{room:1}") <= 90_000
            (entry_id, fields), = raw.xrange("app:hist:{room:1}")
            assert entry_id.startswith(b"1-") and fields == {b"o": a.node_id.encode(), b"d": b"x"}
        finally:
            raw.close()

    run(main)


def test_the_stream_is_trimmed_by_age_as_well(redis_server: RedisServer) -> None:
    """Memory: a busy channel's stream drops what is older than the window, not only beyond max_messages."""
    import redis

    async def main() -> None:
        policy = Recovery(window=0.5, max_messages=10_000, idle_ttl=60)
        async with cluster(lambda **o: RedisBackplane(redis_server.url, **o), 1) as (a,):
            await burst(a, "room", 1000, policy, b"x" * 100)
            for _ in range(4):  # a trickle keeps the stream from expiring as a whole
                await asyncio.sleep(0.15)
                await a.publish_recorded("room", b"trickle", policy)
            last = (await publish_many(a, "room", 20, policy))[-1]  # 1024: a multiple of 64 trims by age
            raw = redis.Redis(port=redis_server.port)
            try:
                held = raw.xlen("ws:hist:{room}")
            finally:
                raw.close()
            assert 22 <= held < 200, held  # whole stream nodes go: some expired ones may stay
            replay = await a.history("room", Position(1002, last.epoch), policy)
            assert replay.recovered and len(replay.messages) == 22
            assert (await a.history("room", Position(999, last.epoch), policy)).reason == "window"

    run(main)


def test_the_publish_command_is_an_argument_of_the_script(redis_server: RedisServer) -> None:
    """SPUBLISH (Redis Cluster's sharded pub/sub) goes through the same script: an SSUBSCRIBE client gets it."""
    import redis

    async def main() -> None:
        raw = redis.asyncio.Redis(port=redis_server.port)
        pubsub = raw.pubsub()
        try:
            await pubsub.execute_command("SSUBSCRIBE", "ws:ch:{room}")
            async with cluster(lambda **o: RedisBackplane(redis_server.url, **o), 1) as (a,):
                assert isinstance(a, RedisBackplane)
                a._publish_command = "SPUBLISH"
                position = await a.publish_recorded("room", b"sharded", KEEP)
                got: list[Any] = []
                while len(got) < 2:  # the confirmation, then the message
                    reply = await pubsub.parse_response(block=True, timeout=5)
                    assert reply is not None
                    got.append(reply)
                kind, channel, envelope = got[1]
                assert (kind, channel) == (b"smessage", b"ws:ch:{room}")
                assert envelope == b"\x00\x011\x0c" + position.epoch.encode() + bytes([len(a.node_id)]) + a.node_id.encode() + b"sharded"
        finally:
            await pubsub.aclose()
            await raw.aclose()

    run(main)


def test_a_failing_script_fails_its_caller_only(redis_server: RedisServer) -> None:
    """A recorded publish Redis refuses (here the meta key holds a string) fails alone, in its place."""
    import redis

    async def main() -> None:
        raw = redis.Redis(port=redis_server.port)
        raw.set("ws:hmeta:{broken}", b"not a hash")
        raw.close()
        async with cluster(lambda **o: RedisBackplane(redis_server.url, **o), 2) as (a, b):
            inbox = Inbox()
            for channel in ("room", "broken"):
                await b.subscribe(channel, inbox)
            results = await asyncio.gather(
                a.publish("room", b"1"), a.publish_recorded("broken", b"2", KEEP), a.publish_recorded("room", b"3", KEEP), return_exceptions=True
            )
            assert results[0] == 1 and isinstance(results[2], Position) and results[2].offset == 1
            assert isinstance(results[1], BackplaneError) and "publish_recorded failed" in str(results[1])
            assert "WRONGTYPE" in str(results[1].__cause__)
            assert await inbox.wait(2) == [b"1", b"3"]

    run(main)


def test_a_lost_meta_hash_starts_afresh_without_the_old_stream(redis_server: RedisServer) -> None:
    """The numbering restarts at 1 only with an empty stream (else its old ids would refuse the new ones)."""
    import redis

    async def main() -> None:
        async with cluster(lambda **o: RedisBackplane(redis_server.url, **o), 1) as (a,):
            old = (await publish_many(a, "room", 5))[-1]
            raw = redis.Redis(port=redis_server.port)
            raw.delete("ws:hmeta:{room}")  # e.g. evicted under maxmemory
            raw.close()
            new = await a.publish_recorded("room", b"fresh", KEEP)
            assert new.offset == 1 and new.epoch != old.epoch
            replay = await a.history("room", Position(0, new.epoch), KEEP)
            assert replay.recovered and [m.data for m in replay.messages] == [b"fresh"]

    run(main)
