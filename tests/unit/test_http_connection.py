"""ws.http.connection without sockets: the connection's state machine, fed bytes by hand.

The owner is a stand-in for ``ws.http.Server`` (the narrow ``Owner``
interface) and the transport records what would have gone on the wire.
Timeouts are off, so no loop has to run.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterator

import h11
import pytest

from ws.http import parsing as _parsing
from ws.http.connection import CHUNK, Admission, Connection, State
from ws.http.context import Context, Response
from ws.http.routing import Handler, Router
from ws.request import Request
from ws.upgrade import UpgradeHandler

# Every test runs once per request parser (h11, httptools): see tests/conftest.py.
pytestmark = pytest.mark.usefixtures("http_parser")


class FakeTransport:
    """What asyncio's transport would do, recorded."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = self.aborted = self.eof_written = False
        self.reading = True
        self.unsent = 0  # what the kernel has not taken yet (get_write_buffer_size)
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4242) if name == "peername" else default

    def take(self) -> bytes:
        data, self.written = bytes(self.written), bytearray()
        return data


class FakeOwner:
    """The server side of a connection: routes, upgrade handlers, bookkeeping."""

    max_body_size = 1024
    max_header_size = 4096
    max_header_count = 20
    header_timeout: float | None = None
    keep_alive_timeout: float | None = None
    write_timeout: float | None = None
    max_pending: int | None = None

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.router = Router()
        self.upgrades: dict[str, UpgradeHandler] = {}
        self.admission: Admission = "admitted"
        self.is_listening = True
        self.pending: set[Connection] = set()
        self.gone: list[Connection] = []
        self.tasks: list[Awaitable[None]] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def listening(self) -> bool:
        return self.is_listening

    @property
    def secure(self) -> bool:
        return False

    def admit_connection(self, conn: Connection) -> Admission:
        if self.admission == "admitted":
            self.pending.add(conn)
        return self.admission

    def wait_for_head(self, conn: Connection) -> bool:
        if conn not in self.pending and self.max_pending is not None and len(self.pending) >= self.max_pending:
            return False
        self.pending.add(conn)
        return True

    def release_pending(self, conn: Connection) -> None:
        self.pending.discard(conn)

    def connection_gone(self, conn: Connection) -> None:
        self.pending.discard(conn)
        self.gone.append(conn)

    def make_context(self, request: Request, send: Callable[[Response], None]) -> Context:
        return Context(request, None, send)  # no loop: answers are sent at once

    def intercept_request(self, ctx: Context) -> bool:
        return False

    def resolve_route(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], list[str]]:
        return self.router.resolve(method, path)

    def upgrade_handler_for(self, path: str) -> UpgradeHandler | None:
        return self.upgrades.get(path)

    def run_task(self, coro: Awaitable[None]) -> None:
        self.tasks.append(coro)  # never run: the tests answer through the context

    def slow_route(self, path: str) -> list[Context]:
        """A route whose handler answers later, through the context it leaves in the list."""
        waiting: list[Context] = []

        def handler(ctx: Context) -> Awaitable[None]:
            waiting.append(ctx)
            return self._loop.create_future()  # an async handler still running

        self.router.add("GET", path, handler)
        return waiting


class RecordingUpgrade:
    def __init__(self) -> None:
        self.calls: list[tuple[Request, bytes]] = []

    def handle_upgrade(self, request: Request, transport: asyncio.Transport, head: bytes) -> None:
        self.calls.append((request, head))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def owner(loop: asyncio.AbstractEventLoop) -> Iterator[FakeOwner]:
    owner = FakeOwner(loop)
    owner.router.add("GET", "/hello/:name", lambda ctx: ctx.text(200, f"hi {ctx.params['name']}"))
    yield owner
    for coro in owner.tasks:
        coro.close()  # type: ignore[attr-defined]


