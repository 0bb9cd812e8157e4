"""The lean frame path (ws.protocol.reader / writer), checked byte by byte against a raw TCP peer.

The lean path must be invisible: every split of the input, every mix of
common and unusual frames, gives the same messages, in the same order, with
the same replies as the protocol object alone would.  Only what a peer sees
is asserted here; the reader's and writer's own state is tested without
sockets in tests/unit/test_protocol_*.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
import threading
from typing import Any, Callable

import pytest

from ws import WebSocket, WebSocketServer, http
from ws.events import BINARY, TEXT, MessageEvent
from ws.connection.websocket import _SOCKET_TRANSPORT, WebSocket as _WebSocket
from ws.protocol._websockets import Server as ServerProtocol
from ws._runtime.reads import READ_SIZE
from ws._runtime.reads import kept_budget, plain_reads
from ws.connection import websocket as _websocket
from ws.connection.metered import MeteredWebSocket
from ws._runtime.metrics import Tally
from ws.protocol.reader import ONE_SMALL_MAX, READ_AHEAD, SHORT_READ, apply_mask

from .conftest import Recorder, run, until
from .frames import frame

KEY = base64.b64encode(b"0123456789abcdef").decode()




class FrameReader:
    """Reads frames off a StreamReader (unmasking the client's, if masked)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    async def next(self, timeout: float = 10) -> tuple[int, bytes]:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        key = await self.reader.readexactly(4) if b1 & 0x80 else None
        payload = await self.reader.readexactly(n)
        return b0, apply_mask(payload, key) if key else payload


def run_on(loop_name: str, coro_fn: Any, timeout: float) -> None:
    """``run``, on asyncio's loop or on uvloop's (the ``speed`` extra: ``writelines``, not ``writev``, in ``_write_vector``)."""
    if loop_name == "asyncio":
        run(coro_fn, timeout)
        return
    import uvloop  # a test dependency: fails, never skips, when missing

    loop = uvloop.new_event_loop()  # (asyncio.Runner's loop_factory is 3.11+; the suite runs on 3.10 too)
    try:
        loop.run_until_complete(asyncio.wait_for(coro_fn(), timeout))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


LOOPS = ["asyncio", "uvloop"]


async def echo_server(
    reply: Callable[[WebSocket, Any], None] | None = None, **options: Any
) -> tuple[http.Server, WebSocketServer, list]:
    """A server echoing each message (or calling ``reply(sock, event)`` for it)."""
    server = http.Server(address="127.0.0.1:0")
    wss = WebSocketServer(server=server, path="/", **options)
    sockets: list = []

    def on_connection(sock: WebSocket, request: Any) -> None:
        sockets.append((sock, Recorder(sock, "error", "close")))
        if reply is None:
            sock.on("message", lambda evt: sock.send(evt.data))
        else:
            sock.on("message", lambda evt: reply(sock, evt))

    wss.on("connection", on_connection)
    await server.serve_async()
    return server, wss, sockets


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, FrameReader]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer, FrameReader(reader)


MIXED = [
    frame(0x1, "héllo ✓".encode()),
    frame(0x2, bytes(range(256)) * 2),  # 16-bit length
    frame(0x9, b"ping-1"),
    frame(0x1, b"frag-", fin=False),  # a fragmented text with a ping inside
    frame(0x9, b"ping-2"),
    frame(0x0, b"ment", fin=False),
    frame(0x0, b"ed", fin=True),
    frame(0x2, b"\x07" * 70000),  # 64-bit length
    frame(0x1, b""),
]
EXPECTED = [
    (0x81, "héllo ✓".encode()),
    (0x82, bytes(range(256)) * 2),
    (0x8A, b"ping-1"),
    (0x8A, b"ping-2"),
    (0x81, b"frag-mented"),
    (0x82, b"\x07" * 70000),
    (0x81, b""),
]


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("chunk", [0, 1, 3, 7, 1000], ids=lambda c: f"chunk{c or 'all'}")
def test_any_split_of_mixed_frames_gives_the_same_replies_in_order(chunk: int, loop_name: str) -> None:
    async def main() -> None:
        server, _, sockets = await echo_server()
        reader, writer, frames = await raw_client(server.port)
        wire = b"".join(MIXED)
        if chunk == 0:
            writer.write(wire)
        else:
            for i in range(0, len(wire), chunk):
                writer.write(wire[i : i + chunk])
                if chunk < 10 and i % 64 == 0:
                    await writer.drain()
                    await asyncio.sleep(0)  # really separate reads, now and then
        got = [await frames.next() for _ in EXPECTED]
        assert got == EXPECTED
        sock, rec = sockets[0]
        assert rec.count("error") == 0
        writer.write(frame(0x8, struct.pack("!H", 1000)))
        assert await frames.next() == (0x88, struct.pack("!H", 1000))
        await rec.wait("close", timeout=10)
        writer.close()
        server.close()

    run_on(loop_name, main, 60)


