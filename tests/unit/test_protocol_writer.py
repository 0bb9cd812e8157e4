"""FrameWriter without sockets: messages in, wire bytes out."""

from __future__ import annotations

import struct
import threading

import pytest

from ws.events import BINARY, TEXT
from ws.protocol import writer as _writer
from ws.protocol.reader import FrameReader, apply_mask
from ws.protocol.writer import BATCH_BYTES, BATCH_FRAMES, FrameWriter, serialize


def parse(wire: bytes) -> list[tuple[int, bytes, bytes | None]]:
    """(first byte, payload, masking key) of each frame."""
    out = []
    pos = 0
    while pos < len(wire):
        b0, b1 = wire[pos], wire[pos + 1]
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            (n,) = struct.unpack("!H", wire[pos : pos + 2])
            pos += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", wire[pos : pos + 8])
            pos += 8
        key = None
        if b1 & 0x80:
            key = wire[pos : pos + 4]
            pos += 4
        payload = wire[pos : pos + n]
        pos += n
        out.append((b0, apply_mask(payload, key) if key else payload, key))
    return out


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
@pytest.mark.parametrize("mask", [False, True], ids=["server", "client"])
def test_every_length_encoding_round_trips(size: int, mask: bool) -> None:
    writer = FrameWriter(mask=mask)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    writer.add(False, payload)
    writer.add(True, b"after")
    frames = parse(b"".join(writer.take()))
    assert [(b0, data) for b0, data, _ in frames] == [(0x82, payload), (0x81, b"after")]
    assert all((key is not None) is mask for _, _, key in frames)
    assert writer.pending == []


def test_add_says_when_waiting_for_the_end_of_the_turn_gains_nothing() -> None:
    writer = FrameWriter(mask=False)
    assert [writer.add(True, b"x") for _ in range(BATCH_FRAMES)] == [False] * (BATCH_FRAMES - 1) + [True]
    writer.take()
    assert writer.add(False, b"\x00" * (BATCH_BYTES + 1))  # a large payload: write it now


def test_frames_from_the_protocol_keep_their_place() -> None:
    writer = FrameWriter(mask=False)
    writer.add(True, b"1")
    writer.extend([b"\x8a\x00"])  # a pong the protocol made
    writer.add(True, b"2")
    assert writer.size == 3 + 2 + 3
    assert [b0 for b0, _, _ in parse(b"".join(writer.take()))] == [0x81, 0x8A, 0x81]


def test_what_a_client_writes_a_server_reader_reads() -> None:
    writer = FrameWriter(mask=True)
    messages = [(TEXT, "héllo"), (BINARY, b"\x00" * 70_000), (TEXT, "")]
    for kind, data in messages:
        writer.add(kind == TEXT, data.encode() if isinstance(data, str) else data)
    got: list[tuple[int, str | bytes]] = []
    reader = FrameReader(server=True, limit=None, deliver=lambda k, d: got.append((k, d)), fail=print, feed=lambda d: True)
    reader.start()
    reader.receive(b"".join(writer.take()))
    assert got == messages


def test_client_frames_carry_fresh_keys_and_unmask_right() -> None:
    keys = set()
    for n in range(3000):
        payload = b"x%d" % n
        (wire,) = serialize(0x82, payload, True)
        key = wire[2:6]
        keys.add(key)
        assert apply_mask(wire[6:], key) == payload
    assert len(keys) >= 2995  # random 32-bit keys: a collision or two at most


def test_mask_keys_are_read_in_blocks_and_never_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    counter = iter(range(1 << 30))

    def numbered_urandom(n: int) -> bytes:  # every 4-byte piece distinct, so any reuse shows
        calls.append(n)
        return b"".join(next(counter).to_bytes(4, "big") for _ in range(n // 4))

    monkeypatch.setattr(_writer, "_urandom", numbered_urandom)
    monkeypatch.setattr(_writer, "_keys", iter(()))
    per_thread, threads = 5000, 4
    got: list[list[bytes]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def take(mine: list[bytes]) -> None:
        start.wait(5)
        for _ in range(per_thread):
            mine.append(_writer.mask_key())

    workers = [threading.Thread(target=take, args=(got[n],)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    keys = [key for mine in got for key in mine]
    assert len(keys) == per_thread * threads and all(len(key) == 4 for key in keys)
    assert len(set(keys)) == len(keys)  # no key served twice, across threads
    # One os.urandom call per 1,024 keys (a racing refill may add one).
    assert all(n == 4096 for n in calls)
    assert len(keys) / 1024 <= len(calls) <= len(keys) / 1024 + threads + 1
