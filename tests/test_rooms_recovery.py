"""Recorded rooms (``recovery=``): the status, the JSON envelope, and clients that come back with their position.

Each behaviour runs on both homes of a room: ``MemoryBackend`` (the history
in this process) and ``BackplaneBackend`` (the backplane's history; here a
``MemoryBackplane``, two of them sharing a ``MemoryHub`` for two nodes).
Clients are real sockets on loopback; the one that is killed has its TCP
connection reset (``SO_LINGER`` 0), as a network failure would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
from typing import Any, AsyncIterator, Callable

import pytest

import ws
from ws import http
from ws.backplane.history import Position, Recovery
from ws.backplane.memory import MemoryBackplane, MemoryHub
from ws.styles import cluster as styles_cluster
from ws.styles import rooms
from ws.styles.rooms import BackplaneBackend, MemoryBackend, Rooms, read_position
from ws.styles.routes import route_ws

from .backplane.conftest import RedisServer, redis_server  # noqa: F401  (the fixture)
from .conftest import run, until
from .frames import frame

TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def process_wide() -> Any:
    """``route_ws`` gives the process-wide rooms a server's backplane: back to this process afterwards."""
    yield
    styles_cluster.forget()
    rooms.default = Rooms()
    rooms.default._follows_cluster = True


class DistantBackplane(MemoryBackplane):
    """A ``MemoryBackplane`` whose history reads and subscriptions take a while, as Redis' do over a network.

    The in-memory one answers without ever suspending the caller, which
    hides every ordering that depends on a round trip.
    """

    async def history(self, channel: str, since: Position | None, recovery: Recovery) -> Any:
        await asyncio.sleep(0.01)
        return await super().history(channel, since, recovery)

    async def _subscribe_channel(self, channel: str) -> None:
        await asyncio.sleep(0.01)
        await super()._subscribe_channel(channel)


BACKENDS = ["memory", "backplane", "distant"]


@pytest.fixture(params=BACKENDS + ["redis"])
def kind(request: pytest.FixtureRequest) -> str:
    """Where the rooms live: ``memory`` (``MemoryBackend``), or a backplane: in memory, in memory and slow, Redis."""
    if request.param == "redis":
        return "redis:" + request.getfixturevalue("redis_server").url
    return str(request.param)


@contextlib.asynccontextmanager
async def rooms_on(kind: str, **options: Any) -> AsyncIterator[Rooms]:
    """A ``Rooms`` in memory, or on a started backplane (closed afterwards)."""
    if kind == "memory":
        yield Rooms(**options)
        return
    backplane: Any
    if kind.startswith("redis:"):
        from ws.backplane.redis_backplane import RedisBackplane

        backplane = RedisBackplane(kind[len("redis:"):], node_id="solo")
    else:
        backplane = (DistantBackplane if kind == "distant" else MemoryBackplane)(MemoryHub(), node_id="solo")
    await backplane.start()
    try:
        yield Rooms(BackplaneBackend(backplane), **options)
    finally:
        await backplane.close()


class Collected(list[Any]):
    """What one subscriber got, with a way to wait for it."""

    async def wait(self, count: int) -> list[Any]:
        try:
            await until(lambda: len(self) >= count, TIMEOUT)
        except AssertionError:
            raise AssertionError(f"{count} messages expected, got {list(self)}") from None
        await asyncio.sleep(0.02)  # and nothing more
        return list(self)


def data_of(got: list[Any]) -> list[Any]:
    return [m["data"] for m in got if "data" in m]


# -- the envelope and the status -----------------------------------------------------------------


