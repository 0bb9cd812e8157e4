"""The request parsers behind ``ws.http.Server``: h11 (the reference) and httptools (llhttp).

``Connection`` drives "a request parser" through the small interface below
and never sees which one it is.  A parser turns bytes into events, in order:

- a ``Head`` (method, target, version, raw header list),
- ``bytes`` (a piece of body),
- ``END`` (the request is complete), ``CLOSED`` (the peer closed between
  requests), ``NEED_DATA``,

and raises ``ParseError`` (carrying the HTTP status to answer) for bad input.
Everything that decides what to answer (header size and count limits, body
limits, keep-alive, ``Expect: 100-continue``, the response bytes) lives in
``Connection``, once, so that both parsers behave the same.  Where llhttp
is laxer than h11 we check in ``check_head``; where it is stricter, the
difference is listed in docs/api.md (``WS_HTTP``).

Which parser: httptools when it is installed, unless ``WS_HTTP=h11``;
``WS_HTTP=httptools`` asks for it (a warning, then h11, if it is missing).
"""

from __future__ import annotations

import collections
import os
import re
import warnings
from typing import Any, Callable, Final, Protocol, Union

import h11

_httptools: Any
try:  # the optional accelerator (the ``speed`` extra)
    import httptools as _httptools
except ImportError:  # pragma: no cover - the tests install it
    _httptools = None

__all__ = [
    "CLOSED", "END", "NEED_DATA", "NOT_YET", "Event", "Head", "ParseError", "RequestParser",
    "check_head", "parser_factory", "parser_name",
]


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: The request is complete (its body, if any, was delivered).
END: Final = _Marker("END")
#: The peer closed the connection between two requests.
CLOSED: Final = _Marker("CLOSED")
#: Nothing more until more bytes arrive.
NEED_DATA: Final = _Marker("NEED_DATA")


