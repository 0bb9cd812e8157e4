"""A finished connection frees itself by reference counting (``WebSocket._let_go``, ``ws._runtime.transports``).

Once a server-side socket is closed and ``'close'`` was emitted, it keeps
no reference to anything that refers back to it (transport, stream, protocol
object, the reader's callbacks), and asyncio's own transport is no longer in
a cycle with itself: a socket the application lets go of is freed at once,
with the collector off.  What the API offers after ``'close'`` answers as
before (the rest of the suite checks ``send``/``ping`` after a close too).
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any, Callable

import pytest

from ws import NotOpenError, WebSocket, WebSocketServer, http
from ws._runtime import transports
from ws.events import ReadyState

from .conftest import Recorder, connect, until
from .frames import frame
from .test_fastpath import LOOPS, run_on

_REQUEST = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
_CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # masked (zero key) Close 1000


def _echo(event: Any) -> None:
    event.target.send(event.data)  # (no closure over the socket: the application makes no cycle)


async def _served(
    on_socket: Callable[[WebSocket], None], **options: Any
) -> tuple[http.Server, WebSocketServer, list[weakref.ref[WebSocket]], asyncio.Future[tuple[int, str]]]:
    """A server whose sockets echo; weak references to them; a future of the first ``'close'``."""
    server = http.Server("127.0.0.1:0")
    wss = WebSocketServer(server=server, path="/ws", **options)
    refs: list[weakref.ref[WebSocket]] = []
    closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    def on_close(code: int, reason: str) -> None:
        if not closed.done():
            closed.set_result((code, reason))

    def on_connection(sock: WebSocket, _request: Any) -> None:
        refs.append(weakref.ref(sock))
        sock.on("message", _echo)
        sock.on("close", on_close)
        on_socket(sock)

    wss.on("connection", on_connection)
    await server.serve_async()
    return server, wss, refs, closed


async def _raw_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_REQUEST)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize(
    "how", ["peer_close", "server_close", "terminate", "peer_drops", "message_then_close", "large_message_then_close"]
)
def test_a_closed_server_socket_is_freed_without_the_collector(loop_name: str, how: str) -> None:
    """The harness' handshake and the other ends: the socket (and its transport) die with the collector off."""

    async def main() -> None:
        kept: list[WebSocket] = []
        server, wss, refs, closed = await _served(kept.append)
        port = server.port
        assert port is not None
        gc.collect()
        gc.disable()
        try:
            reader, writer = await _raw_handshake(port)
            await until(lambda: kept, 5, what="no connection")
            sock = kept.pop()
            transport = weakref.ref(sock._transport)  # type: ignore[arg-type]
            if how == "message_then_close":
                writer.write(frame(0x1, b"hello", mask=True))
                assert await asyncio.wait_for(reader.readexactly(7), 5) == b"\x81\x05hello"
            elif how == "large_message_then_close":  # on uvloop: long reads, through the buffered twin stream
                writer.write(frame(0x2, b"x" * (1 << 20), mask=True))
                echoed = await asyncio.wait_for(reader.readexactly(10 + (1 << 20)), 5)
                assert echoed[:2] == b"\x82\x7f" and echoed[10:] == b"x" * (1 << 20)
            if how in ("peer_close", "message_then_close", "large_message_then_close"):
                writer.write(_CLOSE)
            elif how == "server_close":
                sock.close(4000, "bye")
                assert await asyncio.wait_for(reader.readexactly(7), 5) == b"\x88\x05\x0f\xa0bye"
                writer.write(frame(0x8, b"\x0f\xa0bye", mask=True))
            elif how == "terminate":
                sock.terminate()
            else:
                writer.transport.abort()
            del sock
            code, _reason = await asyncio.wait_for(closed, 5)
            assert code == {"terminate": 1006, "peer_drops": 1006, "server_close": 4000}.get(how, 1000)
            await until(lambda: refs[0]() is None and transport() is None, 5, what="the socket or its transport is alive")
            assert len(wss.clients) == 0
            writer.close()
        finally:
            gc.enable()
            wss.close()
            await server.close_async()

    run_on(loop_name, main, 20)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_after_close_the_api_answers_as_before(loop_name: str) -> None:
    """Everything a user may still call on a closed socket: the socket kept its state, not its connection."""

    async def main() -> None:
        kept: list[WebSocket] = []
        server, wss, _refs, closed = await _served(kept.append)
        port = server.port
        assert port is not None
        try:
            client, rec = await connect(port, "/ws", per_message_deflate=False)
            await rec.wait("open")
            await until(lambda: kept, 5, what="no connection")
            sock = kept[0]
            errors = Recorder(sock, "error")
            client.close(4001, "done")
            assert await asyncio.wait_for(closed, 5) == (4001, "done")
            await rec.wait("close")
            assert sock._transport is None and sock._proto is None  # let go of
            assert sock.ready_state is ReadyState.CLOSED and sock.readyState == 3
            assert (sock.url, sock.protocol, sock.extensions) == ("/ws", "", "")
            assert sock.remote_address == "127.0.0.1" and sock.remoteAddress == "127.0.0.1"
            assert sock.buffered_amount == 0 and sock.bufferedAmount == 0
            request = sock.request
            assert request is not None and request.path == "/ws" and request.headers["upgrade"] == "websocket"
            assert request.socket.remote_address == "127.0.0.1"
            sock.send("late")
            sock.ping(b"p")
            sock.pong()
            sock.send(b"late", binary=True, fin=False)
            ((first,), (second,), (third,), (fourth,)) = await errors.wait("error", 4)
            assert all(isinstance(e, NotOpenError) for e in (first, second, third, fourth))
            assert str(first) == "WebSocket is not open: readyState 3 (CLOSED)"
            calls: list[Any] = []
            sock.send("late", lambda error: calls.append(error))
            await until(lambda: calls, 5, what="the send callback was not called")
            assert isinstance(calls[0], NotOpenError)
            sock.close()
            sock.close(1000, "again")
            sock.terminate()
            sock.pause()
            assert sock.is_paused
            sock.resume()
            assert sock.unref() is sock and sock.ref() is sock
            await asyncio.sleep(0.05)
            assert errors.count("error") == 4  # close(), terminate() and the rest are silent
            assert sock.ready_state is ReadyState.CLOSED
        finally:
            wss.close()
            await server.close_async()

    run_on(loop_name, main, 20)


