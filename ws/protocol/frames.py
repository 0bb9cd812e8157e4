"""The lean wire path: common frames without the Sans-I/O protocol object.

Most traffic is complete, unfragmented, uncompressed TEXT/BINARY frames.
``websockets``' pure-Python parser and serialiser cost several microseconds
per frame (a generator step per read, a ``Frame`` object, ``BytesIO``), so
for those frames, and only while the connection is OPEN without extensions,
this module reads and writes them itself, unmasking/masking with
``websockets``' C ``apply_mask``.

Everything else (control frames, fragments, reserved bits, wrong mask bit,
frames over the size limit, anything once closing has started) goes to the
protocol object, which stays the reference for correctness.  To keep its
parser consistent it is only ever fed whole frames while the lean path is
on: an incomplete frame waits in ``ws._rbuf`` until its last byte arrives
(bounded by ``max_payload``: a longer header is handed over at once, and the
protocol fails the connection with 1009).  While reading is paused
(``pause()``, or too many ``async`` listeners still running) ``_rbuf`` also
keeps the not yet delivered frames of the last read, unparsed; they are
delivered when reading resumes.  Once the protocol takes over for
good (closing, failing) it gets every byte from then on.

A large frame (``DIRECT_MIN``) is not gathered in ``_rbuf``: once an eighth
of it is in, it gets a buffer of its exact size, ``ws._frame``, and the
transport reads the rest straight into it (``_Stream`` is a
``BufferedProtocol``).  Its payload is then copied once, by the unmasking,
from the socket to the listener.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from websockets.protocol import OPEN as _P_OPEN

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

from ..events import BINARY, TEXT

if TYPE_CHECKING:  # pragma: no cover
    from websockets.protocol import Protocol

    from ..connection.websocket import WebSocket

__all__ = ["receive", "handshake", "add_frame", "serialize", "apply_mask", "TEXT_HEADS", "BINARY_HEADS"]

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
#: Below this a payload is sliced as bytes; above, through a memoryview (one copy fewer).
_SMALL = 2048
#: Frames longer than this are written as header + payload (no concatenation copy).
_JOIN_LIMIT = 16384
#: Incoming frames at least this long are read straight into a buffer of their
#: size once ``1 / DIRECT_AHEAD`` of them has arrived (``ws._frame``).
DIRECT_MIN = 128 * 1024
DIRECT_AHEAD = 8
_urandom = os.urandom
#: Masking keys come from ``os.urandom`` in blocks of this many bytes.
_KEY_BLOCK = 4096
_keys: Any = iter(())
#: The two header bytes of every short unmasked FIN frame, by payload length.
TEXT_HEADS = [bytes((_FIN_TEXT, n)) for n in range(126)]
BINARY_HEADS = [bytes((_FIN_BINARY, n)) for n in range(126)]
_from_bytes = int.from_bytes


def receive(ws: "WebSocket", proto: "Protocol", data: bytes) -> None:
    """Deliver the common frames of ``data``; hand the others to ``proto``, whole."""
    buf = ws._rbuf
    if buf is not None:
        buf += data
        data = buf
        ws._rbuf = None
    n = len(data)
    pos = 0
    need = 0  # the length of the incomplete frame at ``pos``, once its header is in
    server = ws._is_server
    limit = proto.max_message_size
    deliver = ws._deliver
    view: memoryview | None = None
    # Paused (pause() or async listeners behind): the rest waits, unparsed, in ws._rbuf.
    while n - pos >= 2 and not ws._reading_held:
        b0 = data[pos]
        b1 = data[pos + 1]
        length = b1 & 0x7F
        if length < 126:
            head = pos + 2
        elif length == 126:
            if n - pos < 4:
                break
            length = (data[pos + 2] << 8) | data[pos + 3]
            head = pos + 4
        else:
            if n - pos < 10:
                break
            length = _from_bytes(data[pos + 2 : pos + 10], "big")
            head = pos + 10
        if (b1 >= 0x80) is not server or (limit is not None and length > limit):
            # A masking error or an oversized frame: the protocol fails the
            # connection from the header alone; it reads from here on.
            _hand_over(ws, proto, data[pos:])
            return
        if server:
            head += 4
        end = head + length
        if end > n:
            need = end - pos
            break
        if (b0 == _FIN_TEXT or b0 == _FIN_BINARY) and proto.current_size is None:
            if length < _SMALL:
                payload = data[head:end]
            else:
                if view is None:
                    view = memoryview(data)
                payload = view[head:end]
            if server:
                payload = apply_mask(payload, data[head - 4 : head])
            elif type(payload) is not bytes:
                payload = bytes(payload)
            pos = end
            if b0 == _FIN_TEXT:
                try:
                    text = payload.decode()
                except UnicodeDecodeError as exc:
                    ws._fail(1007, f"invalid UTF-8 at position {exc.start}")
                    _hand_over(ws, proto, data[pos:])
                    return
                deliver(TEXT, text)
            else:
                deliver(BINARY, payload)
        else:
            # Control frame, fragment, reserved bits...: the protocol's job.
            proto.receive_data(bytes(data[pos:end]))
            pos = end
            events = proto.events_received()
            if events:
                ws._handle_events(events)
            if proto.state is not _P_OPEN:
                _hand_over(ws, proto, data[pos:])
                return
        if ws._ready_state != 1:
            # A listener closed, failed or terminated the connection: the
            # protocol reads the rest.  (While this stays OPEN the protocol is
            # OPEN too: it only changes state on frames it is given, or when
            # we close or fail, which leave OPEN first.)
            _hand_over(ws, proto, data[pos:])
            return
    spare = ws._spare
    ws._spare = None  # kept only from one large frame to the next
    if pos < n:
        have = n - pos
        if need >= DIRECT_MIN and ws._direct_reads:
            # A large frame: a buffer of its size, which the transport reads
            # the rest into (see ``_Stream.get_buffer``); no growing buffer, no
            # copy between the socket and the unmasking.  The previous large
            # frame's buffer is reused (no allocation, no page faults); a new
            # one is made only once an eighth of the frame is here, so that a
            # header alone cannot make us reserve its claimed length.
            if spare is not None and need <= len(spare) <= 4 * need:
                frame = memoryview(spare)[:need]
            elif have * DIRECT_AHEAD >= need:
                frame = memoryview(bytearray(need))
            else:
                frame = None
            if frame is not None:
                frame[:have] = memoryview(data)[pos:]
                ws._frame, ws._frame_fill = frame, have
                return
        # Only the tail of an incomplete frame waits (reused when nothing was taken).
        if type(data) is bytearray:
            ws._rbuf = data if pos == 0 else data[pos:]
        else:
            ws._rbuf = bytearray(memoryview(data)[pos:])  # one copy, not two


def _hand_over(ws: "WebSocket", proto: "Protocol", rest: Any) -> None:
    """The protocol object reads everything from now on (closing or failing)."""
    ws._lean = False
    if rest and ws._ready_state != 3:
        proto.receive_data(bytes(rest))
        events = proto.events_received()
        if events:
            ws._handle_events(events)


def handshake(ws: "WebSocket", proto: "Protocol", data: bytes) -> None:
    """Client side, before OPEN: feed the protocol exactly up to the end of the
    101 response, so that its parser stands at a frame boundary when the lean
    path takes over the bytes that follow.  ``ws._rbuf`` keeps the last three
    bytes meanwhile, in case ``\\r\\n\\r\\n`` spans two reads."""
    tail = ws._rbuf or b""
    at = (bytes(tail) + data).find(b"\r\n\r\n") if tail else data.find(b"\r\n\r\n")
    if at < 0:
        ws._rbuf = bytearray((bytes(tail) + data)[-3:])
        _feed(ws, proto, data)
        return
    ws._rbuf = None
    end = at + 4 - len(tail)
    _feed(ws, proto, data[:end])
    rest = data[end:]
    if ws._ready_state == 1 and proto.state is _P_OPEN and not proto.extensions and not proto.debug and ws._proto is proto:
        ws._lean = True
        if rest:
            receive(ws, proto, rest)
    elif rest:
        _feed(ws, proto, rest)


def _feed(ws: "WebSocket", proto: "Protocol", data: bytes) -> None:
    proto.receive_data(data)
    events = proto.events_received()
    if events:
        ws._handle_events(events)


def mask_key() -> bytes:
    """A fresh masking key for one client frame.

    RFC 6455 wants each key unpredictable, from a strong source of entropy:
    they are 4-byte pieces of ``os.urandom`` output, each handed out once.
    Reading 1,024 keys per ``os.urandom`` call instead of one saves a
    ``getrandom`` system call per message.  ``next`` on a list iterator is
    atomic under the GIL, so threads never share a key; two threads that
    find the block empty at once both refill, which only wastes a block.
    """
    global _keys
    for key in _keys:
        return key
    block = _urandom(_KEY_BLOCK)
    _keys = iter([block[i : i + 4] for i in range(0, _KEY_BLOCK, 4)])
    return next(_keys)


def serialize(opcode_byte: int, payload: Any, mask: bool) -> list[bytes]:
    """One frame as its wire pieces: ``[frame]``, or ``[header, payload]`` when large."""
    length = len(payload)
    if length < 126:
        header = bytes((opcode_byte, length | 0x80)) if mask else bytes((opcode_byte, length))
    elif length < 65536:
        header = bytes((opcode_byte, 0xFE if mask else 126, length >> 8, length & 0xFF))
    else:
        header = bytes((opcode_byte, 0xFF if mask else 127)) + length.to_bytes(8, "big")
    if mask:
        key = mask_key()
        if length > _JOIN_LIMIT:
            return [header + key, apply_mask(payload, key)]
        return [header + key + apply_mask(payload, key)]
    if length > _JOIN_LIMIT:
        return [header, payload if type(payload) is bytes else bytes(payload)]
    return [header + payload]


def add_frame(out: list[bytes], is_text: bool, payload: Any, mask: bool) -> None:
    """Append one FIN TEXT/BINARY frame to the pending writes ``out``."""
    length = len(payload)
    opcode_byte = _FIN_TEXT if is_text else _FIN_BINARY
    if length < 126 and not mask:
        out.append((TEXT_HEADS if is_text else BINARY_HEADS)[length] + payload)
    else:
        out += serialize(opcode_byte, payload, mask)
