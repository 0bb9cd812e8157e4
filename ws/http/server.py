"""The embedded HTTP/1.1 server: the listener, its routes and its upgrade handlers.

``Server`` binds, accepts and closes; each accepted connection is a
``ws.http.connection.Connection`` (the h11 driver), which asks the server
only through the narrow ``Owner`` interface.  Routes live in
``ws.http.routing``; upgrades are handed to whatever registered itself with
``add_upgrade_handler`` (the ``ws.upgrade.UpgradeHost`` interface), so this
module imports nothing of the WebSocket layers.

The server binds like Node: the object can be created anywhere and lives on
the loop chosen by ``ws._runtime.loop.bind()`` at construction (the running
loop, or the shared reactor of plain scripts).  Sockets are bound
synchronously in ``serve()`` so that a taken port fails at once, in the
caller's code.

``serve(workers=N)`` runs N processes on the port: the parent reserves it and
supervises (``ws._runtime.supervisor``); each worker runs the program again
and binds its own ``SO_REUSEPORT`` socket (``ws._runtime.workers``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import errno
import logging
import os
import socket
import stat
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, TypeVar

from .._runtime import loop as _loop
from .._runtime import metrics as _metrics
from .._runtime import workers as _workers
from .._runtime.emitter import EventEmitter
from .._runtime.log import announce
from .._runtime.net import Target, check_port, format_host_port, parse_address
from ..request import Request
from ..upgrade import PathFilter, UpgradeHandler
from .accept import Acceptor, open_file_limit, pending_cap, raise_open_file_limit
from .connection import Admission, Connection
from .context import Context, Response
from .routing import Handler, Router
from .static import StaticFiles

if TYPE_CHECKING:
    from ..backplane import Backplane

__all__ = ["Server", "create_server"]

logger = logging.getLogger("ws.http")

_H = TypeVar("_H", bound=Handler)

#: The WebSocket factories ``http.Server`` had before ``ws.http`` stopped
#: importing the layers above it, and what to write instead.
_MOVED = {
    "ws": "wss = WebSocketServer(server=server, path=path) (from ws import WebSocketServer), "
    "then wss.on('connection', handler)",
    "websockets": "websockets(server, {...}) (from ws.styles.endpoints import websockets)",
    "load_websockets": "load_websockets(server, folder) (from ws.styles.handlers import load_websockets)",
    "route_ws": "route_ws(server, path, ...) (from ws.styles.routes import route_ws), also as @route_ws(server, path)",
    "websocket": "websocket(server, name) (from ws.styles.connections import websocket)",
}


class _Moved:
    """A WebSocket factory that moved out of ``Server``: reading it says what to write instead.

    A descriptor per name, not a ``__getattr__``: with one, every attribute
    read of a server (its connections ask it several per request) took
    CPython's slower lookup (about 4% of a handshake's instructions).
    """

    __slots__ = ("name", "hint")

    def __init__(self, name: str, hint: str) -> None:
        self.name = name
        self.hint = hint

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        raise AttributeError(
            f"http.Server.{self.name}() is gone (ws.http no longer imports the WebSocket layers); write: {self.hint}"
        )


class Lifecycle(enum.Enum):
    """Where a ``Server`` is: NEW -> STARTING -> LISTENING -> CLOSING -> CLOSED (-> STARTING again)."""

    #: Made, never served.
    NEW = "new"
    #: Bound (``serve()`` returned or is returning); the loop starts accepting.
    STARTING = "starting"
    #: Accepting connections.
    LISTENING = "listening"
    #: Not accepting; waiting for busy connections to answer (at most ``close_timeout``).
    CLOSING = "closing"
    #: Every socket closed; ``serve()`` may start it again.
    CLOSED = "closed"


_IDLE_STATES = (Lifecycle.NEW, Lifecycle.CLOSED)


def _backplane(option: Any) -> Any:
    """``backplane=`` (a URL or object), else ``WS_BACKPLANE``, else ``None`` (nothing imported)."""
    if option is None and not os.environ.get("WS_BACKPLANE", "").strip():
        return None
    from ..backplane import backplane_from

    return backplane_from(option)


def _swallow(future: asyncio.Future[Any] | concurrent.futures.Future[Any]) -> None:
    """Mark a future's exception as seen (it was logged where it happened)."""
    if not future.cancelled():
        future.exception()


_OPTIONS = (
    "network",
    "ssl",
    "max_body_size",
    "max_header_size",
    "max_header_count",
    "header_timeout",
    "keep_alive_timeout",
    "close_timeout",
    "write_timeout",
    "backlog",
    "max_pending_handshakes",
    "raise_file_limit",
    "backplane",
)


