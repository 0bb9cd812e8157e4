"""ws.connection.websocket: the client socket against a real ``websockets`` server."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from websockets.asyncio.server import serve

import ws
from ws import WebSocket

from .conftest import Recorder, run, until


async def echo(conn: object) -> None:
    async for message in conn:  # type: ignore[attr-defined]
        await conn.send(message)  # type: ignore[attr-defined]


def ws_url(server: object, path: str = "/") -> str:
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return f"ws://127.0.0.1:{port}{path}"


# -- construction errors -------------------------------------------------------


def test_url_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="URL must be a string, got NoneType"):
        WebSocket()
    with pytest.raises(TypeError, match="got int"):
        WebSocket(8080)


@pytest.mark.parametrize("url", ["ftp://x/", "127.0.0.1:8080", "ws://", "ws://host/#frag"])
def test_bad_url_is_a_value_error(url: str) -> None:
    with pytest.raises(ValueError):
        WebSocket(url)


def test_bad_subprotocols_and_options() -> None:
    with pytest.raises(ValueError, match="subprotocol"):
        WebSocket("ws://127.0.0.1:1/", ["a", "a"])
    with pytest.raises(ValueError, match="subprotocol"):
        WebSocket("ws://127.0.0.1:1/", "bad proto")
    with pytest.raises(TypeError, match="unknown WebSocket option"):
        WebSocket("ws://127.0.0.1:1/", bogus=1)


def test_constants() -> None:
    assert (WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED) == (0, 1, 2, 3)
    assert (WebSocket.TextMessage, WebSocket.BinaryMessage) == (1, 2)


# -- talking to a websockets server -------------------------------------------------


def test_echo_text_binary_and_large() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
            # Compression is negotiated, whose default limit (1 MiB) the big message passes: set it.
            sock = WebSocket(ws_url(server), max_payload=4 << 20)
            rec = Recorder(sock, "open", "message", "close", "error")
            await rec.wait("open")
            assert sock.ready_state == WebSocket.OPEN == sock.readyState
            big = b"\xff" * (3 * 1024 * 1024)
            sock.send("héllo")
            sock.send(b"\x00\x01")
            sock.send(bytearray(b"ba"))
            sock.send(big)
            msgs = await rec.wait("message", 4)
            events = [m[0] for m in msgs]
            assert [(e.type, e.is_binary) for e in events] == [(1, False), (2, True), (2, True), (2, True)]
            assert events[0].data == "héllo" and isinstance(events[0].data, str)
            assert events[1].data == b"\x00\x01" and type(events[1].data) is bytes
            assert events[3].data == big
            sock.close(4000, "done")
            assert sock.ready_state == WebSocket.CLOSING
            (code, reason), = await rec.wait("close")
            assert (code, reason) == (4000, "done")
            assert sock.ready_state == WebSocket.CLOSED
            assert rec.count("error") == 0
            assert rec.names()[0] == "open" and rec.names()[-1] == "close"

    run(main)


def test_subprotocol_negotiated_and_none() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, subprotocols=["b", "a"]) as server:
            sock = WebSocket(ws_url(server), ["a", "b"])
            rec = Recorder(sock, "open", "close")
            await rec.wait("open")
            assert sock.protocol == "b"
            sock.close()
            await rec.wait("close")
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "close")
            await rec.wait("open")
            assert sock.protocol == ""
            sock.terminate()
            (code, _), = await rec.wait("close")
            assert code == 1006

    run(main)


def test_per_message_deflate_offered_by_default_and_can_be_disabled() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            on = WebSocket(ws_url(server))
            off = WebSocket(ws_url(server), per_message_deflate=False)
            r1, r2 = Recorder(on, "open", "message"), Recorder(off, "open")
            await r1.wait("open")
            await r2.wait("open")
            assert on.extensions.startswith("permessage-deflate")
            assert off.extensions == ""
            on.send("x" * 10000)
            (evt,), = await r1.wait("message")
            assert evt.data == "x" * 10000
            on.close()
            off.close()

    run(main)


def test_refused_connection_emits_error_then_close() -> None:
    async def main() -> None:
        sock = WebSocket("ws://127.0.0.1:1/")
        rec = Recorder(sock, "open", "error", "close")
        (code, _), = await rec.wait("close")
        assert code == 1006
        assert rec.names() == ["error", "close"]
        err = rec.args("error")[0][0]
        assert isinstance(err, ws.ConnectError)
        assert "ECONNREFUSED" in str(err) and "127.0.0.1:1" in str(err)

    run(main)


def test_unknown_host_reports_dns_failure() -> None:
    async def main() -> None:
        sock = WebSocket("ws://no-such-host.invalid/")
        rec = Recorder(sock, "error", "close")
        await rec.wait("close", timeout=15)
        err = rec.args("error")[0][0]
        assert isinstance(err, ws.ConnectError)
        assert "no-such-host.invalid" in str(err)

    run(main)


def test_rejected_upgrade_reports_status() -> None:
    async def main() -> None:
        def reject(conn: object, request: object) -> object:
            return conn.respond(403, "go away\n")  # type: ignore[attr-defined]

        async with serve(echo, "127.0.0.1", 0, process_request=reject) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "unexpected-response", "error", "close", "open")
            await rec.wait("close")
            assert rec.names() == ["unexpected-response", "error", "close"]
            status, headers, body = rec.args("unexpected-response")[0]
            assert status == 403 and b"go away" in body
            err = rec.args("error")[0][0]
            assert isinstance(err, ws.HandshakeError) and err.status == 403
            assert str(err) == "Unexpected server response: 403 Forbidden"

    run(main)


def test_handshake_timeout() -> None:
    async def main() -> None:
        # A TCP server that never answers the upgrade request.  It keeps its writers: Python 3.13
        # closes a garbage-collected StreamWriter's connection, which the client would see as a reset.
        writers: list[asyncio.StreamWriter] = []
        server = await asyncio.start_server(lambda r, w: writers.append(w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            sock = WebSocket(f"ws://127.0.0.1:{port}/", handshake_timeout=0.3)
            rec = Recorder(sock, "error", "close")
            (code, _), = await rec.wait("close")
            assert code == 1006
            assert "timed out" in str(rec.args("error")[0][0])
        finally:
            server.close()

    run(main)


def test_send_before_open_and_after_close_emits_error() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "error", "close")
            sock.send("too early")
            err = rec.args("error")[0][0]
            assert isinstance(err, ws.NotOpenError)
            assert str(err) == "WebSocket is not open: readyState 0 (CONNECTING)"
            await rec.wait("open")
            sock.close()
            await rec.wait("close")
            sock.send("too late")
            assert str(rec.args("error")[1][0]) == "WebSocket is not open: readyState 3 (CLOSED)"

    run(main)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_invalid_close_codes_raise(code: int) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "close")
            await rec.wait("open")
            with pytest.raises(ValueError):
                sock.close(code)
            with pytest.raises(ValueError):
                sock.close(1000, "x" * 124)
            assert sock.ready_state == WebSocket.OPEN
            sock.close(1000, "y" * 123)
            (c, r), = await rec.wait("close")
            assert c == 1000 and r == "y" * 123

    run(main)


def test_close_while_connecting() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "error", "close")
            sock.close()
            (code, _), = await rec.wait("close")
            assert code == 1006
            assert "closed before the connection was established" in str(rec.args("error")[0][0])
            assert rec.count("open") == 0

    run(main)


def test_ping_pong_events() -> None:
    async def main() -> None:
        async def pinger(conn: object) -> None:
            await conn.ping(b"srv")  # type: ignore[attr-defined]
            async for message in conn:  # type: ignore[attr-defined]
                await conn.send(message)  # type: ignore[attr-defined]

        async with serve(pinger, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "ping", "pong", "close")
            await rec.wait("open")
            (payload,), = await rec.wait("ping")
            assert payload == b"srv"
            sock.ping("abc")
            (payload,), = await rec.wait("pong")
            assert payload == b"abc"
            with pytest.raises(ValueError):
                sock.ping(b"x" * 126)
            sock.close()
            await rec.wait("close")

    run(main)


def test_max_payload_closes_with_1009() -> None:
    async def main() -> None:
        async def blaster(conn: object) -> None:
            await conn.send(b"x" * 5000)  # type: ignore[attr-defined]
            await conn.wait_closed()  # type: ignore[attr-defined]

        async with serve(blaster, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server), max_payload=1000)
            rec = Recorder(sock, "message", "error", "close")
            (code, _), = await rec.wait("close")
            assert rec.count("message") == 0
            err = rec.args("error")[0][0]
            assert isinstance(err, ws.ProtocolError) and err.close_code == 1009
            assert code == 1009

    run(main)


def test_listener_exception_is_reported_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "error", "close")

            def boom(evt: object) -> None:
                raise RuntimeError("listener bug")

            sock.on("message", boom)
            sock.on("message", rec._make("message"))
            await rec.wait("open")
            sock.send("1")
            await rec.wait("message")
            assert isinstance(rec.args("error")[0][0], RuntimeError)
            sock.send("2")  # the connection survived
            await rec.wait("message", 2)
            sock.close()
            await rec.wait("close")

    run(main)
    assert "listener bug" in caplog.text


def test_listeners_may_take_fewer_arguments_and_be_async() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            seen: list[object] = []
            done = asyncio.get_running_loop().create_future()
            sock.on("open", lambda: sock.send("a"))

            async def on_message(evt: object) -> None:
                await asyncio.sleep(0)
                seen.append(evt.data)  # type: ignore[attr-defined]
                sock.close()

            sock.on("message", on_message)
            sock.on("close", lambda: done.set_result(True))
            await done
            assert seen == ["a"]

    run(main)


def test_dom_style_listeners_and_aliases() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            got: list[object] = []
            done = asyncio.get_running_loop().create_future()

            def on_message(event: object) -> None:
                got.append(event)

            sock.addEventListener("open", lambda event: sock.send("dom"))
            sock.addEventListener("message", on_message)
            sock.addEventListener("close", lambda event: done.set_result(event))
            await until(lambda: got, 5, what="no 'message' event")
            assert got[0].data == "dom"  # type: ignore[attr-defined]
            sock.removeEventListener("message", on_message)
            after = Recorder(sock, "message")
            sock.send("ignored")
            sock.send("marker")  # echoed after "ignored": once it is here, "ignored" was dispatched
            msgs = await after.wait("message", 2)
            assert [m[0].data for m in msgs] == ["ignored", "marker"]
            assert len(got) == 1
            assert sock.bufferedAmount == 0
            sock.close(1000, "bye")
            event = await done
            assert (event.code, event.reason, event.was_clean, event.wasClean) == (1000, "bye", True, True)

    run(main)


def test_send_from_another_thread() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "message", "close")
            await rec.wait("open")
            threads = [threading.Thread(target=lambda i=i: [sock.send(f"{i}-{n}") for n in range(50)]) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(5)
            msgs = await rec.wait("message", 200)
            texts = [m[0].data for m in msgs]
            for i in range(4):  # per-thread order is kept
                mine = [t for t in texts if t.startswith(f"{i}-")]
                assert mine == [f"{i}-{n}" for n in range(50)]
            sock.close()
            await rec.wait("close")

    run(main)


def test_a_send_on_the_loop_goes_after_the_sends_a_thread_made_before_it() -> None:
    """Sends ordered by the application (a lock, a queue) leave in that order, whichever thread makes them."""

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "message", "close")
            await rec.wait("open")
            sent = threading.Event()

            def from_thread(n: int) -> None:
                sock.send(f"{n}")  # hops over to the loop
                sent.set()

            for n in range(0, 100, 2):
                sent.clear()
                threading.Thread(target=from_thread, args=(n,)).start()
                sent.wait(5)  # blocking the loop: the thread's send is still on its way to it
                sock.send(f"{n + 1}")  # on the loop, after it: must not overtake it
                await asyncio.sleep(0)
            msgs = await rec.wait("message", 100)
            assert [m[0].data for m in msgs] == [f"{n}" for n in range(100)]
            sock.close()
            await rec.wait("close")

    run(main)


def test_pause_and_resume() -> None:
    async def main() -> None:
        echoed = asyncio.Event()

        async def echo_and_tell(conn: object) -> None:
            async for message in conn:  # type: ignore[attr-defined]
                await conn.send(message)  # type: ignore[attr-defined]
                echoed.set()

        async with serve(echo_and_tell, "127.0.0.1", 0) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "message", "close")
            await rec.wait("open")
            sock.pause()
            assert sock.is_paused
            sock.send("held")
            await asyncio.wait_for(echoed.wait(), 5)  # the echo is on its way to the paused socket
            # negative check: a paused socket reads nothing, so no later event on it can be awaited
            await asyncio.sleep(0.1)
            assert rec.count("message") == 0
            sock.resume()
            await rec.wait("message")
            sock.close()
            await rec.wait("close")

    run(main)


def test_fragmented_send_arrives_as_one_message() -> None:
    async def main() -> None:
        frames: list[tuple[str, bool]] = []

        async def recorder(conn: object) -> None:
            # recv_streaming yields each fragment: proof the message was fragmented.
            async for fragment in conn.recv_streaming():  # type: ignore[attr-defined]
                frames.append((fragment, False))
            frames.append(("", True))
            async for fragment in conn.recv_streaming():  # type: ignore[attr-defined]
                frames.append((fragment, False))
            await conn.send("done")  # type: ignore[attr-defined]

        async with serve(recorder, "127.0.0.1", 0) as server:
            for deflate in (False, True):
                frames.clear()
                sock = WebSocket(ws_url(server), per_message_deflate=deflate)
                rec = Recorder(sock, "open", "message", "close", "error")
                await rec.wait("open")
                sock.send("hel", fin=False)
                sock.send("lo ", fin=False)
                sock.send("world")  # fin=True ends the message
                sock.send(b"\x01", fin=False)
                sock.send(b"\x02\x03", fin=True)
                await rec.wait("message")
                assert frames == [("hel", False), ("lo ", False), ("world", False), ("", True),
                                  (b"\x01", False), (b"\x02\x03", False)]
                assert rec.count("error") == 0
                sock.close()
                await rec.wait("close")

    run(main)


# -- sends outside a listener: one write per loop turn ------------------------------


def test_sends_in_one_loop_turn_leave_in_one_write_in_order() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_size=None, compression=None) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "message")
            await rec.wait("open")
            assert sock._lean  # uncompressed: the lean path, where sends are batched
            transport = sock._transport
            writes: list[int] = []
            real_write = transport.write

            def counting_write(data: bytes) -> None:
                writes.append(len(data))
                real_write(data)

            transport.write = counting_write  # type: ignore[method-assign]
            for i in range(10):
                sock.send(f"m{i}")
            assert writes == []  # queued until the end of this loop turn...
            assert sock.buffered_amount == 10 * (2 + 4 + 2)  # ... and counted as buffered
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert len(writes) == 1  # ... then one write for all ten frames
            # A large payload is not held back: it flushes what is queued before it, in order.
            sock.send("small")
            sock.send(b"\x01" * 100_000)
            assert sock._writer.pending == []  # written at once (one writev, past transport.write)
            msgs = await rec.wait("message", 12)
            assert [m[0].data for m in msgs[:11]] == [f"m{i}" for i in range(10)] + ["small"]
            assert msgs[11][0].data == b"\x01" * 100_000
            sock.close()

    run(main)


def test_a_burst_without_yielding_is_written_in_bounded_batches() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_size=None, compression=None) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "message")
            await rec.wait("open")
            for i in range(1000):  # never yields: the queue is written every 64 frames
                sock.send(str(i))
                assert len(sock._writer.pending) <= 64 * 2
            msgs = await rec.wait("message", 1000)
            assert [m[0].data for m in msgs] == [str(i) for i in range(1000)]
            sock.close()

    run(main)


def test_frames_queued_for_the_loop_turn_are_dropped_when_the_connection_is_lost() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, compression=None) as server:
            sock = WebSocket(ws_url(server))
            rec = Recorder(sock, "open", "close", "error")
            await rec.wait("open")
            transport = sock._transport
            writes: list[bytes] = []
            real_write = transport.write
            transport.write = lambda data: (writes.append(data), real_write(data))  # type: ignore[method-assign]
            sock.send("queued")
            sock._connection_lost(None)  # the connection ends before the end of this turn
            assert sock._writer.pending == []
            loop = asyncio.get_running_loop()
            turn = loop.create_future()
            loop.call_soon(turn.set_result, None)  # runs after the flush scheduled (call_soon) by send()
            await asyncio.wait_for(turn, 5)  # the scheduled flush has run and found nothing to write
            assert writes == []
            assert (await rec.wait("close"))[0][0] == 1006 and rec.count("error") == 0

    run(main)


def test_users_may_keep_their_own_attributes_on_sockets() -> None:
    """Node code marks sockets (``ws.isAlive = true``); slots for our hot state must not forbid it."""

    async def main() -> None:
        server = ws.WebSocketServer(port=0, host="127.0.0.1")
        seen: list[Any] = []

        def on_connection(peer: WebSocket, _request: Any) -> None:
            peer.is_alive = True  # type: ignore[attr-defined]
            peer.on("message", lambda event: seen.append((peer.is_alive, event.data)))  # type: ignore[attr-defined]

        server.on("connection", on_connection)
        await Recorder(server, "listening").wait("listening")
        sock = WebSocket(f"ws://127.0.0.1:{server.address()['port']}/")
        sock.room = "lobby"  # type: ignore[attr-defined]
        rec = Recorder(sock, "open", "close")
        await rec.wait("open")
        sock.send("hi")
        await until(lambda: bool(seen))
        assert seen == [(True, "hi")] and sock.room == "lobby"  # type: ignore[attr-defined]
        sock.close()
        await rec.wait("close")
        server.close()

    run(main)
