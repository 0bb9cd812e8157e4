"""ws.connection.pull: recv / async for / send_async / context managers, on real sockets.

Each wait has a blocking spelling for threads and a coroutine for asyncio;
both are exercised, with the error a blocking call gets inside a loop.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
import warnings
from typing import Awaitable, Callable, Iterator

import pytest
from websockets.asyncio.server import serve

from ws import ConnectError, MessageEvent, WebSocket, WebSocketServer
from ws import http
from ws.exceptions import ConnectionClosed, NotOpenError

from .conftest import ROOT, Recorder, run, until
from .fixtures.processes import free_port


async def echo(conn: object) -> None:
    async for message in conn:  # type: ignore[attr-defined]
        await conn.send(message)  # type: ignore[attr-defined]


def url_of(server: object) -> str:
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return f"ws://127.0.0.1:{port}/"



def test_async_with_recv_and_iteration_coexist_with_listeners() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server)) as sock:
                assert sock.ready_state == WebSocket.OPEN
                seen: list[object] = []
                sock.on("message", lambda evt: seen.append(evt.data))
                await sock.send_async("one")
                await sock.send_async(b"\x00two")
                first = await sock.recv_async(timeout=5)
                assert (first.data, first.is_binary) == ("one", False)
                second = await sock.recv_async(timeout=5)
                assert (second.data, second.is_binary) == (b"\x00two", True)
                for i in range(3):
                    sock.send(f"m{i}")
                got = []
                async for event in sock:
                    got.append(event.data)
                    if len(got) == 3:
                        break
                assert got == ["m0", "m1", "m2"]
                assert seen == ["one", b"\x00two", "m0", "m1", "m2"]
            assert sock.ready_state == WebSocket.CLOSED

    run(main)


def test_iteration_ends_when_the_peer_closes_and_recv_then_raises() -> None:
    async def handler(conn: object) -> None:
        await conn.send("a")  # type: ignore[attr-defined]
        await conn.send("b")  # type: ignore[attr-defined]
        await conn.close(4001, "bye")  # type: ignore[attr-defined]

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server)) as sock:
                received = [event.data async for event in sock]
                assert received == ["a", "b"]
                with pytest.raises(ConnectionClosed) as info:
                    await sock.recv_async(timeout=5)
                assert (info.value.code, info.value.reason) == (4001, "bye")
                with pytest.raises(NotOpenError):
                    await sock.send_async("late")

    run(main)


def test_recv_timeout() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server)) as sock:
                with pytest.raises(TimeoutError):
                    await sock.recv_async(timeout=0.2)

    run(main)


def test_async_with_raises_the_connect_error() -> None:
    port = free_port()

    async def main() -> None:
        with pytest.raises(ConnectError, match="ECONNREFUSED"):
            async with WebSocket(f"ws://127.0.0.1:{port}/"):
                pass  # pragma: no cover

    run(main)


def test_the_reply_of_a_task_that_waited_in_recv_async_is_written_at_once() -> None:
    """A coroutine's sends leave together at the end of the loop turn, except the reply of the task
    that waited in ``recv_async()`` for a message: its first send is written at once (no loop turn
    for the write), the next ones of the turn join the end-of-turn write again."""

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server), per_message_deflate=False) as sock:
                sock.send("ping")
                assert sock._flush_scheduled and len(sock._writer.pending) == 1  # no wait before it
                assert (await sock.recv_async()).data == "ping"  # waited
                sock.send("reply")
                assert not sock._flush_scheduled and sock._writer.pending == []  # written at once
                sock.send("more")
                assert sock._flush_scheduled and len(sock._writer.pending) == 1  # the rest of the turn: together
                assert [(await sock.recv_async()).data for _ in range(2)] == ["reply", "more"]

                # A message that was waiting already: no reply to write at once.
                inbox = sock._inbox
                assert inbox is not None
                sock.send("a")
                sock.send("b")
                await until(lambda: len(inbox.items) == 2, 5, what="the echoes did not arrive")
                assert (await sock.recv_async()).data == "a"
                sock.send("c")
                assert sock._flush_scheduled

                assert [(await sock.recv_async()).data for _ in range(2)] == ["b", "c"]

                # Another task waited: this task's sends still leave at the end of the turn.
                receiver = asyncio.ensure_future(sock.recv_async())
                await until(lambda: inbox.waiters, 5, what="recv_async did not wait")
                sock.send("d")
                assert (await receiver).data == "d"
                assert inbox.replier is receiver
                sock.send("e")
                assert sock._flush_scheduled and inbox.replier is None
                assert (await sock.recv_async()).data == "e"

    run(main)


def test_a_cancelled_recv_async_loses_no_message() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server)) as sock:
                waiting = asyncio.ensure_future(sock.recv_async())
                await until(lambda: sock._inbox is not None and sock._inbox.waiters, 5, what="recv_async did not wait")
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                assert sock._inbox is not None and sock._inbox.waiters == []
                sock.send("after")
                assert (await sock.recv_async(timeout=5)).data == "after"

    run(main)


def test_full_inbox_pauses_reading_until_consumed() -> None:
    count = 1000

    async def flood(conn: object) -> None:
        for i in range(count):
            await conn.send(f"{i:08d}" + "." * 4000)  # type: ignore[attr-defined]
        await conn.wait_closed()  # type: ignore[attr-defined]

    async def main() -> None:
        async with serve(flood, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server), per_message_deflate=False) as sock:
                first = await sock.recv_async(timeout=5)
                assert isinstance(first.data, str) and first.data.startswith("00000000")
                await until(lambda: sock.is_paused, 5, what="the flood did not fill the inbox")
                # The bound is soft by one read of the socket (at most 256 KiB: ~64 messages).
                inbox = sock._inbox
                assert inbox is not None and len(inbox.items) <= inbox.gate.high + 70
                got = [first.data] + [(await sock.recv_async(timeout=5)).data for _ in range(count - 1)]
                assert [int(data[:8]) for data in got] == list(range(count))
                assert not sock.is_paused

    run(main, timeout=60)


def test_send_async_waits_for_drain() -> None:
    async def main() -> None:
        server = http.Server(address="127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/")
        peers: list[WebSocket] = []

        def hold(peer: WebSocket, request: object) -> None:
            peer.pause()
            peers.append(peer)

        wss.on("connection", hold)
        await server.serve_async()
        try:
            sock = WebSocket(f"ws://127.0.0.1:{server.port}/", per_message_deflate=False, high_water_mark=64 * 1024, low_water_mark=16 * 1024)
            rec = Recorder(sock, "drain")
            await sock.wait_open_async(timeout=5)
            chunk = b"x" * (256 * 1024)
            pending = asyncio.ensure_future(sock.send_async(chunk))

            def blocked() -> bool:
                """The peer does not read: the write buffer cannot empty.

                Kernel buffers swallow the first chunks; keep writing until they are full.
                """
                nonlocal pending
                if sock._writing_paused and not pending.done():
                    return True
                if pending.done():
                    pending = asyncio.ensure_future(sock.send_async(chunk))
                return False

            await until(blocked, 5, step=0.05, what="the write buffer never filled")
            assert sock._writing_paused and sock.buffered_amount > 64 * 1024
            # negative check: the peer reads nothing, so no later event can be awaited
            await asyncio.sleep(0.2)
            assert not pending.done()
            peers[0].resume()
            await asyncio.wait_for(pending, 10)
            assert rec.count("drain") >= 1
            sock.close()
            await sock.wait_closed_async(timeout=10)
        finally:
            await server.close_async()

    run(main, timeout=60)


def test_send_async_and_send_wait_reject_bad_data() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server)) as sock:
                with pytest.raises(TypeError):
                    await sock.send_async(123)  # type: ignore[arg-type]
                with pytest.raises(TypeError):  # before the check of where it runs
                    sock.send_wait(123)  # type: ignore[arg-type]

    run(main)


def result_of(call: Callable[[], object]) -> object:
    """What ``call()`` returned: the run-time check of a method declared ``-> None``."""
    return call()


async def awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


@pytest.fixture
def echo_url() -> Iterator[str]:
    """A ws.http echo endpoint on the reactor, for the tests that block in a thread."""
    with http.Server(address="127.0.0.1:0") as server:
        wss = WebSocketServer(server=server, path="/echo")
        wss.on("connection", lambda sock, req: sock.on("message", lambda evt: sock.send(evt.data)))
        server.serve()
        yield f"ws://127.0.0.1:{server.port}/echo"
        wss.close()


def test_blocking_forms_in_a_plain_thread_return_their_declared_types(echo_url: str) -> None:
    with WebSocket(echo_url) as sock:
        assert isinstance(sock, WebSocket)
        assert sock.ready_state == WebSocket.OPEN
        assert result_of(lambda: sock.wait_open(timeout=10)) is None
        sock.send("ping?")
        event = sock.recv(timeout=10)
        assert isinstance(event, MessageEvent) and event.data == "ping?"
        assert result_of(lambda: sock.send_wait(b"bin", timeout=10)) is None
        assert sock.recv(timeout=10).data == b"bin"
        assert result_of(lambda: sock.send_wait(bytearray(b"copy"), timeout=10)) is None
        assert sock.recv(timeout=10).data == b"copy"
        with pytest.raises(TimeoutError):
            sock.recv(timeout=0.2)
    assert sock.ready_state == WebSocket.CLOSED
    assert result_of(lambda: sock.wait_closed(timeout=5)) is None
    with pytest.raises(ConnectionClosed):
        sock.recv(timeout=5)
    with pytest.raises(NotOpenError):
        sock.send_wait("late", timeout=5)


def test_async_forms_are_coroutine_functions() -> None:
    for name in ("recv_async", "send_async", "wait_open_async", "wait_closed_async", "__aenter__", "__aexit__"):
        assert inspect.iscoroutinefunction(getattr(WebSocket, name)), name
    for name in ("recv", "send_wait", "wait_open", "wait_closed", "__enter__", "__exit__"):
        assert not inspect.iscoroutinefunction(getattr(WebSocket, name)), name


def test_async_forms_return_their_declared_types() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(url_of(server))
            assert await awaited(sock.wait_open_async(timeout=10)) is None
            assert await awaited(sock.send_async("one", timeout=10)) is None
            event = await sock.recv_async(timeout=10)
            assert isinstance(event, MessageEvent) and event.data == "one"
            sock.close()
            assert await awaited(sock.wait_closed_async(timeout=10)) is None
            async with WebSocket(url_of(server)) as other:
                assert isinstance(other, WebSocket) and other.ready_state == WebSocket.OPEN

    run(main)


BLOCKING_CALLS: list[tuple[str, Callable[[WebSocket], object], str]] = [
    ("recv", lambda sock: sock.recv(timeout=5), "await sock.recv_async()"),
    ("send_wait", lambda sock: sock.send_wait("x", timeout=5), "await sock.send_async(data)"),
    ("wait_open", lambda sock: sock.wait_open(timeout=5), "await sock.wait_open_async()"),
    ("wait_closed", lambda sock: sock.wait_closed(timeout=5), "await sock.wait_closed_async()"),
    ("with", lambda sock: sock.__enter__(), "async with WebSocket(...)"),
]


@pytest.mark.parametrize("name, call, instead", BLOCKING_CALLS, ids=[c[0] for c in BLOCKING_CALLS])
def test_a_blocking_call_inside_asyncio_names_the_async_spelling(
    name: str, call: Callable[[WebSocket], object], instead: str
) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with WebSocket(url_of(server)) as sock:  # on this loop: blocking would deadlock
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # and no coroutine is left unawaited
                    with pytest.raises(RuntimeError, match=re.escape(instead)):
                        call(sock)
                assert sock.ready_state == WebSocket.OPEN
                await sock.send_async("still usable")
                assert (await sock.recv_async(timeout=10)).data == "still usable"

    run(main)


def test_a_blocking_call_in_a_listener_on_the_reactor_raises(echo_url: str) -> None:
    """A plain listener runs on the socket's loop thread: recv() there could never return."""
    sock = WebSocket(echo_url)
    errors: list[BaseException] = []

    def on_open() -> None:
        try:
            sock.recv(timeout=5)
        except RuntimeError as exc:
            errors.append(exc)

    sock.on("open", on_open)
    sock.wait_open(timeout=10)
    sock.close()
    sock.wait_closed(timeout=10)
    assert len(errors) == 1 and "await sock.recv_async()" in str(errors[0])


