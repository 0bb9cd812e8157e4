"""Per-connection message rate limits: ``rate_limit``, ``byte_rate_limit``, ``rate_limit_action`` (ws/_runtime/rate.py).

Raw TCP peers (``RawPeer``) write frames by hand, so that what reaches the
server in one read is known; ``WebSocket`` clients answer pings and speak
permessage-deflate.  The flood test runs the flooder in its own process and
prints the round-trip times it measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from typing import Any

import pytest

from ws import WebSocket, WebSocketServer
from ws.asgi import ASGIApp
from ws.exceptions import ProtocolError

from .conftest import ROOT, Recorder, echo_server, run, serving, until
from .frames import frame
from .test_asgi import FakeASGI, scope
from .test_limits import BINARY, CLOSE, TEXT, T, RawPeer, assert_failed_once, assert_serves

MESSAGES_REASON = "rate limit exceeded: 5 messages per 1 s"


async def read_until_close(peer: RawPeer) -> tuple[list[bytes], int, str]:
    """The data frames the server sent, then its Close frame's code and reason."""
    data: list[bytes] = []
    while True:
        opcode, payload = await peer.read_frame()
        if opcode == CLOSE:
            (code,) = struct.unpack("!H", payload[:2])
            return data, code, payload[2:].decode()
        if opcode in (TEXT, BINARY):
            data.append(payload)


def recorded(served: Any) -> list[tuple[float, Any]]:
    """Every message the server's sockets receive, with when (``time.monotonic()``), in order."""
    got: list[tuple[float, Any]] = []
    assert served.wss is not None

    def on_connection(sock: WebSocket, request: Any) -> None:
        sock.on("message", lambda event: got.append((time.monotonic(), event.data)))

    served.wss.on("connection", on_connection)
    return got


