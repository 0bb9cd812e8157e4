"""The Sans-I/O protocol objects, from ``websockets``: the only module that
knows their internals.

``websockets`` does all framing, masking, close-code rules, extensions and
handshake checks.  We subclass rather than fork it, for one behaviour and
for a few questions its public API does not answer:

* RFC 6455 lets a Close frame arrive in the middle of a fragmented message
  (control frames may interleave), and the right answer is a normal closing
  handshake that drops the partial message (Autobahn case 7.1.5, as Node's
  ``ws`` does), where ``websockets`` fails the connection with 1002.
* ``has_pending()``, ``pending_size()``, ``in_fragmented_message()``, ``continue_message()``,
  ``partial_frame()``, ``mark_open()``, ``parser_error()``,
  ``message_limit()``/``set_message_limit()``, ``read_frames()``: the
  attributes behind them (``writes``, ``current_size``, ``reader.buffer``, the ``state`` setter,
  ``parser_exc``, ``max_message_size``, ``parser``) are not documented API,
  so every use of them is here, checked against the installed version.
* The method and HTTP version of an upgrade request: websockets 17 checks
  them in ``process_request`` (its ``InvalidMethod``, ``InvalidProtocol``,
  and a ``Request`` with ``method``/``protocol`` fields); 14 to 16 leave them
  to the caller and their ``Request`` has no such fields.
  :meth:`Server.check_request` checks both itself, raising this module's
  :class:`InvalidMethod`/:class:`InvalidProtocol`, before ``websockets``
  sees the request: every supported release answers alike.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, cast

from websockets.version import version as _installed_version
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.frames import EXTERNAL_CLOSE_CODES, Close, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import CLOSING, OPEN, SEND_EOF, Protocol
from websockets.server import ServerProtocol

from .writer import apply_mask

__all__ = ["Client", "InvalidMethod", "InvalidProtocol", "Server", "LazyServer", "SUPPORTED", "check_version", "opened_server"]

#: The ``websockets`` releases whose internals this module was written against (setup.cfg).
SUPPORTED = (14, 18)


def check_version(version: str) -> None:
    """Fail clearly on a ``websockets`` this module was not written for."""
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise ImportError(f"ws cannot read the websockets version {version!r}") from None
    low, high = SUPPORTED
    if not low <= major < high:
        raise ImportError(
            f"ws needs websockets >= {low}, < {high} (it relies on internals of those releases); "
            f"websockets {version} is installed"
        )


check_version(_installed_version)
_MAJOR = int(_installed_version.split(".")[0])

_CLOSE = Opcode.CLOSE
_CLIENT_LOGGER = logging.getLogger("ws.client.protocol")
# websockets 16 renamed the size bookkeeping (cur_size/max_size in 14 and 15; scripts/test runs
# 14 and 16, tests/unit/test_protocol_websockets.py reads both through the methods below).
_CURRENT = "current_size" if _MAJOR >= 16 else "cur_size"
_LIMIT = "max_message_size" if _MAJOR >= 16 else "max_size"


class _BadRequestLine(InvalidHandshake):
    """Part of an upgrade request's first line is not what RFC 6455 4.1 requires."""

    part = expected = ""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return f"invalid HTTP {self.part}; expected {self.expected}; got {self.value}"


class InvalidMethod(_BadRequestLine):
    """An upgrade request whose method is not GET: answered with a 405."""

    part, expected = "method", "GET"


class InvalidProtocol(_BadRequestLine):
    """An upgrade request that is not HTTP/1.1: answered with a 505."""

    part, expected = "protocol", "HTTP/1.1"


