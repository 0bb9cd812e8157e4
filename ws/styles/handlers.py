"""Handler modules: WebSocket events delivered to a module, an object or a dotted path.

    from ws.styles import handlers
    client = handlers.create_websocket('ws://127.0.0.1:8080/echo', 'myapp.ws_handler')

    # myapp/ws_handler.py
    from ws.styles import handlers
    def on_open(): handlers.context.get_connection().send('hello')
    def on_message(message): print('got', message, handlers.context.get_method())
    def on_error(error): ...
    def on_close(): ...

The handler's ``on_open``/``on_message``/``on_error``/``on_close`` (or the
JavaScript ``onOpen``... spellings) are called with the event's value and
the connection as optional arguments; while one runs, ``context`` answers
for that call.  Clients live in a registry (``get_clients``, ``get_client``,
``get_client_by_handler``) until they close.  On the server side a handler
serves an endpoint (``serve``), and ``NAME.websocket`` descriptor files
declare endpoints by the folder: ``load_websockets(server, folder)`` (the
seed idiom ``server.load_websockets(folder)``).
"""

from __future__ import annotations

import contextvars
import importlib
import json
import logging
import threading
import types
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Union

from .._runtime.emitter import invoke
from . import cluster as _cluster
from .endpoints import Connection, join_path
from ..request import Request
from ..server import WebSocketServer
from ..connection.websocket import WebSocket

__all__ = [
    "context",
    "HandlerContext",
    "Client",
    "create_websocket",
    "get_clients",
    "get_client",
    "get_client_by_handler",
    "resolve_handler",
    "serve",
    "load_websockets",
    "Loaded",
    "DEFAULT_PREFIX",
]

logger = logging.getLogger("ws.handlers")

METHODS = ("on_open", "on_message", "on_error", "on_close")
#: A handler's functions may be spelled as in JSH: JSH name -> Python name.
HANDLER_ALIASES = {"onOpen": "on_open", "onMessage": "on_message", "onError": "on_error", "onClose": "on_close"}
DEFAULT_PREFIX = "/websockets/v4/service"
DESCRIPTOR_KEYS = frozenset({"handler", "endpoint", "description"})


# -- context -------------------------------------------------------------------


#: What a handler call is about: a client of ``create_websocket`` or a server-side connection.
HandlerConnection = Union["Client", Connection]


class _Call:
    __slots__ = ("method", "message", "error", "connection")

    def __init__(
        self, method: str, message: str | bytes | None, error: BaseException | None, connection: HandlerConnection
    ) -> None:
        self.method = method
        self.message = message
        self.error = error
        self.connection = connection


_current: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("ws_handler_call", default=None)


class HandlerContext:
    """``handlers.context``: about the handler call in progress (``None``/``False`` outside one).

    Backed by a context variable, so concurrent handlers (threads, tasks)
    each see their own call; an ``async def`` handler keeps its call for
    its whole run.
    """

    __slots__ = ()

    def get_method(self) -> str | None:
        """``'onopen'``, ``'onmessage'``, ``'onerror'`` or ``'onclose'``."""
        call = _current.get()
        return call.method if call else None

    def get_message(self) -> str | bytes | None:
        """The message (``str`` or ``bytes``) in an ``on_message`` call."""
        call = _current.get()
        return call.message if call else None

    def get_error(self) -> BaseException | None:
        """The error (an exception; ``str()`` gives its text) in an ``on_error`` call."""
        call = _current.get()
        return call.error if call else None

    def get_connection(self) -> HandlerConnection | None:
        """The ``Client`` (client side) or ``Connection`` (server side) of the call."""
        call = _current.get()
        return call.connection if call else None

    def is_on_open(self) -> bool:
        return self.get_method() == "onopen"

    def is_on_message(self) -> bool:
        return self.get_method() == "onmessage"

    def is_on_error(self) -> bool:
        return self.get_method() == "onerror"

    def is_on_close(self) -> bool:
        return self.get_method() == "onclose"

    def __repr__(self) -> str:
        return f"<handlers.context {self.get_method() or 'outside a handler'}>"

    # JSH spellings (ws._runtime.compat has the option names).
    getMethod = get_method
    getMessage = get_message
    getError = get_error
    getConnection = get_connection
    isOnOpen = is_on_open
    isOnMessage = is_on_message
    isOnError = is_on_error
    isOnClose = is_on_close


context = HandlerContext()


def _call(
    handlers: dict[str, Callable[..., Any]],
    method: str,
    connection: HandlerConnection,
    message: str | bytes | None = None,
    error: BaseException | None = None,
) -> None:
    """Call one handler method with ``context`` set for it (and its task)."""
    fn = handlers.get(method)
    if fn is None:
        return
    args: tuple[Any, ...] = (connection,)
    if method == "on_message":
        args = (message, connection)
    elif method == "on_error":
        args = (error, connection)

    def run() -> None:
        _current.set(_Call(method.replace("_", ""), message, error, connection))
        invoke(fn, *args, what=f"handler {method}")  # a task started here inherits the context

    contextvars.copy_context().run(run)


