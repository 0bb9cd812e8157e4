"""ws.asgi: a WebSocketServer as an ASGI app, under real uvicorn and hypercorn processes and in-process."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import threading
import urllib.request
from typing import Any, Iterator

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from ws import Reject, WebSocket, WebSocketServer
from ws.asgi import ASGIApp, ASGIWebSocket, request_from_scope
from ws.exceptions import HandshakeError

from .conftest import ROOT, Recorder, run, until
from .fixtures.processes import ServerProcess, free_port

EXAMPLES = ROOT / "scripts" / "examples"


def uvicorn_process(app: str = "asgi_app:app") -> ServerProcess:
    """``uvicorn APP`` (an app of scripts/examples/)."""
    port = free_port()
    return ServerProcess(
        [sys.executable, "-m", "uvicorn", app, "--app-dir", str(EXAMPLES),
         "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on"],
        port, cwd=ROOT, path="/ws",
    )


def hypercorn_process(app: str = "asgi_app:app") -> ServerProcess:
    """``hypercorn APP`` (an app of scripts/examples/); hypercorn has no --app-dir, so PYTHONPATH."""
    import hypercorn  # noqa: F401  (a test dependency: fail, never skip, when it is missing)
    port = free_port()
    return ServerProcess(
        [sys.executable, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "2"],
        port, cwd=ROOT, path="/ws", pythonpath=EXAMPLES,
    )


SERVERS = {"uvicorn": uvicorn_process, "hypercorn": hypercorn_process}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def asgi_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """scripts/examples/asgi_app.py under each ASGI server; its log must end without a traceback."""
    server = SERVERS[request.param]()
    try:
        yield server
    finally:
        out = server.stop()
    assert "Traceback" not in out, out


def test_our_client(asgi_server: ServerProcess) -> None:
    async def main() -> None:
        async with WebSocket(f"{asgi_server.url}?name=ours", ["chat"]) as sock:
            assert sock.protocol == "chat"
            assert (await sock.recv_async(timeout=10)).data == "welcome ours"
            await sock.send_async("héllo")
            assert (await sock.recv_async(timeout=10)).data == "héllo"
            big = bytes(range(256)) * 4000
            await sock.send_async(big)
            event = await sock.recv_async(timeout=10)
            assert event.is_binary and event.data == big
            rec = Recorder(sock, "close")
            sock.send("close-me")
            (code, reason), = await rec.wait("close", timeout=10)
            assert (code, reason) == (4002, "as asked")

    run(main, timeout=60)


def test_websockets_client_and_broadcast(asgi_server: ServerProcess) -> None:
    async def main() -> None:
        async with ws_connect(asgi_server.url) as a, ws_connect(asgi_server.url, subprotocols=["chat"]) as b:
            assert a.subprotocol is None and b.subprotocol == "chat"
            assert await asyncio.wait_for(a.recv(), 10) == "welcome anonymous"
            assert await asyncio.wait_for(b.recv(), 10) == "welcome anonymous"
            await a.send(b"\x00\x01")
            assert await asyncio.wait_for(a.recv(), 10) == b"\x00\x01"
            await a.send("broadcast")
            assert await asyncio.wait_for(a.recv(), 10) == "to all"
            assert await asyncio.wait_for(b.recv(), 10) == "to all"
            await b.close(4000, "client done")

    run(main, timeout=60)


def test_verify_client_refusal_is_an_http_status(asgi_server: ServerProcess) -> None:
    async def main() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with ws_connect(f"{asgi_server.url}?token=bad"):
                pass  # pragma: no cover
        assert info.value.response.status_code == 403
        assert info.value.response.body == b"Forbidden: bad token\n"
        sock = WebSocket(f"{asgi_server.url}?token=bad")
        with pytest.raises(HandshakeError, match="403"):
            await sock.wait_open_async(timeout=10)

    run(main, timeout=30)


def test_http_goes_to_the_fallback_app(asgi_server: ServerProcess) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{asgi_server.port}/anything", timeout=10) as response:
        assert response.read() == b"hello over http"


def test_server_log_shows_close_codes() -> None:
    # uvicorn only: hypercorn 0.18 reports every client close to the app as 1006
    # (or 1000 after the app's own close), never the peer's code and reason.
    server = uvicorn_process()
    try:

        async def main() -> None:
            async with WebSocket(server.url) as sock:
                await sock.recv_async(timeout=10)
                sock.close(4000, "bye")
                await sock.wait_closed_async(timeout=10)

        run(main)
        seen = output_until(server, "closed 4000 bye")  # the app prints it once the close reached it
    finally:
        out = server.stop()
    out = "".join(seen) + out
    assert "closed 4000 bye" in out
    assert "Traceback" not in out


def output_until(server: ServerProcess, text: str, timeout: float = 10) -> list[str]:
    """The server's output lines up to the first holding ``text``, read by a helper thread (bounded)."""
    lines: list[str] = []

    def read() -> None:
        for line in server.proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if text in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert any(text in line for line in lines), f"no {text!r} from {server.name} in {timeout} s:\n{''.join(lines)}"
    return lines