class _UpgradeEvent:
    """Hands an upgrade that no registered handler takes to the server's ``'upgrade'`` listeners.

    Node's ``server.on('upgrade', (request, socket, head) => ...)`` with
    ``wss.handleUpgrade(...)``: without it the listener was accepted and never
    called, and the client got a 404.  The listener owns ``transport`` from
    then on: it hands it to ``handle_upgrade`` or writes a refusal and closes it.
    """

    __slots__ = ("_server",)

    def __init__(self, server: Server) -> None:
        self._server = server

    def handle_upgrade(self, request: Request, transport: asyncio.Transport, head: bytes) -> None:
        self._server.emit("upgrade", request, transport, head)


class Server(EventEmitter):
    """An HTTP/1.1 server with routes, static files and WebSocket upgrades.

    Events: ``'listening'`` (address), ``'request'`` (ctx, before routing: a
    synchronous listener that answers skips the routes), ``'upgrade'``
    (request, transport, head: an upgrade no handler took, as in Node),
    ``'error'`` (exception) and ``'close'``.  It is a ``ws.upgrade.UpgradeHost``:
    ``WebSocketServer(server=this_server, path=...)`` attaches to it.
    """

    _loop: asyncio.AbstractEventLoop

    def __init__(
        self,
        address: str | int | Mapping[str, Any] | None = None,
        *,
        network: str = "tcp",
        ssl: Any = None,
        max_body_size: int = 1024 * 1024,
        max_header_size: int = 16 * 1024,
        max_header_count: int = 100,
        header_timeout: float | None = 10.0,
        keep_alive_timeout: float | None = 5.0,
        close_timeout: float | None = 5.0,
        write_timeout: float | None = 10.0,
        backlog: int = 511,
        max_pending_handshakes: int | None = 1024,
        raise_file_limit: bool = True,
        backplane: Any = None,
    ) -> None:
        super().__init__()
        config: dict[str, Any] = dict(
            network=network,
            ssl=ssl,
            max_body_size=max_body_size,
            max_header_size=max_header_size,
            max_header_count=max_header_count,
            header_timeout=header_timeout,
            keep_alive_timeout=keep_alive_timeout,
            close_timeout=close_timeout,
            write_timeout=write_timeout,
            backlog=backlog,
            max_pending_handshakes=max_pending_handshakes,
            raise_file_limit=raise_file_limit,
            backplane=backplane,
        )
        if isinstance(address, Mapping):
            # The JSH form: Server({'network': 'tcp', 'address': ':8080', ...}).
            unknown = set(address) - set(_OPTIONS) - {"address"}
            if unknown:
                raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}")
            config.update(address)
            address = address.get("address")
        if address is None:
            address = "127.0.0.1:3000"
        self.network: str = config["network"]
        self._target: Target = parse_address(self.network, address)
        self._ssl = config["ssl"]
        self.max_body_size: int = config["max_body_size"]
        self.max_header_size: int = config["max_header_size"]
        self.max_header_count: int = config["max_header_count"]
        self.header_timeout: float | None = config["header_timeout"]
        self.keep_alive_timeout: float | None = config["keep_alive_timeout"]
        self.close_timeout: float | None = config["close_timeout"]
        # A connection whose unsent bytes make no progress for this long is dropped.
        self.write_timeout: float | None = config["write_timeout"]
        if self.write_timeout is not None and self.write_timeout <= 0:
            raise ValueError(f"write_timeout must be positive or None, got {self.write_timeout!r}")
        self.backlog: int = config["backlog"]
        # At most this many connections may still be sending their request head.
        self.max_pending_handshakes: int | None = config["max_pending_handshakes"]
        if self.max_pending_handshakes is not None and self.max_pending_handshakes < 1:
            raise ValueError(f"max_pending_handshakes must be positive or None, got {self.max_pending_handshakes!r}")
        self.raise_file_limit: bool = config["raise_file_limit"]
        # The cap in force: max_pending_handshakes, lowered at serve() to half the open-file limit.
        self._pending_cap = self.max_pending_handshakes

        self._loop = _loop.bind()
        self._ref = _loop.Ref(self._loop)
        self._router = Router()
        self._upgrades: dict[str | None, UpgradeHandler] = {}
        self._upgrade_event = _UpgradeEvent(self)
        self._connections: set[Connection] = set()
        # Connections waiting for (the rest of) a request head: new ones, and
        # keep-alive ones whose next head has begun.  Only this object writes it.
        self._pending: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # What accepts on each socket: our Acceptor on selector loops, else asyncio's server.
        self._listeners: list[Acceptor | asyncio.AbstractServer] = []
        self._sockets: list[socket.socket] = []
        self._state = Lifecycle.NEW
        # close() was called while STARTING: close as soon as listening.
        self._close_requested = False
        self._closed_waiters: list[asyncio.Future[None]] = []
        self._force_timer: asyncio.TimerHandle | None = None
        self._unix_inode: int | None = None
        self._shutdown_hook = self._on_shutdown
        # This server is the one a worker process serves with workers=N: tell the parent once listening.
        self._reports_to_parent = False
        #: The backplane the WebSocket endpoints on this server share (``backplane=``, else
        #: ``WS_BACKPLANE``, else ``None``): started by ``serve()``, closed by ``close()``.
        self.backplane: Backplane | None = _backplane(config["backplane"])
        self._backplane_held = False
        self._release: asyncio.Task[None] | None = None

    # -- addresses --

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server and its connections run on."""
        return self._loop

    @property
    def listening(self) -> bool:
        """Whether the server accepts connections."""
        return self._state is Lifecycle.LISTENING

    @property
    def secure(self) -> bool:
        """Whether the server speaks TLS (https:, wss:)."""
        return self._ssl is not None

    @property
    def address(self) -> str | None:
        """The bound ``'host:port'`` (the path for unix sockets); ``None`` before binding."""
        if not self._sockets:
            return None
        if isinstance(self._target, str):
            return self._target
        name = self._sockets[0].getsockname()
        return format_host_port(name[0], name[1])

    @property
    def host(self) -> str | None:
        """The bound host (``None`` before binding and for unix sockets)."""
        if not self._sockets or self.network == "unix":
            return None
        return str(self._sockets[0].getsockname()[0])

    @property
    def port(self) -> int | None:
        """The bound port (``None`` before binding and for unix sockets)."""
        if not self._sockets or self.network == "unix":
            return None
        return int(self._sockets[0].getsockname()[1])

    @property
    def worker(self) -> _workers.Worker | None:
        """Which worker process this is (``index`` 1 to ``count``) under ``serve(workers=N)``; ``None`` otherwise."""
        return _workers.current()

    @property
    def url(self) -> str | None:
        """``http://host:port`` (or https) once bound, handy in logs and tests."""
        if self.network == "unix" or self.address is None:
            return None
        return f"{'https' if self._ssl is not None else 'http'}://{self.address}"

    # -- routes --

    def route(self, method: str, path: str, handler: Handler | None = None) -> Any:
        """Register ``handler(ctx)`` for ``method`` on ``path``; a decorator without ``handler``.

        ``path`` is matched against the whole request path (query
        excluded); a ``:name`` or ``{name}`` part matches up to the next
        ``/`` and lands in ``ctx.params`` (``ws.http.routing``).  Handlers
        may be plain or ``async def`` functions.
        """
        method = method.upper()

        def register(fn: _H) -> _H:
            if not callable(fn):
                raise TypeError(f"handler must be callable, not {fn!r}")
            self._router.add(method, path, fn)
            return fn

        return register if handler is None else register(handler)

    def get(self, path: str, handler: Handler | None = None) -> Any:
        """``route('GET', ...)``; HEAD requests are answered by GET routes too."""
        return self.route("GET", path, handler)

    def post(self, path: str, handler: Handler | None = None) -> Any:
        """``route('POST', ...)``."""
        return self.route("POST", path, handler)

    def put(self, path: str, handler: Handler | None = None) -> Any:
        """``route('PUT', ...)``."""
        return self.route("PUT", path, handler)

    def delete(self, path: str, handler: Handler | None = None) -> Any:
        """``route('DELETE', ...)``."""
        return self.route("DELETE", path, handler)

    def patch(self, path: str, handler: Handler | None = None) -> Any:
        """``route('PATCH', ...)``."""
        return self.route("PATCH", path, handler)

    def head(self, path: str, handler: Handler | None = None) -> Any:
        """``route('HEAD', ...)``, for a HEAD answer other than the GET route's (the HTTP method)."""
        return self.route("HEAD", path, handler)

    def static(self, prefix: str, root: str | os.PathLike[str], *, index: str | None = "index.html") -> StaticFiles:
        """Serve the files below folder ``root`` at paths under ``prefix`` (GET/HEAD)."""
        files = StaticFiles(prefix, root, index=index)
        self._router.mount(files)
        return files

    def metrics(self, path: str = "/metrics", *, registry: Any = None) -> None:
        """Serve Prometheus metrics on GET ``path``, and turn metrics on (``ws.metrics.enable(registry)``).

        The route only renders ``registry`` (``prometheus_client.REGISTRY``
        by default: ws's metrics beside the application's own), as text or
        as OpenMetrics, whichever the scraper's ``Accept`` asks for.  Under
        ``serve(workers=N)`` it shows every worker's (``ws.metrics``).
        Call it before ``serve()``.  Needs ``pip install 'ws-js[metrics]'``.
        """
        _metrics.enable(registry)

        def scrape(ctx: Context) -> None:
            body, content_type = _metrics.exposition(ctx.request.get_header("accept"), registry)
            ctx.bytes(200, body, content_type)

        self.get(path, scrape)

    # -- the upgrade interface (ws.upgrade.UpgradeHost) --

    def add_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        """Hand upgrade requests for ``path`` (``None``: any other path) to ``handler``.

        A catch-all that is a ``ws.upgrade.PathFilter`` takes only the paths
        its ``handles_path`` accepts.  A second handler on one path raises
        ``ValueError``.
        """
        if path is not None and not path.startswith("/"):
            raise ValueError(f"upgrade path must start with '/': {path!r}")
        if path in self._upgrades:
            raise ValueError(f"an upgrade handler is already registered on {path!r}")
        self._upgrades[path] = handler

    def remove_upgrade_handler(self, path: str | None, handler: UpgradeHandler) -> None:
        """Undo ``add_upgrade_handler`` (no error when it is not registered)."""
        if self._upgrades.get(path) is handler:
            del self._upgrades[path]

    # -- the connection interface (ws.http.connection.Owner; not for applications) --

    def admit_connection(self, conn: Connection) -> Admission:
        """A new connection: take it, refuse it (not serving) or answer 503 (too many pending)."""
        if self._state not in (Lifecycle.LISTENING, Lifecycle.STARTING):
            return "refused"
        if self._pending_cap is not None and len(self._pending) >= self._pending_cap:
            return "busy"
        self._connections.add(conn)
        self._pending.add(conn)
        return "admitted"

    def _room_for_handshake(self, handshaking: int) -> bool:
        """Whether one more connection may start its TLS handshake while ``handshaking`` are in theirs.

        Those count against ``max_pending_handshakes`` with the connections
        waiting for a request head: a peer that never sends its ClientHello
        holds a descriptor as long as one that never ends its head.
        """
        cap = self._pending_cap
        return cap is None or len(self._pending) + handshaking < cap

    def wait_for_head(self, conn: Connection) -> bool:
        """``conn`` waits for the rest of a request head: count it; ``False`` if too many already do."""
        pending = self._pending
        if conn in pending:
            return True
        if self._pending_cap is not None and len(pending) >= self._pending_cap:
            return False
        pending.add(conn)
        return True

    def release_pending(self, conn: Connection) -> None:
        """``conn`` no longer waits for its request head (read, or closing)."""
        self._pending.discard(conn)

    def connection_gone(self, conn: Connection) -> None:
        """``conn`` closed or was handed to an upgrade handler: it is not ours to close any more."""
        self._pending.discard(conn)
        self._connections.discard(conn)
        if self._state is Lifecycle.CLOSING:
            self._check_closed()

    def make_context(self, request: Request, send: Callable[[Response], None]) -> Context:
        """The ``ctx`` a request's handler gets."""
        return Context(request, self, send, loop=self._loop)

    def intercept_request(self, ctx: Context) -> bool:
        """Emit ``'request'``; whether a listener answered (then the routes are skipped)."""
        if not self._events.get("request"):
            return False
        self.emit("request", ctx)
        return ctx.responded

    def resolve_route(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], list[str]]:
        """``(handler, params, allowed_methods)`` of a request (see ``routing.Router.resolve``)."""
        return self._router.resolve(method, path)

    def upgrade_handler_for(self, path: str) -> UpgradeHandler | None:
        """The handler an upgrade request on ``path`` goes to, if any."""
        handler = self._upgrades.get(path)
        if handler is None:
            handler = self._upgrades.get(None)
            # A catch-all may serve only some paths (the patterns of ws.styles.routes).
            if isinstance(handler, PathFilter) and not handler.handles_path(path):
                handler = None
        if handler is None and self._events.get("upgrade"):
            return self._upgrade_event
        return handler

    def run_task(self, coro: Awaitable[None]) -> None:
        """Run a connection's coroutine (an async handler, a file stream) as a task the server tracks."""
        task: asyncio.Task[None] = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- serving --

    def _bind(self, *, port: int | None = None, reuse_port: bool = False, listen: bool = True) -> list[socket.socket]:
        """Create, bind and listen synchronously, so errors reach the caller at once.

        ``port`` replaces the configured one; ``reuse_port`` sets ``SO_REUSEPORT`` (workers);
        ``listen=False`` only binds (the workers' parent reserving the port).
        """
        if isinstance(self._target, str):
            return [self._bind_unix(self._target)]
        host, port = self._target[0], self._target[1] if port is None else port
        shown = format_host_port(host or "*", port)
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise OSError(exc.errno, f"cannot resolve {shown}: {exc.strerror}") from None
        sockets: list[socket.socket] = []
        seen: set[tuple[int, Any]] = set()  # (family, sockaddr)
        bound_port = port
        try:
            for family, kind, proto, _, sockaddr in infos:
                if (family, sockaddr) in seen:
                    continue
                seen.add((family, sockaddr))
                try:
                    sock = socket.socket(family, kind, proto)
                except OSError:
                    continue  # e.g. no IPv6 on this host
                sockets.append(sock)
                if os.name == "posix":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    _workers.reuse_port(sock)
                if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                # With port 0 and several interfaces, use one port for all.
                address = (sockaddr[0], bound_port, *sockaddr[2:])
                try:
                    sock.bind(address)
                except OSError as exc:
                    where = format_host_port(str(sockaddr[0]), bound_port)
                    raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
                bound_port = sock.getsockname()[1]
                if listen:
                    sock.listen(self.backlog)
                sock.setblocking(False)
            if not sockets:
                raise OSError(errno.EADDRNOTAVAIL, f"no usable address for {shown}")
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return sockets

    def _bind_unix(self, path: str) -> socket.socket:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(mode):
                raise OSError(errno.EADDRINUSE, f"cannot listen on {path}: a file is in the way")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)  # a stale socket of a dead process
            except OSError:
                pass
            else:
                raise OSError(errno.EADDRINUSE, f"cannot listen on {path}: address already in use")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.bind(path)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {path}: {exc.strerror}") from None
            self._unix_inode = os.stat(path).st_ino
            sock.listen(self.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def listen(
        self,
        port: int | str | os.PathLike[str] | Mapping[str, Any] | Callable[..., Any] | None = None,
        host: str | Callable[..., Any] | None = None,
        backlog: int | Callable[..., Any] | None = None,
        callback: Callable[..., Any] | None = None,
    ) -> Server:
        """Node's ``server.listen(port, host, backlog, callback)``: serve there; returns the server.

        The shapes of Node's ``net.Server.listen``: ``listen(port, callback)``,
        ``listen(port, host, callback)``, ``listen(callback)`` (any free
        port), ``listen({'port': ..., 'host': ..., 'backlog': ..., 'path':
        ...}, callback)``, ``listen(path)`` for a unix socket (a path with a
        ``/``), and ``listen('host:port')`` as ``Server(address)``.  The port and
        host replace the constructor's address; no host means every
        interface, as in Node.  ``callback`` runs once listening.  Unlike
        Node, a taken port raises ``OSError`` here (it is ``serve()``).
        """
        values: list[Any] = [port, host, backlog]
        for index, value in enumerate(values):
            if callable(value) and not isinstance(value, Mapping):
                if callback is not None or any(v is not None for v in values[index + 1 :]):
                    raise TypeError("listen(): the callback comes last, as in listen(port, host, callback)")
                callback, values[index] = value, None
        port, host, backlog = values
        path: Any = None
        if isinstance(port, Mapping):
            if host is not None or backlog is not None:
                raise TypeError("listen(options, callback): the options dict holds port, host, backlog and path")
            unknown = set(port) - {"port", "host", "backlog", "path"}
            if unknown:
                raise TypeError(f"unknown listen() option(s): {', '.join(sorted(unknown))}; Node's are port, host, backlog and path")
            port, host, backlog, path = (port.get(key) for key in ("port", "host", "backlog", "path"))
        elif isinstance(port, os.PathLike) or (isinstance(port, str) and "/" in port):
            port, path = None, port  # Node's listen(path): a unix socket
        elif isinstance(port, str) and not port.strip().lstrip("-").isdigit():
            if host is not None or ":" not in port:
                raise ValueError(
                    f"listen({port!r}): give a port (8080), a port and a host (8080, '127.0.0.1'), "
                    "'host:port', or a unix socket path containing a '/'"
                )
            target = parse_address("tcp", port)  # the 'host:port' of ws.http.Server(address)
            assert not isinstance(target, str)
            host, port = target
        if self._state not in _IDLE_STATES:
            raise RuntimeError(f"listen(): the server is already {self._state.value} on {self.address}")
        if backlog is not None:
            if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
                raise ValueError(f"backlog must be a positive int, got {backlog!r}")
            self.backlog = backlog
        if path is not None:
            if host is not None:
                raise TypeError("listen(path): a unix socket has no host")
            self._target = parse_address("unix", path)
            self.network = "unix"
        else:
            if host is not None and not isinstance(host, str):
                raise TypeError(f"listen(): host must be a str, got {type(host).__name__}")
            self._target = (host or None, check_port(0 if port is None else port, "listen()"))
            self.network = "tcp"
        self.serve(callback)
        return self

    def serve(self, callback: Callable[..., Any] | None = None, *, workers: int | None = None) -> str:
        """Bind and start serving; returns the bound address; ``callback(address)`` runs once listening.

        A taken address raises ``OSError`` here, synchronously, and the
        address (``server.port``...) is known when it returns, in every
        context.  In a plain thread it returns once listening, the process
        staying alive until ``close()`` (Node's ``listen``); inside a running
        loop listening starts on the server's loop and it returns at once
        (``await serve_async()`` also waits for it).

        ``workers=N`` (N > 1) serves in N processes on one port
        (``docs/scaling.md``).  This process becomes their parent: it does
        not serve, and this call does not return; it supervises until
        SIGINT/SIGTERM, then raises ``SystemExit`` with the exit status.  Each
        worker runs the program again and, at this call, serves on the port
        with its own socket (``callback`` and ``'listening'`` run there).
        """
        self._prepare(callback, workers)
        address = self.address  # bound now; a signal may close the server before we return
        assert address is not None
        running = _loop._get_running_loop()
        if running is self._loop:
            self._loop.create_task(self._start()).add_done_callback(_swallow)
        elif running is not None:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).add_done_callback(_swallow)
        else:
            _loop.run_blocking(self._loop, self._start(), timeout=30)
        return address

    async def serve_async(self, callback: Callable[..., Any] | None = None, *, workers: int | None = None) -> str:
        """``serve()`` for coroutines: bind at once, then wait until listening; the address.

        Works from any loop (the server keeps running on its own).  With
        ``workers=N`` the parent supervises as ``serve()`` does, blocking
        this thread, and raises ``SystemExit`` at the end.
        """
        self._prepare(callback, workers)
        if asyncio.get_running_loop() is self._loop:
            return await self._start()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._start(), self._loop))

    def _prepare(self, callback: Callable[..., Any] | None, workers: int | None) -> None:
        """Bind synchronously (errors reach the caller) and enter ``starting``; supervise with workers."""
        if self._state not in _IDLE_STATES:
            raise RuntimeError(f"server is already {self._state.value}")
        count = _workers.check_count(workers)
        if _workers.supervises(count):
            raise SystemExit(self._supervise(count))
        if self._loop.is_closed():
            if self._connections:
                raise RuntimeError("the server's event loop is closed")
            self._loop = _loop.bind()
            self._ref = _loop.Ref(self._loop)
        if self.raise_file_limit:
            raise_open_file_limit()
        self._pending_cap = pending_cap(self.max_pending_handshakes, open_file_limit())
        if count > 1:  # a worker: our own socket on the parent's port
            self._check_workers_possible()
            self._sockets = self._bind(port=_workers.claim(self), reuse_port=True)
            self._reports_to_parent = True
        else:
            self._sockets = self._bind()
        self._state = Lifecycle.STARTING
        self._close_requested = False
        if callback is not None:
            self.once("listening", callback)

    def _check_workers_possible(self) -> None:
        _workers.check_platform()
        if isinstance(self._target, str):
            raise ValueError("workers=N needs a TCP address (the workers share a port), not a unix socket")

    def _supervise(self, count: int) -> int:
        """The parent of ``serve(workers=count)``: reserve the port, run the workers until stopped; the exit status."""
        from .._runtime.supervisor import Supervisor

        self._check_workers_possible()
        stop_timeout = (self.close_timeout if self.close_timeout is not None else 10.0) + 5.0
        supervisor = Supervisor(count, stop_timeout=stop_timeout)
        self._sockets = self._reserve()
        try:
            if self.backplane is None:
                announce(
                    logger, logging.WARNING,
                    "%d workers without a backplane: each worker has its own clients, so broadcast, rooms, "
                    "send-by-id and client counts reach only the clients of the worker they run in, and "
                    "recovery= keeps a history per worker (a client that comes back on another worker is "
                    "not recovered); module globals are per worker too; see docs/scaling.md", count,
                )
            elif not self.backplane.crosses_processes:
                announce(
                    logger, logging.WARNING,
                    "%d workers with an in-process backplane (%s): each worker gets a backplane of its own, so "
                    "broadcast, rooms, send-by-id and client counts reach only the clients of the worker they run "
                    "in; use one that crosses processes (redis://...; see docs/scaling.md)", count, type(self.backplane).__name__,
                )
            return supervisor.run(self.port or 0, self.address or "")
        finally:
            for sock in self._sockets:
                sock.close()
            self._sockets = []

    def _reserve(self) -> list[socket.socket]:
        """The port for the workers: bound with ``SO_REUSEPORT``, not listening (so the parent accepts nothing).

        A bind without ``SO_REUSEPORT`` comes first, and is closed: a server
        still listening there with ``SO_REUSEPORT`` (an earlier run that has
        not stopped) makes it fail, where the workers would silently share
        the port with it.  It also chooses the port when it is 0.
        """
        probe = self._bind(listen=False)
        port = probe[0].getsockname()[1]
        for sock in probe:
            sock.close()
        return self._bind(port=port, reuse_port=True, listen=False)

    async def _start(self) -> str:
        loop = self._loop
        handshake_timeout = self.header_timeout if self._ssl is not None else None
        listener: Acceptor | asyncio.AbstractServer
        try:
            if self.backplane is not None and not self._backplane_held:
                await self.backplane.acquire()  # a clear BackplaneError (not a hang) when unreachable
                self._backplane_held = True
            for sock in self._sockets:
                if Acceptor.supported(loop):
                    # Our own accept loop: it pauses when out of descriptors (ws.http.accept).
                    listener = Acceptor(
                        loop, sock, self._new_connection, ssl=self._ssl,
                        ssl_handshake_timeout=handshake_timeout, room=self._room_for_handshake,
                    )
                    listener.start()
                elif self.network == "unix":
                    listener = await loop.create_unix_server(
                        self._new_connection, sock=sock, ssl=self._ssl, backlog=self.backlog,
                        ssl_handshake_timeout=handshake_timeout,
                    )
                else:
                    listener = await loop.create_server(
                        self._new_connection, sock=sock, ssl=self._ssl, backlog=self.backlog,
                        ssl_handshake_timeout=handshake_timeout,
                    )
                self._listeners.append(listener)
        except Exception as exc:
            logger.error("HTTP server could not start on %s: %s", self.address, exc)
            if self._events.get("error"):
                self.emit("error", exc)
            if self._backplane_held and self.backplane is not None:
                self._backplane_held = False
                self._release = loop.create_task(self.backplane.release())
            for listener in self._listeners:
                listener.close()
            for sock in self._sockets:
                sock.close()
            self._listeners = []
            self._sockets = []
            self._state = Lifecycle.CLOSED
            raise
        self._state = Lifecycle.LISTENING
        self._ref.hold()
        _loop.reactor.on_shutdown(self._shutdown_hook)
        address = self.address
        assert address is not None
        logger.debug("HTTP server listening on %s", address)
        if self._reports_to_parent:
            _workers.report_listening()
        self._emit_kept("listening", address)
        if self._close_requested:
            self._begin_close()
        return address

    def _new_connection(self) -> Connection:
        """The protocol factory of the listening sockets."""
        return Connection(self)

    # -- closing --

    def close(self, callback: Callable[..., Any] | None = None) -> None:
        """Stop listening and close every connection; ``callback()`` once closed.

        Idle connections close at once; one busy answering a request closes
        after its response (forcibly after ``close_timeout``).  Upgraded
        (WebSocket) connections are not touched.  In a plain thread it
        waits until the server is closed; inside a running loop closing
        goes on after it returns (``await close_async()`` to wait for it).
        """
        if callback is not None:
            if self._state not in _IDLE_STATES:
                self.once("close", callback)
            elif self._loop.is_closed():
                callback()
            else:
                self._loop.call_soon_threadsafe(callback)
        running = _loop._get_running_loop()
        if self._loop.is_closed():
            return
        if running is not None:
            _loop.call(self._loop, self._begin_close)
            return
        if self._state in _IDLE_STATES:
            return
        future = asyncio.run_coroutine_threadsafe(self._close_and_wait(), self._loop)
        timeout = (self.close_timeout or 0) + 10
        try:
            future.result(timeout)
        except Exception:
            logger.warning("HTTP server did not close within %s s", timeout)

    async def close_async(self) -> None:
        """``close()`` for coroutines: wait until the server is closed; from any loop."""
        if asyncio.get_running_loop() is self._loop:
            await self._close_and_wait()
        elif not self._loop.is_closed() and self._state not in _IDLE_STATES:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._close_and_wait(), self._loop))

    async def _close_and_wait(self) -> None:
        waiter = self._loop.create_future()
        self._closed_waiters.append(waiter)
        self._begin_close()
        await waiter
        if self._release is not None:
            await asyncio.shield(self._release)

    def _begin_close(self) -> None:
        """Start closing (on the loop); idempotent."""
        if self._state is Lifecycle.STARTING:
            self._close_requested = True
            return
        if self._state is not Lifecycle.LISTENING:
            self._check_closed()
            return
        self._state = Lifecycle.CLOSING
        for listener in self._listeners:
            listener.close()
        self._listeners = []
        for sock in self._sockets:
            sock.close()  # as asyncio's server.close() does: new connections are refused at once
        self._unlink_unix()
        for conn in list(self._connections):
            try:
                conn.server_closing()
            except Exception:
                logger.exception("closing an HTTP connection failed")
                conn.abort()
        if self._connections and self.close_timeout is not None:
            self._force_timer = self._loop.call_later(self.close_timeout, self._force_close)
        self._check_closed()

    def _force_close(self) -> None:
        self._force_timer = None
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()
        self._check_closed()

    def _unlink_unix(self) -> None:
        path = self._target
        if not isinstance(path, str) or self._unix_inode is None:
            return
        try:
            if os.stat(path).st_ino == self._unix_inode:
                os.unlink(path)
        except OSError:
            pass
        self._unix_inode = None

    def _check_closed(self) -> None:
        if self._state is Lifecycle.CLOSING and not self._connections:
            self._state = Lifecycle.CLOSED
            if self._force_timer is not None:
                self._force_timer.cancel()
                self._force_timer = None
            for sock in self._sockets:
                sock.close()
            self._sockets = []
            self._ref.release()
            if self._backplane_held and self.backplane is not None:
                self._backplane_held = False
                self._release = self._loop.create_task(self.backplane.release())
            _loop.reactor.remove_shutdown(self._shutdown_hook)
            logger.debug("HTTP server closed")
            self.emit("close")
        if self._state in _IDLE_STATES:
            waiters, self._closed_waiters = self._closed_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _on_shutdown(self) -> None:
        """SIGINT/SIGTERM on the reactor: close, on our own loop."""
        _loop.call(self._loop, self._begin_close)

    # -- keep-alive and context managers --

    def ref(self) -> Server:
        """Keep the process alive while serving (the default)."""
        self._ref.ref()
        return self

    def unref(self) -> Server:
        """Let a plain script exit even though this server still listens."""
        self._ref.unref()
        return self

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        # In a plain thread this waits; inside a loop a plain ``with`` cannot
        # wait, and closing simply goes on (use ``async with`` to wait).
        self.close()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_async()

    def __repr__(self) -> str:
        target = self._target
        where = self.address or (target if isinstance(target, str) else format_host_port(target[0] or "*", target[1]))
        return f"<ws.http.Server {where} {self._state.value}>"


for _name, _hint in _MOVED.items():
    setattr(Server, _name, _Moved(_name, _hint))
del _name, _hint


def create_server(
    options: Mapping[str, Any] | Callable[..., Any] | None = None, listener: Callable[..., Any] | None = None
) -> Server:
    """Node's ``http.createServer([options][, listener])``: a ``Server`` that does not listen yet.

    ``server.listen(port, host, callback)`` starts it (or ``serve()``).
    ``options`` are the constructor's, as a dict; ``listener`` is added as a
    ``'request'`` listener, which gets the ``ctx`` of ``ws.http`` (one
    object: ``ctx.request``, ``ctx.text(status, body)``, ...), not Node's
    ``(req, res)``.
    """
    if listener is None and callable(options) and not isinstance(options, Mapping):
        options, listener = None, options
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"create_server(options, listener): options must be a dict, got {type(options).__name__}")
    if listener is not None and not callable(listener):
        raise TypeError(f"create_server(options, listener): listener must be callable, got {type(listener).__name__}")
    server = Server(options)
    if listener is not None:
        server.on("request", listener)
    return server


createServer = create_server