# -- resolving handlers ----------------------------------------------------------


def resolve_handler(handler: Any) -> dict[str, Callable[..., Any]]:
    """The event functions of a module, object, mapping or import path string.

    Strings are ``'pkg.module'`` (``'pkg/module'`` as in JSH works too) or
    ``'pkg.module:attribute'``.  A handler with none of the four functions,
    a non-callable one, or one spelled both ways is a ``TypeError``.
    """
    target = _import(handler) if isinstance(handler, str) else handler
    if target is None:
        raise TypeError("handler must be a module, an object, a mapping or an import path string, got None")
    lookup: Callable[[str], Any]
    if isinstance(target, Mapping):
        lookup = lambda name: target.get(name)  # noqa: E731
    else:
        lookup = lambda name: getattr(target, name, None)  # noqa: E731
    found: dict[str, Callable[..., Any]] = {}
    camel = {py: js for js, py in HANDLER_ALIASES.items()}
    for method in METHODS:
        py_fn, js_fn = lookup(method), lookup(camel[method])
        if py_fn is not None and js_fn is not None:
            raise TypeError(f"handler {_describe(handler)} defines both {method} and {camel[method]}")
        fn = py_fn if py_fn is not None else js_fn
        if fn is None:
            continue
        if not callable(fn):
            raise TypeError(f"handler {_describe(handler)}: {method} must be callable, got {type(fn).__name__}")
        found[method] = fn
    if not found:
        raise TypeError(
            f"handler {_describe(handler)} defines none of {', '.join(METHODS)} (or onOpen, onMessage, onError, onClose)"
        )
    return found


