"""Node's argument shapes and server spellings, and the errors that say what to write instead.

Issue 14: a script written with Node habits runs, or stops when the object is
built with an error that names the fix.  Real sockets on loopback; the last
part runs whole scripts, written as a Node user would, in subprocesses and
checks what they print and their exit status.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from ws import ConnectionClosed, NotOpenError, Reject, WebSocket, WebSocketServer, http
from ws._runtime import loop as _loop
from ws._runtime.net import check_port
from ws.asgi import ASGIApp

from .conftest import ROOT, Recorder, run, serving, until
from .test_asgi import FakeASGI, scope


async def opened(url: str, *args: Any, **kwargs: Any) -> tuple[WebSocket, Recorder]:
    sock = WebSocket(url, *args, **kwargs)
    rec = Recorder(sock, "open", "message", "close", "error", "unexpected-response")
    await rec.wait("open")
    return sock, rec


# -- WebSocket(url, options), WebSocket(url, protocols, options) ------------------------------------


def test_options_dict_in_second_position_sends_headers_and_no_subprotocol() -> None:
    async def main() -> None:
        async with serving() as served:
            seen = Recorder(served.wss, "connection")
            sock, _ = await opened(served.url, {"headers": {"X-Token": "abc"}, "origin": "http://app.test", "handshakeTimeout": 5})
            (server_sock, request), = await seen.wait("connection")
            assert request.get_header("x-token") == "abc" and request.get_header("origin") == "http://app.test"
            assert request.get_header("sec-websocket-protocol") is None and sock.protocol == ""
            sock.close()

    run(main)


def test_protocols_then_options_and_keywords_beside_them() -> None:
    async def main() -> None:
        async with serving() as served:
            seen = Recorder(served.wss, "connection")
            sock, _ = await opened(served.url, ["chat", "superchat"], {"headers": [("X-A", "1")]}, origin="http://o.test")
            (_, request), = await seen.wait("connection")
            assert sock.protocol == "chat" and request.get_header("x-a") == "1"
            assert request.get_header("origin") == "http://o.test"
            sock.close()

    run(main)


def test_client_shape_errors_say_what_to_write() -> None:
    url = "ws://127.0.0.1:9/"
    with pytest.raises(TypeError, match=r"options go second .* WebSocket\(url, \{\.\.\.\}\)"):
        WebSocket(url, [{"headers": {}}])
    with pytest.raises(TypeError, match=r"the second argument is the protocols"):
        WebSocket(url, {"origin": "x"}, {"headers": {}})
    with pytest.raises(TypeError, match="options must be a dict, got list"):
        WebSocket(url, ["chat"], [("origin", "x")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="given both in the options dict and as keywords: origin"):
        WebSocket(url, {"origin": "a"}, origin="b")
    with pytest.raises(TypeError, match=r"given both .*: max_payload"):
        WebSocket(url, {"maxPayload": 1}, max_payload=2)
    with pytest.raises(TypeError, match=r"rejectUnauthorized \(TLS settings go in one ssl.SSLContext: ssl=context"):
        WebSocket("wss://127.0.0.1:9/", {"rejectUnauthorized": False})
    with pytest.raises(TypeError, match=r"unknown WebSocket option\(s\): bogus$"):
        WebSocket(url, {"bogus": 1})


@pytest.mark.parametrize(
    "url, message",
    [
        ("ws://localhost:99999/chat", "port 99999 is out of range 0-65535 in 'ws://localhost:99999/chat'"),
        ("ws://[::1]:70000", "port 70000 is out of range 0-65535 in 'ws://[::1]:70000'"),
        ("wss://user:pw@example.test:123456/", "port 123456 is out of range 0-65535 in 'wss://user:pw@example.test:123456/'"),
        ("ws://host:abc/", "port 'abc' is not a number in 'ws://host:abc/'"),
    ],
)
def test_a_port_out_of_range_in_a_url_says_which(url: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        WebSocket(url)
    assert str(caught.value) == message


def test_check_port_is_the_one_port_rule() -> None:
    assert check_port(8080) == 8080 and check_port("443") == 443 and check_port(0) == 0
    with pytest.raises(ValueError, match=r"^port 99999 is out of range 0-65535 in --port$"):
        check_port(99999, "--port")
    with pytest.raises(ValueError, match=r"^port -1 is out of range"):
        check_port("-1")
    with pytest.raises(TypeError, match="port must be an int, got float"):
        check_port(80.0)
    with pytest.raises(TypeError):
        check_port(True)
    with pytest.raises(ValueError, match=r"port 70000 is out of range 0-65535 in address '127.0.0.1:70000'"):
        http.Server("127.0.0.1:70000")


# -- send(data, options, callback) ---------------------------------------------------------------


def test_send_with_options_and_callback_calls_back_after_the_write() -> None:
    async def main() -> None:
        async with serving() as served:
            seen = Recorder(served.wss, "connection")
            sock, _ = await opened(served.url)
            (peer, _), = await seen.wait("connection")
            got = Recorder(peer, "message")
            results: list[Any] = []
            returned = False

            def callback(error: Exception | None) -> None:
                results.append((error, returned))

            sock.send("as bytes", {"binary": True}, callback)
            returned = True
            sock.send(b"as text", {"binary": False})
            sock.send("plain", callback)
            sock.send("no-arg callback", lambda: results.append("called"))
            messages = await got.wait("message", 4)
            assert [(m.data, m.is_binary) for (m,) in messages] == [
                (b"as bytes", True), ("as text", False), ("plain", False), ("no-arg callback", False)
            ]
            await until(lambda: len(results) == 3)
            # Never synchronously inside send(); None: written.
            assert results == [(None, True), (None, True), "called"]
            sock.close()

    run(main)


def test_send_callback_gets_the_error_instead_of_an_error_event() -> None:
    async def main() -> None:
        async with serving() as served:
            sock = WebSocket(served.url)
            rec = Recorder(sock, "open", "error", "close")
            results: list[Any] = []
            sock.send("too early", lambda error: results.append(error))  # CONNECTING
            await until(lambda: results)
            assert isinstance(results[0], NotOpenError) and "readyState 0 (CONNECTING)" in str(results[0])
            await rec.wait("open")
            sock.close()
            await rec.wait("close")
            sock.send("too late", {"binary": True}, lambda error: results.append(error))
            await until(lambda: len(results) == 2)
            assert isinstance(results[1], NotOpenError) and "(CLOSED)" in str(results[1])
            assert rec.count("error") == 0  # told once, to the callback
            sock.send("no callback")  # the old way: an 'error' event
            await rec.wait("error")
            assert isinstance(rec.args("error")[0][0], NotOpenError)

    run(main)


def test_send_callback_waits_while_the_peer_does_not_read() -> None:
    big = b"x" * (48 << 20)  # more than the kernel's buffers on loopback

    async def main() -> None:
        async with serving(max_payload=None) as served:
            seen = Recorder(served.wss, "connection")
            sock, rec = await opened(served.url, max_payload=None)
            (peer, _), = await seen.wait("connection")
            peer.pause()
            await asyncio.sleep(0.05)
            results: list[Any] = []
            sock.send(big, lambda error: results.append(error))
            sock.send(b"small", lambda error: results.append(error))
            await asyncio.sleep(0.5)
            assert results == [] and sock.buffered_amount > 0  # still in the transport: not called yet
            got = Recorder(peer, "message")
            peer.resume()
            await got.wait("message", 2, timeout=20)
            await until(lambda: len(results) == 2, timeout=10)
            assert results == [None, None]
            sock.close()

    run(main, timeout=40)


def test_send_callback_gets_connection_closed_when_the_connection_drops_first() -> None:
    big = b"x" * (48 << 20)

    async def main() -> None:
        async with serving(max_payload=None) as served:
            seen = Recorder(served.wss, "connection")
            sock, rec = await opened(served.url, max_payload=None)
            (peer, _), = await seen.wait("connection")
            peer.pause()
            await asyncio.sleep(0.05)
            results: list[Any] = []
            sock.send(big, lambda error: results.append(error))
            await asyncio.sleep(0.2)
            assert results == []
            peer.terminate()
            await rec.wait("close", timeout=10)
            await until(lambda: results)
            assert isinstance(results[0], ConnectionClosed) and results[0].code == 1006

    run(main, timeout=40)


def test_send_then_close_calls_back_with_none() -> None:
    async def main() -> None:
        async with serving() as served:
            sock, rec = await opened(served.url)
            results: list[Any] = []
            sock.send("bye", lambda error: results.append(error))
            sock.close()
            await rec.wait("close")
            await until(lambda: results)
            assert results == [None] and rec.args("close")[0][0] == 1000

    run(main)


def test_send_callback_from_another_thread_and_one_that_raises() -> None:
    async def main() -> None:
        async with serving(echo=True) as served:
            sock, rec = await opened(served.url)
            results: list[Any] = []
            thread = threading.Thread(target=lambda: sock.send("from a thread", lambda error: results.append(error)))
            thread.start()
            thread.join(5)
            await rec.wait("message")
            await until(lambda: results)
            assert results == [None] and rec.args("message")[0][0].data == "from a thread"

            def broken(error: Exception | None) -> None:
                raise ValueError("bug in the callback")

            sock.send("x", broken)  # reported as a listener's failure: to 'error' listeners, never the loop
            await rec.wait("error")
            assert isinstance(rec.args("error")[0][0], ValueError)
            sock.close()

    run(main)


def test_sends_with_callbacks_keep_the_order_of_sends_from_other_threads() -> None:
    """A shaped send on the loop does not overtake a thread's send on its way, nor the reverse."""

    async def main() -> None:
        async with serving(echo=True) as served:
            sock, rec = await opened(served.url)
            sent = threading.Event()
            called: list[Any] = []

            def from_thread(n: int) -> None:
                if n % 4:
                    sock.send(f"{n}", lambda error: called.append(error))  # a shaped send hops too
                else:
                    sock.send(f"{n}")
                sent.set()

            for n in range(0, 100, 2):
                sent.clear()
                threading.Thread(target=from_thread, args=(n,)).start()
                sent.wait(5)  # blocking the loop: the thread's send is still on its way
                sock.send(f"{n + 1}", {"binary": False}, lambda error: called.append(error))
                await asyncio.sleep(0)
            messages = await rec.wait("message", 100)
            assert [m.data for (m,) in messages] == [f"{n}" for n in range(100)]
            await until(lambda: len(called) == 75)
            assert called == [None] * 75
            sock.close()

    run(main)


