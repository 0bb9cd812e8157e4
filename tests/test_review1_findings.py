"""Review of the speed passes merged on 2026-12-08 (branches rtt, client, hssys, uvfanin, hsobj): behaviour they changed.

Each test states what a peer or an application could observe before the
passes (``aff32f0``) and no longer does.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from typing import Any

import pytest

from ws import WebSocketServer, http
from ws.connection.websocket import WebSocket as _WebSocket
from ws.protocol._websockets import Server as ServerProtocol

from .conftest import run
from .frames import frame
from .test_fastpath import _CountingTransport, _Req

LOOPS = ["asyncio", "uvloop"]


def run_on(loop_name: str, coro_fn: Any, timeout: float) -> None:
    """``run`` on asyncio's loop or on uvloop's (as tests/test_fastpath.py's)."""
    if loop_name == "asyncio":
        run(coro_fn, timeout)
        return
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(coro_fn(), timeout))
    finally:
        loop.close()

_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class _Transport(_CountingTransport):
    """test_fastpath's transport that also records an abort (and takes no write after it)."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def write(self, data: Any) -> None:
        if not self.aborted:
            super().write(data)

    def writelines(self, pieces: Any) -> None:
        for piece in pieces:
            self.write(piece)

    def is_closing(self) -> bool:
        return self.aborted

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True


def test_keepalive_timeout_sends_its_1011_close_even_with_frames_queued_for_the_turn() -> None:
    # _keepalive_expired fails the protocol object (a Close 1011), then _flush()es while the
    # socket is still lean and OPEN, then aborts.  Since _flush no longer asks the protocol object
    # when the writer holds frames (lean and OPEN), a send queued earlier in the same loop turn
    # (a coroutine's, written at the end of the turn) makes that flush leave the Close behind:
    # the abort follows and the peer never gets the 1011 it got before (aff32f0).
    async def main() -> None:
        proto = ServerProtocol(max_size=1 << 20)
        proto.mark_open()
        proto.read_frames()
        transport = _Transport()
        sock = _WebSocket._accepted(asyncio.get_running_loop(), proto, transport, _Req(), None, {})  # type: ignore[arg-type]
        sock.send("queued for the end of the turn")  # outside a listener: batched, not written yet
        assert transport.writes == []
        sock._keepalive_expired()
        wire = b"".join(transport.writes)
        assert transport.aborted
        assert b"\x88\x18\x03\xf3keepalive ping timeout" in wire, wire

    run(main, 10)


def _close_then_junk(port: int, out: list[tuple[str, bytes]]) -> None:
    """Upgrade, then the peer's Close followed by 3 MiB it should not send; what comes back before the end."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(_REQUEST)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk
            data += chunk
        rest = data.partition(b"\r\n\r\n")[2]
        blob = frame(0x8, b"\x03\xe8") + b"\x00" * (3 << 20)
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 3
        while sent < len(blob) and time.monotonic() < deadline:
            try:
                sent += sock.send(blob[sent:])
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
        sock.settimeout(5)
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
            out.append(("eof", rest))
        except OSError as exc:
            out.append((type(exc).__name__, rest))
    finally:
        sock.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_CORK is Linux's")
@pytest.mark.parametrize("loop_name", LOOPS)
def test_the_answer_to_a_close_reaches_a_peer_whose_unread_bytes_reset_the_connection(loop_name: str) -> None:
    # A peer sends its Close and more bytes behind it (a protocol violation, or simply bytes in
    # flight).  The server answers the Close and closes TCP with those bytes unread in its socket:
    # Linux then resets the connection and drops whatever the socket has not sent yet.  Before
    # hold_for_fin the answer had left at once (TCP_NODELAY) and the peer read the Close frame
    # before the RST; corked, the answer is still in the socket at close() and is dropped: the
    # peer sees the reset only (a 1006 instead of the closing handshake it started).
    async def main() -> None:
        server = http.Server(address="127.0.0.1:0")
        WebSocketServer(server=server, path="/")
        await server.serve_async()
        out: list[tuple[str, bytes]] = []
        thread = threading.Thread(target=_close_then_junk, args=(server.port, out))
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.02)
        server.close()
        assert out, "the client thread failed"
        outcome, received = out[0]
        assert received.startswith(b"\x88\x02\x03\xe8"), (outcome, received)

    run_on(loop_name, main, 30)
