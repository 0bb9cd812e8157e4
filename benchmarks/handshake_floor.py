"""Floors for the handshake scenarios: what each layer under ``ws`` costs on its own.

Not a WebSocket server anyone should use.  It answers the harness'
``handshake`` scenario (upgrade, then a closing handshake started by the
client) with as little as possible at three levels, each adding one layer
that ``ws`` stands on:

``asyncio``
    asyncio's transport, the request read as bytes (the key found by a byte
    search), ``Sec-WebSocket-Accept`` computed, the 101 from a template, the
    close frame answered by hand.  No HTTP parser, no protocol object.
``h11``
    the same, with the request parsed by h11 as ``ws.http.Server`` does.
``websockets``
    the same, with ``websockets``' ``ServerProtocol`` validating the request
    (``process_request``) and doing the closing handshake, as ``ws`` does.

The difference between the last level and ``ws`` in one run is what ``ws``
itself adds: its HTTP server, routing, the request helper, the
``WebSocket`` object and its events (see docs/performance.md).  Short
text/binary frames are echoed so that a level can be checked by hand; the
adapters ``server_hsfloor_*.py`` are run by ``scripts/bench`` for the
handshake scenarios only.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging

import _common as c

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: %s\r\n\r\n"
)
_quiet = logging.getLogger("hsfloor")
_quiet.disabled = True


def _accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _key_by_search(head: bytes) -> bytes:
    start = head.lower().find(b"\r\nsec-websocket-key:")
    if start < 0:
        raise ValueError("no Sec-WebSocket-Key")
    start += len(b"\r\nsec-websocket-key:")
    return head[start : head.index(b"\r\n", start)].strip()


def make_protocol(level: str) -> type[asyncio.Protocol]:
    """The protocol class of one level: ``asyncio``, ``h11`` or ``websockets``."""
    use_h11 = level in ("h11", "websockets")
    use_websockets = level == "websockets"
    if use_h11:
        import h11
    if use_websockets:
        from websockets.datastructures import Headers
        from websockets.http11 import Request
        from websockets.protocol import OPEN
        from websockets.server import ServerProtocol
    from websockets.speedups import apply_mask

    class Floor(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.head = b""
            self.open = False
            self.proto = None
            if use_h11:
                self.http = h11.Connection(h11.SERVER)

        def data_received(self, data: bytes) -> None:
            if self.open:
                self.frames(data)
                return
            if use_h11:
                self.http.receive_data(data)
                event = self.http.next_event()
                if event is h11.NEED_DATA:
                    return
                self.http.next_event()  # EndOfMessage
                rest = bytes(self.http.trailing_data[0])
                raw = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers.raw_items()]
                if use_websockets:
                    proto = ServerProtocol(logger=_quiet)
                    request = Request(path=event.target.decode(), headers=Headers(raw))
                    accept, _, _ = proto.process_request(request)
                    proto.state = OPEN
                    proto.parser = proto.parse()  # frames from here (h11 read the request)
                    next(proto.parser)
                    self.proto = proto
                    self.transport.write(_101 % accept.encode())
                else:
                    key = next(v for n, v in raw if n.lower() == "sec-websocket-key")
                    self.transport.write(_101 % _accept(key.encode()))
            else:
                head = self.head + data
                end = head.find(b"\r\n\r\n")
                if end < 0:
                    self.head = head
                    return
                rest = head[end + 4 :]
                self.transport.write(_101 % _accept(_key_by_search(head[: end + 2])))
            self.open = True
            if rest:
                self.frames(rest)

        def frames(self, data: bytes) -> None:
            proto = self.proto
            if proto is not None:
                proto.receive_data(data)
                for frame in proto.events_received():
                    if frame.opcode.value in (1, 2):
                        proto.send_frame(frame)
                out = proto.data_to_send()
                if out and out[-1] == b"":
                    self.transport.write(b"".join(out))
                    self.transport.close()
                elif out:
                    self.transport.write(b"".join(out))
                return
            # By hand: one whole short masked frame per read (what the scenario sends).
            opcode = data[0] & 0x0F
            length = data[1] & 0x7F
            payload = apply_mask(data[6 : 6 + length], data[2:6])
            self.transport.write(bytes((0x80 | opcode, length)) + payload)
            if opcode == 8:
                self.transport.close()

    return Floor


def main(level: str) -> None:
    args = c.server_args()
    protocol = make_protocol(level)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(protocol, args.host, args.port)
        c.ready()
        await c.forever()

    c.run(serve, args.loop)
