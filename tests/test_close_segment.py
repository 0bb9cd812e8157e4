"""The server's answer to the peer's Close leaves with the FIN, in one TCP segment (``ws._runtime.segments``).

Over real sockets on both loops: a raw client sends its Close and waits
until its socket is readable.  The kernel handles a segment's data and its
FIN before it wakes the reader, so the client's TCP state is already
CLOSE_WAIT when the Close frame is there only if both came together; when
the frame leaves alone (the code before), the FIN follows a loop turn later.
The bytes and the events are what they were; the cases that must not be
held (our own close, a protocol error, TLS, unix sockets) keep their order.
"""

from __future__ import annotations

import asyncio
import select
import socket
import sys
from typing import Any

import pytest

from ws._runtime import segments
from ws.protocol import _websockets

from .conftest import echo_server
from .frames import frame
from .test_fastpath import LOOPS, run_on

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(socket, "TCP_INFO"), reason="TCP_CORK and TCP_INFO are Linux's"
)

_REQUEST = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
_CLOSE_WAIT = 8  # linux/tcp_states.h
_ROUNDS = 12


def _close_from_client(port: int, close: bytes) -> tuple[bytes, bool]:
    """Upgrade, send ``close``; what the server sent after its 101 and whether its FIN came with the first of it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_REQUEST)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        rest = data.partition(b"\r\n\r\n")[2]
        sock.sendall(close)
        readable, _, _ = select.select([sock], [], [], 10)
        assert readable
        with_fin = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == _CLOSE_WAIT
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return rest, with_fin
            rest += chunk


def _rounds(loop_name: str, close: bytes, **options: Any) -> list[tuple[bytes, bool]]:
    seen: list[tuple[bytes, bool]] = []

    async def main() -> None:
        async with echo_server(per_message_deflate=False, **options) as served:
            for _ in range(_ROUNDS):
                seen.append(await asyncio.to_thread(_close_from_client, served.port, close))

    run_on(loop_name, main, 30)
    return seen


@pytest.mark.parametrize("eager", [False, True])
@pytest.mark.parametrize("loop_name", LOOPS)
def test_the_answer_to_the_peers_close_comes_with_the_fin(loop_name: str, eager: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_websockets, "EAGER", eager)  # the stand-in answers, or websockets' Server does
    close = frame(0x8, b"\x03\xe8bye", mask=True)
    seen = _rounds(loop_name, close)
    assert [data for data, _ in seen] == [b"\x88\x05\x03\xe8bye"] * _ROUNDS  # the same bytes, then EOF
    if loop_name == "asyncio":  # uvloop's transport is not corked (segments.py says why)
        assert all(with_fin for _, with_fin in seen), seen


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_protocol_error_still_sends_its_close(loop_name: str) -> None:
    """Our Close 1002 for an invalid Close is not held (no ``close_rcvd``): the peer may have sent more,
    and closing a socket with unread bytes resets it, which would drop a held frame."""
    seen = _rounds(loop_name, frame(0x8, b"\x03\xed", mask=True))  # 1005 may not be sent
    assert [(data[0], data[2:4]) for data, _ in seen] == [(0x88, b"\x03\xea")] * _ROUNDS


class _Socket:
    def __init__(self, family: int = socket.AF_INET) -> None:
        self.family = family
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, name: int, value: int) -> None:
        if self.family == socket.AF_UNIX:
            raise OSError(95, "Operation not supported")  # what the kernel answers for a unix socket
        self.options.append((level, name, value))


class _Transport:
    def __init__(self, sock: _Socket | None, buffered: int = 0) -> None:
        self.sock = sock
        self.buffered = buffered

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None


def test_hold_for_fin_corks_only_a_plain_tcp_transport_with_nothing_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "_plain", {})
    monkeypatch.setattr(segments, "PLAIN_TRANSPORTS", frozenset({(_Transport.__module__, _Transport.__qualname__)}))
    tcp, unix, queued = _Socket(), _Socket(socket.AF_UNIX), _Socket()
    for transport in (_Transport(tcp), _Transport(unix), _Transport(queued, buffered=10), _Transport(None)):
        segments.hold_for_fin(transport)  # type: ignore[arg-type]
    assert tcp.options == [(socket.IPPROTO_TCP, socket.TCP_CORK, 1)]
    assert unix.options == [] and queued.options == []  # (the unix socket's refusal is not an error)
    monkeypatch.setattr(segments, "PLAIN_TRANSPORTS", frozenset())  # another transport (TLS): never
    monkeypatch.setattr(segments, "_plain", {})
    other = _Socket()
    segments.hold_for_fin(_Transport(other))  # type: ignore[arg-type]
    assert other.options == []


def test_the_plain_transports_are_the_loops_classes() -> None:
    """``PLAIN_TRANSPORTS`` names classes that exist (a rename upstream would silently turn the cork off)."""
    from asyncio import selector_events

    cls = selector_events._SelectorSocketTransport
    assert (cls.__module__, cls.__qualname__) in segments.PLAIN_TRANSPORTS


def test_uvloop_is_not_corked_its_lent_socket_cannot_shut_down() -> None:
    import uvloop.loop  # a test dependency

    cls = uvloop.loop.TCPTransport
    assert (cls.__module__, cls.__qualname__) not in segments.PLAIN_TRANSPORTS


class _ShutSocket(_Socket):
    def __init__(self) -> None:
        super().__init__()
        self.shut: list[int] = []

    def shutdown(self, how: int) -> None:
        self.shut.append(how)


def test_send_fin_shuts_the_sending_side_only_when_the_transport_holds_nothing() -> None:
    """The corked bytes leave with the FIN before close(): a reset for unread input can only follow them."""
    sock = _ShutSocket()
    segments.send_fin(_Transport(sock), sock)  # type: ignore[arg-type]
    assert sock.shut == [socket.SHUT_WR]
    held = _ShutSocket()
    segments.send_fin(_Transport(held, buffered=10), held)  # type: ignore[arg-type]
    assert held.shut == []  # part of the write waits in the transport: close() sends it, then the FIN
