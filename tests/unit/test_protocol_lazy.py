"""The protocol object of a lean handshake, built on first use (``_websockets.opened_server``).

Until built it answers as a fresh OPEN server protocol; any other use
builds the real one, which its holder is given and which behaves as one
built at once.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest
from websockets.frames import Close, Frame, Opcode

from ws.protocol import _websockets
from ws.protocol._websockets import Server, opened_server

LOGGER = logging.getLogger("ws.server.protocol")


def eager(max_size: int | None = 1 << 20, subprotocol: str | None = "chat") -> Server:
    proto = Server(max_size=max_size, logger=LOGGER)
    proto.choose_subprotocol(subprotocol)
    proto.mark_open()
    proto.read_frames()
    return proto


def lazy(max_size: int | None = 1 << 20, subprotocol: str | None = "chat") -> Server:
    proto = opened_server(max_size, subprotocol, LOGGER)
    proto.mark_open()  # as the server does once the 101 is written
    proto.read_frames()
    return proto


def built(proto: Server) -> bool:
    assert isinstance(proto, _websockets.LazyServer)
    return proto._real is not None


def masked(opcode: Opcode, payload: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin).serialize(mask=True, extensions=[])  # type: ignore[call-arg,unused-ignore]


def test_the_questions_of_a_lean_connection_do_not_build_it() -> None:
    proto, reference = lazy(), eager()
    questions: list[Callable[[Server], Any]] = [
        lambda p: p.is_open(), lambda p: p.is_closing(), lambda p: p.has_pending(), lambda p: p.pending_size(),
        lambda p: p.in_fragmented_message(), lambda p: p.partial_frame(), lambda p: p.parser_error(),
        lambda p: p.close_expected(), lambda p: p.message_limit(), lambda p: p.subprotocol,
        lambda p: bool(p.extensions), lambda p: p.debug, lambda p: p.close_rcvd, lambda p: p.close_sent,
    ]
    assert [ask(proto) for ask in questions] == [ask(reference) for ask in questions]
    assert not built(proto)


@pytest.mark.parametrize(
    "use",
    [
        lambda p: p.send_ping(b"keepalive"),
        lambda p: p.send_close(1000, "bye"),
        lambda p: p.receive_data(masked(Opcode.PING, b"hi")),
        lambda p: p.receive_data(masked(Opcode.CLOSE, Close(1000, "done").serialize())),
        lambda p: p.receive_data(b"\x89"),  # part of a frame
        lambda p: p.fail(1008, "policy"),
        lambda p: p.continue_message(10),
        lambda p: p.receive_eof(),
        lambda p: p.send_text(b"x"),
    ],
)
def test_any_other_use_builds_it_and_it_behaves_as_one_built_at_once(use: Callable[[Server], Any]) -> None:
    proto, reference = lazy(), eager()
    handed: list[Server] = []
    assert isinstance(proto, _websockets.LazyServer)
    proto.when_built(handed.append)
    use(proto)
    use(reference)
    assert built(proto) and handed == [proto.real()] and type(handed[0]) is Server
    assert proto.real().state is reference.state
    for ask in (
        lambda p: p.data_to_send(), lambda p: [repr(e) for e in p.events_received()],
        lambda p: p.close_rcvd, lambda p: p.close_sent, lambda p: p.close_expected(), lambda p: p.is_open(),
        lambda p: p.is_closing(), lambda p: p.in_fragmented_message(), lambda p: p.partial_frame(),
        lambda p: repr(p.parser_error()), lambda p: p.subprotocol, lambda p: p.message_limit(), lambda p: p.debug,
    ):
        assert ask(proto) == ask(reference)


def test_a_fragmented_message_after_the_lean_reader_goes_on_in_the_built_object() -> None:
    proto = lazy(max_size=100)
    proto.continue_message(90)  # the reader parsed 90 bytes of a fragmented message
    proto.receive_data(masked(Opcode.CONT, b"x" * 20))  # past max_size: 1009
    assert proto.close_sent is not None and proto.close_sent.code == 1009


def test_debug_is_fixed_when_the_handshake_is_accepted() -> None:
    LOGGER.setLevel(logging.DEBUG)
    try:
        proto = lazy()
    finally:
        LOGGER.setLevel(logging.NOTSET)
    assert proto.debug
    proto.send_ping(b"")
    assert built(proto) and proto.debug  # built later, it keeps the handshake's answer


def test_the_questions_are_forwarded_once_built() -> None:
    proto = lazy()
    proto.receive_data(masked(Opcode.CLOSE, Close(1000, "done").serialize()))
    assert built(proto)
    assert proto.close_rcvd is not None and proto.close_sent is not None and proto.is_closing()
    assert not proto.is_open() and proto.has_pending() and proto.close_expected()


def test_eager_builds_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_websockets, "EAGER", True)
    assert type(opened_server(None, None, LOGGER)) is Server


def test_a_lean_handshake_builds_no_protocol_object() -> None:
    from ws.protocol.handshake import Accepted, Policy, accept
    from ws.request import Request

    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
               ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Protocol", "chat")]
    result = accept(Request("GET", "/", headers), Policy(max_payload=1234))
    assert isinstance(result, Accepted) and result.protocol is not None
    assert not built(result.protocol)
    assert (result.protocol.subprotocol, result.protocol.message_limit()) == ("chat", 1234)


def test_it_has_everything_the_sockets_use_of_a_server_protocol() -> None:
    """The stand-in forwards only what ``ws`` uses: whatever the sockets' code asks of ``proto``, it has."""
    import re
    from pathlib import Path

    root = Path(_websockets.__file__).resolve().parent.parent
    used: set[str] = set()
    for module in ("connection/websocket.py", "connection/metered.py", "server.py"):
        used |= set(re.findall(r"proto\.([A-Za-z_]\w*)", (root / module).read_text()))
    assert {"receive_data", "send_close", "is_open"} <= used  # the reading works
    missing = sorted(name for name in used if not hasattr(_websockets.LazyServer, name))
    assert missing == []
