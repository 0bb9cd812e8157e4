"""ws.connection.client: ``follow_redirects`` / ``max_redirects`` and the ``'redirect'`` event, as Node's ws."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from ws import HandshakeError, WebSocket, WebSocketServer
from ws.http import Server

from .conftest import Recorder, run

OURS = "ws client ↔ ws server"  # the column of the interop matrix (tests/fixtures/interop_matrix.py)


async def redirecting_server() -> tuple[Server, list[tuple[str, dict[str, str]]]]:
    """``/old`` -> ``/ws`` (relative), ``/away`` -> other host name, ``/loop`` -> itself; echo on ``/ws``."""
    server = Server("127.0.0.1:0")
    seen: list[tuple[str, dict[str, str]]] = []

    def record(ctx: Any) -> None:
        seen.append((ctx.request.path, {k.lower(): v for k, v in ctx.request.raw_headers}))

    def old(ctx: Any) -> None:
        record(ctx)
        ctx.redirect("/ws?moved=1", 301)

    def away(ctx: Any) -> None:
        record(ctx)
        ctx.redirect(f"http://localhost:{server.port}/ws", 307)

    def loop_(ctx: Any) -> None:
        record(ctx)
        ctx.redirect("/loop", 302)

    def on_connection(sock: WebSocket, request: Any) -> None:
        seen.append((request.url, {k.lower(): v for k, v in request.raw_headers}))
        sock.on("message", lambda event: sock.send(event.data))

    server.get("/old", old)
    server.get("/away", away)
    server.get("/loop", loop_)
    WebSocketServer(server=server, path="/ws").on("connection", on_connection)
    await server.serve_async()
    return server, seen


@pytest.mark.interop(OURS, "redirects")
def test_redirects_are_off_by_default() -> None:
    async def main() -> None:
        server, seen = await redirecting_server()
        try:
            sock = WebSocket(f"ws://127.0.0.1:{server.port}/old")
            rec = Recorder(sock, "open", "redirect", "unexpected-response", "error", "close")
            await rec.wait("close", timeout=10)
            assert rec.count("open") == 0 and rec.count("redirect") == 0
            (status, headers, _body), = rec.args("unexpected-response")
            assert status == 301 and ("location", "/ws?moved=1") in [(k.lower(), v) for k, v in headers]
            (error,), = rec.args("error")
            assert isinstance(error, HandshakeError) and error.status == 301
            assert [path for path, _ in seen] == ["/old"]
        finally:
            await server.close_async()

    run(main)


@pytest.mark.interop(OURS, "redirects")
def test_follow_a_relative_redirect() -> None:
    async def main() -> None:
        server, seen = await redirecting_server()
        try:
            sock = WebSocket(f"ws://127.0.0.1:{server.port}/old", follow_redirects=True, headers={"Authorization": "Bearer t"})
            rec = Recorder(sock, "open", "redirect", "message", "error", "close")
            await rec.wait("open", timeout=10)
            new_url = f"ws://127.0.0.1:{server.port}/ws?moved=1"
            assert [args[0] for args in rec.args("redirect")] == [new_url]
            assert sock.url == new_url
            sock.send("after redirect")
            (event,), = await rec.wait("message", timeout=10)
            assert event.data == "after redirect"
            assert [path for path, _ in seen] == ["/old", "/ws?moved=1"]
            assert seen[1][1]["authorization"] == "Bearer t"  # same host: kept
            sock.close()
            await rec.wait("close", timeout=10)
            assert rec.count("error") == 0
        finally:
            await server.close_async()

    run(main)


@pytest.mark.interop(OURS, "redirects")
def test_credentials_dropped_on_another_host_and_listener_edits_headers() -> None:
    async def main() -> None:
        server, seen = await redirecting_server()
        try:
            sock = WebSocket(
                f"ws://127.0.0.1:{server.port}/away",
                followRedirects=True,
                headers=[("Authorization", "Bearer t"), ("Cookie", "c=1"), ("X-Keep", "1"), ("X-Drop", "1")],
            )

            def on_redirect(url: str, headers: list[tuple[str, str]]) -> None:
                headers[:] = [(k, v) for k, v in headers if k != "X-Drop"]

            sock.on("redirect", on_redirect)
            rec = Recorder(sock, "open", "redirect", "error", "close")
            await rec.wait("open", timeout=10)
            assert rec.args("redirect")[0][0] == f"ws://localhost:{server.port}/ws"
            final = seen[-1][1]
            assert final["x-keep"] == "1"
            assert "authorization" not in final and "cookie" not in final and "x-drop" not in final
            sock.close()
            await rec.wait("close", timeout=10)
        finally:
            await server.close_async()

    run(main)


@pytest.mark.interop(OURS, "redirects")
def test_too_many_redirects() -> None:
    async def main() -> None:
        server, seen = await redirecting_server()
        try:
            sock = WebSocket(f"ws://127.0.0.1:{server.port}/loop", follow_redirects=True, max_redirects=3)
            rec = Recorder(sock, "open", "redirect", "error", "close")
            await rec.wait("close", timeout=10)
            assert rec.count("open") == 0 and rec.count("redirect") == 3
            (error,), = rec.args("error")
            assert isinstance(error, HandshakeError) and str(error) == "Maximum redirects exceeded (3)"
            assert rec.args("close") == [(1006, "")]
            assert len(seen) == 4
        finally:
            await server.close_async()

    run(main)


@pytest.mark.interop(OURS, "redirects")
def test_close_from_the_redirect_listener_stops() -> None:
    async def main() -> None:
        server, seen = await redirecting_server()
        try:
            sock = WebSocket(f"ws://127.0.0.1:{server.port}/old", follow_redirects=True)
            sock.on("redirect", lambda url, headers: sock.close())
            rec = Recorder(sock, "open", "error", "close")
            await rec.wait("close", timeout=10)
            assert rec.count("open") == 0 and rec.count("error") == 1
            assert [path for path, _ in seen] == ["/old"]
        finally:
            await server.close_async()

    run(main)


SCRIPT = """
import asyncio