class ParseError(Exception):
    """Bad input: answer ``status`` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Head:
    """A request head as both parsers deliver it (bytes, raw names, values without surrounding whitespace)."""

    __slots__ = ("method", "target", "http_version", "headers")

    def __init__(self, method: bytes, target: bytes, http_version: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers


Event = Union[Head, bytes, _Marker]


class RequestParser(Protocol):
    """What ``Connection`` needs from a request parser."""

    def receive(self, data: bytes | memoryview) -> None:
        """Bytes from the peer (copied at once); ``b""`` is the end of its input."""
        ...

    def next_event(self) -> Event:
        """The next event; raises ``ParseError``."""
        ...

    def buffered(self) -> int:
        """How many received bytes wait for ``next_event`` (flow control of a busy connection)."""
        ...

    def partial_head(self) -> bool:
        """Whether part of a request head arrived (a timeout then answers 408, not a silent close)."""
        ...

    def after_head(self) -> bytes:
        """The bytes that followed an upgrade request (they belong to the new protocol)."""
        ...

    def next_cycle(self) -> None:
        """The request was answered and the connection stays: parse the next one."""
        ...


class NotYet:
    """The parser of a connection that has read nothing yet: no input, no events.

    The real one is made at the first read that needs it, so a connection
    the lean path hands over never builds one.
    """

    __slots__ = ()

    def receive(self, data: bytes | memoryview) -> None:
        raise RuntimeError("no parser yet")  # (Connection makes one before feeding it)

    def next_event(self) -> Event:
        return NEED_DATA

    def buffered(self) -> int:
        return 0

    def partial_head(self) -> bool:
        return False

    def after_head(self) -> bytes:
        return b""

    def next_cycle(self) -> None:
        pass


NOT_YET: Final = NotYet()


# -- the checks both parsers share ------------------------------------------------------

_CONTENT_LENGTH = re.compile(rb"[0-9]+")
#: Control characters a header value must not hold (HTAB is whitespace): h11 lets them through, llhttp does not.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: h11's bound on Content-Length digits (a longer one is refused, not parsed).
_CONTENT_LENGTH_MAX_DIGITS = 20


def check_head(head: Head) -> int | None:
    """Checks one parser makes and the other does not; the Content-Length, if any.

    Raises ``ParseError`` like h11 would: a HTTP/1.1 request needs exactly
    one ``Host``, Content-Length must be digits, Transfer-Encoding only
    ``chunked`` (501 otherwise).  Neither: Transfer-Encoding with
    Content-Length (400).  And like llhttp: no control characters in
    header values.  Both: HTTP/1.0 and 1.1 only (505; 400 for 0.9).  Run on every head
    (it finds the Content-Length for the body limit on the way).
    """
    version = head.http_version
    if version != b"1.1" and version != b"1.0":
        if version == b"0.9":  # (llhttp's name for a request line without a version: h11 says 400)
            raise ParseError(400, "HTTP/0.9 is not supported")
        raise ParseError(505, f"HTTP/{version.decode('ascii', 'replace')} is not supported")
    hosts = codings = 0
    length: int | None = None
    for name, value in head.headers:
        if _BAD_VALUE.search(value):
            raise ParseError(400, f"control character in header {name!r}")
        n = len(name)
        if n == 4 and name.lower() == b"host":
            hosts += 1
        elif n == 14 and name.lower() == b"content-length":
            if not _CONTENT_LENGTH.fullmatch(value) or len(value) > _CONTENT_LENGTH_MAX_DIGITS:
                raise ParseError(400, "bad Content-Length")
            length = int(value)
        elif n == 17 and name.lower() == b"transfer-encoding":
            if value.lower() != b"chunked" or codings:
                raise ParseError(501, "Only one Transfer-Encoding: chunked is supported")
            codings = 1
    if codings and length is not None:
        # (RFC 9112 6.1 lets Transfer-Encoding win; a proxy in front that let Content-Length
        # win would see a different next request: refused, as a smuggling attempt.)
        raise ParseError(400, "Transfer-Encoding and Content-Length together")
    if hosts > 1:
        raise ParseError(400, "Found multiple Host: headers")
    if hosts == 0 and head.http_version == b"1.1":
        raise ParseError(400, "Missing mandatory Host: header")
    return length


# -- h11 ----------------------------------------------------------------------------------

# A documented h11 state that h11's ``__all__`` leaves out: the peer asked
# to switch protocols (an ``Upgrade`` header) and its later bytes are ours.
_MIGHT_SWITCH_PROTOCOL: Any = h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]


class H11Parser:
    """The reference: h11's server-side state machine, used for requests only.

    Responses never go through h11 (``Connection`` frames them), so instead
    of ``start_next_cycle`` a new ``h11.Connection`` takes over the bytes
    already received after the request.
    """

    __slots__ = ("conn", "limit")

    def __init__(self, max_header_size: int) -> None:
        self.limit = max_header_size
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_size)

    def receive(self, data: bytes | memoryview) -> None:
        self.conn.receive_data(data)  # type: ignore[arg-type]  # (h11 copies it: bytes-like is fine)

    def next_event(self) -> Event:
        try:
            event = self.conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ParseError(exc.error_status_hint or 400, str(exc)) from None
        cls = type(event)
        if cls is h11.Data:
            return bytes(event.data)  # type: ignore[union-attr]
        if cls is h11.Request:
            return Head(event.method, event.target, event.http_version, event.headers.raw_items())  # type: ignore[union-attr]
        if cls is h11.EndOfMessage:
            return END
        if cls is h11.ConnectionClosed:
            return CLOSED
        return NEED_DATA  # NEED_DATA, or PAUSED (nothing more for this request)

    def buffered(self) -> int:
        return len(self.conn.trailing_data[0])

    def partial_head(self) -> bool:
        return bool(self.conn.trailing_data[0])

    def after_head(self) -> bytes:
        if self.conn.their_state is _MIGHT_SWITCH_PROTOCOL:
            return bytes(self.conn.trailing_data[0])
        return b""

    def next_cycle(self) -> None:
        data, closed = self.conn.trailing_data
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limit)
        if data:
            self.conn.receive_data(bytes(data))
        if closed:
            self.conn.receive_data(b"")


# -- httptools ----------------------------------------------------------------------------

_HEAD_END = re.compile(b"\r\n\r\n")


class HttptoolsParser:
    """llhttp through httptools: parses as events are asked for, one request ahead at most.

    Received bytes are fed to llhttp in pieces, each ending at the next
    ``CRLF CRLF`` (so at most one head ends in it) or after
    ``max_header_size`` bytes, until a whole request is queued; the rest
    waits raw until ``next_event`` has nothing else to give:
    a read of many tiny pipelined requests is parsed one request at a time, as
    they are answered, not into thousands of queued heads at once.

    llhttp calls back as it parses; the callbacks queue events.  Parsing stops
    after a request that ends the connection (``Connection: close``,
    HTTP/1.0), as h11 does, and after an upgrade (see ``_feed``).  Non-body
    bytes that pile up without progress (an incomplete head, a chunk
    extension, a trailer section) past ``max_header_size`` are a 431, as
    h11's incomplete-event limit.
    """

    __slots__ = (
        "parser", "events", "queued", "limit", "target", "headers", "in_head", "in_message",
        "final", "stopped", "upgraded", "after", "broken", "raw", "pos", "eof", "ends", "pending",
        "piece", "seen", "remaining",
    )

    def __init__(self, max_header_size: int) -> None:
        assert _httptools is not None
        self.parser = _httptools.HttpRequestParser(self)
        # Heads llhttp would refuse with a plain 400 go to check_head instead, which answers
        # as with h11: any HTTP/x.y (505 for all but 1.0 and 1.1), and a Transfer-Encoding
        # not ending in chunked (501; its body is never read, the connection closes).
        self.parser.set_dangerous_leniencies(lenient_version=True, lenient_transfer_encoding=True)
        self.events: collections.deque[Event | ParseError] = collections.deque()
        self.queued = 0
        self.limit = max(max_header_size, 1)
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.in_head = False
        self.in_message = False
        #: The request being parsed ends the connection's HTTP.
        self.final = False
        #: A final request was complete: later bytes are not HTTP.
        self.stopped = False
        #: llhttp saw an upgrade: ``after`` holds what followed it.
        self.upgraded = False
        self.after = bytearray()
        #: An error is queued: nothing more is parsed.
        self.broken = False
        #: Received bytes not fed to llhttp yet: ``raw[pos:]``.
        self.raw = b""
        self.pos = 0
        #: The peer ended its input (acted on once ``raw`` is fed).
        self.eof = False
        #: How many whole requests are queued (``END`` events).
        self.ends = 0
        #: Non-body bytes since the last progress (a head begun or ended, body bytes).
        self.pending = 0
        #: The length of the piece being fed, and how much of it is known to precede
        #: its last progress (-1: no progress in it).
        self.piece = 0
        self.seen = -1
        #: Body bytes still to come by Content-Length: fed in one piece, not searched.
        self.remaining = 0

    # llhttp's callbacks (httptools looks them up by name)

    def on_message_begin(self) -> None:
        self.in_head = self.in_message = True
        self.target = b""
        self.headers = []
        self.final = False
        if self.seen < 0:
            self.seen = 0

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a chunked body's trailer: dropped, as h11 does
        # llhttp leaves trailing whitespace in values (h11 strips both ends).
        value = value.rstrip(b" \t")
        if len(name) == 17 and name.lower() == b"transfer-encoding":
            value = value.lower()  # (as h11 gives it)
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.seen = self.piece  # (a head ends with CRLF CRLF: so does the piece)
        parser = self.parser
        version = parser.get_http_version().encode("ascii")
        method = parser.get_method()
        head = Head(method, self.target, version, self.headers)
        self.final = not _keep_alive(head)
        size = len(self.target)
        for name, value in self.headers:
            size += len(name) + len(value)
            if len(name) == 14 and name.lower() == b"content-length" and value.isdigit():
                self.remaining = int(value)
        self._push(head, size)

    def on_body(self, body: bytes) -> None:
        self.seen = max(self.seen, 0) + len(body)
        if self.remaining:
            self.remaining -= len(body)
        self._push(body, len(body))

    def on_message_complete(self) -> None:
        self.in_message = False
        if not self.stopped and not self.broken:
            self.ends += 1
        self._push(END, 0)
        if self.final:
            self.stopped = True

    # the interface

    def _push(self, event: Event | ParseError, size: int) -> None:
        if not self.stopped and not self.broken:
            self.events.append(event)
            self.queued += size

    def _fail(self, error: Event | ParseError) -> None:
        """Queue ``error`` (or the end of input) as the last event: nothing more is parsed."""
        self._push(error, 0)
        self.broken = True

    def receive(self, data: bytes | memoryview) -> None:
        if self.broken:
            return
        if self.stopped:
            if self.upgraded:
                self.after += data
            return
        if not data:
            self.eof = True
        elif self.pos < len(self.raw):
            self.raw = self.raw[self.pos:] + data
            self.pos = 0
        elif self.ends:  # (the request being read is parsed at once, later ones when asked for)
            self.raw = bytes(data)  # (a copy: ``data`` may be a view of the shared read buffer)
            self.pos = 0
            return
        else:
            self._feed(data)
            return
        if not self.ends:
            self._feed()

    def _feed(self, data: bytes | memoryview | None = None) -> None:
        """Feed ``data`` (else ``raw``) to llhttp piece by piece until a request is queued (or it runs out).

        What is left of ``data`` is copied to ``raw``: it may be a view of the shared read buffer.
        """
        raw = self.raw if data is None else data
        pos = self.pos if data is None else 0
        size = len(raw)
        limit = self.limit
        parser = self.parser
        while pos < size and not self.ends and not self.broken and not self.stopped:
            if self.remaining and not self.in_head:
                end = min(pos + self.remaining, size)  # (body bytes: nothing to search)
            else:
                found = _HEAD_END.search(raw, pos, pos + limit)  # (bytes or a view alike)
                end = found.end() if found is not None else min(pos + limit, size)
            n = end - pos
            self.piece = n
            self.seen = -1
            try:
                parser.feed_data(raw if n == size else memoryview(raw)[pos:end])
            except _httptools.HttpParserUpgrade as exc:
                # llhttp stops after an upgrade request (``Connection: upgrade``
                # and ``Upgrade``) or CONNECT, the last queued: what follows is the
                # new protocol's or, if the upgrade is refused, the next request's
                # (``next_cycle``).
                self.stopped = self.upgraded = True
                self.after += raw[pos + int(exc.args[0]):]
                pos = size
                break
            except _httptools.HttpParserError as exc:
                if not self.stopped:  # (after a final request, llhttp's complaints about what follows are moot)
                    self._fail(ParseError(400, str(exc) or type(exc).__name__))
                break
            pos = end
            if self.in_message:
                seen = self.seen
                self.pending = self.pending + n if seen < 0 else n - min(seen, n)
                if self.pending > limit:
                    self._fail(ParseError(431, "Receive buffer too long"))
            else:
                self.pending = 0
        if pos >= size or self.broken or self.stopped:
            self.raw = b""
            self.pos = 0
            if self.eof and not self.broken and not self.stopped:
                self._fail(ParseError(400, "peer closed in the middle of a request") if self.in_message else CLOSED)
        elif data is None:
            self.pos = pos
        else:
            self.raw = bytes(raw[pos:])
            self.pos = 0

    def next_event(self) -> Event:
        events = self.events
        if not events:
            self._feed()
            if not events:
                return NEED_DATA
        event = events.popleft()
        if isinstance(event, ParseError):
            raise event
        if type(event) is bytes:
            self.queued -= len(event)
        elif isinstance(event, Head):
            self.queued = max(0, self.queued - len(event.target) - sum(len(n) + len(v) for n, v in event.headers))
        elif event is END:
            self.ends -= 1
        return event

    def buffered(self) -> int:
        # (+ the events: a queued error or end of input is waiting too, and has no bytes)
        return self.queued + len(self.after) + len(self.events) + len(self.raw) - self.pos

    def partial_head(self) -> bool:
        return self.in_message or self.pos < len(self.raw)

    def after_head(self) -> bytes:
        # (Only once the upgrade request is the one being answered: no event of it is left.)
        return b"" if self.events else bytes(self.after)

    def next_cycle(self) -> None:
        if self.upgraded and not self.events:  # a refused upgrade: what followed it is parsed as HTTP after all
            rest = bytes(self.after)
            self.__init__(self.limit)  # type: ignore[misc]
            if rest:
                self.receive(rest)
        # (otherwise the next request's events are queued already, or will be)


def _tokens(head: Head, header: bytes) -> list[bytes]:
    """The lower-cased comma-separated values of ``header`` (h11's ``get_comma_header``)."""
    found: list[bytes] = []
    for name, value in head.headers:
        if name.lower() == header:
            found.extend(v.strip().lower() for v in value.split(b","))
    return found


def _keep_alive(head: Head) -> bool:
    return head.http_version >= b"1.1" and b"close" not in _tokens(head, b"connection")


# -- choosing one -------------------------------------------------------------------------

ParserFactory = Callable[[int], RequestParser]
_chosen: dict[str | None, tuple[str, ParserFactory]] = {}


def _choose(setting: str | None) -> tuple[str, ParserFactory]:
    wanted = (setting or "").strip().lower()
    if wanted == "h11":
        return "h11", H11Parser
    if wanted not in ("", "httptools", "auto"):
        warnings.warn(f"WS_HTTP={setting!r} is not one of h11, httptools: using the default", RuntimeWarning, stacklevel=3)
    if _httptools is not None:
        return "httptools", HttptoolsParser
    if wanted == "httptools":
        warnings.warn("WS_HTTP=httptools but httptools is not installed: using h11", RuntimeWarning, stacklevel=3)
    return "h11", H11Parser


def _resolve() -> tuple[str, ParserFactory]:
    setting = os.environ.get("WS_HTTP")
    choice = _chosen.get(setting)
    if choice is None:
        choice = _chosen[setting] = _choose(setting)  # (one warning per setting and process)
    return choice


def parser_factory() -> ParserFactory:
    """How ``ws.http.Server`` makes a connection's parser (``WS_HTTP``, read when a server is created)."""
    return _resolve()[1]


def parser_name() -> str:
    """``'h11'`` or ``'httptools'``: the parser a server created now would use."""
    return _resolve()[0]