def test_plain_with_inside_asyncio_is_refused() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            sock = WebSocket(url_of(server))
            with pytest.raises(RuntimeError, match="async with"):
                with sock:
                    pass  # pragma: no cover
            sock.close()
            await sock.wait_closed_async(timeout=10)

    run(main)


def test_async_forms_from_another_loop_thread() -> None:
    """A socket of the reactor, awaited from a different asyncio loop."""
    with http.Server(address="127.0.0.1:0") as server:
        wss = WebSocketServer(server=server, path="/")

        def greet_and_echo(peer: WebSocket, request: object) -> None:
            peer.on("message", lambda evt: peer.send(evt.data))
            peer.send("hi")

        wss.on("connection", greet_and_echo)
        server.serve()
        sock = WebSocket(f"ws://127.0.0.1:{server.port}/")

        async def main() -> list[str | bytes]:
            assert asyncio.get_running_loop() is not sock._loop
            await sock.wait_open_async(timeout=10)
            got = [(await sock.recv_async(timeout=10)).data]
            await sock.send_async("back", timeout=10)
            async for event in sock:
                got.append(event.data)
                break
            sock.close()
            await sock.wait_closed_async(timeout=10)
            return got

        assert asyncio.run(main()) == ["hi", "back"]
        wss.close()


@pytest.mark.parametrize(
    "script, expected",
    [
        ("async_iteration.py", "echo: one\necho: two\necho: three\nclient closed: True\n"),
        ("blocking_client.py", "reply: ping?\nreply: still there?\n"),
    ],
)
def test_example_scripts(script: str, expected: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "examples" / script)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
