"""The cluster features with ``MemoryBackplane``: two servers in one process sharing a hub.

The same semantics as on Redis (``test_processes.py``), without Redis:
broadcast over a channel per path, ``local=True``, ``exclude``, presence,
rooms on ``BackplaneBackend``, send/close by id (``Delivery``), ``kv()``
and the configuration (``backplane=``, ``WS_BACKPLANE``).  And the default:
no backplane, nothing of it imported, today's behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from typing import Any, AsyncIterator, Iterator

import pytest

from ws import WebSocket, WebSocketServer, http
from ws.backplane import BackplaneError, MemoryBackplane, MemoryHub
from ws.exceptions import ConnectionNotFound
from ws.styles import cluster as styles_cluster, rooms
from ws.styles.connections import Delivery, kv, websocket
from ws.styles.rooms import BackplaneBackend, Rooms

from ..conftest import ROOT, Recorder, Served, run, serving, until


@contextlib.asynccontextmanager
async def two_nodes(path: str = "/ws", **ws_options: Any) -> AsyncIterator[list[Served]]:
    """Two ``http.Server``s (each a node) on one hub, each with a ``WebSocketServer`` on ``path``."""
    hub = MemoryHub()
    async with serving(path, http_options={"backplane": MemoryBackplane(hub, node_id="a")}, **ws_options) as a:
        async with serving(path, http_options={"backplane": MemoryBackplane(hub, node_id="b")}, **ws_options) as b:
            yield [a, b]


async def client(url: str) -> tuple[WebSocket, list[Any]]:
    sock = WebSocket(url)
    got: list[Any] = []
    sock.on("message", lambda event: got.append(event.data))
    await sock.wait_open_async(5)
    return sock, got


@contextlib.asynccontextmanager
async def styled_pair() -> AsyncIterator[tuple[list[Any], str, list[Any]]]:
    """Two nodes with the connections style on ``chat`` and one client on node b: the sockets, its id, what it got."""
    hub = MemoryHub()
    servers = [http.Server("127.0.0.1:0", backplane=MemoryBackplane(hub, node_id=n)) for n in "ab"]
    sockets = [websocket(server, "chat") for server in servers]
    ids: list[str] = []
    sockets[1].on("connect", lambda ctx: ids.append(ctx.req.connection_id))
    for server in servers:
        await server.serve_async()
    on_b, got_b = await client(f"ws://127.0.0.1:{servers[1].port}/chat")
    try:
        await until(lambda: len(ids) == 1 and sockets[0].connections() == [] and len(sockets[1].connections()) == 1)
        yield sockets, ids[0], got_b
    finally:
        on_b.close()
        for sock in sockets:
            sock.wss.close()
        for server in servers:
            await server.close_async()


@pytest.fixture
def process_wide() -> Iterator[None]:
    """The process-wide rooms and kv() stores, back to this process afterwards."""
    yield
    styles_cluster.forget()
    rooms.default = Rooms()
    rooms.default._follows_cluster = True


def test_broadcast_crosses_nodes_once_local_and_exclude_stay_local() -> None:
    async def main() -> None:
        async with two_nodes() as (a, b):
            (a1, got_a1), (a2, got_a2), (b1, got_b1) = [await client(s.url) for s in (a, a, b)]
            await until(lambda: len(a.wss.clients or ()) == 2 and len(b.wss.clients or ()) == 1)
            assert await a.wss.count_async() == 3 and await b.wss.total_count_async() == 3
            assert a.wss.broadcast("everyone") == 2  # answers for its own process
            assert b.wss.broadcast(b"bytes too") == 1
            server_a1 = next(iter(s for s, _ in a.accepted[:1]))
            a.wss.broadcast("not a1", exclude=server_a1)
            a.wss.broadcast("a only", local=True)
            b.wss.broadcast("end")
            await until(lambda: all("end" in got for got in (got_a1, got_a2, got_b1)))
            # Exactly once each; each node's broadcasts in its order (nodes are not ordered among themselves).
            from_a = ["everyone", "not a1", "a only"]
            for got, expected in ((got_a1, ["everyone", "a only"]), (got_a2, from_a), (got_b1, from_a[:2])):
                assert [m for m in got if m in from_a] == expected
                assert [m for m in got if m not in from_a] == [b"bytes too", "end"]
            members = await b.wss.members_async()
            assert sorted(m.node for m in members) == ["a", "a", "b"]
            assert {a.wss.connection_id(s) for s, _ in a.accepted} == {m.member for m in members if m.node == "a"}
            for sock in (a1, a2, b1):
                sock.close()

    run(main)


def test_a_path_is_a_channel_of_its_own() -> None:
    async def main() -> None:
        hub = MemoryHub()
        async with serving("/one", http_options={"backplane": MemoryBackplane(hub)}) as one:
            async with serving("/two", http_options={"backplane": MemoryBackplane(hub)}) as two:
                other, got = await client(two.url)
                await until(lambda: two.wss.clients)
                assert await two.wss.total_count_async() == 1
                one.wss.broadcast("for /one")
                await asyncio.sleep(0.05)
                assert got == []
                other.close()

    run(main)


def test_without_a_backplane_nothing_changes_and_nothing_is_imported() -> None:
    code = (
        "import sys, ws\n"
        "wss = ws.WebSocketServer(port=0)\n"
        "assert wss.backplane is None\n"
        "wss.close(); wss.wait_closed(5)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ws.backplane', 'ws.cluster', 'redis'))))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "WS_BACKPLANE"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

    async def main() -> None:
        async with serving() as served:
            sock, _ = await client(served.url)
            await until(lambda: served.wss.clients)
            assert await served.wss.count_async() == 1 == await served.wss.total_count_async()
            assert served.wss.connection_id(served.accepted[0][0]) is None
            with pytest.raises(RuntimeError, match="backplane="):
                await served.wss.members_async()
            sock.close()

    run(main)


def test_the_configuration_options(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        monkeypatch.delenv("WS_BACKPLANE", raising=False)
        assert http.Server("127.0.0.1:0").backplane is None
        monkeypatch.setenv("WS_BACKPLANE", "memory://")
        from_env = http.Server("127.0.0.1:0")
        assert isinstance(from_env.backplane, MemoryBackplane)
        wss = WebSocketServer(server=from_env, path="/x")
        assert wss.backplane is from_env.backplane  # the server's, unless given its own
        own = MemoryBackplane()
        mine = WebSocketServer(server=from_env, path="/y", backplane=own)
        assert mine.backplane is own
        await until(lambda: own.started, what="a server's own backplane is started by it")
        assert not from_env.backplane.started  # started when the HTTP server serves
        await from_env.serve_async()
        assert from_env.backplane.started
        mine.close()
        await until(lambda: not own.started, what="and closed with it")
        wss.close()
        await from_env.close_async()
        assert not from_env.backplane.started
        monkeypatch.delenv("WS_BACKPLANE")
        standalone = WebSocketServer(port=0, backplane="memory://")
        await until(lambda: standalone.server.listening)
        assert standalone.backplane is standalone.server.backplane and standalone.backplane.started
        standalone.close()
        await standalone.wait_closed_async(5)

    run(main)


def test_a_failed_publish_is_an_error_event_with_the_cause() -> None:
    async def main() -> None:
        server = http.Server("127.0.0.1:0", backplane=MemoryBackplane())
        wss = WebSocketServer(server=server, path="/ws")
        rec = Recorder(wss, "error")
        assert wss.broadcast("too early") == 0  # the backplane starts when serving starts
        errors = await rec.wait("error")
        assert isinstance(errors[0][0], BackplaneError) and "not started" in str(errors[0][0])
        wss.close()

    run(main)


def test_rooms_on_a_backplane_publish_to_every_node_and_list_the_cluster() -> None:
    async def main() -> None:
        hub = MemoryHub()
        a, b = MemoryBackplane(hub, node_id="a"), MemoryBackplane(hub, node_id="b")
        await a.start()
        await b.start()
        on_a, on_b = Rooms(BackplaneBackend(a)), Rooms(BackplaneBackend(b))
        seen_a: list[Any] = []
        seen_b: list[Any] = []
        seen_elsewhere: list[Any] = []
        stop_a = on_a.subscribe("lobby", seen_a.append)
        on_b.subscribe("lobby", seen_b.append)
        on_b.subscribe("kitchen", seen_elsewhere.append)
        assert on_a.join("lobby", "ann", announce=False) and on_b.join("lobby", "bob", announce=False)
        assert on_b.join("lobby", ("team", 7), announce=False)
        assert await on_a.members_async("lobby") == ["ann", "bob", ("team", 7)]  # in joining order
        assert await on_a.count_async("lobby") == 3 and await on_b.names_async() == ["kitchen", "lobby"]
        assert on_a.publish("lobby", {"text": "hi"}) == 1  # delivered here at once; the rest follows
        on_b.publish("lobby", "from b")
        await until(lambda: len(seen_a) == 2 and len(seen_b) == 2)
        assert seen_a == [{"text": "hi"}, "from b"] and seen_b == ["from b", {"text": "hi"}]  # local first
        assert seen_elsewhere == []
        with pytest.raises(RuntimeError, match="members_async"):
            on_a.members("lobby")  # would block the loop
        assert await asyncio.to_thread(on_a.members, "lobby") == ["ann", "bob", ("team", 7)]
        with pytest.raises(TypeError, match="JSON"):
            on_a.publish("lobby", object())
        stop_a()
        on_a.leave("lobby", "ann", announce=False)
        assert await on_a.members_async("lobby") == ["bob", ("team", 7)]  # a's own change first
        assert "a" not in hub._channels["room:lobby"] and "b" in hub._channels["room:lobby"]  # a left the channel
        await a.close()
        await b.close()

    run(main)


def test_the_process_wide_rooms_and_stores_follow_a_styled_server_with_a_backplane(process_wide: None) -> None:
    async def main() -> None:
        from ws.styles.routes import route_ws

        server = http.Server("127.0.0.1:0", backplane=MemoryBackplane())

        @route_ws(server, "/room/:name")
        async def room(ctx: Any) -> None:
            async for _ in ctx.messages:
                pass

        assert isinstance(rooms.default.backend, BackplaneBackend)
        await server.serve_async()
        store = kv("sessions")
        await store.set("ann", {"n": 1})
        assert await server.backplane.get("kv:sessions:ann") == b'{"n":1}'  # type: ignore[union-attr]
        assert await store.get("ann") == {"n": 1} and await store.keys() == ["ann"]
        await store.delete("ann")
        assert await store.get("ann", "gone") == "gone"
        await server.close_async()
        # A server made after that one closed brings its backplane to the process-wide parts.
        again = http.Server("127.0.0.1:0", backplane=MemoryBackplane())
        websocket(again, "chat")
        assert rooms.default.backend.backplane is again.backplane  # type: ignore[attr-defined]

    run(main)


def test_send_and_close_by_id_on_another_node(process_wide: None) -> None:
    async def main() -> None:
        hub = MemoryHub()
        servers = [http.Server("127.0.0.1:0", backplane=MemoryBackplane(hub, node_id=n)) for n in "ab"]
        sockets = [websocket(server, "chat") for server in servers]
        ids: list[list[str]] = [[], []]
        for i, sock in enumerate(sockets):
            sock.on("connect", lambda ctx, i=i: ids[i].append(ctx.req.connection_id))
        unclaimed = Recorder(sockets[0].wss, "error")
        with pytest.raises(BackplaneError, match="not started"):
            await sockets[0].send_async("someone", "before serving")
        await asyncio.sleep(0.01)
        assert unclaimed.count("error") == 0  # it was awaited: the caller has it
        for server in servers:
            await server.serve_async()
        (on_a, got_a), (on_b, got_b) = [await client(f"ws://127.0.0.1:{s.port}/chat") for s in servers]
        await until(lambda: all(ids))
        await until(lambda: len(sockets[0].connections()) == 1 == len(sockets[1].connections()))
        assert await sockets[0].connections_async() == sorted(ids[0] + ids[1])
        delivery = sockets[0].send(ids[1][0], {"to": "b"})
        assert isinstance(delivery, Delivery)
        await delivery
        await sockets[0].send_async(ids[1][0], b"raw")
        await until(lambda: len(got_b) == 2)
        assert got_b == ['{"to":"b"}', b"raw"] and got_a == []
        with pytest.raises(ConnectionNotFound, match="on any node"):
            await sockets[0].send("nobody", "x")
        rec = Recorder(sockets[0].wss, "error")
        sockets[0].send("nobody", "not awaited")  # nobody awaits it: its failure is an 'error'
        error = (await rec.wait("error"))[0][0]
        assert isinstance(error, ConnectionNotFound)
        closed = Recorder(on_a, "close")
        await sockets[1].close_async(ids[0][0], 4002, "by id")
        assert (await closed.wait("close"))[0][:2] == (4002, "by id")
        on_b.close()
        for sock in sockets:
            sock.wss.close()
        for server in servers:
            await server.close_async()

    run(main)


def test_shared_start_and_release() -> None:
    async def main() -> None:
        node = MemoryBackplane()
        await asyncio.gather(node.acquire(), node.acquire())  # one start for both
        assert node.started
        await node.release()
        assert node.started
        await node.release()
        assert not node.started  # the last user closes what acquire() started
        with pytest.raises(BackplaneError, match="closed"):
            await node.acquire()
        owner = MemoryBackplane()
        await owner.start()
        await owner.acquire()
        await owner.release()
        assert owner.started  # started by its owner: its owner closes it
        await owner.close()
        waiting = MemoryBackplane()
        waiter = asyncio.ensure_future(waiting.wait_started())
        await waiting.close()
        with pytest.raises(BackplaneError):
            await waiter

    run(main)


def test_json_in_room_messages_between_nodes_keeps_types() -> None:
    from ws.styles.rooms import _decode, _encode

    for value in ("text", b"\x00bytes", {"a": [1, 2]}, [1, "x"], 3, None):
        assert _decode(_encode(value)) == value
    assert json.loads(_encode({"k": "é"})[1:]) == {"k": "é"}


def test_a_delivery_its_caller_stopped_waiting_for_does_not_hang_the_rest_of_its_batch(process_wide: None) -> None:
    async def main() -> None:
        async with styled_pair() as (sockets, b_id, got_b):
            first = sockets[0].send("nobody", "given up on")  # one batch: one lookup turn, settled in a loop
            second = sockets[0].send("nobody either", "second")
            third = sockets[0].send(b_id, "third")
            # the caller stops waiting before the batch is settled (what wait_for's timeout does to the
            # future under ``await delivery``; done here directly, since the in-memory lookup takes no time)
            assert first._future.cancel()
            with pytest.raises(ConnectionNotFound, match="on any node"):
                await asyncio.wait_for(second, 5)
            await asyncio.wait_for(third, 5)
            await until(lambda: got_b == ["third"])

    run(main)


def test_presence_reads_fail_at_once_when_the_backplane_never_started() -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        backplane = MemoryBackplane(MemoryHub(), node_id="a")
        server = http.Server("127.0.0.1:0", backplane=backplane)
        wss = WebSocketServer(server=server, path="/ws")  # the server never serves: nothing starts it
        lobby = Rooms(BackplaneBackend(backplane))
        lobby.join("lobby", "ann", announce=False)
        reads = [wss.count_async(), wss.members_async(), wss.total_count_async(), lobby.members_async("lobby"), lobby.get("lobby").members_async()]
        for read in reads:
            with pytest.raises(BackplaneError, match="not started"):
                await asyncio.wait_for(read, 2)
        await backplane.close()  # ends the state changes queued for a start (the join, the path's listing)
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == before  # no read left waiting at loop close
        with pytest.raises(BackplaneError, match="closed"):
            await asyncio.wait_for(wss.count_async(), 2)
        wss.close()

    run(main)


def test_delivery_result_on_the_servers_own_loop_is_an_error_not_a_hang(process_wide: None) -> None:
    async def main() -> None:
        async with styled_pair() as (sockets, b_id, got_b):
            delivery = sockets[0].send(b_id, "one")
            with pytest.raises(RuntimeError, match="use 'await delivery'"):
                delivery.result(1)  # it would wait for the loop it blocks
            await asyncio.wait_for(delivery, 5)
            later = sockets[0].send(b_id, "two")
            await asyncio.to_thread(later.result, 5)  # from a thread it blocks that thread only
            await until(lambda: got_b == ["one", "two"])

    run(main)
