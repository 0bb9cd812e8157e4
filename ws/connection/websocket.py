"""``WebSocket``: one WebSocket connection, client or server side, as an EventEmitter.

The connection is an ``asyncio.BufferedProtocol``-driven state machine.  It
composes the Sans-I/O wire state: a ``FrameReader`` (``ws/protocol/reader.py``)
parses the common frames and the fragments of uncompressed messages, and
hands the rest to ``websockets``' protocol object; its ``Assembler`` joins
fragments, those it parses and those that object returns; a
``FrameWriter`` queues outgoing frames.  Messages are dispatched to
listeners from the read callback: no task, future or thread per connection
or per message.  Everything written while one batch of input is handled
(echoes, pongs, close frames) leaves in a single ``transport.write``.

Public methods are safe to call from any thread: off the loop thread they
hop onto it with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
from asyncio import selector_events as _selector_events
from threading import get_ident as _get_ident
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any, Callable, Container, Iterable, Mapping, Protocol

from websockets.frames import Opcode
from websockets.http11 import Response

from ..protocol._websockets import Client as _ClientProtocol, LazyServer as _LazyServer, Server as _ServerProtocol
from ..protocol.assembler import MessageError
from ..protocol.handshake import DEFAULT_MAX_PAYLOAD_DEFLATE
from ..protocol.reader import ONE_SMALL_MAX, READ_AHEAD, SHORT_READ, FrameReader, unfinished_token
from ..protocol.writer import BINARY_HEADS, TEXT_HEADS, FrameWriter
from .._runtime import loop as _loop
from .._runtime.budget import SendBudget
from .._runtime.emitter import MAX_HELD_EVENTS, EventEmitter, adapt_arity, direct, report
from .._runtime.flow import FlowGate
from .._runtime.log import protocol_cause, report_event
from .._runtime.rate import MessageRate, RatePolicy, rate_policy
from .dom import EventTarget
from .pull import IterationMixin
from . import sent as _sent
from .._runtime.reads import kept_budget, plain_reads, read_buffer
from .._runtime.segments import hold_for_fin, send_fin
from .._runtime.transports import untangle
from ..events import BINARY, TEXT, MessageEvent, ReadyState
from ..exceptions import ConnectionClosed, HandshakeError, NotOpenError, ProtocolError, WebSocketError, describe

if TYPE_CHECKING:  # pragma: no cover
    from ..request import Request
    from ..server import WebSocketServer
    from .client import ClientConfig

__all__ = ["WebSocket"]

logger = logging.getLogger("ws.websocket")

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PING = Opcode.PING
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE
#: ``send`` asks "am I on the loop?" by thread id first where asyncio's answer costs a system call.
_IDS_FIRST = _loop.GETPID_IN_RUNNING_LOOP
_new_object = object.__new__
#: WebSocket._read_notes: the protocol object read bytes in this read callback; reading paused with input kept.
_FED = 1
_KEPT = 2
_NO_ARRAY = bytearray()  # a _Stream's ``array`` until its first read (shared: never written to)

CONNECTING = ReadyState.CONNECTING
OPEN = ReadyState.OPEN
CLOSING = ReadyState.CLOSING
CLOSED = ReadyState.CLOSED

#: Node's ``ws`` default for ``maxPayload``.
DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024
#: Fragments per message; bounds the per-frame work an attacker can cause.
DEFAULT_MAX_FRAGMENTS = 1 << 17
DEFAULT_CLOSE_TIMEOUT = 10.0
#: Write buffer high-water mark: above it ``send`` keeps queueing but
#: ``buffered_amount`` grows and ``'drain'`` fires once it falls below the low one.
DEFAULT_HIGH_WATER = 1 << 20
DEFAULT_LOW_WATER = 1 << 18
#: Hard cap on unsent bytes: a ``send`` while more than this waits (the peer
#: does not read) fails the connection instead of growing memory without bound.
DEFAULT_MAX_BUFFERED_AMOUNT = 64 << 20
#: ``async def`` listeners of one socket running at once before it stops
#: reading; it reads again when half of them have finished.
MAX_PENDING_LISTENERS = 32
#: Bytes of automatic replies (pongs, a close) a socket above its high-water
#: mark queues before it stops reading from that peer (``_replies_blocked``).
REPLY_ALLOWANCE = 64 << 10
#: Replies of one batch written as one joined copy up to this size unless the
#: last piece is a large payload (``_WRITE_ALONE``, a test cheaper than looking
#: at every piece); otherwise small frames are joined in runs of this size and
#: large payloads kept apart, and all go in one vectored write (``_write_vector``).
_WRITE_RUN = 65536
_WRITE_ALONE = 16384
#: asyncio's plain TCP transport, whose socket ``_write_vector`` may write to
#: itself while the transport holds nothing (``writev``; Unix only).
_SOCKET_TRANSPORT: Any = getattr(_selector_events, "_SelectorSocketTransport", None) if hasattr(os, "writev") else None
#: Pieces per ``writev`` (Linux's ``UIO_MAXIOV``; the rest go through the transport).
_IOV_MAX = 1024


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


class MessageLink(Protocol):
    """The seam for a ``WebSocket`` whose host does the framing (ASGI).

    Such a socket has no transport and no protocol object: everything above
    the wire (events, ``send`` argument rules, thread hopping, pull-style
    reads, close-code checks) is the ``WebSocket``'s, and where it would
    write frames it calls its link (``sock._link``) instead.  Received
    messages come back through ``sock._deliver(kind, data)``, the end
    through ``sock._finish(code, reason)``.
    """

    def send(self, is_text: bool, payload: bytes, fin: bool) -> None:
        """One message, or one fragment of it (``fin=False``: more follow)."""

    def control(self, opcode: Opcode, payload: bytes) -> None:
        """A ping or pong asked for by the application."""

    def close(self, code: int | None, reason: str) -> None:
        """Start the closing handshake (the socket is CLOSING)."""

    def abort(self) -> None:
        """End the connection now, without a handshake."""

    def hold_reading(self, held: bool) -> None:
        """Stop (or go on) taking messages from the host."""

    @property
    def buffered(self) -> int:
        """Bytes given to :meth:`send` that the host has not taken yet."""


class _ToSocket:
    """What the transport tells a ``WebSocket``'s protocols besides its reads: forwarded to the socket."""

    __slots__ = ()
    ws: "WebSocket"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.ws._connection_made(transport)  # type: ignore[arg-type]

    def eof_received(self) -> bool | None:
        return self.ws._eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws._connection_lost(exc)

    def pause_writing(self) -> None:
        self.ws._writing_blocked()

    def resume_writing(self) -> None:
        self.ws._writing_resumed()


class _Stream(_ToSocket, asyncio.BufferedProtocol):
    """The transport-facing half of a ``WebSocket``: forwards asyncio callbacks.

    A ``BufferedProtocol``: reads land in a buffer shared by the thread's
    sockets, which the reader parses in place, except while a large frame
    is coming in, which is read straight into a buffer of its own size
    (``FrameReader.buffer``); right after one, a read takes only ``SHORT_READ``.
    Once the thread's budget of kept bytes is spent (``KeptBudget``), a read
    takes only what ``FrameReader.read_size`` allows: the rest of the frame
    in progress and ``READ_AHEAD`` beyond, all that a hold can leave kept.
    """

    __slots__ = ("ws", "reader", "shared", "array", "budget")

    def __init__(self, ws: "WebSocket") -> None:
        self.ws = ws
        self.reader = ws._reader
        #: The loop thread's shared buffer, found on the first read (a connection stays on one thread).
        self.shared: memoryview | None = None
        self.array = _NO_ARRAY  # the bytearray under ``shared`` (found with it)
        self.budget = kept_budget()

    def get_buffer(self, sizehint: int) -> memoryview:
        reader = self.reader
        if reader.frame is not None:
            return reader.buffer()  # type: ignore[return-value]
        # Once per read: attribute reads, no call for the buffer (a small message's read is short).
        view = self.shared
        if view is None:
            reader.buffer()  # tells the reader that reads come through here (a large frame may come straight in)
            view = self.shared = read_buffer()
            self.array = view.obj  # type: ignore[assignment]
            self.budget = kept_budget()  # (this thread's: __init__ may have run on another)
        if self.budget.spent:
            view = view[: reader.read_size()]  # paused peers keep much already: bounded reads
        elif reader.spare is not None:  # (reader.short_read without the property's call)
            view = view[:SHORT_READ]
        return view

    def buffer_updated(self, nbytes: int) -> None:
        # The transport read into what get_buffer() returned just before, with no Python code in
        # between: the large frame's buffer while the reader has one, else a start of the shared one.
        if self.reader.frame is None:
            if nbytes < ONE_SMALL_MAX:
                # A read that may be one small frame (a strict ping-pong): a bytearray slice
                # costs less than a view and the reader's bytes() of it.
                self.ws._data_received(self.array[:nbytes])
                return
            # The reader parses the shared buffer in place (it copies what it
            # keeps: payloads by unmasking, an incomplete tail).
            self.ws._data_received(self.shared[:nbytes])  # type: ignore[index]
            return
        frame = self.reader.filled(nbytes)
        if frame is not None:
            ws = self.ws
            ws._data_received(frame)
            if ws._ready_state is not CLOSED:
                # Delivered (unmasked into new bytes): the buffer may take the next large frame.
                self.reader.recycle(frame)

    def data_received(self, data: bytes) -> None:
        # Transports that do not use get_buffer() (never with a large frame pending).
        self.ws._data_received(data)