def test_send_shape_errors_say_what_to_write() -> None:
    async def main() -> None:
        async with serving() as served:
            sock, _ = await opened(served.url)
            with pytest.raises(TypeError, match=r"write send\(data, binary=True\)"):
                sock.send("x", True)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"options dict or a callback, got int"):
                sock.send("x", 1)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="no 'mask' option: clients always mask"):
                sock.send("x", {"mask": False})
            with pytest.raises(TypeError, match=r"unknown send\(\) option\(s\): binray; Node's are binary, compress and fin"):
                sock.send("x", {"binray": True})
            with pytest.raises(TypeError, match="given both in the options dict and as keywords: binary"):
                sock.send("x", {"binary": True}, binary=False)
            with pytest.raises(TypeError, match="callback must be callable, got str"):
                sock.send("x", {}, "done")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="data must be str or bytes-like, got int"):
                sock.send(42, lambda: None)  # type: ignore[arg-type]
            sock.close()

    run(main)


async def relay(target_port: int, counted: list[int]) -> asyncio.AbstractServer:
    """A TCP relay on loopback that counts the bytes going to ``target_port``: the wire size of what a client sends."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        try:
            while data := await reader.read(65536):
                if count:
                    counted[0] += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_compress_false_sends_that_message_uncompressed() -> None:
    text = "a" * 100_000

    async def main() -> None:
        async with serving(per_message_deflate=True) as served:
            counted = [0]
            proxy = await relay(served.port, counted)
            port = proxy.sockets[0].getsockname()[1]
            seen = Recorder(served.wss, "connection")
            sock, _ = await opened(f"ws://127.0.0.1:{port}/ws")
            assert "permessage-deflate" in sock.extensions
            (peer, _), = await seen.wait("connection")
            got = Recorder(peer, "message")
            await asyncio.sleep(0.05)
            before = counted[0]
            sock.send(text)
            await got.wait("message")
            await until(lambda: counted[0] > before)
            compressed = counted[0] - before
            before = counted[0]
            results: list[Any] = []
            sock.send(text, {"compress": False}, lambda error: results.append(error))
            sock.send(text, compress=False)
            sock.send("after", {"binary": False})  # the compressor's context goes on as if nothing happened
            messages = await got.wait("message", 4)
            await until(lambda: counted[0] - before > 200_000)
            assert [m.data for (m,) in messages] == [text, text, text, "after"]
            assert compressed < 2_000 and counted[0] - before > 200_000, (compressed, counted[0] - before)
            await until(lambda: results == [None])
            sock.close()
            proxy.close()

    run(main)


def test_a_listener_s_uncompressed_reply_then_a_compressed_one_both_leave_at_once() -> None:
    # On a compressed connection the reply sent with compress=False waits in the writer and the
    # compressed one in the protocol object: the flush at the end of the listeners writes both, in
    # order, also for a message the rate limit held and delivers later (no read then: _flush asks
    # the protocol object, as it skips that only on a lean connection).
    async def main() -> None:
        async with serving(per_message_deflate=True, rate_limit=(1, 0.2), rate_limit_action="pause") as served:
            seen = Recorder(served.wss, "connection")
            sock, _ = await opened(f"ws://127.0.0.1:{served.port}/ws")
            assert "permessage-deflate" in sock.extensions
            (peer, _), = await seen.wait("connection")

            def on_message(evt: Any) -> None:
                peer.send(f"plain {evt.data}", compress=False)
                peer.send(f"deflated {evt.data}")

            peer.on("message", on_message)
            got = Recorder(sock, "message")
            sock.send("1")
            sock.send("2")  # held by the rate limit, delivered about 0.2 s later
            messages = await got.wait("message", 4, timeout=5)
            assert [m.data for (m,) in messages] == ["plain 1", "deflated 1", "plain 2", "deflated 2"]
            sock.close()

    run(main)


# -- verify_client: sync, Node's (info, callback), async def ------------------------------------------


async def outcome(url: str, **options: Any) -> tuple[str, Any]:
    """``('open', protocol)`` or ``('refused', (status, headers, body))`` for one client."""
    sock = WebSocket(url, **options)
    rec = Recorder(sock, "open", "unexpected-response", "error", "close")
    await until(lambda: rec.count("open") or rec.count("close"), timeout=10, what="neither open nor closed")
    if rec.count("open"):
        sock.close()
        await rec.wait("close")
        return "open", sock.protocol
    (status, headers, body), = rec.args("unexpected-response")
    return "refused", (status, dict(headers), body)


def test_verify_client_callback_form_answering_at_once_and_later_from_a_thread() -> None:
    def verify(info: Any, callback: Any) -> None:
        token = info.req.get_header("token")
        if token is None:
            callback(False, 401, "Unauthorized")
        elif token == "now":
            info.req.user = "alice"  # Node's habit; info.req.state is the documented place
            callback(True)
        else:
            threading.Timer(0.05, lambda: callback(token == "later", 403, "Forbidden", {"X-Why": "bad token"})).start()

    async def main() -> None:
        async with serving(verify_client=verify) as served:
            users = Recorder(served.wss, "connection")
            kind, (status, _, body) = await outcome(served.url)
            assert (kind, status, body) == ("refused", 401, b"Unauthorized\n")
            assert (await outcome(served.url, headers={"token": "now"}))[0] == "open"
            assert (await outcome(served.url, headers={"token": "later"}))[0] == "open"
            kind, (status, headers, body) = await outcome(served.url, headers={"token": "bad"})
            assert (kind, status, headers.get("X-Why"), body) == ("refused", 403, "bad token", b"Forbidden\n")
            assert [getattr(request, "user", None) for _, request in users.args("connection")] == ["alice", None]

    run(main)


def test_verify_client_callback_never_called_is_a_503_and_an_error() -> None:
    async def main() -> None:
        async with serving(verify_client=lambda info, cb: None, verify_timeout=0.2) as served:
            errors = Recorder(served.wss, "error")
            kind, (status, _, body) = await outcome(served.url)
            assert (kind, status) == ("refused", 503) and b"not verified in time" in body
            (error,), = await errors.wait("error")
            assert "verify_client did not call its callback within 0.2 s (verify_timeout)" in str(error)

    run(main)


def test_async_verify_client_is_awaited_and_bounded() -> None:
    async def verify(info: Any) -> Any:
        token = info.req.get_header("token")
        await asyncio.sleep(0.02)
        if token == "slow":
            await asyncio.sleep(5)
        if token == "reject":
            raise Reject(403, "no entry")
        if token == "bug":
            raise ValueError("bug in verify")
        return token == "good"

    async def main() -> None:
        async with serving(verify_client=verify, verify_timeout=0.3) as served:
            errors = Recorder(served.wss, "error")
            assert (await outcome(served.url, headers={"token": "good"}))[0] == "open"
            assert (await outcome(served.url, headers={"token": "bad"}))[1][0] == 401
            assert (await outcome(served.url, headers={"token": "reject"}))[1][::2] == (403, b"no entry\n")
            assert errors.count("error") == 0
            assert (await outcome(served.url, headers={"token": "bug"}))[1][0] == 500
            assert (await outcome(served.url, headers={"token": "slow"}))[1][0] == 503
            await errors.wait("error", 2)
            assert [type(e).__name__ for (e,) in errors.args("error")] == ["ValueError", "WebSocketError"]
            assert "did not return within 0.3 s" in str(errors.args("error")[1][0])

    run(main)


def test_a_sync_verify_client_returning_a_coroutine_is_awaited_not_taken_as_true() -> None:
    async def check(token: str | None) -> bool:
        return token == "good"

    async def main() -> None:
        async with serving(verify_client=lambda info: check(info.req.get_header("token"))) as served:
            assert (await outcome(served.url, headers={"token": "bad"}))[1][0] == 401
            assert (await outcome(served.url, headers={"token": "good"}))[0] == "open"

    run(main)


def test_frames_sent_behind_the_request_wait_for_a_late_verdict() -> None:
    """The bytes after the request are kept while verify_client thinks, and read once it let the client in."""

    async def verify(info: Any) -> bool:
        await asyncio.sleep(0.2)
        return True

    async def main() -> None:
        async with serving(verify_client=verify) as served:
            seen = Recorder(served.wss, "connection")
            messages: list[str] = []
            served.wss.on("connection", lambda sock, req: sock.on("message", lambda evt: messages.append(evt.data)))
            request = (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            key = b"\x01\x02\x03\x04"

            def frame(text: bytes) -> bytes:
                return bytes([0x81, 0x80 | len(text)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(text))

            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(request + frame(b"hello"))  # one write: the frame arrives with the request
            await asyncio.sleep(0.05)
            writer.write(frame(b"world"))  # while verify_client still thinks: left unread until it decided
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101")
            await seen.wait("connection")
            await until(lambda: messages == ["hello", "world"])
            writer.close()

    run(main)


def test_a_client_that_leaves_while_verify_client_thinks_is_forgotten() -> None:
    answer: list[Any] = []

    async def main() -> None:
        async with serving(verify_client=lambda info, cb: answer.append(cb)) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            await until(lambda: answer)
            writer.close()
            await asyncio.sleep(0.1)
            answer[0](True)  # too late: nothing is written, nothing raises into the loop (serving checks)
            answer[0](False, 500)  # a second answer is ignored
            await asyncio.sleep(0.1)
            assert served.wss.clients == set()

    run(main)


def test_verify_client_forms_are_checked_when_the_server_is_built() -> None:
    async def with_callback(info: Any, cb: Any) -> bool:
        return True

    def none() -> bool:
        return True

    def three(info: Any, cb: Any, extra: Any) -> None:
        pass

    with pytest.raises(TypeError, match=r"is an async def with a callback parameter: an async def returns its verdict"):
        WebSocketServer(no_server=True, verify_client=with_callback)
    with pytest.raises(TypeError, match=r"takes no parameters: verify_client takes info and returns its verdict"):
        WebSocketServer(no_server=True, verify_client=none)
    with pytest.raises(TypeError, match=r"needs 3 arguments"):
        WebSocketServer({"noServer": True, "verifyClient": three})
    with pytest.raises(TypeError, match="verify_client must be callable, got bool"):
        WebSocketServer(no_server=True, verify_client=True)
    with pytest.raises(ValueError, match="verify_timeout must be a positive number"):
        WebSocketServer(no_server=True, verify_timeout=0)

    async def main() -> None:
        wss = WebSocketServer(no_server=True)
        with pytest.raises(TypeError, match="async def with a callback"):
            wss.verify_client = with_callback
        assert wss.verify_client is None
        wss.verify_client = lambda info, cb=None: False  # Node's length 1: synchronous
        assert wss._policy().verify_form == "sync"
        wss.verify_client = lambda info, cb: cb(True)
        assert wss._policy().verify_form == "callback"
        wss.close()

    run(main)


def test_verify_form_reads_the_parameters_as_node_reads_length() -> None:
    import functools

    from ws.protocol.handshake import Pending, verify_form

    async def coro(info: Any, extra: Any = None) -> bool:
        return True

    class Checker:
        def __call__(self, info: Any, cb: Any) -> None:
            cb(True)

        def method(self, info: Any) -> bool:
            return True

    class AsyncChecker:
        async def __call__(self, info: Any) -> bool:
            return True

    assert verify_form(lambda info: True) == "sync"
    assert verify_form(lambda info, cb=None: True) == "sync"  # Node's length counts up to the first default
    assert verify_form(lambda *args: True) == "sync"
    assert verify_form(lambda info, cb: None) == "callback"
    assert verify_form(Checker()) == "callback" and verify_form(Checker().method) == "sync"
    assert verify_form(coro) == "async" and verify_form(functools.partial(coro, extra=1)) == "async"
    assert verify_form(AsyncChecker()) == "async"
    assert verify_form(bool) == "sync"

    # The callback's answer, once: later calls are ignored; a late listener is told at once.
    pending = Pending(lambda verdict, date: verdict)  # type: ignore[arg-type, return-value]
    told: list[int] = []
    pending.callback(False, 429, "Slow down", {"Retry-After": "1"})
    pending.callback(True)
    pending.on_answer(lambda: told.append(1))
    assert told == [1] and pending.result() == (False, 429, "Slow down", {"Retry-After": "1"})
    assert pending.timed_out(2).status == 503 and "did not call its callback within 2 s" in pending.timed_out(2).problem


def test_asgi_waits_for_a_late_verdict_too() -> None:
    async def verify(info: Any) -> bool:
        await asyncio.sleep(0.02)
        return info.origin == "http://o.test"

    async def main() -> None:
        wss = WebSocketServer(no_server=True, path="/ws", verify_client=lambda info, cb: asyncio.get_running_loop().call_later(0.02, cb, False, 429, "Slow down"))
        fake = FakeASGI({"type": "websocket.connect"})
        await ASGIApp(wss)(scope(extensions={"websocket.http.response": {}}), fake.receive, fake.send)
        assert fake.sent[0]["status"] == 429 and fake.sent[1]["body"] == b"Slow down\n"
        wss.verify_client = verify
        fake = FakeASGI({"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000})
        await ASGIApp(wss)(scope(), fake.receive, fake.send)
        assert fake.sent[0]["type"] == "websocket.accept"
        wss.close()

    run(main)


# -- http.create_server(), server.listen(), WebSocket.Server -----------------------------------------


def test_create_server_then_listen_port_host_callback() -> None:
    async def main() -> None:
        server = http.createServer(lambda ctx: ctx.text(200, "hi from the listener"))
        assert http.create_server is http.createServer and isinstance(server, http.Server)
        assert not server.listening and server.address is None
        wss = WebSocket.Server({"server": server, "path": "/ws"})
        wss.on("connection", lambda sock, req: sock.send("welcome"))
        listening: list[Any] = []
        assert server.listen(0, "127.0.0.1", lambda: listening.append(server.port)) is server
        await until(lambda: listening)
        assert server.host == "127.0.0.1" and listening == [server.port]
        sock, rec = await opened(f"ws://127.0.0.1:{server.port}/ws")
        await rec.wait("message")
        assert rec.args("message")[0][0].data == "welcome"
        body = await asyncio.to_thread(lambda: _get(f"http://127.0.0.1:{server.port}/anything"))
        assert body == "hi from the listener"
        with pytest.raises(RuntimeError, match="already listening"):
            server.listen(0)
        sock.close()
        wss.close()
        await server.close_async()

    run(main)


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("127.0.0.1:0",), id="host:port"),
        pytest.param(({"port": 0, "host": "127.0.0.1", "backlog": 16},), id="options-dict"),
        pytest.param(({"host": "127.0.0.1"},), id="no-port-any-free-port"),
    ],
)
def test_listen_shapes(args: tuple[Any, ...]) -> None:
    async def main() -> None:
        server = http.create_server()
        called: list[Any] = []
        server.listen(*args, lambda address: called.append(address))
        await until(lambda: called)
        assert server.host == "127.0.0.1" and server.port and called == [server.address]
        await server.close_async()

    run(main)


def test_listen_port_and_callback_binds_every_interface_as_node() -> None:
    async def main() -> None:
        server = http.create_server()
        called: list[Any] = []
        server.listen(0, lambda: called.append(1))
        await until(lambda: called)
        assert server.host in ("0.0.0.0", "::")
        await server.close_async()

    run(main)


def test_listen_on_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")

    async def main() -> None:
        server = http.create_server()
        wss = WebSocketServer(server=server)
        wss.on("connection", lambda sock, req: sock.send("over unix"))
        server.listen(path)
        assert server.network == "unix" and server.address == path
        sock, rec = await opened("ws://localhost/", socket_path=path)
        await rec.wait("message")
        sock.close()
        wss.close()
        await server.close_async()

    run(main)


def test_listen_errors() -> None:
    with pytest.raises(ValueError, match=r"^port 99999 is out of range 0-65535 in listen\(\)$"):
        http.create_server().listen(99999)
    with pytest.raises(ValueError, match=r"give a port \(8080\), a port and a host"):
        http.create_server().listen("abc")
    with pytest.raises(TypeError, match="the callback comes last"):
        http.create_server().listen(lambda: None, "127.0.0.1")
    with pytest.raises(TypeError, match="unknown listen"):
        http.create_server().listen({"prot": 1})
    with pytest.raises(TypeError, match="options must be a dict, got int"):
        http.create_server(5)  # type: ignore[arg-type]


def test_websocket_server_alias_and_node_readme_form() -> None:
    assert WebSocket.Server is WebSocketServer
    assert WebSocket.__dict__["Server"].__get__(None, WebSocket) is WebSocketServer

    async def main() -> None:
        wss = WebSocket.Server({"port": 0, "host": "127.0.0.1"})
        await until(lambda: wss.address() is not None)
        address = wss.address()
        assert isinstance(address, dict) and address["port"] > 0
        wss.close()
        await wss.wait_closed_async(5)

    run(main)


def test_type_checkers_see_the_node_shapes(tmp_path: Path) -> None:
    from mypy import api

    snippet = tmp_path / "node_shapes.py"
    snippet.write_text(textwrap.dedent(
        """
        from typing import Optional
        from ws import WebSocket, WebSocketServer, http

        server: http.Server = http.createServer()
        other: http.Server = http.create_server({"max_body_size": 10}, lambda ctx: None)
        wss: WebSocketServer = WebSocket.Server({"server": server})
        same: http.Server = server.listen(8080, "127.0.0.1", lambda: None)
        client = WebSocket("ws://h/", {"headers": {"a": "b"}})
        client2 = WebSocket("ws://h/", ["chat"], {"origin": "x"})


        def done(error: Optional[Exception]) -> None:
            print(error)


        def echo(sock: WebSocket) -> None:
            sock.send("x", {"binary": True, "compress": False, "fin": True}, done)
            sock.send(b"x", done)
            sock.send("x", compress=False)
            sock.send("x", {"binary": True}, "not a callback")
        """
    ))
    stdout, stderr, status = api.run(
        ["--strict", "--follow-imports=silent", "--no-incremental", "--cache-dir", os.devnull, "--python-version", "3.10", str(snippet)]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    last = f"{snippet.name}:{len(snippet.read_text().splitlines())}:"
    assert len(errors) == 1 and last in errors[0], stdout + stderr


# -- scripts written with Node habits, run as a user would ------------------------------------------------


def run_script(tmp_path: Path, source: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a script in its own process (signals as a user has them); its output and status."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    env = {k: v for k, v in os.environ.items() if k != "WS_NO_SIGNALS"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_script_echo_with_send_options_and_callbacks(tmp_path: Path) -> None:
    done = run_script(tmp_path, """
        from ws import WebSocket, WebSocketServer

        wss = WebSocketServer({'port': 0, 'host': '127.0.0.1'})

        def connection(ws, request):
            ws.on('error', print)
            print('token', request.headers.get('x-token'), flush=True)
            ws.on('message', lambda event: ws.send(event.data, {'binary': event.is_binary}, lambda err: print('echoed', err, flush=True)))

        wss.on('connection', connection)

        ws = WebSocket(f"ws://127.0.0.1:{wss.address()['port']}/", {'headers': {'x-token': 'abc'}})
        ws.on('error', print)
        ws.on('open', lambda: ws.send('something', lambda err: print('sent', err, flush=True)))

        def message(event):
            print('received', event.data, flush=True)
            ws.close()
            wss.close()

        ws.on('message', message)
    """)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(lines) == ["echoed None", "received something", "sent None", "token abc"], done.stdout
    assert lines.index("sent None") < lines.index("received something")


def test_script_external_http_server_with_create_server_and_listen(tmp_path: Path) -> None:
    done = run_script(tmp_path, """
        from ws import WebSocket, http

        server = http.createServer()
        wss = WebSocket.Server({'server': server})

        def connection(ws, request):
            ws.send('welcome')

        wss.on('connection', connection)

        def listening():
            print('listening', flush=True)
            client = WebSocket(f'ws://127.0.0.1:{server.port}/')

            def message(event):
                print('client got', event.data, flush=True)
                client.close()
                wss.close()
                server.close()

            client.on('message', message)

        server.listen(0, '127.0.0.1', listening)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["listening", "client got welcome"], done.stdout + done.stderr