def open_connection(owner: FakeOwner) -> tuple[Connection, FakeTransport]:
    conn = Connection(owner)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response in ``data`` (status, headers, body), read by an h11 client."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    found: list[tuple[int, dict[str, str], bytes]] = []
    while True:
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        head = client.next_event()
        if head is h11.NEED_DATA:
            return found
        assert isinstance(head, h11.Response), head
        body = b""
        while not isinstance(event := client.next_event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), event
            body += event.data
        found.append((head.status_code, {k.decode(): v.decode() for k, v in head.headers}, body))
        if client.our_state is not h11.DONE or client.their_state is not h11.DONE:
            return found
        client.start_next_cycle()


GET = b"GET /hello/%s HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_request_goes_head_to_responding_to_idle(owner: FakeOwner) -> None:
    conn, transport = open_connection(owner)
    assert conn.state is State.READING_HEAD and conn in owner.pending
    conn.data_received(b"GET /hello/ann HTTP/1.1\r\n")
    assert conn.state is State.READING_HEAD  # the head is not complete yet
    conn.data_received(b"Host: x\r\n\r\n")
    assert conn.state is State.IDLE and conn not in owner.pending  # answered, kept alive
    ((status, headers, body),) = responses(transport.take())
    assert (status, body) == (200, b"hi ann") and "connection" not in headers


def test_pipelined_requests_are_answered_in_order(owner: FakeOwner) -> None:
    conn, transport = open_connection(owner)
    conn.data_received(GET % b"a" + GET % b"b" + GET % b"c")
    assert [body for _, _, body in responses(transport.take())] == [b"hi a", b"hi b", b"hi c"]
    assert conn.state is State.IDLE


def test_a_malformed_request_gets_400_and_the_connection_closes(owner: FakeOwner) -> None:
    conn, transport = open_connection(owner)
    conn.data_received(b"NOT HTTP AT ALL\r\n\r\n")
    assert conn.state is State.CLOSING and transport.eof_written  # half-closed, draining the peer
    ((status, headers, body),) = responses(transport.take())
    assert status == 400 and headers["connection"] == "close" and body == b"400 Bad Request\n"
    conn.data_received(GET % b"late")  # ignored while closing
    assert transport.take() == b""
    conn.connection_lost(None)
    assert conn.state is State.CLOSED and owner.gone == [conn]


