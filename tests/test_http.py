"""Tests of ws.http with real sockets on 127.0.0.1 (and a unix socket).

Most tests run the server on the shared reactor (a plain test function, as
a plain script would); the ``asyncio`` ones run it on their own loop with
``asyncio.run`` and talk to it from a worker thread.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import h11
import pytest

from ws import http
from ws.http import status
from ws.upgrade import UpgradeHandler, UpgradeHost

# Every test runs once per request parser (h11, httptools): see tests/conftest.py.
pytestmark = pytest.mark.usefixtures("http_parser")

TIMEOUT = 3.0


# -- client helpers -------------------------------------------------------------


def connect(server: http.Server) -> socket.socket:
    if server.network == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(server.address)
        return sock
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    return sock


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A blocking HTTP/1.1 client on h11, keeping its connection alive."""

    def __init__(self, server: http.Server, sock: socket.socket | None = None) -> None:
        self.sock = sock or connect(server)
        self.conn = h11.Connection(h11.CLIENT)

    def request(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
        chunks: list[bytes] | None = None,
    ) -> Reply:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        hdrs = [("Host", "test")] + list(headers)
        if body is not None:
            hdrs.append(("Content-Length", str(len(body))))
        elif chunks is not None:
            hdrs.append(("Transfer-Encoding", "chunked"))
        out = self.conn.send(h11.Request(method=method, target=path, headers=hdrs))
        for chunk in chunks or ([body] if body else []):
            out += self.conn.send(h11.Data(data=chunk))
        out += self.conn.send(h11.EndOfMessage())
        self.sock.sendall(out)
        return self.read_response()

    def read_response(self) -> Reply:
        head: h11.Response | None = None
        body = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        assert head is not None
        raw = [(n.decode(), v.decode()) for n, v in head.headers.raw_items()]
        return Reply(head.status_code, {n.lower(): v for n, v in raw}, body, raw)

    def close(self) -> None:
        self.sock.close()


def fetch(server: http.Server, method: str, path: str, **kw: Any) -> Reply:
    client = Client(server)
    try:
        return client.request(method, path, **kw)
    finally:
        client.close()


def read_until_eof(sock: socket.socket, timeout: float = TIMEOUT) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    else:  # pragma: no cover - a failing test reports it
        raise AssertionError("connection not closed in time")
    return data


def raw_exchange(server: http.Server, data: bytes) -> bytes:
    sock = connect(server)
    try:
        sock.sendall(data)
        return read_until_eof(sock)
    finally:
        sock.close()


def half_closed_exchange(server: http.Server, data: bytes) -> bytes:
    """Send ``data``, end our side, read everything until the server closes."""
    sock = connect(server)
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_until_eof(sock)
    finally:
        sock.close()


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def is_closed(sock: socket.socket, timeout: float = TIMEOUT) -> bool:
    """True once the peer closed: EOF (or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


@pytest.fixture
def loop_errors():
    """What reached the reactor loop's exception handler: must stay empty."""
    from ws._runtime import loop as _loop

    loop = _loop.reactor.get()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)


@pytest.fixture
def make_server(loop_errors):
    """Servers on the reactor (as in a plain script), closed after the test."""
    servers: list[http.Server] = []

    def make(*args: Any, **kwargs: Any) -> http.Server:
        kwargs.setdefault("header_timeout", 2.0)
        if not args and "address" not in kwargs:
            args = ("127.0.0.1:0",)
        server = http.Server(*args, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
    assert loop_errors == []


def run_async(main: Any, timeout: float = 10.0) -> Any:
    """Run ``main()`` in a fresh loop; nothing may reach its exception handler."""
    errors: list[dict[str, Any]] = []

    async def bounded() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        return await asyncio.wait_for(main(), timeout)

    result = asyncio.run(bounded())
    assert errors == []
    return result


# -- routes and responses -----------------------------------------------------------


def test_routes_methods_and_response_helpers(make_server):
    server = make_server()

    @server.get("/text")
    def text(ctx):
        ctx.set_header("X-Test", "yes")
        ctx.text(status.OK, "hello " + (ctx.request.query("name") or "?"))

    @server.post("/json")
    def echo_json(ctx):
        ctx.json(status.CREATED, {"got": ctx.request.json(), "method": ctx.request.method})

    server.put("/bytes", lambda ctx: ctx.bytes(status.OK, b"\x00\x01", content_type="application/x-test"))
    server.delete("/item", lambda ctx: ctx.status(status.NO_CONTENT))
    server.patch("/html", lambda ctx: ctx.html(status.OK, "<p>hi</p>"))
    server.route("options", "/any", lambda ctx: ctx.status(status.OK))
    server.get("/go", lambda ctx: ctx.redirect("/text", status.SEE_OTHER))
    server.get("/users/:id/posts/:post", lambda ctx: ctx.json(200, ctx.params))
    server.get("/cookies", lambda ctx: ctx.set_header("Set-Cookie", ["a=1", "b=2"]).text(200, "ok"))
    server.serve()

    reply = fetch(server, "GET", "/text?name=bob")
    assert (reply.status, reply.body) == (200, b"hello bob")
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.headers["content-length"] == "9"
    assert reply.headers["server"] == "ws-python"
    assert reply.headers["date"].endswith("GMT")
    assert reply.headers["x-test"] == "yes"

    reply = fetch(server, "POST", "/json", body=b'{"a": [1, 2]}', headers=[("Content-Type", "application/json")])
    assert reply.status == 201
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"got": {"a": [1, 2]}, "method": "POST"}

    reply = fetch(server, "PUT", "/bytes")
    assert (reply.status, reply.body, reply.headers["content-type"]) == (200, b"\x00\x01", "application/x-test")

    reply = fetch(server, "DELETE", "/item")
    assert (reply.status, reply.body) == (204, b"")
    assert "content-length" not in reply.headers

    reply = fetch(server, "PATCH", "/html")
    assert reply.headers["content-type"] == "text/html; charset=utf-8" and reply.body == b"<p>hi</p>"

    assert fetch(server, "OPTIONS", "/any").status == 200

    reply = fetch(server, "GET", "/go")
    assert (reply.status, reply.headers["location"]) == (303, "/text")

    assert fetch(server, "GET", "/users/7/posts/a%20b").json() == {"id": "7", "post": "a b"}

    reply = fetch(server, "GET", "/cookies")
    assert [v for n, v in reply.raw_headers if n.lower() == "set-cookie"] == ["a=1", "b=2"]


