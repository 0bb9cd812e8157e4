"""Limits and bad input: every limit fails only the offending connection.

Raw TCP peers speak a valid opening handshake (built by ``websockets``'
``ClientProtocol``) and then write frames crafted by hand; each test checks
the close code on the wire, that the peer's socket is closed, the server
socket's ``'error'``/``'close'`` events, and that a normal client is still
served afterwards.  The helpers here (``RawPeer``, ``frame``, ``assert_serves``; the server is
conftest's ``echo_server``) are shared with the fuzz and backpressure tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import struct
import weakref
import zlib
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.uri import parse_uri

from ws import WebSocket, http

from .conftest import Recorder, echo_server, run, until
from .frames import frame

T = 5.0  # generous per-wait timeout: the machine is shared and loaded

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# -- crafting frames -------------------------------------------------------------




def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


# -- a raw peer --------------------------------------------------------------------


class RawPeer:
    """A TCP client that does the opening handshake, then writes whatever it is told."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.response = b""

    @classmethod
    async def open(cls, port: int, path: str = "/ws", *, handshake: bool = True, deflate: bool = False) -> "RawPeer":
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
        peer = cls(reader, writer)
        if handshake:
            await peer.handshake(port, path, deflate=deflate)
        return peer

    async def handshake(self, port: int, path: str = "/ws", *, deflate: bool = False) -> None:
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"), extensions=extensions)
        proto.send_request(proto.connect())
        self.writer.write(b"".join(proto.data_to_send()))
        self.response = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), T)
        assert self.response.startswith(b"HTTP/1.1 101 "), self.response
        if deflate:
            assert b"permessage-deflate" in self.response.lower()

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_frame(self, timeout: float = T) -> tuple[int, bytes]:
        """The next frame from the server (unmasked): ``(opcode, payload)``."""

        async def read() -> tuple[int, bytes]:
            first, second = await self.reader.readexactly(2)
            n = second & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            assert not second & 0x80, "server frames are never masked"
            return first & 0x0F, await self.reader.readexactly(n)

        return await asyncio.wait_for(read(), timeout)

    async def read_close(self, timeout: float = T) -> int:
        """Skip data and pings up to the close frame; its code."""
        while True:
            opcode, payload = await self.read_frame(timeout)
            if opcode == CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005

    async def at_eof(self, timeout: float = T) -> bool:
        """Whether the server closed the TCP connection within ``timeout`` (reads and drops data)."""

        async def drain() -> None:
            while await self.reader.read(65536):
                pass

        try:
            await asyncio.wait_for(drain(), timeout)
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    def abort(self) -> None:
        self.writer.transport.abort()


# -- a live server -------------------------------------------------------------------


async def assert_serves(url: str, payload: str = "still serving") -> None:
    """A normal client connects, gets an echo and closes cleanly."""
    client = WebSocket(url)
    rec = Recorder(client, "open", "message", "close", "error")
    await rec.wait("open", timeout=T)
    client.send(payload)
    ((event,),) = await rec.wait("message", timeout=T)
    assert event.data == payload
    client.close()
    ((code, _),) = await rec.wait("close", timeout=T)
    assert code == 1000 and rec.count("error") == 0


class Bystander:
    """A client connected before the bad input arrives: it must not notice anything."""

    def __init__(self, url: str) -> None:
        self.client = WebSocket(url)
        self.rec = Recorder(self.client, "open", "message", "close")
        self.sent = 0

    @classmethod
    async def open(cls, url: str) -> "Bystander":
        bystander = cls(url)
        await bystander.rec.wait("open", timeout=T)
        return bystander

    async def still_echoes(self, text: str) -> None:
        self.client.send(text)
        self.sent += 1
        messages = await self.rec.wait("message", self.sent, timeout=T)
        assert messages[-1][0].data == text and self.rec.count("close") == 0

    async def close(self) -> None:
        self.client.close()
        ((code, _),) = await self.rec.wait("close", timeout=T)
        assert code == 1000

    async def finish(self, text: str) -> None:
        """Still echoing, a new client is served too, then a clean close."""
        await self.still_echoes(text)
        await assert_serves(self.client.url)
        await self.close()