@pytest.mark.skipif(
    _loop.THREADS_END_WITH_MAIN,
    reason="the script starts a threading.Timer after its last line: CPython 3.12.0-3.12.2 refuse (gh-113964)",
)
def test_script_verify_client_with_a_callback(tmp_path: Path) -> None:
    done = run_script(tmp_path, """
        import threading
        from ws import WebSocket, WebSocketServer

        def verify_client(info, cb):
            token = info.req.headers.get('token')
            if not token:
                cb(False, 401, 'Unauthorized')
                return
            # An asynchronous check (a database, a JWT library...), answered later from elsewhere.
            def check():
                if token == 'secret':
                    info.req.user = 'alice'
                    cb(True)
                else:
                    cb(False, 403, 'Forbidden')
            threading.Timer(0.05, check).start()

        wss = WebSocketServer({'port': 0, 'host': '127.0.0.1', 'verifyClient': verify_client})
        wss.on('connection', lambda ws, req: ws.send('hello ' + req.user))
        url = f"ws://127.0.0.1:{wss.address()['port']}/"
        results = []
        printed = []

        def finished():  # each socket's 'close' calls it; several may come after the third result
            if len(results) == 3 and not printed:
                printed.append(True)
                print(*sorted(results), sep='\\n', flush=True)
                wss.close()

        for token in (None, 'wrong', 'secret'):
            ws = WebSocket(url, {'headers': {'token': token}} if token else {})
            ws.on('unexpected-response', lambda status, headers, body, token=token: results.append(f'{token}: {status}'))
            ws.on('message', lambda event, ws=ws: (results.append(event.data), ws.close()))
            ws.on('error', lambda error: None)
            ws.on('close', lambda code, reason: finished())
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["None: 401", "hello alice", "wrong: 403"], done.stdout + done.stderr


def test_script_broadcast_from_nodes_readme(tmp_path: Path) -> None:
    done = run_script(tmp_path, """
        from ws import WebSocket, WebSocketServer

        wss = WebSocketServer({'port': 0, 'host': '127.0.0.1'})

        def connection(ws, request):
            ws.on('error', print)

            def message(event):
                for client in wss.clients:
                    if client is not ws and client.readyState == WebSocket.OPEN:
                        client.send(event.data, {'binary': event.is_binary})

            ws.on('message', message)

        wss.on('connection', connection)
        url = f"ws://127.0.0.1:{wss.address()['port']}"
        received = []
        opened = []

        def client(name):
            ws = WebSocket(url)

            def on_open():
                opened.append(name)
                if len(opened) == 3:
                    speaker.send(b'binary hello', lambda err: speaker.send('text hello'))

            def on_message(event):
                received.append(f'{name} {event.data!r}')
                if len(received) == 4:
                    print(*sorted(received), sep='\\n', flush=True)
                    wss.close()

            ws.on('open', on_open)
            ws.on('message', on_message)
            return ws

        speaker = client('speaker')
        listeners = [client('a'), client('b')]
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "a 'text hello'", "a b'binary hello'", "b 'text hello'", "b b'binary hello'"
    ], done.stdout + done.stderr