def test_a_subscriber_gets_the_status_then_each_message_in_its_envelope(kind: str) -> None:
    async def main() -> None:
        async with rooms_on(kind) as lobby:
            room = lobby.get("general", recovery=Recovery(window=60, max_messages=100))
            got = Collected()
            room.subscribe(got.append)
            await got.wait(1)
            status = got[0]
            assert status == {"type": "recovery", "room": "general", "recovered": False, "reason": "new", "epoch": status["epoch"], "offset": 0}
            room.publish({"text": "hi"})
            room.publish("plain text")
            room.join("ann")  # announcements are published too: recorded
            await got.wait(4)
            assert got[1:3] == [{"room": "general", "offset": 1, "data": {"text": "hi"}}, {"room": "general", "offset": 2, "data": "plain text"}]
            assert got[3]["offset"] == 3 and got[3]["data"]["type"] == "joined" and got[3]["data"]["member"] == "ann"
            assert lobby.get("general").recovery == Recovery(window=60, max_messages=100)  # kept by the Rooms
            with pytest.raises(TypeError, match="JSON values"):
                room.publish(b"bytes")
            with pytest.raises(TypeError, match="JSON"):
                room.publish({"x": object()})

    run(main)


def test_a_subscriber_that_comes_back_gets_exactly_what_it_missed_then_live(kind: str) -> None:
    async def main() -> None:
        async with rooms_on(kind, recovery=Recovery(window=60, max_messages=100)) as lobby:
            room = lobby.get("general")
            first = Collected()
            stop = room.subscribe(first.append)
            for n in range(1, 6):
                room.publish({"n": n})
            await first.wait(6)
            epoch = first[0]["epoch"]
            stop()
            witness = Collected()  # on a backplane a publish lands a moment later: this says when
            room.subscribe(witness.append)
            for n in range(6, 9):
                room.publish({"n": n})
            await witness.wait(4)
            again = Collected()
            room.subscribe(again.append, since={"offset": 5, "epoch": epoch})
            await again.wait(4)
            room.publish({"n": 9})
            await again.wait(5)
            assert again[0] == {"type": "recovery", "room": "general", "recovered": True, "reason": None, "epoch": epoch, "offset": 5}
            assert [m["offset"] for m in again[1:]] == [6, 7, 8, 9]
            assert data_of(again) == [{"n": 6}, {"n": 7}, {"n": 8}, {"n": 9}]
            # Up to date: recovered, nothing to replay.
            current = Collected()
            room.subscribe(current.append, since=f"offset=9&epoch={epoch}")
            await current.wait(1)
            assert current == [{"type": "recovery", "room": "general", "recovered": True, "reason": None, "epoch": epoch, "offset": 9}]

    run(main)


def test_trimmed_history_is_refused_explicitly_and_nothing_of_it_is_delivered(kind: str) -> None:
    async def main() -> None:
        async with rooms_on(kind) as lobby:
            room = lobby.get("small", recovery=Recovery(window=60, max_messages=3))
            first = Collected()
            stop = room.subscribe(first.append)
            room.publish(1)
            await first.wait(2)
            stop()
            witness = Collected()
            room.subscribe(witness.append)
            for n in range(2, 7):  # 5 messages: more than the 3 kept
                room.publish(n)
            await witness.wait(6)
            again = Collected()
            room.subscribe(again.append, since={"offset": 1, "epoch": first[0]["epoch"]})
            await again.wait(1)
            assert again[0]["recovered"] is False and again[0]["reason"] == "trimmed" and again[0]["offset"] == 6
            room.publish(7)
            await again.wait(2)
            assert again[1:] == [{"room": "small", "offset": 7, "data": 7}]  # live only, from the offset it was told

    run(main)


def test_a_position_older_than_the_window_is_refused(kind: str) -> None:
    async def main() -> None:
        async with rooms_on(kind) as lobby:
            room = lobby.get("brief", recovery=Recovery(window=0.2, max_messages=100))
            first = Collected()
            stop = room.subscribe(first.append)
            room.publish("old")
            await first.wait(2)
            stop()
            witness = Collected()
            room.subscribe(witness.append)
            room.publish("missed")
            await witness.wait(2)
            await asyncio.sleep(0.35)  # "missed" is past the window now
            again = Collected()
            room.subscribe(again.append, since={"offset": 1, "epoch": first[0]["epoch"]})
            await again.wait(1)
            assert (again[0]["recovered"], again[0]["reason"], again[0]["offset"]) == (False, "window", 2)
            assert len(again) == 1

    run(main)