async def assert_failed_once(rec: Recorder, code: int) -> None:
    """The server socket emitted ``'error'`` then ``'close'`` (with ``code``), once each."""
    ((got, _),) = await rec.wait("close", timeout=T)
    # negative check: nothing is ordered after 'close', so a late extra event can only be watched for
    await asyncio.sleep(0.05)
    assert rec.names() == ["error", "close"], rec.log
    assert got == code
    ((error,),) = rec.args("error")
    assert getattr(error, "code", code) == code


async def assert_refused(peer: Any, served: Any, code: int) -> Recorder:
    """The peer got a Close with ``code`` then EOF; the server socket failed once with it.

    Returns that socket's recorder, for checks of the error's text.
    """
    assert await peer.read_close() == code
    assert await peer.at_eof(), "the server must close the offender's socket"
    _, rec = await served.socket()
    await assert_failed_once(rec, code)
    return rec


# -- message size and fragments -------------------------------------------------------


def test_announced_length_over_max_payload_fails_before_any_payload() -> None:
    async def main() -> None:
        async with echo_server(max_payload=1024) as served:
            peer = await RawPeer.open(served.port)
            # Only the header of a 1 GB frame: nothing is ever buffered for it.
            peer.send(frame(BINARY, length=1 << 30))
            rec = await assert_refused(peer, served, 1009)
            assert "max payload" in str(rec.args("error")[0][0]) or "too big" in str(rec.args("error")[0][0])
            await assert_serves(served.url)
            assert not served.wss.clients

    run(main)


def test_fragmented_message_fails_as_soon_as_its_total_exceeds_max_payload() -> None:
    async def main() -> None:
        async with echo_server(max_payload=1024) as served:
            peer = await RawPeer.open(served.port)
            peer.send(frame(TEXT, b"a" * 400, fin=False) + frame(CONT, b"b" * 400, fin=False))
            peer.send(frame(CONT, b"c" * 400, fin=False))  # 1200 > 1024, and not even the last fragment
            await assert_refused(peer, served, 1009)
            await assert_serves(served.url)

    run(main)


def test_a_message_of_exactly_max_payload_is_fine() -> None:
    async def main() -> None:
        async with echo_server(max_payload=1024) as served:
            peer = await RawPeer.open(served.port)
            peer.send(frame(BINARY, b"x" * 512, fin=False) + frame(CONT, b"y" * 512))
            opcode, data = await peer.read_frame()
            assert (opcode, data) == (BINARY, b"x" * 512 + b"y" * 512)
            peer.send(frame(CLOSE, close_payload(1000)))
            assert await peer.read_close() == 1000
            assert await peer.at_eof()

    run(main)


def test_too_many_fragments_is_1009() -> None:
    async def main() -> None:
        async with echo_server(max_fragments=4) as served:
            peer = await RawPeer.open(served.port)
            peer.send(frame(BINARY, b"1", fin=False) + b"".join(frame(CONT, b"n", fin=False) for _ in range(4)))
            rec = await assert_refused(peer, served, 1009)
            assert "fragments" in str(rec.args("error")[0][0])
            await assert_serves(served.url)

    run(main)


def test_compressed_bomb_is_stopped_at_max_payload() -> None:
    async def main() -> None:
        async with echo_server(max_payload=64 * 1024, per_message_deflate=True) as served:
            peer = await RawPeer.open(served.port, deflate=True)
            deflater = zlib.compressobj(wbits=-15)
            bomb = deflater.compress(b"\0" * (8 << 20)) + deflater.flush(zlib.Z_SYNC_FLUSH)
            assert bomb.endswith(b"\x00\x00\xff\xff") and len(bomb) < 64 * 1024
            peer.send(frame(BINARY, bomb[:-4], rsv=0b100))  # 8 MiB once inflated
            await assert_refused(peer, served, 1009)
            await assert_serves(served.url)

    run(main)


# -- protocol violations ----------------------------------------------------------------