def test_a_listener_s_reply_with_a_ping_or_a_close_leaves_in_order() -> None:
    # One small frame a read (the read callback writes a lone reply itself): a ping sent from
    # the listener goes behind the reply before it, a close behind the reply, with nothing after.
    def reply(sock: WebSocket, evt: Any) -> None:
        sock.send(evt.data)
        if evt.data == "ping":
            sock.ping(b"p")
            sock.send("after")
        elif evt.data == "bye":
            sock.close(1000, "done")

    async def main() -> None:
        server, _, _ = await echo_server(reply)
        reader, writer, frames = await raw_client(server.port)
        for text in ("one", "ping", "two", "bye"):
            writer.write(frame(0x1, text.encode()))
            await writer.drain()
            await asyncio.sleep(0.01)  # one frame a read
        got = [await frames.next() for _ in range(7)]
        assert got == [
            (0x81, b"one"), (0x81, b"ping"), (0x89, b"p"), (0x81, b"after"), (0x81, b"two"), (0x81, b"bye"),
            (0x88, struct.pack("!H", 1000) + b"done"),
        ]
        writer.write(frame(0x8, struct.pack("!H", 1000)))
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the server ends the connection, nothing more
        writer.close()
        server.close()

    run(main, 30)


class _CountingTransport(asyncio.Transport):
    """Takes the socket's writes; the one ``BufferedProtocol`` it feeds is ``stream``."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.stream: Any = None

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def set_protocol(self, protocol: Any) -> None:
        self.stream = protocol

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


class _Req:
    url = "/"
    remote_address = "127.0.0.1"


def _accepted(max_size: int, cls: type[_WebSocket] = _WebSocket) -> tuple[_WebSocket, _CountingTransport]:
    """An OPEN server socket (of ``cls``) on a ``_CountingTransport`` (call on the running loop)."""
    proto = ServerProtocol(max_size=max_size)
    proto.mark_open()
    proto.read_frames()
    transport = _CountingTransport()
    sock = cls._accepted(asyncio.get_running_loop(), proto, transport, _Req(), None, {})  # type: ignore[arg-type]
    return sock, transport


def test_many_messages_in_one_read_leave_in_one_write() -> None:
    async def main() -> None:
        sock, transport = _accepted(1 << 20)
        sock.on("message", lambda evt: sock.send(evt.data))
        messages = [f"m{i}".encode() for i in range(200)]
        data = b"".join(frame(0x1, m) for m in messages)
        buffer = transport.stream.get_buffer(-1)  # as asyncio reads: into the buffer it is given
        buffer[: len(data)] = data
        transport.stream.buffer_updated(len(data))
        # 200 echoes of one read: one write, with every frame in order.
        assert len(transport.writes) == 1
        assert transport.writes[0] == b"".join(bytes((0x81, len(m))) + m for m in messages)

    run(main, 30)


def test_small_reads_keep_their_own_copy_of_the_shared_buffer() -> None:
    # A read shorter than a small frame's largest (ONE_SMALL_MAX) reaches the reader as a copy
    # (a bytearray slice), not a view: an incomplete frame it keeps must survive the next read
    # overwriting the thread's shared buffer, and small replies keep their exact wire bytes.
    async def main() -> None:
        sock, transport = _accepted(1 << 20)
        sock.on("message", lambda evt: sock.send(evt.data))
        stream = transport.stream
        wire = frame(0x1, "héllo ✓".encode()) + frame(0x2, bytes(range(100)))
        for n in (1, 3, 7, len(wire) - 5):  # every split keeps a head or a tail of a frame
            transport.writes.clear()
            _read_in(stream, wire[:n])
            stream.get_buffer(-1)[:ONE_SMALL_MAX] = b"\xff" * ONE_SMALL_MAX  # the shared buffer reused meanwhile
            _read_in(stream, wire[n:])
            assert b"".join(transport.writes) == (
                bytes((0x81, len("héllo ✓".encode()))) + "héllo ✓".encode() + bytes((0x82, 100)) + bytes(range(100))
            )

    run(main, 30)


def test_a_message_event_is_whole_though_built_without_its_init() -> None:
    # _deliver fills MessageEvent's slots itself (no __init__ call): every field is set.
    async def main() -> None:
        sock, transport = _accepted(1 << 20)
        got: list[MessageEvent] = []
        sock.on("message", got.append)
        _read_in(transport.stream, frame(0x1, b"text") + frame(0x2, b"\x00\x01"))
        assert [(type(e), e.type, e.data, e.target, e.is_binary) for e in got] == [
            (MessageEvent, TEXT, "text", sock, False), (MessageEvent, BINARY, b"\x00\x01", sock, True)
        ]
        assert repr(got[0]) == "<MessageEvent text 4 chars>" and str(got[1]) == "b'\\x00\\x01'"

    run(main, 30)


def _read_in(stream: Any, wire: bytes) -> list[int]:
    """Put ``wire`` through ``stream`` as asyncio reads (into the buffer it is given); the size of each buffer."""
    sizes = []
    pos = 0
    while pos < len(wire):
        buffer = stream.get_buffer(-1)
        sizes.append(len(buffer))
        n = min(len(buffer), len(wire) - pos)
        buffer[:n] = wire[pos : pos + n]
        stream.buffer_updated(n)
        pos += n
    return sizes


def test_reads_are_short_right_after_a_large_frame_read_in_place() -> None:
    # 1 MiB reads, but not into the shared buffer right after a frame read in
    # place: the next large frame's first part is copied out of that buffer.
    async def main() -> None:
        sock, transport = _accepted(1 << 24)
        got: list[bytes] = []
        sock.on("message", lambda evt: got.append(evt.data))
        stream = transport.stream
        payloads = [os.urandom(3 << 20), os.urandom(3 << 20), b"small"]
        wire = b"".join(frame(0x2, p) for p in payloads)
        sizes = _read_in(stream, wire)
        assert got == payloads
        # A full read, the rest of the first frame in place, then a short read.
        assert sizes[:3] == [READ_SIZE, len(frame(0x2, payloads[0])) - READ_SIZE, SHORT_READ]
        assert stream.get_buffer(-1).nbytes == READ_SIZE  # a small frame came last: full reads again

    run(main, 30)


def test_reads_are_bounded_once_the_thread_s_kept_budget_is_spent() -> None:
    # Paused connections keep more than the budget: a read takes the rest of
    # the frame in progress and READ_AHEAD beyond it, no more.
    async def main() -> None:
        sock, transport = _accepted(1 << 24)
        got: list[bytes] = []
        sock.on("message", lambda evt: got.append(evt.data))
        stream = transport.stream
        stream.get_buffer(-1)  # (the first read finds the thread's buffer and budget)
        budget = kept_budget()
        limit = budget.limit
        budget.set_limit(0)
        try:
            payloads = [os.urandom(3 << 20), os.urandom(100_000), b"small"]
            wire = b"".join(frame(0x2, p) for p in payloads)
            sizes = _read_in(stream, wire)
            assert got == payloads
            first = len(frame(0x2, payloads[0]))
            # READ_AHEAD; the frame in progress (not an eighth in yet) and READ_AHEAD,
            # up to READ_SIZE; its rest in place; a short read (the other two); then READ_AHEAD again.
            assert sizes == [READ_AHEAD, READ_SIZE, first - READ_AHEAD - READ_SIZE, SHORT_READ]
            assert stream.get_buffer(-1).nbytes == READ_AHEAD
            budget.set_limit(limit)
            assert stream.get_buffer(-1).nbytes == READ_SIZE  # the budget has room again: full reads
        finally:
            budget.set_limit(limit)

    run(main, 30)


@pytest.mark.parametrize(
    "wire, code",
    [
        (frame(0x1, b"\xff\xfe"), 1007),  # bad UTF-8 in a lean text frame
        (frame(0x2, b"x", mask=False), 1002),  # an unmasked client frame
        (frame(0x2, b"x", rsv=0b100), 1002),  # a reserved bit
        (frame(0x3, b"x"), 1002),  # a reserved opcode
        (frame(0x0, b"x"), 1002),  # a continuation with nothing to continue
    ],
    ids=["utf8", "unmasked", "rsv1", "opcode3", "stray-cont"],
)
def test_bad_frames_after_good_ones_fail_with_the_right_code(wire: bytes, code: int) -> None:
    async def main() -> None:
        server, _, sockets = await echo_server()
        reader, writer, frames = await raw_client(server.port)
        writer.write(frame(0x1, b"ok") + wire + frame(0x1, b"never echoed"))
        assert await frames.next() == (0x81, b"ok")
        op, payload = await frames.next()
        assert op == 0x88 and struct.unpack("!H", payload[:2])[0] == code
        sock, rec = sockets[0]
        await rec.wait("close", timeout=10)
        assert rec.names()[0] == "error" and rec.count("error") == 1 and rec.count("close") == 1
        writer.close()
        server.close()

    run(main, 30)


def test_announced_length_over_max_payload_fails_without_waiting_for_it() -> None:
    async def main() -> None:
        server, _, sockets = await echo_server(max_payload=1000)
        reader, writer, frames = await raw_client(server.port)
        # Only the header of a 1 MiB frame: the server must not wait for (or buffer) the rest.
        writer.write(bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 20) + b"\x00\x00\x00\x00")
        op, payload = await frames.next()
        assert op == 0x88 and struct.unpack("!H", payload[:2])[0] == 1009
        sock, rec = sockets[0]
        await rec.wait("close", timeout=10)
        writer.close()
        server.close()

    run(main, 30)


def test_incomplete_frame_then_eof_is_an_abnormal_close() -> None:
    async def main() -> None:
        server, _, sockets = await echo_server()
        reader, writer, frames = await raw_client(server.port)
        writer.write(frame(0x1, b"whole") + frame(0x1, b"cut short")[:5])
        assert await frames.next() == (0x81, b"whole")
        writer.write_eof()
        sock, rec = sockets[0]
        (code, _reason), = await rec.wait("close", timeout=10)
        assert code == 1006
        writer.close()
        server.close()

    run(main, 30)


def test_close_from_a_listener_hands_the_rest_of_the_batch_to_the_protocol() -> None:
    async def main() -> None:
        server = http.Server(address="127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/")
        seen: list[str] = []

        def on_connection(sock: WebSocket, request: Any) -> None:
            def on_message(evt: Any) -> None:
                seen.append(evt.data)
                if evt.data == "bye":
                    sock.close(4000, "done")

            sock.on("message", on_message)

        wss.on("connection", on_connection)
        await server.serve_async()
        reader, writer, frames = await raw_client(server.port)
        writer.write(frame(0x1, b"a") + frame(0x1, b"bye") + frame(0x1, b"after close"))
        op, payload = await frames.next()
        assert op == 0x88 and payload == struct.pack("!H", 4000) + b"done"
        writer.write(frame(0x8, struct.pack("!H", 4000)))
        await asyncio.wait_for(reader.read(), 10)  # the server closes TCP
        # Messages after our close frame are still delivered (RFC 6455 5.5.1 allows it).
        assert seen[:2] == ["a", "bye"]
        writer.close()
        server.close()

    run(main, 30)


async def _closed_mid_message(trigger: str, sizes: tuple[int, int, int], **options: Any) -> tuple[list[Any], list[tuple[int, bytes]], Recorder, bool]:
    """A peer in the middle of a fragmented message of three fragments (``sizes``) when the server calls ``close()``.

    ``trigger``: ``"ping"``, the server's ``'ping'`` listener closes, in the
    read that holds the first two fragments; ``"other"``, a listener of
    another connection closes it between two reads, while the second
    fragment is half in.  The peer then sends the rest and its close frame.
    Returns the messages the server heard, the frames the peer got, the
    server socket's recorder, and whether the server waited for our close frame.
    """
    server = http.Server(address="127.0.0.1:0")
    wss = WebSocketServer(server=server, path="/", **options)
    heard: list[Any] = []
    sockets: list[tuple[WebSocket, Recorder]] = []

    def on_connection(sock: WebSocket, request: Any) -> None:
        sockets.append((sock, Recorder(sock, "error", "close")))
        def on_message(evt: Any) -> None:
            if evt.data == "close the other":
                sockets[0][0].close(1000, "bye")
            else:
                heard.append(evt.data)

        sock.on("ping", lambda data: sock.close(1000, "bye"))
        sock.on("message", on_message)

    wss.on("connection", on_connection)
    await server.serve_async()
    try:
        reader, writer, frames = await raw_client(server.port)
        first, second, third = (frame(0x1, b"a" * sizes[0], fin=False), frame(0x0, b"b" * sizes[1], fin=False), frame(0x0, b"c" * sizes[2]))
        got: list[tuple[int, bytes]] = []
        if trigger == "ping":
            writer.write(first + frame(0x9, b"p") + second)
            got.append(await frames.next())  # the pong
        else:
            other_reader, other, _ = await raw_client(server.port)
            writer.write(first + second[:-1])  # (the reader keeps the incomplete frame)
            await until(lambda: sockets and sockets[0][0]._reader.in_message, 5, what="the message did not start")
            other.write(frame(0x1, b"close the other"))
        got.append(await frames.next())  # the close frame
        writer.write((b"" if trigger == "ping" else second[-1:]) + third)
        try:
            waited = await asyncio.wait_for(reader.read(1), 0.3) != b""
        except asyncio.TimeoutError:
            waited = True  # still open: the server waits for our close frame
        if waited:
            writer.write(frame(0x8, struct.pack("!H", 1000)))
            assert await asyncio.wait_for(reader.read(), 10) == b""  # the server closes TCP
        rec = sockets[0][1]
        await rec.wait("close", timeout=10)
        writer.close()
        return heard, got, rec, waited
    finally:
        server.close()


@pytest.mark.parametrize("trigger", ["ping", "other"])
def test_close_in_the_middle_of_a_fragmented_message_the_protocol_reads_the_rest(trigger: str) -> None:
    # The lean reader had the message open: the protocol object is told its size so far
    # (continue_message) and parses the rest of it, ending in a normal closing handshake.
    async def main() -> None:
        heard, got, rec, waited = await _closed_mid_message(trigger, (600, 100, 10), max_payload=1000)
        assert got[-1] == (0x88, struct.pack("!H", 1000) + b"bye")
        assert waited and heard == ["a" * 600 + "b" * 100 + "c" * 10]  # completed after close(): delivered
        assert rec.log == [("close", (1000, ""))]

    run(main, 30)


@pytest.mark.parametrize("trigger", ["ping", "other"])
def test_a_continuation_past_max_payload_after_the_hand_over_is_refused(trigger: str) -> None:
    # 600 + 100 bytes came through the lean reader; 400 more take the message past max_payload.
    async def main() -> None:
        heard, got, rec, waited = await _closed_mid_message(trigger, (600, 100, 400), max_payload=1000)
        assert got[-1] == (0x88, struct.pack("!H", 1000) + b"bye")  # (our close was sent first: no 1009 frame after it)
        assert not waited and heard == []  # dropped at once, the message never delivered
        ((error,),) = rec.args("error")
        assert "max payload size exceeded" in str(error) and "after reading 700 bytes" in str(error), error
        assert rec.names() == ["error", "close"]

    run(main, 30)


# -- client side: our WebSocket against a raw server -----------------------------------


def test_client_reads_frames_that_arrive_with_the_101_and_masks_what_it_sends() -> None:
    async def main() -> None:
        received: list[tuple[int, bytes]] = []
        done = asyncio.get_running_loop().create_future()
        first = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await reader.readuntil(b"\r\n\r\n")
            key = [l.split(b":", 1)[1].strip() for l in request.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            # The 101 and the first frames in one write, the last frame split in two.
            tail = frame(0x2, b"\x01" * 300, mask=False)
            writer.write(response + frame(0x1, b"one", mask=False) + frame(0x9, b"p", mask=False) + tail[:3])
            await writer.drain()
            await asyncio.wait_for(first, 10)  # the client has read the first write: the rest is another read
            writer.write(tail[3:])
            frames = FrameReader(reader)
            for _ in range(4):
                b0, payload = await frames.next()
                received.append((b0, payload))
            done.set_result(None)
            writer.close()

        raw = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = raw.sockets[0].getsockname()[1]
        sock = WebSocket(f"ws://127.0.0.1:{port}/", per_message_deflate=False)
        rec = Recorder(sock, "open", "message", "ping", "error")
        sock.on("message", lambda evt: sock.send(evt.data))
        sock.once("message", lambda evt: first.done() or first.set_result(None))
        messages = await rec.wait("message", 2, timeout=10)
        assert [m[0].data for m in messages] == ["one", b"\x01" * 300]
        sock.send("from client " * 20)
        await asyncio.wait_for(done, 10)
        # FrameReader unmasked them: the client masked every frame.
        assert received == [(0x81, b"one"), (0x8A, b"p"), (0x82, b"\x01" * 300), (0x81, ("from client " * 20).encode())]
        assert rec.count("error") == 0
        sock.terminate()
        raw.close()

    run(main, 30)


def test_client_large_echo_through_our_server() -> None:
    async def main() -> None:
        server, _, _ = await echo_server()
        sock = WebSocket(f"ws://127.0.0.1:{server.port}/", per_message_deflate=False)
        rec = Recorder(sock, "open", "message", "close")
        await rec.wait("open", timeout=10)
        big = os.urandom(3 << 20)
        sock.send(big)
        sock.send("after the big one")
        messages = await rec.wait("message", 2, timeout=30)
        assert messages[0][0].data == big and messages[1][0].data == "after the big one"
        sock.close()
        await rec.wait("close", timeout=10)
        server.close()

    run(main, 60)


# -- large frames: read straight into a buffer of their size --------------------------

LARGE = [os.urandom(300_000), os.urandom(1 << 20), b"\x05" * 200_000, os.urandom(2 << 20)]


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("chunk", [0, 4096, 65_537], ids=lambda c: f"chunk{c or 'all'}")
def test_large_frames_between_small_ones_arrive_whole_and_in_order(chunk: int, loop_name: str) -> None:
    async def main() -> None:
        server, _, sockets = await echo_server()
        reader, writer, frames = await raw_client(server.port)
        wire = b"".join(frame(0x2, p) + frame(0x1, b"small %d" % i) for i, p in enumerate(LARGE))
        step = chunk or len(wire)
        for i in range(0, len(wire), step):
            writer.write(wire[i : i + step])
            await writer.drain()
        for i, payload in enumerate(LARGE):
            assert await frames.next() == (0x82, payload)
            assert await frames.next() == (0x81, b"small %d" % i)
        sock, rec = sockets[0]
        assert rec.count("error") == 0
        writer.close()
        server.close()

    run_on(loop_name, main, 60)


def test_eof_in_the_middle_of_a_large_frame_is_an_abnormal_close() -> None:
    async def main() -> None:
        server, _, sockets = await echo_server()
        reader, writer, frames = await raw_client(server.port)
        writer.write(frame(0x2, os.urandom(1 << 20))[: 600_000])
        await writer.drain()
        writer.write_eof()
        await until(lambda: sockets, timeout=10)
        sock, rec = sockets[0]
        (code, _reason), = await rec.wait("close", timeout=10)
        assert code == 1006
        writer.close()
        server.close()

    run(main, 30)


# -- large frames sent: header and payload apart, one vectored write -----------------


class _Sink(asyncio.Protocol):
    """Counts pause_writing() calls of the transport it is given."""

    def __init__(self) -> None:
        self.pauses = 0

    def pause_writing(self) -> None:
        self.pauses += 1




@pytest.mark.parametrize("loop_name", LOOPS)
def test_vectored_writes_reach_the_peer_whole_and_in_order_when_the_socket_is_full(loop_name: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        sink = _Sink()
        transport, _ = await loop.create_connection(lambda: sink, sock=ours)
        if loop_name == "uvloop":
            assert type(loop).__module__.startswith("uvloop") and type(transport) is not _SOCKET_TRANSPORT  # writelines
        elif _SOCKET_TRANSPORT is not None:
            assert type(transport) is _SOCKET_TRANSPORT  # the writev path, not writelines
        got = bytearray()

        async def read(expected: bytes) -> None:
            while len(got) < len(expected):
                got.extend(await asyncio.wait_for(loop.sock_recv(theirs, 1 << 20), 10))
            assert got == expected

        # More bytes than the socket takes: the kernel stops inside the large
        # piece, the rest goes through the transport; then pieces behind what
        # the transport holds.
        batches = [[b"head", os.urandom(3 << 20), b"tail"], [b"next", os.urandom(100_000)]]
        for pieces in batches:
            _WebSocket._write_vector(transport, pieces)
        assert transport.get_write_buffer_size() > 0 and sink.pauses == 1  # flow control as usual
        await read(b"".join(batches[0] + batches[1]))
        await until(lambda: not transport.get_write_buffer_size(), timeout=10)
        # More pieces than one writev takes.
        batches.append([b"h%d" % i for i in range(1500)])
        _WebSocket._write_vector(transport, batches[-1])
        await read(b"".join(piece for pieces in batches for piece in pieces))
        transport.close()
        theirs.close()

    run_on(loop_name, main, 30)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_64k_echoes_sixteen_in_flight_come_back_whole_and_in_order(loop_name: str) -> None:
    # The harness' large_64k on a small scale, on both loops: reads of many
    # frames, one of them cut by the end of a read, echoed as header and
    # payload apart in one vectored write (``writev``, or uvloop's ``writelines``).
    async def main() -> None:
        server, _, sockets = await echo_server()
        reader, writer, frames = await raw_client(server.port)
        payloads = [os.urandom(65536) for _ in range(64)]
        for i, payload in enumerate(payloads):
            writer.write(frame(0x2, payload))
            await writer.drain()
            if i >= 15:  # 16 unanswered: wait for the oldest
                assert await frames.next() == (0x82, payloads[i - 15])
        for payload in payloads[-15:]:
            assert await frames.next() == (0x82, payload)
        sock, rec = sockets[0]
        assert rec.count("error") == 0
        writer.close()
        server.close()

    run_on(loop_name, main, 60)


async def _one_echo_peer() -> tuple[http.Server, asyncio.StreamWriter, FrameReader, WebSocket, Recorder]:
    """An echo server, a raw peer connected to it, and the server's socket for that peer (with its Recorder)."""
    server, _, sockets = await echo_server()
    _, writer, frames = await raw_client(server.port)
    await until(lambda: sockets)
    sock, rec = sockets[0]
    return server, writer, frames, sock, rec