@pytest.mark.parametrize(
    ("data", "statuses"),
    [
        # The answers both parsers must give alike (h11's, or check_head's for both).
        (b"GET /hello/a HTTP/1.2\r\nHost: x\r\n\r\n", [505]),
        (b"GET /hello/a HTTP/2.0\r\nHost: x\r\n\r\n", [505]),
        (b"GET /hello/a HTTP/0.9\r\nHost: x\r\n\r\n", [400]),
        (b"GET /hello/a\r\n\r\n", [400]),
        (b"GET /hello/a HTTP/1.1\r\n\r\n", [400]),  # no Host
        (b"GET /hello/a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", [400]),
        (b"GET /hello/a HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", [400]),
        (b"GET /hello/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", [400]),
        (b"POST /hello/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc", [501]),
        (b"POST /hello/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc", [501]),
        (b"POST /hello/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", [501]),
        (b"POST /hello/a HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", [413]),
        (b"GET /hello/a HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 5000 + b"\r\n\r\n", [431]),
        (b"GET /hello/a HTTP/1.1\r\nHost: x\r\n" + b"X: a\r\n" * 30 + b"\r\n", [431]),
        # A chunked body with extensions and a trailer: read, the trailer dropped, then the next request.
        (b"GET /hello/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n2;x=y\r\nab\r\n0\r\nT: 1\r\n\r\n"
         + GET % b"b", [200, 200]),
        (b"GET /hello/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET % b"b", [200]),
        (b"GET /hello/a HTTP/1.0\r\n\r\n" + GET % b"b", [200]),
        (GET % b"a" + b"GET /hello/b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n", [200]),  # (its body is missing)
    ],
)
def test_both_parsers_answer_alike(owner: FakeOwner, data: bytes, statuses: list[int]) -> None:
    conn, transport = open_connection(owner)
    conn.data_received(data)
    assert [status for status, _, _ in responses(transport.take())] == statuses


def test_unknown_paths_and_methods(owner: FakeOwner) -> None:
    conn, transport = open_connection(owner)
    conn.data_received(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nPOST /hello/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    (s404, _, _), (s405, headers, _) = responses(transport.take())
    assert (s404, s405, headers["allow"]) == (404, 405, "GET, HEAD")


def test_an_upgrade_is_handed_off_with_the_bytes_after_the_head(owner: FakeOwner) -> None:
    handler = RecordingUpgrade()
    owner.upgrades["/chat"] = handler
    conn, transport = open_connection(owner)
    conn.data_received(b"GET /chat?x=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nFRAME")
    assert conn.state is State.UPGRADED and owner.gone == [conn]
    ((request, after_head),) = handler.calls
    assert request.path == "/chat" and request.query("x") == "1" and after_head == b"FRAME"
    conn.data_received(b"more")  # the transport is the handler's now
    conn.eof_received()
    conn.abort()
    assert transport.take() == b"" and not transport.aborted and conn.state is State.UPGRADED
    conn.connection_lost(None)
    assert conn.state is State.CLOSED and owner.gone == [conn]  # not reported twice


UPGRADE = b"GET /chat?x=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n%s\r\n"


@pytest.mark.parametrize("lean", [True, False])
def test_the_lean_path_keeps_the_books_as_the_full_parser(
    owner: FakeOwner, monkeypatch: pytest.MonkeyPatch, lean: bool
) -> None:
    from ws.http import connection as _connection

    monkeypatch.setattr(_connection, "LEAN_UPGRADE", lean)
    owner.header_timeout = 30.0
    handler = RecordingUpgrade()
    owner.upgrades["/chat"] = handler
    conn, transport = open_connection(owner)
    assert conn in owner.pending and conn.timer is not None
    frame = b"\x81\x85abcd\x29"  # the start of a masked text frame
    conn.data_received(UPGRADE % b"" + frame)
    assert conn.state is State.UPGRADED and owner.gone == [conn] and conn not in owner.pending
    assert conn.timer is None and transport.take() == b""
    assert (conn.parser is _parsing.NOT_YET) is lean  # (no parser object for a lean connection)
    ((request, after_head),) = handler.calls
    assert after_head == frame and request.http_version == "1.1" and request.body == b""
    assert request.raw_headers == [("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade")]


@pytest.mark.parametrize(
    ("extra", "status"),
    [(b"X: a\r\n" * 20, 431), (b"X: " + b"a" * 5000 + b"\r\n", 431), (b"Host: y\r\n", 400), (b"Content-Length: 2000\r\n", 413)],
)
def test_upgrade_heads_over_the_limits_get_the_full_parsers_answer(owner: FakeOwner, extra: bytes, status: int) -> None:
    handler = RecordingUpgrade()
    owner.upgrades["/chat"] = handler
    conn, transport = open_connection(owner)
    conn.data_received(UPGRADE % extra)
    assert [s for s, _, _ in responses(transport.take())] == [status] and handler.calls == []
    assert conn.state is State.CLOSING and conn not in owner.pending


def test_a_plain_request_on_an_upgrade_path_gets_426(owner: FakeOwner) -> None:
    owner.upgrades["/chat"] = RecordingUpgrade()
    conn, transport = open_connection(owner)
    conn.data_received(b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n")
    ((status, headers, _),) = responses(transport.take())
    assert status == 426 and headers["upgrade"] == "websocket"


def test_too_many_pending_connections_get_503_at_once(owner: FakeOwner) -> None:
    owner.admission = "busy"
    conn, transport = open_connection(owner)
    assert conn.state is State.CLOSED and transport.closed
    ((status, headers, body),) = responses(transport.take())
    assert status == 503 and headers["retry-after"] == "1" and b"too many pending" in body


def test_a_server_that_is_not_serving_refuses_silently(owner: FakeOwner) -> None:
    owner.admission = "refused"
    conn, transport = open_connection(owner)
    assert conn.state is State.CLOSED and transport.closed and transport.take() == b""


def test_a_peer_that_does_not_read_holds_the_next_request(owner: FakeOwner) -> None:
    conn, transport = open_connection(owner)
    conn.pause_writing()
    conn.data_received(GET % b"a")
    assert conn.state is State.HELD and not transport.reading and conn.reading_paused
    conn.resume_writing()
    assert conn.state is State.IDLE and transport.reading and not conn.reading_paused


def test_pipelined_input_piling_up_while_responding_pauses_reading(owner: FakeOwner) -> None:
    answered = owner.slow_route("/slow")
    owner.max_header_size = 2 * CHUNK  # the pipelined request below is one long head
    conn, transport = open_connection(owner)
    conn.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.state is State.RESPONDING
    conn.data_received(GET % (b"x" * (CHUNK + 1)))
    assert not transport.reading and conn.reading_paused
    answered[0].text(200, "late")
    assert transport.reading and conn.state is State.IDLE  # the pipelined request was read and answered too
    assert [body for _, _, body in responses(transport.take())] == [b"late", b"hi " + b"x" * (CHUNK + 1)]


def test_a_closing_server_closes_idle_connections_and_answers_busy_ones_last(owner: FakeOwner) -> None:
    answered = owner.slow_route("/slow")
    idle, idle_transport = open_connection(owner)
    busy, busy_transport = open_connection(owner)
    busy.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    owner.is_listening = False
    idle.server_closing()
    busy.server_closing()
    assert idle.state is State.CLOSING and idle_transport.closed
    assert busy.state is State.RESPONDING and not busy_transport.closed
    answered[0].text(200, "bye")
    ((_, headers, body),) = responses(busy_transport.take())
    assert headers["connection"] == "close" and body == b"bye"
    assert busy.state is State.CLOSING and busy_transport.closed  # a closing server does not linger


def test_a_half_closed_peer_gets_its_answer_then_the_close(owner: FakeOwner) -> None:
    answered = owner.slow_route("/slow")
    conn, transport = open_connection(owner)
    conn.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.eof_received() is True and conn.peer_eof  # keep the transport open to answer
    answered[0].text(200, "still")
    ((_, headers, _),) = responses(transport.take())
    assert headers["connection"] == "close" and conn.state is State.CLOSING and transport.closed


@pytest.mark.parametrize("close", ["_close_now", "_abort", "_close_gracefully"])
def test_the_close_helpers_share_one_transition(owner: FakeOwner, close: str) -> None:
    conn, transport = open_connection(owner)
    assert conn in owner.pending
    getattr(conn, close)()
    assert conn.state is State.CLOSING and conn not in owner.pending
    if close == "_close_gracefully":  # half-closed; the linger timer closes it later
        assert transport.eof_written and not transport.closed and conn.timer is not None
    else:
        assert (transport.closed or transport.aborted) and conn.timer is None
    conn.connection_lost(None)
    getattr(conn, close)()  # after the loss: nothing left to close, the state stays CLOSED
    assert conn.state is State.CLOSED


# -- issue 17: the write watchdog, keep-alive heads and large bodies --


def run_for(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    loop.run_until_complete(asyncio.sleep(seconds))


def test_a_close_waiting_on_a_buffer_nobody_reads_is_aborted(
    loop: asyncio.AbstractEventLoop, owner: FakeOwner
) -> None:
    owner.write_timeout = 0.1
    conn, transport = open_connection(owner)
    conn.data_received(GET % b"a")
    transport.unsent = 1000  # the peer stopped reading
    conn._close_now()  # the keep-alive timer, or a closing server: close() would wait forever
    assert transport.closed and not transport.aborted and conn.watchdog is not None
    run_for(loop, 0.3)
    assert transport.aborted


def test_a_peer_that_keeps_reading_is_not_dropped(loop: asyncio.AbstractEventLoop, owner: FakeOwner) -> None:
    owner.write_timeout = 0.2
    conn, transport = open_connection(owner)
    transport.unsent = 10_000
    conn.pause_writing()  # the buffer is full: the watchdog starts
    for _ in range(8):  # 0.4 s, twice the timeout, with bytes taken all along
        run_for(loop, 0.05)
        transport.unsent -= 1000
    assert not transport.aborted and conn.watchdog is not None
    transport.unsent = 0
    run_for(loop, 0.1)
    assert conn.watchdog is None and not transport.aborted  # all sent: it stops watching


def test_a_stalled_write_drops_a_streaming_response(loop: asyncio.AbstractEventLoop, owner: FakeOwner) -> None:
    owner.write_timeout = 0.1
    owner.router.add("GET", "/big", lambda ctx: ctx.bytes(200, b"x" * (1 << 20)))
    conn, transport = open_connection(owner)
    conn.data_received(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    (stream,) = owner.tasks
    owner.tasks.clear()
    task = loop.create_task(stream)  # type: ignore[arg-type]
    transport.unsent = 70_000
    conn.pause_writing()  # after the first chunk: the stream waits for resume_writing
    run_for(loop, 0.3)
    assert transport.aborted
    conn.connection_lost(None)
    loop.run_until_complete(asyncio.wait_for(task, 1))  # the stream ends with the connection


def test_a_large_body_is_streamed_in_chunks(loop: asyncio.AbstractEventLoop, owner: FakeOwner) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    owner.router.add("GET", "/big", lambda ctx: ctx.bytes(200, body))
    conn, transport = open_connection(owner)
    conn.data_received(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.state is State.RESPONDING and len(transport.written) < CHUNK  # only the head so far
    (stream,) = owner.tasks
    owner.tasks.clear()
    loop.run_until_complete(stream)
    ((status, headers, received),) = responses(transport.take())
    assert (status, headers["content-length"], received) == (200, str(len(body)), body)
    assert conn.state is State.IDLE
    conn.data_received(b"HEAD /big HTTP/1.1\r\nHost: x\r\n\r\n")  # no body: answered at once
    assert not owner.tasks and conn.state is State.IDLE


def test_a_keep_alive_head_counts_as_pending_and_is_refused_over_the_cap(owner: FakeOwner) -> None:
    owner.max_pending = 1
    first, first_transport = open_connection(owner)
    first.data_received(GET % b"a")
    assert first.state is State.IDLE and first not in owner.pending
    first.data_received(b"GET /hello/b HTTP/1.1\r\n")  # the next head, half sent
    assert first in owner.pending
    first.data_received(b"Host: x\r\n\r\n")
    assert first not in owner.pending and first.state is State.IDLE
    second, second_transport = open_connection(owner)  # a new connection takes the only slot
    second.data_received(b"GET /hello/c HTTP/1.1\r\n")
    first_transport.take()
    first.data_received(b"GET /hello/d HTTP/1.1\r\nHost: x\r\n\r\n")  # a whole head needs no slot
    ((status, _, _),) = responses(first_transport.take())
    assert status == 200
    first.data_received(b"GET /hello/e HTTP/1.1\r\n")  # half a head, and no slot left
    ((status, headers, _),) = responses(first_transport.take())
    assert status == 503 and headers["retry-after"] == "1"
    assert first.state is State.CLOSING and first_transport.closed and second in owner.pending


@pytest.mark.parametrize("adopted", [False, True])
def test_a_refused_upgrade_closing_on_a_stalled_buffer_is_aborted(
    loop: asyncio.AbstractEventLoop, owner: FakeOwner, adopted: bool
) -> None:
    owner.write_timeout = 0.1

    class Refusing:
        def handle_upgrade(self, request: Request, transport: Any, head: bytes) -> None:
            if adopted:
                transport.set_protocol(object())  # a WebSocket took it: its own timers rule
            transport.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            transport.unsent = 5000  # the peer reads nothing
            transport.close()

    owner.upgrades["/chat"] = Refusing()  # type: ignore[assignment]
    conn, transport = open_connection(owner)
    conn.data_received(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert conn.state is State.UPGRADED and transport.closed
    run_for(loop, 0.4)
    assert transport.aborted is not adopted
