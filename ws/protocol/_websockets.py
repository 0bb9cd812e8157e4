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
from typing import Any

from websockets.version import version as _installed_version
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import CLOSING, OPEN, Protocol
from websockets.server import ServerProtocol

__all__ = ["Client", "InvalidMethod", "InvalidProtocol", "Server", "SUPPORTED", "check_version", "opened_server"]

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


class _LazyServer(Server):
    """The protocol object of a lean handshake, built on first use.

    A connection accepted by the lean path (no extension, no frame log)
    that only ever carries whole uncompressed messages never needs the
    protocol object: ``ws``' reader and writer frame those.  Until then this
    stand-in answers the questions such a connection asks (an OPEN
    connection with nothing queued, parsed, sent or received), and the
    first use of anything else (reading any other attribute, setting any:
    a control frame, a fragment, a close, a failure) builds the real one in
    place: the object becomes a :class:`Server`, OPEN, whose parser reads
    frames, so every holder keeps the same object.  An idle connection
    saves the ~1.7 KB and the work of that object (docs/performance-log.md).
    """

    # What a fresh OPEN protocol holds (read by the socket on its lean path and when it ends).
    close_rcvd = None
    close_sent = None
    extensions: list[Any] = []  # never changed: drop_extensions() assigns, which builds the real object

    def __init__(self, max_size: int | None, subprotocol: str | None, logger: logging.Logger) -> None:  # noqa: D107
        values = self.__dict__  # not through __setattr__, which would build the object
        values["subprotocol"] = subprotocol
        values["debug"] = logger.isEnabledFor(logging.DEBUG)  # fixed now, as Protocol.__init__ fixes it
        values["_lazy"] = (max_size, logger)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "_lazy" not in self.__dict__:
            raise AttributeError(name)
        self._build()
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._build()
        object.__setattr__(self, name, value)

    def _build(self) -> None:
        """Become the real :class:`Server`, OPEN, reading frames, with this object's subprotocol and ``debug``."""
        values = self.__dict__
        max_size, logger = values.pop("_lazy")
        subprotocol, debug = values.pop("subprotocol"), values.pop("debug")
        object.__setattr__(self, "__class__", Server)
        Server.__init__(self, max_size=max_size, logger=logger)
        self.choose_subprotocol(subprotocol)
        self.mark_open()
        self.read_frames()
        self.debug = debug

    def is_open(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return False

    def has_pending(self) -> bool:
        return False

    def pending_size(self) -> int:
        return 0

    def in_fragmented_message(self) -> bool:
        return False

    def partial_frame(self) -> bool:
        return False

    def parser_error(self) -> Exception | None:
        return None

    def close_expected(self) -> bool:
        return False

    def message_limit(self) -> int | None:
        limit: int | None = self.__dict__["_lazy"][0]
        return limit

    def mark_open(self) -> None:
        """Already OPEN (the real object is built OPEN)."""

    def read_frames(self) -> None:
        """The real object's parser reads frames from the start."""


def opened_server(max_size: int | None, subprotocol: str | None, logger: logging.Logger) -> Server:
    """The protocol object of a handshake accepted without ``websockets`` (no extension, ``subprotocol`` chosen).

    Built on first use (:class:`_LazyServer`); at once while ``EAGER`` is set
    (the tests compare the two).
    """
    if EAGER:
        protocol = Server(max_size=max_size, logger=logger)
        protocol.choose_subprotocol(subprotocol)
        return protocol
    return _LazyServer(max_size, subprotocol, logger)
