"""Property-based fuzzing of a live server: random and mutated handshakes, random frames.

One server runs on its own loop in a thread for the whole module, with an
exception handler that records anything reaching the loop and a log handler
that records every traceback logged by ``ws`` or ``websockets`` (our
"internal error" paths).  Hypothesis drives blocking sockets at it.  After
the examples: nothing was recorded, no connection or task is left, and a
normal client is still served.  Examples are bounded and derandomized so CI
is fast and repeatable; ``WS_FUZZ_EXAMPLES=N`` runs more and
``WS_FUZZ_RANDOM=1`` draws new examples on every run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import socket
import struct
import threading
import time
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.uri import parse_uri

from ws import WebSocket, WebSocketServer
from ws import http

from .conftest import until_sync
from .test_limits import assert_serves, frame

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
EXAMPLES = int(os.environ.get("WS_FUZZ_EXAMPLES", "600"))
IO_TIMEOUT = 5.0

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("WS_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class _TracebackLog(logging.Handler):
    """Keeps log records that carry a traceback: exceptions we caught but did not expect."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


class LiveServer:
    """An echo server on its own loop and thread, watched for anything going wrong."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-server", daemon=True)
        self.thread.start()
        self.server: http.Server
        self.wss: WebSocketServer
        self.baseline_tasks = self.call(self._start())

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> int:
        self.server = http.Server("127.0.0.1:0", header_timeout=2.0, max_header_size=8192)
        await self.server.serve_async()
        self.server.get("/", lambda ctx: ctx.text(200, "home"))
        self.wss = WebSocketServer(
            server=self.server, path="/ws", max_payload=64 * 1024, per_message_deflate=True, close_timeout=1.0
        )

        def on_connection(sock: WebSocket, request: Any) -> None:
            sock.on("error", lambda exc: None)  # expected: every bad frame is one
            sock.on("message", lambda event: sock.send(event.data))

        self.wss.on("connection", on_connection)
        # A hostile server for our client: a valid 101, then whatever it is told.
        self.evil_reply = b""
        self.evil = await asyncio.start_server(self._evil, "127.0.0.1", 0)
        return len(asyncio.all_tasks())

    async def _evil(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
            key = next(
                line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:")
            )
            writer.write(self.evil_reply.replace(b"{accept}", base64.b64encode(hashlib.sha1(key + _GUID).digest())))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    @property
    def evil_port(self) -> int:
        return self.evil.sockets[0].getsockname()[1]

    @property
    def port(self) -> int:
        port = self.server.port
        assert port is not None
        return port

    def quiet(self) -> tuple[int, int, int]:
        """(open WebSockets, HTTP connections, tasks), read on the server's loop."""

        async def count() -> tuple[int, int, int]:
            return len(self.wss.clients or ()), len(self.server._connections), len(asyncio.all_tasks()) - 1

        return self.call(count())

    def stop(self) -> None:
        async def close() -> None:
            self.wss.close()
            await asyncio.wait_for(self.wss.wait_closed_async(), 10)
            await asyncio.wait_for(self.server.close_async(), 10)
            self.evil.close()

        try:
            self.call(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    watch = _TracebackLog()
    loggers = [logging.getLogger("ws"), logging.getLogger("websockets")]
    for logger in loggers:
        logger.addHandler(watch)
    server = LiveServer()
    server.tracebacks = watch.records  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        for logger in loggers:
            logger.removeHandler(watch)


# -- talking to it with blocking sockets ----------------------------------------------


def handshake_request(port: int, deflate: bool) -> bytes:
    extensions = [ClientPerMessageDeflateFactory(client_max_window_bits=True)] if deflate else None
    proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws"), extensions=extensions)
    proto.send_request(proto.connect())
    return b"".join(proto.data_to_send())


def exchange(port: int, data: bytes, *, abrupt: bool, after_handshake: bytes | None = None) -> None:
    """Send (optionally after a real handshake), end our side, read until the server closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    try:
        if after_handshake is not None:
            sock.sendall(after_handshake)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                assert chunk, "server closed during a valid handshake"
                head += chunk
            assert head.startswith(b"HTTP/1.1 101 "), head[:60]
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return  # the server already gave up on us: fine
        if abrupt:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return  # closed with a reset below
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    return
            except ConnectionResetError:
                return
        raise AssertionError("the server never closed the connection")
    finally:
        sock.close()


# -- strategies -------------------------------------------------------------------------

_LINE_BREAKS = st.sampled_from([b"\r\n", b"\n", b"\r", b""])


@st.composite
def mutated_handshakes(draw: st.DrawFn) -> bytes:
    """A valid upgrade request, damaged in a few random ways."""
    lines = handshake_request(1, draw(st.booleans())).split(b"\r\n")[:-2]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["drop", "dup", "value", "insert", "line", "method", "version", "ext"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "drop" and len(lines) > 1:
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "value" and b":" in lines[i]:
            name = lines[i].split(b":", 1)[0]
            lines[i] = name + b": " + draw(st.binary(max_size=40))
        elif kind == "insert":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.binary(min_size=1, max_size=8)) + lines[i][at:]
        elif kind == "line":
            lines.insert(i, draw(st.binary(max_size=60)))
        elif kind == "method":
            lines[0] = draw(st.sampled_from([b"POST", b"get", b"GET", b"", b"\x00"])) + b" /ws HTTP/1.1"
        elif kind == "version":
            lines[0] = b"GET /ws " + draw(st.sampled_from([b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1x", b""]))
        elif kind == "ext":
            lines.append(
                b"Sec-WebSocket-Extensions: permessage-deflate"
                + draw(st.sampled_from([b"; server_max_window_bits=7", b"; client_max_window_bits=16", b";;", b"; x"]))
            )
    request = draw(_LINE_BREAKS).join(lines) + b"\r\n\r\n"
    if draw(st.booleans()):
        request = request[: draw(st.integers(0, len(request)))]
    return request


handshakes = st.one_of(mutated_handshakes(), st.binary(max_size=600))

_crafted_frame = st.builds(
    lambda opcode, payload, fin, rsv, mask, lie: frame(
        opcode, payload, fin=fin, rsv=rsv, mask=mask, length=None if lie is None else lie
    ),
    opcode=st.integers(0, 15),
    payload=st.one_of(st.binary(max_size=300), st.text(max_size=100).map(str.encode)),
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 4, 1, 2, 7]),
    mask=st.sampled_from([True, True, True, False]),
    lie=st.one_of(st.none(), st.none(), st.integers(0, 1 << 40)),
)
frame_streams = st.lists(st.one_of(_crafted_frame, st.binary(min_size=1, max_size=64)), min_size=1, max_size=8).map(
    b"".join
)


# -- the properties ---------------------------------------------------------------------


@pytest.mark.usefixtures("http_parser")  # (with each request parser, and the lean path in front of both)
def test_random_and_mutated_handshakes(live: LiveServer) -> None:
    @FUZZ
    @given(data=handshakes, abrupt=st.booleans())
    def check(data: bytes, abrupt: bool) -> None:
        exchange(live.port, data, abrupt=abrupt)

    check()
    assert_healthy(live)


def test_random_frames_after_a_valid_handshake(live: LiveServer) -> None:
    @FUZZ
    @given(data=frame_streams, deflate=st.booleans(), abrupt=st.booleans())
    def check(data: bytes, deflate: bool, abrupt: bool) -> None:
        exchange(live.port, data, abrupt=abrupt, after_handshake=handshake_request(live.port, deflate))

    check()
    assert_healthy(live)


def test_a_hostile_server_cannot_break_our_client(live: LiveServer) -> None:
    """Random frames (and broken 101s) from a server: the client fails cleanly, 'close' once."""

    @settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))
    @given(
        data=frame_streams,
        deflate=st.booleans(),
        broken_head=st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=40)),
    )
    def check(data: bytes, deflate: bool, broken_head: bytes | None) -> None:
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        head += b"Sec-WebSocket-Accept: {accept}\r\n"
        if deflate:
            head += b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        if broken_head is not None:
            head += broken_head + b"\r\n"
        live.evil_reply = head + b"\r\n" + data
        live.call(client_survives(f"ws://127.0.0.1:{live.evil_port}/"))

    check()
    assert_healthy(live)


async def client_survives(url: str) -> None:
    client = WebSocket(url, close_timeout=1.0, handshake_timeout=IO_TIMEOUT)
    events: list[str] = []
    closed = asyncio.get_running_loop().create_future()

    def on_close(code: int, reason: str) -> None:
        events.append("close")
        if not closed.done():
            closed.set_result(code)

    client.on("error", lambda exc: events.append("error"))
    client.on("close", on_close)
    client.on("message", lambda event: None)
    await asyncio.wait_for(closed, IO_TIMEOUT + 5)
    await asyncio.sleep(0)
    assert events.count("close") == 1 and events[-1] == "close", events
    assert client.ready_state == WebSocket.CLOSED


def assert_healthy(live: LiveServer) -> None:
    """Nothing reached the loop or was logged with a traceback; nothing leaked; still serving."""
    last: list[tuple[int, int, int]] = []

    def quiet() -> bool:
        sockets, connections, tasks = counts = live.quiet()
        last[:] = [counts]
        return sockets == 0 and connections == 0 and tasks <= live.baseline_tasks

    try:
        until_sync(quiet, 15, step=0.05)
    except AssertionError:
        sockets, connections, tasks = last[0]
        raise AssertionError(
            f"leak: {sockets} WebSockets, {connections} HTTP connections, {tasks} tasks (baseline {live.baseline_tasks})"
        ) from None
    assert live.loop_errors == [], live.loop_errors
    tracebacks = live.tracebacks  # type: ignore[attr-defined]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
    live.call(assert_serves(f"ws://127.0.0.1:{live.port}/ws", "after the fuzz"))
