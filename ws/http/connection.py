"""One HTTP/1.1 connection of ``ws.http.Server``.

A request parser (``ws.http.parsing``: h11 or httptools) turns bytes into
request events; this module decides what to answer and when to close, and
frames every response itself.  Each connection is one ``asyncio.BufferedProtocol`` fed by the loop's
callbacks (no reading task per connection, reads into the thread's shared
buffer), so an idle keep-alive connection costs a few objects and a timer.

Its life is one explicit state machine (``State``)::

    READING_HEAD -> READING_BODY -> RESPONDING -> IDLE -> READING_HEAD ...
                                  RESPONDING -> HELD (the peer does not read) -> IDLE
    any state -> CLOSING -> CLOSED            (answered for the last time)
    RESPONDING -> UPGRADED                    (an upgrade request, handed to its handler)

plus four flags that are independent of it (see ``Connection.__init__``).
The connection asks its server only through the narrow ``Owner`` interface.

Besides the state's own timer, a write watchdog runs while bytes wait
unsent (the transport paused us, or we close with a full buffer): a peer
that takes nothing for ``write_timeout`` seconds is dropped, so a response
nobody reads, or a close waiting for a buffer that never drains, ends.  It
also watches a refused upgrade: a handler that wrote its refusal and closed
without adopting the transport (``set_protocol``) leaves it to us.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import io
import logging
from typing import IO, TYPE_CHECKING, Any, Awaitable, Callable, Literal, Protocol, cast

from .._runtime import ticker as _ticker
from .._runtime.reads import read_buffer
from .._runtime import metrics as _metrics
from .._runtime.log import refusal_cause, report_error, report_event
from ..request import Request
from ..upgrade import UpgradeHandler
from . import parsing as _parsing
from .lean import upgrade_head as _lean_upgrade_head
from . import status as _status
from .context import Context, Response
from .responses import SERVER_NAME, check_header, http_date, plain_response

if TYPE_CHECKING:
    from .routing import Handler

__all__ = ["Connection", "Owner", "State"]

logger = logging.getLogger("ws.http")

_NO_BODY_STATUSES = frozenset({204, 304})
#: File chunk size, and how much pipelined input a busy connection buffers
#: before it stops reading.
CHUNK = 64 * 1024
#: A handler's body larger than this is streamed like a file, so that a
#: peer that does not read makes us hold the body once, not a copy of it
#: in the transport's buffer.
STREAM_MIN = 4 * CHUNK
# How long a connection we decided to close keeps draining the peer's input,
# so that unread bytes do not turn our close into a reset that eats the
# response (RFC 9112, section 9.6).
LINGER = 2.0
#: The write watchdog looks this many times per ``write_timeout``.
WATCH_STEPS = 4
#: Take the lean path for plain upgrade requests (``_lean_upgrade``); off, every request goes
#: through the full parser (the tests compare both, the benchmarks measure both).
LEAN_UPGRADE = True


class State(enum.Enum):
    """Where a connection is in its life; exactly one at a time."""

    #: Waiting for (the rest of) a request head; the header timer runs.
    READING_HEAD = "reading-head"
    #: The head is read, the body is being read (an idle timer runs).
    READING_BODY = "reading-body"
    #: A handler runs or its response is being written.
    RESPONDING = "responding"
    #: Keep-alive, between requests; the keep-alive timer runs.
    IDLE = "idle"
    #: Between requests, but the peer does not read our answers: reading is
    #: paused until it does (``resume_writing``); the keep-alive timer runs.
    HELD = "held"
    #: Answered for the last time: draining the peer's input until closed.
    CLOSING = "closing"
    #: Handed to an upgrade handler: the transport is not ours anymore.
    UPGRADED = "upgraded"
    #: The transport is closed (or was refused at once).
    CLOSED = "closed"


_READING = (State.READING_HEAD, State.READING_BODY)
#: States in which no callback of ours acts on the transport any more.
_GONE = (State.UPGRADED, State.CLOSED)

Admission = Literal["admitted", "refused", "busy"]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _busy_response() -> bytes:
    """The 503 of a server with too many connections waiting for their request head."""
    return plain_response(503, "503 Service Unavailable: too many pending connections", [("Retry-After", "1")])


def _no_upgrade_here(loop: asyncio.AbstractEventLoop, request: Request) -> None:
    """An upgrade request that no WebSocket path took got a 404: count it and log it (one line per interval)."""
    tally = _metrics.tally(loop, _metrics.UNMATCHED)
    if tally is not None:
        tally.handshake(404)
    cause = refusal_cause(404, "")
    report_event(
        logger, logging.INFO, "handshake_refused", cause, "WebSocket handshake refused on %s (%s)",
        request.path, cause, peer=request.client_ip, status=404, path=_metrics.UNMATCHED,  # (as the servers' refusals)
    )


class Owner(Protocol):
    """What a connection needs from its server (``ws.http.Server`` implements it).

    Kept narrow so that the connection can be driven without sockets (see
    ``tests/unit/test_http_connection.py``).
    """

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the connection's timers and tasks run on."""
        ...

    @property
    def listening(self) -> bool:
        """``False`` once the server closes: every answer is then the last one."""
        ...

    @property
    def secure(self) -> bool:
        """Whether the connection speaks TLS (``request.secure``)."""
        ...

    max_body_size: int
    max_header_size: int
    max_header_count: int
    header_timeout: float | None
    keep_alive_timeout: float | None
    write_timeout: float | None

    def admit_connection(self, conn: Connection) -> Admission:
        """A new connection: ``'admitted'``, ``'refused'`` (close it) or ``'busy'`` (answer 503)."""
        ...

    def wait_for_head(self, conn: Connection) -> bool:
        """``conn`` waits for the rest of a request head (a keep-alive one too); ``False``: too many do, answer 503."""
        ...

    def release_pending(self, conn: Connection) -> None:
        """``conn`` no longer waits for its request head (read, or closing)."""
        ...

    def connection_gone(self, conn: Connection) -> None:
        """``conn`` closed or was upgraded: the server stops tracking it."""
        ...

    def make_context(self, request: Request, send: Callable[[Response], None]) -> Context:
        """The ``ctx`` for a request; ``send`` writes its response."""
        ...

    def intercept_request(self, ctx: Context) -> bool:
        """Offer ``ctx`` to ``'request'`` listeners; whether one answered."""
        ...

    def resolve_route(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], list[str]]:
        """``(handler, params, allowed_methods)`` for a request."""
        ...

    def upgrade_handler_for(self, path: str) -> UpgradeHandler | None:
        """Who takes an upgrade request on ``path``, if anyone."""
        ...

    def run_task(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` as a task the server keeps track of."""
        ...


class Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection, reading requests through a ``parsing.RequestParser``.

    Every callback is wrapped: a bug here aborts this connection and is
    logged, it never reaches the event loop.  Reads land in the thread's
    shared buffer (``ws._runtime.reads``), which the parser copies from at once.
    """

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.loop = owner.loop
        #: Made at the first read (``_start_parser``) unless the lean path takes the connection.
        self.parser: _parsing.RequestParser = _parsing.NOT_YET
        self.transport: asyncio.Transport | None = None
        self.peername: Any = None
        self.state = State.READING_HEAD
        #: The state's timer (header, idle or linger timeout), off asyncio's heap (``_set_timer``).
        self.timer: _ticker.Timer | None = None
        # The request being read or answered.
        self.request_head: _parsing.Head | None = None
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.upgrade_header: bytes | None = None
        self.request: Request | None = None
        #: The request allows another one after it (HTTP/1.1, no ``Connection: close``).
        self.reusable = False
        #: The request was read to its end (the next one may follow).
        self.request_done = False
        #: A final response was started: an error can only close now (a 100 Continue does not count).
        self.answered = False
        #: The response being sent ends the connection.
        self.closing = False
        # Resolved when writing may go on (a file being streamed).
        self.drain: asyncio.Future[None] | None = None
        # The write watchdog: bytes handed to the transport, how many of
        # them the peer had taken at its last look, and when that last grew.
        self.watchdog: asyncio.TimerHandle | None = None
        self.written = 0
        self.taken = 0
        self.taken_at = 0.0
        # The flags below are independent of the state and of each other:
        #: We paused the transport's reading (pipelined input piling up, or HELD).
        self.reading_paused = False
        #: The transport asked us to stop writing (its buffer is full).
        self.writing_paused = False
        #: The peer half-closed; what is being answered is the last answer.
        self.peer_eof = False
        #: ``_process`` is on the stack: a nested call leaves the work to it.
        self.processing = False
        #: Nothing was read yet: the first read may take the lean path (``_lean_upgrade``).
        self.fresh = True

    def _start_parser(self) -> None:
        """The first read the lean path did not take: make the request parser (``WS_HTTP``)."""
        self.fresh = False
        self.parser = _parsing.parser_factory()(self.owner.max_header_size)

    # -- asyncio callbacks --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        transport = cast(asyncio.Transport, transport)
        try:
            self.transport = transport
            self.peername = transport.get_extra_info("peername")
            admission = self.owner.admit_connection(self)
            if admission == "refused":
                self.state = State.CLOSED
                transport.close()
            elif admission == "busy":
                self._refuse_busy()
            else:
                self._set_timer(self.owner.header_timeout, self._on_head_timeout)
        except Exception:
            logger.exception("HTTP connection setup failed")
            transport.abort()

    def get_buffer(self, sizehint: int) -> memoryview:
        return read_buffer()[: 64 * 1024]  # (not 1 MiB: a pipelining client's next requests wait in the parser)

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(read_buffer()[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        state = self.state
        if state in _GONE or state is State.CLOSING:
            return  # not ours, or draining the peer before closing
        try:
            if self.fresh:
                if data[:4] == b"GET " and LEAN_UPGRADE and self._lean_upgrade(data):
                    return
                self._start_parser()
            # The parser copies ``data`` at once: a view of the shared read buffer is fine.
            self.parser.receive(data)
            if state is State.IDLE or state is State.HELD:
                self.state = State.READING_HEAD
                self._set_timer(self.owner.header_timeout, self._on_head_timeout)
            elif state is State.READING_BODY:
                # An idle timer, not a deadline: slow uploads are fine,
                # a stalled one is not.
                self._set_timer(self.owner.header_timeout, self._on_head_timeout)
            elif state is State.RESPONDING:
                if self.parser.buffered() > CHUNK and not self.reading_paused:
                    self._pause_reading()
                return
            self._process()
        except Exception:
            logger.exception("HTTP connection failed")
            self._abort()

    def eof_received(self) -> bool | None:
        state = self.state
        if state in _GONE or state is State.CLOSING:
            return None
        try:
            if state is State.RESPONDING:
                # The client half-closed after its request: answer first.
                self.peer_eof = True
                return None if self.owner.secure else True
            if self.fresh:
                self._start_parser()
            self.parser.receive(b"")
            self._process()
        except Exception:
            logger.exception("HTTP connection failed")
            self._abort()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is State.CLOSED:
            return
        ours = self.state is not State.UPGRADED
        self.state = State.CLOSED
        try:
            self._cancel_timer()
            self._stop_watchdog()
            if self.drain is not None and not self.drain.done():
                self.drain.set_result(None)
            if ours:
                self.owner.connection_gone(self)
        except Exception:
            logger.exception("HTTP connection cleanup failed")

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._watch_writes()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)
        if self.state is State.HELD:
            self.state = State.IDLE
            try:
                self._next_request()
            except Exception:
                logger.exception("HTTP connection failed")
                self._abort()

    # -- timers --

    def _set_timer(self, delay: float | None, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        if delay is not None and delay > 0:
            if isinstance(self.loop, asyncio.BaseEventLoop):
                # asyncio's loop: in the ticker's thread, not on the loop's heap.  Almost every such
                # timer is cancelled (a head arrives, the peer closes), but while any timer is on the
                # heap every loop turn pays for it, and with one per connection there nearly always
                # is one: 29k instructions a handshake, 14k in the ticker.  (uvloop's timers cost
                # less than the ticker's.)
                self.timer = _ticker.call_later(self.loop, delay, functools.partial(self._guarded, callback))
            else:
                self.timer = self.loop.call_later(delay, self._guarded, callback)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _guarded(self, callback: Callable[[], None]) -> None:
        self.timer = None
        if self.state in _GONE:
            return
        try:
            callback()
        except Exception:
            logger.exception("HTTP connection timer failed")
            self._abort()

    def _on_head_timeout(self) -> None:
        """Slowloris defence: no complete head (or no body progress) in time."""
        if self.state is State.READING_BODY or self.parser.partial_head():
            self._fail(_status.REQUEST_TIMEOUT)
        else:
            self._close_now()

    def _on_idle_timeout(self) -> None:
        if self.state is State.IDLE or self.state is State.HELD:
            self._close_now()

    # -- the write watchdog --

    def _watch_writes(self) -> None:
        """Bytes wait unsent: drop the peer if it takes none of them for ``write_timeout``."""
        timeout = self.owner.write_timeout
        if self.watchdog is not None or timeout is None or self.transport is None or self.state is State.CLOSED:
            return
        self.taken = self.written - self.transport.get_write_buffer_size()
        self.taken_at = self.loop.time()
        self.watchdog = self.loop.call_later(timeout / WATCH_STEPS, self._check_writes)

    def _stop_watchdog(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None

    def _check_writes(self) -> None:
        self.watchdog = None
        transport = self.transport
        timeout = self.owner.write_timeout
        if self.state is State.CLOSED or transport is None or timeout is None:
            return
        if self.state is State.UPGRADED and transport.get_protocol() is not self:
            return  # adopted (a WebSocket): its new owner times its writes
        try:
            unsent = transport.get_write_buffer_size()
            if not unsent:
                return  # all sent: the next pause (or close) starts a new watch
            taken = self.written - unsent
            now = self.loop.time()
            if taken != self.taken:
                self.taken, self.taken_at = taken, now
            elif now - self.taken_at >= timeout:
                logger.debug("%s took no bytes in %s s (%d unsent): dropped", self.peername, timeout, unsent)
                if self.state is State.UPGRADED:
                    transport.abort()  # a refused upgrade waiting to close
                else:
                    self._abort()
                return
            self.watchdog = self.loop.call_later(timeout / WATCH_STEPS, self._check_writes)
        except Exception:
            logger.exception("HTTP connection write watchdog failed")
            self._abort()

    # -- reading --

    def _process(self) -> None:
        """Pull events out of the parser until it needs more data or we must answer."""
        if self.processing:
            return  # the outer loop picks up the new state
        self.processing = True
        parser = self.parser
        try:
            while self.state in _READING:
                try:
                    event = parser.next_event()
                except _parsing.ParseError as exc:
                    logger.debug("bad request from %s: %s", self.peername, exc)
                    self._fail(exc.status)
                    return
                if event is _parsing.NEED_DATA:
                    if self.state is State.READING_BODY and self.timer is None:
                        # A body still to come: an idle timer, re-armed on every read.
                        self._set_timer(self.owner.header_timeout, self._on_head_timeout)
                    elif self.state is State.READING_HEAD and not self.owner.wait_for_head(self):
                        # Part of a later keep-alive head, and too many
                        # connections already wait for theirs: as a new one would be.
                        self._write(_busy_response())
                        self._close_now()
                    return
                if type(event) is bytes:
                    self._on_body(event)
                elif isinstance(event, _parsing.Head):
                    self._on_request_head(event)
                elif event is _parsing.END:
                    self._on_complete()
                elif event is _parsing.CLOSED:
                    self._close_now()
                    return
        finally:
            self.processing = False

    def _on_request_head(self, event: _parsing.Head) -> None:
        owner = self.owner
        owner.release_pending(self)
        self._cancel_timer()
        self.state = State.READING_BODY  # its idle timer starts only if the body does not follow at once (_process)
        raw = event.headers
        if len(raw) > owner.max_header_count:
            self._fail(_status.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return
        # The parsers only enforce the size limit on heads that arrive in
        # pieces; a whole oversized head in one read is caught here.
        size = len(event.target)
        upgrade = None
        connection: list[bytes] = []
        expect = False
        for name, value in raw:
            size += len(name) + len(value) + 4
            n = len(name)
            if n == 7 and name.lower() == b"upgrade":
                upgrade = value
            elif n == 10 and name.lower() == b"connection":
                connection.extend(v.strip().lower() for v in value.split(b","))
            elif n == 6 and name.lower() == b"expect":
                expect = expect or b"100-continue" in (v.strip().lower() for v in value.split(b","))
        if size > owner.max_header_size:
            self._fail(_status.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return
        try:
            length = _parsing.check_head(event)
        except _parsing.ParseError as exc:
            logger.debug("bad request from %s: %s", self.peername, exc)
            self._fail(exc.status)
            return
        self.request_head = event
        self.raw_headers = raw
        self.body = bytearray()
        self.upgrade_header = upgrade
        # h11's keep-alive rule (RFC 9112, 9.3), for both parsers.
        old = event.http_version < b"1.1"
        self.reusable = not old and b"close" not in connection
        if length is not None and length > owner.max_body_size:
            self._fail(_status.REQUEST_ENTITY_TOO_LARGE)
            return
        if expect and not old:
            self._write(_CONTINUE)

    def _on_body(self, data: bytes) -> None:
        self.body += data
        if len(self.body) > self.owner.max_body_size:
            self._fail(_status.REQUEST_ENTITY_TOO_LARGE)

    def _on_complete(self) -> None:
        self._cancel_timer()
        self.state = State.RESPONDING
        event = self.request_head
        assert event is not None
        try:
            target = event.target.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(_status.BAD_REQUEST)
            return
        request = Request(
            event.method.decode("ascii"),
            target,
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw_headers],
            http_version=event.http_version.decode("ascii"),
            peername=self.peername,
            secure=self.owner.secure,
            body=bytes(self.body),
            complete=True,
        )
        self.request = request
        self.body = bytearray()
        self.request_done = True
        if self.upgrade_header is not None:
            handler = self.owner.upgrade_handler_for(request.path)
            if handler is not None:
                self._hand_off(handler, request)
                return
        self._dispatch(request)

    # -- the upgrade hand-off --

    def _lean_upgrade(self, data: bytes | memoryview) -> bool:
        """The lean path: a first read holding one plain upgrade request for a path that takes it.

        Does what ``_process`` would do for it (release the pending slot,
        stop the header timer, build the ``Request``, hand off), without the
        full parser; ``False`` (nothing done) for anything else, which the
        full parser then reads from the start.
        """
        owner = self.owner
        head = _lean_upgrade_head(data, owner.max_header_size, owner.max_header_count)
        if head is None:
            return False
        request = Request(
            "GET", head.target, head.headers,
            http_version="1.1", peername=self.peername, secure=owner.secure, body=b"", complete=True, _fields=head.fields,
        )
        request._plain_values = True  # (upgrade_head checked every value)
        handler = owner.upgrade_handler_for(request.path)
        if handler is None:
            return False  # (a 404 or a route: the full parser's business)
        self.fresh = False
        owner.release_pending(self)
        self._cancel_timer()
        self.state = State.RESPONDING
        self.upgrade_header = head.upgrade
        self.request = request
        self.request_done = True
        self._hand_off(handler, request, bytes(data[head.end:]))  # (a copy: ``data`` may be the shared read buffer)
        return True

    def _hand_off(self, handler: UpgradeHandler, request: Request, after_head: bytes | None = None) -> None:
        """Give the socket away: every later callback here is ignored, but a refusal's unsent bytes are watched."""
        self.state = State.UPGRADED
        self._cancel_timer()
        self.owner.connection_gone(self)
        transport = self.transport
        assert transport is not None
        if after_head is None:
            after_head = self.parser.after_head()  # what the peer sent after its request, e.g. a first frame
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        try:
            handler.handle_upgrade(request, transport, after_head)
        except Exception:
            logger.exception("upgrade handler %r failed", handler)
            transport.abort()
            return
        if transport.get_protocol() is self and transport.get_write_buffer_size():
            # Not adopted, and bytes wait unsent (a refusal, then close()): time them here.
            self._watch_writes()

    # -- answering --

    def _dispatch(self, request: Request) -> None:
        owner = self.owner
        ctx = owner.make_context(request, self._send)
        if owner.intercept_request(ctx):
            return
        handler, params, allowed = owner.resolve_route(request.method, request.path)
        if handler is None:
            if allowed:
                ctx.set_header("Allow", ", ".join(allowed))
                ctx.text(_status.METHOD_NOT_ALLOWED, "405 Method Not Allowed\n")
            elif self.upgrade_header is None and owner.upgrade_handler_for(request.path) is not None:
                ctx.set_header("Upgrade", "websocket")
                ctx.set_header("Connection", "Upgrade")
                ctx.text(_status.UPGRADE_REQUIRED, "426 Upgrade Required: this path speaks WebSocket\n")
            else:
                ctx.text(_status.NOT_FOUND, "404 Not Found\n")
                if self.upgrade_header is not None:
                    _no_upgrade_here(owner.loop, request)
            return
        ctx.params = params
        try:
            result = handler(ctx)
        except Exception as exc:
            report_error(logger, "handler for %s %s raised", request.method, request.path, error=exc)
            self._internal_error(ctx)
            return
        if inspect.isawaitable(result):
            owner.run_task(self._run_async(ctx, result))
        else:
            self._answer_for(ctx, result)

    async def _run_async(self, ctx: Context, awaitable: Awaitable[Any]) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:
            if not ctx.responded:
                self._close_now()
            raise
        except Exception as exc:
            report_error(logger, "handler for %s %s raised", ctx.request.method, ctx.request.path, error=exc)
            self._internal_error(ctx)
            return
        try:
            self._answer_for(ctx, result)
        except Exception:
            logger.exception("HTTP connection failed")
            self._abort()

    def _answer_for(self, ctx: Context, result: Any) -> None:
        """A handler returned: answer for it if it did not (documented defaults)."""
        if ctx.responded:
            return
        if result is None:
            ctx.status(_status.NO_CONTENT)
        elif isinstance(result, str):
            ctx.text(_status.OK, result)
        elif isinstance(result, (bytes, bytearray, memoryview)):
            ctx.bytes(_status.OK, bytes(result))
        elif isinstance(result, (dict, list)):
            ctx.json(_status.OK, result)
        else:
            report_error(logger, "handler for %s %s returned %r", ctx.request.method, ctx.request.path, type(result))
            self._internal_error(ctx)

    def _internal_error(self, ctx: Context) -> None:
        if not ctx.responded:
            ctx.headers.clear()
            ctx.text(_status.INTERNAL_SERVER_ERROR, "500 Internal Server Error\n")

    def _last_answer(self) -> bool:
        """Whether the response being sent must close the connection."""
        return self.peer_eof or not self.owner.listening

    def _headers_for(self, response: Response, closing: bool) -> list[tuple[str, str]]:
        headers = [("Server", SERVER_NAME), ("Date", http_date())]
        for name, value in response.headers:
            if type(value) is not str:
                value = str(value)  # (``ctx.headers`` edited by hand: an int is fine)
            check_header(name, value)  # (ValueError: ``_send`` answers 500 instead)
            key = name.lower()
            if key in ("server", "date"):
                headers = [h for h in headers if h[0].lower() != key]
            headers.append((name, value))
        if response.status not in _NO_BODY_STATUSES and response.status >= 200:
            headers.append(("Content-Length", str(response.length)))
        if closing:
            for i, (name, value) in enumerate(headers):
                if name.lower() == "connection":
                    if "close" not in value.lower():
                        headers[i] = (name, value + ", close")
                    break
            else:
                headers.append(("Connection", "close"))
        return headers

    def _send(self, response: Response) -> None:
        """Send a handler's response (called by the context, on our loop)."""
        if self.state is not State.RESPONDING:
            if response.file is not None:
                response.file.close()
            return
        try:
            try:
                out = self._response_head(response)
            except ValueError as exc:
                # A header the handler put in ``ctx.headers`` by hand (``set_header`` checks
                # its own) would break the framing: nothing is sent yet, so a 500 instead.
                request = self.request
                assert request is not None
                report_error(logger, "handler for %s %s set a bad response header", request.method, request.path, error=exc)
                if response.file is not None:
                    response.file.close()
                response = Response(_status.INTERNAL_SERVER_ERROR, [("Content-Type", "text/plain; charset=utf-8")],
                                    b"500 Internal Server Error\n")
                out = self._response_head(response)
            self._send_response(response, out)
        except Exception:
            logger.exception("sending a response failed")
            if response.file is not None:
                response.file.close()
            self._abort()

    def _response_head(self, response: Response) -> bytes:
        """The status line and headers: the one place a response is framed (always by Content-Length)."""
        request = self.request
        # (CONNECT: a tunnel we do not provide; and the parsers disagree on what follows it
        # (llhttp: the tunnel's bytes; h11: a Content-Length body, then the next request),
        # so nothing after it is read as HTTP.)
        closing = (
            not self.reusable or self._last_answer() or self.owner.keep_alive_timeout == 0
            or (request is not None and request.method == "CONNECT")
        )
        headers = self._headers_for(response, closing)
        if not closing:
            for name, value in headers:
                if name.lower() == "connection" and "close" in (v.strip().lower() for v in value.split(",")):
                    closing = True  # the handler's own ``Connection: close``
        self.closing = closing
        self.answered = True
        lines = [f"HTTP/1.1 {response.status} {_status.reason(response.status)}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    def _send_response(self, response: Response, out: bytes) -> None:
        """Write ``response`` after its head ``out``."""
        no_body = (
            self.request is not None and self.request.method == "HEAD"
        ) or response.status in _NO_BODY_STATUSES
        if response.file is not None:
            if no_body or response.length <= CHUNK:
                try:
                    data = b"" if no_body else response.file.read(response.length)
                finally:
                    response.file.close()
                if len(data) != (0 if no_body else response.length):
                    raise ValueError(f"{len(data)} bytes for a Content-Length of {response.length}")
                out += data
            else:
                self._write(out)
                self.owner.run_task(self._stream(response.file, response.length))
                return
        elif response.body and not no_body:
            if len(response.body) > STREAM_MIN:
                self._write(out)
                # shares the bytes, no copy
                self.owner.run_task(self._stream(io.BytesIO(response.body), len(response.body)))
                return
            out += response.body
        self._write(out)
        self._response_done()

    async def _stream(self, file: IO[bytes], length: int) -> None:
        """Write a large file (or body) in chunks, respecting the transport's flow control.

        While the peer does not read, this waits for ``resume_writing``; the
        write watchdog drops a peer that reads nothing for ``write_timeout``.
        """
        try:
            left = length
            with file:
                while self.state is not State.CLOSED and left:
                    chunk = file.read(min(CHUNK, left))
                    if not chunk:
                        # The file shrank: the declared length cannot be kept.
                        raise ValueError(f"{left} bytes short of the Content-Length {length}")
                    left -= len(chunk)
                    self._write(chunk)
                    if self.writing_paused:
                        self.drain = self.loop.create_future()
                        await self.drain
                        self.drain = None
            if self.state is State.CLOSED:
                return
            self._response_done()
        except Exception:
            logger.exception("streaming a response failed")
            self._abort()

    def _response_done(self) -> None:
        """One exchange is over: keep the connection alive or close it."""
        if self.state is not State.RESPONDING:
            return
        self.request = None
        if self.request_done and not self.closing and not self._last_answer():
            self.request_done = self.answered = False
            self.parser.next_cycle()
            self.state = State.IDLE
            self._next_request()
        else:
            self._close_gracefully()

    def _next_request(self) -> None:
        """Between requests (IDLE): read the next one, unless the peer is not reading ours."""
        if self.writing_paused:
            # Answers pile up unread: stop taking requests until they drain
            # (the idle timer closes a peer that never reads).
            self.state = State.HELD
            if not self.reading_paused:
                self._pause_reading()
            self._set_timer(self.owner.keep_alive_timeout, self._on_idle_timeout)
            return
        if self.reading_paused:
            self._resume_reading()
        if self.parser.buffered() or self.parser.partial_head():  # a pipelined request is waiting
            self.state = State.READING_HEAD
            self._set_timer(self.owner.header_timeout, self._on_head_timeout)
            self._process()
        else:
            self._set_timer(self.owner.keep_alive_timeout, self._on_idle_timeout)

    def _pause_reading(self) -> None:
        assert self.transport is not None
        self.reading_paused = True
        self.transport.pause_reading()

    def _resume_reading(self) -> None:
        assert self.transport is not None
        self.reading_paused = False
        self.transport.resume_reading()

    def _fail(self, code: int) -> None:
        """Answer a protocol-level error (if no answer was started) and close."""
        if not self.answered:
            self.answered = True
            self._write(plain_response(code))
        self._close_gracefully()

    def _refuse_busy(self) -> None:
        """Too many connections are still sending their request head: 503, close.

        Answered before the request is read (the peer may see a reset
        instead if it already sent one); the cap keeps slow or silent clients
        from holding every socket while the header timeout runs.
        """
        self.state = State.CLOSED
        transport = self.transport
        assert transport is not None
        transport.write(_busy_response())
        transport.close()

    # -- closing --

    def _write(self, data: bytes | None) -> None:
        if data and self.transport is not None and self.state is not State.CLOSED:
            self.written += len(data)
            self.transport.write(data)

    def _enter_closing(self) -> asyncio.Transport | None:
        """The one transition into CLOSING; the transport if there is still one to close."""
        if self.state in _GONE:
            return None
        self.state = State.CLOSING
        self.owner.release_pending(self)  # a closing connection holds no handshake slot
        self._cancel_timer()
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size():
            # close() waits for the buffer to drain: only as long as the peer takes bytes.
            self._watch_writes()
        return transport

    def _close_gracefully(self) -> None:
        """Flush, half-close and drain the peer for a moment, then close."""
        transport = self._enter_closing()
        if transport is None:
            return
        if self.reading_paused:
            self._resume_reading()
        if transport.can_write_eof() and not self.peer_eof and self.owner.listening:
            # (A closing server does not linger: close() should be prompt.)
            try:
                transport.write_eof()
            except OSError:  # the peer reset the connection meanwhile
                transport.abort()
                return
            self._set_timer(LINGER, self._close_now)
        else:
            transport.close()

    def _close_now(self) -> None:
        transport = self._enter_closing()
        if transport is not None:
            transport.close()

    def _abort(self) -> None:
        transport = self._enter_closing()
        if transport is not None:
            transport.abort()

    def abort(self) -> None:
        """Drop the connection at once (the server's ``close_timeout`` ran out)."""
        self._abort()

    def server_closing(self) -> None:
        """The server closes: idle connections go now, busy ones after their answer."""
        if self.state in (State.IDLE, State.HELD, State.READING_HEAD, State.CLOSING):
            self._close_now()
        # READING_BODY / RESPONDING: the answer carries ``Connection: close``
        # because the server no longer listens (``_last_answer``).