def test_malformed_foreign_and_future_positions_are_refused_with_their_reason(kind: str) -> None:
    async def main() -> None:
        async with rooms_on(kind, recovery=True) as lobby:
            room = lobby.get("r")
            first = Collected()
            room.subscribe(first.append)
            room.publish("one")
            await first.wait(2)
            epoch = first[0]["epoch"]
            cases: list[tuple[Any, str]] = [
                ("offset=abc&epoch=" + epoch, "invalid"),
                ("offset=1", "invalid"),  # no epoch
                ({"offset": -1, "epoch": epoch}, "invalid"),
                ({"offset": 1, "epoch": "no spaces allowed"}, "invalid"),
                ('{"offset": 1, "epoch"', "invalid"),  # broken JSON
                ("[1, 2]", "invalid"),
                ({"offset": 1, "epoch": "another-epoch"}, "epoch"),
                ({"offset": 5, "epoch": epoch}, "ahead"),
            ]
            for since, reason in cases:
                got = Collected()
                room.subscribe(got.append, since=since)
                await got.wait(1)
                assert (got[0]["recovered"], got[0]["reason"], got[0]["offset"]) == (False, reason, 1), since
                assert len(got) == 1
            room.publish("two")
            await first.wait(3)

    run(main)


def test_reading_a_position_from_a_query_a_first_message_or_a_request() -> None:
    expected = Position(41, "k2Jx")
    assert read_position({"offset": "41", "epoch": "k2Jx"}) == expected  # ctx.query
    assert read_position({"offset": ["41"], "epoch": ["k2Jx"]}) == expected  # a query of lists (connections style)
    assert read_position("?offset=41&epoch=k2Jx") == expected
    assert read_position('{"type": "resume", "offset": 41, "epoch": "k2Jx"}') == expected  # a first message
    assert read_position(b'{"offset": 41, "epoch": "k2Jx"}') == expected
    assert read_position(expected) == expected
    assert read_position({"name": "ann"}) is None and read_position("") is None and read_position(None) is None
    request = ws.Request("GET", "/room/general?offset=41&epoch=k2Jx", [])
    assert read_position(request) == expected
    for bad in ("offset=x&epoch=k2Jx", {"offset": 41}, {"offset": True, "epoch": "k2Jx"}, "{oops"):
        with pytest.raises(ValueError, match="malformed position"):
            read_position(bad)
    with pytest.raises(TypeError, match="since must be"):
        read_position(41)


def test_recovery_is_opt_in_and_its_misuse_is_an_error() -> None:
    lobby = Rooms()
    plain = lobby.get("plain")
    assert plain.recovery is None
    with pytest.raises(ValueError, match="not recorded"):
        plain.subscribe(print, since={"offset": 1, "epoch": "e"})
    lobby.get("kept", recovery=Recovery(window=10))
    lobby.get("kept", recovery=Recovery(window=10))  # the same again is fine
    with pytest.raises(ValueError, match="cannot change"):
        lobby.get("kept", recovery=Recovery(window=20))
    with pytest.raises(TypeError, match="ws.Recovery"):
        lobby.get("x", recovery=120)  # type: ignore[arg-type]
    assert Rooms(recovery=True).get("any").recovery == Recovery()

    class Plain:  # a RoomBackend of its own, which knows nothing of recording
        def __init__(self) -> None:
            self._rooms = MemoryBackend()

        def subscribe(self, room: str, callback: Any) -> Any:
            return self._rooms.subscribe(room, callback)

        def publish(self, room: str, message: Any) -> int:
            return self._rooms.publish(room, message)

    recorded = Rooms(Plain(), recovery=True).get("r")  # type: ignore[arg-type]
    for use in (lambda: recorded.subscribe(print), lambda: recorded.publish("x")):
        with pytest.raises(TypeError, match="does not record rooms"):
            use()


