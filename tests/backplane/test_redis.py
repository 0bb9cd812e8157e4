"""The Redis backplane's failure behaviour, with a real ``redis-server`` (see conftest.py).

Redis unreachable at start, Redis restarted or frozen mid-run, a node
process SIGKILLed, the redis package missing, and the key layout
docs/backplane.md describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from typing import AsyncIterator

import pytest

from ws.backplane import BackplaneError, Message, RedisBackplane

from ..conftest import ROOT, run, until
from .conftest import RedisServer, free_port

pytest.importorskip("redis", reason="the redis package is not installed: pip install 'ws-js[redis]'")

FAST = {"connect_timeout": 0.5, "command_timeout": 1.0, "reconnect_max_delay": 0.3}


@contextlib.asynccontextmanager
async def pair(url: str, ttl: float) -> AsyncIterator[tuple[RedisBackplane, RedisBackplane]]:
    """Two started nodes with short timeouts, closed at the end."""
    a = RedisBackplane(url, presence_ttl=ttl, **FAST)
    b = RedisBackplane(url, presence_ttl=ttl, **FAST)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def test_redis_unreachable_at_start_is_a_clear_error_not_a_hang() -> None:
    async def main() -> None:
        node = RedisBackplane(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(BackplaneError, match=r"could not connect to Redis at redis://127\.0\.0\.1:\d+/0") as failure:
            await node.start()
        assert time.monotonic() - started < 1.5
        assert failure.value.__cause__ is not None
        assert not node.started

    run(main)


def test_a_server_that_never_answers_fails_within_the_connect_timeout() -> None:
    """A port that accepts connections (the kernel's backlog) but never speaks: the timeout applies."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://:secret@127.0.0.1:{silent.getsockname()[1]}/0"

        async def main() -> None:
            node = RedisBackplane(url, connect_timeout=0.5)
            started = time.monotonic()
            with pytest.raises(BackplaneError, match="could not connect") as failure:
                await node.start()
            assert time.monotonic() - started < 1.5
            assert "secret" not in str(failure.value) and ":***@" in str(failure.value)

        run(main)


def test_redis_restart_mid_run_restores_subscriptions_and_presence(redis_server: RedisServer) -> None:
    async def main() -> None:
        async with pair(redis_server.url, ttl=3.0) as (a, b):
            events: list[tuple[str, str]] = []
            for node, name in ((a, "a"), (b, "b")):
                node.on("disconnected", lambda error, name=name: events.append((name, f"disconnected: {error}")))
                node.on("reconnected", lambda name=name: events.append((name, "reconnected")))
            got: list[Message] = []
            for channel in ("room:1", "room:2"):
                await b.subscribe(channel, got.append)
            await a.track("path:/chat", "a1")
            await b.track("path:/chat", "b1")
            await a.set("kept", b"no: --save ''")

            redis_server.stop()
            await until(lambda: not a.connected and not b.connected, timeout=5, what="both nodes see the outage")
            assert ("a", "disconnected") in [(n, e.partition(":")[0]) for n, e in events]
            started = time.monotonic()
            with pytest.raises(BackplaneError, match="publish failed") as failure:
                await a.publish("room:1", b"during the outage")
            assert time.monotonic() - started < 2.0 and failure.value.__cause__ is not None
            with pytest.raises(BackplaneError, match="get failed"):
                await a.get("kept")
            await b.track("path:/chat", "b2")  # recorded; reaches Redis on reconnection
            await a.untrack("path:/chat", "a1")

            redis_server.start()
            await until(lambda: a.connected and b.connected, timeout=5, what="both nodes reconnect")
            await until(lambda: events.count(("a", "reconnected")) == 1 and events.count(("b", "reconnected")) == 1, timeout=5)
            assert await a.count("path:/chat") == 2  # b1 and b2; a1 left during the outage
            assert sorted(m.member for m in await a.members("path:/chat")) == ["b1", "b2"]
            assert await a.nodes() == sorted([a.node_id, b.node_id])
            assert await a.publish("room:1", b"one") == 1
            assert await a.publish("room:2", b"two") == 1
            await until(lambda: len(got) == 2, timeout=5, what="both channels delivered again")
            assert [m.data for m in got] == [b"one", b"two"]  # nothing from the outage: at most once
            assert await a.get("kept") is None  # the store went with the restart

    run(main, timeout=30)


def test_a_frozen_redis_is_detected_and_survived(redis_server: RedisServer) -> None:
    """SIGSTOP: no error, no EOF, just silence; the watchdog's PING notices within two ticks."""

    async def main() -> None:
        ttl = 0.6
        async with pair(redis_server.url, ttl) as (a, b):
            lost: list[BaseException] = []
            b.on("disconnected", lost.append)
            got: list[Message] = []
            await b.subscribe("room", got.append)
            redis_server.freeze()
            frozen = time.monotonic()
            try:
                await until(lambda: lost, timeout=3, what="the silent link is dropped")
                assert time.monotonic() - frozen < 2 * ttl / 3 + 0.5
                assert "no answer to PING" in str(lost[0])
                with pytest.raises(BackplaneError, match="publish failed"):
                    await a.publish("room", b"lost")
            finally:
                redis_server.thaw()
            await until(lambda: b.connected, timeout=5, what="b reconnects once Redis runs again")
            await until(lambda: a.connected, timeout=5)
            await a.publish("room", b"after")
            await until(lambda: got, timeout=5)
            assert [m.data for m in got] == [b"after"]

    run(main, timeout=30)


def test_a_sigkilled_node_vanishes_from_presence_within_the_ttl(redis_server: RedisServer) -> None:
    async def main() -> None:
        ttl = 1.0
        here = RedisBackplane(redis_server.url, presence_ttl=ttl)
        await here.start()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.backplane.node", redis_server.url, "path:/chat", "3", str(ttl),
            cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        try:
            assert process.stdout is not None
            remote = (await asyncio.wait_for(process.stdout.readline(), 15)).decode().strip()
            await here.track("path:/chat", "local")
            assert await here.count("path:/chat") == 4
            assert remote in await here.nodes()
            process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(process.wait(), 5)
            killed = time.monotonic()
            while await here.count("path:/chat") != 1:
                assert time.monotonic() - killed < ttl + 0.5, "the killed node's members outlived the TTL"
                await asyncio.sleep(0.05)
            assert await here.nodes() == [here.node_id]
            assert [m.member for m in await here.members("path:/chat")] == ["local"]
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await here.close()

    run(main, timeout=30)


def test_the_key_layout_is_the_documented_one(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    async def main() -> None:
        node = RedisBackplane(redis_server.url, prefix="app:", node_id="n1")
        await node.start()
        raw = aioredis.Redis.from_url(redis_server.url, protocol=2)
        try:
            await node.set("k", b"v", ttl=30)
            await node.track("room:lobby", "c1", b"info")
            keys = sorted(k.decode() for k in await raw.keys("*"))
            assert keys == ["app:kv:k", "app:members:{room:lobby}@n1", "app:nodes", "app:presence:{room:lobby}"]
            assert 0 < await raw.pttl("app:kv:k") <= 30_000
            assert await raw.hgetall("app:members:{room:lobby}@n1") == {b"c1": b"info"}
            assert 0 < await raw.pttl("app:members:{room:lobby}@n1") <= node.presence_ttl * 1000
            assert [m.decode() for m in await raw.zrange("app:presence:{room:lobby}", 0, -1)] == ["n1"]
            got: list[Message] = []
            await node.subscribe("room:lobby", got.append)
            # A message from outside ws: one length byte, the publisher's node id, the payload.
            assert await raw.publish("app:ch:{room:lobby}", b"\x05other" + b"payload") == 1
            await until(lambda: got, timeout=5)
            assert got == [Message("room:lobby", b"payload", "other")]
        finally:
            await raw.aclose()
            await node.close()

    run(main)


def test_without_the_redis_package_the_error_says_what_to_install() -> None:
    probe = (
        "import sys; sys.modules['redis'] = None\n"
        "from ws.backplane import backplane_from\n"
        "try:\n    backplane_from('redis://localhost:6379/0')\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "pip install 'ws-js[redis]'" in done.stdout


def test_publishes_waiting_for_a_slow_redis_are_bounded(redis_server: RedisServer) -> None:
    """At most ``max_pending`` publishes wait behind the one in flight; one more fails at once; close fails them all."""

    async def main() -> None:
        node = RedisBackplane(redis_server.url, max_pending=3, **FAST)
        await node.start()
        try:
            redis_server.freeze()
            try:
                waiting = [asyncio.ensure_future(node.publish("room", b"in flight"))]
                await asyncio.sleep(0.05)  # the writer sent it and waits for the frozen Redis
                waiting += [asyncio.ensure_future(node.publish("room", b"%d" % i)) for i in range(3)]
                await asyncio.sleep(0.01)  # three wait behind it
                started = time.monotonic()
                with pytest.raises(BackplaneError, match="3 publishes already wait"):
                    await node.publish("room", b"one too many")
                assert time.monotonic() - started < 0.1
                await node.close()  # while Redis is frozen: nothing waits for ever
                done = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
                assert [type(r) for r in done] == [BackplaneError] * 4, done
                assert "closed" in str(done[-1])
            finally:
                redis_server.thaw()
        finally:
            await node.close()

    run(main, timeout=30)


def test_a_member_tracked_as_the_node_reconnects_does_not_hide_the_others(redis_server: RedisServer) -> None:
    """After a restart (data gone), a ``track`` between the resubscription and the refresh recreates the group.

    The refresh must still rewrite the group whole: every member, not only the one tracked in that window.
    """

    async def main() -> None:
        async with pair(redis_server.url, ttl=3.0) as (a, b):
            await a.track("path:/chat", "a1")
            await a.track("path:/chat", "a2")
            recover = a._recover

            async def track_first() -> None:  # the window: the link is up, the refresh has not run
                await a.track("path:/chat", "a3")
                await recover()

            a._recover = track_first  # type: ignore[method-assign]
            reconnected: list[bool] = []
            a.on("reconnected", lambda: reconnected.append(True))
            redis_server.stop()
            await until(lambda: not a.connected, timeout=5, what="a sees the outage")
            redis_server.start()
            await until(lambda: a.connected, timeout=5, what="a reconnects")
            await until(lambda: reconnected, timeout=5, what="a's refresh after the reconnection has run")
            assert "a3" in a._tracked["path:/chat"]
            assert sorted(m.member for m in await b.members("path:/chat")) == ["a1", "a2", "a3"]

    run(main, timeout=30)


def test_a_member_untracked_while_redis_was_away_is_gone_after_a_restart_that_kept_the_data(redis_server: RedisServer) -> None:
    """Redis comes back with its data (a dump): the stale entry is still there, and only the refresh removes it."""

    async def main() -> None:
        async with pair(redis_server.url, ttl=5.0) as (a, b):
            await a.track("path:/chat", "a1")
            await a.track("path:/chat", "a2")
            await b.track("path:/chat", "b1")
            await a.set("kept", b"yes: dumped")
            reconnected: list[bool] = []
            a.on("reconnected", lambda: reconnected.append(True))
            redis_server.save()
            redis_server.stop()
            await until(lambda: not a.connected, timeout=5, what="a sees the outage")
            await a.untrack("path:/chat", "a1")  # recorded here only: Redis is away
            redis_server.start()
            await until(lambda: reconnected, timeout=5, what="a reconnects and refreshes")
            assert await a.get("kept") == b"yes: dumped"  # the data did survive the restart
            assert sorted(m.member for m in await b.members("path:/chat")) == ["a2", "b1"]

    run(main, timeout=30)


def test_after_a_long_outage_a_node_resubscribes_soon_after_redis_returns(redis_server: RedisServer) -> None:
    """The reconnect backoff is capped low by default: once Redis answers, the loss window (other nodes
    already publish, this one is not subscribed yet) lasts well under a second, not a grown backoff."""

    async def main() -> None:
        node = RedisBackplane(redis_server.url, presence_ttl=3.0, connect_timeout=0.5, command_timeout=1.0)  # default backoff
        other = RedisBackplane(redis_server.url, presence_ttl=3.0, connect_timeout=0.5, command_timeout=1.0)
        await node.start()
        await other.start()
        try:
            got: list[Message] = []
            await node.subscribe("room", got.append)
            redis_server.stop()
            await until(lambda: not node.connected, timeout=5, what="the node sees the outage")
            assert node.reconnect_max_delay <= 0.5
            await asyncio.sleep(5.0)  # long enough for an uncapped backoff (0.1 s doubling, jitter) to pass 2 s
            back = time.monotonic()
            await asyncio.to_thread(redis_server.start)  # the loop runs meanwhile: the node may retry at once
            await until(lambda: node.connected, timeout=10, what="the node reconnects")
            assert time.monotonic() - back < 1.5
            await until(lambda: other.connected, timeout=10)
            assert await other.publish("room", b"after") == 1
            await until(lambda: got, timeout=5)
        finally:
            await node.close()
            await other.close()

    run(main, timeout=40)


def test_close_during_start_is_not_undone_by_the_start(redis_server: RedisServer) -> None:
    async def main() -> None:
        node = RedisBackplane(redis_server.url, **FAST)
        starting = asyncio.ensure_future(node.start())
        await asyncio.sleep(0)  # the start is connecting
        assert not starting.done()
        await node.close()
        with pytest.raises(BackplaneError, match="closed while it was starting"):
            await asyncio.wait_for(starting, 5)
        assert node.closed and not node.started and not node.connected
        assert all(task.done() for task in node._tasks) and node._client is None  # nothing left connected
        watcher = RedisBackplane(redis_server.url, **FAST)
        await watcher.start()
        try:
            assert await watcher.nodes() == [watcher.node_id]  # the closed node left no presence
        finally:
            await watcher.close()

    run(main, timeout=30)