def test_untangle_leaves_other_transports_alone() -> None:
    """The fallback: a transport not asyncio's own socket transport, or one still writing, is not touched."""

    class Other(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self._read_ready_cb = self.is_closing  # a bound method of its own, as asyncio's

        def is_closing(self) -> bool:
            return True

        def get_write_buffer_size(self) -> int:
            return 0

    other = Other()
    assert transports.untangle(other) is False
    assert other._read_ready_cb == other.is_closing

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        try:
            _reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            transport = writer.transport
            assert type(transport) is transports._SOCKET_TRANSPORT
            assert transports.untangle(transport) is False  # open: its callbacks are needed
            transport.pause_reading()
            transport.write(b"x" * (8 << 20))  # more than the kernel takes at once: some stays queued
            if transport.get_write_buffer_size():
                transport.close()
                assert transports.untangle(transport) is False  # closing but still draining
            transport.abort()
            await asyncio.sleep(0)
            assert transports.untangle(transport) is True
            assert transport._read_ready_cb is transports._done  # type: ignore[attr-defined]
            transport.resume_reading()  # closed: nothing (and nothing to call if it did)
            assert transports.untangle(transport) is False  # once
            await asyncio.sleep(0.01)
            del loop
        finally:
            server.close()
            await server.wait_closed()

    run_on("asyncio", main, 20)