def test_the_process_wide_rooms_record_too() -> None:
    got = Collected()
    room = rooms.get("ws-recovery-module-test", recovery=Recovery(window=30))
    off = rooms.subscribe("ws-recovery-module-test", got.append)
    assert rooms.publish("ws-recovery-module-test", {"n": 1}) == 1
    off()
    assert data_of(got) == [{"n": 1}] and got[0]["reason"] == "new"
    assert room.recovery == Recovery(window=30)
    assert "ws-recovery-module-test" not in rooms.names()


def test_a_new_epoch_is_told_to_the_live_subscribers(kind: str) -> None:
    async def main() -> None:
        async with rooms_on(kind, recovery=Recovery(window=0.1, idle_ttl=0.15)) as lobby:
            room = lobby.get("idle")
            got = Collected()
            room.subscribe(got.append)
            room.publish("before")
            await got.wait(2)
            await asyncio.sleep(0.3)  # idle past idle_ttl: the numbering starts again
            room.publish("after")
            await got.wait(4)
            old, new = got[0]["epoch"], got[2]["epoch"]
            assert got[2] == {"type": "recovery", "room": "idle", "recovered": False, "reason": "epoch", "epoch": new, "offset": 0}
            assert got[3] == {"room": "idle", "offset": 1, "data": "after"} and new != old

    run(main)


def test_memory_concurrent_publishers_and_returning_subscribers_see_one_order_without_gap_or_duplicate() -> None:
    """Threads publish while subscribers come back with their positions: each sees a contiguous run of offsets."""
    lobby = Rooms(recovery=Recovery(window=60, max_messages=100_000))
    room = lobby.get("busy")
    per_thread, threads = 300, 3
    total = per_thread * threads
    stop = threading.Event()
    runs: list[list[Any]] = []
    failures: list[str] = []

    def publish(t: int) -> None:
        for i in range(per_thread):
            room.publish({"t": t, "i": i})

    def come_and_go() -> None:
        since: dict[str, Any] | None = None
        while not stop.is_set():
            got: list[Any] = []
            off = room.subscribe(got.append, since=since)
            time.sleep(0.002)
            off()
            got = list(got)  # a drain under way may still hand it one more: a later run gets that one
            if not got:
                continue  # another thread was handing on the queue: nothing reached it before it left
            if got[0].get("type") != "recovery":
                failures.append(f"no status first: {got[:1]}")
                return
            status = got[0]
            if since is not None and not status["recovered"]:
                failures.append(f"not recovered: {status}")
                return
            offsets = [m["offset"] for m in got[1:]]
            if offsets != list(range(status["offset"] + 1, status["offset"] + 1 + len(offsets))):
                failures.append(f"not contiguous after {status['offset']}: {offsets}")
                return
            runs.append(got)
            since = {"offset": offsets[-1] if offsets else status["offset"], "epoch": status["epoch"]}

    watchers = [threading.Thread(target=come_and_go) for _ in range(2)]
    publishers = [threading.Thread(target=publish, args=(t,)) for t in range(threads)]
    for thread in watchers + publishers:
        thread.start()
    for thread in publishers:
        thread.join(20)
    stop.set()
    for thread in watchers:
        thread.join(20)
    assert failures == []
    assert runs
    final = Collected()
    room.subscribe(final.append, since={"offset": 0, "epoch": runs[0][0]["epoch"]})
    assert [m["offset"] for m in final[1:]] == list(range(1, total + 1))
    for t in range(threads):  # each publisher's messages in the order it published them
        assert [m["data"]["i"] for m in final[1:] if m["data"]["t"] == t] == list(range(per_thread))


# -- real clients that are cut off and come back ------------------------------------------------------


