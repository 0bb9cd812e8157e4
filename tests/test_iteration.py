"""ws.connection.pull: recv / async for / send_async / context managers, on real sockets."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from websockets.asyncio.server import serve

from ws import ConnectError, WebSocket, WebSocketServer
from ws import http
from ws.exceptions import ConnectionClosed, NotOpenError

from .conftest import ROOT, Recorder, run
from .fixtures.processes import free_port


async def echo(conn: object) -> None:
    async for message in conn:  # type: ignore[attr-defined]
        await conn.send(message)  # type: ignore[attr-defined]


def url_of(server: object) -> str:
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return f"ws://127.0.0.1:{port}/"



def test_async_with_recv_and_iteration_coexist_with_listeners() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server)) as sock:
                assert sock.ready_state == WebSocket.OPEN
                seen: list[object] = []
                sock.on("message", lambda evt: seen.append(evt.data))
                await sock.send_async("one")
                await sock.send_async(b"\x00two")
                first = await sock.recv(timeout=5)
                assert (first.data, first.is_binary) == ("one", False)
                second = await sock.recv(timeout=5)
                assert (second.data, second.is_binary) == (b"\x00two", True)
                for i in range(3):
                    sock.send(f"m{i}")
                got = []
                async for event in sock:
                    got.append(event.data)
                    if len(got) == 3:
                        break
                assert got == ["m0", "m1", "m2"]
                assert seen == ["one", b"\x00two", "m0", "m1", "m2"]
            assert sock.ready_state == WebSocket.CLOSED

    run(main)


def test_iteration_ends_when_the_peer_closes_and_recv_then_raises() -> None:
    async def handler(conn: object) -> None:
        await conn.send("a")  # type: ignore[attr-defined]
        await conn.send("b")  # type: ignore[attr-defined]
        await conn.close(4001, "bye")  # type: ignore[attr-defined]

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server)) as sock:
                received = [event.data async for event in sock]
                assert received == ["a", "b"]
                with pytest.raises(ConnectionClosed) as info:
                    await sock.recv(timeout=5)
                assert (info.value.code, info.value.reason) == (4001, "bye")
                with pytest.raises(NotOpenError):
                    await sock.send_async("late")

    run(main)


def test_recv_timeout() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server)) as sock:
                with pytest.raises(TimeoutError):
                    await sock.recv(timeout=0.2)

    run(main)


def test_async_with_raises_the_connect_error() -> None:
    port = free_port()

    async def main() -> None:
        with pytest.raises(ConnectError, match="ECONNREFUSED"):
            async with WebSocket(f"ws://127.0.0.1:{port}/"):
                pass  # pragma: no cover

    run(main)


def test_full_inbox_pauses_reading_until_consumed() -> None:
    count = 1000

    async def flood(conn: object) -> None:
        for i in range(count):
            await conn.send(f"{i:08d}" + "." * 4000)  # type: ignore[attr-defined]
        await conn.wait_closed()  # type: ignore[attr-defined]

    async def main() -> None:
        async with serve(flood, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server), per_message_deflate=False) as sock:
                first = await sock.recv(timeout=5)
                assert first.data.startswith("00000000")
                for _ in range(200):  # let the flood fill the inbox
                    if sock.is_paused:
                        break
                    await asyncio.sleep(0.02)
                assert sock.is_paused
                # The bound is soft by one read of the socket (at most 256 KiB: ~64 messages).
                assert len(sock._inbox.items) <= sock._inbox.limit + 70
                got = [first.data] + [(await sock.recv(timeout=5)).data for _ in range(count - 1)]
                assert [int(data[:8]) for data in got] == list(range(count))
                assert not sock.is_paused

    run(main, timeout=60)


def test_send_async_waits_for_drain() -> None:
    async def main() -> None:
        server = http.Server(address="127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/")
        peers: list[WebSocket] = []
        wss.on("connection", lambda sock, req: (sock.pause(), peers.append(sock)))
        await server.serve_async()
        try:
            sock = WebSocket(f"ws://127.0.0.1:{server.port}/", per_message_deflate=False, high_water_mark=64 * 1024, low_water_mark=16 * 1024)
            rec = Recorder(sock, "drain")
            await sock.wait_open(timeout=5)
            chunk = b"x" * (256 * 1024)
            pending = asyncio.ensure_future(sock.send_async(chunk))
            for _ in range(40):  # the peer does not read: the write buffer cannot empty
                if sock._writing_paused and not pending.done():
                    break
                # Kernel buffers swallow the first chunks; keep writing until they are full.
                if pending.done():
                    pending = asyncio.ensure_future(sock.send_async(chunk))
                await asyncio.sleep(0.05)
            assert sock._writing_paused and sock.buffered_amount > 64 * 1024
            await asyncio.sleep(0.2)
            assert not pending.done()
            peers[0].resume()
            await asyncio.wait_for(pending, 10)
            assert rec.count("drain") >= 1
            sock.close()
            await sock.wait_closed(timeout=10)
        finally:
            await server.close_async()

    run(main, timeout=60)


def test_send_async_rejects_bad_data() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server)) as sock:
                with pytest.raises(TypeError):
                    sock.send_async(123)  # type: ignore[arg-type]

    run(main)


def test_blocking_recv_and_with_in_a_plain_thread() -> None:
    with http.Server(address="127.0.0.1:0") as server:
        wss = WebSocketServer(server=server, path="/echo")
        wss.on("connection", lambda sock, req: sock.on("message", lambda evt: sock.send(evt.data)))
        server.serve()
        with WebSocket(f"ws://127.0.0.1:{server.port}/echo") as sock:
            assert sock.ready_state == WebSocket.OPEN
            sock.send("ping?")
            assert sock.recv(timeout=10).data == "ping?"
            sock.send_async(b"bin", timeout=10)
            assert sock.recv(timeout=10).data == b"bin"
            with pytest.raises(TimeoutError):
                sock.recv(timeout=0.2)
        assert sock.ready_state == WebSocket.CLOSED
        with pytest.raises(ConnectionClosed):
            sock.recv(timeout=5)
        wss.close()


def test_plain_with_inside_asyncio_is_refused() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(url_of(server))
            with pytest.raises(RuntimeError, match="async with"):
                with sock:
                    pass  # pragma: no cover
            sock.close()
            await sock.wait_closed(timeout=10)

    run(main)


def test_recv_from_another_loop_thread() -> None:
    """A socket of the reactor, awaited from a different asyncio loop."""
    with http.Server(address="127.0.0.1:0") as server:
        wss = WebSocketServer(server=server, path="/")
        wss.on("connection", lambda sock, req: sock.send("hi"))
        server.serve()
        sock = WebSocket(f"ws://127.0.0.1:{server.port}/")

        async def main() -> str:
            await sock.wait_open(timeout=10)
            event = await sock.recv(timeout=10)
            sock.close()
            await sock.wait_closed(timeout=10)
            return event.data

        assert asyncio.run(main()) == "hi"
        wss.close()


@pytest.mark.parametrize(
    "script, expected",
    [
        ("async_iteration.py", "echo: one\necho: two\necho: three\nclient closed: True\n"),
        ("blocking_client.py", "reply: ping?\nreply: still there?\n"),
    ],
)
def test_example_scripts(script: str, expected: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "examples" / script)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
