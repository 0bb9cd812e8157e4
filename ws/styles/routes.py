"""Routes with path parameters, validated messages as an async iterator, and guards.

    from ws.styles.routes import route_ws

    @route_ws(server, '/chat/room/:room_id', message=ClientMessage, guard=require_auth(check))
    async def room(ctx):
        async for msg in ctx.messages:          # validated messages; ends when the client leaves
            ctx.send({'echo': msg.content, 'room': ctx.params['room_id'], 'user': ctx.user})

Each route is a ``WebSocketServer`` whose HTTP server is an ``UpgradeRouter``:
the router matches ``:name``/``{name}`` patterns and hands the upgrade to the
route's server, so guards are plain ``verify_client`` hooks and run before
any WebSocket opens.  The handler runs as one task per connection (the
async-iterator style needs one); the connection closes when it returns.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import re
import weakref
from typing import Any, Callable, Iterable

from . import cluster as _cluster, messages as _messages
from ..exceptions import InvalidMessage, Reject
from ..http.routing import PathPattern
from ..request import Request
from ..protocol.handshake import Refused, VerifyInfo
from ..server import WebSocketServer, write_refusal
from ..upgrade import UpgradeHandler, UpgradeHost
from ..connection.websocket import CLOSED, OPEN, WebSocket, valid_close_code
from .._runtime.emitter import spawn
from .._runtime.flow import FlowGate
from .._runtime.log import report_error

__all__ = ["route_ws", "RouteContext", "UpgradeRouter", "InvalidMessage", "require_auth", "compile_validator"]

logger = logging.getLogger("ws.routes")

#: Messages queued for a handler that does not read them before reading pauses.
QUEUE_HIGH = 64
QUEUE_LOW = 16


# -- path patterns and the upgrade router ------------------------------------------


def compile_path(path: str) -> re.Pattern[str]:
    """``'/room/:id'`` or ``'/room/{id}'`` -> a regex whose groups are the parameters.

    The one pattern compiler of ``ws.http.routing`` (HTTP routes use it too).
    """
    return PathPattern(path).regex


# The router of each host, kept here rather than written onto the host.
_routers: weakref.WeakKeyDictionary[UpgradeHost, UpgradeRouter] = weakref.WeakKeyDictionary()


class UpgradeRouter:
    """Routes WebSocket upgrades by path pattern; to its ``WebSocketServer``s it is their server.

    One per HTTP server, registered there as the catch-all upgrade handler
    (a ``ws.upgrade.PathFilter``): paths no route matches stay the HTTP
    server's.  Towards each route's ``WebSocketServer`` it is an
    ``UpgradeHost``; towards the HTTP server an ``UpgradeHandler``.
    """

    def __init__(self, server: UpgradeHost) -> None:
        self.server = server
        self._routes: list[tuple[PathPattern, UpgradeHandler]] = []

    @classmethod
    def of(cls, server: object) -> "UpgradeRouter":
        """The router of ``server``, made and registered on first use."""
        if not isinstance(server, UpgradeHost):
            raise TypeError(f"routes need a ws.http.Server, got {type(server).__name__}")
        router = _routers.get(server)
        if router is None:
            router = cls(server)
            server.add_upgrade_handler(None, router)
            _routers[server] = router
        return router

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.server.loop

    @property
    def address(self) -> str | None:
        return self.server.address

    @property
    def backplane(self) -> Any:
        """The HTTP server's backplane: the routes' ``WebSocketServer``\\ s share it."""
        return getattr(self.server, "backplane", None)

    def add_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        """Serve the route pattern ``path`` with ``handler``."""
        if path is None:
            raise ValueError("a WebSocket route needs a path")
        if any(pattern.path == path for pattern, _ in self._routes):
            raise ValueError(f"a WebSocket route is already registered on {path!r}")
        self._routes.append((PathPattern(path), handler))

    def remove_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        self._routes = [r for r in self._routes if not (r[0].path == path and r[1] is handler)]

    def match(self, path: str) -> tuple[UpgradeHandler, dict[str, str]] | None:
        """The first route matching ``path`` and its (decoded) parameters."""
        for pattern, handler in self._routes:
            params = pattern.match(path)
            if params is not None:
                return handler, params
        return None

    def handles_path(self, path: str) -> bool:
        """Whether a route matches ``path`` (the HTTP server asks before handing over)."""
        return self.match(path) is not None

    def handle_upgrade(self, request: Request, transport: asyncio.Transport, head: bytes) -> None:
        found = self.match(request.path)
        if found is None:  # only reached when a host ignores handles_path
            write_refusal(transport, Refused(404, "Not Found"))
            return
        handler, params = found
        request.state.path_params = params
        handler.handle_upgrade(request, transport, head)


# -- message validation ----------------------------------------------------------------


def compile_validator(message: Any) -> Callable[[str | bytes], Any]:
    """``data -> value`` for a pydantic model, a JSON-schema dict, a callable or ``None``.

    The returned function raises ``InvalidMessage`` with a readable reason.
    pydantic and jsonschema are imported only when such a validator is used.
    """
    if message is None:
        return _messages.decode
    if isinstance(message, type) and (hasattr(message, "model_validate") or hasattr(message, "parse_obj")):
        return _pydantic_validator(message)
    if isinstance(message, dict):
        return _schema_validator(message)
    if callable(message):
        return _callable_validator(message)
    raise TypeError(f"message= must be a pydantic model, a JSON-schema dict or a callable, got {type(message).__name__}")


def _json_value(data: str | bytes) -> Any:
    if not isinstance(data, str):
        raise InvalidMessage("binary messages are not accepted here: send JSON text")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidMessage(f"message is not valid JSON: {exc}") from None


def _pydantic_validator(model: type) -> Callable[[str | bytes], Any]:
    parse = getattr(model, "model_validate", None) or model.parse_obj  # type: ignore[attr-defined]

    def validate(data: str | bytes) -> Any:
        value = _json_value(data)
        try:
            return parse(value)
        except Exception as exc:
            errors = getattr(exc, "errors", None)
            if not callable(errors):
                raise
            parts = []
            for error in errors():
                where = ".".join(str(p) for p in error.get("loc", ())) or "message"
                parts.append(f"{where}: {error.get('msg', 'invalid')}")
            raise InvalidMessage(f"invalid {model.__name__}: " + "; ".join(parts)) from None

    return validate


def _schema_validator(schema: dict[str, Any]) -> Callable[[str | bytes], Any]:
    try:
        import jsonschema  # type: ignore[import-untyped]
        from jsonschema.exceptions import SchemaError, best_match  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(
            "message= with a JSON-schema dict needs the 'jsonschema' package: pip install jsonschema"
        ) from None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"message= is not a valid JSON schema: {exc.message}") from None
    validator = cls(schema)

    def validate(data: str | bytes) -> Any:
        value = _json_value(data)
        error = best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise InvalidMessage(f"{where + ': ' if where else ''}{error.message}")
        return value

    return validate


def _callable_validator(check: Callable[[Any], Any]) -> Callable[[str | bytes], Any]:
    def validate(data: str | bytes) -> Any:
        value = _messages.decode(data)
        try:
            result = check(value)
        except InvalidMessage:
            raise
        except Exception as exc:
            raise InvalidMessage(str(exc) or type(exc).__name__) from None
        if result is False:
            raise InvalidMessage("message rejected")
        return value if result is True else result

    return validate


# -- guards ------------------------------------------------------------------------------


def require_auth(check: Callable[[str], Any], *, query_param: str = "token") -> Callable[[Request], Any]:
    """A guard: the token of ``Authorization: Bearer <token>`` or ``?token=`` must pass ``check``.

    ``check(token)`` returns the user (``ctx.user``), or ``None``/``False``
    to refuse; refusals are 401 before any WebSocket opens.
    """
    if not callable(check):
        raise TypeError(f"require_auth needs a function token -> user, got {type(check).__name__}")

    def guard(request: Request) -> Any:
        token = None
        authorization = request.get_header("authorization") or ""
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            token = credentials.strip()
        if token is None:
            token = request.query(query_param) or None
        if token is None:
            raise Reject(401, "Unauthorized: missing token", {"WWW-Authenticate": "Bearer"})
        user = check(token)
        if inspect.isawaitable(user):
            if inspect.iscoroutine(user):
                user.close()
            raise TypeError("require_auth: check() must be a plain function (guards run synchronously in the handshake)")
        if user is None or user is False:
            raise Reject(401, "Unauthorized: invalid token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return token if user is True else user

    guard.__name__ = guard.__qualname__ = f"require_auth({getattr(check, '__name__', 'check')})"
    return guard


def _verify_client(guards: list[Callable[[Request], Any]]) -> Callable[[VerifyInfo], Any]:
    def verify(info: VerifyInfo) -> bool:
        request = info.req
        user = None
        for guard in guards:
            verdict = guard(request)
            if inspect.isawaitable(verdict):
                if inspect.iscoroutine(verdict):
                    verdict.close()
                raise TypeError(f"guard {guard!r} returned an awaitable: guards run synchronously in the handshake")
            if verdict is None or verdict is False:
                return False
            if verdict is not True:
                user = verdict
        request.state.user = user
        return True

    return verify


# -- the handler's side ----------------------------------------------------------------------


class _End:
    pass


_END = _End()


class MessageStream:
    """``ctx.messages``: validated messages in order; ends when the client leaves.

    While the handler lags ``QUEUE_HIGH`` messages behind, the socket stops
    reading (TCP pushes back on the client) until it catches up.
    """

    def __init__(self, socket: WebSocket) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._flow = FlowGate(QUEUE_HIGH, QUEUE_LOW, socket.pause, socket.resume)

    def _put(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if item is not _END:
            self._flow.added(len(self._items))

    def __aiter__(self) -> "MessageStream":
        return self

    async def __anext__(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items[0]
        if item is _END:
            raise StopAsyncIteration
        self._items.popleft()
        self._flow.removed(len(self._items))
        return item


class RouteContext:
    """What a route handler gets: ``params``, ``query``, ``user``, ``send``, ``messages``, ``close``."""

    __slots__ = ("params", "query", "request", "socket", "user", "messages")

    def __init__(self, socket: WebSocket, request: Request) -> None:
        self.socket = socket
        self.request = request
        self.params: dict[str, str] = dict(getattr(request.state, "path_params", {}))
        self.query: dict[str, str] = {name: values[0] for name, values in request.params.items() if values}
        self.user: Any = getattr(request.state, "user", None)
        self.messages = MessageStream(socket)

    def send(self, message: Any) -> None:
        """Send ``message`` (dicts and lists as JSON); ignored once the connection is closing."""
        if self.socket.ready_state == OPEN:
            self.socket.send(_messages.encode(message))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.socket.close(code, reason)

    def __repr__(self) -> str:
        return f"<RouteContext {self.request.path} params={self.params}>"


def route_ws(
    server: Any,
    path: str,
    handler: Callable[[RouteContext], Any] | None = None,
    *,
    message: Any = None,
    guard: Callable[[Request], Any] | Iterable[Callable[[Request], Any]] | None = None,
    on_invalid: str | int = "error",
    **options: Any,
) -> Any:
    """Serve ``async def handler(ctx)`` on ``path`` of ``server``; a decorator without ``handler``.

    The seed idiom ``@server.route_ws(path, ...)`` is spelled
    ``@route_ws(server, path, ...)``: the HTTP server does not import the styles.

    ``message``: how incoming messages are validated (see
    ``compile_validator``); an invalid one is answered with ``{"error": ...}``
    (``on_invalid='error'``) or closes the connection with the close code
    given as ``on_invalid`` (1007 or 1008, say).  ``guard``: one or more
    ``guard(request) -> user`` functions run in the handshake (raise
    ``Reject`` or return ``None``/``False`` to refuse with 401).
    ``options`` go to the ``WebSocketServer``.  With ``handler`` it returns
    the ``WebSocketServer``; as a decorator it returns the function.
    """
    validate = compile_validator(message)
    if on_invalid != "error":
        if isinstance(on_invalid, bool) or not isinstance(on_invalid, int) or not valid_close_code(on_invalid):
            raise ValueError(f"on_invalid must be 'error' or a close code such as 1007 or 1008, got {on_invalid!r}")
    guards = [] if guard is None else [guard] if callable(guard) else list(guard)
    for g in guards:
        if not callable(g):
            raise TypeError(f"guard must be callable, got {type(g).__name__}")
    if guards:
        if "verify_client" in options or "verifyClient" in options:
            raise TypeError("give either guard= or verify_client=, not both")
        options["verify_client"] = _verify_client(guards)
    compile_path(path)
    router = UpgradeRouter.of(server)
    _cluster.adopt(server)

    def attach(fn: Callable[[RouteContext], Any]) -> WebSocketServer:
        if not (inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)):
            raise TypeError(f"a route handler must be an async def function, got {fn!r}")
        wss = WebSocketServer(server=router, path=path, **options)
        wss.on("connection", lambda socket, request: _start(fn, socket, request, validate, on_invalid))
        return wss

    if handler is None:

        def decorator(fn: Callable[[RouteContext], Any]) -> Callable[[RouteContext], Any]:
            attach(fn)
            return fn

        return decorator
    return attach(handler)


def _start(
    fn: Callable[[RouteContext], Any],
    socket: WebSocket,
    request: Request,
    validate: Callable[[Any], Any],
    on_invalid: str | int,
) -> None:
    ctx = RouteContext(socket, request)
    stream = ctx.messages

    def on_message(event: Any) -> None:
        try:
            value = validate(event.data)
        except InvalidMessage as exc:
            reject(str(exc))
            return
        except Exception as exc:  # a bug in a user validator
            report_error(logger, "message validator of %s raised", request.path, error=exc)
            reject(f"message could not be validated: {type(exc).__name__}")
            return
        stream._put(value)

    def reject(reason: str) -> None:
        if on_invalid == "error":
            ctx.send({"error": reason})
        else:
            clipped = reason.encode()[:123].decode(errors="ignore")
            socket.close(int(on_invalid), clipped)

    socket.on("message", on_message)
    socket.on("close", lambda code, reason: stream._put(_END))
    socket.on("error", lambda exc: logger.debug("route %s: %s", request.path, exc))

    async def run() -> None:
        try:
            await fn(ctx)
        except Exception as exc:
            report_error(logger, "route handler for %s raised", request.path, error=exc)
            if socket.ready_state == OPEN:
                socket.close(1011, "internal error")
            return
        if socket.ready_state not in (CLOSED,):
            socket.close(1000)

    spawn(run(), what=f"route {request.path}")