class Client:
    """A WebSocket client on a plain TCP socket, so that the test can cut it as a network failure would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str) -> "Client":
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def recv(self) -> Any:
        """The next text message, as JSON (``EOFError`` at a close frame)."""
        while True:
            first, second = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == 8:
                raise EOFError("closed")
            if opcode == 1:
                assert first & 0x80, "a fragmented message (not expected here)"
                return json.loads(payload)

    def send(self, value: Any) -> None:
        self.writer.write(frame(1, json.dumps(value).encode()))

    def cut(self) -> None:
        """Reset the TCP connection: no close frame, no FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


class Follower:
    """What a browser does: keep the last position, come back with it, and gather the data it got."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.epoch: str | None = None
        self.offset = 0
        self.data: list[Any] = []
        self.statuses: list[dict[str, Any]] = []
        self.client: Client | None = None
        self.errors: list[BaseException] = []
        self._reading: asyncio.Task[None] | None = None

    def path(self) -> str:
        since = "" if self.epoch is None else f"?offset={self.offset}&epoch={self.epoch}"
        return f"/room/{self.room}{since}"

    async def connect(self, port: int) -> dict[str, Any]:
        self.client = await Client.connect(port, self.path())
        status: dict[str, Any] = await self.client.recv()
        assert status["type"] == "recovery" and status["room"] == self.room, status
        self.statuses.append(status)
        self.epoch, self.offset = status["epoch"], status["offset"]
        self._reading = asyncio.get_running_loop().create_task(self._read(self.client))
        return status

    async def _read(self, client: Client) -> None:
        try:
            while True:
                message = await client.recv()
                if message.get("type") == "recovery":
                    self.statuses.append(message)
                    self.epoch, self.offset = message["epoch"], message["offset"]
                    continue
                assert message["offset"] == self.offset + 1, f"offset {message['offset']} after {self.offset}"
                self.offset = message["offset"]
                self.data.append(message["data"])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # cut
        except Exception as exc:
            self.errors.append(exc)

    async def cut(self) -> None:
        assert self.client is not None and self._reading is not None
        self.client.cut()
        self._reading.cancel()
        await asyncio.gather(self._reading, return_exceptions=True)


def serve_room(server: http.Server, lobby: Rooms, recovery: Recovery) -> None:
    """The routed-rooms handler, as an application writes it."""

    @route_ws(server, "/room/:name")
    async def handler(ctx: Any) -> None:
        room = lobby.get(ctx.params["name"], recovery=recovery)
        unsubscribe = room.subscribe(ctx.send, since=ctx.query)
        try:
            async for _ in ctx.messages:
                pass
        finally:
            unsubscribe()


class Publisher:
    """A thread that publishes ``{"n": 1..count}`` to a room, a little at a time."""

    def __init__(self, publish: Callable[[Any], Any], count: int, pause: float = 0.002) -> None:
        self.count = count
        self.sent = 0
        self._thread = threading.Thread(target=self._run, args=(publish, pause), daemon=True)

    def _run(self, publish: Callable[[Any], Any], pause: float) -> None:
        for n in range(1, self.count + 1):
            publish({"n": n})
            self.sent = n
            time.sleep(pause)

    def start(self) -> "Publisher":
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(30)


async def follow_through_cuts(follower: Follower, ports: list[int], publisher: Publisher, cuts: int) -> None:
    """Connect, let some messages come, cut, stay away a moment, come back (to the next port); then read to the end."""
    await follower.connect(ports[0])
    publisher.start()
    missed = 0
    for i in range(cuts):
        target = (i + 1) * publisher.count // (cuts + 2)
        await until(lambda: len(follower.data) >= target, 10, what=f"{target} messages before cut {i}")
        await follower.cut()
        before = publisher.sent
        await asyncio.sleep(0.05)  # published meanwhile: missed live
        missed += publisher.sent - before
        status = await follower.connect(ports[(i + 1) % len(ports)])
        assert status["recovered"] is True and status["reason"] is None, status
    await asyncio.to_thread(publisher.join)
    await finished(follower, publisher.count)
    assert missed > cuts  # the history had something to give each time (about 25 per cut)


async def finished(follower: Follower, count: int) -> None:
    """It got ``{"n": 1..count}``, each once, in order."""
    await until(lambda: len(follower.data) >= count or follower.errors, 10, what=f"all {count} messages, got {len(follower.data)}")
    await asyncio.sleep(0.05)
    assert follower.errors == []
    assert [m["n"] for m in follower.data] == list(range(1, count + 1))


def nodes(kind: str, count: int) -> list[Any]:
    """The backplanes of ``count`` nodes of one cluster (``kind`` as the fixture gives it)."""
    if kind.startswith("redis:"):
        from ws.backplane.redis_backplane import RedisBackplane

        return [RedisBackplane(kind[len("redis:"):], node_id=f"n{i}") for i in range(count)]
    hub = MemoryHub()
    return [(DistantBackplane if kind == "distant" else MemoryBackplane)(hub, node_id=f"n{i}") for i in range(count)]


def test_a_client_cut_off_while_messages_flow_comes_back_and_gets_exactly_1_to_n(kind: str) -> None:
    backplane = None if kind == "memory" else nodes(kind, 1)[0]

    async def main() -> None:
        recovery = Recovery(window=60, max_messages=10_000)
        server = http.Server("127.0.0.1:0", backplane=backplane)
        lobby = Rooms() if backplane is None else Rooms(BackplaneBackend(backplane, loop=server.loop))
        serve_room(server, lobby, recovery)
        await server.serve_async()
        try:
            follower = Follower("general")
            watcher = Follower("general")  # stays connected all along
            await watcher.connect(server.port)
            publisher = Publisher(lobby.get("general", recovery=recovery).publish, 400)
            await follow_through_cuts(follower, [server.port], publisher, cuts=5)
            assert [s["recovered"] for s in follower.statuses] == [False] + [True] * 5
            await finished(watcher, 400)
            assert len(watcher.statuses) == 1
        finally:
            await asyncio.wait_for(server.close_async(), 15)

    run(main, timeout=60)


@pytest.fixture(params=["backplane", "distant", "redis"])
def cluster_kind(request: pytest.FixtureRequest) -> str:
    """The homes with a second node (rooms in plain memory have none)."""
    if request.param == "redis":
        return "redis:" + request.getfixturevalue("redis_server").url
    return str(request.param)


def test_two_nodes_a_client_cut_off_comes_back_on_the_other_node_and_gets_exactly_1_to_n(cluster_kind: str) -> None:
    two = nodes(cluster_kind, 2)

    async def main() -> None:
        recovery = Recovery(window=60, max_messages=10_000)
        servers = [http.Server("127.0.0.1:0", backplane=node) for node in two]
        on = [Rooms(BackplaneBackend(s.backplane, loop=s.loop)) for s in servers]  # type: ignore[arg-type]
        for server, lobby in zip(servers, on):
            serve_room(server, lobby, recovery)
            await server.serve_async()
        try:
            follower = Follower("general")
            watcher = Follower("general")  # stays on node b all along
            await watcher.connect(servers[1].port)
            publisher = Publisher(on[0].get("general", recovery=recovery).publish, 400)  # published on node a
            await follow_through_cuts(follower, [servers[1].port, servers[0].port], publisher, cuts=4)
            await finished(watcher, 400)
            assert len(watcher.statuses) == 1
        finally:
            for server in servers:
                await asyncio.wait_for(server.close_async(), 15)

    run(main, timeout=60)


def test_memory_publishes_from_a_thread_and_from_the_loop_reach_a_client_in_their_order() -> None:
    """The thread that hands a message on is the publisher's: the client still gets them in the order of the offsets."""

    async def main() -> None:
        recovery = Recovery(window=60, max_messages=1000)
        server = http.Server("127.0.0.1:0")
        lobby = Rooms()
        serve_room(server, lobby, recovery)
        await server.serve_async()
        try:
            watcher = Follower("general")
            await watcher.connect(server.port)
            room = lobby.get("general", recovery=recovery)
            published = threading.Event()

            def from_thread(n: int) -> None:
                room.publish({"n": n})
                published.set()

            for n in range(1, 101, 2):
                published.clear()
                threading.Thread(target=from_thread, args=(n,)).start()
                published.wait(5)  # blocking the loop: what that thread sent is still on its way to it
                room.publish({"n": n + 1})  # on the loop, after it
                await asyncio.sleep(0)
            await finished(watcher, 100)
        finally:
            await asyncio.wait_for(server.close_async(), 15)

    run(main, timeout=60)


