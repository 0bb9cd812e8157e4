"""WebSocket frames built by hand, as a peer (or an attacker) would write them: one builder for every test."""

from __future__ import annotations

import os
import struct

from ws.protocol.reader import apply_mask


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame; masked as a client writes it unless ``mask=False`` (a server's).

    ``rsv`` is the three reserved bits as a number (``0b100`` is RSV1);
    ``length`` may lie about the payload's size.
    """
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes([first, bit | n])
    elif n < 1 << 16:
        head = bytes([first, bit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + apply_mask(payload, key)
