"""In-process cost of the receive -> listener -> send path, lean path on and off.

    python benchmarks/hotpath.py [--size 32] [--batch 1000] [--rounds 300] [--metrics]
        [--rate-limit 1000000000/1] [--byte-rate-limit 1000000000/1]

No sockets: batches of masked client frames go into a server-side
``WebSocket``'s stream the way asyncio reads them (``get_buffer``, then
``buffer_updated``) with an echo listener, and a fake transport counts the
writes.  It isolates the Python work per message from the kernel,
so the effect of the lean path (``ws/protocol/reader.py``, ``writer.py``) shows without the noise of a shared
machine; the harness (scripts/bench) remains the measure that counts.
``--metrics`` measures the lean path of a plain socket (metrics off) and of
a ``MeteredWebSocket`` (metrics on, ``ws.metrics``) in turn, repetition by
repetition.  ``--rate-limit`` and
``--byte-rate-limit`` (``COUNT/SECONDS``, set high enough never to be reached) measure what the check of
``rate_limit=``/``byte_rate_limit=`` costs per message (``ws/_runtime/rate.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ws.protocol import _websockets as _protocol  # noqa: E402
from ws.protocol.reader import apply_mask  # noqa: E402
from ws.connection.websocket import WebSocket  # noqa: E402
from ws.connection.metered import MeteredWebSocket  # noqa: E402
from ws._runtime.metrics import Tally  # noqa: E402


class CountingTransport(asyncio.Transport):
    """Accepts writes and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:  # a read past the reader's turn budget waits for the next loop turn
        pass

    def resume_reading(self) -> None:
        pass


class FakeRequest:
    url = "/"
    remote_address = "127.0.0.1"


def client_frame(payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 65536:
        head = bytes([0x82, 0xFE]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0xFF]) + n.to_bytes(8, "big")
    return head + key + apply_mask(payload, key)


def echo_socket(lean: bool, listener: str, metered: bool, options: dict[str, Any] | None = None) -> tuple[WebSocket, CountingTransport]:
    """A server-side socket, just accepted, echoing every message to a counting transport."""
    proto = _protocol.Server(max_size=2**24)
    proto.mark_open()
    proto.read_frames()
    transport = CountingTransport()
    cls = MeteredWebSocket if metered else WebSocket
    ws = cls._accepted(asyncio.get_running_loop(), proto, transport, FakeRequest(), None, options or {})  # type: ignore[arg-type]
    if isinstance(ws, MeteredWebSocket):
        ws._metered(Tally("/"))
    if not lean:  # as with an extension: every frame through the protocol object
        ws._lean = False
        ws._reader.stop()
    if listener == "node":  # Node's signature: (data, is_binary)
        ws.on("message", lambda data, is_binary: ws.send(data))
    else:  # JSH's: one MessageEvent
        ws.on("message", lambda event: ws.send(event.data))
    return ws, transport


def reader(ws: WebSocket, transport: CountingTransport, data: bytes) -> Callable[[], None]:
    """One batch of ``data`` into ``ws``, the way asyncio reads it (``get_buffer``, then ``buffer_updated``)."""
    stream = transport.protocol  # the BufferedProtocol asyncio would read into

    def read() -> None:  # what the transport does (recv_into the buffer it gets, buffer_updated)
        pos = 0
        while pos < len(data):
            buffer = stream.get_buffer(-1)
            n = min(len(buffer), len(data) - pos)
            buffer[:n] = data[pos : pos + n]
            stream.buffer_updated(n)
            pos += n
        while ws._read_scheduled:  # the rest of a long read, as the next loop turns would parse it
            ws._read_on()

    return read


async def measure(
    lean: bool, size: int, batch: int, rounds: int, listener: str = "event", options: dict[str, Any] | None = None
) -> tuple[float, int]:
    ws, transport = echo_socket(lean, listener, False, options)
    read = reader(ws, transport, b"".join(client_frame(os.urandom(size)) for _ in range(batch)))
    for _ in range(max(rounds // 10, 5)):  # warm up
        read()
    transport.writes = 0
    start = time.perf_counter()
    for _ in range(rounds):
        read()
    elapsed = time.perf_counter() - start
    return elapsed / (rounds * batch) * 1e6, transport.writes


async def measure_metrics(size: int, batch: int, rounds: int, listener: str) -> dict[bool, list[float]]:
    """The lean path, metrics off and on, batch by batch in turn (a busy machine slows both alike): us/msg per batch."""
    data = b"".join(client_frame(os.urandom(size)) for _ in range(batch))
    reads = {metered: reader(*echo_socket(True, listener, metered), data) for metered in (False, True)}
    times: dict[bool, list[float]] = {False: [], True: []}
    for turn in range(rounds + max(rounds // 10, 5)):
        for metered in ((False, True) if turn % 2 else (True, False)):
            start = time.perf_counter()
            reads[metered]()
            if turn >= max(rounds // 10, 5):  # after the warm-up
                times[metered].append((time.perf_counter() - start) / batch * 1e6)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--listener", choices=("event", "node"), default="event", help="lambda event: ... (JSH) or lambda data, is_binary: ... (Node)")
    ap.add_argument("--metrics", action="store_true", help="the lean path with metrics off and on, in turn")
    ap.add_argument("--rate-limit", metavar="COUNT/SECONDS", help="rate_limit=(COUNT, SECONDS) on the socket")
    ap.add_argument("--byte-rate-limit", metavar="COUNT/SECONDS", help="byte_rate_limit=(COUNT, SECONDS)")
    args = ap.parse_args()
    if args.metrics:
        times = asyncio.run(measure_metrics(args.size, args.batch, args.rounds * args.reps, args.listener))
        for name, pick in (("min", min), ("median", statistics.median)):
            off, on = pick(times[False]), pick(times[True])
            print(f"{name:6s} metrics off {off:6.3f} us/msg, on {on:6.3f} us/msg ({on - off:+.3f} us, {100 * (on / off - 1):+.1f}%)")
        return
    options: dict[str, Any] = {}
    if args.rate_limit or args.byte_rate_limit:
        from ws._runtime.rate import rate_policy

        limits = {}
        for name, value in (("rate_limit", args.rate_limit), ("byte_rate_limit", args.byte_rate_limit)):
            if value:
                count, _, seconds = value.partition("/")
                limits[name] = (int(count), float(seconds or 1))
        options["rate_policy"] = rate_policy(limits)
    for lean in (False, True):
        runs = [asyncio.run(measure(lean, args.size, args.batch, args.rounds, args.listener, options)) for _ in range(args.reps)]
        us = statistics.median(r[0] for r in runs)
        writes = runs[0][1]
        label = "lean path" if lean else "protocol object"
        print(f"{label:16s} {us:6.2f} us/msg (median of {args.reps}), {writes} writes for {args.rounds} batches")


if __name__ == "__main__":
    main()