class _Internals(Protocol):
    """What ``ws`` asks of the protocol beyond ``websockets``' public API."""

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is _CLOSE and getattr(self, _CURRENT) is not None:
            setattr(self, _CURRENT, None)  # drop the partial message, close normally
        super().recv_frame(frame)

    def has_pending(self) -> bool:
        """Whether frames (or the end of the stream) wait in ``data_to_send()``."""
        return bool(self.writes)

    def pending_size(self) -> int:
        """How many bytes wait in ``data_to_send()``."""
        return sum(map(len, self.writes))

    def in_fragmented_message(self) -> bool:
        """Whether a fragmented message was started and not finished."""
        return getattr(self, _CURRENT) is not None

    def continue_message(self, size: int) -> None:
        """A fragmented message of ``size`` bytes so far, read by ``ws``' lean reader, continues here.

        From now on this object parses its continuation frames (and checks
        them against what is left of ``max_size``).
        """
        setattr(self, _CURRENT, size)

    def partial_frame(self) -> bool:
        """Whether the parser holds part of a frame (bytes received and not parsed yet)."""
        return bool(self.reader.buffer)

    if isinstance(Protocol.__dict__.get("state"), property):  # read on every send off the lean path

        def is_open(self) -> bool:
            """Whether the connection is OPEN (the ``state`` property without its call)."""
            return self._state is OPEN  # type: ignore[has-type,unused-ignore]

    else:  # pragma: no cover - a release where ``state`` is a plain attribute

        def is_open(self) -> bool:
            """Whether the connection is OPEN."""
            return self.state is OPEN

    def is_closing(self) -> bool:
        """Whether a closing handshake has started (sent or received) and the connection is not closed."""
        return self.state is CLOSING

    def drop_extensions(self) -> None:
        """Free the extensions' state (permessage-deflate's ~300 KB of zlib contexts) of a closed connection."""
        self.extensions = []

    def mark_open(self) -> None:
        """The server wrote the 101 itself (no ``send_response``): the connection is OPEN."""
        self.state = OPEN

    def parser_error(self) -> Exception | None:
        """Why the parser stopped (a protocol violation, ``EOFError``...), or ``None``."""
        return self.parser_exc

    def message_limit(self) -> int | None:
        """The largest message accepted (``max_size``), ``None`` for no limit."""
        limit: int | None = getattr(self, _LIMIT)
        return limit

    def set_message_limit(self, limit: int | None) -> None:
        """Change the largest message accepted (after the handshake negotiated compression)."""
        setattr(self, _LIMIT, limit)


