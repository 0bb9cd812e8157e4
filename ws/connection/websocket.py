"""``WebSocket``: one WebSocket connection, client or server side, as an EventEmitter.

The connection is an ``asyncio.BufferedProtocol``-driven state machine.  Bytes
from the socket go to the lean frame path (``ws/_fastpath.py``) or to
``websockets``' Sans-I/O protocol object, and the messages are dispatched to
listeners from the read callback: no task, future or thread per connection
or per message.  Everything written while one batch of input is handled
(echoes, pongs, close frames) leaves in a single ``transport.write``.

Public methods are safe to call from any thread: off the loop thread they
hop onto it with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from threading import get_ident as _get_ident
from typing import TYPE_CHECKING, Any, Callable, Iterable

from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import OPEN as _P_OPEN, CLOSING as _P_CLOSING, Protocol

from ..protocol import frames as _fastpath
from .._runtime import loop as _loop
from .._runtime.compat import normalize_options
from .._runtime.emitter import MAX_HELD_EVENTS, EventEmitter, report
from .pull import IterationMixin
from .._runtime.reads import read_buffer
from ..events import BINARY, TEXT, CloseEvent, ErrorEvent, Event, MessageEvent
from ..exceptions import NotOpenError, ProtocolError, WebSocketError

if TYPE_CHECKING:  # pragma: no cover
    from ..request import Request

__all__ = ["WebSocket"]

logger = logging.getLogger("ws.websocket")

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PING = Opcode.PING
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE

CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3
_STATE_NAMES = ("CONNECTING", "OPEN", "CLOSING", "CLOSED")

#: Node's ``ws`` default for ``maxPayload``.
DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024
#: Fragments per message; bounds the per-frame work an attacker can cause.
DEFAULT_MAX_FRAGMENTS = 1 << 17
DEFAULT_CLOSE_TIMEOUT = 10.0
#: Write buffer high-water mark: above it ``send`` keeps queueing but
#: ``buffered_amount`` grows and ``'drain'`` fires once it falls below the low one.
DEFAULT_HIGH_WATER = 1 << 20
DEFAULT_LOW_WATER = 1 << 18
#: Sends outside a listener wait for the end of the loop turn, unless this many
#: frames are queued or a payload is larger than ``_BATCH_BYTES`` (no gain in batching it).
_BATCH_FRAMES = 64
_BATCH_BYTES = 16384
#: Hard cap on unsent bytes: a ``send`` while more than this waits (the peer
#: does not read) fails the connection instead of growing memory without bound.
DEFAULT_MAX_BUFFERED_AMOUNT = 64 << 20
#: ``async def`` listeners of one socket running at once before it stops
#: reading; it reads again when half of them have finished.
MAX_PENDING_LISTENERS = 32

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def check_byte_limit(name: str, value: Any) -> None:
    """A size limit option is ``None`` (no limit) or a positive int: say so at construction."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def valid_close_code(code: int) -> bool:
    """Close codes an application may send (RFC 6455 7.4, as Node's ``ws``)."""
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


class _Stream(asyncio.BufferedProtocol):
    """The transport-facing half of a ``WebSocket``: forwards asyncio callbacks.

    A ``BufferedProtocol``: reads land in a buffer shared by the thread's
    sockets, which the lean path parses in place, except while a large frame
    is coming in, which is read straight into a buffer of its own size
    (``ws._frame``, see ``ws/_fastpath.py``).
    """

    __slots__ = ("ws", "view")

    def __init__(self, ws: "WebSocket") -> None:
        self.ws = ws
        self.view: memoryview | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.ws._connection_made(transport)  # type: ignore[arg-type]

    def get_buffer(self, sizehint: int) -> memoryview:
        ws = self.ws
        frame = ws._frame
        if frame is not None:
            self.view = None
            return frame[ws._frame_fill :]
        ws._direct_reads = True
        view = self.view = read_buffer()
        return view

    def buffer_updated(self, nbytes: int) -> None:
        ws = self.ws
        view = self.view
        if view is not None:
            self.view = None
            # The lean path reads the shared buffer in place (it copies what it
            # keeps: payloads by unmasking, an incomplete tail into ``_rbuf``);
            # the protocol object gets its own bytes.
            ws._data_received(view[:nbytes] if ws._lean else bytes(view[:nbytes]))
            return
        ws._frame_fill += nbytes
        frame = ws._frame
        if frame is not None and ws._frame_fill >= len(frame):
            ws._frame = None
            if ws._lean:
                ws._data_received(frame)
                if ws._ready_state != CLOSED:
                    # Delivered (unmasked into new bytes): the buffer may take the next large frame.
                    ws._spare = frame.obj
            else:
                ws._data_received(bytes(frame))

    def data_received(self, data: bytes) -> None:
        # Transports that do not use get_buffer() (never with a large frame pending).
        self.ws._data_received(data)

    def eof_received(self) -> bool | None:
        return self.ws._eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws._connection_lost(exc)

    def pause_writing(self) -> None:
        self.ws._writing_paused = True

    def resume_writing(self) -> None:
        self.ws._writing_resumed()