#: On uvloop's TCP transports (``plain_reads``), ``SMALL_RUN`` buffered reads in a
#: row shorter than ``SMALL_READ`` move a socket back to plain reads (a plain read
#: of ``LONG_READ`` or more moves it to buffered ones: uvloop copies every plain read).
SMALL_READ = 16 * 1024
SMALL_RUN = 8


class _PlainStream(_ToSocket, asyncio.Protocol):
    """A server socket's reads on uvloop's TCP transports while they are small: plain ``data_received``.

    uvloop hands a plain protocol a ``bytes`` copy of each read, which costs
    less for a small message than a ``BufferedProtocol``'s two calls, buffer
    export and view (``plain_reads``).  ``data_received`` is the socket's
    own ``_data_received`` (no call in between).  A read of ``LONG_READ``
    bytes or more (``FrameReader.long_read``) gives the transport to a
    buffered twin, ``bulk`` (made then), which gives it back once reads are
    small again (``_SwitchingStream``).  Both forward everything else to the socket.
    """

    __slots__ = ("ws", "bulk", "data_received")

    def __init__(self, ws: "WebSocket") -> None:
        self.ws = ws
        self.bulk: _SwitchingStream | None = None
        self.data_received = ws._data_received  # type: ignore[method-assign]  # (a slot: shadows asyncio.Protocol's method)
        ws._reader.long_read = self.to_bulk

    def connection_lost(self, exc: Exception | None) -> None:
        self.bulk = None  # (the twin refers back: without the pair's cycle the socket goes by reference counting)
        self.ws._connection_lost(exc)

    def to_bulk(self) -> None:
        """A long read: it is parsed as it is, the next go through buffers of ours."""
        bulk = self.bulk
        if bulk is None:
            bulk = self.bulk = _SwitchingStream(self.ws, self)
        bulk.take_over()


class _SwitchingStream(_Stream):
    """The buffered twin of a ``_PlainStream``: long reads go through our buffers, as on asyncio.

    It reads while reads are long (a stream of large messages, a large
    frame straight into its own buffer) and hands the transport back to
    ``plain`` after ``SMALL_RUN`` reads in a row shorter than ``SMALL_READ``
    with no large frame in progress.  One ``set_protocol`` per switch.
    """

    __slots__ = ("plain", "small")

    def __init__(self, ws: "WebSocket", plain: _PlainStream) -> None:
        super().__init__(ws)
        self.plain = plain
        self.small = 0

    def buffer_updated(self, nbytes: int) -> None:
        _Stream.buffer_updated(self, nbytes)
        if nbytes >= SMALL_READ:
            self.small = 0
            return
        self.small += 1
        if self.small >= SMALL_RUN:
            self.small = 0
            self._switch(self, self.plain)

    def connection_lost(self, exc: Exception | None) -> None:
        self.plain.bulk = None  # (see _PlainStream.connection_lost)
        self.ws._connection_lost(exc)

    def take_over(self) -> None:
        """From ``plain``: the next reads go through our buffers."""
        self.small = 0
        self.shared = None  # get_buffer tells the reader again that a large frame may come straight in
        self._switch(self.plain, self)

    def _switch(self, current: asyncio.BaseProtocol, new: asyncio.BaseProtocol) -> None:
        transport = self.ws._transport
        if transport is None or transport.is_closing() or transport.get_protocol() is not current:
            return  # closing, or handed to someone else meanwhile
        reader = self.reader
        if new is self:
            reader.long_read = None
        else:
            if reader.frame is not None:
                return  # a large frame is being read into its buffer: only get_buffer can go on with it
            reader.direct_reads = False  # plain reads never go straight into a frame's buffer
            reader.long_read = self.plain.to_bulk
        transport.set_protocol(new)


class _RatedStream(_Stream):
    """The ``_Stream`` of a socket with a rate limit: it tells the limit when each read came.

    One clock read per read, not per message; a socket without a limit
    gets the plain ``_Stream`` and pays nothing.
    """

    __slots__ = ("rate",)

    def __init__(self, ws: "WebSocket", rate: MessageRate) -> None:
        super().__init__(ws)
        self.rate = rate

    def buffer_updated(self, nbytes: int) -> None:
        self.rate.now = _monotonic()
        _Stream.buffer_updated(self, nbytes)

    def data_received(self, data: bytes) -> None:
        self.rate.now = _monotonic()
        _Stream.data_received(self, data)


class _ServerAlias:
    """``WebSocket.Server``, Node's ``new WebSocket.Server({port})``: the ``WebSocketServer`` class.

    That class lives a layer above this one (``ws.server``), so the alias
    finds it through the package's own lazy table when it is read, and
    ``from ws import WebSocket`` loads no server code until then.  Type
    checkers read the return type.
    """

    def __get__(self, instance: object, owner: type | None = None) -> "type[WebSocketServer]":
        import ws

        return ws.WebSocketServer