class Client(_Internals, ClientProtocol):
    """``websockets``' client protocol with the close-mid-message fix.

    It logs (frames, at DEBUG) to ``ws.client.protocol``, inside the ``ws``
    logger hierarchy, so ``ws.enable_debug()`` shows client frames too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("logger", _CLIENT_LOGGER)
        super().__init__(*args, **kwargs)


class Server(_Internals, ServerProtocol):
    """``websockets``' server protocol with the close-mid-message fix.

    Our HTTP layer (h11) reads the upgrade request, so this object never
    parses one: after ``send_response`` accepted the handshake (or
    :meth:`mark_open`), :meth:`read_frames` points its parser at frames.
    """

    def check_request(
        self, method: str, path: str, headers: Headers, http_version: str = "1.1"
    ) -> tuple[str, str | None]:
        """Validate an upgrade request and negotiate extensions: ``(accept key, extensions header)``.

        ``process_request`` is how ``ServerProtocol.accept`` does it, without
        building a response: ``ws`` writes its own 101.  Raises websockets'
        ``InvalidHandshake`` family for a bad request (with :class:`InvalidMethod`
        and :class:`InvalidProtocol`, checked here for every release: see the module doc).
        """
        if method != "GET":
            raise InvalidMethod(method)
        if http_version != "1.1":
            raise InvalidProtocol(f"HTTP/{http_version}")
        # GET and HTTP/1.1: the defaults of websockets 17's Request, and all that 14-16 assume.
        accept_key, extensions, _ = self.process_request(Request(path=path, headers=headers))
        return accept_key, extensions

    def choose_subprotocol(self, subprotocol: str | None) -> None:
        """Record the subprotocol the server chose (``None``: none) for ``self.subprotocol``."""
        self.subprotocol = subprotocol  # type: ignore[assignment]  # websockets types it str; None is "none"

    def read_frames(self) -> None:
        # ServerProtocol.parse() reads frames once the state is OPEN.
        self.parser = self.parse()
        next(self.parser)


#: Build the protocol object of a lean handshake at once (tests set it to compare).
EAGER = False


class _Closing:
    """A closing handshake that a :class:`LazyServer` answered: what ``Server`` would hold, and how to get there."""

    __slots__ = ("ours", "theirs", "sent", "rcvd", "events", "writes")

    def __init__(self) -> None:
        self.ours: tuple[int | None, str] | None = None  # the arguments of our send_close()
        self.theirs: bytes | None = None  # the peer's Close frame, as received
        self.sent: Close | None = None
        self.rcvd: Close | None = None
        self.events: list[Any] = []  # not taken yet
        self.writes: list[bytes] = []

    def replay(self, real: Server) -> None:
        """Bring a freshly built ``real`` to this point: the same calls, then only the output not taken yet."""
        if self.ours is not None:
            real.send_close(*self.ours)
        if self.theirs is not None:
            real.receive_data(self.theirs)
        real.events, real.writes = self.events, self.writes


class LazyServer:
    """The protocol object of a lean handshake, built on first use.

    A connection accepted by the lean path (no extension) that only ever
    carries whole uncompressed messages never needs the protocol object:
    ``ws``' reader and writer frame those.  Until then this stand-in answers
    the questions such a connection asks, as a fresh OPEN server protocol
    would (nothing queued, parsed, sent or received); the first use of
    anything else (a control frame, a fragment, a failure) builds
    the real :class:`Server`, OPEN and reading frames, forwards to it, and
    hands it to the callback given to :meth:`when_built`, so that its holder
    (the socket) uses it directly from then on.  It has only the part of
    ``Server``'s interface that ``ws`` uses.  The real object is built
    as any other, not converted from this one: CPython keeps the attributes
    of an object whose class changed in a dict of its own, and the close
    handshake then cost ~5% more of a whole handshake (docs/performance-log.md).
    An idle connection saves the ~1.4 KB of the real object.

    The usual end, a clean closing handshake, is answered here too, as
    ``Protocol`` answers it (building, feeding and closing the real object
    for it cost about 12% of a whole handshake): the peer's Close when it
    comes alone and valid (:meth:`_peer_closed`: echoed, the end of the
    stream, what follows discarded), our own (:meth:`send_close`), and the
    peer's answer to it.  Anything asked after that which this stand-in does
    not answer builds the real object and replays the handshake into it
    (:class:`_Closing`), so that it is where it would have been.
    """

    __slots__ = ("subprotocol", "debug", "_max_size", "_logger", "_real", "_built", "_closing")

    def __init__(self, max_size: int | None, subprotocol: str | None, logger: logging.Logger) -> None:
        self.subprotocol = subprotocol
        self.debug = logger.isEnabledFor(logging.DEBUG)  # fixed now, as Protocol.__init__ fixes it
        self._max_size = max_size
        self._logger = logger
        self._real: Server | None = None
        self._built: Callable[[Server], object] | None = None
        self._closing: _Closing | None = None  # a closing handshake answered here

    def when_built(self, callback: Callable[[Server], object]) -> None:
        """Call ``callback(server)`` when the real object is built (its holder swaps it in)."""
        self._built = callback

    def real(self) -> Server:
        """The real protocol object, built now if it was not."""
        real = self._real
        if real is None:
            real = self._real = Server(max_size=self._max_size, logger=self._logger)
            real.choose_subprotocol(self.subprotocol)
            real.mark_open()
            real.read_frames()
            real.debug = self.debug
            if self._closing is not None:
                self._closing.replay(real)
            built, self._built = self._built, None
            if built is not None:
                built(real)
        return real

    # What a socket does with its protocol object, forwarded.  Only what ``ws`` uses is here
    # (tests/unit/test_protocol_lazy.py reads the sockets' code for it): a ``__getattr__`` for the
    # rest would put every attribute read of this object through a slower path, and its misses
    # cost a formatted AttributeError each.

    def receive_data(self, data: bytes) -> None:
        if self._real is None:
            closing = self._closing
            if closing is not None and closing.theirs is not None:
                return  # after the peer's Close: discarded, as the real object's discard() does
            if self._peer_closed(data):
                return
        self.real().receive_data(data)

    def _peer_closed(self, data: bytes) -> bool:
        """Whether ``data`` is the peer's Close alone, valid, and now answered as ``Server`` would.

        A masked, final Close frame of 125 bytes at most, within ``max_size``,
        whose payload ``Close.parse`` accepts (empty, or a valid code and
        UTF-8 reason).  Anything else (and a debug log, which wants the
        frames logged) is the real object's to judge.  While unbuilt, nothing
        else was fed here, so ``data`` starts at a frame boundary and no
        fragmented message is open here (the lean reader joins those itself
        and feeds whole frames): a real object built now would be as fresh.
        """
        n = len(data)
        # 0x88: FIN and CLOSE, no reserved bit; then the mask bit and the 7-bit length, n - 6 (0x80 + n - 6).
        if not 6 <= n <= 6 + 125 or data[0] != 0x88 or data[1] != n + 122 or self.debug:
            return False
        limit = self._max_size
        if limit is not None and n - 6 > limit:
            return False  # PayloadTooBig there
        payload = apply_mask(data[6:], data[2:6])
        code = payload[0] << 8 | payload[1] if n == 8 else 0
        if code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000:
            close = Close(code, "")  # (a code alone, as most closes: what Close.parse gives for it)
        else:
            try:
                close = Close.parse(payload)
            except Exception:  # too short, a code not to be sent, bad UTF-8: the real object fails the connection
                return False
        closing = self._closing
        if closing is None:  # OPEN: echoed as received (websockets does: an empty one stays empty)
            closing = self._closing = _Closing()
            closing.writes.append(bytes((0x88, n - 6)) + payload)
            closing.sent = close
        closing.theirs = data
        closing.rcvd = close
        closing.events.append(Frame(_CLOSE, payload))
        closing.writes.append(SEND_EOF)  # a server closes the TCP connection at once
        return True

    def receive_eof(self) -> None:
        self.real().receive_eof()

    def events_received(self) -> list[Any]:
        closing = self._closing
        if self._real is None and closing is not None:
            events, closing.events = closing.events, []
            return events
        return self.real().events_received()

    def data_to_send(self) -> list[bytes]:
        closing = self._closing
        if self._real is None and closing is not None:
            writes, closing.writes = closing.writes, []
            return writes
        return self.real().data_to_send()

    def send_close(self, code: int | None = None, reason: str = "") -> None:
        if self._real is None and self._closing is None and not self.debug and self._close_sent(code, reason):
            return
        self.real().send_close(code, reason)

    def _close_sent(self, code: int | None, reason: str) -> bool:
        """OPEN: whether our Close is valid, and now sent and recorded as ``Protocol.send_close`` does.

        An invalid one is the real object's, which raises what it raises.
        """
        if code is None:
            if reason:
                return False
            close, data = Close.parse(b""), b""  # (1005, ""), sent as an empty Close
        else:
            close = Close(code, reason)
            try:
                data = close.serialize()
            except Exception:  # a code not to be sent
                return False
            if len(data) > 125:
                return False  # a control frame too long
        closing = self._closing = _Closing()
        closing.ours = (code, reason)
        closing.sent = close
        closing.writes.append(bytes((0x88, len(data))) + data)
        return True

    def send_ping(self, data: bytes) -> None:
        self.real().send_ping(data)

    def send_pong(self, data: bytes) -> None:
        self.real().send_pong(data)

    def fail(self, code: int, reason: str = "") -> None:
        self.real().fail(code, reason)

    def continue_message(self, size: int) -> None:
        self.real().continue_message(size)

    def send_text(self, data: bytes, fin: bool = True) -> None:
        self.real().send_text(data, fin)

    def send_binary(self, data: bytes, fin: bool = True) -> None:
        self.real().send_binary(data, fin)

    def send_continuation(self, data: bytes, fin: bool) -> None:
        self.real().send_continuation(data, fin)

    def drop_extensions(self) -> None:
        if self._real is not None:
            self._real.drop_extensions()

    # The questions of a lean connection (its reads, sends, timers and end), answered without building:
    # OPEN, or CLOSING once a closing handshake started here (``_closing``).

    @property
    def extensions(self) -> list[Any]:
        return [] if self._real is None else self._real.extensions

    @property
    def close_rcvd(self) -> Close | None:
        if self._real is None:
            return None if self._closing is None else self._closing.rcvd
        return self._real.close_rcvd

    @property
    def close_sent(self) -> Close | None:
        if self._real is None:
            return None if self._closing is None else self._closing.sent
        return self._real.close_sent

    def is_open(self) -> bool:
        return self._closing is None if self._real is None else self._real.is_open()

    def is_closing(self) -> bool:
        return self._closing is not None if self._real is None else self._real.is_closing()

    def has_pending(self) -> bool:
        if self._real is None:
            return self._closing is not None and bool(self._closing.writes)
        return self._real.has_pending()

    def pending_size(self) -> int:
        if self._real is None:
            return 0 if self._closing is None else sum(map(len, self._closing.writes))
        return self._real.pending_size()

    def in_fragmented_message(self) -> bool:
        return False if self._real is None else self._real.in_fragmented_message()

    def partial_frame(self) -> bool:
        return False if self._real is None else self._real.partial_frame()

    def parser_error(self) -> Exception | None:
        return None if self._real is None else self._real.parser_error()

    def close_expected(self) -> bool:
        return self._closing is not None if self._real is None else self._real.close_expected()

    def message_limit(self) -> int | None:
        return self._max_size if self._real is None else self._real.message_limit()

    def mark_open(self) -> None:
        """Already OPEN: the real object is built OPEN."""

    def read_frames(self) -> None:
        """The real object's parser reads frames from the start."""


def opened_server(max_size: int | None, subprotocol: str | None, logger: logging.Logger) -> Server:
    """The protocol object of a handshake accepted without ``websockets`` (no extension, ``subprotocol`` chosen).

    A :class:`LazyServer`, which behaves as the :class:`Server` it builds on
    first use; at once while ``EAGER`` is set (the tests compare the two).
    """
    if EAGER:
        protocol = Server(max_size=max_size, logger=logger)
        protocol.choose_subprotocol(subprotocol)
        return protocol
    return cast(Server, LazyServer(max_size, subprotocol, logger))
