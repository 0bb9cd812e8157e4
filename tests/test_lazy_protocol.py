"""A lean handshake's socket builds its protocol object on first need, over real sockets.

Messages never build it; a ping, a close, a fragment or a failure does, and
from then on the socket holds the real object.  Behaviour is the same either
way: the rest of the suite runs with the lazy object, these tests check the
moment it is built and compare with one built at once.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from ws import WebSocket
from ws.protocol import _websockets

from .conftest import connect, echo_server, run
from .frames import frame


def _lazy(sock: WebSocket) -> bool:
    return isinstance(sock._proto, _websockets.LazyServer)


def _never_built(proto: Any) -> bool:
    """Whether a socket's protocol object, taken while it was open, is a stand-in that was never built.

    (A closed socket lets go of its protocol object, ``WebSocket._let_go``.)
    """
    return isinstance(proto, _websockets.LazyServer) and proto._real is None


@pytest.mark.parametrize("eager", [False, True])
def test_messages_leave_it_unbuilt_a_ping_and_the_close_build_it(eager: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_websockets, "EAGER", eager)

    async def main() -> None:
        async with echo_server() as served:
            client, rec = await connect(served.port, "/ws", per_message_deflate=False)
            await rec.wait("open")
            sock, server_rec = await served.socket()
            assert _lazy(sock) is not eager
            for text in ("a", "b" * 70_000):
                client.send(text)
            client.send("frag", fin=False)  # the lean reader joins fragments itself
            client.send("ment")
            messages = await rec.wait("message", 3)
            assert [m[0].data for m in messages] == ["a", "b" * 70_000, "fragment"]
            assert _lazy(sock) is not eager
            client.ping(b"p")
            await rec.wait("pong")
            assert type(sock._proto) is _websockets.Server  # the socket holds the real one now
            sock.ping(b"q")
            await rec.wait("ping")
            client.close(4001, "bye")
            ((code, reason),) = await server_rec.wait("close")
            assert (code, reason) == (4001, "bye")
            assert (await rec.wait("close"))[0] == (4001, "bye")

    run(main)


@pytest.mark.parametrize("eager", [False, True])
def test_a_server_close_and_a_protocol_error_on_an_unbuilt_object(eager: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_websockets, "EAGER", eager)

    async def main() -> None:
        async with echo_server(max_payload=10) as served:
            first, rec = await connect(served.port, "/ws", per_message_deflate=False)
            await rec.wait("open")
            sock, _ = await served.socket()
            sock.close(1000, "done")
            assert (await rec.wait("close"))[0] == (1000, "done")
            second, rec2 = await connect(served.port, "/ws", per_message_deflate=False)
            await rec2.wait("open")
            sock2, server_rec = await served.socket()
            assert _lazy(sock2) is not eager
            second.send("x" * 11)  # over max_payload: 1009
            ((code, _reason),) = await server_rec.wait("close")
            assert code == 1009
            assert (await rec2.wait("close"))[0][0] == 1009

    run(main)


# -- the peer's Close answered without the protocol object, against the object built at once --------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def _close(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


# What the peer writes after the handshake (one write), then whether the Close is answered without the object.
CLOSES: dict[str, tuple[bytes, bool]] = {
    "empty": (frame(0x8, b""), True),
    "1000": (frame(0x8, _close(1000)), True),
    "1001": (frame(0x8, _close(1001)), True),
    "3000": (frame(0x8, _close(3000, b"x")), True),
    "4999 with a reason": (frame(0x8, _close(4999, "fin ✓".encode())), True),
    "123-byte reason": (frame(0x8, _close(1000, "é".encode() * 61 + b"z")), True),
    "after a message, same read": (frame(0x1, b"hello") + frame(0x8, _close(1000, b"bye")), True),
    "bytes after it": (frame(0x8, _close(1000)) + frame(0x1, b"late") + b"\x81", True),
    "inside a fragmented message": (frame(0x1, b"part", fin=False) + frame(0x8, _close(1000, b"mid")), True),
    "999": (frame(0x8, _close(999)), False),
    "1005": (frame(0x8, _close(1005)), False),
    "1006": (frame(0x8, _close(1006)), False),
    "1015": (frame(0x8, _close(1015)), False),
    "5000": (frame(0x8, _close(5000)), False),
    "bad UTF-8 reason": (frame(0x8, _close(1000, b"\xff\xfe")), False),
    "1-byte payload": (frame(0x8, b"\x03"), False),
    "not final": (frame(0x8, _close(1000), fin=False), False),
    "reserved bit": (frame(0x8, _close(1000), rsv=0b100), False),
    "unmasked": (frame(0x8, _close(1000), mask=False), False),
    "over max_payload": (frame(0x8, _close(1000, b"r" * 20)), False),
    "after a ping": (frame(0x9, b"p") + frame(0x8, _close(1000)), False),
}


async def _close_exchange(sent: bytes, max_payload: int) -> tuple[bytes, list[tuple[Any, ...]], list[tuple[str, Any]], bool]:
    """Handshake by hand, write ``sent``, read to the server's EOF: (bytes after the 101, 'close' and 'error' args, still lazy)."""
    async with echo_server(max_payload=max_payload) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        sock, rec = await served.socket()
        proto = sock._proto
        writer.write(sent)
        received = await asyncio.wait_for(reader.read(), 5)  # to the server's EOF
        closes = await rec.wait("close")
        writer.close()
        errors = [(str(args[0]), getattr(args[0], "code", None)) for args in rec.args("error")]
        return received, closes, errors, _never_built(proto)