BAD_FRAMES = {
    "unmasked client frame": (frame(TEXT, b"hello", mask=False), 1002),
    "reserved bit 1": (frame(TEXT, b"hello", rsv=0b100), 1002),
    "reserved bits 2 and 3": (frame(BINARY, b"x", rsv=0b011), 1002),
    "unknown data opcode": (frame(0x3, b"x"), 1002),
    "unknown control opcode": (frame(0xB, b"x"), 1002),
    "fragmented ping": (frame(PING, b"p", fin=False), 1002),
    "ping over 125 bytes": (frame(PING, b"p" * 126), 1002),
    "continuation without a message": (frame(CONT, b"x"), 1002),
    "new message inside a fragmented one": (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),
    "invalid UTF-8 text": (frame(TEXT, b"caf\xc3"), 1007),
    "surrogate in UTF-8 text": (frame(TEXT, b"\xed\xa0\x80"), 1007),
    "invalid UTF-8 in a fragment": (frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xff", fin=False), 1007),
    "invalid UTF-8 close reason": (frame(CLOSE, close_payload(1000, b"\xff\xfe")), 1007),
    "close code 999": (frame(CLOSE, close_payload(999)), 1002),
    "close code 1005": (frame(CLOSE, close_payload(1005)), 1002),
    "close code 1006": (frame(CLOSE, close_payload(1006)), 1002),
    "close code 1016": (frame(CLOSE, close_payload(1016)), 1002),
    "close code 5000": (frame(CLOSE, close_payload(5000)), 1002),
    "one-byte close payload": (frame(CLOSE, b"\x03"), 1002),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_protocol_violation_gets_the_right_close_code(case: str) -> None:
    data, code = BAD_FRAMES[case]

    async def main() -> None:
        async with echo_server(ping_interval=None) as served:
            bystander = await Bystander.open(served.url)
            peer = await RawPeer.open(served.port)
            peer.send(data)
            await assert_refused(peer, served, code)
            # Neither the connection open meanwhile nor a new one noticed anything.
            await bystander.finish("fine")

    run(main)


# -- the HTTP side ------------------------------------------------------------------------


async def http_exchange(port: int, request: bytes, timeout: float = T) -> bytes:
    """Write ``request``, return everything read until the server closes."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
    try:
        writer.write(request)
        chunks = []
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(65536), timeout):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


def test_long_request_line_headers_and_header_count_get_431() -> None:
    async def main() -> None:
        async with echo_server(http_options={"max_header_size": 4096, "max_header_count": 20}) as served:
            bystander = await Bystander.open(served.url)
            cases = [
                b"GET /ws?" + b"q" * 8000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 8000 + b"\r\n\r\n",
                b"GET /ws HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(30)) + b"\r\n",
            ]
            for request in cases:
                answer = await http_exchange(served.port, request)
                assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
            # In pieces too (h11's incremental limit).
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            for _ in range(10):
                writer.write(b"X-Pad: " + b"p" * 1000 + b"\r\n")
                await asyncio.sleep(0.01)  # separate reads on purpose: the limit is checked incrementally
            answer = await asyncio.wait_for(reader.read(65536), T)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
            writer.close()
            await bystander.finish("after 431s")

    run(main)


def test_header_timeout_closes_slow_and_silent_clients() -> None:
    async def main() -> None:
        async with echo_server(http_options={"header_timeout": 0.5}) as served:
            loop = asyncio.get_running_loop()
            silent = await RawPeer.open(served.port, handshake=False)
            slow = await RawPeer.open(served.port, handshake=False)
            started = loop.time()
            slow.send(b"GET /ws HTTP/1.1\r\n")

            async def trickle() -> None:
                # One header byte every 50 ms: the head is never complete in time.
                with contextlib.suppress(ConnectionError):
                    for byte in b"X-Slow: " + b"s" * 200:
                        if slow.writer.is_closing():
                            return
                        slow.send(bytes([byte]))
                        await asyncio.sleep(0.05)

            trickler = asyncio.ensure_future(trickle())
            await assert_serves(served.url)  # served while the two hang on
            assert await silent.at_eof(timeout=T)
            assert await slow.at_eof(timeout=T)
            elapsed = loop.time() - started
            assert 0.3 <= elapsed < 5.0, elapsed
            trickler.cancel()
            await assert_serves(served.url)

    run(main)


def test_pending_handshake_cap_refuses_the_excess_with_503() -> None:
    async def main() -> None:
        async with echo_server(http_options={"max_pending_handshakes": 4, "header_timeout": 1.0}) as served:
            established = await Bystander.open(served.url)
            hogs = [await RawPeer.open(served.port, handshake=False) for _ in range(4)]
            for hog in hogs:
                hog.send(b"GET /ws HTTP/1.1\r\n")  # a head that never ends
            await until(lambda: len(served.server._pending) == 4, T, what="the hogs do not hold the 4 slots")
            refused = await RawPeer.open(served.port, handshake=False)
            answer = await asyncio.wait_for(refused.reader.read(65536), T)
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]
            assert await refused.at_eof()
            # The established connection is untouched while the cap is reached.
            await established.still_echoes("during")
            # The header timeout frees the slots, and new clients get in again.
            for hog in hogs:
                assert await hog.at_eof(timeout=T)
            await assert_serves(served.url)
            assert not served.server._pending
            await established.close()

    run(main)


def test_pending_handshake_option_is_checked() -> None:
    with pytest.raises(ValueError, match="max_pending_handshakes"):
        http.Server("127.0.0.1:0", max_pending_handshakes=0)
    assert http.Server("127.0.0.1:0").max_pending_handshakes == 1024
    assert http.Server("127.0.0.1:0", max_pending_handshakes=None).max_pending_handshakes is None


def test_request_body_over_the_limit_gets_413() -> None:
    async def main() -> None:
        async with echo_server(http_options={"max_body_size": 1000}) as served:
            served.server.post("/upload", lambda ctx: ctx.text(200, f"got {len(ctx.request.body)}"))
            bystander = await Bystander.open(served.url)
            declared = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
            answer = await http_exchange(served.port, declared)
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
            chunked = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            chunked += b"".join(b"190\r\n" + b"z" * 400 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"
            answer = await http_exchange(served.port, chunked)
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
            small = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789"
            answer = await http_exchange(served.port, small)
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"got 10"), answer
            await bystander.finish("after 413")

    run(main)


def test_non_ascii_handshake_header_is_a_400_not_a_server_error() -> None:
    async def main() -> None:
        async with echo_server() as served:
            errors = Recorder(served.wss, "error")
            request = handshake_bytes(served.port).replace(b"Sec-WebSocket-Key: ", b"Sec-WebSocket-Key: \xc3\xa9")
            answer = await http_exchange(served.port, request)
            assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
            assert errors.count("error") == 0
            await assert_serves(served.url)

    run(main)


def handshake_bytes(port: int, path: str = "/ws") -> bytes:
    """A valid opening handshake request, as bytes."""
    proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
    proto.send_request(proto.connect())
    return b"".join(proto.data_to_send())


def test_client_max_payload_closes_with_1009_too() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None) as served:
            client = WebSocket(served.url, max_payload=1024, per_message_deflate=False)
            rec = Recorder(client, "open", "message", "error", "close")
            await rec.wait("open", timeout=T)
            sock, srec = await served.socket()
            sock.send(b"small")
            sock.send(b"x" * 2048)
            ((code, _),) = await rec.wait("close", timeout=T)
            # negative check: nothing is ordered after 'close', so a late extra event can only be watched for
            await asyncio.sleep(0.05)
            assert code == 1009
            assert rec.names() == ["open", "message", "error", "close"], rec.names()
            ((server_code, _),) = await srec.wait("close", timeout=T)
            assert server_code == 1009  # the server got our close frame
            await assert_serves(served.url)

    run(main)


def test_compression_state_is_freed_when_the_connection_closes() -> None:
    """~300 KB of zlib state per connection must not wait for a full garbage collection."""

    async def main() -> None:
        async with echo_server(ping_interval=None, per_message_deflate=True) as served:
            client = WebSocket(served.url)
            rec = Recorder(client, "open", "message", "close")
            await rec.wait("open", timeout=T)
            sock, srec = await served.socket()
            assert client._proto is not None and sock._proto is not None
            extensions = [weakref.ref(ext) for ext in client._proto.extensions + sock._proto.extensions]
            assert len(extensions) == 2
            client.send("squeeze me " * 100)
            await rec.wait("message", timeout=T)
            gc.disable()  # the sockets live on in cycles; their zlib state must not
            try:
                client.close()
                await rec.wait("close", timeout=T)
                await srec.wait("close", timeout=T)
                assert [ref() for ref in extensions] == [None, None]
            finally:
                gc.enable()

    run(main)
