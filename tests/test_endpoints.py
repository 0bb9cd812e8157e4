"""ws.styles.endpoints: declarative endpoints (``websockets(server, {...})``) over real connections."""

from __future__ import annotations

import asyncio

import pytest

from ws import http
from ws.styles.messages import decode, encode
from ws.styles.endpoints import Connection
from ws.styles.endpoints import websockets

from .conftest import run, serving, until
from .styles_helpers import Peer, run_example


def test_json_conventions() -> None:
    assert decode('{"a": [1, 2]}') == {"a": [1, 2]}
    assert decode("42") == 42
    assert decode("hello") == "hello"
    assert decode(b"\x00{}") == b"\x00{}"
    assert encode({"a": 1}) == '{"a":1}'
    assert encode([1, "é"]) == '[1,"é"]'
    assert encode("raw") == "raw" and encode(b"raw") == b"raw" and encode(bytearray(b"x")) == b"x"
    assert encode(None) == "null"
    with pytest.raises(TypeError, match="cannot send object"):
        encode(object())


def test_bad_definitions_are_type_errors_and_register_nothing() -> None:
    server = http.Server("127.0.0.1:0")
    with pytest.raises(TypeError, match="unknown key 'on_msg'"):
        websockets(server, {"ok": {}, "bad": {"on_msg": print}})
    with pytest.raises(TypeError, match="on_open must be callable"):
        websockets(server, {"bad": {"on_open": "nope"}})
    with pytest.raises(TypeError, match="must map handler names"):
        websockets(server, {"bad": print})
    with pytest.raises(TypeError, match="endpoint name"):
        websockets(server, {"": {}})
    with pytest.raises(TypeError, match="mapping of name"):
        websockets(server, [("a", {})])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefix"):
        websockets(server, {"a": {}}, prefix="api")
    assert server._upgrades == {}  # nothing half-registered


def test_open_message_close_with_json_and_query() -> None:
    async def main() -> None:
        events: list[tuple] = []
        connections: list[Connection] = []

        def on_open(connection: Connection) -> None:
            connections.append(connection)
            events.append(("open", connection.query))
            connection.send({"hello": connection.id})

        def on_message(message: object, connection: Connection) -> None:
            events.append(("message", message))
            connection.send(["echo", message] if not isinstance(message, bytes) else message)

        async def on_close(code: int, reason: str, connection: Connection) -> None:
            await asyncio.sleep(0)
            events.append(("close", code, reason, connection.id))

        async with serving(None) as (server, _):
            servers = websockets(server, 
                {"example_endpoint": {"on_open": on_open, "on_message": on_message, "on_close": on_close}},
                prefix="/api/_websockets",
            )
            assert list(servers) == ["example_endpoint"]
            assert servers["example_endpoint"].path == "/api/_websockets/example_endpoint"
            peer = await Peer.connect(server, "/api/_websockets/example_endpoint?user=ann&x=1&x=2")
            hello = await peer.recv_json()
            peer.send({"n": 1})
            assert await peer.recv_json() == ["echo", {"n": 1}]
            peer.send("not json")
            assert await peer.recv_json() == ["echo", "not json"]
            peer.send(b"\x01\x02")
            assert await peer.recv() == b"\x01\x02"
            peer.socket.close(4001, "bye")
            await peer.wait_closed()
            await until(lambda: any(e[0] == "close" for e in events))
            conn = connections[0]
            assert hello == {"hello": conn.id} and len(conn.id) == 32
            assert conn.request.path == "/api/_websockets/example_endpoint"
            assert events == [
                ("open", {"user": "ann", "x": "1"}),
                ("message", {"n": 1}),
                ("message", "not json"),
                ("message", b"\x01\x02"),
                ("close", 4001, "bye", conn.id),
            ]

    run(main)


def test_missing_handlers_failing_handlers_and_server_close() -> None:
    async def main() -> None:
        opened: list[Connection] = []

        calls: list[object] = []

        def broken(message: object, connection: Connection) -> None:
            calls.append(message)
            raise RuntimeError("handler bug")

        async with serving(None) as (server, _):
            websockets(server, {"quiet": {}, "broken": {"on_open": opened.append, "on_message": broken}})
            quiet = await Peer.connect(server, "/api/_websockets/quiet")
            quiet.send("ignored")
            broken_peer = await Peer.connect(server, "/api/_websockets/broken")
            broken_peer.send("boom")
            broken_peer.send("again")
            await until(lambda: len(calls) == 2, what="the broken handler did not see both messages")
            # A raising handler is logged; the connection and the server go on.
            assert broken_peer.socket.ready_state == 1
            opened[0].close(4000, "done")
            assert await broken_peer.wait_closed() == (4000, "done")
            assert (await quiet.close())[0] == 1000
            unknown = Peer(f"ws://127.0.0.1:{server.port}/api/_websockets/nope")
            await unknown.wait_closed()
            assert unknown.errors and getattr(unknown.errors[0], "status", None) == 404

    run(main)


def test_two_endpoints_and_custom_prefix() -> None:
    async def main() -> None:
        async with serving(None) as (server, _):
            websockets(server, 
                {
                    "a": {"on_message": lambda m, c: c.send({"from": "a", "got": m})},
                    "b": {"on_message": lambda m, c: c.send({"from": "b", "got": m})},
                },
                prefix="/ws/",
            )
            a = await Peer.connect(server, "/ws/a")
            b = await Peer.connect(server, "/ws/b")
            a.send([1])
            b.send([2])
            assert await a.recv_json() == {"from": "a", "got": [1]}
            assert await b.recv_json() == {"from": "b", "got": [2]}
            await a.close()
            await b.close()

    run(main)


def test_example_runs() -> None:
    out = run_example("style_endpoints.py")
    assert "server: open demo" in out
    assert "server: message {'hello': 'world'}" in out
    assert 'client: got {"type":"echo","message":{"hello":"world"}}' in out
    assert 'client: got {"type":"echo","message":"plain text"}' in out
    assert "server: close 1000 done" in out