#: Example apps that mount a WebSocketServer beside the framework's own HTTP
#: route at "/", and what that route answers while two clients are in the chat.
FRAMEWORK_APPS = {
    "starlette": ("starlette_app:app", lambda body: body == b"starlette here, 2 in the chat"),
    "fastapi": ("fastapi_app:app", lambda body: json.loads(body) == {"server": "fastapi", "in_chat": 2}),
}


@pytest.mark.parametrize("server_name", sorted(SERVERS))
@pytest.mark.parametrize("framework", sorted(FRAMEWORK_APPS))
def test_mounted_in_a_framework(framework: str, server_name: str) -> None:
    importlib.import_module(framework)  # a test dependency: fail, never skip, when it is missing
    app, route_answer_ok = FRAMEWORK_APPS[framework]
    server = SERVERS[server_name](app)
    try:

        async def main() -> None:
            url = f"ws://127.0.0.1:{server.port}/chat"
            async with WebSocket(url) as a, ws_connect(url) as b:
                loop = asyncio.get_running_loop()
                fetch = lambda: urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10).read()
                body = await loop.run_in_executor(None, fetch)
                assert route_answer_ok(body), body
                await a.send_async("hi from ours")
                assert (await a.recv_async(timeout=10)).data == "hi from ours"
                assert await asyncio.wait_for(b.recv(), 10) == "hi from ours"
                await b.send(b"\x07 from websockets")
                assert (await a.recv_async(timeout=10)).data == b"\x07 from websockets"
                assert await asyncio.wait_for(b.recv(), 10) == b"\x07 from websockets"

        run(main, timeout=30)
    finally:
        out = server.stop()
    assert "Traceback" not in out, out


# -- in-process: the ASGI conversation with scripted events -----------------------------