async def _ping_pong(writer: asyncio.StreamWriter, frames: FrameReader, count: int) -> None:
    """``count`` small text messages, each echoed before the next is sent (one short read each)."""
    for i in range(count):
        writer.write(frame(0x1, b"small %d" % i))
        assert await frames.next() == (0x81, b"small %d" % i)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_on_uvloop_small_reads_are_plain_and_long_ones_go_through_our_buffers(loop_name: str) -> None:
    # uvloop hands a plain protocol a bytes copy of each read: cheaper than
    # get_buffer/buffer_updated for a small message, dearer for a long read.  A
    # server socket on uvloop's TCP transport reads plain while reads are small,
    # through its buffers from a long read on (large frames straight into their
    # own buffer), and plain again after SMALL_RUN short reads; asyncio's
    # transports always get the buffered protocol.  The peer sees the same echoes.
    async def main() -> None:
        server, writer, frames, sock, rec = await _one_echo_peer()
        transport = sock._transport
        plain = "_PlainStream" if loop_name == "uvloop" else "_Stream"
        buffered = "_SwitchingStream" if loop_name == "uvloop" else "_Stream"
        await _ping_pong(writer, frames, 3)
        assert type(transport.get_protocol()).__name__ == plain
        writer.write(b"".join(frame(0x2, p) for p in LARGE))  # long reads; large frames read in place
        for payload in LARGE:
            assert await frames.next() == (0x82, payload)
        assert type(transport.get_protocol()).__name__ == buffered
        assert sock._reader.direct_reads  # a large frame may come straight into its buffer
        await _ping_pong(writer, frames, _websocket.SMALL_RUN)
        assert type(transport.get_protocol()).__name__ == plain
        assert not sock._reader.direct_reads or loop_name == "asyncio"
        writer.write(b"".join(frame(0x2, p) for p in LARGE[:2]))  # and back again
        for payload in LARGE[:2]:
            assert await frames.next() == (0x82, payload)
        assert type(transport.get_protocol()).__name__ == buffered
        assert sock._reader.direct_reads
        await _ping_pong(writer, frames, _websocket.SMALL_RUN)
        assert type(transport.get_protocol()).__name__ == plain
        assert rec.count("error") == 0
        writer.close()
        server.close()

    run_on(loop_name, main, 60)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_large_frames_trickling_in_across_the_switches_of_reads_arrive_whole(loop_name: str) -> None:
    # A large frame started in a short plain read is kept as an incomplete frame,
    # not read in place (only get_buffer can go on with that); one read in place
    # stays buffered while the rest trickles in, however many short reads that
    # takes (plain reads cannot fill a frame's buffer).
    async def main() -> None:
        server, writer, frames, sock, rec = await _one_echo_peer()
        big = os.urandom(300_000)

        async def trickle(wire: bytes, first: int) -> None:
            writer.write(wire[:first])  # an eighth of the frame and more: enough for a buffer of its size
            await asyncio.sleep(0.05)
            for i in range(first, len(wire), 2000):
                writer.write(wire[i : i + 2000])
                await asyncio.sleep(0.002)  # short reads, one at a time
            assert await frames.next() == (0x82, big)

        writer.write(frame(0x2, LARGE[1]))  # a long read: buffered reads (on uvloop)
        assert await frames.next() == (0x82, LARGE[1])
        await _ping_pong(writer, frames, _websocket.SMALL_RUN)  # short ones: plain reads again
        await trickle(frame(0x2, big), 40_000)  # starts in a short plain read
        writer.write(frame(0x2, LARGE[1]))  # a long read: buffered reads
        assert await frames.next() == (0x82, LARGE[1])
        await trickle(frame(0x2, big), 100_000)  # read in place, then short reads
        writer.write(frame(0x1, b"last"))
        assert await frames.next() == (0x81, b"last")
        assert rec.count("error") == 0
        writer.close()
        server.close()

    run_on(loop_name, main, 60)