@pytest.mark.parametrize("case", list(CLOSES))
def test_the_peers_close_as_with_the_object_built_at_once(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sent, lean = CLOSES[case]
    max_payload = 16 if case == "over max_payload" else 1 << 20

    async def main() -> None:
        monkeypatch.setattr(_websockets, "EAGER", True)
        reference = await _close_exchange(sent, max_payload)
        monkeypatch.setattr(_websockets, "EAGER", False)
        lazy = await _close_exchange(sent, max_payload)
        assert lazy[:3] == reference[:3]  # the same bytes back, the same 'close' and 'error' events
        assert lazy[3] is lean  # answered without the object, or built for it

    run(main)


@pytest.mark.parametrize("server_closes", [False, True])
@pytest.mark.parametrize("code, reason", [(None, ""), (1000, ""), (1001, "going"), (4999, "fin ✓")])
def test_a_client_sees_the_same_close_either_way(
    server_closes: bool, code: int | None, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def exchange() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], bool]:
        async with echo_server() as served:
            client, rec = await connect(served.port, "/ws", per_message_deflate=False)
            await rec.wait("open")
            sock, server_rec = await served.socket()
            proto = sock._proto
            (sock if server_closes else client).close(code, reason)
            server_close = await server_rec.wait("close")
            client_close = await rec.wait("close")
            return server_close, client_close, _never_built(proto)

    async def main() -> None:
        monkeypatch.setattr(_websockets, "EAGER", True)
        reference = await exchange()
        monkeypatch.setattr(_websockets, "EAGER", False)
        lazy = await exchange()
        assert lazy[:2] == reference[:2] == ([(code or 1005, reason)],) * 2
        assert lazy[2]  # never built

    run(main)


# The peer's answer to our Close (one write), and whether it is answered without the object.
REPLIES: dict[str, tuple[bytes, bool]] = {
    "empty": (frame(0x8, b""), True),
    "1000": (frame(0x8, _close(1000)), True),
    "4000 with a reason": (frame(0x8, _close(4000, "ok ✓".encode())), True),
    "1005": (frame(0x8, _close(1005)), False),
    "bad UTF-8 reason": (frame(0x8, _close(1000, b"\xc3")), False),
    "1-byte payload": (frame(0x8, b"\x01"), False),
    "a message first": (frame(0x1, b"late") + frame(0x8, _close(1000)), False),
    "a fragment first": (frame(0x1, b"par", fin=False) + frame(0x8, _close(1000)), False),
}


async def _our_close_exchange(code: int | None, reason: str, reply: bytes) -> tuple[bytes, bytes, list[tuple[str, Any]], bool]:
    """Handshake by hand, the server closes, the peer replies: (our Close, the rest to EOF, the server's events, still lazy)."""
    async with echo_server() as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        sock, rec = await served.socket()
        proto = sock._proto
        sock.on("message", lambda event: rec.log.append(("message", (event.data,))))
        sock.close(code, reason)
        head = await asyncio.wait_for(reader.readexactly(2), 5)
        ours = head + await asyncio.wait_for(reader.readexactly(head[1] & 0x7F), 5)
        writer.write(reply)
        rest = await asyncio.wait_for(reader.read(), 5)  # to the server's EOF
        await rec.wait("close")
        writer.close()
        events = [(name, tuple(str(a) for a in args)) for name, args in rec.log]
        return ours, rest, events, _never_built(proto)


@pytest.mark.parametrize("code, reason", [(None, ""), (1000, ""), (4999, "fin ✓")])
@pytest.mark.parametrize("case", list(REPLIES))
def test_our_close_as_with_the_object_built_at_once(
    code: int | None, reason: str, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply, lean = REPLIES[case]

    async def main() -> None:
        monkeypatch.setattr(_websockets, "EAGER", True)
        reference = await _our_close_exchange(code, reason, reply)
        monkeypatch.setattr(_websockets, "EAGER", False)
        lazy = await _our_close_exchange(code, reason, reply)
        assert lazy[:3] == reference[:3]
        assert lazy[3] is lean

    run(main)
