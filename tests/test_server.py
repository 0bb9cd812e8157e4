"""ws.server: WebSocketServer on a real ws.http.Server (127.0.0.1, and a unix socket).

Clients are our own ``WebSocket`` (on the test's loop) or raw HTTP requests
written by hand when a test needs to see the exact answer to a bad
handshake.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import sys
import tempfile
import threading
from typing import Any, Callable, Iterator

import h11
import pytest

from ws import NotOpenError, ProtocolError, Reject, WebSocket, WebSocketServer
from ws import http
from ws.connection import websocket as _websocket
from ws.request import Request

from .conftest import Recorder, run, serving, until, until_sync
from .frames import frame

KEY = base64.b64encode(b"0123456789abcdef").decode()
EVENTS = ("open", "message", "close", "error", "unexpected-response")


# -- helpers --------------------------------------------------------------------


def url(server: http.Server, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def client(target: str, protocols: Any = None, **options: Any) -> tuple[WebSocket, Recorder]:
    sock = WebSocket(target, protocols, **options)
    return sock, Recorder(sock, *EVENTS)


def upgrade_request(
    path: str = "/ws",
    *,
    method: str = "GET",
    version: str | None = "13",
    key: str | None = KEY,
    upgrade: str | None = "websocket",
    connection: str = "Upgrade",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Connection: {connection}"]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines += [f"{name}: {value}" for name, value in extra]
    if method != "GET":
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def raw_exchange(port: int, request: bytes, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` and parse the answer with h11: (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(_read_response(reader), timeout)
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    conn = h11.Connection(h11.CLIENT)
    # h11 only accepts a 101 answer to a request that proposed an upgrade.
    proposal = [("Host", "x"), ("Connection", "Upgrade"), ("Upgrade", "websocket")]
    conn.send(h11.Request(method="GET", target="/", headers=proposal))
    conn.send(h11.EndOfMessage())
    status, headers, body = 0, {}, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
            continue
        if isinstance(event, (h11.Response, h11.InformationalResponse)):
            status = event.status_code
            headers = {n.decode().lower(): v.decode() for n, v in event.headers}
            if status == 101:
                return status, headers, b""
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return status, headers, body


# -- construction -----------------------------------------------------------------


def test_server_option_is_required_and_checked() -> None:
    with pytest.raises(TypeError, match="One and only one"):
        WebSocketServer()
    with pytest.raises(TypeError, match="One and only one"):
        WebSocketServer(path="/ws")
    with pytest.raises(TypeError, match="server must be a ws.http.Server"):
        WebSocketServer(server=object())
    with pytest.raises(TypeError, match="server must be a ws.http.Server"):
        WebSocketServer(server="127.0.0.1:8080")
    with pytest.raises(TypeError, match="unknown WebSocketServer option"):
        WebSocketServer(no_server=True, bogus=1)
    with pytest.raises(TypeError, match="options must be a dict"):
        WebSocketServer("127.0.0.1:8080")
    with pytest.raises(ValueError, match="path"):
        WebSocketServer(no_server=True, path="ws")
    with pytest.raises(TypeError, match="verify_client must be callable"):
        WebSocketServer(no_server=True, verify_client=True)
    with pytest.raises(TypeError, match="option given twice"):
        WebSocketServer(no_server=True, maxPayload=1, max_payload=2)


def test_camel_case_options_and_dict_form() -> None:
    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        hook = lambda info: True  # noqa: E731
        wss = WebSocketServer(
            {"server": server, "path": "/x", "clientTracking": False, "verifyClient": hook, "maxPayload": 7},
            perMessageDeflate=True,
        )
        assert wss.server is server and wss.path == "/x"
        assert wss.client_tracking is False and wss.clientTracking is False and wss.clients is None
        assert wss.verify_client is hook and wss.max_payload == 7 and wss.per_message_deflate is True
        wss.close()

    run(main)


# -- accepting and the clients set --------------------------------------------------


def test_connection_echo_and_clients_set_grows_and_shrinks() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")
            wss.on("connection", lambda sock, req: sock.on("message", lambda evt: sock.send(evt.data)))
            assert wss.clients == set()
            a, ra = client(url(server))
            b, rb = client(url(server))
            await srec.wait("connection", 2)
            assert len(wss.clients) == 2
            accepted = [args[0] for args in srec.args("connection")]
            assert set(accepted) == wss.clients
            assert all(s.ready_state == WebSocket.OPEN for s in accepted)
            request = srec.args("connection")[0][1]
            assert isinstance(request, Request) and request.path == "/ws"
            await ra.wait("open")
            a.send("ping?")
            ((evt,),) = await ra.wait("message")
            assert evt.data == "ping?"
            a.close()
            await ra.wait("close")
            await until(lambda: len(wss.clients) == 1, what="the closed client is still tracked")
            b.terminate()
            await rb.wait("close")
            await until(lambda: not wss.clients, what="the terminated client is still tracked")
            assert wss.clients == set()

    run(main)


def test_client_tracking_off() -> None:
    async def main() -> None:
        async with serving(client_tracking=False) as (server, wss):
            srec = Recorder(wss, "connection")
            sock, rec = client(url(server))
            await srec.wait("connection")
            await rec.wait("open")
            assert wss.clients is None
            wss.close()  # untracked sockets are still the server's to close
            ((code, _),) = await rec.wait("close")
            assert code == 1001

    run(main)


def test_server_side_socket_properties() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")
            sock, rec = client(url(server, "/ws?a=1"), "chat")
            ((peer, request),) = await srec.wait("connection")
            await rec.wait("open")
            assert peer.url == "/ws?a=1" and peer.protocol == "chat" == sock.protocol
            assert peer.remote_address == "127.0.0.1" == peer.remoteAddress
            assert peer.request is request and request.query("a") == "1"
            assert sock.remote_address == "127.0.0.1"
            # The server does not offer permessage-deflate unless asked.
            assert peer.extensions == "" == sock.extensions
            sock.close()
            await rec.wait("close")

    run(main)


def test_per_message_deflate_on_the_server() -> None:
    async def main() -> None:
        async with serving(per_message_deflate=True) as (server, wss):
            srec = Recorder(wss, "connection")
            wss.on("connection", lambda s, r: s.on("message", lambda evt: s.send(evt.data)))
            sock, rec = client(url(server))
            ((peer, _),) = await srec.wait("connection")
            await rec.wait("open")
            assert sock.extensions.startswith("permessage-deflate")
            assert peer.extensions.startswith("permessage-deflate")
            sock.send("x" * 10000)
            ((evt,),) = await rec.wait("message")
            assert evt.data == "x" * 10000
            sock.close()
            await rec.wait("close")

    run(main)


# -- verify_client ------------------------------------------------------------------


def test_verify_client_false_gives_401_and_client_error() -> None:
    async def main() -> None:
        seen: list[Any] = []

        def verify(info: Any) -> bool:
            seen.append(info)
            return False

        async with serving(verify_client=verify) as (server, wss):
            srec = Recorder(wss, "connection", "error")
            sock, rec = client(url(server), origin="http://example.test")
            ((err,),) = await rec.wait("error")
            ((code, _),) = await rec.wait("close")
            assert "Unexpected server response: 401" in str(err)
            assert err.status == 401
            assert code == 1006
            ((status, headers, body),) = rec.args("unexpected-response")
            assert status == 401 and body.startswith(b"Unauthorized")
            assert rec.names() == ["unexpected-response", "error", "close"]
            assert srec.log == []
            info = seen[0]
            assert info.origin == "http://example.test" and info["origin"] == info.origin
            assert info.secure is False and info["secure"] is False
            assert info["req"] is info.req and isinstance(info.req, Request)
            with pytest.raises(KeyError):
                info["nope"]

    run(main)


@pytest.mark.parametrize(
    "verdict, status, header",
    [
        ((False, 403, "Go away", {"X-Why": "banned"}), 403, ("x-why", "banned")),
        ((False, 429, "Slow down", [("Retry-After", "7")]), 429, ("retry-after", "7")),
        ((False,), 401, None),
        ((False, 400), 400, None),
    ],
)
def test_verify_client_tuple_rejects_with_status(verdict: tuple, status: int, header: tuple | None) -> None:
    async def main() -> None:
        async with serving(verify_client=lambda info: verdict) as (server, wss):
            srec = Recorder(wss, "error")
            got, headers, body = await raw_exchange(server.port, upgrade_request())
            assert got == status
            assert headers["content-type"].startswith("text/plain")
            if len(verdict) > 2:
                assert body == verdict[2].encode() + b"\n"
            if header is not None:
                assert headers[header[0]] == header[1]
            assert srec.log == []  # a refusal is not a server error

    run(main)


def test_verify_client_true_tuple_accepts() -> None:
    async def main() -> None:
        async with serving(verify_client=lambda info: (True,)) as (server, wss):
            sock, rec = client(url(server))
            await rec.wait("open")
            sock.close()
            await rec.wait("close")

    run(main)


def test_verify_client_raising_reject() -> None:
    def verify(info: Any) -> bool:
        raise Reject(418, "No coffee", {"X-Teapot": "yes"})

    async def main() -> None:
        async with serving(verify_client=verify) as (server, wss):
            srec = Recorder(wss, "error")
            status, headers, body = await raw_exchange(server.port, upgrade_request())
            assert (status, headers["x-teapot"], body) == (418, "yes", b"No coffee\n")
            sock, rec = client(url(server))
            ((err,),) = await rec.wait("error")
            assert err.status == 418
            assert srec.log == []

    run(main)


def test_verify_client_exception_gives_500_and_server_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def verify(info: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("verify bug")
        return True

    async def main() -> None:
        async with serving(verify_client=verify) as (server, wss):
            srec = Recorder(wss, "error", "connection")
            sock, rec = client(url(server))
            ((err,),) = await rec.wait("error")
            assert err.status == 500
            ((server_err,),) = await srec.wait("error")
            assert isinstance(server_err, RuntimeError) and str(server_err) == "verify bug"
            # The next client gets in.
            sock2, rec2 = client(url(server))
            await rec2.wait("open")
            await srec.wait("connection")
            sock2.close()
            await rec2.wait("close")

    with caplog.at_level(logging.ERROR, logger="ws"):
        run(main)
    assert "verify bug" in caplog.text


def test_verify_client_exception_without_error_listener_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    def verify(info: Any) -> bool:
        raise ValueError("unlistened")

    async def main() -> None:
        async with serving(verify_client=verify) as (server, wss):
            status, _, _ = await raw_exchange(server.port, upgrade_request())
            assert status == 500
            status, _, _ = await raw_exchange(server.port, upgrade_request())
            assert status == 500

    with caplog.at_level(logging.ERROR, logger="ws"):
        run(main)
    assert "unlistened" in caplog.text


def test_request_state_from_verify_client_reaches_connection() -> None:
    def verify(info: Any) -> bool:
        token = info["req"].query("token")
        if token != "s3cret":
            return False
        info.req.state.user = "alice"
        return True

    async def main() -> None:
        async with serving(verify_client=verify) as (server, wss):
            srec = Recorder(wss, "connection")
            bad, rbad = client(url(server, "/ws?token=nope"))
            ((err,),) = await rbad.wait("error")
            assert err.status == 401
            sock, rec = client(url(server, "/ws?token=s3cret"))
            ((peer, request),) = await srec.wait("connection")
            assert request.state.user == "alice"
            assert peer.request.state.user == "alice"
            await rec.wait("open")
            sock.close()
            await rec.wait("close")

    run(main)


# -- subprotocols -----------------------------------------------------------------


def test_handle_protocols_chooses() -> None:
    offered: list[Any] = []

    def choose(protocols: list[str], request: Request) -> str:
        offered.append((protocols, request.path))
        return "b"

    async def main() -> None:
        async with serving(handle_protocols=choose) as (server, wss):
            sock, rec = client(url(server), ["a", "b", "c"])
            await rec.wait("open")
            assert sock.protocol == "b"
            assert offered == [(["a", "b", "c"], "/ws")]
            sock.close()
            await rec.wait("close")

    run(main)


@pytest.mark.parametrize("answer", [False, None, ""])
def test_handle_protocols_none(answer: Any) -> None:
    async def main() -> None:
        async with serving(handle_protocols=lambda protocols, req: answer) as (server, wss):
            # websockets' client (and browsers) refuse a server that picks none
            # of the offered subprotocols only when it *sends* one; none is fine.
            status, headers, _ = await raw_exchange(
                server.port, upgrade_request(extra=(("Sec-WebSocket-Protocol", "a, b"),))
            )
            assert status == 101 and "sec-websocket-protocol" not in headers

    run(main)


@pytest.mark.parametrize("mode", ["unoffered", "raises"])
def test_handle_protocols_bug_gives_500_and_error(mode: str) -> None:
    def choose(protocols: list[str], request: Request) -> str:
        if mode == "raises":
            raise RuntimeError("choose bug")
        return "zzz"

    async def main() -> None:
        async with serving(handle_protocols=choose) as (server, wss):
            srec = Recorder(wss, "error", "connection")
            sock, rec = client(url(server), ["a"])
            ((err,),) = await rec.wait("error")
            assert err.status == 500
            ((server_err,),) = await srec.wait("error")
            if mode == "raises":
                assert str(server_err) == "choose bug"
            else:
                assert "zzz" in str(server_err) and "did not offer" in str(server_err)
            assert srec.count("connection") == 0

    run(main)


def test_default_subprotocol_choice() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            sock, rec = client(url(server), ["x", "y"])
            await rec.wait("open")
            assert sock.protocol == "x"  # Node's default: the first offered
            sock.close()
            await rec.wait("close")
        async with serving(protocols=["y", "z"]) as (server, wss):
            sock, rec = client(url(server), ["x", "y"])
            await rec.wait("open")
            assert sock.protocol == "y"  # the server's preference among those offered
            sock.close()
            await rec.wait("close")
            sock, rec = client(url(server), ["q"])
            await rec.wait("open")
            assert sock.protocol == ""
            sock.close()
            await rec.wait("close")
        async with serving(protocols="chat") as (server, wss):
            assert wss.protocols == ["chat"]
            sock, rec = client(url(server), ["c", "chat"])
            await rec.wait("open")
            assert sock.protocol == "chat"
            sock.close()
            await rec.wait("close")

    run(main)


# -- sending, closing ----------------------------------------------------------------


def test_server_side_send_after_close_emits_error() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")
            sock, rec = client(url(server))
            ((peer, _),) = await srec.wait("connection")
            prec = Recorder(peer, "close", "error")
            await rec.wait("open")
            sock.close(4001, "bye")
            ((code, reason),) = await prec.wait("close")
            assert (code, reason) == (4001, "bye")
            peer.send("too late")
            ((err,),) = await prec.wait("error")
            assert isinstance(err, NotOpenError)
            assert str(err) == "WebSocket is not open: readyState 3 (CLOSED)"
            peer.ping()
            await prec.wait("error", 2)

    run(main)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_server_side_invalid_close_codes(code: int) -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")
            sock, rec = client(url(server))
            ((peer, _),) = await srec.wait("connection")
            with pytest.raises(ValueError, match="invalid close code"):
                peer.close(code)
            with pytest.raises(ValueError, match="123 bytes"):
                peer.close(1000, "x" * 124)
            with pytest.raises(TypeError):
                peer.close("1000")  # type: ignore[arg-type]
            assert peer.ready_state == WebSocket.OPEN
            peer.close(1000, "é" * 61)  # 122 bytes is fine
            ((code_seen, reason),) = await rec.wait("close")
            assert (code_seen, reason) == (1000, "é" * 61)

    run(main)


def test_max_payload_on_the_server_closes_1009() -> None:
    async def main() -> None:
        async with serving(max_payload=16) as (server, wss):
            srec = Recorder(wss, "connection")
            sock, rec = client(url(server), per_message_deflate=False)
            ((peer, _),) = await srec.wait("connection")
            prec = Recorder(peer, "message", "error", "close")
            await rec.wait("open")
            sock.send(b"x" * 16)  # at the limit: fine
            await prec.wait("message")
            sock.send(b"x" * 17)
            ((err,),) = await prec.wait("error")
            assert isinstance(err, ProtocolError) and err.close_code == 1009
            assert "max payload" in str(err)
            ((code, _),) = await rec.wait("close")
            assert code == 1009
            ((pcode, _),) = await prec.wait("close")
            assert pcode == 1009
            assert prec.count("message") == 1

    run(main)


@pytest.mark.parametrize("listener", ["sync", "async"])
def test_frames_sent_with_the_upgrade_request_are_not_lost(listener: str) -> None:
    """An ``async def`` 'connection' listener attaches from a task: the early frame must wait for it."""
    from websockets.frames import Frame, Opcode

    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")
            got: list[str] = []

            def attach(sock: WebSocket) -> None:
                sock.on("message", lambda evt: got.append(evt.data))

            async def on_connection_async(sock: WebSocket, request: object) -> None:
                attach(sock)
                await asyncio.sleep(0)

            wss.on("connection", on_connection_async if listener == "async" else (lambda sock, request: attach(sock)))
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                early = Frame(Opcode.TEXT, b"early bird").serialize(mask=True, extensions=[])
                writer.write(upgrade_request() + early)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 101")
                await srec.wait("connection")
                await until(lambda: got, what="the early frame was not delivered")
                assert got == ["early bird"]
            finally:
                writer.close()

    run(main)


def test_close_timeout_drops_a_peer_that_never_answers() -> None:
    async def main() -> None:
        async with serving(close_timeout=0.3) as (server, wss):
            srec = Recorder(wss, "connection")
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                writer.write(upgrade_request())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 101")
                ((peer, _),) = await srec.wait("connection")
                prec = Recorder(peer, "close")
                loop = asyncio.get_running_loop()
                started = loop.time()
                peer.close(1000)  # the raw client never sends its Close frame back
                assert peer.ready_state == WebSocket.CLOSING
                ((code, _),) = await prec.wait("close", timeout=5)
                assert code == 1006
                assert loop.time() - started >= 0.25
                frame = await asyncio.wait_for(reader.read(2), 5)
                assert frame[0] == 0x88  # our Close frame did go out
            finally:
                writer.close()

    run(main)


def test_server_close_sends_1001_emits_close_and_calls_back() -> None:
    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/ws")
        await server.serve_async()
        srec = Recorder(wss, "connection", "close")
        clients = [client(url(server)) for _ in range(3)]
        for _, rec in clients:
            await rec.wait("open")
        await srec.wait("connection", 3)
        done = asyncio.get_running_loop().create_future()
        wss.close(lambda: done.set_result(True))
        for _, rec in clients:
            ((code, _),) = await rec.wait("close")
            assert code == 1001
        assert await asyncio.wait_for(done, 5) is True
        await srec.wait("close")
        assert srec.count("close") == 1
        assert wss.clients == set()
        await asyncio.wait_for(wss.wait_closed_async(), 5)
        # The path is free again: a new upgrade is not for this server any more.
        status, _, _ = await raw_exchange(server.port, upgrade_request())
        assert status == 404
        again = asyncio.get_running_loop().create_future()
        wss.close(lambda: again.set_result(True))  # twice is harmless; the callback runs where a 2nd 'close' would
        assert await asyncio.wait_for(again, 5) is True
        assert srec.count("close") == 1
        await asyncio.wait_for(server.close_async(), 10)

    run(main)


def test_broadcast_reaches_every_client() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")
            clients = [client(url(server), per_message_deflate=i % 2 == 0) for i in range(4)]
            for _, rec in clients:
                await rec.wait("open")
            await srec.wait("connection", 4)
            assert wss.broadcast("to all") == 4
            assert wss.broadcast(b"\x01\x02") == 4
            first = clients[0][0]
            for _, rec in clients:
                msgs = await rec.wait("message", 2)
                assert [m[0].data for m in msgs] == ["to all", b"\x01\x02"]
            some = next(iter(wss.clients))
            assert wss.broadcast("not you", exclude=some) == 3
            assert wss.broadcast("marker") == 4  # ordered after "not you" on every connection
            for _, rec in clients:
                await until(lambda rec=rec: "marker" in [m[0].data for m in rec.args("message")], what="no marker")
            assert sum(rec.count("message") for _, rec in clients) == 8 + 3 + 4
            seen = sorted([m[0].data for m in rec.args("message")][2:] for _, rec in clients)
            assert seen == [["marker"]] + [["not you", "marker"]] * 3
            with pytest.raises(TypeError):
                wss.broadcast(42)  # type: ignore[arg-type]
            first.close()

    run(main)


def test_broadcast_keeps_order_and_framing_per_client() -> None:
    """Shared bytes never cut into a client's queued frames or its open fragmented message."""

    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")
            pairs = []  # (server-side peer, client recorder), connected one at a time
            for i in range(3):
                _, rec = client(url(server))
                await rec.wait("open")
                ((peer, _),) = (await srec.wait("connection", i + 1))[i:]
                pairs.append((peer, rec))
            (fragmenting, frag_rec), (queued, queued_rec), (_, plain_rec) = pairs
            fragmenting.send("part-", fin=False)  # a message left open: broadcast continues it, as send does
            big = os.urandom(70_000)  # above the join limit: header and payload framed apart
            assert wss.broadcast("end") == 3
            assert wss.broadcast(big) == 3
            queued.send("after")
            assert [m[0].data for m in await frag_rec.wait("message", 2)] == ["part-end", big]
            assert [m[0].data for m in await queued_rec.wait("message", 3)] == ["end", big, "after"]
            assert [m[0].data for m in await plain_rec.wait("message", 2)] == ["end", big]

    run(main)