def test_only_uvloop_s_plain_tcp_transports_read_plain() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
        assert plain_reads(transport) is (type(loop).__module__ == "uvloop")
        transport.close()
        theirs.close()

    run(main, 10)
    run_on("uvloop", main, 10)
    assert not plain_reads(object())


def test_wss_on_uvloop_keeps_buffered_reads() -> None:
    # uvloop's TLS transport copies a read for either kind of protocol: no plain reads there.
    from .fixtures.tls import TestPKI

    pki = TestPKI()

    async def main() -> None:
        server = http.Server(address="127.0.0.1:0", ssl=pki.server_context("localhost"))
        wss = WebSocketServer(server=server, path="/")
        sockets: list[WebSocket] = []

        def on_connection(sock: WebSocket, request: Any) -> None:
            sockets.append(sock)
            sock.on("message", lambda event: sock.send(event.data))

        wss.on("connection", on_connection)
        await server.serve_async()
        client = WebSocket(f"wss://localhost:{server.port}/", ssl=pki.client_context())
        rec = Recorder(client, "open", "message", "close")
        await rec.wait("open", timeout=10)
        for text in ("one", "two"):
            client.send(text)
        got = await rec.wait("message", 2, timeout=10)
        assert [m[0].data for m in got] == ["one", "two"]
        assert not plain_reads(sockets[0]._transport)
        assert type(sockets[0]._transport.get_protocol()).__name__ == "_Stream"
        client.close()
        await rec.wait("close", timeout=10)
        server.close()

    run_on("uvloop", main, 30)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_pause_inside_a_plain_read_keeps_the_rest_of_it_for_resume(loop_name: str) -> None:
    # uvloop's plain reads are bytes the transport does not reuse; what a
    # listener's pause() leaves unread of one is kept and delivered on resume.
    async def main() -> None:
        server = http.Server(address="127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/")
        got: list[str] = []
        paused: list[WebSocket] = []

        def on_connection(sock: WebSocket, request: Any) -> None:
            def on_message(event: Any) -> None:
                got.append(event.data)
                sock.send(event.data)
                if event.data == "pause":
                    sock.pause()
                    paused.append(sock)

            sock.on("message", on_message)

        wss.on("connection", on_connection)
        await server.serve_async()
        reader, writer, frames = await raw_client(server.port)
        texts = ["a", "pause", "b", "c", "d"]
        writer.write(b"".join(frame(0x1, t.encode()) for t in texts))  # one read
        await until(lambda: paused)
        if loop_name == "uvloop":
            assert type(paused[0]._transport.get_protocol()).__name__ == "_PlainStream"
        await asyncio.sleep(0.05)
        assert got == ["a", "pause"]
        paused[0].resume()
        for t in texts:
            assert await frames.next() == (0x81, t.encode())
        assert got == texts
        writer.close()
        server.close()

    run_on(loop_name, main, 30)


