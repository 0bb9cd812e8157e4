"""Assembler without sockets: data frames in, messages (or the close code of a violation) out."""

from __future__ import annotations

import pytest
from websockets.frames import Opcode

from ws.events import BINARY, TEXT
from ws.protocol.assembler import Assembler, MessageError

T, B, C = Opcode.TEXT, Opcode.BINARY, Opcode.CONT


def test_whole_frames_are_messages() -> None:
    a = Assembler(None)
    assert a.frame(T, "é".encode(), True) == (TEXT, "é")
    assert a.frame(B, bytearray(b"\x01"), True) == (BINARY, b"\x01")
    assert a.frame(T, memoryview(b"ok"), True) == (TEXT, "ok")


def test_fragments_join_and_a_character_may_span_them() -> None:
    a = Assembler(None)
    data = "a✓b".encode()  # the check mark is 3 bytes
    assert a.frame(T, data[:2], False) is None
    assert a.in_message
    assert a.frame(C, data[2:3], False) is None
    assert a.frame(C, data[3:], True) == (TEXT, "a✓b")
    assert not a.in_message
    assert a.frame(B, b"\x01", False) is None
    assert a.frame(C, b"\x02\x03", True) == (BINARY, b"\x01\x02\x03")


def test_invalid_utf8_fails_at_the_fragment_that_carries_it() -> None:
    a = Assembler(None)
    assert a.frame(T, b"fine", False) is None
    with pytest.raises(MessageError) as caught:
        a.frame(C, b"\xff", False)  # not the last fragment: fails now
    assert caught.value.code == 1007 and not a.in_message


def test_a_character_cut_by_the_end_of_the_message_is_invalid() -> None:
    a = Assembler(None)
    a.frame(T, "✓".encode()[:2], False)
    with pytest.raises(MessageError) as caught:
        a.frame(C, b"", True)
    assert caught.value.code == 1007


def test_invalid_utf8_in_a_whole_frame() -> None:
    with pytest.raises(MessageError) as caught:
        Assembler(None).frame(T, b"\xc3\x28", True)
    assert caught.value.code == 1007 and "position 0" in caught.value.reason


def test_max_fragments_fails_with_1009() -> None:
    a = Assembler(3)
    a.frame(B, b"1", False)
    a.frame(C, b"2", False)
    a.frame(C, b"3", False)
    with pytest.raises(MessageError) as caught:
        a.frame(C, b"4", True)
    assert caught.value.code == 1009 and not a.in_message
    assert a.frame(B, b"next", True) == (BINARY, b"next")  # a new message starts clean


def test_reset_drops_the_partial_message() -> None:
    a = Assembler(None)
    a.frame(T, b"partial", False)
    a.reset()
    assert not a.in_message and a.frame(T, b"new", True) == (TEXT, "new")
