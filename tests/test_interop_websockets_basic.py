"""Basic interop with the ``websockets`` library (the full matrix is issue 5's).

Our server against the ``websockets`` asyncio client, and our client against
a ``websockets`` asyncio server: text, binary, a fragmented-size message,
subprotocols, compression, ping/pong and the closing handshake both ways.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from ws import WebSocket, WebSocketServer
from ws import http

from .conftest import Recorder, run

BIG = bytes(range(256)) * 4096  # 1 MiB


# -- our server, their client -------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_websockets_client_against_our_server(compression: str | None) -> None:
    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        wss = WebSocketServer(
            server=server, path="/echo", per_message_deflate=compression is not None, protocols=["v2", "v1"]
        )
        closes: list[tuple[int, str]] = []

        def on_connection(sock: WebSocket, request: Any) -> None:
            sock.on("message", lambda evt: sock.send(evt.data))
            sock.on("close", lambda code, reason: closes.append((code, reason)))

        wss.on("connection", on_connection)
        await server.serve_async()
        try:
            async with connect(
                f"ws://127.0.0.1:{server.port}/echo",
                subprotocols=["v1", "v2"],
                compression=compression,
                max_size=None,
                open_timeout=10,
            ) as conn:
                assert conn.subprotocol == "v2"
                negotiated = conn.response.headers.get("Sec-WebSocket-Extensions", "")
                assert ("permessage-deflate" in negotiated) == (compression is not None)
                await conn.send("héllo")
                assert await asyncio.wait_for(conn.recv(), 10) == "héllo"
                await conn.send(BIG)
                assert await asyncio.wait_for(conn.recv(), 10) == BIG
                await conn.send(["frag", "mented"])  # a fragmented text message
                assert await asyncio.wait_for(conn.recv(), 10) == "fragmented"
                pong = await conn.ping(b"p")
                await asyncio.wait_for(pong, 10)
                await conn.close(4000, "client bye")
            for _ in range(100):
                if closes:
                    break
                await asyncio.sleep(0.02)
            assert closes == [(4000, "client bye")]
        finally:
            wss.close()
            await asyncio.wait_for(server.close_async(), 10)

    run(main)


def test_our_server_closes_a_websockets_client_cleanly() -> None:
    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/")
        wss.on("connection", lambda sock, req: sock.on("message", lambda evt: sock.close(1000, "as asked")))
        await server.serve_async()
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=10) as conn:
                await conn.send("close please")
                with pytest.raises(ConnectionClosedOK):
                    await asyncio.wait_for(conn.recv(), 10)
                assert conn.close_code == 1000 and conn.close_reason == "as asked"
        finally:
            wss.close()
            await asyncio.wait_for(server.close_async(), 10)

    run(main)


def test_our_server_rejection_seen_by_websockets_client() -> None:
    async def main() -> None:
        server = http.Server("127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/", verify_client=lambda info: (False, 403, "Forbidden"))
        await server.serve_async()
        try:
            with pytest.raises(InvalidStatus) as caught:
                async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=10):
                    pass  # pragma: no cover
            assert caught.value.response.status_code == 403
        finally:
            wss.close()
            await asyncio.wait_for(server.close_async(), 10)

    run(main)


# -- our client, their server -------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_our_client_against_a_websockets_server(compression: str | None) -> None:
    async def handler(conn: Any) -> None:
        async for message in conn:
            if message == "close":
                await conn.close(4001, "server bye")
                return
            await conn.send(message)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=compression, subprotocols=["chat"], max_size=None) as srv:
            port = srv.sockets[0].getsockname()[1]
            sock = WebSocket(f"ws://127.0.0.1:{port}/", ["chat"])
            rec = Recorder(sock, "open", "message", "close", "error", "pong")
            await rec.wait("open", timeout=10)
            assert sock.protocol == "chat"
            assert sock.extensions.startswith("permessage-deflate") == (compression is not None)
            sock.send("héllo")
            sock.send(BIG)
            sock.ping(b"x")
            await rec.wait("pong", timeout=10)
            assert rec.args("pong") == [(b"x",)]
            msgs = await rec.wait("message", 2, timeout=10)
            assert msgs[0][0].data == "héllo" and msgs[1][0].data == BIG
            sock.send("close")
            ((code, reason),) = await rec.wait("close", timeout=10)
            assert (code, reason) == (4001, "server bye")
            assert rec.count("error") == 0

    run(main)


def test_our_client_close_handshake_with_a_websockets_server() -> None:
    seen: list[tuple[int | None, str | None]] = []

    async def handler(conn: Any) -> None:
        try:
            async for _ in conn:
                pass
        finally:
            seen.append((conn.close_code, conn.close_reason))

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as srv:
            port = srv.sockets[0].getsockname()[1]
            sock = WebSocket(f"ws://127.0.0.1:{port}/")
            rec = Recorder(sock, "open", "close", "error")
            await rec.wait("open", timeout=10)
            sock.close(1000, "client bye")
            ((code, reason),) = await rec.wait("close", timeout=10)
            assert (code, reason) == (1000, "client bye")
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.02)
            assert seen == [(1000, "client bye")]
            assert rec.count("error") == 0

    run(main)