class WebSocket(IterationMixin, EventTarget):
    """A WebSocket connection with the JavaScript API.

    As a client: ``WebSocket(url, protocols=None, options=None, **options)``
    (Node's shapes: ``WebSocket(url, {...})`` and ``WebSocket(url, protocols,
    {...})``; keywords work beside them) connects in the background and emits ``'open'``, ``'message'``, ``'close'``, ``'error'``,
    ``'ping'``, ``'pong'``, ``'unexpected-response'``, ``'drain'``,
    ``'redirect'`` ``(url, headers)`` (with ``follow_redirects``).  On the
    server side ``WebSocketServer`` creates them and hands them to
    ``'connection'`` listeners.  A ``'message'`` listener requiring two
    arguments gets Node's ``(data, is_binary)``, any other the
    ``MessageEvent`` (``ws.connection.dom.adapt_message``); the browser's
    ``onmessage = fn``... and ``add_event_listener`` work too (``dom.py``).

    Options (snake_case; the camelCase spellings work too): ``headers``,
    ``origin``, ``handshake_timeout``, ``max_payload``, ``max_fragments``,
    ``per_message_deflate``, ``ping_interval``, ``ping_timeout``,
    ``close_timeout``, ``ssl``, ``proxy``, ``follow_redirects``,
    ``max_redirects``, ``high_water_mark``, ``low_water_mark``,
    ``max_buffered_amount``, ``message_timeout``, ``rate_limit``,
    ``byte_rate_limit``, ``rate_limit_action`` (see docs/reliability.md for every limit,
    docs/security.md for the rate limits; docs/interop.md for ``ssl``, ``proxy`` and redirects).
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
    # kernel's sends, which evict them from the caches, so fewer cache lines
    # per socket make a delivery cheaper (docs/performance-log.md has the
    # measurement).  _setup() sets every one of them, so none is ever read
    # unset.  The second line holds colder state, there only to keep the
    # ``__dict__`` small: CPython (3.11+) keeps up to 30 attribute names of a
    # class's instances as shared-key values; past 30 every socket gets a
    # dict of its own, and each method call on a socket (``sock.send``, the
    # read callback's) takes a slower path.  The hardening of issue 17 added
    # the seven below to the 29 names there were: +5% CPU per message for
    # 32 B echoes (1,000 a read, same-process interleaved micro-benchmark).
    # Users' own attributes (``sock.is_alive = True``) count too.
    __slots__ = (
        "_ready_state", "_proto", "_transport", "_lean", "_dispatch_thread", "_fragmenting",
        "_writing_paused", "_writer", "_reader", "_read_notes", "_is_server", "_on_message",
        "_held", "_flush_scheduled", "_hops",
        "_read_scheduled", "_frames_in", "_unfinished", "_budget", "_replies_held", "_reply_bytes", "_keepalive_payload",
        "_told_not_open", "_rate", "_kept_over", "_quick",
    )
    _ready_state: ReadyState
    _url: str
    #: Node's send callbacks waiting for their frames to leave; made by the first one (most sockets never have any).
    _send_callbacks: "_sent.SendCallbacks | None" = None
    _connector: "ClientConfig | None"
    _proto: "_ClientProtocol | _ServerProtocol | None"
    _transport: asyncio.Transport | None

    def __init__(
        self,
        url: Any = None,
        protocols: str | Iterable[str] | Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from . import client as _client  # the client half lives in its own module

        super().__init__()
        # Node's shapes: WebSocket(url, options) and WebSocket(url, protocols, options), keywords beside.
        protocols, options = _client.client_arguments(protocols, options, kwargs)
        target = _client.parse_url(url)
        offered = _client.parse_protocols(protocols)
        config = _client.ClientConfig(target, offered, options)
        check_byte_limit("max_buffered_amount", options.get("max_buffered_amount"))
        rate = rate_policy(options)  # checked before anything starts
        self._setup(_loop.bind(), is_server=False, options=options, rate=rate)
        config.loop = self._loop
        self._url = url
        self._connector = config
        self._hold_events = not _loop.in_loop(self._loop)
        self._ref.hold()
        if _loop.is_reactor(self._loop):
            # A script's client goes away with 1001 on SIGINT/SIGTERM, as servers do.
            _loop.reactor.on_shutdown(self._going_away)
        if self._hold_events:
            self._loop.call_soon_threadsafe(config.start, self)
        else:
            self._loop.call_soon(config.start, self)

    # -- construction -----------------------------------------------------------

    def _setup(
        self, loop: asyncio.AbstractEventLoop, *, is_server: bool, options: dict[str, Any], rate: RatePolicy | None = None
    ) -> None:
        """State shared by client and server sockets (no I/O); ``rate``: the checked rate limits (``rate_policy``)."""
        self._loop = loop
        self._ref = _loop.Ref(loop)
        self._is_server = is_server
        self._ready_state = CONNECTING
        self._proto = None
        self._transport = None
        self._url = ""
        self._subprotocol = ""
        self._extensions = ""
        self._remote_address: str | None = None
        self._request: Request | None = None
        self._link: MessageLink | None = None  # a host that frames for us (ASGI); see MessageLink
        # The client's connection attempt (ws/connection/client.py); None on the server side.
        self._connector = None
        #: Called with this socket once it is closed (its server forgets it, a heartbeat drops it).
        # Called with the socket once it is gone; a tuple of callables bound once by their owners
        # (the server, its heartbeat), so a socket holds references, not objects of its own.
        self._finish_hooks: tuple[Callable[["WebSocket"], object], ...] = ()
        self._held = None
        self._hold_events = False
        self.max_payload: int | None = options.get("max_payload", DEFAULT_MAX_PAYLOAD)
        self.max_fragments: int | None = options.get("max_fragments", DEFAULT_MAX_FRAGMENTS)
        self.max_buffered_amount: int | None = options.get("max_buffered_amount", DEFAULT_MAX_BUFFERED_AMOUNT)
        # Receive state.
        # The thread running our read callback (listeners batch their sends
        # meanwhile); None outside one.
        self._dispatch_thread: int | None = None
        # Frames are read and written without the protocol object (OPEN, no
        # extension, no debug log); while OPEN the protocol is OPEN too.
        self._lean = False
        # A listener's send may queue its frame in the writer itself (see _update_quick).
        self._quick = False
        # Rate limits (docs/security.md): the reader delivers through their check; without any, straight to _deliver.
        self._rate: MessageRate | None = None
        deliver: Callable[[int, Any], object] = self._deliver
        if rate is not None:
            self._rate = MessageRate(rate, loop, deliver, self._deliver_held, self._rate_exceeded, self._rate_held)
            deliver = self._rate.deliver
        self._reader = FrameReader(
            server=is_server, limit=self.max_payload, deliver=deliver, fail=self._fail, feed=self._feed,
            more=self._read_later, max_fragments=self.max_fragments,
        )
        # What the read callback sees to once the reader returns (one test a read while none):
        # _FED, the protocol object read bytes (its verdicts, then a write: _after_receive);
        # _KEPT, reading paused during the read (count what the reader kept once it returns).
        self._read_notes = 0
        self._read_scheduled = False  # the rest of a read waits for the next loop turn (_read_on)
        self._kept_over = 0  # what the reader keeps beyond READ_AHEAD, counted in the thread's KeptBudget
        self._frames_in = 0  # frames the protocol object parsed (tells its incomplete frames apart)
        # message_timeout: (message token, when its clock started, last sweep)
        self._unfinished: tuple[int, float, float] | None = None
        self._error_emitted = False
        self._told_not_open = False  # send() while not OPEN, nobody listening for 'error': said once
        self._failed_with: tuple[int, str] | None = None
        self._close_emitted = False
        self._closed_with: tuple[int, str] | None = None  # the code and reason 'close' carried
        self._paused = False
        # Send state.
        self._writer = FrameWriter(mask=not is_server)
        self._fragmenting = False  # a message sent with fin=False is still open
        self._flush_scheduled = False  # a _scheduled_flush is on its way
        self._writing_paused = False
        self._queued_bytes = 0  # bytes of sends still hopping over from other threads
        self._hops = 0  # those sends: while any is on its way, a send on the loop queues behind it
        # The unsent-bytes budget this socket reports to above its high-water mark (its server's).
        self._budget: SendBudget | None = None
        # Automatic replies (pongs, a close) wait above the high-water mark: reading stops until it drains.
        self._replies_held = False
        self._reply_bytes = 0  # replies queued since the buffer went above the high-water mark
        # Timers.
        self._close_timer: asyncio.TimerHandle | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._awaiting_pong_since: float | None = None
        self._keepalive_payload: bytes | None = None  # only a pong that echoes it answers the keepalive ping
        self._listener_tasks = 0  # async listeners still running
        self._backlog: FlowGate | None = None  # pauses reading when they pile up (made by the first one)
        self.close_timeout: float = options.get("close_timeout", DEFAULT_CLOSE_TIMEOUT)
        self._on_message: Callable[[MessageEvent], Any] | None = None

    def _when_finished(self, hook: Callable[["WebSocket"], object]) -> None:
        """Call ``hook(self)`` once, when the connection is gone (after ``'close'`` is decided)."""
        self._finish_hooks += (hook,)

    def _stream(self, transport: asyncio.BaseTransport | None = None) -> asyncio.BaseProtocol:
        """A new asyncio protocol feeding this socket (client.py connects with it).

        Given the ``transport`` it will read (a server socket), plain reads
        where they cost less (``plain_reads``: uvloop's TCP transports).
        """
        rate = self._rate
        if rate is not None:
            return _RatedStream(self, rate)
        if transport is not None and plain_reads(transport):
            return _PlainStream(self)
        return _Stream(self)

    @classmethod
    def _accepted(
        cls,
        loop: asyncio.AbstractEventLoop,
        proto: _ServerProtocol,
        transport: asyncio.Transport,
        request: "Request",
        on_finish: Callable[["WebSocket"], object] | None,
        options: dict[str, Any],
        extensions: str = "",
        budget: SendBudget | None = None,
        hold_events: bool = False,
    ) -> "WebSocket":
        """A server-side socket whose handshake just completed; ``on_finish(socket)`` once it is closed.

        ``extensions`` is the ``Sec-WebSocket-Extensions`` value of the 101;
        whatever ``proto`` still holds to send (the 101 itself, when it wrote
        it) is written here.  ``budget`` is the server's budget of unsent bytes.
        ``hold_events``: its events wait for listeners attached later, as a
        script-made client's (its ``'connection'`` waits for a listener too).
        """
        self = cls.__new__(cls)
        EventEmitter.__init__(self)
        self._setup(loop, is_server=True, options=options, rate=options.get("rate_policy"))
        self._hold_events = hold_events
        self._budget = budget
        self._proto = proto
        if isinstance(proto, _LazyServer):  # built on first use (a lean handshake's): then this socket holds it
            proto.when_built(self._protocol_built)
        self._request = request
        if on_finish is not None:
            self._finish_hooks += (on_finish,)
        self._url = request.url
        self._subprotocol = proto.subprotocol or ""
        self._extensions = extensions
        self._remote_address = request.remote_address
        self._ready_state = OPEN
        self._start_lean(proto)
        self._ref.hold()
        transport.set_protocol(self._stream(transport))
        self._transport = transport
        self._set_write_limits(options)
        self._flush()
        return self

    def _protocol_built(self, proto: _ServerProtocol) -> None:
        self._proto = proto

    def _start_lean(self, proto: "_ClientProtocol | _ServerProtocol") -> None:
        """OPEN: common frames skip the protocol object, unless compressed or logged frame by frame."""
        if not proto.extensions and not proto.debug:
            self._lean = True
            self._reader.limit = proto.message_limit()
            self._reader.start()
            self._update_quick()

    def _update_quick(self) -> None:
        """Keep ``_quick`` true to the state: ``send`` from a listener then tests one attribute, not six.

        ``_quick``: lean and OPEN (so whatever the protocol object made is in
        the writer already), no send from another thread on its way, writes
        not paused, no fragmented message open, and not a subclass (whose
        ``_send_frame`` may do more).  Called wherever one of these changes.
        """
        self._quick = (
            self._lean and self._ready_state is OPEN and not self._hops and not self._writing_paused
            and not self._fragmenting and type(self) is WebSocket
        )

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
        return self._subprotocol

    @property
    def extensions(self) -> str:
        """The negotiated extensions, as the ``Sec-WebSocket-Extensions`` value or ``''``."""
        return self._extensions

    @property
    def ready_state(self) -> ReadyState:
        """``CONNECTING`` (0), ``OPEN`` (1), ``CLOSING`` (2) or ``CLOSED`` (3)."""
        return self._ready_state

    @property
    def buffered_amount(self) -> int:
        """Bytes accepted by ``send`` but not yet handed to the kernel."""
        transport = self._transport
        pending = self._queued_bytes + self._writer.size
        if transport is not None and not transport.is_closing():
            pending += transport.get_write_buffer_size()
        elif self._link is not None:
            pending += self._link.buffered
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
        self,
        data: str | bytes | bytearray | memoryview,
        options: Mapping[str, Any] | Callable[..., Any] | None = None,
        callback: Callable[..., Any] | None = None,
        *,
        binary: bool | None = None,
        compress: bool | None = None,
        fin: bool = True,
    ) -> None:
        """Send one message: ``str`` as a text frame, bytes-like as a binary frame.

        Non-blocking.  While the socket is not OPEN nothing is sent and an
        ``'error'`` (``NotOpenError``) is emitted instead.  ``fin=False``
        sends a fragment, as Node's ``send(data, {fin: false})``: every
        following ``send`` continues that message until one has ``fin=True``.

        Node's shapes work too: ``send(data, {'binary': ..., 'compress':
        ..., 'fin': ...}, callback)`` and ``send(data, callback)``.
        ``callback(error)`` runs once the frame has left for the kernel
        (``None``), or with the error that stopped it, which is then not
        also an ``'error'`` event (``ws/connection/sent.py`` says when).
        ``compress=False`` sends this message uncompressed on a connection
        with permessage-deflate.
        """
        if options is not None or callback is not None or compress is not None:
            self._send_shaped(data, options, callback, binary, compress, fin)
            return
        if isinstance(data, str):
            payload: Any = data.encode()
            is_text = not binary
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = data
            is_text = binary is False
        else:
            is_text, payload = self._payload(data, binary)
        dispatching = self._dispatch_thread
        if dispatching is None:
            on_loop = _loop.in_loop(self._loop)
        else:
            # Our read callback runs, on the loop's thread: this is it when the ids match, with no
            # need to ask asyncio, whose _get_running_loop() costs a getpid() system call before
            # Python 3.12 (from 3.12 on, asking is the cheaper).
            on_loop = dispatching == _get_ident() if _IDS_FIRST else _loop._get_running_loop() is self._loop
            if on_loop and fin and self._quick:
                # A listener's reply, the usual echo: _send_frame's lean case with its checks
                # inline, one call fewer per message; the read callback writes it when it ends.
                writer = self._writer
                n = len(payload)
                if n < 126 and not writer.mask:  # writer.add's first case, inline: one call fewer again
                    writer.pending.append((TEXT_HEADS if is_text else BINARY_HEADS)[n] + payload)
                else:
                    writer.add(is_text, payload)
                return
        if on_loop and not self._hops:
            self._send_frame(is_text, payload, fin)
        else:
            if not isinstance(payload, bytes):
                payload = bytes(payload)  # the caller may reuse its buffer
            self._queued_bytes += len(payload)
            self._hops += 1
            self._quick = False
            if on_loop:  # sends from another thread are on their way: this one goes after them, in order
                self._loop.call_soon(self._send_from_thread, is_text, payload, fin)
            else:
                _loop.call(self._loop, self._send_from_thread, is_text, payload, fin)

    @staticmethod
    def _payload(data: Any, binary: bool | None) -> tuple[bool, Any]:
        """``(is_text, payload)`` for ``data``; ``send``'s fast path inlines the ``str`` and bytes cases."""
        if isinstance(data, str):
            return not binary, data.encode()
        if isinstance(data, (bytes, bytearray, memoryview)):
            return binary is False, data
        if isinstance(data, MessageEvent):  # send(event) sends its data, as it came: an echo is sock.send(msg)
            data = data.data
            return (not binary, data.encode()) if isinstance(data, str) else (binary is False, data)
        raise TypeError(f"data must be str or bytes-like, got {type(data).__name__}")

    def _send_shaped(
        self, data: Any, options: Any, callback: Any, binary: bool | None, compress: bool | None, fin: bool
    ) -> None:
        """``send`` with Node's options dict, a callback or ``compress=``: read them, then send on the loop."""
        binary, compress, fin, callback = _sent.send_arguments(options, callback, binary, compress, fin)
        is_text, payload = self._payload(data, binary)
        on_loop = _loop._get_running_loop() is self._loop
        if on_loop and not self._hops:
            self._send_tracked(is_text, payload, fin, compress, callback, False)
            return
        payload = bytes(payload)  # the caller may reuse its buffer
        self._queued_bytes += len(payload)
        self._hops += 1  # in order with the other sends on their way, as send()'s
        self._quick = False
        if on_loop:
            self._loop.call_soon(self._send_tracked, is_text, payload, fin, compress, callback, True)
        else:
            _loop.call(self._loop, self._send_tracked, is_text, payload, fin, compress, callback, True)

    def _send_tracked(
        self, is_text: bool, payload: Any, fin: bool, compress: bool | None,
        callback: Callable[..., Any] | None, queued: bool,
    ) -> None:
        """On the loop: send, then hand ``callback`` to the socket's ``SendCallbacks``.

        A send that cannot go (not OPEN, or the peer's Close already read)
        tells the callback, not ``'error'``: one report per failure, as Node.
        """
        if queued:
            self._queued_bytes -= len(payload)
            self._hops -= 1
            self._update_quick()
        if callback is None:
            self._send_maybe_compressed(is_text, payload, fin, compress)
            return
        state = self._ready_state
        proto = self._proto
        if state is not OPEN or (proto is not None and not proto.is_open()):
            shown = state if state is not OPEN else CLOSING  # OPEN, but the peer's Close is read
            self._loop.call_soon(self._call_back, callback, NotOpenError(shown, shown.name))
            return
        self._send_maybe_compressed(is_text, payload, fin, compress)
        callbacks = self._send_callbacks
        if callbacks is None:
            callbacks = self._send_callbacks = _sent.SendCallbacks(self, self._loop)
            self._when_finished(self._settle_send_callbacks)
        callbacks.add(callback)

    def _send_maybe_compressed(self, is_text: bool, payload: Any, fin: bool, compress: bool | None) -> None:
        """``compress=False`` on a compressed connection: a whole message goes out as it is (RSV1 clear)."""
        proto = self._proto
        if (
            compress is not False or not fin or self._fragmenting or self._ready_state is not OPEN
            or proto is None or not proto.extensions or not proto.is_open()
        ):
            self._send_frame(is_text, payload, fin)
            return
        self._send_uncompressed(is_text, payload, proto)

    def _send_uncompressed(self, is_text: bool, payload: Any, proto: "_ClientProtocol | _ServerProtocol") -> None:
        """A whole message sent as it is on a compressed connection (``compress=False``; OPEN, no fragment open)."""
        if self._writing_paused and self._over_buffer_limit():
            return
        # permessage-deflate lets any message go uncompressed (RFC 7692 6.1); the compressor's
        # context only ever sees the compressed ones.  Behind what the protocol object queued.
        self._take_protocol_output(proto)
        self._writer.add(is_text, payload)
        if self._dispatch_thread is None:
            self._flush()

    def _unwritten(self) -> int | None:
        """Bytes sent on the loop that the kernel does not have yet; ``None`` once the transport is closing."""
        proto = self._proto
        pending = self._writer.size + (1 if proto is not None and proto.has_pending() else 0)
        transport = self._transport
        if transport is not None:
            if transport.is_closing():
                return None
            return pending + transport.get_write_buffer_size()
        if self._link is not None:
            return pending + self._link.buffered
        return None

    def _settle_send_callbacks(self, _socket: "WebSocket") -> None:
        """The connection is gone: callbacks still waiting learn how it ended (a finish hook)."""
        callbacks = self._send_callbacks
        if callbacks is None or not len(callbacks):
            return
        proto = self._proto
        if proto is not None and proto.close_rcvd is not None and proto.close_sent is not None:
            callbacks.finish(None)  # the peer answered our Close, sent after every frame: all read
            return
        code, reason = self._closed_with or (1006, "")
        callbacks.finish(ConnectionClosed(code, reason))

    def _call_back(self, callback: Callable[..., Any], error: BaseException | None) -> None:
        """Call a send callback as a listener: fewer parameters allowed, failures reported, coroutines run."""
        self._emit_run(adapt_arity(callback), (error,), {})

    def _send_from_thread(self, is_text: bool, payload: bytes, fin: bool = True) -> None:
        self._queued_bytes -= len(payload)
        self._hops -= 1
        self._update_quick()
        self._send_frame(is_text, payload, fin)

    def _send_frame(self, is_text: bool, payload: Any, fin: bool = True) -> None:
        if self._ready_state is not OPEN:
            self._not_open("send")
            return
        if self._writing_paused and self._over_buffer_limit():
            return
        if not fin or self._fragmenting:
            self._send_fragment(is_text, payload, fin)
            if self._dispatch_thread is None:
                self._flush()
        elif self._lean:
            # The writer builds the frame (OPEN here implies the protocol is
            # OPEN, and that whatever it made is already in the writer's queue).
            if self._writer.add(is_text, payload):
                if self._dispatch_thread is None:
                    self._flush()
            elif self._dispatch_thread is None and not self._flush_scheduled:
                # Outside a listener (a coroutine, a timer, another thread):
                # the frames sent in one loop turn leave in one write, so a
                # burst costs one system call instead of one per message;
                # but the reply of a task that waited in recv_async() leaves
                # now, without a loop turn for the write (pull.py).
                inbox = self._inbox
                if inbox is not None and inbox.replier is not None and inbox.replying(self._loop):
                    self._flush()
                    return
                self._flush_scheduled = True
                self._loop.call_soon(self._scheduled_flush)
        else:
            proto = self._proto
            if proto is None:
                assert self._link is not None
                self._link.send(is_text, bytes(payload), True)
                return
            if not proto.is_open():
                # The peer's close frame came in the same read as the message this
                # listener answers: too late to send, and not the caller's fault.
                return
            if is_text:
                proto.send_text(payload)
            else:
                proto.send_binary(payload)
            if self._dispatch_thread is None:
                self._flush()

    @staticmethod
    def _broadcast(
        sockets: Iterable["WebSocket"], excluded: Container["WebSocket"], wire: bytes, is_text: bool, payload: bytes
    ) -> int:
        """Deliver one message to many sockets; how many it was sent to.

        ``wire`` is the unmasked frame of ``payload``, built once for all.  The
        loop lives here, beside the fields it reads, so that a delivery costs
        the checks and the write and no call per socket (the kernel's sends
        evict every socket from the caches between two broadcasts).
        """
        count = 0
        for ws in sockets:
            if ws._ready_state is not OPEN or (excluded and ws in excluded):
                continue
            if not ws._lean or ws._dispatch_thread is not None or ws._fragmenting or not ws._is_server:
                # Compressed, debug, inside a listener, or a fragmented message open.  WebSocket's own
                # method: a MeteredWebSocket's would count a message the server counts for the broadcast.
                WebSocket._send_frame(ws, is_text, payload)
            elif ws._writing_paused and ws._over_buffer_limit():
                continue  # a client that does not read is dropped, not fed
            else:
                # Keep order with frames queued for the end of this loop turn
                # (the protocol object's output is in the writer's queue already).
                if ws._writer.pending:
                    ws._flush()
                transport = ws._transport
                if transport is None or transport.is_closing():
                    continue  # failed or dropped in this loop turn: 'close' is on its way
                transport.write(wire)
            count += 1
        return count

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if self._writer.pending:
            self._flush()

    def _send_fragment(self, is_text: bool, payload: Any, fin: bool) -> None:
        """One frame of a fragmented message, through the protocol object.

        Lean frames never go out while a message is open, and the protocol's
        frames join the writer's queue at once, so the order holds.
        """
        proto = self._proto
        if proto is None:
            assert self._link is not None
            self._link.send(is_text, bytes(payload), fin)
            self._fragmenting = not fin
            self._update_quick()
            return
        if not proto.is_open():
            return
        if self._fragmenting:
            proto.send_continuation(payload, fin)
        elif is_text:
            proto.send_text(payload, fin)
        else:
            proto.send_binary(payload, fin)
        self._fragmenting = not fin
        self._update_quick()
        self._take_protocol_output(proto)

    def _take_protocol_output(self, proto: "_ClientProtocol | _ServerProtocol") -> None:
        """Queue the protocol's frames behind the writer's, so that lean frames sent next follow them."""
        if proto.has_pending():
            self._writer.extend(proto.data_to_send())

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
        if self._ready_state is not OPEN:
            self._not_open("ping" if opcode is _PING else "pong")
            return
        proto = self._proto
        if proto is None:
            assert self._link is not None
            self._link.control(opcode, payload)
            return
        if opcode is _PING:
            proto.send_ping(payload)
        else:
            proto.send_pong(payload)
        self._take_protocol_output(proto)
        if self._dispatch_thread is None:
            self._flush()

    # -- keepalive (ws/connection/keepalive.py) -------------------------------------

    def _keepalive_waiting(self, now: float, timeout: float | None) -> bool:
        """Whether a keepalive ping waits for its pong; one that waited ``timeout`` closes with 1011.

        Not while the rate limit holds reading: the pong may wait unread
        behind the messages held back (``_rate_held`` restarts the clock
        when reading goes on).
        """
        since = self._awaiting_pong_since
        if since is None:
            return False
        if timeout is not None and now - since >= timeout and not self._rate_paused():
            self._awaiting_pong_since = None
            self._keepalive_expired()
        return True

    def _keepalive_ping(self, now: float) -> None:
        """Send a keepalive ping (OPEN only); its pong is awaited from ``now``."""
        proto = self._proto
        if self._ready_state is OPEN and proto is not None and proto.is_open():
            self._awaiting_pong_since = now
            # Random: a peer that does not read cannot answer it with pongs of its own making.
            payload = self._keepalive_payload = os.urandom(4)
            proto.send_ping(payload)
            self._take_protocol_output(proto)
            if self._dispatch_thread is None:
                self._flush()

    def _sweep(self, now: float, message_timeout: float | None) -> None:
        """The periodic sweep (``Heartbeat``): free an idle large-frame buffer; end a message too slow to arrive.

        A message still unfinished ``message_timeout`` seconds after the sweep
        first saw it (a fragmented message left open, a frame trickling in)
        fails the connection with 1008 and frees what it holds.  The clock
        stops while we hold reading on our side (``pause()``, the listener
        backlog); it runs on while reading is held because of the peer (its
        replies wait above the high-water mark), so a peer cannot stretch
        the deadline by not reading.
        """
        reader = self._reader
        reader.trim()
        if message_timeout is None:
            return
        token: int | None = None
        if self._ready_state is OPEN:
            token = reader.unfinished() if self._lean else self._protocol_unfinished()
        if token is None:
            self._unfinished = None
            return
        seen = self._unfinished
        if seen is None or seen[0] != token:
            self._unfinished = (token, now, now)
            return
        start = seen[1]
        if self._held_by_us():
            start += now - seen[2]  # held by us since the last sweep: that time does not count
        if now - start >= message_timeout:
            self._unfinished = None
            self._fail(1008, f"message not complete within message_timeout ({message_timeout:g} s)")
            reader.reset()  # the protocol discards the rest: free the message now
        else:
            self._unfinished = (token, start, now)

    def _protocol_unfinished(self) -> int | None:
        """``FrameReader.unfinished()`` when the protocol object parses (compressed connections)."""
        proto = self._proto
        return unfinished_token(self._reader.assembler, self._frames_in, proto is not None and proto.partial_frame())

    def _flush(self) -> None:
        """Hand everything pending (the writer's queue, then the protocol's) to the transport, in one write."""
        proto = self._proto
        if proto is None:
            return
        writer = self._writer
        writes = writer.pending
        if writes:
            writer.pending = []
            # Lean and OPEN, whatever the protocol object made is in the writer already (what it
            # answers to a frame fed, a ping, a fragment: _take_protocol_output; a close leaves OPEN):
            # no call to ask it (about 330 instructions a flush).  _quick says lean and OPEN, and more
            # (a subclass's socket, a MeteredWebSocket, is never _quick: it asks the state itself).
            if not self._quick and (not self._lean or self._ready_state is not OPEN) and proto.has_pending():
                writes += proto.data_to_send()
        elif proto.has_pending():
            writes = proto.data_to_send()
        else:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # closed, or failed or dropped: nothing can leave any more
        if len(writes) == 1:
            piece = writes[0]
            if piece:  # (b"" alone: only the end of the stream)
                transport.write(piece)
                return
        eof = False
        corked = None
        if writes[-1] == b"":
            eof = True
            writes.pop()
            if writes and self._is_server and proto.close_rcvd is not None:
                # The answer to the peer's Close, and TCP's end right after it: in one segment.
                corked = hold_for_fin(transport)
        if len(writes) == 1:
            transport.write(writes[0])
        elif writes:
            if sum(map(len, writes)) <= _WRITE_RUN and len(writes[-1]) <= _WRITE_ALONE:  # (no large payload last)
                transport.write(b"".join(writes))
            else:
                self._write_runs(transport, writes)
        if eof:
            if corked is not None:
                send_fin(transport, corked)
            self._send_eof()

    @staticmethod
    def _write_runs(transport: asyncio.Transport, writes: list[bytes]) -> None:
        """A large payload or more than ``_WRITE_RUN`` bytes: small frames joined in runs, large payloads apart, one write.

        No joined copy of a large payload (nor of its header onto it), and
        one system call for the batch (:meth:`_write_vector`).
        """
        pieces: list[bytes] = []
        run: list[bytes] = []
        size = 0
        for piece in writes:
            n = len(piece)
            if n > _WRITE_ALONE or size + n > _WRITE_RUN:
                if run:
                    pieces.append(run[0] if len(run) == 1 else b"".join(run))
                    run = []
                    size = 0
                if n > _WRITE_ALONE:
                    pieces.append(piece)
                    continue
            run.append(piece)
            size += n
        if run:
            pieces.append(run[0] if len(run) == 1 else b"".join(run))
        WebSocket._write_vector(transport, pieces)

    @staticmethod
    def _write_vector(transport: asyncio.Transport, pieces: list[bytes]) -> None:
        """Write ``pieces`` in order with one system call where the transport allows, copying none of them.

        asyncio's plain TCP transport holding nothing: ``writev`` on its
        socket, as its own ``write`` would ``send`` at once (its
        ``writelines`` joins the pieces into a copy before Python 3.12, and
        from 3.12 on does not pause the protocol at the high-water mark).
        What the kernel does not take, or everything while the transport
        holds bytes, goes to ``transport.write``, which buffers it (a view,
        not a copy, from 3.12 on) or reports the error that stopped
        ``writev``.  Other transports get ``writelines``: uvloop keeps each
        piece as it is (no join) and, while its queue is empty, writes them
        at once with one ``writev`` (``uv_try_write``), the system call
        ours makes, so its socket is left to it; TLS encrypts each and
        sends the records in one write.
        """
        if type(transport) is not _SOCKET_TRANSPORT:
            transport.writelines(pieces)
            return
        if transport.get_write_buffer_size():
            for piece in pieces:  # behind what waits: each piece buffered once (a view from 3.12 on), not joined first
                transport.write(piece)
            return
        try:
            sent = os.writev(transport.get_extra_info("socket").fileno(), pieces[:_IOV_MAX])
        except OSError:  # EAGAIN, or the connection broke: the transport's own write finds out
            sent = 0
        for piece in pieces:
            n = len(piece)
            if sent >= n:
                sent -= n
                continue
            transport.write(memoryview(piece)[sent:] if sent else piece)
            sent = 0
            if transport.is_closing():
                return  # it failed: the rest would only be counted as writes after the loss

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

    def _closing(self) -> None:
        """Leave OPEN: the protocol object reads and writes everything from now on; past a rate limit a message is dropped."""
        self._ready_state = CLOSING
        self._quick = False
        self._stop_reader()
        if self._rate is not None:
            self._rate.stop()

    def _stop_reader(self) -> None:
        """The protocol object reads from now on; a fragmented message the lean reader has open continues there."""
        reader = self._reader
        if reader.lean and reader.in_message and self._proto is not None:
            self._proto.continue_message(reader.message_size)
        reader.stop()

    def _close_now(self, code: int | None, reason: str) -> None:
        state = self._ready_state
        if state is CLOSED:
            return
        if state is CONNECTING:
            self._abort_connecting(WebSocketError("WebSocket was closed before the connection was established"))
            return
        if state is CLOSING:
            return
        proto = self._proto
        if proto is None:
            assert self._link is not None
            self._closing()
            self._link.close(code, reason)
            return
        if proto.is_open():
            proto.send_close(code, reason)
        self._closing()
        self._flush()
        self._expect_close()

    def terminate(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        _loop.call(self._loop, self._terminate_now)

    def _terminate_now(self) -> None:
        if self._ready_state is CLOSED:
            return
        if self._ready_state is CONNECTING and self._transport is None:
            self._abort_connecting(WebSocketError("WebSocket was closed before the connection was established"))
            return
        self._closing()
        if self._transport is not None:
            self._transport.abort()
        elif self._link is not None:
            self._link.abort()

    def _abort_connecting(self, error: BaseException) -> None:
        """Fail a client that has not opened yet: ``'error'`` then ``'close'`` (1006)."""
        if self._connector is not None:
            self._connector.cancel()
        self._emit_error(error)
        if self._transport is not None and not self._transport.is_closing():
            self._closing()
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
        if proto is None or self._ready_state is CLOSED:
            return
        self._emit_error(ProtocolError(message, code))
        self._log_failure(code, message)
        self._failed_with = (code, message)
        if proto.is_open() or proto.is_closing():
            proto.fail(code, message if len(message.encode()) <= 123 else "")
        self._closing()
        self._flush()
        self._expect_close()

    def _note_rate_limited(self) -> None:
        """The connection is closed for exceeding its rate limit: a hook for the metrics (``MeteredWebSocket``).

        Whatever enforces a per-connection rate limit calls it once when it
        closes the connection (1008); it does nothing on a plain socket.
        """

    def _keepalive_expired(self) -> None:
        """No pong within ``ping_timeout``: the peer is gone; close with 1011 at once."""
        proto = self._proto
        if proto is None or self._ready_state is CLOSED:
            return
        self._failed_with = (1011, "keepalive ping timeout")
        if proto.is_open():
            proto.fail(1011, "keepalive ping timeout")
            # Still lean and OPEN here: _flush does not ask the protocol object then, so its Close
            # joins the writer's queue first (behind frames queued for the end of the turn).
            self._take_protocol_output(proto)
            self._flush()
        self._closing()
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

        While held, the reader keeps the frames it has not delivered yet, as
        raw bytes; they are delivered first when reading resumes.
        """
        held = self._reading_held()
        reader = self._reader
        reader.hold(held)
        transport = self._transport
        if transport is None or transport.is_closing():
            if self._link is not None:
                self._link.hold_reading(self._paused or self._rate_paused())  # (a backlog of async listeners never held ASGI reads)
            return
        if held:
            transport.pause_reading()
            self._count_kept()
            self._read_notes |= _KEPT  # (inside a read, the reader keeps the rest once the listener returns)
            return
        if reader.holding:
            if self._dispatch_thread is None:
                self._data_received(b"")
            else:
                self._read_later()  # inside a read callback: on the next turn
            if self._reading_held() or self._read_scheduled:
                return
        elif self._read_scheduled:
            return  # _read_on reads on
        self._count_kept()
        transport.resume_reading()

    def _read_later(self) -> None:
        """The reader parsed its share of one read (``TURN_FRAMES``): the rest waits for the next loop turn.

        Reading pauses meanwhile, so the rest does not grow; other sockets
        are served in between, whatever one peer puts in one read.
        """
        if self._read_scheduled:
            return
        self._read_scheduled = True
        self._read_notes |= _KEPT
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._loop.call_soon(self._read_on)

    def _read_on(self) -> None:
        self._read_scheduled = False
        transport = self._transport
        if transport is None or transport.is_closing() or self._reading_held():
            return  # failed or dropped; or held: _apply_reading reads on when that ends
        if self._reader.holding:
            self._data_received(b"")
        if not self._read_scheduled and not self._reading_held():
            self._count_kept()
            transport.resume_reading()

    def _count_kept(self) -> None:
        """Tell the thread's ``KeptBudget`` what the reader keeps beyond ``READ_AHEAD`` now (reading pauses or resumes).

        While paused connections keep more than the budget, every read on
        the thread is bounded (``_Stream.get_buffer``).
        """
        over = self._reader.kept - READ_AHEAD
        if over < 0:
            over = 0
        if over != self._kept_over:
            kept_budget().add(over - self._kept_over)
            self._kept_over = over

    def _reading_held(self) -> bool:
        """Held by us (``_held_by_us``), or replies waiting above the high-water mark."""
        return self._replies_held or self._held_by_us()

    def _held_by_us(self) -> bool:
        """``pause()``, too many ``async`` listeners still running, or the rate limit (``rate_limit_action='pause'``)."""
        backlog = self._backlog
        return self._paused or (backlog is not None and backlog.paused) or self._rate_paused()

    def _rate_paused(self) -> bool:
        rate = self._rate
        return rate is not None and rate.paused

    # -- rate limits (ws/_runtime/rate.py) ------------------------------------------

    def _rate_exceeded(self, reason: str) -> None:
        """Past a rate limit with ``rate_limit_action='close'``: ``'error'``, close 1008; the message is dropped."""
        self._note_rate_limited()
        if self._proto is not None:
            self._fail(1008, reason)
        elif self._link is not None and self._ready_state is OPEN:  # ASGI: the host frames the close
            self._emit_error(ProtocolError(reason, 1008))
            self._failed_with = (1008, reason)
            self._close_now(1008, reason)

    def _rate_held(self) -> None:
        """The rate limit paused (or ends its pause): reading follows; a keepalive pong's wait restarts when it goes on."""
        if not self._rate_paused() and self._awaiting_pong_since is not None:
            self._awaiting_pong_since = self._loop.time()
        self._apply_reading()

    def _deliver_held(self, kind: int, data: str | bytes) -> None:
        """A message the rate limit held back, now due: delivered unless the connection failed or was dropped meanwhile."""
        transport = self._transport
        if self._ready_state is CLOSED or (transport is not None and transport.is_closing()):
            return
        self._dispatch_thread = _get_ident()  # sends batch as in a read callback
        try:
            self._deliver(kind, data)
        finally:
            self._dispatch_thread = None
        self._flush()

    def _schedule(self, awaitable: Any) -> asyncio.Future[Any] | None:
        """Run an ``async def`` listener; too many at once stop reading (TCP pushes back)."""
        task = super()._schedule(awaitable)
        if task is not None and not task.done():
            backlog = self._backlog
            if backlog is None:
                backlog = self._backlog = FlowGate(
                    MAX_PENDING_LISTENERS, MAX_PENDING_LISTENERS // 2, self._apply_reading, self._apply_reading
                )
            self._listener_tasks += 1
            task.add_done_callback(self._listener_task_done)
            backlog.added(self._listener_tasks)
        return task

    def _listener_task_done(self, task: asyncio.Future[Any]) -> None:
        self._listener_tasks -= 1
        assert self._backlog is not None
        self._backlog.removed(self._listener_tasks)

    def _over_buffer_limit(self) -> bool:
        """More unsent bytes than ``max_buffered_amount``, or than the server's budget allows (the socket holding the most is dropped).

        ``True``: the connection was failed.  Checked only above the
        high-water mark, so it costs nothing while the peer keeps up.  The
        socket is dropped at once: a close frame would wait behind the very
        bytes the peer does not read.
        """
        if self._link is not None:
            return False  # the host (the ASGI server) bounds its own buffers
        pending = self.buffered_amount
        budget = self._budget
        if budget is not None and budget.charge(self, pending):
            return True  # it held the most of the server's unsent bytes: dropped (_over_budget)
        limit = self.max_buffered_amount
        if limit is None or pending <= limit:
            return False
        self._drop_unread(
            f"{pending} bytes wait to be sent, over max_buffered_amount ({limit}): the peer does not read",
            "send buffer limit exceeded", "max_buffered_amount",
        )
        return True

    def _over_budget(self, budget: SendBudget, held: int) -> None:
        """The server's unsent bytes passed its budget and this socket held the most: drop it (1008)."""
        if self._ready_state is not CLOSED:
            self._drop_unread(
                f"the server's unsent bytes passed max_total_buffered_amount ({budget.limit}) and this"
                f" connection held the most ({held} bytes): the peer does not read",
                "server send buffer budget exceeded", "max_total_buffered_amount",
            )

    def _drop_unread(self, message: str, reason: str, limit: str) -> None:
        """Fail a connection whose peer does not read: ``'error'``, abort, ``'close'`` 1008 ``reason``.

        ``limit`` names the option passed (what the metrics count it under).
        """
        self._emit_error(WebSocketError(message))
        self._failed_with = (1008, reason)
        self._closing()
        if self._transport is not None:
            self._transport.abort()

    def _replies_blocked(self, size: int) -> None:
        """The protocol answers the peer (``size`` bytes of pongs, a close) while our writes to it back up.

        What is written on the peer's behalf obeys the bounds of ``send``: past
        them the connection fails (1008).  Past ``REPLY_ALLOWANCE`` bytes of
        replies since the buffer went above the high-water mark, reading
        from that peer stops until the buffer drains below the low-water
        mark (``_writing_resumed``), so TCP pushes back on a peer that sends
        pings and never reads.  The allowance lets the odd keepalive ping of
        a peer that is itself busy writing be answered: two peers that both
        wrote more than they read must not stop reading each other for one
        ping.  Sends alone never stop reading, for the same reason.
        """
        if self._over_buffer_limit() or self._replies_held:
            return
        self._reply_bytes += size
        if self._reply_bytes > REPLY_ALLOWANCE:
            self._replies_held = True
            self._apply_reading()

    def _writing_blocked(self) -> None:
        """Above the high-water mark: ``send`` keeps queueing, ``'drain'`` says when it fell below the low one."""
        self._writing_paused = True
        self._quick = False
        budget = self._budget
        if budget is not None:
            budget.charge(self, self.buffered_amount, shed=False)  # (inside the transport's write: decided later)

    def _writing_resumed(self) -> None:
        self._writing_paused = False
        self._update_quick()
        self._reply_bytes = 0
        if self._budget is not None:
            self._budget.release(self)
        self.emit("drain")
        if self._replies_held:
            self._replies_held = False
            self._apply_reading()

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
        if self._connector is not None:
            self._connector.connection_made(self, transport)

    def _data_received(self, data: Any) -> None:
        proto = self._proto
        if proto is None:
            return
        self._dispatch_thread = _get_ident()
        try:
            if self._ready_state is CONNECTING and self._connector is not None:
                self._receive_handshake(self._connector, data)
            else:
                self._reader.receive(data)
        except Exception as exc:  # a bug of ours: never into the loop
            logger.exception("internal error while receiving")
            self._fail(1011, f"internal error: {exc}")
        finally:
            self._dispatch_thread = None
        if self._read_notes and self._read_noted(proto):
            return
        # Only the reader's own frames: the protocol has nothing new.
        writer = self._writer
        writes = writer.pending
        if len(writes) == 1 and (self._quick or (self._lean and self._ready_state is OPEN)):
            # The usual reply alone, lean and OPEN (_quick says it and more, a MeteredWebSocket's
            # state says it; the protocol's output is in the writer then, and no end of the stream,
            # b"", which only follows a close): _flush's first case without its call, nor its
            # transport.is_closing().  The transport that read this was not closing, and
            # nothing the listeners did closed it: a close, terminate or failure of ours leaves OPEN
            # first, and their sends wait for this write.  One that failed
            # in an earlier callback (connection_lost on its way; _read_on and _apply_reading ask
            # before they read on) drops and counts the write, as asyncio's and uvloop's do.
            writer.pending = []
            transport = self._transport
            if transport is not None:
                transport.write(writes[0])
            return
        self._flush()

    def _read_noted(self, proto: "_ClientProtocol | _ServerProtocol") -> bool:
        """What the read noted (``_read_notes``), seen to; ``True`` once written (the protocol object read)."""
        if self._read_notes & _KEPT:  # held, or past the turn budget: reading paused with the rest kept
            self._read_notes &= _FED
            self._count_kept()
        if self._read_notes & _FED:
            self._after_receive(proto)
            return True
        return False

    def _receive_handshake(self, client: "ClientConfig", data: Any) -> None:
        """Client side, before OPEN: the client reads the response (a bounded head,
        then a refusal's bounded body), the protocol object the complete head;
        the bytes after a 101 go to the reader, which starts at a frame boundary."""
        answer = client.receive(self, data)
        if answer is None:
            return
        head, end = answer
        proto = self._proto
        self._feed(head)
        rest = client.answered(self, proto, head, data[end:])
        if rest:
            self._reader.receive(rest)

    def _receive_head(self, head: bytes) -> None:
        """Server side: frames that came in the same read as the upgrade request."""
        if self._ready_state is not CLOSED:
            self._data_received(head)

    def _feed(self, data: bytes) -> bool:
        """Bytes for the protocol object; ``True`` while it (and so the lean path) stays OPEN."""
        proto = self._proto
        if proto is None or self._ready_state is CLOSED:
            return False
        transport = self._transport
        if transport is not None and transport.is_closing():
            return False  # failed or dropped: the rest of the read goes nowhere, no listener hears it
        self._read_notes |= _FED
        proto.receive_data(data)
        if self._writing_paused and proto.has_pending():
            # The protocol answered (pongs, a close) while our writes back up.
            self._replies_blocked(proto.pending_size())
            if transport is not None and transport.is_closing():
                return False  # dropped for it: no listener hears the rest
        events = proto.events_received()
        if events:
            self._frames_in += len(events)
            self._handle_events(events)
        self._take_protocol_output(proto)
        if proto.is_open():
            return True
        if self._ready_state is OPEN:
            self._closing()
        return False

    def _after_receive(self, proto: "_ClientProtocol | _ServerProtocol") -> None:
        """The protocol object read in this read callback: its verdicts, then one write (``_flush``)."""
        self._read_notes &= _KEPT
        if proto.parser_error() is not None and not self._error_emitted:
            self._report_parser_error(proto)
        if self._ready_state is OPEN and proto.is_closing():
            self._closing()
        self._flush()
        if proto.close_expected():
            self._expect_close()

    def _report_parser_error(self, proto: "_ClientProtocol | _ServerProtocol") -> None:
        exc = proto.parser_error()
        assert exc is not None
        if isinstance(exc, EOFError):
            return  # the TCP connection ended: 'close' (1006) says it all
        sent = proto.close_sent
        code = int(sent.code) if sent is not None else 1002
        message = _describe_parser_error(exc, self._limit_note())
        self._emit_error(ProtocolError(message, code))
        self._log_failure(code, message)

    def _log_failure(self, code: int, message: str) -> None:
        """A connection we fail for what its peer sent: one structured line per close code and interval.

        1011 (a bug of ours) is logged where it happened, with its traceback.
        """
        if code != 1011:
            request = self._request
            path = request.path if request is not None else None  # (not the URL: its query may hold a token)
            # A server side names its client as the refusals do (behind trusted proxies, the forwarded
            # one); a client, the server it reached.
            peer = request.client_ip if request is not None else self._remote_address
            report_event(
                logger, logging.INFO, "protocol_error", protocol_cause(code), "WebSocket connection failed (%s): %s",
                protocol_cause(code), message, peer=peer, code=code, path=path,
            )

    def _limit_note(self) -> str:
        """Which limit a message over the size limit passed, and how to raise it (for the ``'error'`` text)."""
        if self._extensions and self.max_payload == DEFAULT_MAX_PAYLOAD_DEFLATE:
            return (
                f" (max_payload: {DEFAULT_MAX_PAYLOAD_DEFLATE >> 20} MiB by default on a connection with"
                " permessage-deflate; set max_payload to raise it)"
            )
        return " (max_payload)"

    def _handle_events(self, events: list[Any]) -> None:
        for event in events:
            if self._ready_state is CLOSED:
                return
            if type(event) is Response:
                if self._connector is not None:
                    self._connector.handshake_response(self, event)
                continue
            opcode = event.opcode
            if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                try:
                    message = self._reader.assembling().frame(opcode, event.data, event.fin)
                except MessageError as exc:
                    self._fail(exc.code, exc.reason)
                    return
                if message is not None:
                    rate = self._rate
                    if rate is None:
                        self._deliver(*message)
                    elif not rate.offer(*message):
                        return  # failed for the rate: the rest is not delivered
            elif opcode is _PING:
                self.emit("ping", event.data)
            elif opcode is _PONG:
                if event.data == self._keepalive_payload:
                    self._awaiting_pong_since = None
                self.emit("pong", event.data)
            elif opcode is _CLOSE:
                self._reader.drop_message()  # a partial message is dropped
                if self._ready_state is OPEN:
                    self._closing()

    def _deliver(self, kind: int, data: str | bytes) -> None:
        # MessageEvent(kind, data, self) without its __init__: calling a Python class goes into C and back
        # into the interpreter for __init__ (on 3.11); making it and storing its three slots here costs
        # about 550 instructions less a message.
        event = _new_object(MessageEvent)
        event.type = kind
        event.data = data
        event.target = self
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

    def _stop_holding(self) -> None:
        """Its events no longer wait for late listeners; the messages none took are dropped.

        A server socket kept with its ``'connection'`` (``_accepted(hold_events=True)``)
        once that was heard, its listeners attached, or dropped unheard: a peer's
        messages must not pile up for a listener that will not come.
        """
        self._hold_events = False
        self._forget_kept("message")

    def _listeners_changed(self, event: str | None) -> None:
        if event is None or event == "message":
            # One listener (the common case) is called directly, without the
            # emitter's machinery; several go through emit().
            listeners = self._events.get("message")
            if listeners and len(listeners) == 1:
                listener = next(iter(listeners.values()))
                self._on_message = direct(listener)  # one argument: no arity wrapper
            else:
                self._on_message = None
        super()._listeners_changed(event)

    def _eof_received(self) -> bool | None:
        proto = self._proto
        if proto is None:
            return None
        self._lean = False
        self._quick = False
        self._stop_reader()
        rest = self._reader.unparsed()  # an incomplete frame, or frames held back
        if rest and self._ready_state is not CONNECTING:
            proto.receive_data(rest)
        proto.receive_eof()
        events = proto.events_received()
        if events:
            self._dispatch_thread = _get_ident()
            try:
                self._handle_events(events)
            finally:
                self._dispatch_thread = None
        self._read_notes |= _FED
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
        if self._ready_state is CONNECTING and self._connector is not None:
            self._connector.connection_lost(self, exc)
            return
        code, reason = 1006, ""
        if proto is not None:
            rcvd = proto.close_rcvd  # (a property of the stand-in protocol object: read once)
            if rcvd is not None:
                code, reason = rcvd.code, rcvd.reason
            elif proto.close_sent is not None and proto.parser_error() is not None:
                code, reason = proto.close_sent.code, proto.close_sent.reason
            elif self._failed_with is not None:
                code, reason = self._failed_with
        self._finish(code, reason)

    def _finish(self, code: int, reason: str) -> None:
        """The connection is gone: release everything and emit ``'close'`` once."""
        # A plain int, as Node's: websockets' codes are a CloseCode IntEnum, which Python 3.10 prints by name.
        code = int(code)
        self._ready_state = CLOSED
        self._quick = False
        if self._closed_with is None:
            self._closed_with = (code, reason)
        self._reader.reset()
        if self._kept_over:
            self._count_kept()  # (nothing kept any more)
        if self._rate is not None:
            self._rate.close()
        if self._writer.pending:
            self._writer.clear()  # frames queued for the end of the loop turn can no longer leave
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()
        if self._budget is not None:
            self._budget.release(self)
        self._ref.release()
        proto = self._proto
        if proto is not None and proto.extensions:
            # Free the compression contexts (~300 KB with permessage-deflate)
            # now: the socket itself may live on in reference cycles until
            # the next full garbage collection.
            proto.drop_extensions()
        hooks, self._finish_hooks = self._finish_hooks, ()
        for hook in hooks:
            hook(self)
        if not self._is_server:
            _loop.reactor.remove_shutdown(self._going_away)
        self._let_go()
        if not self._close_emitted:
            self._close_emitted = True
            self._emit_event("close", code, reason)

    def _let_go(self) -> None:
        """The connection is over: drop what refers back to this socket (``_finish``, every time).

        The transport (whose protocol, a ``_Stream``, holds the socket; asyncio's
        own is in a cycle with itself, broken here: ``ws._runtime.transports``),
        the protocol object (a ``LazyServer`` holds our ``_protocol_built``), the
        reader's callbacks (our bound methods) and the close timer: what is
        left refers to nothing that refers back, so a socket the application
        drops is freed by reference counting, with everything it held, and one
        kept in a cycle of the application's own (a listener that closes over
        it) takes only itself, its listeners and its request to the garbage
        collector (39 -> 22 objects per handshake of the harness' echo server:
        docs/performance-log.md).  Nothing the API offers after ``'close'`` reads them: the
        state, ``url``, ``protocol``, ``extensions``, ``request`` and the
        addresses are kept, ``buffered_amount`` counts no transport once it
        is closing, ``send``/``ping``/``pong``/``close``/``terminate`` look at
        the state first.  (A client's connector, an ASGI host's link, a rate
        limit and a backlog of ``async`` listeners keep theirs: rare, and read
        after the end by their own paths.)
        """
        transport = self._transport
        if transport is not None:
            self._transport = None
            untangle(transport)  # asyncio's own transport is in a cycle with itself: broken once it is done
        self._proto = None
        self._reader.detach()
        timer = self._close_timer
        if timer is not None:  # (its abort of a closing transport would do nothing)
            self._close_timer = None
            timer.cancel()

    # -- the client connector's interface (ws/connection/client.py) ----------------

    def _connected(self, proto: _ClientProtocol, remote_address: str | None, write_limits: dict[str, Any]) -> None:
        """TCP (and TLS) is up and ``proto`` holds the upgrade request: send it."""
        self._remote_address = remote_address
        self._proto = proto
        self._set_write_limits(write_limits)
        self._flush()

    def _disconnect(self) -> asyncio.Transport | None:
        """Forget the current connection (a redirect follows); its transport, to drop quietly."""
        transport = self._transport
        self._transport = None
        self._proto = None
        return transport

    def _redirected(self, url: str) -> None:
        self._url = url

    def _lost_before_open(self, error: Exception) -> None:
        """The connection ended before the handshake finished: ``error`` unless one was emitted, then 'close'."""
        if not self._error_emitted:
            self._emit_error(error)
        self._finish(1006, "")

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
        self._emit_kept(event, *args)

    def _report_unhandled(self, error: Any, claimable: bool = False) -> None:
        """Nobody listens for ``'error'``: say which socket and what, on stderr when logging is not set up.

        A client's line names its URL (the application's own) and is its own
        cause for the rate limit of reports; a server side's stays one cause
        for all its peers (whose request URLs they choose), one line and a count.
        A server side's error does not set a script's exit status: its peer
        caused it (a protocol violation, a limit), and a server runs for long.
        """
        if self._is_server:
            report("unhandled 'error' event on %s: %s", self._shown_name(), error, error=error)
            return
        # One line, no traceback (a refused connection's would show asyncio's insides).
        report(f"unhandled 'error' event on WebSocket {self._url}: {_cause(error)}", log=logger)
        self._unhandled(error, claimable)

    def _not_open(self, method: str) -> None:
        """``send``/``ping``/``pong`` while not OPEN: ``'error'``, or said on stderr once per socket."""
        state = self._ready_state
        error = NotOpenError(state, state.name)
        if self._events.get("error"):
            self.emit("error", error)
            return
        if self._told_not_open:
            return
        self._told_not_open = True
        advice = "send once 'open' has fired" if state is CONNECTING else "the connection is over"
        message = (
            "%s() on WebSocket %s while it is %s (readyState %d): nothing was sent; %s (an 'error' listener"
            " gets these as NotOpenError; this is said once per socket)"
        )
        if not self._is_server:  # a client's URL is the application's: a cause of its own (see _report_unhandled)
            message = message % (method, self._url, state.name, state, advice)
            report(message, log=logger)  # (no arguments: logged and printed as is)
            self._unhandled(error)
        else:  # the peer may have gone first: not a bug of the script's (see _report_unhandled)
            report(message, method, self._url, state.name, state, advice, log=logger)

    def _going_away(self) -> None:
        """SIGINT/SIGTERM in a script: close with 1001 (going away)."""
        self._close_now(1001, "")

    def _opened(self, proto: _ClientProtocol, extensions: str, max_payload: int | None) -> None:
        """The opening handshake finished (client side): OPEN, then ``'open'``.

        ``max_payload`` is the limit in force (with compression, unless the
        user set one, ``DEFAULT_MAX_PAYLOAD_DEFLATE``).
        """
        self._subprotocol = proto.subprotocol or ""
        self._extensions = extensions
        self.max_payload = max_payload
        self._ready_state = OPEN
        if proto is self._proto:
            self._start_lean(proto)
        self._emit_event("open")

    # -- JavaScript spellings (the EventEmitter ones come from EventEmitter) --------------

    Server = _ServerAlias()
    readyState = ready_state
    bufferedAmount = buffered_amount
    remoteAddress = remote_address
    isPaused = is_paused

    def __repr__(self) -> str:
        side = "server" if self._is_server else "client"
        return f"<WebSocket {side} {self._url} {self._ready_state.name}>"


def _cause(error: Any) -> str:
    """An unhandled error's text; an HTTP refusal with its reason phrase (``401 Unauthorized``)."""
    text = describe(error) if isinstance(error, BaseException) else str(error)
    status = getattr(error, "status", None) if isinstance(error, HandshakeError) else None
    if isinstance(status, int):
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            return text
        if phrase not in text:
            text = text.replace(f" {status}", f" {status} {phrase}", 1) if f" {status}" in text else f"{text} ({status} {phrase})"
    return text


def _describe_parser_error(exc: BaseException, limit_note: str) -> str:
    """The ``'error'`` text for why the parser stopped; ``limit_note`` follows a message over the size limit."""
    text = str(exc) or type(exc).__name__
    if type(exc).__name__ == "PayloadTooBig":
        return f"max payload size exceeded: {text}{limit_note}"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8: {exc.reason}"
    return text

