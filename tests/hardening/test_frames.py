"""Issue 17, items 3, 7 and 8: what a message costs, how long it may stay unfinished, the work per read, the writes.

Each attack runs against the README-style target in its own process
(``hostile.TargetProcess``), measured from outside: peak RSS for the copies
a large fragment takes, the close code and the time for an unfinished
message, a probe client's echo and connect times during a flood of empty
frames, and the volume of stderr (asyncio's ``socket.send() raised
exception.``) when peers vanish.  The number of writes a flood of small
echoes costs is counted in process, on the server socket's transport.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import threading
import time
from typing import Any

from ws.protocol.reader import apply_mask

from ..conftest import run, serving
from ..frames import frame
from ..test_limits import RawPeer
from .hostile import MiB, LatencyProbe, TargetProcess, upgrade

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def masked_header(opcode: int, length: int, *, fin: bool = True, key: bytes = b"\0\0\0\0") -> bytes:
    """A client frame's header (masking key included) announcing ``length`` bytes; the payload follows, masked with ``key``."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes([first, 0x80 | length]) + key
    if length < 1 << 16:
        return bytes([first, 0x80 | 126]) + struct.pack("!H", length) + key
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", length) + key


def read_frame(sock: socket.socket, deadline: float) -> tuple[int, bytes]:
    """The next server frame ``(opcode, payload)``, waiting until ``deadline`` (monotonic)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    first, second = exactly(2)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exactly(8))
    return first & 0x0F, exactly(n)


def close_code(sock: socket.socket, timeout: float) -> int | None:
    """The code of the server's close frame (data frames skipped), or ``None`` if none came in ``timeout`` s."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            opcode, payload = read_frame(sock, deadline)
            if opcode == CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    except (OSError, ConnectionError):
        return None


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a vanished peer's kernel does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_pong(sock: socket.socket, timeout: float = 20.0) -> None:
    """Send a ping and wait for its pong: the server has handled everything sent before it."""
    sock.sendall(frame(PING, b"sync"))
    deadline = time.monotonic() + timeout
    while True:
        opcode, payload = read_frame(sock, deadline)
        if opcode == PONG and payload == b"sync":
            return


# -- 3. what a message costs, and how long it may stay unfinished -----------------------------------


def test_a_continuation_that_can_only_overflow_fails_from_its_header() -> None:
    # The docs promise that a header announcing too much fails before any of its payload
    # is read.  For a continuation frame "too much" is what is left of max_payload.
    with TargetProcess(ws={"max_payload": 4 * MiB}) as target:
        sock = upgrade(target.port)
        sock.sendall(frame(BINARY, b"a" * (3 * MiB), fin=False))
        wait_pong(sock)
        sock.sendall(masked_header(CONT, 2 * MiB))  # 3 + 2 MiB > 4 MiB; none of its payload is sent
        assert close_code(sock, timeout=5) == 1009
        sock.close()
        assert target.alive()


def test_a_large_fragment_costs_about_twice_its_size() -> None:
    # A non-final 64 MiB frame, at the default settings: the frame's own buffer and the
    # unmasked payload the message keeps (before: the protocol object's copies on top, 4x).
    size = 64 * MiB
    with TargetProcess() as target:
        sock = upgrade(target.port, timeout=30)
        wait_pong(sock)
        base = target.peak_rss()
        key = os.urandom(4)
        sock.sendall(masked_header(BINARY, size, fin=False, key=key))
        chunk = apply_mask(b"\x07" * MiB, key)  # 1 MiB is a multiple of 4: every chunk has the same mask
        for _ in range(size // MiB):
            sock.sendall(chunk)
        wait_pong(sock, timeout=30)
        grown = target.peak_rss() - base
        assert grown < 2.5 * size, f"peak RSS grew by {grown / MiB:.0f} MiB for a {size // MiB} MiB fragment"
        sock.close()


def test_an_unfinished_message_is_closed_after_message_timeout() -> None:
    # A fixed mmap threshold makes glibc return every large buffer to the kernel when it is
    # freed, so that RSS shows what the server holds, not what the allocator keeps for reuse.
    env = {"MALLOC_MMAP_THRESHOLD_": "131072"}
    with TargetProcess(ws={"message_timeout": 1.0, "ping_interval": None}, env=env) as target:
        base = target.rss()
        # Four connections each leave 24 MiB of a fragmented message open...
        holders = [upgrade(target.port) for _ in range(4)]
        for sock in holders:
            sock.sendall(frame(BINARY, b"h" * (24 * MiB), fin=False))
        for sock in holders:
            wait_pong(sock)
        held = target.rss() - base
        assert held > 4 * 24 * MiB, f"only {held / MiB:.0f} MiB held"
        # ... one trickles a large frame, one byte a tenth of a second ...
        trickler = upgrade(target.port)
        trickler.sendall(masked_header(BINARY, 1 * MiB) + b"x" * 200_000)
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.1):
                try:
                    trickler.send(b"x")
                except OSError:
                    return

        dripping = threading.Thread(target=trickle, daemon=True)
        dripping.start()
        # ... and a polite one sends its three fragments within 0.6 s.
        polite = upgrade(target.port)
        polite.sendall(frame(TEXT, b"slow but ", fin=False))
        time.sleep(0.3)
        polite.sendall(frame(CONT, b"", fin=False))
        time.sleep(0.3)
        polite.sendall(frame(CONT, b"fine"))
        # With message_timeout=1, the sweep (every quarter of it) finds them within ~1.25 s of their start.
        codes = [close_code(sock, timeout=4) for sock in holders]
        assert codes == [1008] * 4
        assert close_code(trickler, timeout=2) == 1008
        stop.set()
        dripping.join(2)
        # The polite client got its message back and is still served.
        polite.sendall(frame(TEXT, b"and again"))
        deadline = time.monotonic() + 3
        echoes = [read_frame(polite, deadline), read_frame(polite, deadline)]
        assert echoes == [(TEXT, b"slow but fine"), (TEXT, b"and again")]
        # The messages are freed with the 1008, not when the peers go.
        assert target.rss() < base + 16 * MiB, f"RSS still {(target.rss() - base) / MiB:.0f} MiB above the start"
        for sock in [*holders, trickler, polite]:
            sock.close()


