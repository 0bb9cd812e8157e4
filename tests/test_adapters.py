"""ws.http.stdlib: WebSocketServer on a real http.server / wsgiref server run by serve_forever()."""

from __future__ import annotations

import asyncio
import base64
import http.client
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.frames import Frame, Opcode

from ws import WebSocket, WebSocketServer
from ws.upgrade import UpgradeHost

from .conftest import ROOT, Recorder, run


class Hello(BaseHTTPRequestHandler):
    """The user's own handler: one GET route, everything else 404."""

    def do_GET(self) -> None:
        if self.path.startswith("/hello"):
            body = f"hello from {type(self).__name__} upgrade={self.headers.get('Upgrade')}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_in_thread(httpd: Any) -> threading.Thread:
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(params=[ThreadingHTTPServer, HTTPServer])
def httpd(request: Any) -> Iterator[Any]:
    server = request.param(("127.0.0.1", 0), Hello)
    yield server
    server.shutdown()
    server.server_close()


def echo_server(httpd: Any, **options: Any) -> WebSocketServer:
    wss = WebSocketServer(server=httpd, path="/ws", **options)
    wss.on("connection", lambda sock, req: sock.on("message", lambda evt: sock.send(evt.data)))
    return wss


def test_routes_and_websocket_side_by_side(httpd: Any) -> None:
    port = httpd.server_address[1]

    async def main() -> None:
        wss = echo_server(httpd)
        connections = Recorder(wss, "connection")
        serve_in_thread(httpd)
        assert wss.address() == {"address": "127.0.0.1", "family": "IPv4", "port": port}
        loop = asyncio.get_running_loop()
        # A normal route, a normal 404, an Upgrade on a path that is not ours,
        # and our path without Upgrade: all answered by the user's handler.
        assert await loop.run_in_executor(None, get, port, "/hello") == (200, b"hello from HelloWithWebSocket upgrade=None")
        assert (await loop.run_in_executor(None, get, port, "/missing"))[0] == 404
        status, body = await loop.run_in_executor(None, get, port, "/hello", {"Upgrade": "websocket", "Connection": "Upgrade"})
        assert (status, body) == (200, b"hello from HelloWithWebSocket upgrade=websocket")
        assert (await loop.run_in_executor(None, get, port, "/ws"))[0] == 404

        sock = WebSocket(f"ws://127.0.0.1:{port}/ws?name=ours", per_message_deflate=True)
        await sock.wait_open_async(timeout=10)
        await sock.send_async("héllo")
        assert (await sock.recv_async(timeout=10)).data == "héllo"
        await sock.send_async(b"\x00" * 100_000)
        assert (await sock.recv_async(timeout=10)).data == b"\x00" * 100_000

        async with ws_connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["chat"]) as other:  # type: ignore[list-item]
            await other.send("from websockets")
            assert await asyncio.wait_for(other.recv(), 10) == "from websockets"

        # The request helper saw the parsed request.
        (server_sock, request), _ = await connections.wait("connection", 2, timeout=10)
        assert request.path == "/ws" and request.query("name") == "ours"
        assert request.get_header("sec-websocket-version") == "13"
        assert request.remote_address == "127.0.0.1"
        assert server_sock.remote_address == "127.0.0.1"

        # Normal requests still work after upgrades.
        assert (await loop.run_in_executor(None, get, port, "/hello"))[0] == 200
        sock.close(4000, "bye")
        await sock.wait_closed_async(timeout=10)
        wss.close()
        await wss.wait_closed_async()

    run(main, timeout=60)


def handshake(path: str, extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n" + extra
    )


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_frame_sent_with_the_handshake_is_not_lost() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hello)

    async def main() -> None:
        echo_server(httpd)
        serve_in_thread(httpd)
        frame = Frame(Opcode.TEXT, b"early bird").serialize(mask=True)

        def exchange() -> bytes:
            with socket.create_connection(httpd.server_address, timeout=10) as raw:
                raw.sendall(handshake("/ws", frame))
                return read_until(raw, b"early bird")

        data = await asyncio.get_running_loop().run_in_executor(None, exchange)
        assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert data.endswith(b"\x81\x0aearly bird")

    try:
        run(main)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_refused_handshakes_get_http_errors(httpd: Any) -> None:
    port = httpd.server_address[1]

    async def main() -> None:
        echo_server(httpd, verify_client=lambda info: info.req.query("token") == "ok")
        serve_in_thread(httpd)
        loop = asyncio.get_running_loop()

        def raw(path: str, request: bytes | None = None) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(request or handshake(path))
                return read_until(conn, b"\r\n\r\n")

        assert (await loop.run_in_executor(None, raw, "/ws?token=no")).startswith(b"HTTP/1.1 401 ")
        assert (await loop.run_in_executor(None, raw, "/ws?token=ok")).startswith(b"HTTP/1.1 101 ")
        bad_version = handshake("/ws?token=ok").replace(b"Version: 13", b"Version: 8")
        assert (await loop.run_in_executor(None, raw, "", bad_version)).startswith(b"HTTP/1.1 426 ")

    run(main, timeout=30)


def test_wsgiref_server_is_supported() -> None:
    def app(environ: dict, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi says hi"]

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = WSGIServer(("127.0.0.1", 0), Quiet)
    httpd.set_app(app)
    port = httpd.server_address[1]

    async def main() -> None:
        echo_server(httpd)
        serve_in_thread(httpd)
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, get, port, "/anything") == (200, b"wsgi says hi")
        async with ws_connect(f"ws://127.0.0.1:{port}/ws") as conn:
            await conn.send("through wsgiref")
            assert await asyncio.wait_for(conn.recv(), 10) == "through wsgiref"

    try:
        run(main)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_unsupported_servers_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="got object"):
        WebSocketServer(server=object(), path="/ws")


def test_two_paths_share_one_adapter_and_duplicates_are_refused() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    try:

        async def main() -> None:
            a = WebSocketServer(server=httpd, path="/a")
            b = WebSocketServer(server=httpd, path="/b")
            assert a.server is b.server
            assert isinstance(a.server, UpgradeHost) and a.server.loop is asyncio.get_running_loop()
            assert a.server.address == f"127.0.0.1:{httpd.server_address[1]}"
            assert not [name for name in vars(httpd) if name.startswith("_ws")]  # nothing written onto the user's server
            assert httpd.RequestHandlerClass.__mro__[1] is Hello  # wrapped once
            with pytest.raises(ValueError, match="already registered"):
                WebSocketServer(server=httpd, path="/a")
            a.close()
            WebSocketServer(server=httpd, path="/a")  # free again after close

        run(main)
    finally:
        httpd.server_close()


def test_example_script_runs() -> None:
    """scripts/examples/stdlib_server.py serves a page and a WebSocket; it exits after one echo."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "examples" / "stdlib_server.py"), "--self-test"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "GET /: 200 stdlib page" in result.stdout
    assert "echo: hello stdlib" in result.stdout
