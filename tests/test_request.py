"""ws.request: the request helper, built by hand and by a real upgrade."""

from __future__ import annotations

import asyncio
import types

from ws import Request, WebSocketServer
from ws.request import RequestSocket
from ws import http

from .conftest import Recorder, run
from .test_server import raw_exchange, upgrade_request

RAW = [
    ("Host", "example.test:8080"),
    ("X-Multi", "one"),
    ("Accept", "text/plain"),
    ("x-multi", "two"),
    ("Cookie", "a=1"),
    ("cookie", "b=2"),
]


def make(**kwargs: object) -> Request:
    options: dict = dict(peername=("10.0.0.7", 50123), body=b'{"k": [1, 2]}')
    options.update(kwargs)
    return Request("get", "/room/7?x=1&x=2&empty=&sp=a%20b", RAW, **options)  # type: ignore[arg-type]


def test_properties() -> None:
    req = make()
    assert req.method == "GET"
    assert req.url == req.request_uri == req.requestUri == "/room/7?x=1&x=2&empty=&sp=a%20b"
    assert req.path == "/room/7"
    assert req.host == "example.test:8080"
    assert req.http_version == req.httpVersion == "1.1"
    assert req.complete is True
    assert req.secure is False
    assert req.remote_address == req.remoteAddress == "10.0.0.7"
    assert req.socket.remote_address == req.socket.remoteAddress == "10.0.0.7"
    assert req.socket.remote_port == req.socket.remotePort == 50123
    assert req.socket.encrypted is False


def test_headers_joined_and_raw_headers_in_wire_order() -> None:
    req = make()
    assert req.headers == {
        "host": "example.test:8080",
        "x-multi": "one, two",  # RFC 9110 5.3
        "accept": "text/plain",
        "cookie": "a=1; b=2",  # cookies are joined with '; ' (RFC 6265, as Node)
    }
    assert req.raw_headers == req.rawHeaders == RAW
    assert req.raw_headers is not RAW  # a copy: the caller's list may change


def test_header_lookup_is_case_insensitive() -> None:
    req = make()
    for getter in (req.get_header, req.getHeader):
        assert getter("X-MULTI") == "one, two"
        assert getter("accept") == "text/plain"
        assert getter("missing") is None
    for has in (req.has_header, req.hasHeader):
        assert has("HOST") and has("cookie")
        assert not has("authorization")


def test_query() -> None:
    req = make()
    assert req.query("x") == "1"
    assert req.query("sp") == "a b"
    assert req.query("empty") == ""
    assert req.query("none") is None
    assert req.query_all("x") == req.queryAll("x") == ["1", "2"]
    assert req.query_all("none") == []
    assert req.params == {"x": ["1", "2"], "empty": [""], "sp": ["a b"]}
    req.query_all("x").append("3")  # a copy
    assert req.query_all("x") == ["1", "2"]
    assert Request("GET", "/", []).query("x") is None
    assert Request("GET", "/", []).path == "/"


def test_state_is_a_fresh_namespace_per_request() -> None:
    a, b = make(), make()
    assert isinstance(a.state, types.SimpleNamespace)
    a.state.user = "alice"
    assert not hasattr(b.state, "user")


def test_socket_and_state_are_made_when_first_read_and_may_be_replaced() -> None:
    req = make(peername=("10.0.0.1", 5000))
    assert req.socket is req.socket and req.state is req.state  # made once, then kept
    assert (req.socket.remote_address, req.socket.remote_port, req.socket.encrypted) == ("10.0.0.1", 5000, False)
    assert req.remote_address == "10.0.0.1"
    mine = types.SimpleNamespace(user="bob")
    req.state = mine
    other = RequestSocket(("10.0.0.2", 1))
    req.socket = other
    assert req.state is mine and req.socket is other


def test_body_helpers() -> None:
    req = make()
    assert req.body == b'{"k": [1, 2]}'
    assert req.text() == '{"k": [1, 2]}'
    assert req.json() == {"k": [1, 2]}
    assert Request("POST", "/", []).json() is None


def test_peer_forms() -> None:
    assert make(peername="/tmp/x.sock").remote_address == "/tmp/x.sock"
    assert make(peername="").remote_address is None  # an unnamed unix peer
    assert make(peername=None).remote_address is None
    assert make(peername=("::1", 1, 0, 0)).remote_address == "::1"
    assert make(peername=None).socket.remote_port is None
    assert make(secure=True).socket.encrypted is True
    assert "GET" in repr(make())


def test_request_of_a_real_upgrade() -> None:
    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/ws")
        seen: list = []
        wss.verify_client = lambda info: seen.append(info.req) or True
        srec = Recorder(wss, "connection")
        await server.serve_async()
        try:
            extra = (("X-Multi", "one"), ("X-Multi", "two"), ("Origin", "http://o.test"))
            status, _, _ = await raw_exchange(server.port, upgrade_request("/ws?who=me&who=you", extra=extra))
            assert status == 101
            ((sock, req),) = await srec.wait("connection")
            assert req is seen[0]
            assert req.method == "GET" and req.path == "/ws" and req.url == "/ws?who=me&who=you"
            assert req.query("who") == "me" and req.query_all("who") == ["me", "you"]
            assert req.get_header("x-multi") == "one, two"
            assert [name for name, _ in req.raw_headers][:3] == ["Host", "Connection", "Upgrade"]
            assert req.host == "127.0.0.1"
            assert req.http_version == "1.1" and req.complete is True
            assert req.remote_address == "127.0.0.1" == req.socket.remote_address
            assert isinstance(req.socket.remote_port, int)
            assert req.get_header("origin") == "http://o.test"
        finally:
            wss.close()
            await asyncio.wait_for(server.close_async(), 10)

    run(main)


def test_client_headers_and_origin_reach_the_request() -> None:
    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/ws")
        srec = Recorder(wss, "connection")
        await server.serve_async()
        try:
            from ws import WebSocket

            sock = WebSocket(
                f"ws://127.0.0.1:{server.port}/ws",
                headers={"Authorization": "Bearer t0k", "X-Trace": "42"},
                origin="https://app.test",
            )
            ((peer, req),) = await srec.wait("connection")
            assert req.get_header("authorization") == "Bearer t0k"
            assert req.getHeader("X-TRACE") == "42"
            assert req.get_header("origin") == "https://app.test"
            assert req.host == f"127.0.0.1:{server.port}"
            sock.close()
        finally:
            wss.close()
            await asyncio.wait_for(server.close_async(), 10)

    run(main)