class FakeASGI:
    """Scripted receive() and a recording send(), to drive ASGIApp without a server."""

    def __init__(self, *incoming: dict[str, Any]) -> None:
        self.incoming: asyncio.Queue = asyncio.Queue()
        for message in incoming:
            self.incoming.put_nowait(message)
        self.sent: list[dict[str, Any]] = []
        self.sent_event = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self.sent_event.set()

    async def sent_type(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        for _ in range(200):
            found = [m for m in self.sent if m["type"] == kind]
            if len(found) >= count:
                return found
            self.sent_event.clear()
            try:
                await asyncio.wait_for(self.sent_event.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
        raise AssertionError(f"no {kind} in {self.sent}")


def scope(path: str = "/ws", query: bytes = b"", subprotocols: list[str] | None = None, extensions: dict | None = None) -> dict:
    return {
        "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "ws",
        "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
        "headers": [(b"host", b"x"), (b"origin", b"http://o.test"), (b"cookie", b"a=1"), (b"cookie", b"b=2")],
        "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 80),
        "subprotocols": subprotocols or [], "extensions": extensions if extensions is not None else {},
    }


def test_refusal_without_the_response_extension_closes_before_accept() -> None:
    async def main() -> None:
        def verify(info: Any) -> bool:
            raise Reject(401, "who are you")

        wss = WebSocketServer(no_server=True, path="/ws", verify_client=verify)
        fake = FakeASGI({"type": "websocket.connect"})
        await ASGIApp(wss)(scope(), fake.receive, fake.send)
        assert fake.sent == [{"type": "websocket.close", "code": 1008, "reason": "401 who are you"}]
        # With the extension: a real HTTP answer.
        fake = FakeASGI({"type": "websocket.connect"})
        await ASGIApp(wss)(scope(extensions={"websocket.http.response": {}}), fake.receive, fake.send)
        assert fake.sent[0]["type"] == "websocket.http.response.start" and fake.sent[0]["status"] == 401
        assert fake.sent[1] == {"type": "websocket.http.response.body", "body": b"who are you\n"}

    run(main)


@pytest.mark.parametrize(
    "options, status, reason, headers",
    [
        ({"verify_client": lambda info: (False, 429, "Slow down", {"Retry-After": "7"})}, 429, "Slow down", [(b"retry-after", b"7")]),
        ({"verify_client": lambda info: False}, 401, "Unauthorized", []),
        ({"handle_protocols": lambda offered, req: "zzz"}, 500, "Internal Server Error", []),
        ({"handle_protocols": lambda offered, req: 1 / 0}, 500, "Internal Server Error", []),
    ],
    ids=["verdict-tuple", "verdict-false", "unoffered-subprotocol", "handle-protocols-raises"],
)
def test_refusals_are_the_servers_decision(options: dict[str, Any], status: int, reason: str, headers: list) -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True, path="/ws", **options)
        errors = Recorder(wss, "error", "connection")
        fake = FakeASGI({"type": "websocket.connect"})
        await ASGIApp(wss)(scope(subprotocols=["a"], extensions={"websocket.http.response": {}}), fake.receive, fake.send)
        start, body = fake.sent
        assert start["type"] == "websocket.http.response.start" and start["status"] == status
        assert start["headers"][2:] == headers
        assert body == {"type": "websocket.http.response.body", "body": reason.encode() + b"\n"}
        # A broken hook is the server's error; a refusal is not.
        assert [name for name, _ in errors.log] == (["error"] if status == 500 else [])

    run(main)


def test_closed_server_refuses_with_503() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True, path="/ws")
        wss.close()
        await asyncio.sleep(0)
        fake = FakeASGI({"type": "websocket.connect"})
        await ASGIApp(wss)(scope(), fake.receive, fake.send)
        assert fake.sent == [{"type": "websocket.close", "code": 1008, "reason": "503 WebSocket server is closed"}]

    run(main)


