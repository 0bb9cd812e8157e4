"""``Assembler``: data frames to messages (fragments, incremental UTF-8, ``max_fragments``).

The frames come from the lean reader (the fragments of uncompressed
messages) or from the protocol object (compressed messages, or every frame
when the lean path is off).  A text message is decoded as its fragments
arrive, so invalid UTF-8 fails the connection at the fragment that carries
it (Autobahn 6.x), not at the end of the message.  Fragments out of order
(a continuation without a message, a new message inside one) fail with 1002.

What a message costs: a binary message keeps its fragments as they came
(no growing buffer to reallocate) and is joined once at the end, so its
peak is twice its size; a text message keeps its decoded pieces and joins
them at the end, twice the size of Python's ``str`` (1, 2 or 4 bytes per
character, by the widest character).

Sans-I/O: :meth:`frame` returns a complete message or ``None``, and raises
:class:`MessageError` (with the close code) on a violation.
"""

from __future__ import annotations

import codecs
from typing import Union

from websockets.frames import Opcode

from ..events import BINARY, TEXT

__all__ = ["Assembler", "MessageError"]

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_utf8_decoder = codecs.getincrementaldecoder("utf-8")

Buffer = Union[bytes, bytearray, memoryview]


class MessageError(Exception):
    """A message breaks a rule: the connection fails with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Assembler:
    """Fragments of one message at a time; at most ``max_fragments`` of them (``None``: no limit)."""

    __slots__ = ("max_fragments", "_opcode", "_chunks", "_text", "_decoder", "_count", "serial")

    def __init__(self, max_fragments: int | None) -> None:
        self.max_fragments = max_fragments
        self._opcode: Opcode | None = None
        self._chunks: list[bytes] | None = None
        self._text: list[str] | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self._count = 0
        #: Fragmented messages started so far (tells one unfinished message from the next).
        self.serial = 0

    @property
    def in_message(self) -> bool:
        """A fragmented message was started and not finished."""
        return self._opcode is not None

    def frame(self, opcode: Opcode, data: Buffer, fin: bool) -> tuple[int, str | bytes] | None:
        """One data frame (TEXT, BINARY or CONT); the message ``(kind, data)`` once complete."""
        if opcode is not _CONT:
            if self._opcode is not None:
                self.reset()
                raise MessageError(1002, "expected a continuation frame")
            if fin:
                if opcode is _TEXT:
                    try:
                        return TEXT, (bytes(data) if type(data) is memoryview else data).decode()
                    except UnicodeDecodeError as exc:
                        raise MessageError(1007, f"invalid UTF-8 at position {exc.start}") from None
                return BINARY, data if type(data) is bytes else bytes(data)
            self._opcode = opcode
            self._count = 1
            self.serial += 1
            if opcode is _TEXT:
                self._decoder = _utf8_decoder()
                self._text = []
                self._decode(data, False)
            else:
                self._chunks = [data if type(data) is bytes else bytes(data)]
            return None
        if self._opcode is None:
            raise MessageError(1002, "unexpected continuation frame")
        self._count += 1
        if self.max_fragments is not None and self._count > self.max_fragments:
            self.reset()
            raise MessageError(1009, f"message has more than {self.max_fragments} fragments")
        if self._opcode is _TEXT:
            self._decode(data, fin)
            if not fin:
                return None
            assert self._text is not None
            text = "".join(self._text)
            self.reset()
            return TEXT, text
        chunks = self._chunks
        assert chunks is not None
        if data:
            chunks.append(data if type(data) is bytes else bytes(data))
        if not fin:
            return None
        self.reset()
        return BINARY, b"".join(chunks)  # (one chunk is returned as it is)

    def _decode(self, chunk: Buffer, final: bool) -> None:
        assert self._decoder is not None and self._text is not None
        try:
            piece = self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            self.reset()
            raise MessageError(1007, f"invalid UTF-8: {exc.reason}") from None
        if piece:
            self._text.append(piece)

    def reset(self) -> None:
        """Drop the message being assembled (closing, failing)."""
        self._opcode = None
        self._chunks = None
        self._text = None
        self._decoder = None
        self._count = 0