def test_what_is_published_after_subscribe_returns_reaches_that_subscriber(kind: str) -> None:
    """``subscribe`` then ``join`` (which announces): the subscriber sees its own announcement, even on a node where the room starts."""

    async def main() -> None:
        async with rooms_on(kind, recovery=True) as lobby:
            for attempt in range(3):  # the room's stream starts on each first subscriber of this node
                room = lobby.get(f"fresh{attempt}")
                got = Collected()
                stop = room.subscribe(got.append)
                room.join("ann")
                room.publish({"n": 1})
                await got.wait(3)
                assert got[0]["reason"] == "new" and got[0]["offset"] == 0, got
                assert [(m["offset"], m["data"].get("type"), m["data"].get("n")) for m in got[1:]] == [(1, "joined", None), (2, None, 1)]
                stop()

    run(main)


@pytest.mark.parametrize("kind", ["backplane", "distant"])
def test_on_a_backplane_publishes_overlap_again_once_the_rooms_stream_runs(kind: str) -> None:
    """Publishes wait behind a starting stream only: a subscriber that left at once, or a stream that runs, leaves them free."""

    async def main() -> None:
        async with rooms_on(kind, recovery=True) as lobby:
            backend = lobby.backend
            assert isinstance(backend, BackplaneBackend)
            room = lobby.get("r")
            room.subscribe(lambda message: None)()  # in and out before its stream started
            got = Collected()
            room.subscribe(got.append)
            for n in range(20):
                room.publish(n)
            await got.wait(21)
            assert [m["offset"] for m in got[1:]] == list(range(1, 21))
            await until(lambda: not backend._starting and not backend._queued)
            assert backend._running == {"r"}

    run(main)