def test_404_405_and_head(make_server):
    server = make_server()
    server.get("/page", lambda ctx: ctx.text(200, "a body"))
    server.post("/page", lambda ctx: ctx.text(200, "posted"))
    server.put("/only-put", lambda ctx: ctx.text(200, "put"))
    server.serve()

    reply = fetch(server, "GET", "/missing")
    assert reply.status == 404 and reply.body == b"404 Not Found\n"

    reply = fetch(server, "DELETE", "/page")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD, POST"

    assert fetch(server, "GET", "/only-put").headers["allow"] == "PUT"

    reply = fetch(server, "HEAD", "/page")
    assert (reply.status, reply.body) == (200, b"")
    assert reply.headers["content-length"] == "6"


def test_return_values_answer_for_the_handler(make_server):
    server = make_server()
    server.get("/none", lambda ctx: None)
    server.get("/str", lambda ctx: "plain")
    server.get("/dict", lambda ctx: {"k": 1})
    server.get("/bytes", lambda ctx: b"raw")
    server.get("/weird", lambda ctx: 42)
    server.serve()
    assert fetch(server, "GET", "/none").status == 204
    reply = fetch(server, "GET", "/str")
    assert (reply.status, reply.body) == (200, b"plain")
    assert fetch(server, "GET", "/dict").json() == {"k": 1}
    assert fetch(server, "GET", "/bytes").headers["content-type"] == "application/octet-stream"
    assert fetch(server, "GET", "/weird").status == 500


def test_handler_errors_give_500_and_serving_goes_on(make_server, caplog):
    from ws._runtime.log import reports

    reports.reset()  # (the run with the other parser reported the same causes: they would only be counted)
    server = make_server()

    def broken(ctx):
        raise RuntimeError("boom")

    async def broken_async(ctx):
        await asyncio.sleep(0)
        raise ValueError("async boom")

    def answers_twice(ctx):
        ctx.text(200, "first")
        ctx.text(200, "second")

    server.get("/broken", broken)
    server.get("/broken-async", broken_async)
    server.get("/twice", answers_twice)
    server.get("/ok", lambda ctx: ctx.text(200, "fine"))
    server.serve()

    client = Client(server)
    reply = client.request("GET", "/broken")
    assert (reply.status, reply.body) == (500, b"500 Internal Server Error\n")
    reply = client.request("GET", "/broken-async")
    assert reply.status == 500
    # The response already went out; the second answer only raises (logged).
    assert client.request("GET", "/twice").body == b"first"
    assert client.request("GET", "/ok").body == b"fine"
    client.close()
    assert "boom" in caplog.text and "async boom" in caplog.text


def test_request_event_can_answer_first(make_server):
    server = make_server()
    seen = []
    server.get("/x", lambda ctx: ctx.text(200, "route"))

    @server.on("request")
    def on_request(ctx):
        seen.append(ctx.request.path)
        if ctx.request.path == "/intercepted":
            ctx.text(200, "listener")

    server.serve()
    assert fetch(server, "GET", "/x").body == b"route"
    assert fetch(server, "GET", "/intercepted").body == b"listener"
    assert seen == ["/x", "/intercepted"]


# -- connection handling -------------------------------------------------------------------


def test_keep_alive_two_requests_on_one_connection(make_server):
    server = make_server()
    server.get("/peer", lambda ctx: ctx.text(200, f"{ctx.request.socket.remote_address}:{ctx.request.socket.remote_port}"))
    server.serve()
    client = Client(server)
    first = client.request("GET", "/peer")
    second = client.request("GET", "/peer")
    assert first.status == second.status == 200
    assert first.body == second.body  # same peer port: same connection
    assert "connection" not in second.headers
    client.close()