@pytest.mark.parametrize(
    "source, last_line",
    [
        pytest.param(
            "from ws import WebSocket\nws = WebSocket('ws://localhost:99999')\n",
            "ValueError: port 99999 is out of range 0-65535 in 'ws://localhost:99999'",
            id="port-in-url",
        ),
        pytest.param(
            "from ws import WebSocketServer\n"
            "async def verify(info, cb):\n    cb(True)\n"
            "wss = WebSocketServer({'port': 0, 'verifyClient': verify})\n",
            "TypeError: verify_client verify is an async def with a callback parameter: an async def returns its "
            "verdict (async def verify(info): ...); a plain def takes Node's (info, callback)",
            id="async-verify-with-callback",
        ),
        pytest.param(
            "from ws import WebSocket\nws = WebSocket('ws://127.0.0.1:9/', [{'headers': {'a': 'b'}}])\n",
            "TypeError: subprotocols are names (a str or a list of str), not a dict (['headers']): options go second "
            "when there are no protocols, WebSocket(url, {...}), or third, WebSocket(url, protocols, {...}), or as keywords",
            id="options-where-protocols-belong",
        ),
        pytest.param(
            "from ws import http\nhttp.create_server().listen(99999)\n",
            "ValueError: port 99999 is out of range 0-65535 in listen()",
            id="listen-port",
        ),
    ],
)
def test_script_misuse_stops_at_once_with_the_fix(tmp_path: Path, source: str, last_line: str) -> None:
    done = run_script(tmp_path, source, timeout=20)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == last_line, done.stderr
