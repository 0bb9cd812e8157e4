"""The server's handshake decision, as data: ``accept(request, policy)``.

One function decides whether an upgrade request becomes a WebSocket and
returns what the host must write: :class:`Accepted` (the 101's headers, the
subprotocol, the extensions and the configured ``websockets`` protocol
object) or :class:`Refused` (an HTTP status, a plain-text reason, headers).
It writes nothing and emits nothing, so every host -- the asyncio server,
ASGI, the application styles -- only renders the result in its own medium,
and the decision is tested without sockets.

The ``Origin`` check (``allowed_origins``, :func:`check_origin`) comes
first, so a cross-site page is refused before any user code sees its
cookies.  The user's hooks run here: ``verify_client`` (its verdict, a ``Reject``, or
an exception, which becomes a 500 carrying the exception for the host to
report) and ``handle_protocols``.  A ``verify_client`` that answers later
(Node's ``(info, callback)`` form, an ``async def``) makes the decision a
:class:`Pending`: the host waits for the answer (bounded, in its own medium:
this module does no I/O), then asks it for the result.  The ``'headers'`` event (users editing
the 101) is the host's: it shows :meth:`Accepted.header_lines` to its
listeners and renders :meth:`Accepted.edited`.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Literal, Mapping, Sequence, Union

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidHeaderValue, InvalidUpgrade
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import (
    ServerPerMessageDeflateFactory,
    enable_server_permessage_deflate,
)

from ..exceptions import Reject, WebSocketError
from ..request import Request
from . import _websockets
from ._websockets import InvalidMethod, InvalidProtocol
from .origins import AllowedOrigins

__all__ = [
    "Accepted", "DEFAULT_MAX_PAYLOAD_DEFLATE", "HandshakeResult", "Pending", "Policy", "Refused", "VerifyForm",
    "VerifyInfo", "accept", "admit", "check_origin", "lean_request", "verify_form",
]

#: ``max_payload`` of a connection with permessage-deflate when the user set
#: none (``websockets``' ``max_size``): a peer sends about 1 KiB per MiB it
#: makes us inflate, so the uncompressed default (100 MiB, Node's) would let
#: 100 KiB cost ~0.3 s of CPU and 100 MiB of memory (docs/reliability.md).
DEFAULT_MAX_PAYLOAD_DEFLATE = 1 << 20

#: The status line of every 101 we send; a ``'headers'`` edit cannot change it.
STATUS_LINE_101 = "HTTP/1.1 101 Switching Protocols"

#: Where the accepted protocol objects log (frames at DEBUG), inside the ``ws`` hierarchy.
_PROTOCOL_LOGGER = logging.getLogger("ws.server.protocol")

HeaderPairs = tuple[tuple[str, str], ...]

#: How a ``verify_client`` answers: ``'sync'`` returns its verdict, ``'callback'``
#: (Node's ``verifyClient(info, cb)``) calls ``cb(result, code, name, headers)``,
#: ``'async'`` (an ``async def``) returns it from a coroutine.
VerifyForm = Literal["sync", "callback", "async"]

_VERIFY_FORMS = (
    "verify_client takes info and returns its verdict (def verify(info): ...), or takes (info, callback) and "
    "calls callback(result, code, name, headers) (Node's asynchronous form), or is an async def taking info"
)


def verify_form(verify: Callable[..., object]) -> VerifyForm:
    """Which form ``verify`` has, told by its parameters as Node tells by ``verifyClient.length``.

    Two positional parameters without a default: Node's callback form; an
    ``async def``: awaited; else synchronous.  Anything that cannot be
    called either way is a ``TypeError`` naming the forms, raised when the
    server is built rather than at the first handshake.
    """
    call = getattr(verify, "__call__", None)
    is_async = inspect.iscoroutinefunction(verify) or (
        not inspect.isroutine(verify) and inspect.iscoroutinefunction(call)
    )
    try:
        params = list(inspect.signature(verify).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: take it as synchronous
        return "async" if is_async else "sync"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
    required = 0
    for param in positional:  # Node's Function.length: the parameters before the first default
        if param.default is not param.empty:
            break
        required += 1
    name = getattr(verify, "__qualname__", None) or repr(verify)
    if not positional and not variadic:
        raise TypeError(f"verify_client {name} takes no parameters: {_VERIFY_FORMS}")
    if required > 2:
        raise TypeError(f"verify_client {name} needs {required} arguments: {_VERIFY_FORMS}")
    if is_async:
        if required == 2:
            raise TypeError(
                f"verify_client {name} is an async def with a callback parameter: an async def returns its verdict "
                "(async def verify(info): ...); a plain def takes Node's (info, callback)"
            )
        return "async"
    return "callback" if required == 2 else "sync"


class VerifyInfo:
    """What ``verify_client(info)`` receives: ``origin``, ``req``, ``secure``.

    Subscriptable too (``info['req']``), for code written against Node.
    """

    __slots__ = ("origin", "req", "secure")

    def __init__(self, origin: str | None, req: Request, secure: bool) -> None:
        self.origin = origin
        self.req = req
        self.secure = secure

    def __getitem__(self, key: str) -> Any:
        if key not in self.__slots__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self.__slots__ else default


@dataclass(frozen=True, slots=True)
class Policy:
    """What a server lets in: the user's hooks and the negotiated limits.

    ``per_message_deflate`` is ``False``, ``True`` (websockets' recommended
    settings) or the keyword arguments of ``ServerPerMessageDeflateFactory``.
    ``deflate_max_payload`` replaces ``max_payload`` on a connection that
    negotiated it (the server passes the user's ``max_payload`` when one was set).
    """

    verify_client: Callable[..., object] | None = None
    handle_protocols: Callable[[list[str], Request], object] | None = None
    protocols: Sequence[str] | None = None
    per_message_deflate: bool | Mapping[str, Any] = False
    max_payload: int | None = None
    deflate_max_payload: int | None = DEFAULT_MAX_PAYLOAD_DEFLATE
    #: ``verify_form(verify_client)``; worked out here when not given.
    verify_form: VerifyForm = "sync"
    #: The pages whose handshakes go on to ``verify_client`` (others: 403); ``None``: no check.
    allowed_origins: AllowedOrigins | None = None

    def __post_init__(self) -> None:
        if self.verify_client is not None and self.verify_form == "sync":
            object.__setattr__(self, "verify_form", verify_form(self.verify_client))

    def extension_factories(self) -> list[ServerExtensionFactory] | None:
        pmd = self.per_message_deflate
        if not pmd:
            return None
        if isinstance(pmd, Mapping):
            return [ServerPerMessageDeflateFactory(**pmd)]
        # websockets' recommended settings: 4 KiB windows and memLevel 5 keep a
        # compressed connection near 60 KiB instead of ~300 KiB at zlib's defaults.
        return list(enable_server_permessage_deflate(None))


@dataclass(frozen=True, slots=True)
class Refused:
    """Answer with ``status``, ``reason`` as a plain-text body, and ``headers``; then close.

    ``error`` is set when a user hook failed (``problem`` says how): the
    host logs it and emits it as ``'error'``.  A ``Reject`` or a ``False``
    verdict is a refusal, not an error.
    """

    status: int
    reason: str
    headers: HeaderPairs = ()
    error: Exception | None = None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class Accepted:
    """Switch protocols: send ``101`` with ``headers`` and speak WebSocket.

    ``protocol`` is the ``websockets`` server protocol, past the handshake
    (the host marks it open once the 101 is written); ``None`` from
    :func:`admit`, where the host's own server speaks the wire.
    ``extensions`` is the ``Sec-WebSocket-Extensions`` value, if any.
    """

    subprotocol: str | None
    extensions: str | None = None
    headers: HeaderPairs = ()
    protocol: _websockets.Server | None = field(default=None, compare=False)

    def header_lines(self) -> list[Any]:
        """The 101 as the editable list a ``'headers'`` listener receives (status line first)."""
        return [STATUS_LINE_101, *(f"{name}: {value}" for name, value in self.headers)]

    def edited(self, lines: Iterable[Any]) -> Accepted:
        """This answer with the header lines a ``'headers'`` listener left.

        Lines are ``'Name: value'`` strings or ``(name, value)`` pairs; a
        leading status line is skipped (the status stays 101).
        """
        items = list(lines)
        if items and str(items[0]).startswith("HTTP/"):
            items = items[1:]
        headers = []
        for line in items:
            if isinstance(line, tuple):
                name, value = line
            else:
                name, _, value = str(line).partition(":")
            headers.append((str(name).strip(), str(value).strip()))
        return Accepted(self.subprotocol, self.extensions, tuple(headers), self.protocol)

    def response(self) -> bytes:
        """The serialised 101 (values are ours or the user's edit, written as given)."""
        headers = self.headers
        if not headers:
            return f"{STATUS_LINE_101}\r\n\r\n".encode("latin-1")
        try:
            lines = "\r\n".join(map(": ".join, headers))  # (no Python step per header)
        except TypeError:  # a value that is no str
            lines = "\r\n".join([f"{name}: {value}" for name, value in headers])
        return f"{STATUS_LINE_101}\r\n{lines}\r\n\r\n".encode("latin-1")


HandshakeResult = Union[Accepted, Refused]


class Pending:
    """``verify_client`` has not answered yet: the host waits, then calls :meth:`result`.

    For Node's callback form, the answer comes through the callback given to
    ``verify_client`` (from any thread): the host registers
    :meth:`on_answer` and calls :meth:`result` once notified.  For an
    ``async def`` (or a synchronous one that returned an awaitable),
    :attr:`awaitable` is what the host awaits; it hands the outcome to
    :meth:`settle`.  :meth:`timed_out` is the answer when the host gave up.
    """

    def __init__(self, finish: Callable[[object, str | None], HandshakeResult], awaitable: Awaitable[object] | None = None) -> None:
        self._finish = finish
        #: The coroutine to await (``async def`` form), else ``None``.
        self.awaitable = awaitable
        self._lock = threading.Lock()
        self._answer: tuple[object, int | None, str | None, Any] | None = None
        self._notify: Callable[[], None] | None = None

    def callback(self, result: object = False, code: int | None = None, name: str | None = None, headers: Any = None) -> None:
        """Node's ``cb(result, code, name, headers)``: the verdict; later calls are ignored."""
        with self._lock:
            if self._answer is not None:
                return
            self._answer = (result, code, name, headers)
            notify = self._notify
        if notify is not None:
            notify()

    @property
    def answered(self) -> bool:
        """Whether the callback has been called."""
        return self._answer is not None

    def on_answer(self, notify: Callable[[], None]) -> None:
        """Call ``notify()`` once the callback has been called (now, if it was); it may run on any thread."""
        with self._lock:
            self._notify = notify
            answered = self._answer is not None
        if answered:
            notify()

    def result(self, date: str | None = None) -> HandshakeResult:
        """The decision, once the callback answered (``date``: a fresh ``Date`` header)."""
        answer = self._answer
        assert answer is not None, "result() before the callback answered"
        verified, code, name, headers = answer
        if verified:
            return self._finish(True, date)
        status = int(code) if code else 401
        return self._finish((False, status, name, headers), date)

    def settle(self, verdict: object = None, error: BaseException | None = None, date: str | None = None) -> HandshakeResult:
        """The decision from the awaited verdict, or from the exception it raised."""
        if error is not None:
            if isinstance(error, Reject):
                return Refused(error.status, error.reason, tuple(_header_pairs(error.headers)))
            if not isinstance(error, Exception):
                raise error
            return Refused(500, "Internal Server Error", error=error, problem="verify_client raised")
        return self._finish(verdict, date)

    def timed_out(self, seconds: float) -> Refused:
        """The host stopped waiting after ``seconds``: a 503, reported as a server error (a hook that never answers is a bug)."""
        form = "did not call its callback" if self.awaitable is None else "did not return"
        problem = f"verify_client {form} within {seconds:g} s (verify_timeout)"
        return Refused(503, "Service Unavailable: the handshake was not verified in time", error=WebSocketError(problem), problem=problem)


def accept(request: Request, policy: Policy, *, date: str | None = None) -> HandshakeResult | Pending:
    """The whole server handshake of RFC 6455 for ``request``, for hosts that write the bytes.

    The common request is checked here (:func:`lean_request`); any other
    goes to ``websockets``, which checks it and negotiates extensions, and
    which answers every refusal.  Then the user's hooks run (see
    :func:`admit`).  ``date`` (an HTTP date) opens the 101's headers when
    given: the clock is the caller's.  A :class:`Pending` when
    ``verify_client`` answers later.
    """
    lean = lean_request(request, policy)
    protocol: _websockets.Server | None = None
    if lean is not None:
        accept_key, offered = lean
        if policy.allowed_origins is None and policy.verify_client is None:
            # No hook to run (no Origin check, nobody to verify): what _hooks would do, at once.
            try:
                subprotocol = _choose(request, policy, offered)
            except _Refusal as refusal:
                return refusal.refused
            opened = _websockets.opened_server(policy.max_payload, subprotocol, _PROTOCOL_LOGGER)
            return _accepted(opened, accept_key, None, subprotocol, date)
        extensions: str | None = None
    else:
        checked = _checked_by_websockets(request, policy)
        if isinstance(checked, Refused):
            return checked
        protocol, accept_key, extensions, offered = checked

    def accepted(subprotocol: str | None, when: str | None) -> HandshakeResult:
        if protocol is None:  # the lean path: no extension, nothing negotiated but the subprotocol
            opened = _websockets.opened_server(policy.max_payload, subprotocol, _PROTOCOL_LOGGER)
        else:
            opened = protocol
            opened.choose_subprotocol(subprotocol)
            if extensions is not None:  # compressed: a message may inflate ~1,000x what was sent
                opened.set_message_limit(policy.deflate_max_payload)
        return _accepted(opened, accept_key, extensions, subprotocol, when if when is not None else date)

    return _hooks(request, policy, offered, accepted)


def _accepted(
    protocol: _websockets.Server, accept_key: str, extensions: str | None, subprotocol: str | None, date: str | None
) -> Accepted:
    """The 101 of an accepted handshake: ``Date`` (when given), the RFC 6455 headers, then what was negotiated."""
    headers = [("Date", date)] if date is not None else []
    headers += [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key)]
    if extensions is not None:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    if subprotocol:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    return Accepted(subprotocol, extensions, tuple(headers), protocol)


def _checked_by_websockets(
    request: Request, policy: Policy
) -> tuple[_websockets.Server, str, str | None, list[str]] | Refused:
    """``websockets``' check of any request: its protocol object, accept key, extensions and offered subprotocols, or the refusal."""
    offered: list[str] = []

    def record(_protocol: object, subprotocols: Sequence[str]) -> None:
        offered.extend(subprotocols)
        return None

    protocol = _websockets.Server(
        extensions=policy.extension_factories(),
        select_subprotocol=record,
        max_size=policy.max_payload,
        logger=_PROTOCOL_LOGGER,
    )
    try:
        # Headers() itself refuses values websockets deems invalid (non-ASCII...): a 400 too.
        accept_key, extensions = protocol.check_request(
            request.method, request.url, Headers(request.raw_headers), request.http_version
        )
    except InvalidMethod:
        return Refused(405, "Method Not Allowed: a WebSocket handshake uses GET", (("Allow", "GET"),))
    except InvalidProtocol:
        return Refused(505, "HTTP Version Not Supported: a WebSocket handshake uses HTTP/1.1")
    except InvalidHeaderValue as exc:
        if exc.name == "Sec-WebSocket-Version":
            return Refused(426, f"Unsupported WebSocket version: {exc.value}", (("Sec-WebSocket-Version", "13"),))
        return Refused(400, f"Bad Request: {exc}")
    except (InvalidUpgrade, InvalidHandshake) as exc:
        return Refused(400, f"Bad Request: {_chain(exc)}")
    return protocol, accept_key, extensions, offered


#: A header value ``websockets``' ``Headers`` takes (the same characters as its own check).
_VALID_VALUES = re.compile(r"[\t\x20-\x7e\x80-\xff]*").fullmatch
#: A token list (RFC 9110 5.6.1) without empty elements, as ``Connection`` and ``Sec-WebSocket-Protocol`` carry.
_TOKEN_LIST = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+(?:[\t ]*,[\t ]*[-!#$%&'*+.^_`|~0-9A-Za-z]+)*").fullmatch
_TOKEN_SPLIT = re.compile(r"[\t ]*,[\t ]*").split
#: The canonical base64 of 16 bytes (the bits past the 128th are zero).
_KEY = re.compile(r"[A-Za-z0-9+/]{21}[AQgw]==").fullmatch
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
#: The headers an upgrade request has once, and where ``lean_request`` keeps them.
_ONCE = {"upgrade": 0, "connection": 1, "sec-websocket-key": 2, "sec-websocket-version": 3}


def lean_request(request: Request, policy: Policy) -> tuple[str, list[str]] | None:
    """``(Sec-WebSocket-Accept, offered subprotocols)`` for the common upgrade request; ``None``: ask ``websockets``.

    Strict, so that whatever it takes ``websockets`` takes too with the
    same answer (tests/unit/test_handshake_lean.py checks this on generated
    requests): ``GET``, HTTP/1.1, one ``Upgrade: websocket``, one
    ``Connection`` token list naming ``upgrade``, one canonical 16-byte
    ``Sec-WebSocket-Key``, one ``Sec-WebSocket-Version: 13``, at most one
    ``Origin``, ``Sec-WebSocket-Protocol`` token lists, and no
    ``Sec-WebSocket-Extensions`` unless compression is off (``websockets``
    ignores them then).  Anything else, every refusal included, is
    ``websockets``' to decide, with its statuses and messages.  It saves
    the ``Headers`` object, the protocol object's checks and the extension
    factories: about a third of a handshake's Python work.
    """
    if request.method != "GET" or request.http_version != "1.1":
        return None
    raw = request.raw_headers
    headers = request.headers
    if len(headers) == len(raw):
        # No name twice (the common case): ``request.headers`` holds each value as sent, and
        # lookups replace a walk over the headers.
        upgrade = headers.get("upgrade")
        connection = headers.get("connection")
        key = headers.get("sec-websocket-key")
        version = headers.get("sec-websocket-version")
        offered_value = headers.get("sec-websocket-protocol")
        protocols = [] if offered_value is None else [offered_value]
        repeated = False
        origins = 1 if "origin" in headers else 0
        extended = "sec-websocket-extensions" in headers
    else:
        once: list[str | None] = [None, None, None, None]  # Upgrade, Connection, the key, the version
        protocols = []
        origins = 0
        repeated = extended = False
        for name, value in raw:
            name = name.lower()
            index = _ONCE.get(name)
            if index is not None:
                repeated |= once[index] is not None
                once[index] = value
            elif name == "sec-websocket-protocol":
                protocols.append(value)
            elif name == "origin":
                origins += 1
            elif name == "sec-websocket-extensions":
                extended = True
        upgrade, connection, key, version = once
    if (
        repeated or version != "13" or key is None or _KEY(key) is None or upgrade is None
        or upgrade.lower() != "websocket" or connection is None or origins > 1
        or (
            connection.lower() != "upgrade"  # (the usual value: a valid token list naming upgrade)
            and (_TOKEN_LIST(connection) is None or "upgrade" not in [token.lower() for token in _TOKEN_SPLIT(connection)])
        )
        or (extended and policy.per_message_deflate)  # (websockets ignores them when it does not compress)
    ):
        return None
    if not request._plain_values and _VALID_VALUES("\t".join([value for _, value in raw])) is None:
        return None
    offered: list[str] = []
    for value in protocols:
        if _TOKEN_LIST(value) is None:
            return None
        offered += _TOKEN_SPLIT(value)
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii"), offered


def admit(request: Request, policy: Policy, offered: Sequence[str]) -> HandshakeResult | Pending:
    """The ``Origin`` check and the user's hooks, for hosts whose own server did the RFC 6455 part (ASGI).

    ``allowed_origins``, then ``verify_client``, then the subprotocol among
    ``offered``.  The :class:`Accepted` has no protocol object, and its
    headers are the subprotocol's only: the host's server writes the rest of the 101.
    """

    def accepted(subprotocol: str | None, _date: str | None) -> HandshakeResult:
        headers = (("Sec-WebSocket-Protocol", subprotocol),) if subprotocol else ()
        return Accepted(subprotocol, None, headers)

    return _hooks(request, policy, list(offered), accepted)


def _hooks(
    request: Request, policy: Policy, offered: list[str], accepted: Callable[[str | None, str | None], HandshakeResult]
) -> HandshakeResult | Pending:
    """The ``Origin`` check, ``verify_client``, then ``accepted(subprotocol, date)`` with the subprotocol chosen among ``offered``."""
    refused = check_origin(request, policy)
    if refused is not None:
        return refused

    def finish(verdict: object, when: str | None) -> HandshakeResult:
        try:
            _judge(verdict)
            subprotocol = _choose(request, policy, offered)
        except _Refusal as refusal:
            return refusal.refused
        return accepted(subprotocol, when)

    return _verify(request, policy, finish)


#: How much of a refused ``Origin`` the 403's body repeats.
_SHOWN_ORIGIN = 100


def check_origin(request: Request, policy: Policy) -> Refused | None:
    """A 403 when ``policy.allowed_origins`` does not list the page that opened this handshake; else ``None``.

    The ``Origin`` header of RFC 6455 (section 4.1: every browser sends
    it); absent, it is the ``None`` entry's case.  Two ``Origin`` headers
    are refused: no browser sends them, and the server would have to pick one.
    """
    allowed = policy.allowed_origins
    if allowed is None:
        return None
    origins = [value for name, value in request.raw_headers if name.lower() == "origin"]
    if len(origins) > 1:
        return Refused(403, "Forbidden: more than one Origin header")
    origin = origins[0] if origins else None
    if allowed.allows(origin):
        return None
    if origin is None:
        return Refused(403, "Forbidden: a handshake without an Origin header is not allowed here")
    shown = origin if len(origin) <= _SHOWN_ORIGIN else origin[:_SHOWN_ORIGIN] + "..."
    return Refused(403, f"Forbidden: origin {ascii(shown)} is not allowed")


class _Refusal(Exception):
    """Carries a refusal out of the hook steps (internal)."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(refused.reason)
        self.refused = refused


def _internal_error(exc: Exception, problem: str) -> _Refusal:
    return _Refusal(Refused(500, "Internal Server Error", error=exc, problem=problem))


def _verify(
    request: Request, policy: Policy, finish: Callable[[object, str | None], HandshakeResult]
) -> HandshakeResult | Pending:
    """Run ``verify_client``; ``finish(verdict, None)`` now, or a :class:`Pending` when it answers later."""
    verify = policy.verify_client
    if verify is None:
        return finish(True, None)
    origin = request.get_header("origin") or request.get_header("sec-websocket-origin")
    info = VerifyInfo(origin, request, request.secure)
    pending: Pending | None = None
    try:
        if policy.verify_form == "callback":
            pending = Pending(finish)
            verdict = verify(info, pending.callback)
        else:
            verdict = verify(info)
    except Reject as rejection:
        return Refused(rejection.status, rejection.reason, tuple(_header_pairs(rejection.headers)))
    except Exception as exc:
        return _internal_error(exc, "verify_client raised").refused
    if pending is not None:
        if inspect.isawaitable(verdict):  # a callback-form hook that is a coroutine after all: await it too
            return Pending(finish, verdict)
        return pending.result() if pending.answered else pending
    if inspect.isawaitable(verdict):
        return Pending(finish, verdict)
    return finish(verdict, None)


def _judge(verdict: object) -> None:
    """Raise :class:`_Refusal` unless ``verdict`` (``verify_client``'s answer) lets the request in."""
    if isinstance(verdict, tuple):
        if verdict and verdict[0]:
            return
        status = int(verdict[1]) if len(verdict) > 1 and verdict[1] is not None else 401
        reason = str(verdict[2]) if len(verdict) > 2 and verdict[2] is not None else Reject(status).reason
        headers = tuple(_header_pairs(verdict[3])) if len(verdict) > 3 and verdict[3] else ()
        raise _Refusal(Refused(status, reason, headers))
    if not verdict:
        raise _Refusal(Refused(401, "Unauthorized"))


def _choose(request: Request, policy: Policy, offered: list[str]) -> str | None:
    """The subprotocol to accept (``None``: none); raise :class:`_Refusal` if ``handle_protocols`` fails."""
    if not offered:
        return None
    handle = policy.handle_protocols
    if handle is not None:
        try:
            chosen = handle(list(offered), request)
        except Exception as exc:
            raise _internal_error(exc, "handle_protocols raised") from None
        if chosen is None or chosen is False or chosen == "":
            return None
        if chosen not in offered:
            message = f"handle_protocols returned {chosen!r}, which the client did not offer ({offered})"
            raise _internal_error(WebSocketError(message), message)
        return str(chosen)
    if policy.protocols is not None:
        for name in policy.protocols:
            if name in offered:
                return name
        return None
    return offered[0]


def _header_pairs(headers: Any) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


def _chain(exc: BaseException) -> str:
    text = str(exc)
    cause = exc.__cause__
    while cause is not None:
        text += f"; {cause}"
        cause = cause.__cause__
    return text
