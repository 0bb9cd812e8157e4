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
        lambda p: p.send_close(1005),  # invalid: the real object's error
        lambda p: p.send_close(None, "no code"),
        lambda p: p.receive_data(masked(Opcode.PING, b"hi")),
        lambda p: p.receive_data(b"\x89"),  # part of a frame
        # Closes the stand-in leaves to the real object: invalid, not alone, or not a plain final frame.
        lambda p: p.receive_data(masked(Opcode.CLOSE, b"\x03")),
        lambda p: p.receive_data(masked(Opcode.CLOSE, b"\x03\xed")),  # 1005
        lambda p: p.receive_data(masked(Opcode.CLOSE, b"\x03\xe8\xff")),  # bad UTF-8
        lambda p: p.receive_data(masked(Opcode.CLOSE, b"\x13\x88")),  # 5000
        lambda p: p.receive_data(masked(Opcode.CLOSE, b"") + masked(Opcode.PING, b"")),
        lambda p: p.receive_data(b"\x08\x80\x00\x00\x00\x00"),  # a Close without FIN (empty, zero mask)
        lambda p: p.receive_data(Frame(Opcode.CLOSE, b"").serialize(mask=False, extensions=[])),  # type: ignore[call-arg,unused-ignore]
        lambda p: p.receive_data(masked(Opcode.CLOSE, Close(1000, "x" * 123).serialize())[:-1]),  # part of one
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
    outcomes = []
    for p in (proto, reference):
        try:
            use(p)
            outcomes.append("")
        except Exception as exc:  # an invalid close: the same error
            outcomes.append(repr(exc))
    assert outcomes[0] == outcomes[1]
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


QUESTIONS: list[Callable[[Server], Any]] = [
    lambda p: p.data_to_send(), lambda p: [repr(e) for e in p.events_received()],
    lambda p: p.close_rcvd, lambda p: p.close_sent, lambda p: p.close_expected(), lambda p: p.is_open(),
    lambda p: p.is_closing(), lambda p: p.has_pending(), lambda p: p.pending_size(), lambda p: p.in_fragmented_message(),
    lambda p: p.partial_frame(), lambda p: repr(p.parser_error()), lambda p: p.message_limit(), lambda p: bool(p.extensions),
]


def answers(proto: Server) -> list[Any]:
    """Every answer, the pending output first (``pending_size`` and ``has_pending`` asked before it is taken)."""
    return [QUESTIONS[i](proto) for i in (7, 8, 0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13)]


PEER_CLOSES = [b"", Close(1000, "").serialize(), Close(1001, "away").serialize(), Close(3000, "").serialize(),
               Close(4999, "é" * 61 + "z").serialize()]


@pytest.mark.parametrize("payload", PEER_CLOSES)
def test_the_peers_close_is_answered_without_building_it(payload: bytes) -> None:
    proto, reference = lazy(), eager()
    for p in (proto, reference):
        p.receive_data(masked(Opcode.CLOSE, payload))
    assert not built(proto)
    assert answers(proto) == answers(reference)
    assert proto.data_to_send() == [] and proto.events_received() == []  # taken once
    for p in (proto, reference):
        p.receive_data(masked(Opcode.TEXT, b"late") + b"\x81")  # discarded after the Close
    assert not built(proto)
    assert answers(proto) == answers(reference)


@pytest.mark.parametrize(
    "then",
    [
        lambda p: p.receive_eof(),
        lambda p: p.fail(1011, "late"),
        lambda p: p.send_ping(b"x"),
        lambda p: p.send_text(b"x"),
        lambda p: p.send_close(1000),
    ],
)
@pytest.mark.parametrize("taken", [False, True])
def test_after_the_close_anything_else_builds_it_where_it_would_be(then: Callable[[Server], Any], taken: bool) -> None:
    """The real object built after the stand-in answered a Close has read it, and sent what the stand-in sent."""
    proto, reference = lazy(), eager()
    payload = Close(1000, "bye").serialize()
    outcomes = []
    for p in (proto, reference):
        p.receive_data(masked(Opcode.CLOSE, payload))
        if taken:
            p.data_to_send()
            p.events_received()
        try:
            then(p)
            outcomes.append(None)
        except Exception as exc:
            outcomes.append(repr(exc))
    assert built(proto) and outcomes[0] == outcomes[1]
    assert proto.real().state is reference.state
    assert answers(proto) == answers(reference)


@pytest.mark.parametrize("code, reason", [(None, ""), (1000, ""), (1001, "going"), (4999, "é" * 61 + "z")])
@pytest.mark.parametrize(
    "reply, answered",
    [
        (masked(Opcode.CLOSE, b""), True),
        (masked(Opcode.CLOSE, Close(1000, "").serialize()), True),
        (masked(Opcode.CLOSE, Close(3000, "ok").serialize()), True),
        # The real object's: invalid, with more, or not the Close.
        (masked(Opcode.CLOSE, b"\x03\xed"), False),
        (masked(Opcode.CLOSE, b"\x03\xe8\xc3"), False),
        (masked(Opcode.TEXT, b"in flight") + masked(Opcode.CLOSE, b""), False),
        (masked(Opcode.PING, b""), False),
        (masked(Opcode.CLOSE, b"")[:3], False),
    ],
)
def test_our_close_and_the_peers_answer(code: int | None, reason: str, reply: bytes, answered: bool) -> None:
    proto, reference = lazy(), eager()
    for p in (proto, reference):
        p.send_close(code, reason)
    assert not built(proto)
    assert answers(proto) == answers(reference)
    for p in (proto, reference):
        p.receive_data(reply)
    assert built(proto) is not answered
    assert answers(proto) == answers(reference)


def test_a_close_over_max_size_or_with_a_debug_log_is_the_real_objects() -> None:
    proto, reference = lazy(max_size=4), eager(max_size=4)
    for p in (proto, reference):
        p.receive_data(masked(Opcode.CLOSE, Close(1000, "long").serialize()))
    assert built(proto) and answers(proto) == answers(reference)
    assert reference.close_sent is not None and reference.close_sent.code == 1009
    LOGGER.setLevel(logging.DEBUG)
    try:
        logged = lazy()
    finally:
        LOGGER.setLevel(logging.NOTSET)
    logged.receive_data(masked(Opcode.CLOSE, b""))
    assert built(logged)
    LOGGER.setLevel(logging.DEBUG)
    try:
        logged = lazy()
    finally:
        LOGGER.setLevel(logging.NOTSET)
    logged.send_close(1000)
    assert built(logged)


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
    proto.receive_data(masked(Opcode.PING, b""))
    assert built(proto)
    proto.receive_data(masked(Opcode.CLOSE, Close(1000, "done").serialize()))
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