def test_the_position_may_come_as_the_first_message() -> None:
    """``since=await anext(ctx.messages)``: for clients that cannot put it in the URL."""

    async def main() -> None:
        lobby = Rooms(recovery=True)
        server = http.Server("127.0.0.1:0")

        @route_ws(server, "/resume/:name")
        async def handler(ctx: Any) -> None:
            unsubscribe = lobby.get(ctx.params["name"]).subscribe(ctx.send, since=await anext(ctx.messages))
            try:
                async for _ in ctx.messages:
                    pass
            finally:
                unsubscribe()

        await server.serve_async()
        try:
            first = await Client.connect(server.port, "/resume/r")
            first.send({})  # no position yet
            status = await first.recv()
            assert (status["recovered"], status["reason"]) == (False, "new")
            for n in range(1, 4):
                lobby.get("r").publish(n)
            assert [(await first.recv())["data"] for _ in range(3)] == [1, 2, 3]
            first.cut()
            lobby.get("r").publish(4)
            again = await Client.connect(server.port, "/resume/r")
            again.send({"type": "resume", "offset": 2, "epoch": status["epoch"]})
            assert (await again.recv())["recovered"] is True
            assert [await again.recv() for _ in range(2)] == [{"room": "r", "offset": 3, "data": 3}, {"room": "r", "offset": 4, "data": 4}]
            bad = await Client.connect(server.port, "/resume/r")
            bad.send({"offset": "three", "epoch": status["epoch"]})
            assert (await bad.recv())["reason"] == "invalid"
            for client in (again, bad):
                client.cut()
        finally:
            await asyncio.wait_for(server.close_async(), 15)

    run(main)
