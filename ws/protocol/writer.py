"""``FrameWriter``: outgoing messages to wire bytes, batched per loop turn.

The common frames (complete, unfragmented, uncompressed TEXT/BINARY) are
built here, not by ``websockets``' serialiser: the two header bytes of a
short unmasked frame come from a table, a client's masking keys from
``os.urandom`` in blocks.  The frames wait in :attr:`pending` until the
owner writes them in one ``transport.write`` (at the end of a read, or of
the loop turn): :meth:`add` says when waiting gains nothing.

Sans-I/O: the owner takes the bytes (:meth:`take`) and writes them.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, Union, cast

try:
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask as _apply_mask

__all__ = ["FrameWriter", "serialize", "mask_key", "apply_mask", "TEXT_HEADS", "BINARY_HEADS", "FIN_TEXT", "FIN_BINARY"]

Buffer = Union[bytes, bytearray, memoryview]

#: websockets' ``apply_mask``: any buffer will do for both arguments, in C and in Python, whatever
#: the stubs of a release say (``bytes`` before websockets 16, ``bytes | bytearray`` for the mask after).
apply_mask = cast("Callable[[Buffer, Buffer], bytes]", _apply_mask)

FIN_TEXT = 0x81
FIN_BINARY = 0x82
#: Frames with a longer payload are two pieces, header and payload, not one
#: joined copy: the owner writes its pieces in one vectored system call
#: (``WebSocket._write_vector``), so the header does not go out alone and a
#: payload is not copied between ``send`` and the socket (a client's only by
#: the masking).
_JOIN_LIMIT = 16384
#: Sends outside a read wait for the end of the loop turn, unless this many
#: frames are pending or a payload is larger than ``BATCH_BYTES`` (no gain in batching it).
BATCH_FRAMES = 64
BATCH_BYTES = 16384
_urandom = os.urandom
#: Masking keys come from ``os.urandom`` in blocks of this many bytes.
_KEY_BLOCK = 4096
_keys: Iterator[bytes] = iter(())
#: The two header bytes of every short unmasked FIN frame, by payload length.
TEXT_HEADS = [bytes((FIN_TEXT, n)) for n in range(126)]
BINARY_HEADS = [bytes((FIN_BINARY, n)) for n in range(126)]


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


def serialize(opcode_byte: int, payload: Buffer, mask: bool) -> list[bytes]:
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
        # (a caller's bytearray or view is copied: it may change it once send() returns)
        return [header, payload if type(payload) is bytes else bytes(payload)]
    return [header + payload]


class FrameWriter:
    """The send half of one connection's wire state: frames waiting for one write.

    ``mask``: client side (every frame masked with a fresh key).  Frames
    made elsewhere (by the protocol object: control frames, compressed or
    fragmented messages) join the same queue with :meth:`extend`, so the
    order on the wire is the order of the sends.
    """

    __slots__ = ("pending", "mask")

    def __init__(self, *, mask: bool) -> None:
        #: Wire pieces in order; ``b""`` last means "then end the stream".
        self.pending: list[bytes] = []
        #: Client side: every frame is masked (``add``'s table of headers is for unmasked frames only).
        self.mask = mask

    def add(self, is_text: bool, payload: Buffer) -> bool:
        """Queue one FIN TEXT/BINARY frame; ``True``: write now rather than at the end of the turn."""
        n = len(payload)
        pending = self.pending
        if n < 126 and not self.mask:
            pending.append((TEXT_HEADS if is_text else BINARY_HEADS)[n] + payload)
            return len(pending) >= BATCH_FRAMES
        pending += serialize(FIN_TEXT if is_text else FIN_BINARY, payload, self.mask)
        return n > BATCH_BYTES or len(pending) >= BATCH_FRAMES

    def extend(self, pieces: list[bytes]) -> None:
        """Queue bytes made by the protocol object, behind what is queued."""
        self.pending += pieces

    def take(self) -> list[bytes]:
        """Everything queued, in order; the queue is then empty."""
        pending = self.pending
        if pending:
            self.pending = []
        return pending

    @property
    def size(self) -> int:
        """Bytes queued."""
        return sum(map(len, self.pending))

    def clear(self) -> None:
        """Drop what is queued (the connection is gone)."""
        self.pending = []