def test_pipelined_requests(make_server):
    server = make_server()
    server.get("/n/:n", lambda ctx: ctx.text(200, ctx.params["n"]))
    server.serve()
    sock = connect(server)
    sock.sendall(
        b"GET /n/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /n/2 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /n/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    data = read_until_eof(sock)
    sock.close()
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.endswith(b"\r\n\r\n3")
    assert data.index(b"\r\n\r\n1") < data.index(b"\r\n\r\n2") < data.index(b"\r\n\r\n3")


def test_partial_heads_and_bodies_survive_other_connections_reads(make_server):
    """Connections read into one shared buffer per thread (ws/_runtime/reads.py): what
    one keeps between reads must be its own copy, not a view of that buffer."""
    server = make_server()
    server.post("/echo", lambda ctx: ctx.text(200, ctx.request.body.decode()))
    server.get("/barrier", lambda ctx: ctx.text(200, "read"))
    server.serve()

    def read_by_server() -> None:
        # A request answered on a fresh connection: whatever was sent before it on the other
        # connections was readable at the same select or an earlier one, so it has been read.
        assert fetch(server, "GET", "/barrier").status == 200

    first, second = connect(server), connect(server)
    body = "é" * 50 + "end"
    request = (
        f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body.encode())}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body.encode()
    cut_head, cut_body = 20, len(request) - 40  # inside the head, then inside the body
    first.sendall(request[:cut_head])
    read_by_server()
    second.sendall(request.replace(b"\xc3\xa9", b"xx"))  # a whole request of the same size, other bytes
    second_reply = read_until_eof(second)  # read (and answered) before first's next bytes
    first.sendall(request[cut_head:cut_body])
    read_by_server()
    first.sendall(request[cut_body:])
    first_reply = read_until_eof(first)
    first.close()
    second.close()
    assert status_of(first_reply) == 200 and first_reply.endswith(body.encode())
    assert status_of(second_reply) == 200 and second_reply.endswith(b"xx" * 50 + b"end")


def test_pipelined_garbage_and_a_refused_upgrade(make_server):
    server = make_server()
    server.get("/", lambda ctx: ctx.text(200, "ok"))
    server.serve()
    # A good request, then garbage in the same packet: answered, then 400 (not an idle wait).
    data = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ") and data.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 400 " in data
    # An upgrade nobody takes (404) keeps the connection: the request behind it is answered.
    upgrade = b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    data = raw_exchange(server, upgrade + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 404 ") and data.endswith(b"ok")


def test_an_upgrade_pipelined_behind_a_request_gets_what_follows_it(make_server):
    server, fake, sock = upgrade_server(make_server, lambda server: server.get("/", lambda ctx: ctx.text(200, "first")))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\nFRAMES"
    )
    data = recv_until(sock, b"FRAMES")
    sock.close()
    assert data.startswith(b"HTTP/1.1 200 ") and b"first" in data and b"HTTP/1.1 101 " in data
    assert [head for _request, head in fake.calls] == [b"FRAMES"]


def test_http10_closes_after_response(make_server):
    server = make_server()
    server.get("/", lambda ctx: ctx.text(200, "old"))
    server.serve()
    data = raw_exchange(server, b"GET / HTTP/1.0\r\n\r\n")
    assert status_of(data) == 200 and data.endswith(b"old")