def test_sockets_keep_few_enough_attributes_in_their_dict_for_shared_keys() -> None:
    # CPython keeps up to 30 attribute names of a class's instances as shared-key
    # values; past 30 every socket gets a dict of its own and each method call on
    # it is slower (issue 17 took it to 35: +5% CPU per small echo).  New state goes
    # into WebSocket.__slots__; two names are left for users' own attributes.
    async def main() -> None:
        server, _, sockets = await echo_server()
        client = WebSocket(f"ws://127.0.0.1:{server.port}/")
        rec = Recorder(client, "open", "close")
        await rec.wait("open")
        await until(lambda: sockets)
        names = set(vars(sockets[0][0])) | set(vars(client))
        assert len(names) <= 28, f"{len(names)} names in a socket's __dict__ (at most 28): {sorted(names)}"
        client.close()
        await rec.wait("close")
        server.close()

    run(main)


def _quick_is_true_to_the_state(sock: _WebSocket) -> bool:
    """``_quick`` (the one attribute a listener's send tests) against the state it stands for."""
    return sock._quick == (
        sock._lean and sock._ready_state is _websocket.OPEN and not sock._hops and not sock._writing_paused
        and not sock._fragmenting and type(sock) is _WebSocket
    )


def test_a_listener_s_reply_takes_the_short_way_only_while_nothing_else_may_go_first() -> None:
    # send() from a listener tests one attribute (_quick) kept up to date by every change of
    # what it stands for.  A reply while a fragmented message is open continues it; one while a
    # send from another thread is on its way goes after it; either way the wire says so.
    async def main() -> None:
        sock, transport = _accepted(1 << 20)
        sock.on("message", lambda evt: sock.send(evt.data))
        stream = transport.stream
        assert sock._quick and _quick_is_true_to_the_state(sock)

        sock.send("open", fin=False)  # a fragmented message, outside a listener
        assert not sock._quick and _quick_is_true_to_the_state(sock)
        await asyncio.sleep(0)
        transport.writes.clear()
        _read_in(stream, frame(0x1, b"end"))  # the listener's reply ends it: a continuation, FIN
        assert b"".join(transport.writes) == bytes((0x80, 3)) + b"end"
        assert sock._quick and _quick_is_true_to_the_state(sock)

        transport.writes.clear()
        thread = threading.Thread(target=sock.send, args=("from a thread",))
        thread.start()
        thread.join()  # (the loop does not run meanwhile: the message is on its way)
        assert sock._hops == 1 and not sock._quick and _quick_is_true_to_the_state(sock)
        _read_in(stream, frame(0x1, b"echo"))  # the reply queues behind the thread's message
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert b"".join(transport.writes) == bytes((0x81, 13)) + b"from a thread" + bytes((0x81, 4)) + b"echo"
        assert sock._quick and _quick_is_true_to_the_state(sock)

        sock._writing_blocked()  # the transport's pause_writing
        assert not sock._quick and _quick_is_true_to_the_state(sock)
        sock._writing_resumed()
        assert sock._quick and _quick_is_true_to_the_state(sock)

        sock.close()
        await asyncio.sleep(0)
        assert not sock._quick and _quick_is_true_to_the_state(sock)

    run(main, 30)


def test_a_subclass_s_sends_never_take_the_short_way() -> None:
    # A subclass may count or shape what it sends in _send_frame (MeteredWebSocket does).
    async def main() -> None:
        sock, transport = _accepted(1 << 20, MeteredWebSocket)
        assert isinstance(sock, MeteredWebSocket)
        sock._metered(Tally("/"))
        sock.on("message", lambda evt: sock.send(evt.data))
        assert sock._lean and not sock._quick and _quick_is_true_to_the_state(sock)
        _read_in(transport.stream, frame(0x1, b"counted"))
        assert b"".join(transport.writes) == bytes((0x81, 7)) + b"counted"
        assert sock._messages_out == 1

    run(main, 30)