# -- options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, error, text",
    [
        ({"rate_limit": 20}, TypeError, r"rate_limit must be a \(messages, per_seconds\) pair"),
        ({"rate_limit": (20,)}, TypeError, "pair"),
        ({"rate_limit": (20, 1, 2)}, TypeError, "pair"),
        ({"rate_limit": (0, 1)}, ValueError, "messages must be at least 1"),
        ({"rate_limit": (2.5, 1)}, TypeError, "messages must be an int"),
        ({"rate_limit": (True, 1)}, TypeError, "messages must be an int"),
        ({"rate_limit": (20, 0)}, ValueError, "per_seconds must be a positive number"),
        ({"rate_limit": (20, -1.0)}, ValueError, "per_seconds must be a positive number"),
        ({"rate_limit": (20, float("inf"))}, ValueError, "per_seconds must be a positive number"),
        ({"rate_limit": (20, "1")}, TypeError, "per_seconds must be a number"),
        ({"byte_rate_limit": (-5, 1)}, ValueError, "byte_rate_limit: bytes must be at least 1"),
        ({"byte_rate_limit": "64k"}, TypeError, r"byte_rate_limit must be a \(bytes, per_seconds\) pair"),
        ({"rate_limit": (20, 1), "rate_limit_action": "drop"}, ValueError, "rate_limit_action must be 'close' or 'pause'"),
        ({"rate_limit_action": "Close"}, ValueError, "rate_limit_action"),
    ],
)
def test_options_are_checked_when_the_server_or_client_is_made(options: dict[str, Any], error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        WebSocketServer(no_server=True, **options)
    with pytest.raises(error, match=text):
        WebSocket("ws://127.0.0.1:9/", **options)  # (raises before connecting)


def test_camel_case_spellings_and_the_dict_form() -> None:
    async def main() -> None:
        async with serving(None) as served:
            WebSocketServer({"server": served.server, "path": "/js", "rateLimit": (5, 1), "byteRateLimit": (10, 1), "rateLimitAction": "pause"})
            with pytest.raises(TypeError, match="option given twice"):
                WebSocketServer(no_server=True, rateLimit=(5, 1), rate_limit=(5, 1))

    run(main)


# -- close (the default) ----------------------------------------------------------------


def test_past_the_message_limit_the_connection_closes_with_1008_and_the_message_is_not_delivered() -> None:
    async def main() -> None:
        async with echo_server(rate_limit=(5, 1)) as served:
            got = recorded(served)
            peer = await RawPeer.open(served.port)
            peer.send(b"".join(frame(TEXT, f"m{i}".encode()) for i in range(8)))  # one write: the burst and 3 more
            echoed, code, reason = await read_until_close(peer)
            assert echoed == [b"m0", b"m1", b"m2", b"m3", b"m4"]  # the burst; the 6th and later never reach a listener
            assert [data for _, data in got] == ["m0", "m1", "m2", "m3", "m4"]
            assert (code, reason) == (1008, MESSAGES_REASON)
            assert await peer.at_eof()
            sock, rec = await served.socket()
            await assert_failed_once(rec, 1008)
            ((error,),) = rec.args("error")
            assert isinstance(error, ProtocolError) and str(error) == MESSAGES_REASON
            assert rec.args("close") == [(1008, MESSAGES_REASON)]
            await assert_serves(served.url)  # the others are served as before

    run(main)


def test_past_the_byte_limit_too_counting_utf8_bytes_not_characters() -> None:
    async def main() -> None:
        async with echo_server(byte_rate_limit=(100, 1)) as served:
            peer = await RawPeer.open(served.port)
            messages = [
                frame(TEXT, b"a" * 40),
                frame(TEXT, ("\u00e9" * 20).encode()),  # 20 characters, 40 bytes
                frame(BINARY, b"\x00" * 15),  # 95 bytes so far
                frame(TEXT, b"c" * 10),  # 105: past the limit (85 if text counted characters)
                frame(TEXT, b"d"),
            ]
            peer.send(b"".join(messages))
            echoed, code, reason = await read_until_close(peer)
            assert echoed == [b"a" * 40, ("\u00e9" * 20).encode(), b"\x00" * 15]
            assert (code, reason) == (1008, "byte rate limit exceeded: 100 bytes per 1 s")
            _, rec = await served.socket()
            await assert_failed_once(rec, 1008)

    run(main)


def test_a_burst_up_to_the_count_passes_and_the_bucket_refills_over_time() -> None:
    async def main() -> None:
        async with echo_server(rate_limit=(5, 1)) as served:  # a message back every 0.2 s
            client = WebSocket(served.url)
            rec = Recorder(client, "open", "message", "close")
            await rec.wait("open", timeout=T)
            for i in range(5):
                client.send(f"burst {i}")
            await rec.wait("message", 5, timeout=T)
            await asyncio.sleep(0.5)  # 2.5 messages' worth back in the bucket
            client.send("refilled 1")
            client.send("refilled 2")
            await rec.wait("message", 7, timeout=T)
            await asyncio.sleep(0.05)
            assert rec.count("close") == 0
            for i in range(6):  # half a message left: the bucket runs out at once
                client.send(f"over {i}")
            ((code, reason),) = await rec.wait("close", timeout=T)
            assert (code, reason) == (1008, MESSAGES_REASON)
            assert 7 <= rec.count("message") <= 8, rec.count("message")

    run(main)


def test_a_message_larger_than_the_byte_bucket_passes_when_the_bucket_is_full() -> None:
    async def main() -> None:
        async with echo_server(byte_rate_limit=(100, 1)) as served:
            peer = await RawPeer.open(served.port)
            peer.send(frame(BINARY, b"x" * 250) + frame(BINARY, b"y"))  # the debt of the first refuses the second
            echoed, code, reason = await read_until_close(peer)
            assert echoed == [b"x" * 250]
            assert code == 1008 and reason.startswith("byte rate limit exceeded")

    run(main)


def test_a_client_can_limit_what_the_server_sends_it() -> None:
    async def main() -> None:
        async with serving() as served:
            assert served.wss is not None
            served.wss.on("connection", lambda sock, request: [sock.send(f"s{i}") for i in range(5)])
            client = WebSocket(served.url, rate_limit=(3, 10))
            rec = Recorder(client, "message", "close", "error")
            ((code, reason),) = await rec.wait("close", timeout=T)
            assert [event.data for (event,) in rec.args("message")] == ["s0", "s1", "s2"]
            assert (code, reason) == (1008, "rate limit exceeded: 3 messages per 10 s")
            assert rec.count("error") == 1

    run(main)


def test_compressed_messages_count_their_inflated_size() -> None:
    async def main() -> None:
        async with echo_server(per_message_deflate=True, byte_rate_limit=(1500, 1)) as served:
            client = WebSocket(served.url)  # offers permessage-deflate: the protocol object reads these frames
            rec = Recorder(client, "open", "message", "close")
            await rec.wait("open", timeout=T)
            assert "permessage-deflate" in client.extensions
            client.send("a" * 1000)  # a few bytes on the wire, 1000 once inflated
            client.send("b" * 1000)
            ((code, reason),) = await rec.wait("close", timeout=T)
            assert (code, reason) == (1008, "byte rate limit exceeded: 1500 bytes per 1 s")
            assert [event.data for (event,) in rec.args("message")] == ["a" * 1000]

    run(main)


# -- pause ----------------------------------------------------------------------------


def assert_paced(times: list[float], burst: int, interval: float) -> None:
    """Message ``k`` past the burst came no earlier than ``(k - burst + 1) * interval`` after the first."""
    start = times[0]
    for k in range(burst, len(times)):
        due = (k - burst + 1) * interval
        assert times[k] - start >= due - 0.01, (k, times[k] - start, due)


def test_pause_delivers_every_message_in_order_at_the_limit() -> None:
    async def main() -> None:
        async with echo_server(rate_limit=(10, 0.5), rate_limit_action="pause") as served:  # 20 a second
            got = recorded(served)
            client = WebSocket(served.url)
            rec = Recorder(client, "open", "message", "close")
            await rec.wait("open", timeout=T)
            sent = [f"m{i}" for i in range(40)]
            for text in sent:
                client.send(text)
            await rec.wait("message", 40, timeout=T + 3)
            assert [event.data for (event,) in rec.args("message")] == sent
            assert [data for _, data in got] == sent
            times = [when for when, _ in got]
            assert_paced(times, 10, 0.05)
            assert times[-1] - times[0] >= 1.5 - 0.01  # 30 past the burst, at 20 a second
            _, server_rec = await served.socket()
            assert server_rec.log == [] and rec.count("close") == 0

    run(main)


def test_pause_holds_messages_of_a_compressed_connection_in_order() -> None:
    async def main() -> None:
        async with echo_server(per_message_deflate=True, rate_limit=(3, 0.3), rate_limit_action="pause") as served:
            got = recorded(served)
            client = WebSocket(served.url)
            rec = Recorder(client, "open", "message")
            await rec.wait("open", timeout=T)
            sent = [f"compressed {i} " * 20 for i in range(12)]
            for text in sent:
                client.send(text)
            await rec.wait("message", 12, timeout=T)
            assert [data for _, data in got] == sent
            assert_paced([when for when, _ in got], 3, 0.1)

    run(main)


def test_pause_pushes_back_on_the_sender_through_tcp() -> None:
    async def main() -> None:
        async with serving(rate_limit=(10, 1), rate_limit_action="pause") as served:
            got = recorded(served)
            peer = await RawPeer.open(served.port)
            chunk = b"".join(frame(BINARY, bytes(1024)) for _ in range(1024))  # 1,024 messages of 1 KiB
            transport = peer.writer.transport
            written = 0
            # Write until our own buffer holds 8 MiB: the kernel's buffers are full, the server reads nothing.
            while transport.get_write_buffer_size() < 8 << 20:
                assert written < 256 << 20, "256 MiB written and the server still reads: no backpressure"
                peer.send(chunk)
                written += len(chunk)
                await asyncio.sleep(0.01)
            start = time.monotonic()
            first = len(got)
            await asyncio.sleep(1.5)
            held = transport.get_write_buffer_size()
            elapsed = time.monotonic() - start
            delivered = len(got) - first
            print(f"\nwritten {written >> 20} MiB; {held >> 20} MiB still in the sender's buffer;"
                  f" {delivered} messages delivered in {elapsed:.2f} s (limit: 10 a second)")
            assert held >= 7 << 20  # the sender stays blocked
            assert 1 <= delivered <= 10 * elapsed + 2  # throttled to the limit, not stopped
            sock, rec = await served.socket()
            assert sock.ready_state == WebSocket.OPEN and rec.log == []
            peer.abort()

    run(main, 60)


def test_keepalive_does_not_close_a_connection_the_rate_limit_paused() -> None:
    """The client answers every ping, but its pongs wait behind the messages we hold: not a dead peer."""

    async def main() -> None:
        async with echo_server(
            rate_limit=(2, 1), rate_limit_action="pause", ping_interval=0.2, ping_timeout=0.3
        ) as served:
            got = recorded(served)
            client = WebSocket(served.url)
            rec = Recorder(client, "open", "message", "close")
            await rec.wait("open", timeout=T)
            sock, server_rec = await served.socket()
            pongs = Recorder(sock, "pong")
            for i in range(8):  # 3 s of messages at 2 a second: ten ping timeouts
                client.send(f"m{i}")
            await rec.wait("message", 8, timeout=T + 3)
            assert [data for _, data in got] == [f"m{i}" for i in range(8)]
            assert server_rec.log == [] and rec.count("close") == 0, server_rec.log
            count = pongs.count("pong")
            await pongs.wait("pong", count + 2, timeout=T)  # the pongs it answered since: keepalive goes on
            assert sock.ready_state == WebSocket.OPEN

    run(main, 30)


def test_keepalive_still_closes_a_dead_peer_once_the_held_messages_are_read() -> None:
    """A raw peer never answers pings: it is closed with 1011, but only after its messages were delivered."""

    async def main() -> None:
        async with serving(
            rate_limit=(2, 1), rate_limit_action="pause", ping_interval=0.2, ping_timeout=0.3
        ) as served:
            got = recorded(served)
            peer = await RawPeer.open(served.port)
            peer.send(b"".join(frame(TEXT, f"m{i}".encode()) for i in range(6)))  # the last is due 2 s later
            sock, rec = await served.socket()
            ((code, reason),) = await rec.wait("close", timeout=T + 3)
            closed_at = time.monotonic()
            assert (code, reason) == (1011, "keepalive ping timeout")
            assert [data for _, data in got] == [f"m{i}" for i in range(6)]
            assert closed_at - got[-1][0] >= 0.3 - 0.01  # a full ping_timeout after reading went on
            peer.abort()

    run(main, 30)


def test_closing_a_paused_connection_drops_what_is_past_the_limit_and_does_not_wait_for_the_bucket() -> None:
    async def main() -> None:
        async with echo_server(rate_limit=(1, 30), rate_limit_action="pause") as served:  # one message per 30 s
            got = recorded(served)
            client = WebSocket(served.url)
            rec = Recorder(client, "open", "message", "close")
            await rec.wait("open", timeout=T)
            for i in range(3):
                client.send(f"m{i}")
            await until(lambda: len(got) == 1, what="the first message was not delivered")
            sock, server_rec = await served.socket()
            await asyncio.sleep(0.1)
            assert len(got) == 1 and sock.ready_state == WebSocket.OPEN  # the others wait for the bucket
            started = time.monotonic()
            sock.close(1000, "bye")
            ((code, reason),) = await server_rec.wait("close", timeout=T)
            assert (code, reason) == (1000, "bye")
            assert time.monotonic() - started < 2  # not the bucket's 30 s, nor close_timeout
            assert [data for _, data in got] == ["m0"]  # never more than the limit, even while closing

    run(main)


# -- behind an ASGI server ---------------------------------------------------------------


def test_asgi_sockets_close_and_pause_too() -> None:
    async def main() -> None:
        incoming = [{"type": "websocket.receive", "text": f"m{i}"} for i in range(4)]
        wss = WebSocketServer(no_server=True, path="/ws", rate_limit=(2, 10))
        recs: list[Recorder] = []
        wss.on("connection", lambda sock, request: recs.append(Recorder(sock, "message", "error")))
        fake = FakeASGI({"type": "websocket.connect"}, *incoming)
        task = asyncio.ensure_future(ASGIApp(wss)(scope(), fake.receive, fake.send))
        (close,) = await fake.sent_type("websocket.close")
        (rec,) = recs
        assert close == {"type": "websocket.close", "code": 1008, "reason": "rate limit exceeded: 2 messages per 10 s"}
        assert [event.data for (event,) in rec.args("message")] == ["m0", "m1"] and rec.count("error") == 1
        fake.incoming.put_nowait({"type": "websocket.disconnect", "code": 1008})
        await asyncio.wait_for(task, T)

        wss = WebSocketServer(no_server=True, path="/ws", rate_limit=(2, 0.2), rate_limit_action="pause")
        socks: list[WebSocket] = []
        got: list[tuple[float, Any]] = []

        def on_connection(sock: WebSocket, request: Any) -> None:
            socks.append(sock)
            sock.on("message", lambda event: got.append((time.monotonic(), event.data)))

        wss.on("connection", on_connection)
        fake = FakeASGI({"type": "websocket.connect"}, *incoming)
        task = asyncio.ensure_future(ASGIApp(wss)(scope(), fake.receive, fake.send))
        await until(lambda: len(got) == 4, what="the held messages were not delivered")
        assert [data for _, data in got] == ["m0", "m1", "m2", "m3"]
        assert_paced([when for when, _ in got], 2, 0.1)
        socks[0].terminate()
        await asyncio.wait_for(task, T)

    run(main)


# -- a flood beside ordinary clients --------------------------------------------------------

FLOODER = r"""
import json, socket, sys, time
sys.path.insert(0, sys.argv[1])
from tests.frames import frame
port, seconds = int(sys.argv[2]), float(sys.argv[3])
flood = b"".join(frame(0x1, b"flood %06d" % i + b"." * 20) for i in range(2000))  # 2,000 messages of 32 bytes
request = (
    f"GET /ws?flood HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()
end = time.monotonic() + seconds
stats = {"connections": 0, "refused": 0, "bytes": 0, "cut": 0}  # bytes: taken by our kernel, not all read
print("start", flush=True)
while time.monotonic() < end:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        more = sock.recv(4096)
        if not more:
            break
        head += more
    if not head.startswith(b"HTTP/1.1 101"):
        stats["refused"] += 1
        sock.close()
        continue
    stats["connections"] += 1
    sock.settimeout(0.1)
    try:
        while time.monotonic() < end:  # as fast as it can: a blocked send is TCP pushing back
            try:
                stats["bytes"] += sock.send(flood)
            except socket.timeout:
                pass
    except OSError:  # the server closed it: connect again, as a client library would, soon
        stats["cut"] += 1
        time.sleep(0.05)  # (a storm of handshakes is for connection limits, not rate limits)
    sock.close()
print(json.dumps(stats), flush=True)
"""


async def round_trips(url: str, clients: int, seconds: float, every: float = 0.02) -> list[float]:
    """``clients`` clients echo one message every ``every`` seconds (well within the limit) for ``seconds``: every round trip, in ms."""
    socks = [WebSocket(url) for _ in range(clients)]
    times: list[float] = []

    async def one(sock: WebSocket) -> None:
        await sock.wait_open_async(timeout=T)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            await sock.send_async("ping")
            await sock.recv_async(timeout=T)
            took = time.perf_counter() - started
            times.append(took * 1000)
            await asyncio.sleep(max(every - took, 0))

    try:
        await asyncio.gather(*(one(sock) for sock in socks))
    finally:
        for sock in socks:
            sock.close()
    return times


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


#: p99 round trip of the five ordinary clients while the flood goes on.  Measured on the shared 2-core
#: machine: 1-14 ms with the flood and a limit (0.7-5 ms without the flood); with the same flood and no
#: limit, p50 100 ms and p99 690 ms.  100 ms leaves room for a loaded machine and still tells the two apart.
P99_BOUND_MS = 100.0


@pytest.mark.parametrize("action", ["close", "pause"])
def test_a_flooder_is_cut_off_or_throttled_and_the_others_stay_served(action: str) -> None:
    limit, per = 100, 1.0

    async def main() -> None:
        async with echo_server(rate_limit=(limit, per), rate_limit_action=action) as served:
            assert served.wss is not None
            flooders: list[tuple[WebSocket, Recorder, list[float]]] = []

            def on_connection(sock: WebSocket, request: Any) -> None:
                if "flood" in request.url:
                    times: list[float] = []
                    sock.on("message", lambda event: times.append(time.monotonic()))
                    flooders.append((sock, Recorder(sock, "close"), times))

            served.wss.on("connection", on_connection)
            quiet = await round_trips(served.url, 5, 2.0)

            seconds = 5.0
            child = subprocess.Popen(
                [sys.executable, "-c", FLOODER, str(ROOT), str(served.port), str(seconds)],
                stdout=subprocess.PIPE, text=True,
            )
            try:
                await until(lambda: flooders and len(flooders[0][2]) >= limit, timeout=T, what="the flood did not start")
                flooded = await round_trips(served.url, 5, 2.0)
                loop = asyncio.get_running_loop()
                out = await asyncio.wait_for(loop.run_in_executor(None, child.communicate), seconds + 20)
            finally:
                child.kill()
                child.wait(10)
            stats = json.loads(out[0].splitlines()[-1])

            q50, q99 = percentiles(quiet)
            f50, f99 = percentiles(flooded)
            delivered = sum(len(times) for _, _, times in flooders)
            print(
                f"\n[{action}] round trip of 5 clients, ms: quiet p50 {q50:.2f} p99 {q99:.2f} ({len(quiet)} trips);"
                f" during the flood p50 {f50:.2f} p99 {f99:.2f} ({len(flooded)} trips)"
                f"\n[{action}] flooder: {stats['connections']} connection(s), {stats['bytes'] / 1e6:.1f} MB written"
                f" ({stats['bytes'] // 38} messages), {delivered} delivered (limit {limit} per {per:g} s), cut {stats['cut']} times"
            )
            assert f99 < P99_BOUND_MS, (f50, f99)
            if action == "close":
                assert stats["connections"] >= 2 and stats["cut"] >= 1  # cut off each time it came back
                for sock, rec, times in flooders[:-1]:  # (the last one may end with the flooder, 1006)
                    assert rec.args("close") == [(1008, f"rate limit exceeded: {limit} messages per {per:g} s")]
                for sock, rec, times in flooders:
                    assert len(times) <= limit + 2  # the burst, and what refilled while it was read
            else:
                ((sock, rec, times),) = flooders  # one connection, never cut: throttled
                assert stats["connections"] == 1 and stats["cut"] == 0
                span = times[-1] - times[0]
                assert len(times) <= limit + span * limit / per + 1, (len(times), span)
                assert span >= 2.0 and len(times) >= limit + (span * limit / per) / 2, (len(times), span)
                assert stats["bytes"] < 50e6  # pushed back: unthrottled, it sends hundreds of MB in 4 s

    run(main, 60)