def test_path_protocols_headers_event_and_request_helper() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True, path="/ws", handle_protocols=lambda offered, req: offered[-1])
        wss.on("headers", lambda headers, req: headers.append("X-Hello: there"))
        seen = Recorder(wss, "connection")
        app = ASGIApp(wss)
        fake = FakeASGI({"type": "websocket.connect"})
        await app(scope(path="/other"), fake.receive, fake.send)
        assert fake.sent[0]["type"] == "websocket.close"  # 404 as a close: wrong path

        fake = FakeASGI({"type": "websocket.connect"})
        task = asyncio.ensure_future(app(scope(query=b"a=1&a=2", subprotocols=["one", "two"]), fake.receive, fake.send))
        (accept,) = await fake.sent_type("websocket.accept")
        assert accept == {"type": "websocket.accept", "subprotocol": "two", "headers": [(b"x-hello", b"there")]}
        (sock, request), = await seen.wait("connection")
        assert isinstance(sock, ASGIWebSocket) and isinstance(sock, WebSocket)
        assert sock.protocol == "two" and sock.remote_address == "127.0.0.1"
        assert request.query_all("a") == ["1", "2"] and request.get_header("cookie") == "a=1; b=2"
        assert request.url == "/ws?a=1&a=2" and request.path == "/ws"

        # Messages both ways, listeners and recv() together.
        got = Recorder(sock, "message", "close")
        fake.incoming.put_nowait({"type": "websocket.receive", "text": "hi"})
        fake.incoming.put_nowait({"type": "websocket.receive", "bytes": b"\x01"})
        await got.wait("message", 2)
        assert [a[0].data for a in got.args("message")] == ["hi", b"\x01"]
        sock.send("back")
        sock.send(b"\x02")
        await fake.sent_type("websocket.send", 2)
        assert [m for m in fake.sent if m["type"] == "websocket.send"] == [
            {"type": "websocket.send", "text": "back"},
            {"type": "websocket.send", "bytes": b"\x02"},
        ]
        assert wss.broadcast("all") == 1
        await fake.sent_type("websocket.send", 3)

        sock.close(4001, "enough")
        (close,) = await fake.sent_type("websocket.close")
        assert close == {"type": "websocket.close", "code": 4001, "reason": "enough"}
        assert sock.ready_state == WebSocket.CLOSING
        sock.send("too late")  # an 'error' event, not an exception
        fake.incoming.put_nowait({"type": "websocket.disconnect", "code": 4001, "reason": "enough"})
        await asyncio.wait_for(task, 5)
        assert got.args("close") == [(4001, "enough")]
        assert sock.ready_state == WebSocket.CLOSED and not wss.clients

    run(main)