from ws import WebSocket, WebSocketServer
from ws import http

server = http.Server("127.0.0.1:0")


async def old(ctx):
    await asyncio.sleep(0.5)  # the script's main thread has ended by now
    ctx.redirect(f"http://localhost:{server.port}/ws", 302)


server.get("/old", old)
WebSocketServer(server=server, path="/ws").on("connection", lambda sock, req: sock.on("message", lambda event: sock.send(event.data)))
server.serve()
client = WebSocket(f"ws://127.0.0.1:{server.port}/old", follow_redirects=True)
client.on("redirect", lambda url, headers: print("redirect", url.replace(str(server.port), "PORT"), flush=True))
client.on("open", lambda: client.send("hello"))
client.on("error", lambda err: print("error", err, flush=True))
client.on("close", lambda code, reason: server.close())


def on_message(event):
    print("echo", event.data, flush=True)
    client.close()


client.on("message", on_message)
"""


@pytest.mark.interop(OURS, "redirects")
def test_script_redirect_resolves_a_host_name_after_the_main_thread_ended(tmp_path: Any, python: str) -> None:
    # The script's last line has run before the redirect arrives: resolving
    # 'localhost' then must not need the (already shut down) thread pool.
    script = tmp_path / "redirected.py"
    script.write_text(SCRIPT)
    done = subprocess.run([python, str(script)], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["redirect ws://localhost:PORT/ws", "echo hello"], done.stderr
    assert done.returncode == 0


@pytest.mark.interop(OURS, "redirects")
def test_credentials_dropped_on_a_downgrade_to_plain_ws_on_the_same_host_and_port() -> None:
    """``wss://h:p`` -> ``ws://h:p``: the same place, but the credentials would travel in the clear (Node drops them too)."""
    from .fixtures.tls import TestPKI

    pki = TestPKI()

    async def main() -> None:
        server = Server("127.0.0.1:0", ssl=pki.server_context("127.0.0.1"))
        server.get("/down", lambda ctx: ctx.redirect(f"ws://127.0.0.1:{server.port}/ws", 302))
        await server.serve_async()
        try:
            sock = WebSocket(
                f"wss://127.0.0.1:{server.port}/down", follow_redirects=True, ssl=pki.client_context(),
                headers=[("Authorization", "Bearer t"), ("Cookie", "c=1"), ("X-Keep", "1")],
            )
            rec = Recorder(sock, "open", "redirect", "error", "close")
            await rec.wait("redirect", timeout=10)
            url, headers = rec.args("redirect")[0]
            assert url == f"ws://127.0.0.1:{server.port}/ws"
            assert [k for k, _ in headers] == ["X-Keep"]
            await rec.wait("close", timeout=15)  # plain text to a TLS port: that connection fails
            assert rec.count("open") == 0
        finally:
            await server.close_async()

    run(main)