def test_broadcast_keeps_order_with_queued_sends_and_control_frames() -> None:
    """A send queued for the end of the loop turn and a ping leave before the broadcast frame."""

    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")
            sock, rec = client(url(server))
            order: list[Any] = []
            sock.on("message", lambda event: order.append(event.data))
            sock.on("ping", lambda data: order.append(("ping", data)))
            await rec.wait("open")
            ((peer, _),) = await srec.wait("connection")
            peer.ping(b"p")  # outside a read: written at once
            peer.send("before")  # from a coroutine: queued until the end of this loop turn
            assert wss.broadcast("all") == 1
            peer.send("after")
            await rec.wait("message", 3)
            assert order == [("ping", b"p"), "before", "all", "after"]

    run(main)


def test_broadcast_from_another_thread() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")
            sock, rec = client(url(server))
            await rec.wait("open")
            await srec.wait("connection")
            thread = threading.Thread(target=wss.broadcast, args=("from a thread",))
            thread.start()
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 5)
            ((evt,),) = await rec.wait("message")
            assert evt.data == "from a thread"

    run(main)


@pytest.fixture(params=[True, False], ids=["thread-ids-first", "asyncio-only"])
def send_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways ``send`` tells whether it runs on the loop: thread ids first before Python 3.12
    (asyncio's answer costs a getpid() there), asyncio only from 3.12 on; each test runs both."""
    monkeypatch.setattr(_websocket, "_IDS_FIRST", request.param)
    return bool(request.param)


def test_sends_from_a_listener_a_thread_and_a_coroutine_keep_their_order(send_check: bool) -> None:
    """A listener's send goes out at once; a thread's is handed to the loop and keeps its place before
    the listener's next one; a coroutine's (on the loop, not in our read callback) follows; a thread's
    outside any listener is handed over too: only the loop's thread writes to the transport (and
    asyncio's debug mode fails a loop call made on another thread)."""

    async def main() -> None:
        asyncio.get_running_loop().set_debug(True)
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")

            def on_connection(peer: WebSocket, _request: Any) -> None:
                def on_message(event: Any) -> None:
                    peer.send("listener")
                    other = threading.Thread(target=peer.send, args=("thread",))
                    other.start()
                    other.join(5)
                    peer.send("listener again")

                peer.on("message", on_message)

            wss.on("connection", on_connection)
            sock, rec = client(url(server))
            await rec.wait("open")
            ((peer, _),) = await srec.wait("connection")
            writers: set[int] = set()  # the threads that wrote to the peer's transport: the loop's only
            transport = peer._transport
            for name in ("write", "writelines"):
                real = getattr(transport, name)
                setattr(transport, name, lambda data, real=real: (writers.add(threading.get_ident()), real(data)))
            sock.send("go")
            await rec.wait("message", 3)
            peer.send("coroutine")
            await rec.wait("message", 4)  # flushed: the next send finds no flush scheduled
            await asyncio.to_thread(peer.send, "thread alone")
            msgs = await rec.wait("message", 5)
            assert [m[0].data for m in msgs] == ["listener", "thread", "listener again", "coroutine", "thread alone"]
            assert writers == {threading.get_ident()}

    run(main)


def test_a_thread_sending_while_a_listener_runs_goes_through_the_loop(send_check: bool) -> None:
    """While our read callback runs a listener, a send from another thread is
    still handed to the loop, never done on that thread; and it keeps its place
    before a send the listener makes after it (the thread was joined first)."""

    async def main() -> None:
        async with serving() as (server, wss):
            def on_connection(peer: WebSocket, _request: Any) -> None:
                def on_message(event: Any) -> None:
                    other = threading.Thread(target=peer.send, args=("from a thread",))
                    other.start()
                    other.join(5)  # the loop thread waits, inside the listener
                    peer.send("from the listener")

                peer.on("message", on_message)

            wss.on("connection", on_connection)
            sock, rec = client(url(server))
            await rec.wait("open")
            sock.send("go")
            msgs = await rec.wait("message", 2)
            assert [m[0].data for m in msgs] == ["from a thread", "from the listener"]

    run(main)


def test_send_from_many_threads_keeps_each_threads_order() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection")
            sock, rec = client(url(server))
            ((peer, _),) = await srec.wait("connection")
            await rec.wait("open")
            per_thread, threads = 200, 4

            def worker(n: int) -> None:
                for i in range(per_thread):
                    peer.send(f"{n}:{i}")

            workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
            for t in workers:
                t.start()
            loop = asyncio.get_running_loop()
            for t in workers:
                await loop.run_in_executor(None, t.join, 10)
            msgs = await rec.wait("message", per_thread * threads, timeout=15)
            seen: dict[int, list[int]] = {}
            for (evt,) in msgs:
                n, i = evt.data.split(":")
                seen.setdefault(int(n), []).append(int(i))
            assert seen == {n: list(range(per_thread)) for n in range(threads)}
            # close/ping/terminate from a thread too
            closer = threading.Thread(target=peer.close, args=(4002,))
            closer.start()
            closer.join(5)
            ((code, _),) = await rec.wait("close")
            assert code == 4002

    run(main)


# -- listener failures --------------------------------------------------------------


def test_listener_exceptions_never_kill_the_server(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection", "error")

            def bad_connection(sock: WebSocket, req: Request) -> None:
                sock.on("message", lambda evt: 1 / 0 if evt.data == "boom" else sock.send(evt.data))
                raise RuntimeError("connection listener bug")

            wss.on("connection", bad_connection)
            sock, rec = client(url(server))
            await rec.wait("open")
            ((err,),) = await srec.wait("error")
            assert str(err) == "connection listener bug"
            sock.send("boom")
            sock.send("still here")
            ((evt,),) = await rec.wait("message")
            assert evt.data == "still here"
            second, rec2 = client(url(server))
            await rec2.wait("open")
            await srec.wait("connection", 2)
            second.close()
            sock.close()
            await rec.wait("close")
            await rec2.wait("close")

    with caplog.at_level(logging.ERROR, logger="ws"):
        run(main)
    assert "connection listener bug" in caplog.text
    assert "ZeroDivisionError" in caplog.text


def test_async_connection_listener() -> None:
    async def main() -> None:
        async with serving() as (server, wss):

            async def on_connection(sock: WebSocket, req: Request) -> None:
                await asyncio.sleep(0.01)  # the listener really suspends before it sends
                sock.send("welcome " + (req.query("name") or "?"))

            wss.on("connection", on_connection)
            sock, rec = client(url(server, "/ws?name=bob"))
            ((evt,),) = await rec.wait("message")
            assert evt.data == "welcome bob"
            sock.close()
            await rec.wait("close")

    run(main)


# -- the 'headers' event -------------------------------------------------------------


def test_headers_event_adds_response_header() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            calls: list[Any] = []

            def on_headers(headers: list[str], request: Request) -> None:
                calls.append((list(headers), request.path))
                headers.append("Set-Cookie: session=abc")
                headers.append("X-Served-By: ws")

            wss.on("headers", on_headers)
            status, headers, _ = await raw_exchange(server.port, upgrade_request())
            assert status == 101
            assert headers["set-cookie"] == "session=abc" and headers["x-served-by"] == "ws"
            assert headers["upgrade"] == "websocket"
            lines, path = calls[0]
            assert lines[0] == "HTTP/1.1 101 Switching Protocols" and path == "/ws"
            assert any(line.lower().startswith("sec-websocket-accept:") for line in lines)

    run(main)


# -- handshake errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes, status, check",
    [
        (upgrade_request(key=None), 400, b"Sec-WebSocket-Key"),
        (upgrade_request(key="short"), 400, b"Sec-WebSocket-Key"),
        (upgrade_request(upgrade="h2c"), 400, b"Upgrade"),
        (upgrade_request(connection="keep-alive"), 400, b"Connection"),
        (upgrade_request(version=None), 400, b"Sec-WebSocket-Version"),
        (upgrade_request(version="8"), 426, b"version"),
        (upgrade_request(method="POST"), 405, b"GET"),
        (upgrade_request(path="/nowhere"), 404, b"Not Found"),
        (upgrade_request(upgrade=None, connection="keep-alive"), 426, b"Upgrade Required"),
    ],
    ids=["no-key", "bad-key", "wrong-upgrade", "no-connection-upgrade", "no-version", "version-8", "post",
         "unknown-path", "plain-get"],
)
def test_handshake_error_statuses(request_bytes: bytes, status: int, check: bytes) -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            srec = Recorder(wss, "connection", "error")
            got, headers, body = await raw_exchange(server.port, request_bytes)
            assert got == status, body
            assert headers["content-type"].startswith("text/plain")
            assert check.lower() in body.lower()
            if status == 426 and b"version" in check:
                assert headers["sec-websocket-version"] == "13"
            if status == 405:
                assert headers["allow"] == "GET"
            assert srec.log == []
            # The server is still fine.
            sock, rec = client(url(server))
            await rec.wait("open")
            sock.close()
            await rec.wait("close")

    run(main)


# -- several endpoints, routes, sugar ---------------------------------------------------


def test_two_servers_on_two_paths_and_http_routes() -> None:
    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        chat = WebSocketServer(server=server, path="/chat")
        feed = WebSocketServer(server=server, path="/feed")
        chat.on("connection", lambda s, r: s.send("chat"))
        feed.on("connection", lambda s, r: s.send("feed"))
        server.get("/health", lambda ctx: ctx.text(200, "ok"))
        with pytest.raises(ValueError, match="already registered"):
            WebSocketServer(server=server, path="/chat")
        await server.serve_async()
        try:
            a, ra = client(url(server, "/chat"))
            b, rb = client(url(server, "/feed"))
            ((ea,),) = await ra.wait("message")
            ((eb,),) = await rb.wait("message")
            assert (ea.data, eb.data) == ("chat", "feed")
            assert len(chat.clients) == 1 and len(feed.clients) == 1
            status, _, body = await raw_exchange(
                server.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert (status, body) == (200, b"ok")
            status, _, _ = await raw_exchange(server.port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status == 404
            chat.close()
            ((code, _),) = await ra.wait("close")
            assert code == 1001
            assert b.ready_state == WebSocket.OPEN  # the other endpoint is untouched
            b.close()
            await rb.wait("close")
        finally:
            feed.close()
            await asyncio.wait_for(server.close_async(), 10)

    run(main)


def test_websocket_servers_on_paths_of_an_http_server() -> None:
    """The seed's ``server.ws(path, handler)``: a ``WebSocketServer`` per path, its 'connection' as a decorator too."""

    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/echo", max_payload=1000)
        wss.on("connection", lambda sock, req: sock.on("message", lambda evt: sock.send(evt.data)))
        assert wss.path == "/echo" and wss.max_payload == 1000

        @WebSocketServer(server=server, path="/hi").on("connection")
        def hi(sock: WebSocket, req: Request) -> None:
            sock.send("hi")

        assert callable(hi)
        await server.serve_async()
        try:
            a, ra = client(url(server, "/echo"))
            await ra.wait("open")
            a.send("round trip")
            ((evt,),) = await ra.wait("message")
            assert evt.data == "round trip"
            b, rb = client(url(server, "/hi"))
            ((evt,),) = await rb.wait("message")
            assert evt.data == "hi"
            a.close()
            b.close()
            await ra.wait("close")
            await rb.wait("close")
        finally:
            await asyncio.wait_for(server.close_async(), 10)

    run(main)


def test_standalone_server_on_its_own_port() -> None:
    async def main() -> None:
        listening = asyncio.get_running_loop().create_future()
        wss = WebSocketServer(port=0, path="/ws", callback=lambda: listening.set_result(True))
        try:
            await asyncio.wait_for(listening, 5)
            address = wss.address()
            assert address["address"] == "127.0.0.1" and address["family"] == "IPv4"
            assert isinstance(address["port"], int) and address["port"] > 0
            assert wss.server.address == f"127.0.0.1:{address['port']}"
            wss.on("connection", lambda s, r: s.send("standalone"))
            sock, rec = client(f"ws://127.0.0.1:{address['port']}/ws")
            ((evt,),) = await rec.wait("message")
            assert evt.data == "standalone"
            srec = Recorder(wss, "close")
            done = asyncio.get_running_loop().create_future()
            wss.close(lambda: done.set_result(True))
            ((code, _),) = await rec.wait("close")
            assert code == 1001
            await asyncio.wait_for(done, 5)
            await srec.wait("close")
            await until(lambda: not wss.server.listening, what="the standalone server still listens")
        finally:
            wss.close()

    run(main)


def test_standalone_server_address_before_listening_and_no_server() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True)
        assert wss.address() is None and wss.server is None
        wss.close()

    run(main)


def test_no_server_and_handle_upgrade() -> None:
    """A user's own asyncio server parses the request and hands the socket over."""

    async def main() -> None:
        wss = WebSocketServer(no_server=True, path="/anything")
        srec = Recorder(wss, "connection")
        routed: list[Any] = []
        handled: list[bool] = []  # asserted below: an assert in a protocol callback only reaches the loop's handler
        loop = asyncio.get_running_loop()

        class MyHttp(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport
                self.conn = h11.Connection(h11.SERVER)

            def data_received(self, data: bytes) -> None:
                self.conn.receive_data(data)
                event = self.conn.next_event()
                if isinstance(event, h11.Request):
                    request = Request(
                        event.method.decode(),
                        event.target.decode(),
                        [(n.decode(), v.decode()) for n, v in event.headers.raw_items()],
                        peername=self.transport.get_extra_info("peername"),
                    )
                    handled.append(wss.should_handle(request))  # another path: we route anyway
                    wss.handle_upgrade(request, self.transport, b"", lambda s, r: routed.append((s, r)))

        tcp = await loop.create_server(MyHttp, "127.0.0.1", 0)
        port = tcp.sockets[0].getsockname()[1]
        try:
            sock, rec = client(f"ws://127.0.0.1:{port}/mine?x=1")
            await rec.wait("open")
            await until(lambda: routed, what="the upgrade was not handed over")
            assert handled == [False]
            (peer, request), = routed
            assert request.query("x") == "1" and peer.ready_state == WebSocket.OPEN
            assert srec.count("connection") == 0  # the callback replaces the event
            assert wss.clients == {peer}
            peer.send("routed")
            ((evt,),) = await rec.wait("message")
            assert evt.data == "routed"
            wss.close()
            ((code, _),) = await rec.wait("close")
            assert code == 1001
        finally:
            tcp.close()

    run(main)


# -- unix sockets ------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="unix sockets need a POSIX system")
def test_unix_socket_server() -> None:
    from websockets.asyncio.client import unix_connect

    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "ws.sock")
            server = http.Server(path, network="unix")
            wss = WebSocketServer(server=server, path="/ws")
            wss.on("connection", lambda s, r: s.on("message", lambda evt: s.send(f"{evt.data} via {r.remote_address}")))
            await server.serve_async()
            try:
                assert server.address == path
                async with unix_connect(path, uri="ws://localhost/ws", open_timeout=5) as conn:
                    await conn.send("hi")
                    answer = await asyncio.wait_for(conn.recv(), 5)
                    assert answer.startswith("hi via")
                    assert len(wss.clients) == 1
                # Our client, with Node's socketPath option.
                sock, rec = client("ws://localhost/ws", socketPath=path)
                await rec.wait("open")
                assert sock.remote_address == path
                sock.send("yo")
                ((evt,),) = await rec.wait("message")
                assert evt.data.startswith("yo via")
                sock.close()
                await rec.wait("close")
                bad, rbad = client("ws://localhost/ws", socket_path=os.path.join(tmp, "nothing.sock"))
                ((err,),) = await rbad.wait("error")
                assert "nothing.sock" in str(err) and err.address.endswith("nothing.sock")
                ((code, _),) = await rbad.wait("close")
                assert code == 1006
                with pytest.raises(TypeError, match="socket_path"):
                    WebSocket("ws://localhost/", socket_path=3)
            finally:
                wss.close()
                await asyncio.wait_for(server.close_async(), 10)
            assert not os.path.exists(path)

    run(main)


# -- ref / unref ---------------------------------------------------------------------------


def test_ref_and_unref_return_self() -> None:
    async def main() -> None:
        wss = WebSocketServer(port=0)
        try:
            assert wss.unref() is wss and wss.ref() is wss
        finally:
            wss.close()
        wss2 = WebSocketServer(no_server=True)
        assert wss2.unref() is wss2 and wss2.ref() is wss2

    run(main)


def test_listening_listener_attached_after_the_constructor_still_runs_once() -> None:
    # A plain script (this test runs in a plain thread): the server listens on the
    # reactor before the constructor returns; Node emits 'listening' on a later
    # tick, so `wss.on('listening', ...)` on the next line must still be called.
    wss = WebSocketServer(port=0, host="127.0.0.1")
    try:
        called = threading.Event()
        calls: list[Any] = []
        wss.on("listening", lambda: (calls.append(wss.address()), called.set()))
        assert called.wait(5), "'listening' was lost"
        assert calls[0]["port"] > 0
        late = threading.Event()
        wss.on("listening", lambda: late.set())  # it was claimed: not replayed again
        assert not late.wait(0.3)
        assert len(calls) == 1
    finally:
        wss.close()


def test_wait_closed_blocks_in_a_thread_and_refuses_inside_asyncio() -> None:
    """One return type each: ``wait_closed()`` blocks a thread, ``wait_closed_async()`` is a coroutine."""
    wss = WebSocketServer(port=0)
    got: list[object] = []

    async def inside() -> None:
        with pytest.raises(RuntimeError, match="wait_closed_async"):
            wss.wait_closed()

    asyncio.run(inside())
    wss.close()
    got.append(wss.wait_closed(timeout=10))
    assert got == [None]

    async def after_close() -> None:
        await wss.wait_closed_async(timeout=5)  # already closed: returns at once, from another loop

    asyncio.run(after_close())


def test_wait_closed_async_gives_up_after_its_timeout() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True)
        with pytest.raises(TimeoutError, match="did not finish closing within 0.05 s"):
            await wss.wait_closed_async(timeout=0.05)  # never closed
        wss.close()
        await wss.wait_closed_async(timeout=5)

    run(main)


# -- a handshake served while the constructor is still running -----------------------------


def _upgrade_on_raw_socket(port: int, path: str) -> tuple[bytes, bytes, bool]:
    """Upgrade on a plain socket: the answer's head, what follows it within half a second, and whether the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(upgrade_request(path))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed before the answer's head: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        sock.settimeout(0.5)
        try:
            while chunk := sock.recv(65536):
                rest += chunk
        except socket.timeout:
            return head, rest, False  # the connection stays open: what came is all there is
        except ConnectionResetError:
            pass
        return head, rest, True


@contextlib.contextmanager
def _built_while(target: Any, then: Callable[[Any], object], server: http.Server | None = None) -> Iterator[WebSocketServer]:
    """A ``WebSocketServer`` on ``/ws`` whose constructor was stopped where ``target`` returned (serving had started) while ``then(http_server)`` ran.

    A trace hook on the constructing thread stops it there: the handshakes
    ``then`` makes run on the reactor meanwhile.  Closed on the way out.
    """
    stopped: list[Any] = []

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code is target.__code__:
            def at_return(frame: Any, event: str, arg: Any) -> Any:
                if event == "return" and not stopped:
                    stopped.append(frame.f_locals["self"])
                    then(stopped[0])
                return at_return
            return at_return
        return None

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        wss = WebSocketServer(port=0, path="/ws") if server is None else WebSocketServer(server=server, path="/ws")
    finally:
        sys.settrace(previous)
    try:
        assert stopped, "the trace hook did not stop the constructor"
        yield wss
    finally:
        wss.close()


@pytest.mark.parametrize("attach", ["port", "server"])
def test_a_handshake_during_the_constructor_gets_a_whole_connection(attach: str) -> None:
    """A client that connects while ``WebSocketServer(...)`` has not returned yet gets a 101 and a working socket.

    In a plain script the reactor serves as soon as ``port=`` starts the
    listener (or ``server=`` registers the path on a server already serving),
    while the constructing thread still runs the rest of the constructor: a
    handshake in between found the server half made (no ``_cluster`` yet),
    wrote the 101, failed, and wrote a 500 after it, which the client read as
    a frame with reserved bits set ("HTTP/1.1" starts with 0x48).
    """
    http_server = None
    if attach == "server":
        http_server = http.Server("127.0.0.1:0")
        http_server.serve()
    seen: list[tuple[bytes, bytes, bool]] = []
    target = http.Server.serve if attach == "port" else http.Server.add_upgrade_handler
    try:
        with _built_while(target, lambda server: seen.append(_upgrade_on_raw_socket(server.port, "/ws")), http_server):
            head, rest, closed = seen[0]
            assert head.startswith(b"HTTP/1.1 101 "), head
            assert rest == b"", f"bytes after the 101 that are no frames of ours: {rest!r}"
            assert not closed
    finally:
        if http_server is not None:
            http_server.close()


def _sent_and_read(sock: socket.socket, data: bytes, mark: bytes) -> bytes:
    """Send ``data`` then a ping carrying ``mark``; what came until its pong (the server has read ``data`` then)."""
    sock.sendall(data + frame(0x9, mark))
    pong = bytes([0x8A, len(mark)]) + mark
    received = b""
    while pong not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed: {received!r}"
        received += chunk
    return received


@contextlib.contextmanager
def _early_client() -> Iterator[tuple[list[socket.socket], Callable[[Any], None]]]:
    """A raw client for ``_built_while``'s ``then``: it upgrades and sends ``"early"``, all read by the server."""
    clients: list[socket.socket] = []

    def connect(server: Any) -> None:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        clients.append(sock)
        received = _sent_and_read(sock, upgrade_request("/ws") + frame(0x1, b"early"), b"0")
        assert received.startswith(b"HTTP/1.1 101 "), received

    try:
        yield clients, connect
    finally:
        for sock in clients:
            sock.close()


def test_a_connection_before_the_scripts_listener_is_kept_for_it() -> None:
    """Node listens on a later tick, so a script's ``wss.on('connection')`` on the next line hears every client.

    Here the reactor serves before the constructor returns: a client that
    connects (and sends) before that line must reach it, its message too.
    """
    with _early_client() as (_, connect), _built_while(http.Server.serve, connect) as wss:
        got: list[Any] = []
        wss.on("connection", lambda sock, request: sock.on("message", lambda data, is_binary: got.append(data)))
        until_sync(lambda: got, what="the early client's connection or message was lost")
        assert got == ["early"]


def test_a_kept_connection_keeps_no_messages_once_heard() -> None:
    """Once its ``'connection'`` was heard, a kept socket's messages no listener takes are dropped, as in Node.

    A peer's messages must not pile up (up to ``max_payload`` each) for a
    ``'message'`` listener that never comes: here the listener comes late,
    and hears only what came after it.
    """
    with _early_client() as (clients, connect), _built_while(http.Server.serve, connect) as wss:
        heard: list[WebSocket] = []
        wss.on("connection", lambda sock, request: heard.append(sock))  # no 'message' listener
        until_sync(lambda: heard, what="the kept connection was not replayed")
        _sent_and_read(clients[0], frame(0x1, b"unheard"), b"1")
        got: list[Any] = []
        heard[0].on("message", lambda data, is_binary: got.append(data))
        _sent_and_read(clients[0], frame(0x1, b"heard"), b"2")
        until_sync(lambda: got, what="the late listener heard nothing")
        assert got == ["heard"]


def test_a_failure_after_the_101_drops_the_connection_and_writes_no_500(caplog: pytest.LogCaptureFixture) -> None:
    """A bug of ours once the 101 is written: the connection is dropped and reported; no HTTP answer follows the 101.

    The client reads frames after a 101: a 500 there reached it as a frame
    with reserved bits set.  The bug is simulated by a step of the handshake
    that raises (the server's bookkeeping of the new socket's slot).
    """

    class Failing(WebSocketServer):
        def _hold(self, ws: WebSocket, slot: Any) -> None:
            raise RuntimeError("a bug after the 101")

    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        wss = Failing(server=server, path="/ws", max_connections=1)
        errors: list[BaseException] = []
        wss.on("error", errors.append)
        connected: list[WebSocket] = []
        wss.on("connection", lambda sock, request: connected.append(sock))
        await server.serve_async()
        try:
            for _ in range(2):  # the slot was given back: max_connections=1 admits the second one
                head, rest, closed = await asyncio.to_thread(_upgrade_on_raw_socket, server.port, "/ws")
                assert head.startswith(b"HTTP/1.1 101 "), head
                assert rest == b"", f"bytes after the 101 that are no frames: {rest!r}"
                assert closed, "the connection outlived the failed handshake"
            assert [str(e) for e in errors] == ["a bug after the 101"] * 2
            assert connected == []
            await until(lambda: not wss.clients, what="the dropped socket is still a client")
            assert "WebSocket handshake failed" in caplog.text
        finally:
            wss.close()
            await asyncio.wait_for(server.close_async(), 10)

    run(main)
