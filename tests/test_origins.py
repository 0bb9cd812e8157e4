"""``allowed_origins`` over real sockets: the 403 before ``verify_client``, every host (asyncio server,
the application styles, ASGI in-process and under uvicorn), and the option's shapes.

The matcher's rules are tested without sockets in tests/unit/test_origins.py; a browser refused by
the check is tests/test_origins_browser.py; ``ws serve``'s default is in tests/test_cli.py.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from ws import WebSocket, WebSocketServer
from ws.asgi import ASGIApp
from ws.protocol.origins import AllowedOrigins
from ws.styles.connections import EventContext, websocket
from ws.styles.endpoints import websockets
from ws.styles.handlers import serve as serve_handler
from ws.styles.routes import RouteContext, route_ws

from .conftest import Recorder, run, serving
from .fixtures.doc_blocks import Script, block, with_port
from .fixtures.processes import ServerProcess, free_port
from .test_asgi import FakeASGI, scope

APP = "https://app.example.test"
EVIL = "https://evil.example.test"
T = 10.0


async def knock(url: str, origin: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes | str | None]:
    """One handshake by our client with ``Origin: origin``: ``(status, body)`` of a refusal, or ``(101, reply)``
    where ``reply`` is the first message, after sending ``'ping?'`` (``None`` when none came in 1 s)."""
    options: dict[str, Any] = {"headers": headers or {}}
    if origin is not None:
        options["origin"] = origin
    sock = WebSocket(url, **options)
    rec = Recorder(sock, "open", "message", "close", "error", "unexpected-response")
    done = asyncio.get_running_loop().create_future()
    sock.on("open", lambda: done.done() or done.set_result("open"))
    sock.on("close", lambda code, reason: done.done() or done.set_result("close"))
    outcome = await asyncio.wait_for(done, T)
    if outcome == "close":
        ((status, _headers, body),) = rec.args("unexpected-response")
        return status, body
    sock.send("ping?")
    try:
        await rec.wait("message", timeout=1)
        reply = rec.args("message")[0][0].data
    except asyncio.TimeoutError:
        reply = None
    sock.close()
    await rec.wait("close", timeout=T)
    return 101, reply


def echo(wss: WebSocketServer) -> None:
    wss.on("connection", lambda sock, request: sock.on("message", lambda event: sock.send(event.data)))


# -- the asyncio server ---------------------------------------------------------------------------------


def test_a_foreign_origin_is_refused_with_403_before_verify_client() -> None:
    async def main() -> None:
        verified: list[str | None] = []

        def verify(info: Any) -> bool:
            verified.append(info.origin)
            return True

        async with serving(allowed_origins=[APP, "https://*.example.org", None], verify_client=verify, echo=True) as served:
            events = Recorder(served.wss, "connection", "error")
            assert await knock(served.url, EVIL) == (403, f"Forbidden: origin '{EVIL}' is not allowed\n".encode())
            assert await knock(served.url, "https://example.org") == (403, b"Forbidden: origin 'https://example.org' is not allowed\n")
            assert await knock(served.url, "null") == (403, b"Forbidden: origin 'null' is not allowed\n")
            assert verified == [] and events.log == []  # verify_client never ran, nothing was emitted
            assert await knock(served.url, APP) == (101, "ping?")
            assert await knock(served.url, "https://APP.example.test:443") == (101, "ping?")
            assert await knock(served.url, "https://chat.example.org") == (101, "ping?")
            assert await knock(served.url) == (101, "ping?")  # no Origin: a non-browser client, allowed by None
            assert verified == [APP, "https://APP.example.test:443", "https://chat.example.org", None]
            assert [name for name, _ in events.log] == ["connection"] * 4

    run(main, timeout=60)


def test_without_none_a_client_that_sends_no_origin_is_refused() -> None:
    async def main() -> None:
        async with serving(allowed_origins=[APP], echo=True) as served:
            assert await knock(served.url) == (403, b"Forbidden: a handshake without an Origin header is not allowed here\n")
            assert await knock(served.url, APP) == (101, "ping?")

    run(main, timeout=30)


def test_null_is_accepted_only_when_listed() -> None:
    async def main() -> None:
        async with serving(allowed_origins=["null"], echo=True) as served:
            assert await knock(served.url, "null") == (101, "ping?")
            assert (await knock(served.url, APP))[0] == 403

    run(main, timeout=30)


def test_exact_ports_and_hosts() -> None:
    async def main() -> None:
        async with serving(allowed_origins=["http://127.0.0.1:8080", "http://LocalHost:8080"], echo=True) as served:
            assert (await knock(served.url, "http://127.0.0.1:8080"))[0] == 101
            assert (await knock(served.url, "http://localhost:8080"))[0] == 101  # host compared without case
            assert (await knock(served.url, "http://127.0.0.1:8081"))[0] == 403
            assert (await knock(served.url, "http://127.0.0.1"))[0] == 403
            assert (await knock(served.url, "https://127.0.0.1:8080"))[0] == 403

    run(main, timeout=30)


def test_no_option_is_no_check() -> None:
    async def main() -> None:
        async with serving(echo=True) as served:
            assert served.wss.allowed_origins is None
            assert await knock(served.url, EVIL) == (101, "ping?")

    run(main, timeout=30)


def test_the_option_can_be_set_later_and_is_checked_then() -> None:
    async def main() -> None:
        async with serving(echo=True) as served:
            wss = served.wss
            assert (await knock(served.url, EVIL))[0] == 101
            wss.allowed_origins = [APP]
            assert wss.allowed_origins == (APP,)
            assert (await knock(served.url, EVIL))[0] == 403  # the next handshake sees it
            wss.allowedOrigins = APP  # one string is one origin
            assert wss.allowed_origins == (APP,) and wss.allowedOrigins == (APP,)
            assert (await knock(served.url, APP))[0] == 101
            with pytest.raises(ValueError, match="has a path"):
                wss.allowed_origins = ["https://app.example.test/"]
            assert wss.allowed_origins == (APP,)  # a refused assignment changes nothing
            wss.allowed_origins = None
            assert (await knock(served.url, EVIL))[0] == 101

    run(main, timeout=60)


def test_the_option_is_checked_when_the_server_is_built_and_has_its_camelcase_spelling() -> None:
    with pytest.raises(ValueError, match=r"'app.example.test' has no scheme; .*write 'https://app.example.test'"):
        WebSocketServer(no_server=True, allowed_origins=["app.example.test"])
    with pytest.raises(ValueError, match="every page"):
        WebSocketServer(no_server=True, allowed_origins=["*"])
    with pytest.raises(TypeError, match="option given twice"):
        WebSocketServer(no_server=True, allowed_origins=[APP], allowedOrigins=[APP])
    assert WebSocketServer(no_server=True, allowedOrigins=[APP, None]).allowed_origins == (APP, None)
    assert WebSocketServer({"noServer": True, "allowedOrigins": (APP,)}).allowed_origins == (APP,)
    compiled = AllowedOrigins([APP])
    assert WebSocketServer(no_server=True, allowed_origins=compiled).allowed_origins == (APP,)


def test_the_standard_library_adapter_applies_it() -> None:
    from http.server import ThreadingHTTPServer

    from .test_adapters import Hello, serve_in_thread

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hello)

    async def main() -> None:
        echo(WebSocketServer(server=httpd, path="/ws", allowed_origins=[APP]))
        serve_in_thread(httpd)
        url = f"ws://127.0.0.1:{httpd.server_address[1]}/ws"
        assert await knock(url, EVIL) == (403, f"Forbidden: origin '{EVIL}' is not allowed\n".encode())
        assert await knock(url, APP) == (101, "ping?")

    try:
        run(main, timeout=30)
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- the application styles: the check comes before their hooks ------------------------------------------


def test_the_styles_pass_it_through_and_check_before_their_hooks() -> None:
    async def main() -> None:
        called: list[str] = []
        async with serving(None) as (server, _):

            def guard(request: Any) -> str:
                called.append("guard")
                return "user"

            @route_ws(server, "/route/:room", guard=guard, allowed_origins=[APP])
            async def room(ctx: RouteContext) -> None:
                async for message in ctx.messages:
                    await ctx.send(message)

            socket = websocket(server, "socket", allowed_origins=[APP])

            @socket.on("connect")
            def connect(ctx: EventContext) -> None:
                called.append("connect")

            @socket.on("message")
            async def message(ctx: EventContext) -> None:
                await socket.send_async(ctx.req.connection_id, ctx.req.data)

            websockets(server, {"endpoint": {"on_message": lambda data, conn: conn.send(data)}}, allowed_origins=[APP])
            serve_handler(server, "/handler", {"on_message": lambda data, conn: conn.send(data)}, allowed_origins=[APP])

            base = f"ws://127.0.0.1:{server.port}"
            paths = ["/route/a", "/socket", "/api/_websockets/endpoint", "/handler"]
            for path in paths:
                status, body = await knock(base + path, EVIL)
                assert (status, body) == (403, f"Forbidden: origin '{EVIL}' is not allowed\n".encode()), path
            assert called == []  # neither the guard nor the connect handler saw the foreign page
            for path in paths:
                status, reply = await knock(base + path, APP)
                assert status == 101, path
            assert called == ["guard", "connect"]

    run(main, timeout=60)


# -- ASGI --------------------------------------------------------------------------------------------------


def test_asgi_refuses_before_verify_client_in_process() -> None:
    async def main() -> None:
        verified: list[Any] = []
        wss = WebSocketServer(no_server=True, path="/ws", allowed_origins=["http://o.test"], verify_client=lambda info: verified.append(info) or True)
        fake = FakeASGI({"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000})
        await ASGIApp(wss)(scope(), fake.receive, fake.send)  # the scope's Origin is http://o.test
        assert fake.sent[0]["type"] == "websocket.accept" and len(verified) == 1
        wss.allowed_origins = [APP]
        fake = FakeASGI({"type": "websocket.connect"})
        await ASGIApp(wss)(scope(extensions={"websocket.http.response": {}}), fake.receive, fake.send)
        start, body = fake.sent
        assert start["type"] == "websocket.http.response.start" and start["status"] == 403
        assert body["body"] == b"Forbidden: origin 'http://o.test' is not allowed\n"
        fake = FakeASGI({"type": "websocket.connect"})
        await ASGIApp(wss)(scope(), fake.receive, fake.send)  # without the extension: a close before accept
        assert fake.sent == [
            {"type": "websocket.close", "code": 1008, "reason": "403 Forbidden: origin 'http://o.test' is not allowed"}
        ]
        assert len(verified) == 1

    run(main)


ASGI_APP = '''
from ws import WebSocketServer
from ws.asgi import ASGIApp

def verify(info):
    print("verify_client", info.origin, flush=True)
    return True

wss = WebSocketServer(no_server=True, path="/ws", verify_client=verify, allowed_origins=["https://app.example.test", None])
wss.on("connection", lambda sock, request: sock.on("message", lambda event: sock.send(event.data)))
app = ASGIApp(wss)
'''


def test_asgi_under_uvicorn(tmp_path: Path) -> None:
    (tmp_path / "origins_app.py").write_text(ASGI_APP)
    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "uvicorn", "origins_app:app", "--app-dir", str(tmp_path),
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        port, cwd=tmp_path, path="/ws",
    )
    try:
        async def main() -> None:
            assert await knock(server.url, EVIL) == (403, f"Forbidden: origin '{EVIL}' is not allowed\n".encode())
            assert await knock(server.url, APP) == (101, "ping?")
            assert await knock(server.url) == (101, "ping?")

        run(main, timeout=60)
    finally:
        out = server.stop()
    assert "Traceback" not in out, out
    assert [line for line in out.splitlines() if line.startswith("verify_client")] == [f"verify_client {APP}", "verify_client None"]


def test_the_demo_chat_lets_in_its_own_page_and_clients_without_origin_only() -> None:
    from .test_interop_browser import load_demo_server

    async def main() -> None:
        server, chat = load_demo_server().build("127.0.0.1:0")
        await server.serve_async()
        try:
            page = f"http://127.0.0.1:{server.port}"
            url = f"ws://127.0.0.1:{server.port}/chat"
            assert chat.allowed_origins == (page, f"http://localhost:{server.port}", None)
            assert await knock(url, page) == (101, "ping?")  # the chat sends every line to everyone
            assert await knock(url) == (101, "ping?")  # demo_client.py sends no Origin
            assert await knock(url, EVIL) == (403, f"Forbidden: origin '{EVIL}' is not allowed\n".encode())
        finally:
            await server.close_async()

    run(main, timeout=30)


def test_the_cookie_server_of_security_md(tmp_path: Path) -> None:
    """docs/security.md's server, as pasted: alice's cookie works from its own pages only."""
    port = free_port()
    with Script(with_port(block("security-cookie-server").code, 8080, port), tmp_path) as script:
        assert script.expect("listening on") == f"listening on 127.0.0.1:{port}"
        url = f"ws://127.0.0.1:{port}/account"
        cookie = {"Cookie": "session=s3cr3t"}

        async def main() -> None:
            assert await knock(url, f"http://127.0.0.1:{port}", cookie) == (101, "balance of alice: 100")
            assert await knock(url, f"http://localhost:{port}", cookie) == (101, "balance of alice: 100")
            # The page of evil.example, in alice's browser: her cookie, its Origin.
            assert await knock(url, "https://evil.example", cookie) == (403, b"Forbidden: origin 'https://evil.example' is not allowed\n")
            assert await knock(url, f"http://127.0.0.1:{port}") == (401, b"log in first\n")  # the cookie still matters
            # Not authentication: a program (not a browser) with the cookie sends any Origin it likes.
            assert (await knock(url, None, cookie))[0] == 403
            assert await knock(url, f"http://localhost:{port}", cookie) == (101, "balance of alice: 100")

        run(main, timeout=30)
        assert script.stop() == 0 and script.stderr == "", script.report()