def test_chunked_body_and_413(make_server):
    server = make_server(max_body_size=1000)
    server.post("/size", lambda ctx: ctx.text(200, str(len(ctx.request.body))))
    server.serve()

    reply = fetch(server, "POST", "/size", chunks=[b"a" * 300, b"b" * 300, b"c" * 10])
    assert (reply.status, reply.body) == (200, b"610")

    reply = fetch(server, "POST", "/size", chunks=[b"a" * 600, b"b" * 600])
    assert reply.status == 413
    assert reply.headers["connection"] == "close"

    # Content-Length over the limit: refused from the head, body never read.
    data = raw_exchange(server, b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    assert status_of(data) == 413

    assert fetch(server, "POST", "/size", body=b"x" * 1000).body == b"1000"


def test_expect_100_continue(make_server):
    server = make_server()
    server.post("/up", lambda ctx: ctx.text(200, ctx.request.text()))
    server.serve()
    sock = connect(server)
    sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
    sock.sendall(b"hello")
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/up", headers=[("Host", "x"), ("Content-Length", "5")]))
    sock.settimeout(TIMEOUT)
    data = b""
    while not data.endswith(b"hello"):
        data += sock.recv(1024)
    assert status_of(data) == 200
    sock.close()


def test_garbage_gives_400(make_server):
    server = make_server()
    server.serve()
    data = raw_exchange(server, b"THIS IS NOT HTTP\r\n\r\n")
    assert status_of(data) == 400
    assert b"Connection: close" in data
    data = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    assert status_of(data) == 400
    data = raw_exchange(server, b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(data) == 400


def test_431_for_large_or_numerous_headers(make_server):
    server = make_server(max_header_size=2048, max_header_count=20)
    server.get("/", lambda ctx: ctx.text(200, "ok"))
    server.serve()

    # In one piece (h11 alone would accept it) ...
    data = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    assert status_of(data) == 431

    # ... and trickled in without an end (h11's incomplete-event limit).
    sock = connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    for _ in range(5):
        try:
            sock.sendall(b"a" * 1000)
        except OSError:
            break
    data = read_until_eof(sock)
    sock.close()
    assert status_of(data) == 431

    many = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
    data = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert status_of(data) == 431

    assert fetch(server, "GET", "/").status == 200


def test_a_bad_header_in_ctx_headers_is_a_500_not_a_second_header(make_server, caplog):
    """``ctx.headers`` edited by hand is checked as ``set_header`` checks: nothing of it reaches the wire."""
    from ws._runtime.log import reports

    server = make_server()
    bad = {
        "/value": ("X-Echo", "a\r\nSet-Cookie: session=evil"),
        "/nul": ("X-Echo", "a\x00b"),
        "/name": ("X-Echo\r\nSet-Cookie", "session=evil"),
        "/space": ("X Echo", "a"),
        "/wide": ("X-Echo", "\u20ac"),
    }

    def handler(ctx):
        name, value = bad[ctx.request.path]
        ctx.headers[name] = value
        ctx.text(200, "ok")

    for path in bad:
        server.get(path, handler)
    server.get("/int", lambda ctx: (ctx.headers.__setitem__("X-Count", 3), ctx.text(200, "ok")))
    server.serve()
    reports.reset()  # (the run with the other parser reported the same cause: it would only be counted)
    with caplog.at_level(logging.ERROR, logger="ws.http"):
        for path in bad:
            data = raw_exchange(server, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(data) == 500, data
            assert b"session=evil" not in data and b"X-Echo" not in data and b"X Echo" not in data
    assert any("bad response header" in r.getMessage() for r in caplog.records)  # (repeats: summarised)
    reply = fetch(server, "GET", "/int")
    assert reply.status == 200 and reply.headers["x-count"] == "3"
    for name, value in bad.values():
        with pytest.raises(ValueError):
            http.Context(None).set_header(name, value)  # type: ignore[arg-type]


def test_pipelined_requests_then_part_of_one_are_no_oversized_head(make_server):
    """Only the unfinished head counts toward max_header_size, not the whole read it began in."""
    server = make_server()
    server.get("/", lambda ctx: ctx.text(200, "ok"))
    server.post("/", lambda ctx: ctx.text(200, str(len(ctx.request.body))))
    server.serve()
    one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    n = 1000  # 27 KB: more than max_header_size (16 KiB)
    for first in (one * n, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40000\r\n\r\n" + b"x" * 40000):
        sock = connect(server)
        sock.sendall(first + b"GET / HTTP/1.1\r\nHo")
        time.sleep(0.2)
        sock.sendall(b"st: x\r\nConnection: close\r\n\r\n")
        data = read_until_eof(sock)
        sock.close()
        assert b" 431 " not in data
        assert data.count(b"HTTP/1.1 200 OK") == first.count(b"HTTP/1.1\r\n") + 1


def test_an_endless_trailer_section_is_refused(make_server):
    server = make_server()
    server.post("/", lambda ctx: ctx.text(200, "ok"))
    server.serve()
    sock = connect(server)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-Trailer: ")
    try:
        for _ in range(16):  # 1 MiB
            sock.sendall(b"a" * 65536)
    except OSError:
        pass  # refused and closed
    data = read_until_eof(sock)
    sock.close()
    assert status_of(data) == 431


def test_nothing_after_a_connect_is_read_as_http(make_server):
    """The parsers disagree on what follows a CONNECT (a body, or the tunnel): the connection closes after it."""
    server = make_server()
    seen: list[str] = []

    def admin(ctx):
        seen.append(ctx.request.path)
        ctx.text(200, "admin")

    server.get("/admin", admin)
    server.serve()
    smuggled = b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
    for length in (b"Content-Length: %d\r\n" % len(smuggled), b""):
        sock = connect(server)
        sock.sendall(b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n" + length + b"\r\n" + smuggled)
        data = read_until_eof(sock)
        sock.close()
        assert data.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in data, data
    assert seen == []


def test_transfer_encoding_with_content_length_is_refused(make_server):
    server = make_server()
    server.post("/", lambda ctx: ctx.text(200, "ok"))
    server.get("/x", lambda ctx: ctx.text(200, "x"))
    server.serve()
    for framing in (b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n"):
        data = raw_exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(data) == 400
        assert data.count(b"HTTP/1.1 ") == 1


def test_header_timeout_closes_slow_clients(make_server):
    server = make_server(header_timeout=0.3)
    server.get("/", lambda ctx: ctx.text(200, "ok"))
    server.serve()
    silent = connect(server)
    slow = connect(server)
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    started = time.monotonic()
    assert is_closed(silent)
    data = read_until_eof(slow)
    assert status_of(data) == 408
    assert time.monotonic() - started < 2.0
    silent.close()
    slow.close()


def test_a_stalled_body_times_out_but_a_slow_one_is_served(make_server):
    # The body timer is an idle timer: armed once the head is in, re-armed on every read.
    server = make_server(header_timeout=0.4)
    server.post("/", lambda ctx: ctx.text(200, f"got {len(ctx.request.body)}"))
    server.serve()
    stalled = connect(server)
    stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    started = time.monotonic()
    data = read_until_eof(stalled)  # bounded by its socket timeout: the 408 has to come
    stalled.close()
    assert status_of(data) == 408
    assert time.monotonic() - started > 0.3  # not before the timer (armed after our send) ran out

    # Pauses a fifth of the timeout each (a loaded machine may stretch them), their sum above it.
    patient = make_server(header_timeout=1.0)
    patient.post("/", lambda ctx: ctx.text(200, f"got {len(ctx.request.body)}"))
    patient.serve()
    slow = connect(patient)
    slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nConnection: close\r\n\r\n")
    started = time.monotonic()
    for chunk in b"abcdefg":
        time.sleep(0.2)
        slow.sendall(bytes([chunk]))
    assert time.monotonic() - started > 1.0
    data = read_until_eof(slow)
    slow.close()
    assert status_of(data) == 200
    assert data.endswith(b"got 7")


def test_keep_alive_timeout_closes_idle_connections(make_server):
    server = make_server(keep_alive_timeout=0.3)
    server.get("/", lambda ctx: ctx.text(200, "ok"))
    server.serve()
    client = Client(server)
    assert client.request("GET", "/").status == 200
    started = time.monotonic()
    assert is_closed(client.sock)
    assert 0.2 < time.monotonic() - started < 2.0
    client.close()


def test_keep_alive_disabled(make_server):
    server = make_server(keep_alive_timeout=0)
    server.get("/", lambda ctx: ctx.text(200, "ok"))
    server.serve()
    client = Client(server)
    reply = client.request("GET", "/")
    assert reply.headers["connection"] == "close"
    assert is_closed(client.sock)
    client.close()


# -- binding -----------------------------------------------------------------------


def test_port_zero_address_properties_and_callback(make_server):
    server = make_server("127.0.0.1:0")
    assert server.address is None and server.port is None
    got: list[Any] = []
    heard: list[Any] = []
    server.on("listening", lambda address: heard.append(address))
    address = server.serve(lambda address: got.append(address))  # the bound address, wherever it is called
    assert server.listening
    assert server.port and server.port > 0
    assert server.host == "127.0.0.1"
    assert address == server.address == f"127.0.0.1:{server.port}"
    assert got == [address] and heard == [address]  # both ran before serve() returned
    assert server.url == f"http://{address}"
    with pytest.raises(RuntimeError):
        server.serve()


def test_dict_form_constructor(make_server):
    server = make_server({"network": "tcp", "address": "127.0.0.1:0", "max_body_size": 10})
    assert server.max_body_size == 10
    server.post("/", lambda ctx: ctx.text(200, "ok"))
    server.serve()
    assert fetch(server, "POST", "/", body=b"x" * 11).status == 413
    with pytest.raises(TypeError):
        http.Server({"address": "127.0.0.1:0", "bogus": 1})
    with pytest.raises(ValueError):
        http.Server("no-port-here")


def test_serve_again_after_close(make_server):
    server = make_server()
    server.get("/", lambda ctx: ctx.text(200, "again"))
    server.serve()
    server.close()
    assert not server.listening and server.address is None
    server.serve()
    assert fetch(server, "GET", "/").body == b"again"


def test_port_in_use_raises_oserror_naming_the_address(make_server):
    first = make_server()
    first.serve()
    second = make_server(first.address)
    with pytest.raises(OSError) as info:
        second.serve()
    assert first.address in str(info.value)
    assert not second.listening
    # The failed server can still bind elsewhere.
    second._target = ("127.0.0.1", 0)
    second.serve()
    assert second.listening


def test_unix_socket(make_server, tmp_path):
    path = str(tmp_path / "http.sock")
    server = make_server(path, network="unix")
    server.get("/", lambda ctx: ctx.text(200, f"peer={ctx.request.remote_address}"))
    server.serve()
    assert server.address == path and server.port is None
    assert fetch(server, "GET", "/").body == b"peer=None"
    # A second server on the live socket is refused ...
    with pytest.raises(OSError) as info:
        make_server(path, network="unix").serve()
    assert path in str(info.value)
    # (Let the loop accept the refused server's probe connection first: on
    # Python 3.11 asyncio leaks a socket accepted while its server closes.)
    assert fetch(server, "GET", "/").status == 200
    server.close()
    # ... and the socket file is removed on close.
    assert not os.path.exists(path)


def test_close_closes_idle_connections_and_finishes_busy_ones(make_server):
    server = make_server(keep_alive_timeout=30)
    server.get("/", lambda ctx: ctx.text(200, "ok"))

    running = threading.Event()

    async def slow(ctx):
        running.set()
        await asyncio.sleep(0.3)  # busy on purpose: close() must let it finish
        ctx.text(200, "slow")

    server.get("/slow", slow)
    closed = threading.Event()
    server.on("close", lambda: closed.set())
    server.serve()

    idle = Client(server)
    assert idle.request("GET", "/").status == 200
    busy = Client(server)
    result: list[Reply] = []
    thread = threading.Thread(target=lambda: result.append(busy.request("GET", "/slow")))
    thread.start()
    assert running.wait(TIMEOUT)  # the slow handler is running

    port = server.port
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 2.0
    assert closed.is_set() and not server.listening
    assert is_closed(idle.sock, timeout=0.5)
    thread.join(TIMEOUT)
    assert result and result[0].body == b"slow"
    assert result[0].headers["connection"] == "close"
    assert is_closed(busy.sock)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    idle.close()
    busy.close()


def test_context_manager_and_close_callback(tmp_path):
    calls: list[str] = []
    with http.Server("127.0.0.1:0") as server:
        server.get("/", lambda ctx: ctx.text(200, "ok"))
        server.serve()
        port = server.port
        assert fetch(server, "GET", "/").status == 200
        server.on("close", lambda: calls.append("event"))
    assert calls == ["event"] and not server.listening
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    # Closing again (or before serving) is harmless and still calls back.
    done = threading.Event()
    server.close(lambda: done.set())
    assert done.wait(TIMEOUT)


def test_ref_unref_keep_counts_balanced(make_server):
    from ws._runtime import loop as _loop

    server = make_server()
    before = _loop.reactor.refs
    server.serve()
    assert _loop.reactor.refs == before + 1
    server.unref()
    assert _loop.reactor.refs == before
    server.ref()
    assert _loop.reactor.refs == before + 1
    server.close()
    assert _loop.reactor.refs == before


def test_shutdown_hook_closes_the_server(make_server):
    from ws._runtime import loop as _loop

    server = make_server()
    server.serve()
    closed = threading.Event()
    server.on("close", lambda: closed.set())
    assert server._shutdown_hook in _loop.reactor._shutdown_hooks
    _loop.call(_loop.reactor.loop, _loop.reactor._run_shutdown_hooks)
    assert closed.wait(TIMEOUT)
    assert server._shutdown_hook not in _loop.reactor._shutdown_hooks


# -- static files ------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "docs").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "app.js").write_text("console.log(1)")
    (root / "data.bin").write_bytes(bytes(range(256)) * 1024)  # 256 KiB: streamed
    (root / "docs" / "index.html").write_text("<h1>docs</h1>")
    (root / "docs" / "a b.txt").write_text("spaced")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    os.symlink(tmp_path, root / "escape-dir")
    os.symlink(root / "app.js", root / "inside.js")
    return root


def test_static_files(make_server, site):
    server = make_server()
    server.static("/static", site)
    server.serve()

    reply = fetch(server, "GET", "/static/app.js")
    assert (reply.status, reply.body) == (200, b"console.log(1)")
    assert reply.headers["content-type"].startswith(("text/javascript", "application/javascript"))

    big = fetch(server, "GET", "/static/data.bin")
    assert big.status == 200 and big.body == (site / "data.bin").read_bytes()
    assert big.headers["content-length"] == str(256 * 1024)

    assert fetch(server, "GET", "/static/").body == b"<h1>home</h1>"
    assert fetch(server, "GET", "/static").status == 301
    reply = fetch(server, "GET", "/static/docs")
    assert (reply.status, reply.headers["location"]) == (301, "/static/docs/")
    assert fetch(server, "GET", "/static/docs/").body == b"<h1>docs</h1>"
    assert fetch(server, "GET", "/static/docs/a%20b.txt").body == b"spaced"
    assert fetch(server, "GET", "/static/inside.js").body == b"console.log(1)"

    head = fetch(server, "HEAD", "/static/data.bin")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", str(256 * 1024))

    assert fetch(server, "GET", "/static/missing.txt").status == 404
    assert fetch(server, "POST", "/static/app.js").status == 405


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E%2Fsecret.txt",
        "/static/..%2fsecret.txt",
        "/static/docs/../../secret.txt",
        "/static/escape.txt",
        "/static/escape-dir/secret.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
    ],
)
def test_static_traversal_is_refused(make_server, site, target):
    server = make_server()
    server.static("/static", site)
    server.serve()
    reply = fetch(server, "GET", target)
    assert reply.status in (400, 404)
    assert b"SECRET" not in reply.body and b"root:" not in reply.body


@pytest.mark.parametrize("target", ["/static/a%00b", "/static/%ff%fe", "/static/a%5c..%5csecret.txt"])
def test_static_malformed_paths_give_400(make_server, site, target):
    server = make_server()
    server.static("/static", site)
    server.serve()
    assert fetch(server, "GET", target).status == 400


# -- WebSocket upgrade hand-off -----------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class FakeUpgrade:
    """Stands in for the WebSocket layer: records the call, then echoes."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, bytes]] = []

    def handle_upgrade(self, request, transport, head):
        self.calls.append((request, head))
        transport.set_protocol(EchoProtocol(transport))
        transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n" + head)


def upgrade_server(make_server: Any, setup: Any = None) -> tuple[http.Server, FakeUpgrade, socket.socket]:
    """A serving server with a ``FakeUpgrade`` on ``/chat`` (``setup(server)`` adds more), and a client socket."""
    server = make_server()
    fake = FakeUpgrade()
    server.add_upgrade_handler("/chat", fake)
    if setup is not None:
        setup(server)
    server.serve()
    return server, fake, connect(server)


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while marker not in data:
        assert time.monotonic() < deadline, data
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_upgrade_hand_off(make_server):
    server = make_server()
    fake = FakeUpgrade()
    server.add_upgrade_handler("/chat", fake)
    with pytest.raises(ValueError):
        server.add_upgrade_handler("/chat", FakeUpgrade())
    server.serve()

    sock = connect(server)
    sock.sendall(
        b"GET /chat?room=1 HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nEXTRA"
    )
    data = recv_until(sock, b"EXTRA")  # from the head or echoed: either way, nothing lost
    assert data.startswith(b"HTTP/1.1 101 ")
    request, head = fake.calls[0]
    assert request.path == "/chat" and request.query("room") == "1"
    assert request.headers["upgrade"] == "test"
    assert request.remote_address == "127.0.0.1" and request.secure is False
    assert request.http_version == "1.1"
    assert head in (b"EXTRA", b"")

    # The socket now belongs to the handler: closing the HTTP server
    # (idle timers included) leaves it alone.
    assert len(server._connections) == 0
    server.close()
    sock.sendall(b"still here")
    assert recv_until(sock, b"still here")
    sock.close()


def test_upgrade_without_connection_upgrade_is_still_handed_over(make_server):
    server, fake, sock = upgrade_server(make_server)
    sock.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
    assert recv_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
    assert fake.calls[0][1] == b""
    sock.close()


def test_upgrade_errors_426_and_404(make_server):
    server = make_server()
    fake = FakeUpgrade()
    server.add_upgrade_handler("/chat", fake)
    server.get("/page", lambda ctx: ctx.text(200, "page"))
    server.serve()

    reply = fetch(server, "GET", "/chat")
    assert reply.status == 426
    assert reply.headers["upgrade"] == "websocket"
    assert reply.body

    client = Client(server)
    reply = client.request("GET", "/nowhere", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")])
    assert reply.status == 404
    # The declined upgrade leaves a usable HTTP connection.
    assert client.request("GET", "/page").body == b"page"
    client.close()
    # An Upgrade the server does not speak on a normal route is ignored.
    assert fetch(server, "GET", "/page", headers=[("Upgrade", "h2c"), ("Connection", "Upgrade")]).status == 200

    server.remove_upgrade_handler("/chat", fake)
    assert fetch(server, "GET", "/chat").status == 404
    assert not fake.calls


def test_http_server_is_an_upgrade_host(make_server):
    server = make_server()
    assert isinstance(server, UpgradeHost)
    assert server.loop is server._loop and server.address is None
    fake = FakeUpgrade()
    assert isinstance(fake, UpgradeHandler)
    server.add_upgrade_handler("/news", fake)
    assert server.upgrade_handler_for("/news") is fake and server.upgrade_handler_for("/other") is None
    with pytest.raises(ValueError, match="must start with '/'"):
        server.add_upgrade_handler("news", fake)


def test_a_catch_all_upgrade_handler_declines_paths_it_does_not_handle(make_server):
    server = make_server()

    class Only(FakeUpgrade):
        def handles_path(self, path):
            return path.startswith("/rooms/")

    catch_all = Only()
    server.add_upgrade_handler(None, catch_all)
    assert server.upgrade_handler_for("/rooms/1") is catch_all
    assert server.upgrade_handler_for("/elsewhere") is None
    plain = FakeUpgrade()  # not a PathFilter: takes every path
    server.remove_upgrade_handler(None, catch_all)
    server.add_upgrade_handler(None, plain)
    assert server.upgrade_handler_for("/elsewhere") is plain


@pytest.mark.parametrize(
    "name, replacement",
    [
        ("ws", "WebSocketServer(server=server, path=path)"),
        ("websockets", "from ws.styles.endpoints import websockets"),
        ("load_websockets", "from ws.styles.handlers import load_websockets"),
        ("route_ws", "from ws.styles.routes import route_ws"),
        ("websocket", "from ws.styles.connections import websocket"),
    ],
)
def test_the_websocket_factories_moved_out_and_say_where(make_server, name, replacement):
    server = make_server()
    with pytest.raises(AttributeError, match=re.escape(replacement)):
        getattr(server, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        server.nope  # noqa: B018


def test_import_ws_http_loads_no_websocket_layer():
    """``ws.http`` sits below ``ws.server`` and the styles: importing it loads neither."""
    code = (
        "import sys, ws.http\n"
        "above = sorted(m for m in sys.modules if m == 'ws.server' or m.startswith('ws.styles'))\n"
        "assert not above, above\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- asyncio mode -------------------------------------------------------------------


def test_inside_asyncio_serve_async_and_close_async():
    async def main() -> None:
        server = http.Server("127.0.0.1:0")

        @server.get("/sleepy")
        async def sleepy(ctx):
            await asyncio.sleep(0.01)  # an async handler that really suspends
            ctx.json(200, {"async": True})

        server.get("/sync", lambda ctx: ctx.text(200, "sync"))
        got: list[str] = []
        address = await server.serve_async(got.append)
        assert address == server.address and got == [address]
        assert server._loop is asyncio.get_running_loop()

        reply = await asyncio.to_thread(fetch, server, "GET", "/sleepy")
        assert reply.json() == {"async": True}

        # An asyncio stream client, keep-alive included.
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /sync HTTP/1.1\r\nHost: x\r\n\r\nGET /sync HTTP/1.1\r\nHost: x\r\n\r\n")
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/sync", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        bodies = []
        while len(bodies) < 2:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Data):
                bodies.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                conn.start_next_cycle()
                conn.send(h11.Request(method="GET", target="/sync", headers=[("Host", "x")]))
                conn.send(h11.EndOfMessage())
        assert bodies == [b"sync", b"sync"]

        await server.close_async()
        assert not server.listening
        assert await reader.read() == b""  # the idle keep-alive connection was closed
        writer.close()

    run_async(main)


def test_inside_asyncio_async_with_and_errors():
    async def main() -> None:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = "127.0.0.1:%d" % taken.getsockname()[1]
        try:
            async with http.Server(address) as server:
                with pytest.raises(OSError) as info:
                    server.serve()  # raises synchronously, even in asyncio
                assert address in str(info.value)
        finally:
            taken.close()

        async with http.Server("127.0.0.1:0") as server:
            server.get("/", lambda ctx: ctx.text(200, "ok"))
            assert server.serve() == server.address  # inside a loop too: bound at once, listening starts on the loop
            assert server.port  # bound, so the port is known at once
            assert (await asyncio.to_thread(fetch, server, "GET", "/")).body == b"ok"
            assert server.listening
        assert not server.listening
        await server.close_async()  # closing twice is fine

    run_async(main)


# -- TLS --------------------------------------------------------------------------------


@pytest.fixture
def tls_context(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_https(make_server, tls_context):
    server = make_server(ssl=tls_context)
    server.get("/", lambda ctx: ctx.text(200, "secure" if ctx.request.secure else "plain"))
    server.serve()
    assert server.secure and server.url.startswith("https://")
    client_ctx = ssl.create_default_context()
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    sock = client_ctx.wrap_socket(raw, server_hostname="localhost")
    client = Client(server, sock)
    assert client.request("GET", "/").body == b"secure"
    assert client.request("GET", "/").body == b"secure"  # keep-alive over TLS
    client.close()


def test_fuzzed_requests_never_break_the_server(make_server):
    """Mangled requests get an answer or a close, and serving goes on."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    server = make_server(max_header_size=4096, max_body_size=256, header_timeout=0.5)
    server.post("/echo", lambda ctx: ctx.bytes(200, ctx.request.body))
    server.serve()
    valid = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(valid)), st.integers(0, 10), st.binary(max_size=40))
    def check(cut: int, drop: int, junk: bytes) -> None:
        answer = half_closed_exchange(server, valid[:cut] + junk + valid[cut + drop :])
        assert answer == b"" or answer.startswith(b"HTTP/1.1 ")

    check()
    assert fetch(server, "POST", "/echo", body=b"alive").body == b"alive"


def test_fuzzed_upgrade_requests_lean_path_and_full_parser_agree(make_server, monkeypatch):
    """The lean path (ws.http.lean) and the full parser give the same answer and build the same request."""
    from hypothesis import HealthCheck, given, settings

    from ws.http import connection as _connection

    from .unit.test_http_lean import upgrade_requests

    server = make_server(max_header_size=4096, max_header_count=12)
    fake = FakeUpgrade()
    server.add_upgrade_handler("/chat", fake)
    server.get("/chat", lambda ctx: ctx.text(200, "a route"))
    server.serve()

    def outcome(data: bytes, lean: bool) -> tuple[bytes, Any]:
        monkeypatch.setattr(_connection, "LEAN_UPGRADE", lean)
        fake.calls.clear()
        answer = re.sub(rb"\r\nDate: [^\r]*", b"", half_closed_exchange(server, data))
        built = [
            (r.method, r.url, r.raw_headers, r.http_version, r.body, r.secure, r.remote_address, head)
            for r, head in fake.calls
        ]
        return answer, built

    taken = []
    leans: list[bool] = []
    lean_parse = _connection._lean_upgrade_head

    def counted(*args: Any) -> Any:
        result = lean_parse(*args)
        leans.append(result is not None)
        return result

    monkeypatch.setattr(_connection, "_lean_upgrade_head", counted)

    @settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(upgrade_requests())
    def check(data: bytes) -> None:
        full = outcome(data, lean=False)
        assert outcome(data, lean=True) == full
        taken.append(bool(full[1]))

    check()
    assert any(taken) and not all(taken) and any(leans)  # (both kinds were tried, the lean path too)


def test_status_module():
    assert status.OK == 200 and status.NOT_FOUND == 404
    assert status.REQUEST_HEADER_FIELDS_TOO_LARGE == 431 and status.UPGRADE_REQUIRED == 426
    assert status.CONTENT_TOO_LARGE == status.REQUEST_ENTITY_TOO_LARGE == 413
    assert status.reason(404) == "Not Found" and status.reason(799) == ""
    assert http.__all__ == ["Server", "Context", "status", "create_server"]  # createServer: its alias, not in __all__


def test_listening_listener_attached_after_serve_still_runs_once(make_server):
    server = make_server()
    server.serve()  # a plain thread: returns once listening
    address = server.address
    got: list[Any] = []
    done = threading.Event()
    server.on("listening", lambda addr: (got.append(addr), done.set()))
    assert done.wait(5), "'listening' was lost"
    assert got == [address]


def test_serve_returns_the_bound_address_in_a_thread_and_inside_asyncio():
    """One return type: ``serve()`` gives the address at once, as the bind is synchronous."""
    server = http.Server("127.0.0.1:0")
    address = server.serve()
    try:
        assert address == server.address and address.endswith(f":{server.port}")
    finally:
        server.close()

    async def main() -> None:
        inside = http.Server("127.0.0.1:0")
        got = inside.serve()
        assert got == inside.address and inside.port
        await inside.close_async()

    asyncio.run(main())


def test_the_moved_websocket_factories_say_what_to_write_without_a_getattr_hook():
    server = http.Server()
    with pytest.raises(AttributeError, match=r"http\.Server\.route_ws\(\) is gone .*write: route_ws\(server, path"):
        server.route_ws  # noqa: B018
    assert not hasattr(server, "websocket") and not hasattr(http.Server, "ws")
    with pytest.raises(AttributeError, match="'Server' object has no attribute 'nope'"):
        server.nope  # noqa: B018
    # No __getattr__ on the class: with one, CPython reads every attribute of a server (its
    # connections ask it several per request) through a slower hook.
    assert not hasattr(http.Server, "__getattr__")
