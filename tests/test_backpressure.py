"""Backpressure, both ways, and closing without losing what was sent.

``buffered_amount`` counts unsent bytes, ``'drain'`` fires below the
low-water mark, ``pause()``/``resume()`` stop and restart reading, a peer
that stops reading cannot grow our memory past ``max_buffered_amount``, and a
flood into slow ``async def`` listeners is held back by TCP, not queued.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ws import WebSocket, WebSocketServer
from ws.exceptions import WebSocketError
from ws.connection.websocket import DEFAULT_MAX_BUFFERED_AMOUNT, MAX_PENDING_LISTENERS
from ws._runtime.reads import kept_budget
from ws.protocol.reader import READ_AHEAD

from .conftest import Recorder, echo_server, run, until
from .test_limits import BINARY, CLOSE, TEXT, T, RawPeer, close_payload, frame

MB = 1 << 20


async def open_pair(served: Any, **client_options: Any) -> tuple[WebSocket, Recorder, WebSocket, Recorder]:
    client = WebSocket(served.url, **client_options)
    crec = Recorder(client, "open", "message", "close", "error", "drain")
    await crec.wait("open", timeout=T)
    sock, _ = await served.socket()
    srec = Recorder(sock, "error", "close", "drain")
    return client, crec, sock, srec


def test_server_buffered_amount_grows_then_drain_when_the_client_reads_again() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None) as served:
            client, crec, sock, srec = await open_pair(served)
            sock.remove_all_listeners("message")  # no echo: one direction only
            client.pause()  # on this loop: takes effect at once
            assert client.is_paused
            chunk = b"s" * MB
            for _ in range(24):
                sock.send(chunk)
            queued = sock.buffered_amount
            assert queued > 2 * MB, queued  # the kernel took some, the rest waits with us
            # negative check: the paused client reads nothing, so no later event on either side can be awaited
            await asyncio.sleep(0.2)
            assert crec.count("message") == 0 and srec.count("drain") == 0
            client.resume()
            await srec.wait("drain", timeout=T)
            assert sock.buffered_amount <= 1 << 18 or crec.count("message") > 0
            msgs = await crec.wait("message", 24, timeout=15)
            assert all(m[0].data == chunk for m in msgs)
            await until(lambda: sock.buffered_amount == 0)
            client.close()
            await crec.wait("close", timeout=T)

    run(main, 40)


def test_client_buffered_amount_and_drain_when_the_server_pauses() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None) as served:
            client, crec, sock, srec = await open_pair(served)
            sock.remove_all_listeners("message")
            got: list[int] = []
            sock.on("message", lambda event: got.append(len(event.data)))
            sock.pause()  # on this loop: takes effect at once
            assert sock.is_paused
            chunk = b"c" * MB
            for _ in range(24):
                client.send(chunk)
            assert client.buffered_amount > 2 * MB, client.buffered_amount
            # negative check: the paused server reads nothing, so no later event on either side can be awaited
            await asyncio.sleep(0.2)
            assert got == [] and crec.count("drain") == 0
            sock.resume()
            await crec.wait("drain", timeout=T)
            await until(lambda: len(got) == 24, timeout=15)
            assert client.buffered_amount == 0
            client.close()
            await crec.wait("close", timeout=T)

    run(main, 40)


def test_pause_and_resume_stop_and_restart_reading() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None) as served:
            client, crec, sock, srec = await open_pair(served)
            client.pause()
            client.pause()  # idempotent
            for i in range(50):
                sock.send(f"m{i}")
            await until(lambda: sock.buffered_amount == 0)  # all 50 handed to the kernel
            # negative check: the paused client reads nothing, so no later event on it can be awaited
            await asyncio.sleep(0.2)
            assert crec.count("message") == 0 and client.is_paused and client.isPaused
            client.resume()
            msgs = await crec.wait("message", 50, timeout=T)
            assert [m[0].data for m in msgs] == [f"m{i}" for i in range(50)]
            assert not client.is_paused
            client.close()
            await crec.wait("close", timeout=T)

    run(main)


def test_a_sender_that_watches_buffered_amount_stays_bounded() -> None:
    """The documented pattern: stop above a threshold, go on at 'drain'."""

    async def main() -> None:
        async with echo_server(ping_interval=None) as served:
            client, crec, sock, srec = await open_pair(served)
            sock.remove_all_listeners("message")
            received = 0

            async def slow_reader(event: Any) -> None:
                nonlocal received
                received += len(event.data)

            client.remove_all_listeners("message")
            client.on("message", slow_reader)
            chunk, total, threshold = b"w" * (256 * 1024), 64, 2 * MB
            sent, peak = 0, 0
            done = asyncio.get_running_loop().create_future()

            def pump() -> None:
                nonlocal sent, peak
                while sent < total and sock.buffered_amount <= threshold:
                    sock.send(chunk)
                    sent += 1
                    peak = max(peak, sock.buffered_amount)
                if sent == total and not done.done():
                    done.set_result(None)

            sock.on("drain", pump)
            # The reader pauses now and then: the sender must wait for it.
            pump()
            for _ in range(5):
                client.pause()
                await asyncio.sleep(0.05)
                client.resume()
                await asyncio.sleep(0.02)
            await asyncio.wait_for(done, 20)
            await until(lambda: received == total * len(chunk), timeout=20)
            assert peak <= threshold + len(chunk) + 64, peak
            assert srec.count("error") == 0
            client.close()
            await crec.wait("close", timeout=T)

    run(main, 60)


def test_a_peer_that_never_reads_is_dropped_at_max_buffered_amount() -> None:
    async def main() -> None:
        limit = 4 * MB
        async with echo_server(ping_interval=None, max_buffered_amount=limit) as served:
            client, crec, sock, srec = await open_pair(served)
            sock.remove_all_listeners("message")
            client.pause()  # and never resumes
            chunk = b"x" * (256 * 1024)
            peak = 0
            for _ in range(400):  # 100 MB offered: far more than the kernel and the cap hold
                if sock.ready_state != WebSocket.OPEN:
                    break
                sock.send(chunk)
                peak = max(peak, sock.buffered_amount)
                await asyncio.sleep(0)
            assert sock.ready_state != WebSocket.OPEN, "the cap never triggered"
            assert peak <= limit + 2 * len(chunk), peak
            ((code, reason),) = await srec.wait("close", timeout=T)
            assert code == 1008 and "buffer" in reason
            errors = [a[0] for a in srec.args("error")]
            assert isinstance(errors[0], WebSocketError) and "max_buffered_amount" in str(errors[0])
            assert srec.names()[0] == "error"
            client.resume()
            ((code, _),) = await crec.wait("close", timeout=T)  # the client sees the connection drop
            assert code == 1006
            assert not served.wss.clients

    run(main, 40)


def test_max_buffered_amount_default_and_opt_out() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None, maxBufferedAmount=None) as served:
            client, crec, sock, srec = await open_pair(served, max_buffered_amount=MB)
            assert sock.max_buffered_amount is None
            assert client.max_buffered_amount == MB
            client.close()
            await crec.wait("close", timeout=T)
        async with echo_server(ping_interval=None) as served:
            client, crec, sock, srec = await open_pair(served)
            assert sock.max_buffered_amount == client.max_buffered_amount == DEFAULT_MAX_BUFFERED_AMOUNT
            client.close()
            await crec.wait("close", timeout=T)

    run(main)


def test_a_flood_into_slow_async_listeners_is_held_back_by_tcp() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None) as served:
            client, crec, sock, srec = await open_pair(served)
            sock.remove_all_listeners("message")
            active = peak = done = 0
            order: list[int] = []

            async def slow(event: Any) -> None:
                nonlocal active, peak, done
                active += 1
                peak = max(peak, active)
                order.append(int(event.data[:8]))
                await asyncio.sleep(0.01)  # a slow listener, on purpose
                active -= 1
                done += 1

            sock.on("message", slow)
            size, count = 16 * 1024, 2000  # 32 MB, sent as fast as the client can
            for i in range(count):
                client.send(b"%08d" % i + b"f" * (size - 8))
            # The server stopped reading, so the client holds what TCP refused.
            assert client.buffered_amount > 4 * MB, client.buffered_amount
            await until(lambda: done == count, timeout=40)
            assert order == list(range(count))
            # Never more than the bound: frames past it wait, unparsed, until half have finished.
            assert peak <= MAX_PENDING_LISTENERS, peak
            # A task's done callback (which counts it finished) runs one loop
            # turn after its last line, so the count may lag ``done`` briefly.
            await until(
                lambda: sock._listener_tasks == 0 and not sock._reading_held(),
                what=f"listener tasks left: {sock._listener_tasks}, held: {sock._reading_held()}",
            )
            client.close()
            await crec.wait("close", timeout=T)

    run(main, 60)


def test_a_burst_of_tiny_frames_in_one_read_creates_no_more_listeners_than_the_bound() -> None:
    """10,000 empty messages arrive in one or two reads: without the bound, one task each at once."""

    async def main() -> None:
        async with echo_server(ping_interval=None) as served:
            served.wss.remove_all_listeners("connection")
            active = peak = done = 0

            async def slow(event: Any) -> None:
                nonlocal active, peak, done
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.001)  # a slow listener, on purpose
                active -= 1
                done += 1

            served.wss.on("connection", lambda sock, request: sock.on("message", slow))
            peer = await RawPeer.open(served.port)
            count = 10_000
            peer.send(frame(TEXT, b"", mask=True) * count)
            await until(lambda: done == count, timeout=40, step=0.02)
            assert peak <= MAX_PENDING_LISTENERS, peak
            peer.send(frame(CLOSE, close_payload(1000)))
            assert await peer.read_close() == 1000

    run(main, 60)


def test_pause_inside_a_listener_holds_the_rest_of_the_batch() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None, close_timeout=1.0) as served:
            served.wss.remove_all_listeners("connection")
            got: list[str] = []

            def on_connection(sock: WebSocket, request: Any) -> None:
                def on_message(event: Any) -> None:
                    got.append(event.data)
                    if len(got) == 3:
                        sock.pause()

                sock.on("message", on_message)
                served.accepted.append((sock, Recorder(sock, "close")))

            served.wss.on("connection", on_connection)
            peer = await RawPeer.open(served.port)
            peer.send(b"".join(frame(TEXT, b"m%d" % i) for i in range(10)))  # one write, one read
            await until(lambda: len(got) >= 3)
            # negative check: the paused socket delivers nothing, so no later event on it can be awaited
            await asyncio.sleep(0.2)
            assert got == ["m0", "m1", "m2"]  # the other seven wait
            sock, _ = await served.socket()
            sock.resume()
            await until(lambda: len(got) == 10)
            assert got == [f"m{i}" for i in range(10)]

    run(main)


# -- closing ---------------------------------------------------------------------------------


def test_close_flushes_everything_sent_before_it() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None) as served:
            client, crec, sock, srec = await open_pair(served)
            client.pause()  # so that the 10 MB are still queued when close() is called (at once: this loop)
            assert client.is_paused
            big = bytes(range(256)) * (10 * MB // 256)
            sock.send(big)
            sock.send("last words")
            sock.close(1000, "bye")
            assert sock.buffered_amount > 0
            await asyncio.sleep(0.1)  # the window tested: a pending close must not drop what is queued
            client.resume()
            msgs = await crec.wait("message", 2, timeout=15)
            assert msgs[0][0].data == big and msgs[1][0].data == "last words"
            ((code, reason),) = await crec.wait("close", timeout=T)
            assert (code, reason) == (1000, "bye")
            ((code, _),) = await srec.wait("close", timeout=T)
            assert code == 1000 and srec.count("error") == 0

    run(main, 40)


def test_client_close_flushes_too() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None) as served:
            client, crec, sock, srec = await open_pair(served)
            sock.remove_all_listeners("message")
            got: list[bytes] = []
            sock.on("message", lambda event: got.append(event.data))
            sock.pause()
            big = b"\x5a" * (10 * MB)
            client.send(big)
            client.close(4001, "done")
            await asyncio.sleep(0.1)  # the window tested: a pending close must not drop what is queued
            sock.resume()
            ((code, reason),) = await srec.wait("close", timeout=15)
            assert got == [big] and (code, reason) == (4001, "done")
            await crec.wait("close", timeout=T)

    run(main, 40)


def test_server_close_sends_1001_and_finishes_within_close_timeout_despite_a_mute_peer() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None, close_timeout=0.5) as served:
            polite = WebSocket(served.url)
            prec = Recorder(polite, "open", "close")
            await prec.wait("open", timeout=T)
            mute = await RawPeer.open(served.port)  # never answers the close frame
            await until(lambda: len(served.wss.clients) == 2)
            closed = asyncio.get_running_loop().create_future()
            loop = asyncio.get_running_loop()
            started = loop.time()
            served.wss.close(lambda: closed.done() or closed.set_result(loop.time()))
            ((code, _),) = await prec.wait("close", timeout=T)
            assert code == 1001
            opcode, payload = await mute.read_frame()
            assert opcode == CLOSE and payload[:2] == b"\x03\xe9"  # 1001
            finished = await asyncio.wait_for(closed, T)
            assert finished - started < 0.5 + 2.0, finished - started
            assert await mute.at_eof(), "the mute peer is dropped after close_timeout"
            assert not served.wss.clients

    run(main)


def test_broadcast_drops_a_client_that_does_not_read_and_feeds_the_others() -> None:
    async def main() -> None:
        limit = 4 * MB
        async with echo_server(ping_interval=None, max_buffered_amount=limit) as served:
            stuck = WebSocket(served.url)
            srec = Recorder(stuck, "open", "close")
            await srec.wait("open", timeout=T)
            stuck_side, stuck_events = await served.socket(0)
            reader = WebSocket(served.url)
            rrec = Recorder(reader, "open", "message", "close")
            await rrec.wait("open", timeout=T)
            await served.socket(1)
            stuck.pause()  # and never resumes
            chunk = b"b" * (256 * 1024)
            for _ in range(120):  # 30 MB each
                served.wss.broadcast(chunk)
                await asyncio.sleep(0.005)  # paced broadcasts (the scenario): the reading client reads between them
            ((code, _),) = await stuck_events.wait("close", timeout=T)
            assert code == 1008
            await rrec.wait("message", 120, timeout=20)
            assert reader.ready_state == WebSocket.OPEN
            assert served.wss.clients == {served.accepted[1][0]}
            reader.close()
            await rrec.wait("close", timeout=T)
            stuck.resume()
            await srec.wait("close", timeout=T)

    run(main, 60)


def test_max_buffered_amount_must_be_a_positive_int_or_none() -> None:
    with pytest.raises(ValueError, match="max_buffered_amount must be positive"):
        WebSocket("ws://127.0.0.1:1/", max_buffered_amount=0)
    with pytest.raises(TypeError, match="max_buffered_amount must be an int or None, got str"):
        WebSocket("ws://127.0.0.1:1/", maxBufferedAmount="64MB")
    with pytest.raises(ValueError, match="max_buffered_amount must be positive"):
        WebSocketServer(no_server=True, max_buffered_amount=-1)
    with pytest.raises(TypeError, match="got float"):
        WebSocketServer(no_server=True, max_buffered_amount=1.5)


def test_water_marks_apply_on_both_sides() -> None:
    async def main() -> None:
        async with echo_server(ping_interval=None, high_water_mark=128 * 1024, low_water_mark=32 * 1024) as served:
            client, crec, sock, srec = await open_pair(served, high_water_mark=64 * 1024, low_water_mark=16 * 1024)
            assert client._transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
            assert sock._transport.get_write_buffer_limits() == (32 * 1024, 128 * 1024)
            client.close()
            await crec.wait("close", timeout=T)

    run(main)


async def _pause_after_every_message(served: Any, kept: list[int], counted: list[int], pauses: int) -> WebSocket:
    """A peer streams 64 KiB frames as fast as TCP takes them; the socket pauses after each message.

    Each pause comes at the start of a read of a full socket buffer; what the
    socket keeps unparsed at each pause goes to ``kept``, the thread's
    ``KeptBudget.over`` then to ``counted``.
    """
    served.wss.remove_all_listeners("connection")
    got: list[int] = []

    def on_connection(sock: WebSocket, request: Any) -> None:
        def on_message(event: Any) -> None:
            got.append(len(event.data))
            sock.pause()

        sock.on("message", on_message)
        served.accepted.append((sock, Recorder(sock, "close")))

    served.wss.on("connection", on_connection)
    peer = await RawPeer.open(served.port)
    peer.send(frame(BINARY, b"k" * 65536) * (pauses * 2))  # asyncio writes it as the server takes it
    sock, _ = await served.socket()
    for n in range(1, pauses + 1):
        await until(lambda: len(got) >= n and sock.is_paused)
        await asyncio.sleep(0.005)  # the peer refills the socket buffer meanwhile
        kept.append(sock._reader.kept)
        counted.append(kept_budget().over)
        assert len(got) == n  # paused: nothing more is delivered
        sock.resume()
    await until(lambda: sock.is_paused)  # (after the next message)
    return sock


def test_a_paused_socket_keeps_at_most_read_ahead_once_the_kept_budget_is_spent() -> None:
    # The thread's paused sockets keep more than its budget (here: none at
    # all): a paused socket keeps at most READ_AHEAD of its peer's input (with
    # 1 MiB reads, up to 15 of those frames).
    async def main() -> None:
        budget = kept_budget()
        limit = budget.limit
        budget.set_limit(0)
        try:
            async with echo_server(ping_interval=None, close_timeout=1.0) as served:
                kept: list[int] = []
                await _pause_after_every_message(served, kept, [], 48)
                assert max(kept) <= READ_AHEAD, kept
                assert max(kept) > 0, kept  # reads did bring frames past the paused one
        finally:
            budget.set_limit(limit)

    run(main, 40)


def test_what_paused_sockets_keep_beyond_read_ahead_is_counted_and_given_back() -> None:
    # Within the budget, reads are 1 MiB and a paused socket may keep more
    # than READ_AHEAD: the thread's budget counts it while reading is paused
    # and has it back once the socket reads again, or is gone.
    async def main() -> None:
        budget = kept_budget()
        assert budget.over == 0
        async with echo_server(ping_interval=None, close_timeout=1.0) as served:
            kept: list[int] = []
            counted: list[int] = []
            sock = await _pause_after_every_message(served, kept, counted, 24)
            assert max(kept) > READ_AHEAD, kept  # 1 MiB reads (a full socket buffer)
            # At each pause, that pause's excess alone: each resume gave the last one back.
            assert counted == [max(0, n - READ_AHEAD) for n in kept]
            assert budget.over == max(0, sock._reader.kept - READ_AHEAD)  # paused once more
            sock.terminate()  # gone while paused: what it kept is given back too
            await until(lambda: sock.ready_state == 3)
        assert budget.over == 0

    run(main, 40)
