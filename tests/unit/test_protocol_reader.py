"""FrameReader without sockets: bytes in, messages and protocol hand-overs out."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest

from ws.events import BINARY, TEXT
from ws.protocol.reader import DIRECT_AHEAD, DIRECT_MIN, PROTOCOL_TURN_BYTES, TURN_FRAMES, FrameReader

from ..frames import frame


class Owner:
    """Plays the WebSocket: collects messages, failures and what the protocol is fed."""

    def __init__(self, *, server: bool = True, limit: int | None = None) -> None:
        self.messages: list[tuple[int, str | bytes]] = []
        self.failures: list[tuple[int, str]] = []
        self.fed: list[bytes] = []
        self.protocol_open = True
        self.on_message = None
        self.later = 0  # more() calls: input kept for the next turn
        self.reader = FrameReader(
            server=server, limit=limit, deliver=self.deliver, fail=self.fail, feed=self.feed, more=self.more
        )
        self.reader.start()

    def more(self) -> None:
        self.later += 1

    def deliver(self, kind: int, data: str | bytes) -> None:
        self.messages.append((kind, data))
        if self.on_message is not None:
            self.on_message(kind, data)

    def fail(self, code: int, reason: str) -> None:
        self.failures.append((code, reason))
        self.reader.stop()

    def feed(self, data: bytes) -> bool:
        self.fed.append(data)
        return self.protocol_open


PING = frame(0x9, b"ping-1")
FRAG_1 = frame(0x1, b"frag-", fin=False)
FRAG_2 = frame(0x0, b"ment", fin=False)
FRAG_3 = frame(0x0, b"ed", fin=True)
PONG_DURING_FRAGMENTS = frame(0xA, b"pong")
MIXED = [
    frame(0x1, "héllo ✓".encode()),
    frame(0x2, bytes(range(256)) * 2),  # 16-bit length
    PING,
    FRAG_1,
    PONG_DURING_FRAGMENTS,  # a control frame inside a fragmented message: the protocol's
    FRAG_2,
    FRAG_3,
    frame(0x2, b"\x07" * 70000),  # 64-bit length
    frame(0x1, b""),
]
EXPECTED_MESSAGES = [
    (TEXT, "héllo ✓"),
    (BINARY, bytes(range(256)) * 2),
    (TEXT, "frag-mented"),
    (BINARY, b"\x07" * 70000),
    (TEXT, ""),
]
EXPECTED_FED = [PING, PONG_DURING_FRAGMENTS]
WIRE = b"".join(MIXED)


def test_one_read_delivers_the_common_frames_and_feeds_the_others_whole() -> None:
    owner = Owner()
    owner.reader.receive(WIRE)
    assert owner.later == 0  # a few frames: one turn, however long
    assert owner.messages == EXPECTED_MESSAGES
    assert owner.fed == EXPECTED_FED
    assert owner.reader.lean and owner.reader.unparsed() == b""


def test_a_split_at_every_byte_boundary_gives_the_same_result() -> None:
    small = b"".join(MIXED[:7]) + frame(0x1, b"")  # every boundary of the small frames, 16-bit header included
    expected = [m for m in EXPECTED_MESSAGES if m[1] != b"\x07" * 70000]
    for cut in range(len(small) + 1):
        owner = Owner()
        owner.reader.receive(memoryview(bytearray(small[:cut])))  # a view of a reused buffer, as asyncio gives
        owner.reader.receive(small[cut:])
        assert owner.messages == expected, cut
        assert owner.fed == EXPECTED_FED, cut


def test_one_byte_per_read() -> None:
    owner = Owner()
    for i in range(len(WIRE)):
        owner.reader.receive(WIRE[i : i + 1])
    assert owner.messages == EXPECTED_MESSAGES and owner.fed == EXPECTED_FED


def test_the_incomplete_tail_is_what_is_left_unparsed() -> None:
    owner = Owner()
    cut = frame(0x1, b"cut short")[:5]
    owner.reader.receive(frame(0x1, b"whole") + cut)
    assert owner.messages == [(TEXT, "whole")]
    assert owner.reader.unparsed() == cut


@pytest.mark.parametrize("server", [True, False], ids=["server", "client"])
def test_the_wrong_mask_bit_hands_everything_to_the_protocol(server: bool) -> None:
    owner = Owner(server=server)
    good = frame(0x1, b"ok", mask=server)
    bad = frame(0x2, b"x", mask=not server)
    owner.reader.receive(good + bad + good)
    assert owner.messages == [(TEXT, "ok")]
    assert owner.fed == [bad + good] and not owner.reader.lean
    owner.reader.receive(good)  # from now on the protocol reads
    assert owner.fed[-1] == good and len(owner.messages) == 1


def test_client_side_frames_are_unmasked() -> None:
    owner = Owner(server=False)
    owner.reader.receive(frame(0x2, b"\x01" * 300, mask=False) + frame(0x1, b"one", mask=False))
    assert owner.messages == [(BINARY, b"\x01" * 300), (TEXT, "one")]


def test_an_announced_length_over_the_limit_is_handed_over_from_the_header() -> None:
    owner = Owner(limit=1000)
    header = bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 20) + b"\x00\x00\x00\x00"
    owner.reader.receive(header)
    assert owner.fed == [header] and not owner.reader.lean and owner.reader.frame is None


def test_invalid_utf8_fails_with_1007_and_the_rest_goes_to_the_protocol() -> None:
    owner = Owner()
    after = frame(0x1, b"never delivered")
    owner.reader.receive(frame(0x1, b"ok") + frame(0x1, b"\xff\xfe") + after)
    assert owner.messages == [(TEXT, "ok")]
    assert owner.failures and owner.failures[0][0] == 1007
    assert owner.fed == [after]


@pytest.mark.parametrize(
    "wire, messages, failure, fed",
    [
        (frame(0x1, "héllo".encode()), [(TEXT, "héllo")], None, False),
        (frame(0x2, b"\x00" * 125), [(BINARY, b"\x00" * 125)], None, False),
        (frame(0x1, b""), [(TEXT, "")], None, False),
        (frame(0x1, b"\xff\xfe"), [], 1007, False),
        (frame(0x1, b"x" * 11), [], None, True),  # over the limit of 10: the protocol's
        (frame(0x1, b"a", fin=False), [], None, False),  # a fragment: the assembler's
        (frame(0x1, b"a", rsv=0b100), [], None, True),
        (frame(0x2, b"x", mask=False) + b"1234", [], None, True),  # unmasked from a client
    ],
    ids=["text", "binary-125", "empty", "bad-utf8", "over-limit", "fragment", "rsv1", "unmasked"],
)
@pytest.mark.parametrize("container", [bytes, bytearray, lambda b: memoryview(bytearray(b))], ids=["bytes", "bytearray", "view"])
def test_a_read_of_one_small_frame_is_judged_as_in_the_loop(
    wire: bytes, messages: list[tuple[int, str | bytes]], failure: int | None, fed: bool, container: Any
) -> None:
    """A read that is exactly one masked frame under 126 bytes takes a shortcut: the same verdicts,
    whatever holds the read (the socket passes a bytearray copy, other callers bytes or a view)."""
    owner = Owner(limit=10 if len(wire) - 6 == 11 else None)
    owner.reader.receive(container(wire))
    assert owner.messages == messages
    assert [code for code, _ in owner.failures] == ([failure] if failure else [])
    assert owner.fed == ([wire] if fed else [])
    if failure:
        assert not owner.reader.lean


def test_a_limit_set_after_the_start_holds_for_a_read_of_one_small_frame() -> None:
    # The owner sets the limit once the connection opens (WebSocket._start_lean): the shortcut's
    # bound follows it, so a message over it is the protocol's to fail, one within it delivered.
    owner = Owner()
    wire = frame(0x1, b"eleven byte")
    owner.reader.limit = 10
    owner.reader.receive(bytearray(wire))
    assert owner.messages == [] and owner.fed == [wire]
    owner = Owner(limit=10)
    owner.reader.limit = None
    owner.reader.receive(bytearray(wire))
    assert owner.messages == [(TEXT, "eleven byte")] and owner.fed == []


def test_a_read_of_one_small_frame_after_a_kept_tail_completes_it_first() -> None:
    owner = Owner()
    first, second = frame(0x1, b"first"), frame(0x1, b"second")
    owner.reader.receive(first[:3])
    owner.reader.receive(first[3:] + second[:2])
    owner.reader.receive(second[2:])
    assert owner.messages == [(TEXT, "first"), (TEXT, "second")]


def test_a_protocol_that_leaves_open_takes_the_rest() -> None:
    owner = Owner()
    owner.protocol_open = False  # e.g. the ping was a close frame
    close = frame(0x8, struct.pack("!H", 1000))
    after = frame(0x1, b"after")
    owner.reader.receive(frame(0x1, b"a") + close + after)
    assert owner.messages == [(TEXT, "a")] and owner.fed == [close, after] and not owner.reader.lean


def test_stop_from_a_listener_hands_the_rest_of_the_read_over() -> None:
    owner = Owner()
    owner.on_message = lambda kind, data: data == "bye" and owner.reader.stop()
    rest = frame(0x1, b"after close")
    owner.reader.receive(frame(0x1, b"a") + frame(0x1, b"bye") + rest)
    assert [m[1] for m in owner.messages] == ["a", "bye"]
    assert owner.fed == [rest]


def test_hold_keeps_the_rest_unparsed_and_release_delivers_it() -> None:
    owner = Owner()
    owner.on_message = lambda kind, data: data == "2" and owner.reader.hold(True)
    wire = b"".join(frame(0x1, str(i).encode()) for i in range(1, 6))
    owner.reader.receive(wire[:-3])
    assert [m[1] for m in owner.messages] == ["1", "2"] and owner.reader.holding
    owner.reader.receive(wire[-3:])  # what was in flight joins the held bytes
    assert len(owner.messages) == 2
    owner.on_message = None
    owner.reader.hold(False)
    owner.reader.release()
    assert [m[1] for m in owner.messages] == ["1", "2", "3", "4", "5"] and not owner.reader.holding


def read_into(reader: FrameReader, data: bytes, chunk: int, owner: Owner) -> None:
    """As asyncio's BufferedProtocol does: into the reader's frame buffer when it has one."""
    pos = 0
    scratch = bytearray(chunk)
    while pos < len(data):
        target = reader.buffer()
        if target is None:
            n = min(chunk, len(data) - pos)
            scratch[:n] = data[pos : pos + n]
            reader.receive(memoryview(scratch)[:n])
        else:
            n = min(len(target), chunk, len(data) - pos)
            target[:n] = data[pos : pos + n]
            done = reader.filled(n)
            if done is not None:
                reader.receive(done)
                reader.recycle(done)
        pos += n


def test_large_frames_are_read_into_a_buffer_of_their_size_and_reused() -> None:
    owner = Owner()
    large = [os.urandom(300_000), os.urandom(280_000)]
    wire = b"".join(frame(0x2, p) + frame(0x1, b"small %d" % i) for i, p in enumerate(large))
    read_into(owner.reader, wire, 65536, owner)
    assert owner.messages == [(BINARY, large[0]), (TEXT, "small 0"), (BINARY, large[1]), (TEXT, "small 1")]
    assert owner.reader.frame is None and owner.fed == []


def test_a_large_frame_header_alone_reserves_nothing() -> None:
    owner = Owner()
    owner.reader.buffer()  # the transport reads through the reader: large frames may go direct
    claimed = frame(0x2, os.urandom(8 << 20))
    need = len(claimed)
    owner.reader.receive(claimed[: 64 * 1024])  # well under an eighth
    assert owner.reader.frame is None and owner.reader.buffer() is None
    owner.reader.receive(claimed[64 * 1024 : need // DIRECT_AHEAD + 1])
    assert owner.reader.frame is not None and len(owner.reader.frame) == need
    assert DIRECT_MIN <= need


def test_end_of_stream_in_a_large_frame_returns_what_came() -> None:
    owner = Owner()
    owner.reader.buffer()
    part = frame(0x2, os.urandom(1 << 20))[:600_000]
    owner.reader.receive(part)
    assert owner.reader.frame is not None
    assert owner.reader.unparsed() == part and owner.reader.frame is None and not owner.reader.lean


# -- fragmented messages, parsed here ---------------------------------------------------------------


@pytest.mark.parametrize(
    "wire, code",
    [
        (frame(0x0, b"x"), 1002),  # a continuation without a message
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),  # a new message inside one
        (frame(0x2, b"a", fin=False) + frame(0x2, b"b", fin=False), 1002),
        (frame(0x1, b"ok", fin=False) + frame(0x0, b"\xff", fin=False), 1007),
    ],
    ids=["continuation-alone", "text-inside", "binary-inside", "invalid-utf8"],
)
def test_fragments_out_of_order_fail_here_and_the_rest_goes_to_the_protocol(wire: bytes, code: int) -> None:
    owner = Owner()
    after = frame(0x1, b"after")
    owner.reader.receive(wire + after)
    assert [c for c, _ in owner.failures] == [code] and owner.messages == []
    assert owner.fed == [after] and not owner.reader.lean and not owner.reader.in_message


def test_a_continuation_over_what_is_left_fails_from_its_header() -> None:
    owner = Owner(limit=1000)
    owner.reader.receive(frame(0x2, b"a" * 600, fin=False))
    assert owner.reader.in_message and owner.reader.message_size == 600
    header = frame(0x0, b"b" * 500)[:8]  # 600 + 500 > 1000: only the header is here
    owner.reader.receive(header)
    assert [c for c, _ in owner.failures] == [1009] and "max payload" in owner.failures[0][1]
    assert owner.fed == [header] and not owner.reader.in_message and owner.reader.assembler is not None
    assert not owner.reader.assembler.in_message


def test_a_control_frame_inside_a_message_is_not_held_to_what_is_left() -> None:
    owner = Owner(limit=1000)
    ping = frame(0x9, b"p" * 100)
    owner.reader.receive(frame(0x2, b"a" * 950, fin=False) + ping + frame(0x0, b"b" * 50))
    assert owner.failures == [] and owner.fed == [ping]
    assert owner.messages == [(BINARY, b"a" * 950 + b"b" * 50)]


def test_max_fragments_fails_with_1009() -> None:
    owner = Owner()
    owner.reader.max_fragments = 3
    owner.reader.receive(frame(0x2, b"1", fin=False) + frame(0x0, b"2", fin=False) + frame(0x0, b"3", fin=False))
    owner.reader.receive(frame(0x0, b"4"))
    assert [c for c, _ in owner.failures] == [1009] and owner.messages == []


def test_a_large_fragment_is_read_in_place_and_kept_as_it_came() -> None:
    owner = Owner()
    first, last = os.urandom(400_000), os.urandom(300_000)
    wire = frame(0x2, first, fin=False) + frame(0x0, last)
    read_into(owner.reader, wire, 65536, owner)
    assert owner.messages == [(BINARY, first + last)] and owner.fed == []


def test_stop_keeps_an_open_message_and_the_bytes_kept_go_to_the_protocol_first() -> None:
    owner = Owner()
    cont = frame(0x0, b"tail")
    owner.reader.receive(frame(0x1, b"head ", fin=False) + cont[:3])
    owner.reader.stop()  # closing, between two reads
    assert owner.reader.in_message and owner.reader.message_size == 5 and owner.reader.holding
    owner.reader.receive(cont[3:])
    assert owner.fed == [cont]  # the protocol reads the continuation whole, then the assembler joins it


# -- the unfinished message, for message_timeout ------------------------------------------------------


def test_the_unfinished_token_follows_one_message_at_a_time() -> None:
    owner = Owner()
    assert owner.reader.unfinished() is None
    one = frame(0x1, b"first")
    owner.reader.receive(one[:3])
    token = owner.reader.unfinished()
    assert token is not None
    owner.reader.receive(one[3:4])  # more of the same frame: the same token
    assert owner.reader.unfinished() == token
    two = frame(0x1, b"second")
    owner.reader.receive(one[4:] + two[:3])  # a new frame: a new token
    assert owner.reader.unfinished() not in (None, token)
    owner.reader.receive(two[3:])
    assert owner.reader.unfinished() is None
    owner.reader.receive(frame(0x1, b"a", fin=False))
    message = owner.reader.unfinished()
    last = frame(0x0, b"c")
    owner.reader.receive(frame(0x0, b"b", fin=False) + last[:3])  # fragments: one message, one token
    assert message is not None and owner.reader.unfinished() == message
    owner.reader.receive(last[3:])
    assert owner.reader.unfinished() is None and owner.messages[-1] == (TEXT, "abc")


def test_input_held_is_not_unfinished() -> None:
    owner = Owner()
    owner.reader.hold(True)
    owner.reader.receive(frame(0x1, b"a")[:3])
    assert owner.reader.holding and owner.reader.unfinished() is None


# -- at most TURN_FRAMES frames per call -----------------------------------------------------------------------


def test_a_long_read_is_parsed_in_turns_in_order() -> None:
    owner = Owner()
    empties = frame(0x1, b"", mask=True) * 40_000  # 240 KB of empty messages
    tail = frame(0x1, b"last")
    owner.reader.receive(empties + tail)
    per_turn = [len(owner.messages)]
    assert 0 < per_turn[0] < 40_000 and owner.later == 1 and owner.reader.holding
    assert owner.reader.unfinished() is None  # ours, not the peer's
    while owner.reader.holding:
        owner.reader.release()
        per_turn.append(len(owner.messages) - sum(per_turn))
    assert len(owner.messages) == 40_001 and owner.messages[-1] == (TEXT, "last")
    assert len(per_turn) == owner.later + 1
    # At most TURN_FRAMES a turn (a frame counts FRAME_COST bytes on top of its 6), and not much fewer.
    assert all(0.9 * TURN_FRAMES < n <= TURN_FRAMES for n in per_turn[:-1]), per_turn


@pytest.mark.parametrize("size, count", [(64 * 1024, 16), (1024, 1000), (100, 2000)])
def test_a_read_of_ordinary_messages_is_parsed_in_one_turn(size: int, count: int) -> None:
    owner = Owner()
    owner.reader.receive(frame(0x2, b"m" * size) * count)  # up to 1 MiB (READ_SIZE): one read
    assert len(owner.messages) == count and owner.later == 0 and not owner.reader.holding


def test_a_short_read_is_parsed_at_once() -> None:
    owner = Owner()
    owner.reader.receive(frame(0x1, b"x" * 100) * 300)  # 32 KB
    assert len(owner.messages) == 300 and owner.later == 0 and not owner.reader.holding


def test_not_lean_the_protocol_is_fed_in_turns_too() -> None:
    owner = Owner()
    owner.reader.stop()
    data = os.urandom(200_000)
    owner.reader.receive(data)
    while owner.reader.holding:
        owner.reader.release()
    assert b"".join(owner.fed) == data and all(len(piece) <= PROTOCOL_TURN_BYTES for piece in owner.fed)
    assert owner.later == len(owner.fed) - 1


# -- a kept incomplete frame completed by a long read ------------------------------------------------------


LONG = [frame(0x2, bytes([i]) * 65536) for i in range(6)]  # 64 KiB echoes: a 256 KiB read ends inside a frame
LONG_WIRE = b"".join(LONG)


@pytest.mark.parametrize("action", ["none", "hold", "stop"])
def test_a_kept_frame_completed_by_a_long_read_then_the_rest_in_place(action: str) -> None:
    # The frame kept from the first read gets what it lacks from the second,
    # whose rest is parsed where it is: the same messages, hand-overs and
    # kept bytes as one read of everything, whatever the completed frame's
    # listener does.
    results = []
    for cut in ([len(LONG_WIRE)], [70_000, len(LONG_WIRE)], [100_000, 100_000 + 262_144, len(LONG_WIRE)]):
        owner = Owner()
        if action == "hold":
            owner.on_message = lambda kind, data: data[0] == 1 and owner.reader.hold(True)
        elif action == "stop":
            owner.on_message = lambda kind, data: data[0] == 1 and owner.reader.stop()
        start = 0
        for end in cut:
            owner.reader.receive(memoryview(bytearray(LONG_WIRE[start:end])))
            start = end
        if action == "hold":
            assert owner.reader.holding
            owner.on_message = None
            owner.reader.hold(False)
            owner.reader.release()
        results.append((owner.messages, b"".join(owner.fed), owner.reader.lean, owner.reader.holding))
    assert results[0] == results[1] == results[2]
    messages, fed, lean, _ = results[0]
    if action == "stop":
        assert [m[1][0] for m in messages] == [0, 1] and fed == LONG_WIRE[2 * len(LONG[0]) :] and not lean
    else:
        assert [m[1] for m in messages] == [bytes([i]) * 65536 for i in range(6)] and not fed and lean



@pytest.mark.parametrize(
    "wire, protocol_open, stops, limit",
    [
        (PING, True, False, None),
        (frame(0xA, b"pong"), True, False, None),
        (frame(0x8, struct.pack("!H", 1000)), False, False, None),  # the peer's Close: the protocol leaves OPEN
        (frame(0x8, b""), False, False, None),
        (PING, True, True, None),  # the protocol's answer stops the reader (e.g. replies held)
        (frame(0x9, b"x" * 20), True, False, 10),  # over the limit: judged from the header
        (bytes([0x89 | 0x40]) + frame(0x9, b"rsv")[1:], True, False, None),  # RSV1 on a control frame
    ],
    ids=["ping", "pong", "close", "close-empty", "ping-stops", "over-limit", "rsv1"],
)
def test_a_read_of_one_control_frame_is_judged_as_in_the_loop(
    wire: bytes, protocol_open: bool, stops: bool, limit: int | None
) -> None:
    """One masked control frame alone in a read (a peer's Close, usually) takes a shortcut: the same result
    as when the loop parses it (here: its first byte came in a read of its own)."""
    after = frame(0x1, b"after")
    results = []
    for reads in ([wire], [wire[:1], wire[1:]]):
        owner = Owner(limit=limit)
        owner.protocol_open = protocol_open
        if stops:
            fed = owner.feed
            owner.feed = lambda data: (fed(data), owner.reader.stop())[0]  # type: ignore[method-assign]
            owner.reader = FrameReader(server=True, limit=limit, deliver=owner.deliver, fail=owner.fail,
                                       feed=owner.feed, more=owner.more)
            owner.reader.start()
        for data in reads:
            owner.reader.receive(memoryview(bytearray(data)))
        state = (owner.reader.lean, owner.reader.unparsed() if owner.reader.lean else None)
        owner.reader.receive(after)
        results.append((owner.fed, owner.messages, owner.failures, state))
    assert results[0] == results[1]
    assert results[0][0][:1] == [wire]


def _shortcut_bound_is_true_to_the_state(reader: FrameReader) -> bool:
    """``_small_now`` (the one attribute the one-small-frame shortcut tests) against the state it stands for."""
    open_to_it = (
        reader.lean and not reader._stopped and reader._partial is None and not reader._fragmented
        and reader._held_input is None and reader.spare is None
    )
    return reader._small_now == (reader._small_end if open_to_it else 0)


@pytest.mark.parametrize("seed", range(8))
def test_the_shortcut_s_bound_follows_every_change_of_the_state(seed: int) -> None:
    # The shortcut tests one attribute kept up to date by every change of what it stands for
    # (a kept tail, input held, a fragmented message open, a stop, the limit): a random walk of
    # reads of every size, holds, releases and limits must never find it stale, and the messages
    # must be those of one read of everything.
    import random

    rng = random.Random(seed)
    small = [frame(0x1, b"s%d" % i) for i in range(40)]
    wire = b"".join(small[:10]) + b"".join(MIXED[:7]) + b"".join(small[10:])
    owner = Owner()
    reader = owner.reader
    assert _shortcut_bound_is_true_to_the_state(reader)
    pos = 0
    while pos < len(wire):
        action = rng.random()
        if action < 0.1:
            reader.hold(not reader._held)
        elif action < 0.15:
            reader.limit = rng.choice([None, 1 << 20, 1000])  # (all within: the messages stay those of one read)
        elif action < 0.2 and not reader._held:
            reader.release()
        else:
            n = rng.choice([1, 2, 5, 6, 9, 12, 40, 300])
            reader.receive(bytearray(wire[pos : pos + n]))
            pos += n
        assert _shortcut_bound_is_true_to_the_state(reader), (seed, pos)
    reader.hold(False)
    reader.release()
    assert _shortcut_bound_is_true_to_the_state(reader)
    whole = Owner()
    whole.reader.receive(wire)
    assert owner.messages == whole.messages and owner.fed == whole.fed
    reader.stop()
    assert reader._small_now == 0 and _shortcut_bound_is_true_to_the_state(reader)
    reader.reset()
    assert reader._small_now == 0


def test_after_a_large_frame_read_in_place_the_next_small_read_goes_the_general_way_once() -> None:
    # The large frame's buffer is kept (spare) for the next, and reads stay short while it is:
    # the one-small-frame shortcut leaves dropping it to the general path, once.
    owner = Owner()
    reader = owner.reader
    big = frame(0x2, b"\x05" * (DIRECT_MIN * 2))
    read_into(reader, big, 4096, owner)
    assert reader.spare is not None and reader._small_now == 0
    assert _shortcut_bound_is_true_to_the_state(reader)
    reader.receive(bytearray(frame(0x1, b"small")))
    assert reader.spare is None and _shortcut_bound_is_true_to_the_state(reader) and reader._small_now
    reader.receive(bytearray(frame(0x1, b"again")))  # (the shortcut's)
    assert [m[1] for m in owner.messages] == [b"\x05" * (DIRECT_MIN * 2), "small", "again"]
    read_into(reader, big, 4096, owner)
    reader.trim()
    assert reader.spare is None and _shortcut_bound_is_true_to_the_state(reader) and reader._small_now
