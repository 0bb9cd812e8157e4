"""ws.styles.connections: connect/disconnect/message handlers with connection ids, over real connections."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ws import http
from ws.styles.connections import ConnectionNotFound, EventContext, MemoryStore, kv, websocket

from .conftest import run, serving, until
from .styles_helpers import Peer, refused, run_example


def test_definition_errors() -> None:
    server = http.Server("127.0.0.1:0")
    socket = websocket(server, "socket")
    assert socket.path == "/socket"
    with pytest.raises(ValueError, match="unknown websocket event 'open'"):
        socket.on("open", print)
    with pytest.raises(TypeError, match="callable"):
        socket.on("message", "nope")
    with pytest.raises(TypeError, match="connect' handler"):
        websocket(server, "other", verify_client=lambda info: True)
    with pytest.raises(TypeError, match="name"):
        websocket(server, "/")
    with pytest.raises(ValueError, match="already registered"):
        websocket(server, "socket")
    assert websocket(server, "s", prefix="/api/").path == "/api/s"


def test_stores() -> None:
    async def main() -> None:
        store = MemoryStore()
        await store.set("a:1", {"x": 1})
        await store.set("b:1", 2)
        assert await store.get("a:1") == {"x": 1} and await store.get("zz", "dflt") == "dflt"
        assert await store.keys("a:") == ["a:1"]
        await store.delete("a:1")
        await store.delete("never")
        assert await store.keys() == ["b:1"]
        with pytest.raises(TypeError, match="key must be a string"):
            await store.set(1, 2)  # type: ignore[arg-type]
        assert kv("connections") is kv("connections") and kv("connections") is not kv("other")

    run(main)


def test_connect_message_disconnect_with_stable_ids_and_metadata() -> None:
    async def main() -> None:
        log: list[tuple] = []
        store = MemoryStore()
        async with serving(None) as (server, _):
            socket = websocket(server, "socket", store=store)

            @socket.on("connect")
            async def connect(ctx: EventContext) -> None:
                await asyncio.sleep(0.01)  # a handler that really suspends
                log.append(("connect", ctx.req.connection_id, ctx.req.query))

            @socket.on("message")
            async def message(ctx: EventContext) -> None:
                meta = await store.get(ctx.req.connection_id)
                log.append(("message", ctx.req.connectionId, ctx.req.data, meta["query"]))
                await socket.send(ctx.req.connection_id, {"echo": ctx.req.json()})

            def disconnect(ctx: EventContext) -> None:
                log.append(("disconnect", ctx.req.connection_id))

            socket.on("disconnect", disconnect)

            peer = await Peer.connect(server, "/socket?user=ann&tag=a&tag=b")
            peer.send({"n": 1})
            assert await peer.recv_json() == {"echo": {"n": 1}}
            peer.send("plain")
            assert await peer.recv_json() == {"echo": "plain"}
            (cid,) = socket.connections()
            assert (await store.get(cid))["remote_address"] == "127.0.0.1"
            await peer.close()
            await until(lambda: log[-1][0] == "disconnect")
            await until(lambda: not store._data)  # metadata removed after disconnect
            query = {"user": ["ann"], "tag": ["a", "b"]}
            assert log == [
                ("connect", cid, query),
                ("message", cid, '{"n": 1}', query),
                ("message", cid, "plain", query),
                ("disconnect", cid),
            ]
            assert socket.connections() == []

    run(main)


def test_connect_can_deny_fail_or_time_out() -> None:
    async def main() -> None:
        opened: list[str] = []
        async with serving(None) as (server, _):
            socket = websocket(server, "socket")

            @socket.on("connect")
            async def connect(ctx: EventContext) -> None:
                who = ctx.req.query.get("who", [""])[0]
                if who == "eve":
                    ctx.res.success = False
                elif who == "bug":
                    raise RuntimeError("connect handler bug")

            second: list[str] = []
            socket.on("connect", lambda ctx: second.append(ctx.req.connection_id))
            socket.on("message", lambda ctx: opened.append(ctx.req.connection_id))

            assert await refused(server, "/socket?who=eve") == 403
            assert await refused(server, "/socket?who=bug") == 500
            assert second == []  # the chain stops at a refusal or a failure
            ok = await Peer.connect(server, "/socket?who=bob")
            assert len(second) == 1 and socket.connections() == second
            await ok.close()

            slow = websocket(server, "slow", connect_timeout=0.2)
            slow.on("connect", lambda ctx: asyncio.sleep(30))
            assert await refused(server, "/slow") == 503

    run(main)


def test_send_and_close_by_id_from_anywhere() -> None:
    async def main() -> None:
        ids: list[str] = []
        async with serving(None) as (server, _):
            socket = websocket(server, "push")
            socket.on("connect", lambda ctx: ids.append(ctx.req.connection_id))
            a = await Peer.connect(server, "/push")
            b = await Peer.connect(server, "/push")
            assert len(set(ids)) == 2 and sorted(socket.connections()) == sorted(ids)
            await socket.send(ids[0], "to a")
            socket.send(ids[1], b"\x00to b")  # works without await too
            assert await a.recv() == "to a" and await b.recv() == b"\x00to b"

            done = threading.Event()
            thread = threading.Thread(target=lambda: (socket.send(ids[1], ["from", "thread"]), done.set()))
            thread.start()
            thread.join(5)
            assert done.is_set() and await b.recv_json() == ["from", "thread"]

            with pytest.raises(ConnectionNotFound, match="no open connection with id 'nope'"):
                await socket.send("nope", "x")
            with pytest.raises(ConnectionNotFound):
                socket.close("nope")
            await socket.close(ids[0], 4001, "kicked")
            assert await a.wait_closed() == (4001, "kicked")
            await until(lambda: ids[0] not in socket.connections())
            with pytest.raises(ConnectionNotFound, match=ids[0]):
                await socket.send(ids[0], "late")
            await b.close()

    run(main)


def test_handler_chains_run_in_order_and_a_failure_stops_only_its_chain() -> None:
    async def main() -> None:
        log: list[str] = []
        async with serving(None) as (server, _):
            socket = websocket(server, "chain")

            def first(ctx: EventContext) -> None:
                log.append("first " + ctx.req.data)
                if ctx.req.data == "boom":
                    raise RuntimeError("handler bug")

            async def second(ctx: EventContext) -> None:
                await asyncio.sleep(0)
                log.append("second " + ctx.req.data)

            def third(ctx: EventContext) -> None:
                log.append("third " + ctx.req.data)
                socket.send(ctx.req.connection_id, "ok " + ctx.req.data)

            socket.on("message", first, second, third)
            peer = await Peer.connect(server, "/chain")
            peer.send("a")
            assert await peer.recv() == "ok a"
            peer.send("boom")
            peer.send("b")
            assert await peer.recv() == "ok b"
            assert log == ["first a", "second a", "third a", "first boom", "first b", "second b", "third b"]
            await peer.close()

    run(main)


def test_example_runs() -> None:
    out = run_example("style_connections.py")
    assert "anonymous: Unexpected server response: 403" in out
    assert out.index("connect ann") < out.index("message from ann: hi from ann") < out.index("disconnect ann")
    assert 'ann got {"from":"ann","text":"hi from ann"}' in out