def _import(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    module_name = module_name.strip().replace("/", ".")
    if module_name.endswith(".py"):
        module_name = module_name[:-3]
    if not module_name:
        raise ValueError(f"handler import path is empty: {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import handler module {module_name!r}: {exc}") from exc
    for part in filter(None, attribute.split(".")):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ImportError(f"handler {path!r}: {module_name} has no attribute {attribute!r}") from None
    return target


def _describe(handler: Any) -> str:
    if isinstance(handler, str):
        return repr(handler)
    if isinstance(handler, types.ModuleType):
        return f"module {handler.__name__!r}"
    return f"{type(handler).__name__} object"


# -- clients and their registry ------------------------------------------------------


class Client:
    """A client created by ``create_websocket``: ``id``, ``uri``, ``handler``, ``send``, ``close``.

    ``socket`` is the underlying ``WebSocket`` for everything else.
    """

    __slots__ = ("id", "uri", "handler", "socket")

    def __init__(self, uri: str, handler: Any, socket: WebSocket) -> None:
        self.id = uuid.uuid4().hex
        self.uri = uri
        self.handler = handler
        self.socket = socket

    @property
    def state(self) -> str:
        """``'CONNECTING'``, ``'OPEN'``, ``'CLOSING'`` or ``'CLOSED'``."""
        return self.socket.ready_state.name

    def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary (bytes) message."""
        self.socket.send(message)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the client leaves the registry once closed."""
        self.socket.close(code, reason)

    def metadata(self) -> dict[str, Any]:
        return {"id": self.id, "uri": self.uri, "handler": self.handler, "state": self.state}

    def __repr__(self) -> str:
        return f"<Client {self.id} {self.uri} {self.state}>"


_clients: dict[str, Client] = {}
_clients_lock = threading.Lock()


def create_websocket(uri: str, handler: Any, engine: str | None = None, **options: Any) -> Client:
    """Connect to ``uri`` and deliver the client's events to ``handler``.

    ``options`` are ``WebSocket`` options (``headers``, ``protocols``...).
    ``engine`` exists for JSH code; ``ws`` has one engine, so only
    ``None``/``'default'`` are accepted.
    """
    if engine not in (None, "default"):
        raise ValueError(f"unknown engine {engine!r}: ws has a single engine")
    handlers = resolve_handler(handler)
    protocols = options.pop("protocols", None)
    socket = WebSocket(uri, protocols, **options)
    client = Client(uri, handler, socket)
    with _clients_lock:
        _clients[client.id] = client
    _attach(socket, handlers, client, on_closed=lambda: _forget(client))
    return client


def _attach(
    socket: WebSocket,
    handlers: dict[str, Callable[..., Any]],
    connection: HandlerConnection,
    on_closed: Callable[[], object] | None = None,
) -> None:
    """Route the socket's events to the handler functions."""
    socket.on("open", lambda: _call(handlers, "on_open", connection))
    socket.on("message", lambda event: _call(handlers, "on_message", connection, message=event.data))
    socket.on("error", lambda error: _call(handlers, "on_error", connection, error=error))

    def closed() -> None:
        if on_closed is not None:
            on_closed()
        _call(handlers, "on_close", connection)

    socket.on("close", closed)


def _forget(client: Client) -> None:
    with _clients_lock:
        _clients.pop(client.id, None)


def get_clients() -> list[dict[str, Any]]:
    """``{'id', 'uri', 'handler', 'state'}`` of every client not closed yet."""
    with _clients_lock:
        clients = list(_clients.values())
    return [client.metadata() for client in clients]


def get_client(client_id: str) -> Client | None:
    """The client with this id, or ``None``."""
    with _clients_lock:
        return _clients.get(client_id)


def get_client_by_handler(handler: Any) -> Client | None:
    """The first open client created with ``handler`` (the same object or import path), or ``None``.

    A module and its import path (``'pkg.mod'`` or ``'pkg/mod'``) name the same handler.
    """
    key = _handler_key(handler)
    with _clients_lock:
        clients = list(_clients.values())
    for client in clients:
        if client.handler is handler or (key is not None and _handler_key(client.handler) == key):
            return client
    return None


def _handler_key(handler: Any) -> str | None:
    if isinstance(handler, str):
        name = handler.strip().replace("/", ".")
        return name[:-3] if name.endswith(".py") else name
    if isinstance(handler, types.ModuleType):
        return handler.__name__
    return None


# -- server side: endpoints served by handlers ------------------------------------------


def serve(server: Any, path: str, handler: Any, **options: Any) -> WebSocketServer:
    """Serve ``path`` of ``server``: each accepted connection's events go to ``handler``.

    Handler functions get the connection (an ``endpoints.Connection``:
    ``id``, ``request``, ``query``, ``send``, ``close``) as their last argument.
    """
    handlers = resolve_handler(handler)
    wss = WebSocketServer(server=server, path=path, **options)
    _cluster.adopt(server)
    endpoint = path.rsplit("/", 1)[-1]

    def accept(socket: WebSocket, request: Request) -> None:
        connection = Connection(endpoint, socket, request)
        _attach(socket, handlers, connection)
        _call(handlers, "on_open", connection)

    wss.on("connection", accept)
    return wss


class Loaded:
    """What ``load_websockets`` did: ``endpoints`` served and ``errors`` by file."""

    __slots__ = ("endpoints", "descriptions", "errors")

    def __init__(self) -> None:
        self.endpoints: dict[str, WebSocketServer] = {}
        self.descriptions: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<Loaded endpoints={sorted(self.endpoints)} errors={len(self.errors)}>"


def load_websockets(server: Any, folder: str | Path, prefix: str = DEFAULT_PREFIX, **options: Any) -> Loaded:
    """Serve every ``*.websocket`` descriptor of ``folder`` (recursively) under ``prefix``.

    A descriptor is JSON: ``{"handler": "pkg.module", "endpoint": "name",
    "description": "..."}`` (``endpoint`` defaults to the file name).  A bad
    one (invalid JSON, unknown keys, a handler that does not import, a
    duplicate endpoint) is logged and recorded in ``errors`` with its file
    name; the others still load.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder for .websocket descriptors: {str(root)!r}")
    join_path(prefix, "x")  # validates the prefix before anything is served
    result = Loaded()
    for file in sorted(root.rglob("*.websocket")):
        try:
            endpoint, handler, description = _read_descriptor(file)
            if endpoint in result.endpoints:
                raise ValueError(f"endpoint {endpoint!r} is already declared by another descriptor")
            result.endpoints[endpoint] = serve(server, join_path(prefix, endpoint), handler, **options)
            result.descriptions[endpoint] = description
        except Exception as exc:
            result.errors[str(file)] = f"{type(exc).__name__}: {exc}"
            logger.error("bad WebSocket descriptor %s: %s", file, exc)
    return result


def _read_descriptor(file: Path) -> tuple[str, str, str]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"a descriptor must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - DESCRIPTOR_KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))} (expected {', '.join(sorted(DESCRIPTOR_KEYS))})")
    handler = data.get("handler")
    if not isinstance(handler, str) or not handler:
        raise ValueError('"handler" must be a non-empty import path string')
    endpoint = data.get("endpoint", file.name[: -len(".websocket")])
    if not isinstance(endpoint, str) or not endpoint or any(c in endpoint for c in "?#\\ \t\r\n"):
        raise ValueError(f'"endpoint" must be a non-empty name usable in a URL path, got {endpoint!r}')
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ValueError('"description" must be a string')
    return endpoint, handler, description


# JSH spellings of the module functions (``websockets.createWebsocket(...)``).
createWebsocket = create_websocket
getClients = get_clients
getClient = get_client
getClientByHandler = get_client_by_handler