class WebSocket(IterationMixin, EventEmitter):
    """A WebSocket connection with the JavaScript API.

    As a client: ``WebSocket(url, protocols=None, **options)`` connects in the
    background and emits ``'open'``, ``'message'``, ``'close'``, ``'error'``,
    ``'ping'``, ``'pong'``, ``'unexpected-response'``, ``'drain'``,
    ``'redirect'`` ``(url, headers)`` (with ``follow_redirects``).  On the
    server side ``WebSocketServer`` creates them and hands them to
    ``'connection'`` listeners.

    Options (snake_case; the camelCase spellings work too): ``headers``,
    ``origin``, ``handshake_timeout``, ``max_payload``, ``max_fragments``,
    ``per_message_deflate``, ``ping_interval``, ``ping_timeout``,
    ``close_timeout``, ``ssl``, ``proxy``, ``follow_redirects``,
    ``max_redirects``, ``high_water_mark``, ``low_water_mark``,
    ``max_buffered_amount`` (see docs/reliability.md for every limit;
    docs/interop.md for ``ssl``, ``proxy`` and redirects).
    """

    CONNECTING = CONNECTING
    OPEN = OPEN
    CLOSING = CLOSING
    CLOSED = CLOSED
    TextMessage = TEXT
    BinaryMessage = BINARY

    # What every message and every broadcast delivery reads lives in the
    # object itself, not in its ``__dict__`` (which stays, for the rest of
    # the state and for users' own attributes, ``sock.is_alive = True``).  A
    # broadcast to 1,000 clients reads these from 1,000 sockets between the
    # kernel's sends, which evict them from the caches: fewer cache lines per
    # socket took 0.8 us of user CPU off a delivery (docs/performance.md,
    # "Fifth pass").  _setup() sets every one of them, so none is ever read
    # unset.
    __slots__ = (
        "_ready_state", "_proto", "_transport", "_lean", "_dispatching", "_fragmenting",
        "_writing_paused", "_out", "_rbuf", "_reading_held", "_is_server", "_on_message",
        "_frame", "_frame_fill", "_direct_reads", "_held", "_flush_scheduled",
    )
    _proto: Protocol | None
    _transport: asyncio.Transport | None

    def __init__(self, url: Any = None, protocols: str | Iterable[str] | None = None, **options: Any) -> None:
        from . import client as _client  # the client half lives in its own module

        super().__init__()
        options = normalize_options(options)
        target = _client.parse_url(url)
        offered = _client.parse_protocols(protocols)
        config = _client.ClientConfig(target, offered, options)
        check_byte_limit("max_buffered_amount", options.get("max_buffered_amount"))
        self._setup(_loop.bind(), is_server=False, options=options)
        self._url = url
        self._client = config
        self._hold_events = not _loop.in_loop(self._loop)
        self._ref.hold()
        if _loop.is_reactor(self._loop):
            # A script's client goes away with 1001 on SIGINT/SIGTERM, as servers do.
            _loop.reactor.on_shutdown(self._going_away)
        if self._hold_events:
            self._loop.call_soon_threadsafe(_client.start, self)
        else:
            self._loop.call_soon(_client.start, self)

    # -- construction -----------------------------------------------------------

    def _setup(self, loop: asyncio.AbstractEventLoop, *, is_server: bool, options: dict[str, Any]) -> None:
        """State shared by client and server sockets (no I/O)."""
        self._loop = loop
        self._ref = _loop.Ref(loop)
        self._is_server = is_server
        self._ready_state = CONNECTING
        self._proto = None
        self._transport = None
        self._url = ""
        self._protocol = ""
        self._extensions = ""
        self._remote_address: str | None = None
        self._request: Request | None = None
        self._server: Any = None
        self._client: Any = None
        self._held = None
        self._hold_events = False
        # Receive state.
        # The thread running our read callback (listeners batch their sends
        # meanwhile); False outside one.
        self._dispatching: int | bool = False
        self._lean = False  # common frames bypass the protocol object (ws/_fastpath.py)
        self._fragmenting = False  # a message sent with fin=False is still open
        self._rbuf: bytearray | None = None  # lean path: an incomplete frame's bytes
        self._frame: memoryview | None = None  # lean path: a large frame being read into its own buffer
        self._spare: bytearray | None = None  # ... the last one's buffer, for the next
        self._frame_fill = 0  # ... how much of it is in
        self._direct_reads = False  # the transport reads through _Stream.get_buffer
        self._frag_opcode: Opcode | None = None
        self._frag_buffer: bytearray | None = None
        self._frag_text: list[str] | None = None
        self._frag_decoder: Any = None
        self._frag_count = 0
        self._error_emitted = False
        self._failed_with: tuple[int, str] | None = None
        self._close_emitted = False
        self._paused = False
        # Send state.
        self._out: list[bytes] = []  # frames written at the end of the current batch or loop turn
        self._flush_scheduled = False  # a _scheduled_flush is on its way
        self._writing_paused = False
        self._queued_bytes = 0  # bytes of sends still hopping over from other threads
        # Timers.
        self._close_timer: asyncio.TimerHandle | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._awaiting_pong_since: float | None = None
        self._keepalive: Any = None
        # Options.
        self.max_payload: int | None = options.get("max_payload", DEFAULT_MAX_PAYLOAD)
        self.max_fragments: int | None = options.get("max_fragments", DEFAULT_MAX_FRAGMENTS)
        self.max_buffered_amount: int | None = options.get("max_buffered_amount", DEFAULT_MAX_BUFFERED_AMOUNT)
        self._listener_tasks = 0  # async listeners still running
        self._backlog_paused = False  # reading paused until they catch up
        self._reading_held = False  # paused either way: the lean path stops between frames
        self.close_timeout: float = options.get("close_timeout", DEFAULT_CLOSE_TIMEOUT)
        self._on_message: Callable[[MessageEvent], Any] | None = None

    @classmethod
    def _accepted(
        cls,
        loop: asyncio.AbstractEventLoop,
        proto: Protocol,
        transport: asyncio.Transport,
        request: "Request",
        server: Any,
        options: dict[str, Any],
    ) -> "WebSocket":
        """A server-side socket whose handshake ``server`` just completed."""
        self = cls.__new__(cls)
        EventEmitter.__init__(self)
        self._setup(loop, is_server=True, options=options)
        self._proto = proto
        self._lean = not proto.extensions and not proto.debug  # debug mode logs every frame
        self._request = request
        self._server = server
        self._url = request.url
        self._protocol = proto.subprotocol or ""  # type: ignore[attr-defined]
        self._remote_address = request.remote_address
        self._ready_state = OPEN
        self._ref.hold()
        transport.set_protocol(_Stream(self))
        self._transport = transport
        self._set_write_limits(options)
        return self

    def _set_write_limits(self, options: dict[str, Any]) -> None:
        assert self._transport is not None
        try:
            self._transport.set_write_buffer_limits(
                high=options.get("high_water_mark", DEFAULT_HIGH_WATER),
                low=options.get("low_water_mark", DEFAULT_LOW_WATER),
            )
        except (AttributeError, NotImplementedError):  # pragma: no cover - exotic transports
            pass

    # -- properties ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL given to the constructor (client) or the request target (server)."""
        return self._url

    @property
    def protocol(self) -> str:
        """The negotiated subprotocol, or ``''``."""
        return self._protocol

    @property
    def extensions(self) -> str:
        """The negotiated extensions, as the ``Sec-WebSocket-Extensions`` value or ``''``."""
        return self._extensions

    @property
    def ready_state(self) -> int:
        """``CONNECTING`` (0), ``OPEN`` (1), ``CLOSING`` (2) or ``CLOSED`` (3)."""
        return self._ready_state

    @property
    def buffered_amount(self) -> int:
        """Bytes accepted by ``send`` but not yet handed to the kernel."""
        transport = self._transport
        pending = self._queued_bytes
        if self._out:
            pending += sum(map(len, self._out))
        if transport is not None and not transport.is_closing():
            pending += transport.get_write_buffer_size()
        return pending

    @property
    def remote_address(self) -> str | None:
        """The peer's IP address (or unix socket path)."""
        return self._remote_address

    @property
    def request(self) -> "Request | None":
        """Server side: the upgrade request (the request helper)."""
        return self._request

    @property
    def is_paused(self) -> bool:
        """Whether ``pause()`` stopped reading from the socket."""
        return self._paused

    # -- sending ------------------------------------------------------------------

    def send(
        self, data: str | bytes | bytearray | memoryview, *, binary: bool | None = None, fin: bool = True
    ) -> None:
        """Send one message: ``str`` as a text frame, bytes-like as a binary frame.

        Non-blocking.  While the socket is not OPEN nothing is sent and an
        ``'error'`` (``NotOpenError``) is emitted instead.  ``fin=False``
        sends a fragment, as Node's ``send(data, {fin: false})``: every
        following ``send`` continues that message until one has ``fin=True``.
        """
        if isinstance(data, str):
            payload: Any = data.encode()
            is_text = not binary
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = data
            is_text = binary is False
        else:
            raise TypeError(f"data must be str or bytes-like, got {type(data).__name__}")
        # Inside our own read callback, on its thread: no need to ask asyncio,
        # whose _get_running_loop() costs a getpid() system call on Python 3.11.
        if self._dispatching == _get_ident() or _loop._get_running_loop() is self._loop:
            self._send_frame(is_text, payload, fin)
        else:
            if not isinstance(payload, bytes):
                payload = bytes(payload)  # the caller may reuse its buffer
            self._queued_bytes += len(payload)
            _loop.call(self._loop, self._send_from_thread, is_text, payload, fin)

    def _send_from_thread(self, is_text: bool, payload: bytes, fin: bool = True) -> None:
        self._queued_bytes -= len(payload)
        self._send_frame(is_text, payload, fin)

    def _send_frame(self, is_text: bool, payload: Any, fin: bool = True) -> None:
        if self._ready_state != OPEN:
            self._emit_error(NotOpenError(self._ready_state, _STATE_NAMES[self._ready_state]))
            return
        if self._writing_paused and self._over_buffer_limit():
            return
        proto = self._proto
        assert proto is not None
        if not fin or self._fragmenting:
            self._send_fragment(proto, is_text, payload, fin)
        elif self._lean:  # OPEN here implies the protocol is OPEN (see ws/_fastpath.py)
            out = self._out
            if proto.writes:  # keep the order of frames the protocol produced
                out += proto.data_to_send()
            n = len(payload)
            if n < 126 and self._is_server:
                out.append((_fastpath.TEXT_HEADS if is_text else _fastpath.BINARY_HEADS)[n] + payload)
            else:
                _fastpath.add_frame(out, is_text, payload, not self._is_server)
            if not self._dispatching:
                # Outside a listener (a coroutine, a timer, another thread):
                # the frames sent in one loop turn leave in one write, so a
                # burst costs one system call instead of one per message.
                if n > _BATCH_BYTES or len(out) >= _BATCH_FRAMES:
                    self._flush()
                elif not self._flush_scheduled:
                    self._flush_scheduled = True
                    self._loop.call_soon(self._scheduled_flush)
            return
        elif proto.state is not _P_OPEN:
            # The peer's close frame came in the same read as the message this
            # listener answers: too late to send, and not the caller's fault.
            return
        elif is_text:
            proto.send_text(payload)
        else:
            proto.send_binary(payload)
        if not self._dispatching:
            self._flush()

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if self._out:
            self._flush()

    def _send_fragment(self, proto: Protocol, is_text: bool, payload: Any, fin: bool) -> None:
        """One frame of a fragmented message, through the protocol object.

        The lean path never runs while a message is open, so the protocol's
        frames keep their order behind anything already queued.
        """
        if proto.state is not _P_OPEN:
            return
        if self._fragmenting:
            proto.send_continuation(payload, fin)
        elif is_text:
            proto.send_text(payload, fin)
        else:
            proto.send_binary(payload, fin)
        self._fragmenting = not fin

    def ping(self, data: str | bytes = b"") -> None:
        """Send a ping (payload at most 125 bytes)."""
        payload = self._control_payload(data)
        _loop.call(self._loop, self._send_control, _PING, payload)

    def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited pong (payload at most 125 bytes)."""
        payload = self._control_payload(data)
        _loop.call(self._loop, self._send_control, _PONG, payload)

    @staticmethod
    def _control_payload(data: str | bytes) -> bytes:
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if len(payload) > 125:
            raise ValueError("the data size for a control frame must not be greater than 125 bytes")
        return payload

    def _send_control(self, opcode: Opcode, payload: bytes) -> None:
        if self._ready_state != OPEN:
            self._emit_error(NotOpenError(self._ready_state, _STATE_NAMES[self._ready_state]))
            return
        assert self._proto is not None
        if opcode is _PING:
            self._proto.send_ping(payload)
        else:
            self._proto.send_pong(payload)
        if not self._dispatching:
            self._flush()

    def _send_control_now_ping(self) -> None:
        """A keepalive ping (on the loop thread, no listener involved)."""
        proto = self._proto
        if proto is not None and proto.state is _P_OPEN:
            proto.send_ping(b"")
            if not self._dispatching:
                self._flush()

    def _flush(self) -> None:
        """Hand everything pending (lean frames, then the protocol's) to the transport, in one write."""
        proto = self._proto
        if proto is None:
            return
        writes = self._out
        if writes:
            self._out = []
            if proto.writes:
                writes += proto.data_to_send()
        elif proto.writes:
            writes = proto.data_to_send()
        else:
            return
        transport = self._transport
        if transport is None:
            return
        eof = False
        if writes[-1] == b"":
            eof = True
            writes.pop()
        if len(writes) == 1:
            transport.write(writes[0])
        elif writes:
            if sum(map(len, writes)) <= 65536:
                transport.write(b"".join(writes))
            else:  # large payloads: no joined copy
                for chunk in writes:
                    transport.write(chunk)
        if eof:
            self._send_eof()

    def _send_eof(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._is_server:
            # After the closing handshake the server closes the TCP connection.
            transport.close()
        elif transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the peer reset the connection meanwhile
                transport.abort()
        else:
            transport.close()

    # -- closing ------------------------------------------------------------------

    def close(self, code: int | None = 1000, reason: str | bytes = "") -> None:
        """Start the closing handshake; the TCP connection ends after it (or after ``close_timeout``).

        ``code`` must be 1000-1014 (except 1004-1006) or 3000-4999, ``reason``
        at most 123 bytes of UTF-8; anything else raises ``ValueError``.
        """
        if code is not None:
            if isinstance(code, bool) or not isinstance(code, int):
                raise TypeError(f"close code must be an int, got {type(code).__name__}")
            if not valid_close_code(code):
                raise ValueError(f"invalid close code: {code}")
        reason_text = reason.decode() if isinstance(reason, (bytes, bytearray)) else str(reason)
        if len(reason_text.encode()) > 123:
            raise ValueError("the close reason must not be longer than 123 bytes")
        if code is None and reason_text:
            raise ValueError("a close reason needs a close code")
        _loop.call(self._loop, self._close_now, code, reason_text)

    def _close_now(self, code: int | None, reason: str) -> None:
        state = self._ready_state
        if state == CLOSED:
            return
        if state == CONNECTING:
            self._abort_connecting(WebSocketError("WebSocket was closed before the connection was established"))
            return
        if state == CLOSING:
            return
        proto = self._proto
        assert proto is not None
        if proto.state is _P_OPEN:
            proto.send_close(code, reason)
        self._ready_state = CLOSING
        self._flush()
        self._expect_close()

    def terminate(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        _loop.call(self._loop, self._terminate_now)

    def _terminate_now(self) -> None:
        if self._ready_state == CLOSED:
            return
        if self._ready_state == CONNECTING and self._transport is None:
            self._abort_connecting(WebSocketError("WebSocket was closed before the connection was established"))
            return
        self._ready_state = CLOSING
        if self._transport is not None:
            self._transport.abort()

    def _abort_connecting(self, error: BaseException) -> None:
        """Fail a client that has not opened yet: ``'error'`` then ``'close'`` (1006)."""
        if self._client is not None:
            self._client.cancel(self)
        self._emit_error(error)
        if self._transport is not None and not self._transport.is_closing():
            self._ready_state = CLOSING
            self._transport.abort()  # connection_lost emits 'close'
        else:
            self._finish(1006, "")

    def _expect_close(self) -> None:
        """Arm the timer that ends a closing handshake the peer never completes."""
        transport = self._transport
        if self._close_timer is None and transport is not None:
            if transport.is_closing() and not transport.get_write_buffer_size():
                return  # closed with nothing left to send: connection_lost is on its way
            self._close_timer = self._loop.call_later(self.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, code: int, message: str) -> None:
        """Fail the connection for a reason found by us (not by the parser)."""
        proto = self._proto
        if proto is None or self._ready_state == CLOSED:
            return
        self._emit_error(ProtocolError(message, code))
        self._failed_with = (code, message)
        if proto.state is _P_OPEN or proto.state is _P_CLOSING:
            proto.fail(code, message if len(message.encode()) <= 123 else "")
        self._ready_state = CLOSING
        self._flush()
        self._expect_close()

    def _keepalive_expired(self) -> None:
        """No pong within ``ping_timeout``: the peer is gone; close with 1011 at once."""
        proto = self._proto
        if proto is None or self._ready_state == CLOSED:
            return
        self._failed_with = (1011, "keepalive ping timeout")
        if proto.state is _P_OPEN:
            proto.fail(1011, "keepalive ping timeout")
            self._flush()
        self._ready_state = CLOSING
        if self._transport is not None:
            self._transport.abort()

    # -- flow control -------------------------------------------------------------

    def pause(self) -> None:
        """Stop reading from the socket (TCP pushes back on the peer)."""
        _loop.call(self._loop, self._set_paused, True)

    def resume(self) -> None:
        """Start reading again after ``pause()``."""
        _loop.call(self._loop, self._set_paused, False)

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        self._paused = paused
        self._apply_reading()

    def _apply_reading(self) -> None:
        """Read unless ``pause()`` or a backlog of async listeners says otherwise.

        While held, the lean path leaves the frames it has not delivered yet
        in ``_rbuf``, as raw bytes; they are delivered first when reading resumes.
        """
        held = self._paused or self._backlog_paused
        self._reading_held = held
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if held:
            transport.pause_reading()
            return
        if self._rbuf and self._lean and not self._dispatching and self._ready_state == OPEN:
            self._data_received(b"")
            if self._reading_held:
                return
        transport.resume_reading()

    def _schedule(self, awaitable: Any) -> asyncio.Future | None:
        """Run an ``async def`` listener; too many at once stop reading (TCP pushes back)."""
        task = super()._schedule(awaitable)
        if task is not None and not task.done():
            self._listener_tasks += 1
            task.add_done_callback(self._listener_task_done)
            if self._listener_tasks >= MAX_PENDING_LISTENERS and not self._backlog_paused:
                self._backlog_paused = True
                self._apply_reading()
        return task

    def _listener_task_done(self, task: asyncio.Future) -> None:
        self._listener_tasks -= 1
        if self._backlog_paused and self._listener_tasks <= MAX_PENDING_LISTENERS // 2:
            self._backlog_paused = False
            self._apply_reading()

    def _over_buffer_limit(self) -> bool:
        """More than ``max_buffered_amount`` bytes unsent: fail the connection (``True``).

        Checked only above the high-water mark, so it costs nothing while
        the peer keeps up.  The socket is dropped at once: a close frame
        would wait behind the very bytes the peer does not read.
        """
        limit = self.max_buffered_amount
        pending = self.buffered_amount
        if limit is None or pending <= limit:
            return False
        self._emit_error(WebSocketError(
            f"{pending} bytes wait to be sent, over max_buffered_amount ({limit}): the peer does not read"
        ))
        self._failed_with = (1008, "send buffer limit exceeded")
        self._ready_state = CLOSING
        if self._transport is not None:
            self._transport.abort()
        return True

    def _writing_resumed(self) -> None:
        self._writing_paused = False
        self.emit("drain")

    def ref(self) -> "WebSocket":
        """Keep the process alive while this socket is open (the default)."""
        self._ref.ref()
        return self

    def unref(self) -> "WebSocket":
        """Let the process exit even if this socket is still open."""
        self._ref.unref()
        return self

    # -- asyncio callbacks ----------------------------------------------------------

    def _connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        if self._client is not None:
            self._client.connection_made(self, transport)

    def _data_received(self, data: bytes) -> None:
        proto = self._proto
        if proto is None:
            return
        self._dispatching = _get_ident()
        try:
            if self._lean:
                _fastpath.receive(self, proto, data)
            elif self._ready_state == CONNECTING and self._client is not None:
                _fastpath.handshake(self, proto, data)
            else:
                proto.receive_data(data)
                events = proto.events_received()
                if events:
                    self._handle_events(events)
        except Exception as exc:  # a bug of ours: never into the loop
            logger.exception("internal error while receiving")
            self._fail(1011, f"internal error: {exc}")
        finally:
            self._dispatching = False
        self._after_receive(proto)

    def _after_receive(self, proto: Protocol) -> None:
        if proto.parser_exc is not None and not self._error_emitted:
            self._report_parser_error(proto)
        if self._ready_state == OPEN and proto.state is _P_CLOSING:
            self._ready_state = CLOSING
        self._flush()
        if proto.close_expected():
            self._expect_close()

    def _report_parser_error(self, proto: Protocol) -> None:
        exc = proto.parser_exc
        assert exc is not None
        if isinstance(exc, EOFError):
            return  # the TCP connection ended: 'close' (1006) says it all
        sent = proto.close_sent
        code = sent.code if sent is not None else 1002
        self._emit_error(ProtocolError(_describe_parser_error(exc), code))

    def _handle_events(self, events: list[Any]) -> None:
        for event in events:
            if self._ready_state == CLOSED:
                return
            if type(event) is Response:
                self._client.handshake_response(self, event)
                continue
            opcode = event.opcode
            if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                if not self._data_frame(event):
                    return
            elif opcode is _PING:
                self.emit("ping", event.data)
            elif opcode is _PONG:
                self._awaiting_pong_since = None
                self.emit("pong", event.data)
            elif opcode is _CLOSE:
                self._drop_partial_message()
                if self._ready_state == OPEN:
                    self._ready_state = CLOSING

    def _data_frame(self, frame: Any) -> bool:
        """Assemble and deliver data frames; ``False`` when the connection failed."""
        opcode = frame.opcode
        if opcode is not _CONT:
            if frame.fin:
                if opcode is _TEXT:
                    try:
                        text = frame.data.decode()
                    except UnicodeDecodeError as exc:
                        self._fail(1007, f"invalid UTF-8 at position {exc.start}")
                        return False
                    self._deliver(TEXT, text)
                else:
                    data = frame.data
                    self._deliver(BINARY, data if type(data) is bytes else bytes(data))
                return True
            self._frag_opcode = opcode
            self._frag_count = 1
            if opcode is _TEXT:
                self._frag_decoder = _utf8_decoder()
                self._frag_text = []
                return self._text_fragment(frame.data, False)
            self._frag_buffer = bytearray(frame.data)
            return True
        self._frag_count += 1
        if self.max_fragments is not None and self._frag_count > self.max_fragments:
            self._drop_partial_message()
            self._fail(1009, f"message has more than {self.max_fragments} fragments")
            return False
        if self._frag_opcode is _TEXT:
            if not self._text_fragment(frame.data, frame.fin):
                return False
            if frame.fin:
                assert self._frag_text is not None
                text = "".join(self._frag_text)
                self._drop_partial_message()
                self._deliver(TEXT, text)
            return True
        assert self._frag_buffer is not None
        self._frag_buffer += frame.data
        if frame.fin:
            data = bytes(self._frag_buffer)
            self._drop_partial_message()
            self._deliver(BINARY, data)
        return True

    def _text_fragment(self, chunk: bytes, final: bool) -> bool:
        # Decoding as fragments arrive fails fast on bad UTF-8 (Autobahn 6.x).
        try:
            piece = self._frag_decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            self._drop_partial_message()
            self._fail(1007, f"invalid UTF-8: {exc.reason}")
            return False
        if piece:
            assert self._frag_text is not None
            self._frag_text.append(piece)
        return True

    def _drop_partial_message(self) -> None:
        self._frag_opcode = None
        self._frag_buffer = None
        self._frag_text = None
        self._frag_decoder = None
        self._frag_count = 0

    def _deliver(self, kind: int, data: str | bytes) -> None:
        event = MessageEvent(kind, data, self)
        single = self._on_message
        if single is not None:
            try:
                result = single(event)
            except Exception as exc:
                self._listener_failed(exc)
                return
            if result is not None and hasattr(result, "__await__"):
                self._schedule(result)
        elif self._hold_events:
            self._emit_kept("message", event, limit=MAX_HELD_EVENTS)
        else:
            self.emit("message", event)

    def _listeners_changed(self, event: str | None) -> None:
        if event is None or event == "message":
            # One listener (the common case) is called directly, without the
            # emitter's machinery; several go through emit().
            listeners = self._events.get("message")
            if listeners and len(listeners) == 1:
                listener = next(iter(listeners.values()))
                self._on_message = getattr(listener, "_ws_direct", listener)  # one argument: no arity wrapper
            else:
                self._on_message = None
        super()._listeners_changed(event)

    def _eof_received(self) -> bool | None:
        proto = self._proto
        if proto is None:
            return None
        self._lean = False
        if self._frame is not None:  # a large frame cut short
            proto.receive_data(bytes(self._frame[: self._frame_fill]))
            self._frame = None
        self._spare = None
        if self._rbuf is not None:  # an incomplete frame (lean path) or handshake tail
            if self._ready_state != CONNECTING:
                proto.receive_data(bytes(self._rbuf))
            self._rbuf = None
        proto.receive_eof()
        events = proto.events_received()
        if events:
            self._dispatching = _get_ident()
            try:
                self._handle_events(events)
            finally:
                self._dispatching = False
        self._after_receive(proto)
        # Keep the transport open for writing only if the protocol still
        # has a closing handshake to finish; otherwise let asyncio close it.
        return None

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        proto = self._proto
        if self._ready_state == CONNECTING and self._client is not None:
            self._client.connection_lost(self, exc)
            return
        code, reason = 1006, ""
        if proto is not None:
            if proto.close_rcvd is not None:
                code, reason = proto.close_rcvd.code, proto.close_rcvd.reason
            elif proto.close_sent is not None and proto.parser_exc is not None:
                code, reason = proto.close_sent.code, proto.close_sent.reason
            elif self._failed_with is not None:
                code, reason = self._failed_with
        self._finish(code, reason)

    def _finish(self, code: int, reason: str) -> None:
        """The connection is gone: release everything and emit ``'close'`` once."""
        self._ready_state = CLOSED
        self._frame = self._rbuf = self._spare = None
        self._out = []  # frames queued for the end of the loop turn can no longer leave
        self._drop_partial_message()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()
        self._ref.release()
        proto = self._proto
        if proto is not None and proto.extensions:
            # Free the compression contexts (~300 KB with permessage-deflate)
            # now: the socket itself may live on in reference cycles until
            # the next full garbage collection.
            proto.extensions = []
        if self._keepalive is not None:
            self._keepalive.discard(self)
            self._keepalive = None
        if self._server is not None:
            self._server._socket_closed(self)
        elif self._client is not None:
            _loop.reactor.remove_shutdown(self._going_away)
        if not self._close_emitted:
            self._close_emitted = True
            self._emit_event("close", code, reason)

    # -- events -------------------------------------------------------------------

    def _emit_error(self, error: BaseException) -> None:
        self._error_emitted = True
        self._emit_event("error", error)

    def _emit_event(self, event: str, *args: Any) -> None:
        """Emit a lifecycle event; hold it for late listeners on script-made clients.

        A client created in a plain script connects on the reactor thread
        while the script's next lines are still attaching listeners; events
        that find no listener yet are kept and replayed when one arrives.
        """
        if not self._hold_events:
            self.emit(event, *args)
            return
        if event == "error" and not self._events.get(event):
            self._loop.call_later(1.0, self._report_unclaimed, args[0])
        self._emit_kept(event, *args)

    def _report_unclaimed(self, error: BaseException) -> None:
        held = self._held
        if held is not None and any(e == "error" and a[0] is error for e, a in held):
            report("unhandled 'error' event on WebSocket %s: %s", self._url, error, log=logger)

    def _going_away(self) -> None:
        """SIGINT/SIGTERM in a script: close with 1001 (going away)."""
        self._close_now(1001, "")

    def _opened(self) -> None:
        """The opening handshake finished (client side)."""
        self._ready_state = OPEN
        self._emit_event("open")

    # -- DOM-style listeners --------------------------------------------------------

    def add_event_listener(self, type: str, listener: Callable[[Any], Any], *, once: bool = False) -> None:
        """Browser-style listener: called with one event object (``MessageEvent``, ``CloseEvent``...)."""
        def dom_listener(*args: Any) -> Any:
            return listener(_dom_event(self, type, args))

        dom_listener.__dom_listener__ = listener  # type: ignore[attr-defined]
        if once:
            self.once(type, dom_listener)
        else:
            self.on(type, dom_listener)

    def remove_event_listener(self, type: str, listener: Callable[[Any], Any]) -> None:
        """Remove a listener added with ``add_event_listener``."""
        for registered in list(self._events.get(type, {})):
            if getattr(registered, "__dom_listener__", None) is listener:
                self.remove_listener(type, registered)
                return

    # -- JavaScript spellings (the EventEmitter ones come from EventEmitter) --------------

    readyState = ready_state
    bufferedAmount = buffered_amount
    remoteAddress = remote_address
    isPaused = is_paused
    addEventListener = add_event_listener
    removeEventListener = remove_event_listener

    def __repr__(self) -> str:
        side = "server" if self._is_server else "client"
        return f"<WebSocket {side} {self._url} {_STATE_NAMES[self._ready_state]}>"


def _dom_event(target: WebSocket, type: str, args: tuple) -> Any:
    if type == "message":
        return args[0]
    if type == "close":
        code, reason = args[0], args[1]
        return CloseEvent(code, reason, code != 1006, target)
    if type == "error":
        return ErrorEvent(args[0], target)
    return Event(type, target)


def _describe_parser_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if type(exc).__name__ == "PayloadTooBig":
        return f"max payload size exceeded: {text}"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8: {exc.reason}"
    return text