def test_terminate_and_peer_disconnect() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True)
        seen = Recorder(wss, "connection")
        app = ASGIApp(wss)
        fake = FakeASGI({"type": "websocket.connect"})
        task = asyncio.ensure_future(app(scope(path="/anything"), fake.receive, fake.send))
        (sock, _), = await seen.wait("connection")
        rec = Recorder(sock, "close")
        sock.terminate()
        await asyncio.wait_for(task, 5)  # the application returns: the ASGI server drops the connection
        assert rec.args("close") == [(1006, "")]

        fake = FakeASGI({"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1001})
        await asyncio.wait_for(app(scope(), fake.receive, fake.send), 5)
        sock2 = seen.args("connection")[1][0]
        assert sock2.ready_state == WebSocket.CLOSED

    run(main)


def test_lifespan_http_and_bad_arguments() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True)
        app = ASGIApp(wss)
        fake = FakeASGI({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
        await asyncio.wait_for(app({"type": "lifespan"}, fake.receive, fake.send), 5)
        assert [m["type"] for m in fake.sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        fake = FakeASGI({"type": "http.request", "body": b""})
        await app({"type": "http", "path": "/"}, fake.receive, fake.send)
        assert fake.sent[0]["status"] == 426

    run(main)
    with pytest.raises(TypeError, match="WebSocketServer"):
        ASGIApp(object())  # type: ignore[arg-type]
    assert request_from_scope(scope(query=b"x=1")).url == "/ws?x=1"


def test_async_connection_listener_iterating_gets_the_first_message() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True)
        got: list[Any] = []

        async def handler(sock: WebSocket, request: Any) -> None:
            async for event in sock:
                got.append(event.data)

        wss.on("connection", handler)
        fake = FakeASGI(
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "already queued"},
            {"type": "websocket.receive", "bytes": b"second"},
            {"type": "websocket.disconnect", "code": 1000},
        )
        await asyncio.wait_for(ASGIApp(wss)(scope(), fake.receive, fake.send), 5)
        await until(lambda: len(got) == 2, what="the queued messages were not delivered")
        assert got == ["already queued", b"second"]

    run(main)


def test_fragmented_send_leaves_as_one_asgi_message() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True)
        seen = Recorder(wss, "connection")
        app = ASGIApp(wss)
        fake = FakeASGI({"type": "websocket.connect"})
        task = asyncio.ensure_future(app(scope(), fake.receive, fake.send))
        (sock, _), = await seen.wait("connection")
        sock.send("frag", fin=False)
        sock.send("ment")
        sock.send(b"\x01", fin=False)
        sock.send(b"\x02")
        sent = await fake.sent_type("websocket.send", 2)
        assert [m.get("text", m.get("bytes")) for m in sent] == ["fragment", b"\x01\x02"]
        sock.terminate()
        await asyncio.wait_for(task, 5)

    run(main)


def test_a_server_serving_sockets_on_one_loop_refuses_another_loop() -> None:
    """An ASGI server may run the app on its own loop, but one WebSocketServer serves one loop at a time."""

    async def main() -> None:
        wss = WebSocketServer(no_server=True)
        seen = Recorder(wss, "connection")
        app = ASGIApp(wss)
        fake = FakeASGI({"type": "websocket.connect"})
        task = asyncio.ensure_future(app(scope(), fake.receive, fake.send))
        (sock, _), = await seen.wait("connection")

        errors: list[BaseException] = []

        def other_loop() -> None:
            try:
                asyncio.run(app(scope(), FakeASGI({"type": "websocket.connect"}).receive, fake.send))
            except BaseException as exc:  # collected: asserted below, on the test's thread
                errors.append(exc)

        thread = threading.Thread(target=other_loop)
        thread.start()
        await asyncio.to_thread(thread.join, 10)
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors
        assert "another event loop" in str(errors[0])
        assert wss.loop is asyncio.get_running_loop()  # not rebound
        sock.terminate()
        await asyncio.wait_for(task, 5)

    run(main)


def test_a_rebound_server_gets_the_broadcasts_of_its_backplane_on_the_asgi_loop() -> None:
    """Made at import time (the reactor's loop), served by an ASGI server on its own loop, with a backplane:
    another node's broadcast reaches the clients on the ASGI loop, never on the thread the server was made on."""
    from ws.backplane import MemoryBackplane, MemoryHub

    async def main() -> None:
        hub = MemoryHub()
        # no loop runs in that thread: the server (and its cluster) bind to the reactor's loop, as at import time
        wss = await asyncio.to_thread(lambda: WebSocketServer(no_server=True, path="/ws", backplane=MemoryBackplane(hub, node_id="asgi")))
        asgi_loop = asyncio.get_running_loop()
        assert wss.loop is not asgi_loop
        seen = Recorder(wss, "connection")
        app = ASGIApp(wss)
        fake = FakeASGI({"type": "websocket.connect"})
        task = asyncio.ensure_future(app(scope(), fake.receive, fake.send))
        (sock, _), = await seen.wait("connection")
        assert wss.loop is asgi_loop
        broadcast_on: list[Any] = []
        real_broadcast = wss._broadcast

        def spy(is_text: bool, payload: bytes, exclude: Any) -> int:
            broadcast_on.append(asyncio.get_running_loop())
            return real_broadcast(is_text, payload, exclude)

        wss._broadcast = spy  # type: ignore[method-assign]
        other = MemoryBackplane(hub, node_id="other")
        await other.start()
        await until(lambda: "asgi" in hub._channels.get("path:/ws", ()), what="the rebound server subscribed its path")
        assert await other.publish("path:/ws", b"\x01from another node") == 1
        sent = await fake.sent_type("websocket.send")
        assert sent[0].get("text") == "from another node"
        assert broadcast_on == [asgi_loop]
        sock.terminate()
        await asyncio.wait_for(task, 5)
        wss.close()
        await other.close()

    run(main)
