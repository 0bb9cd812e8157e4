"""ws.protocol._websockets: the version check and the methods over websockets' internals."""

from __future__ import annotations

import pytest
import websockets

from ws.protocol import _websockets
from ws.protocol._websockets import Server, check_version


@pytest.mark.parametrize("version", ["14.0", "15.0.1", "17.4", websockets.__version__])
def test_supported_versions_pass(version: str) -> None:
    check_version(version)


@pytest.mark.parametrize("version", ["13.1", "18.0", "2.0", "nonsense"])
def test_unsupported_versions_fail_naming_the_range(version: str) -> None:
    with pytest.raises(ImportError) as caught:
        check_version(version)
    low, high = _websockets.SUPPORTED
    assert version in str(caught.value)
    if version != "nonsense":
        assert f">= {low}, < {high}" in str(caught.value)


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload


def test_the_internals_as_methods() -> None:
    proto = Server(max_size=1000)
    proto.mark_open()
    proto.read_frames()
    assert proto.is_open() and proto.message_limit() == 1000
    assert not proto.has_pending() and not proto.in_fragmented_message()
    proto.receive_data(frame(0x1, b"frag", fin=False))
    assert proto.in_fragmented_message()
    proto.receive_data(frame(0x9, b"p"))  # a ping: a pong waits
    assert proto.has_pending()
    proto.data_to_send()
    assert not proto.has_pending() and proto.parser_error() is None


def test_a_close_inside_a_fragmented_message_closes_normally() -> None:
    proto = Server()
    proto.mark_open()
    proto.read_frames()
    proto.receive_data(frame(0x1, b"frag", fin=False))
    proto.receive_data(frame(0x8, b"\x03\xe8"))
    assert not proto.in_fragmented_message() and proto.parser_error() is None
    assert proto.close_rcvd is not None and proto.close_rcvd.code == 1000