def test_message_timeout_holds_on_compressed_connections_too() -> None:
    # With permessage-deflate the protocol object parses every frame: the same deadline holds
    # for its fragmented messages and its incomplete frames.
    async def main() -> None:
        async with serving(per_message_deflate=True, message_timeout=0.4, ping_interval=None) as served:
            fragmented = await RawPeer.open(served.port, deflate=True)
            fragmented.send(frame(BINARY, b"\x00", fin=False))  # a stored block would do; any bytes start it
            trickling = await RawPeer.open(served.port, deflate=True)
            trickling.send(frame(BINARY, b"x" * 1000, rsv=0b100)[:500])
            assert await fragmented.read_close(timeout=3) == 1008
            assert await trickling.read_close(timeout=3) == 1008

    run(main)


# -- 7. one flooding client does not stall the others -------------------------------------------------


class Flooder:
    """A client sending empty masked frames as fast as the server takes them, draining the echoes."""

    def __init__(self, port: int, path: str = "/echo") -> None:
        self.sock = upgrade(port, path)
        self.sock.settimeout(None)
        self.stop = threading.Event()
        self.sent = 0
        self.received = 0
        self._burst = bytes([0x81, 0x80, 0, 0, 0, 0]) * (256 * 1024 // 6)
        self._threads = [threading.Thread(target=self._send, daemon=True), threading.Thread(target=self._drain, daemon=True)]

    def _send(self) -> None:
        try:
            while not self.stop.is_set():
                self.sock.sendall(self._burst)
                self.sent += len(self._burst)
        except OSError:
            pass

    def _drain(self) -> None:
        try:
            while not self.stop.is_set():
                data = self.sock.recv(1 << 20)
                if not data:
                    return
                self.received += len(data)
        except OSError:
            pass

    def __enter__(self) -> "Flooder":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        reset(self.sock)
        for t in self._threads:
            t.join(5)


def test_a_flood_of_empty_frames_does_not_stall_other_clients() -> None:
    with TargetProcess() as target:
        with Flooder(target.port) as flooder:
            time.sleep(0.5)  # the flood is on
            with LatencyProbe(target.port, interval=0.02, reconnect_every=5) as probe:
                time.sleep(4)
        assert flooder.received > 100_000, "the flooder was served too"
        probe.assert_served(worst=0.4, connect=1.0)  # measured: 25-90 ms and at most 80 ms (0.65-0.76 s and 1.7-2.0 s before)
        assert target.alive()


# -- 8. writes: joined when small, none after the transport is gone --------------------------------------


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def raw_peer(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking raw client of the in-process server (``serving``), past its handshake."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 5)
    await loop.sock_sendall(sock, HANDSHAKE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.wait_for(loop.sock_recv(sock, 1), 5)  # one byte at a time: nothing past the 101
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def receive_exactly(sock: socket.socket, n: int, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while len(data) < n:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, min(n - len(data), 1 << 20)), timeout)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def test_a_flood_of_small_echoes_costs_few_writes() -> None:
    async def main() -> None:
        async with serving(echo=True) as served:
            count = 100_000
            peer = await raw_peer(served.port)
            sock, _ = await served.socket()
            transport: Any = sock._transport
            writes = [0]
            write = transport.write

            def counted(data: Any) -> None:
                writes[0] += 1
                write(data)

            transport.write = counted
            loop = asyncio.get_running_loop()
            sending = loop.create_task(loop.sock_sendall(peer, (bytes([0x81, 0x81, 0, 0, 0, 0]) + b"x") * count))
            expected = bytes([0x81, 0x01]) + b"x"
            got = await receive_exactly(peer, len(expected) * count, timeout=15)
            await sending
            assert got == expected * count
            assert writes[0] <= 200, f"{writes[0]} writes for {count} small echoes"
            peer.close()

    run(main, timeout=30)


class AsyncioWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_reset_connection_is_not_written_to_again() -> None:
    # The peer floods, then vanishes (TCP reset) while the server still works through what
    # it read: each further write used to log "socket.send() raised exception.".
    with TargetProcess() as target:
        for _ in range(3):
            with Flooder(target.port):
                time.sleep(0.7)
            # leaving the block resets the connection in the middle of the flood
        with LatencyProbe(target.port) as probe:
            time.sleep(1.0)
        probe.assert_served(worst=1.0, connect=1.0)
        warnings = target.stderr_text().count("socket.send() raised exception")
        assert warnings == 0, f"{warnings} lines of 'socket.send() raised exception.'"
        assert target.stderr_size() < 4096


def test_a_dropped_socket_is_not_written_to_nor_listened_to() -> None:
    # The send cap drops a peer that does not read, in the middle of a read full of
    # messages: the listener is not called again, nothing more is written, asyncio logs nothing.
    # (Should the server stop reading from such a peer before its cap is reached, there is
    # no drop to test: then it must simply never call the listener on a socket that is not OPEN.)
    async def main() -> None:
        handler = AsyncioWarnings()
        logging.getLogger("asyncio").addHandler(handler)
        try:
            async with serving(max_buffered_amount=256 * 1024, high_water_mark=64 * 1024, low_water_mark=16 * 1024) as served:
                after_drop: list[Any] = []
                calls = [0]

                def on_connection(sock: Any, request: Any) -> None:
                    def on_message(event: Any) -> None:
                        calls[0] += 1
                        if sock.ready_state != sock.OPEN:
                            after_drop.append(sock.ready_state)
                        sock.send(event.data)

                    sock.on("message", on_message)

                served.wss.on("connection", on_connection)
                raw = await raw_peer(served.port, rcvbuf=4096)
                message = bytes([0x82, 0xFE]) + struct.pack("!H", 4000) + b"\0\0\0\0" + b"m" * 4000
                burst = message * 400  # 1.6 MB of 4 KB messages that the peer never reads back
                loop = asyncio.get_running_loop()
                _, rec = await served.socket()
                for _ in range(25):  # up to 40 MB: the kernel's buffers fill, then the cap drops us
                    if rec.count("close"):
                        break
                    try:
                        await asyncio.wait_for(loop.sock_sendall(raw, burst), 2)
                    except (OSError, asyncio.TimeoutError):
                        break  # dropped, or the server stopped reading from us
                await asyncio.sleep(0.2)
                raw.close()
                assert [code for code, _ in rec.args("close")] in ([1008], [])
                assert calls[0] > 0 and after_drop == [], f"listener called {len(after_drop)} times after the drop"
        finally:
            logging.getLogger("asyncio").removeHandler(handler)
        warnings = sum("socket.send() raised exception" in line for line in handler.lines)
        assert warnings == 0, f"{warnings} lines of 'socket.send() raised exception.'"

    run(main, timeout=30)


def test_a_socket_terminated_by_its_listener_hears_no_more_of_the_read() -> None:
    async def main() -> None:
        async with serving() as served:
            states: list[Any] = []

            def on_connection(sock: Any, request: Any) -> None:
                def on_message(event: Any) -> None:
                    states.append(sock.ready_state)
                    if len(states) == 100:
                        sock.terminate()
                    else:
                        sock.send(event.data)

                sock.on("message", on_message)

            served.wss.on("connection", on_connection)
            peer = await raw_peer(served.port)
            burst = (bytes([0x81, 0x81, 0, 0, 0, 0]) + b"t") * 1000 + frame(PING, b"p") * 100  # 7.6 KB: one read
            await asyncio.get_running_loop().sock_sendall(peer, burst)
            _, rec = await served.socket()
            await rec.wait("close", timeout=5)
            await asyncio.sleep(0.1)
            assert len(states) == 100 and set(states) == {states[0]}, f"{len(states)} calls, the last in {states[-1]!r}"
            peer.close()

    run(main)


def test_a_broadcast_to_dead_peers_logs_nothing() -> None:
    with TargetProcess() as target:
        for _ in range(3):
            peers = [upgrade(target.port, "/chat") for _ in range(8)]
            sender = upgrade(target.port, "/chat")
            burst = (bytes([0x81, 0x81, 0, 0, 0, 0]) + b"c") * 500  # 500 broadcasts from one read
            for peer in peers:
                reset(peer)
            sender.sendall(burst)
            sender.sendall(frame(PING, b"sync"))
            deadline = time.monotonic() + 10
            while True:
                opcode, payload = read_frame(sender, deadline)
                if opcode == PONG:
                    break
            sender.close()
        warnings = target.stderr_text().count("socket.send() raised exception")
        assert warnings == 0, f"{warnings} lines of 'socket.send() raised exception.'"
        with LatencyProbe(target.port) as probe:
            time.sleep(0.5)
        probe.assert_served()
