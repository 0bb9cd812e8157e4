"""``WebSocketServer``: accepts WebSocket upgrades on a path of an HTTP server.

The HTTP server (``ws.http.Server``) parses the request with h11 and hands
over upgrades on our path with the transport and any bytes already read.
Here the handshake is decided in one call to
``ws.protocol.handshake.accept`` (``websockets`` validates the request, the
``Origin`` is checked against ``allowed_origins``, then ``verify_client`` and
``handle_protocols``, the user's hooks, run), and this
module renders the result: either a 101 goes out and a ``WebSocket`` is born,
or a plain-text HTTP error answers and the connection closes.  A
``verify_client`` that answers later (Node's ``(info, callback)``, an
``async def``) makes it wait, reading nothing, at most ``verify_timeout``
seconds.  Before all of that, ``max_connections`` and ``max_connections_per_ip``
(``ws.protocol.limits``, counted here) may refuse the request with a 503 or a
429, without parsing it or calling user code.  Nothing on this path may
raise into the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .protocol import handshake
from .protocol.handshake import (
    DEFAULT_MAX_PAYLOAD_DEFLATE, Accepted, HandshakeResult, Pending, Policy, Refused, VerifyForm, VerifyInfo,
    verify_form,
)
from .protocol.limits import DEFAULT_RETRY_AFTER, ConnectionLimits, Slot
from .protocol.origins import AllowedOrigins, OriginEntry
from .protocol.writer import FIN_BINARY, FIN_TEXT, serialize as _serialize
from ._runtime import loop as _loop
from ._runtime import metrics as _metrics
from ._runtime import workers as _workers
from ._runtime.budget import DEFAULT_MAX_TOTAL_BUFFERED, SendBudget, budget_for
from ._runtime.compat import normalize_options
from ._runtime.emitter import MAX_HELD_EVENTS, EventEmitter
from ._runtime.log import ORIGIN_NOT_ALLOWED, refusal_cause, report_error, report_event
from ._runtime.rate import rate_policy
from .connection.keepalive import DEFAULT_MESSAGE_TIMEOUT, Heartbeat, check_message_timeout
from .http.responses import http_date, plain_response
from .forwarded import TrustedProxies, forwarded_header
from .events import ReadyState
from .request import Request
from .upgrade import UpgradeHost
from ._runtime.net import format_host_port
from .connection.metered import MeteredWebSocket
from .connection.websocket import DEFAULT_MAX_PAYLOAD, WebSocket, check_byte_limit

if TYPE_CHECKING:
    from .backplane import Backplane, Member
    from .backplane.history import Recovery
    from .cluster import PathCluster
    from .protocol._websockets import Server as ServerProtocol

__all__ = ["WebSocketServer", "VerifyInfo"]

logger = logging.getLogger("ws.server")

#: Seconds at most a server made in a plain script keeps the ``'connection'``s nobody listened to,
#: for the listener the script's next lines attach (sooner once the script's main thread has ended).
KEEP_CONNECTIONS = 5.0

SERVER_OPTIONS = frozenset(
    {
        "server",
        "port",
        "host",
        "path",
        "client_tracking",
        "verify_client",
        "verify_timeout",
        "handle_protocols",
        "protocols",
        "max_payload",
        "max_fragments",
        "per_message_deflate",
        "no_server",
        "ping_interval",
        "ping_timeout",
        "close_timeout",
        "high_water_mark",
        "low_water_mark",
        "max_buffered_amount",
        "max_total_buffered_amount",
        # connection limits (ws.protocol.limits) and the client's address behind proxies (ws.forwarded)
        "max_connections",
        "max_connections_per_ip",
        "per_ip_ipv6_prefix",
        "retry_after",
        "trusted_proxies",
        "forwarded_header",
        "message_timeout",
        "rate_limit",
        "byte_rate_limit",
        "rate_limit_action",
        "workers",
        "backplane",
        "recovery",
        "allowed_origins",
    }
)

DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
#: How long a handshake waits for a ``verify_client`` that answers later (a
#: callback, a coroutine) before a 503 and an ``'error'``: a hook that never
#: answers would otherwise hold the connection until the client gives up.
DEFAULT_VERIFY_TIMEOUT = 10.0


def _recovery_option(value: Any) -> "Recovery | None":
    """``recovery=``: a ``ws.Recovery``, ``True`` for the defaults, or ``None``/``False``."""
    if value is None or value is False:
        return None
    from .backplane.history import Recovery

    if value is True:
        return Recovery()
    if isinstance(value, Recovery):
        return value
    raise TypeError(f"recovery must be a ws.Recovery (or True for its defaults), got {type(value).__name__}")


class WebSocketServer(EventEmitter):
    """A WebSocket endpoint on an HTTP server.

    ``WebSocketServer(server=http_server, path='/ws', ...)`` attaches to an
    existing ``ws.http.Server``; ``WebSocketServer(port=8080)`` makes its own
    (``workers=N`` serves it in N processes, see ``ws.http.Server.serve``);
    ``WebSocketServer(no_server=True)`` leaves routing to ``handle_upgrade``.
    Options may also come as one dict (``WebSocketServer({'server': s})``)
    and in their camelCase spellings.

    Events: ``'connection'`` ``(socket, request)``, ``'headers'``
    ``(headers, request)``, ``'error'`` ``(exc)``, ``'listening'``, ``'close'``.
    """

    _loop: asyncio.AbstractEventLoop  # always bound: the HTTP server's loop, or the running one
    _verify_client: Callable[..., Any] | None = None
    _verify_form: VerifyForm = "sync"  # how _verify_client answers (set with it)
    _allowed_origins: AllowedOrigins | None = None

    def __init__(self, options: dict[str, Any] | None = None, callback: Callable[..., Any] | None = None, **kwargs: Any) -> None:
        super().__init__()
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict, got {type(options).__name__}")
        opts = normalize_options({**(options or {}), **kwargs})
        unknown = set(opts) - SERVER_OPTIONS
        if unknown:
            raise TypeError(f"unknown WebSocketServer option(s): {', '.join(sorted(unknown))}")
        server = opts.get("server")
        port = opts.get("port")
        no_server = bool(opts.get("no_server"))
        if (server is not None) + (port is not None) + no_server != 1:
            raise TypeError('One and only one of the "port", "server", or "no_server" options must be specified')
        workers = opts.get("workers")
        if workers not in (None, 1) and port is None:
            raise TypeError("workers goes with port=; a server you made serves its workers with server.serve(workers=N)")
        if server is not None and not isinstance(server, UpgradeHost):
            server = _adapt_server(server)
        path = opts.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path must be a string starting with '/', got {path!r}")
        handle = opts.get("handle_protocols")
        if handle is not None and not callable(handle):
            raise TypeError(f"handle_protocols must be callable, got {type(handle).__name__}")
        verify_timeout = opts.get("verify_timeout", DEFAULT_VERIFY_TIMEOUT)
        if verify_timeout is not None and (
            isinstance(verify_timeout, bool) or not isinstance(verify_timeout, (int, float)) or verify_timeout <= 0
        ):
            raise ValueError(f"verify_timeout must be a positive number of seconds or None, got {verify_timeout!r}")

        self.path = path
        self.client_tracking = bool(opts.get("client_tracking", True))
        self.verify_client = opts.get("verify_client")  # checked by its setter: which form, or a TypeError
        self.allowed_origins = opts.get("allowed_origins")  # checked by its setter: a malformed entry is a ValueError
        #: Seconds a handshake waits for a ``verify_client`` that answers later; ``None``: no limit.
        self.verify_timeout: float | None = verify_timeout
        self._verifying: set[asyncio.Task[None]] = set()  # handshakes waiting for verify_client
        self.handle_protocols = handle
        protocols = opts.get("protocols")
        if isinstance(protocols, str):
            protocols = [protocols]  # one name, not its letters
        self.protocols: list[str] | None = list(protocols) if protocols else None
        self._max_payload: int | None = opts.get("max_payload", DEFAULT_MAX_PAYLOAD)
        # A compressed connection's limit: the user's max_payload, else a smaller default.
        self._deflate_max_payload: int | None = opts.get("max_payload", DEFAULT_MAX_PAYLOAD_DEFLATE)
        check_byte_limit("max_buffered_amount", opts.get("max_buffered_amount"))
        check_byte_limit("max_total_buffered_amount", opts.get("max_total_buffered_amount"))
        #: Unsent bytes all the sockets of the servers on this loop with the same value may hold
        #: together (``None``: no budget); past it, the one holding the most is dropped (1008).
        self.max_total_buffered_amount: int | None = opts.get("max_total_buffered_amount", DEFAULT_MAX_TOTAL_BUFFERED)
        self.per_message_deflate = opts.get("per_message_deflate", False)
        self._socket_options: dict[str, Any] = {
            key: opts[key]
            for key in (
                "max_payload", "max_fragments", "close_timeout", "high_water_mark", "low_water_mark",
                "max_buffered_amount",
            )
            if key in opts
        }
        rate = rate_policy(opts)  # checked now, not at the first message
        if rate is not None:
            self._socket_options["rate_policy"] = rate
        self._sockets: set[WebSocket] = set()
        self._use_limits(opts)
        #: Recorded path served on another loop than its cluster's (ws.asgi): sockets accepted here whose
        #: join the recovery has not processed yet.  The stream's deliveries to every client skip them.
        self._joining: set[WebSocket] = set()
        self._finished_hook = self._socket_closed  # bound once: every socket holds the same hook
        self._policy_cache: tuple[tuple[object, ...], Policy] | None = None
        # The send budget of the last handshake: (loop, limit, budget), asked of budget_for() again when either changed.
        self._budget_cache: tuple[asyncio.AbstractEventLoop, int, SendBudget] | None = None
        self._closed = False
        self._close_emitted = False
        self._close_callbacks: list[Callable[[], Any]] = []
        self._closed_future: asyncio.Future[None] | None = None
        self._own_server: Any = None

        if server is not None:
            self._loop = server.loop
        else:
            self._loop = _loop.bind()
        ping_interval = opts.get("ping_interval", DEFAULT_PING_INTERVAL)
        ping_timeout = opts.get("ping_timeout", DEFAULT_PING_TIMEOUT if ping_interval else None)
        message_timeout = opts.get("message_timeout", DEFAULT_MESSAGE_TIMEOUT)
        check_message_timeout(message_timeout)
        # One timer for the server's sockets: keepalive pings and the message_timeout sweep.
        self._heartbeat = (
            Heartbeat(self._loop, ping_interval or None, ping_timeout, message_timeout)
            if ping_interval or message_timeout
            else None
        )
        # Shutdown hooks run on the reactor; this server may live on another loop.
        self._shutdown_hook = lambda: _loop.call(self._loop, self._going_away)
        _loop.reactor.on_shutdown(self._shutdown_hook)
        # Made in a plain script, the server serves while the script's next lines attach its listeners
        # (Node listens on a later tick): a 'connection' nobody hears yet is kept for them (_keep_for_script).
        self._keeping = False

        if port is not None:
            from .http import Server as HttpServer

            host = opts.get("host") or "127.0.0.1"
            # Its own HTTP server owns the backplane: serving starts it (or fails clearly), close() closes it.
            own = server = HttpServer(address=format_host_port(host, port), backplane=opts.get("backplane"))
            self._own_server = own
            self._loop = own.loop
            own.on("listening", lambda *args: self._emit_kept("listening"))
            own.on("error", lambda exc: self.emit("error", exc))
            if callback is not None:
                self.once("listening", callback)
        # An UpgradeHost (or None); address() also reads its host/port when it has them.
        self.server: Any = server
        self._cluster: PathCluster | None = None
        # The parent of workers=N serves no client: it neither joins the cluster nor returns from serve().
        if port is None or not _workers.supervises(workers):
            self._use_backplane(opts.get("backplane"), port is not None, _recovery_option(opts.get("recovery")))
        # Handshakes last: from here on the loop's thread may run them while this one is still returning
        # (a plain script's reactor serves at once), so every attribute they read must be set by now.
        if not _loop.in_loop(self._loop):
            self._keeping = True
            _loop.call(self._loop, self._keep_for_script)
        if server is not None:
            server.add_upgrade_handler(path, self)
        if port is not None:
            try:
                own.serve(workers=workers)  # with workers > 1 the parent supervises here, and never returns
            except Exception:  # the port is taken, the backplane unreachable...: nothing is left behind
                _loop.reactor.remove_shutdown(self._shutdown_hook)
                if self._cluster is not None:
                    self._cluster.close()
                raise

    # -- public API ---------------------------------------------------------------

    @property
    def verify_client(self) -> Callable[..., Any] | None:
        """The hook that admits or refuses each handshake (``None``: all are admitted).

        ``verify(info)`` returns the verdict; Node's ``verify(info,
        callback)`` calls ``callback(result, code, name, headers)``; an
        ``async def verify(info)`` is awaited.  The form is told by the
        parameters when the hook is set, and a hook that fits none raises
        ``TypeError`` then.
        """
        return self._verify_client

    @verify_client.setter
    def verify_client(self, hook: Callable[..., Any] | None) -> None:
        if hook is not None:
            if not callable(hook):
                raise TypeError(f"verify_client must be callable, got {type(hook).__name__}")
            self._verify_form = verify_form(hook)
        self._verify_client = hook

    @property
    def allowed_origins(self) -> tuple[OriginEntry, ...] | None:
        """The pages that may open a WebSocket here, as given; ``None``: every page (no ``Origin`` check).

        A handshake whose ``Origin`` is not listed gets a 403 before
        ``verify_client`` runs.  Entries: exact origins
        (``'https://app.example.com'``), ``'https://*.example.com'`` (any
        subdomain), ``None`` (clients that send no ``Origin``), ``'null'``.
        Assigning checks the entries, as the constructor does (``ValueError``).
        """
        allowed = self._allowed_origins
        return None if allowed is None else allowed.entries

    @allowed_origins.setter
    def allowed_origins(self, value: "AllowedOrigins | Iterable[OriginEntry] | str | None") -> None:
        self._allowed_origins = AllowedOrigins.of(value)

    @property
    def clients(self) -> set[WebSocket] | None:
        """Open sockets accepted by this server, or ``None`` with ``client_tracking=False``."""
        return self._sockets if self.client_tracking else None

    def address(self) -> dict[str, Any] | str | None:
        """Where the HTTP server listens, shaped as Node's ``server.address()``.

        ``{'address': '127.0.0.1', 'family': 'IPv4', 'port': 8080}`` for TCP
        (so ``WebSocketServer(port=0)`` users can learn the port), the path
        for a unix socket, ``None`` before listening or with ``no_server``.
        """
        server = self.server
        if server is None or getattr(server, "address", None) is None:
            return None
        if getattr(server, "network", "tcp") == "unix":
            path: str = server.address
            return path
        host = server.host
        return {"address": host, "family": "IPv6" if ":" in host else "IPv4", "port": server.port}

    def should_handle(self, request: Request) -> bool:
        """Whether ``request`` targets this server's path."""
        return request.path == self.path

    def handle_upgrade(
        self,
        request: Request,
        transport: asyncio.Transport,
        head: bytes = b"",
        callback: Callable[[WebSocket, Request], Any] | None = None,
        *,
        slot: Slot | None = None,
    ) -> None:
        """Complete a handshake for an upgrade the caller routed here (``no_server``).

        ``callback(socket, request)`` replaces the ``'connection'`` event when given.
        ``slot``: what :meth:`admit` gave this request, when the caller admitted
        it first; the handshake takes it over (gives it back when refused, the
        socket holds it until closed).  Without one the handshake admits the
        request itself.
        """
        _loop.call(self._loop, self._upgrade, request, transport, head, callback, slot)

    def admit(self, request: Request) -> Slot | Refused:
        """Resolve ``request.client_ip`` (``trusted_proxies``) and take a connection slot, or the refusal.

        The refusal: **503** when the server is closed or at
        ``max_connections``, **429** at ``max_connections_per_ip``; nothing is
        taken then.  For hosts that run code of their own before the handshake
        (the connections style's connect handlers): admitting first gives that
        code the client's address and keeps ``max_connections`` true while it
        runs.  The caller passes the slot on to ``handle_upgrade(...,
        slot=slot)`` or calls ``slot.release()``.  Call it on the server's loop.
        """
        if self._trusted_proxies is not None:
            request.resolve_client_ip(self._trusted_proxies, self._forwarded_header)
        if self._closed:
            return Refused(503, "WebSocket server is closed")
        return self._limits.admit(request)

    def broadcast(
        self, data: str | bytes, *, exclude: WebSocket | Iterable[WebSocket] | None = None, local: bool = False
    ) -> int:
        """Send ``data`` to every open client; returns how many clients *of this process* it was sent to.

        The frame is built once and the same bytes are written to every
        client that has no extension (compressed clients get their own).
        With a backplane it also reaches the clients of this path on every
        other node (each frames it once), unless ``local=True``; local
        delivery is immediate and does not wait for the backplane, the
        publish follows in order, and a publish that fails is an
        ``'error'`` event.  ``exclude`` names sockets of this process only.
        With ``recovery=`` the message is recorded first and reaches every
        client, this node's included, with its position (``ws.recovery``).
        """
        if isinstance(data, str):
            is_text, payload = True, data.encode()
        elif isinstance(data, (bytes, bytearray, memoryview)):
            is_text, payload = False, bytes(data)
        else:
            raise TypeError(f"data must be str or bytes-like, got {type(data).__name__}")
        if self._cluster is not None and self._cluster.recorded:
            if local or exclude is not None:
                raise ValueError("with recovery= every broadcast is recorded for every client: local= and exclude= do not apply")
            self._cluster.publish(is_text, payload)  # this node's clients get it through the channel, with its position
            return len(self._sockets)
        if not _loop.in_loop(self._loop):
            _loop.call(self._loop, self._broadcast_everywhere, is_text, payload, exclude, local)
            return len(self._sockets)
        count = self._broadcast(is_text, payload, exclude)
        if self._cluster is not None and not local:
            self._cluster.publish(is_text, payload)
        return count

    def _broadcast_everywhere(self, is_text: bool, payload: bytes, exclude: Any, local: bool) -> None:
        self._broadcast(is_text, payload, exclude)
        if self._cluster is not None and not local:
            self._cluster.publish(is_text, payload)

    def _broadcast(self, is_text: bool, payload: bytes, exclude: Any) -> int:
        excluded = () if exclude is None else ({exclude} if isinstance(exclude, WebSocket) else set(exclude))
        return self._write_once(list(self._sockets), excluded, is_text, payload)

    def _write_once(self, targets: list[WebSocket], excluded: Any, is_text: bool, payload: bytes) -> int:
        """One frame for all of ``targets`` but ``excluded``; per client only the checks and the write.

        With metrics on, the clients reached count once here, per broadcast, not per client.  Whether
        they are on is read per broadcast (``enable()``/``disable()`` take effect at once); off, that
        test is all it costs.
        """
        wire = b"".join(_serialize(FIN_TEXT if is_text else FIN_BINARY, payload, False))
        count = WebSocket._broadcast(targets, excluded, wire, is_text, payload)
        if _metrics.on:
            tally = _metrics.tally(self._loop, self.path)
            if tally is not None:  # (off again since: another thread's disable())
                tally.sent(count, len(payload))
        return count

    def close(self, callback: Callable[[], Any] | None = None) -> None:
        """Stop accepting, close every client with 1001, then emit ``'close'``.

        Clients that never answer are dropped after their ``close_timeout``.
        """
        if callback is not None:
            self._close_callbacks.append(callback)
        _loop.call(self._loop, self._close_now, 1001, "")

    def wait_closed(self, timeout: float | None = None) -> None:
        """Block until ``close()`` has finished; in a coroutine use ``await wait_closed_async()``.

        Called on a thread that runs an event loop it raises ``RuntimeError``
        (blocking there would stop the loop that does the closing).
        """
        if _loop._get_running_loop() is not None:
            raise RuntimeError("wait_closed() blocks the thread; inside asyncio use 'await wss.wait_closed_async()'")
        _loop.run_blocking(self._loop, self.wait_closed_async(timeout), timeout=None)

    async def wait_closed_async(self, timeout: float | None = None) -> None:
        """Wait until ``close()`` has finished (every client gone, ``'close'`` emitted)."""
        if not _loop.in_loop(self._loop):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.wait_closed_async(timeout), self._loop))
            return
        if self._closed_future is None:
            self._closed_future = self._loop.create_future()
            if self._closed and not self._sockets:
                self._closed_future.set_result(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._closed_future), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the server did not finish closing within {timeout} s") from None

    # -- the cluster (with a backplane) -----------------------------------------------

    @property
    def backplane(self) -> "Backplane | None":
        """The backplane this server shares its path with (``None``: this process only)."""
        return None if self._cluster is None else self._cluster.backplane

    async def count_async(self) -> int:
        """How many clients this path has on every node (without a backplane: ``len(clients)``)."""
        if self._cluster is None:
            return len(self._sockets)
        return await self._cluster.count()

    async def total_count_async(self) -> int:
        """How many clients every path of every node has (without a backplane: this server's)."""
        if self._cluster is None:
            return len(self._sockets)
        return await self._cluster.total()

    async def members_async(self) -> "list[Member]":
        """``Member(id, node, info)`` for every client of this path on every node; needs a backplane."""
        if self._cluster is None:
            raise RuntimeError("members_async() lists the connections of a cluster: give the server a backplane= (in one process, use wss.clients)")
        return await self._cluster.members()

    def connection_id(self, socket: WebSocket) -> str | None:
        """The id ``socket`` has in the cluster's presence (``None`` without a backplane)."""
        return None if self._cluster is None else self._cluster.id_of(socket)

    def _use_backplane(self, option: Any, own_server: bool, recovery: "Recovery | None") -> None:
        """Join the cluster of ``option`` (a URL or object), else of the HTTP server, else of ``WS_BACKPLANE``.

        Nothing of ``ws.backplane`` is imported when there is none.  With
        ``recovery`` and no backplane, the history lives in this process (a
        ``MemoryBackplane`` of its own).
        """
        backplane, owned = None, False
        if option is not None and not own_server:
            backplane, owned = option, True  # its own: started here, released at close()
        elif self.server is not None:
            backplane = getattr(self.server, "backplane", None)  # its HTTP server's (which starts it)
        elif _backplane_env():
            owned = True  # no_server: WS_BACKPLANE
        if backplane is None and recovery is not None:
            owned = True
        if backplane is None and not owned:
            return
        from .backplane import backplane_from
        from .cluster import PathCluster

        self._cluster = PathCluster(
            backplane_from(backplane), self._loop, self.path, self._deliver_remote, self._cluster_error, owned=owned,
            recovery=recovery, send=self._deliver_recorded, close=self._close_client,
        )

    def _deliver_remote(self, is_text: bool, payload: bytes) -> int:
        """A broadcast another node published on this path: frame it once, write it to our clients.

        The cluster stays on the loop the server was made on; a server rebound
        since (``ws.asgi``: to the ASGI server's loop) gets it on its own loop,
        in order.
        """
        if _loop.in_loop(self._loop):
            return self._broadcast(is_text, payload, None)
        _loop.call(self._loop, self._broadcast, is_text, payload, None)
        return 0

    def _deliver_recorded(self, sockets: Any, is_text: bool, payload: bytes, exclude: Any) -> None:
        """A recorded message (or a recovery status) for ``sockets`` (``None``: every client) but ``exclude``."""
        if not _loop.in_loop(self._loop):
            excluded = set(exclude)  # taken now: the set it comes from changes meanwhile
            _loop.call(self._loop, self._deliver_recorded, sockets, is_text, payload, excluded)
            return
        if sockets is None:
            targets = [s for s in self._sockets if s not in self._joining] if self._joining else list(self._sockets)
        else:
            targets = [s for s in sockets if s in self._sockets]
        self._write_once(targets, exclude, is_text, payload)

    def _close_client(self, socket: WebSocket, code: int, reason: str) -> None:
        _loop.call(self._loop, socket.close, code, reason)

    def _keep_for_script(self) -> None:
        """On the loop: keep unheard ``'connection'``s until the script's main thread has run its last line, at most ``KEEP_CONNECTIONS`` s."""
        if _loop.is_reactor(self._loop):
            _loop.reactor.after_script(self._stop_keeping, KEEP_CONNECTIONS)
        else:
            self._loop.call_later(KEEP_CONNECTIONS, self._stop_keeping)

    def _stop_keeping(self) -> None:
        """No listener can come from the script's next lines any more: a ``'connection'`` nobody hears is dropped, as in Node."""
        self._keeping = False
        for sock in self._kept_sockets():
            sock._stop_holding()
        self._forget_kept("connection")

    def _kept_sockets(self) -> list[WebSocket]:
        return [args[0] for name, args in self._held or () if name == "connection"]

    def _replay(self, event: str) -> None:
        """A late ``'connection'`` listener hears the kept ones; their sockets hold nothing once it has attached its listeners."""
        replayed = self._kept_sockets() if event == "connection" and self._events.get(event) else []
        super()._replay(event)
        for sock in replayed:
            self._loop.call_soon(sock._stop_holding)  # after the replays its listeners asked for

    def _cluster_error(self, exc: BaseException) -> None:
        _loop.call(self._loop, self.emit, "error", exc)

    def ref(self) -> "WebSocketServer":
        if self._own_server is not None:
            self._own_server.ref()
        return self

    def unref(self) -> "WebSocketServer":
        if self._own_server is not None:
            self._own_server.unref()
        return self

    def __repr__(self) -> str:
        return f"<WebSocketServer path={self.path!r} clients={len(self._sockets)}>"

    # -- closing ------------------------------------------------------------------

    def _close_now(self, code: int, reason: str) -> None:
        first = not self._closed
        self._closed = True
        if first:
            _loop.reactor.remove_shutdown(self._shutdown_hook)
            server = self.server
            if server is not None:
                try:
                    server.remove_upgrade_handler(self.path, self)
                except Exception:  # already gone
                    pass
            if self._own_server is not None:
                self._own_server.close()
        for ws in list(self._sockets):
            try:
                ws._close_now(code, reason)
            except Exception:  # pragma: no cover - defensive
                logger.exception("error while closing %r", ws)
        self._maybe_closed()

    def _maybe_closed(self) -> None:
        if not self._closed or self._sockets:
            return
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._cluster is not None:
            self._cluster.close()
        callbacks, self._close_callbacks = self._close_callbacks, []
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(None)
        if callbacks or not self._close_emitted:
            if not self._close_emitted:
                self._close_emitted = True
                self.emit("close")
            for cb in callbacks:
                self._emit_run(cb, (), {})

    def _socket_closed(self, ws: WebSocket) -> None:
        self._sockets.discard(ws)
        if self._slots:
            slot = self._slots.pop(ws, None)
            if slot is not None:
                slot.release()
        self._joining.discard(ws)
        if self._cluster is not None:
            self._cluster.left(ws)
        if self._closed:
            self._maybe_closed()

    # -- the handshake --------------------------------------------------------------

    def _upgrade(
        self,
        request: Request,
        transport: asyncio.Transport,
        head: bytes,
        callback: Callable[[WebSocket, Request], Any] | None,
        slot: Slot | None = None,
    ) -> None:
        try:
            self._accept(request, transport, head, callback, slot)
        except Exception as exc:
            self._handshake_failed(request, transport, exc)

    def _handshake_failed(self, request: Request, transport: asyncio.Transport, exc: Exception) -> None:
        """A bug of ours or of a listener during a handshake: answer 500 (unless the 101 is out), report, keep serving.

        After the 101 the client reads frames: an HTTP answer would reach it
        as garbage (a frame with reserved bits set), so ``_render`` aborts the
        connection instead, and nothing more is written.
        """
        logger.exception("WebSocket handshake failed")
        if not transport.is_closing():
            self._refuse(request, transport, Refused(500, "Internal Server Error"))
        self.emit("error", exc)

    def _accept(
        self,
        request: Request,
        transport: asyncio.Transport,
        head: bytes,
        callback: Callable[[WebSocket, Request], Any] | None,
        admitted: Slot | None,
    ) -> None:
        """Admit (unless ``admitted`` already), decide (``ws.protocol.handshake``), then answer and start the socket."""
        if transport.is_closing() and not self._closed:
            if admitted is not None:
                admitted.release()
            return  # the client left before its turn
        slot = self.admit(request) if admitted is None else admitted
        if self._closed and admitted is not None:  # admitted before close() was called
            admitted.release()
            slot = Refused(503, "WebSocket server is closed")
        if isinstance(slot, Refused):
            self._refuse(request, transport, slot)
            return
        try:
            decision = handshake.accept(request, self._policy(), date=http_date())
            if isinstance(decision, Pending):
                self._wait_for_verdict(decision, request, transport, head, callback, slot)
                return
            self._render(decision, request, transport, head, callback, slot)
        except BaseException:
            slot.release()  # once: a socket that got it releases it again harmlessly
            raise

    def _wait_for_verdict(
        self,
        pending: Pending,
        request: Request,
        transport: asyncio.Transport,
        head: bytes,
        callback: Callable[[WebSocket, Request], Any] | None,
        slot: Slot,
    ) -> None:
        """``verify_client`` answers later: read nothing meanwhile, then render its decision.

        The handshake keeps its ``slot`` while it waits (a flood of slow
        verifications cannot overshoot ``max_connections``).
        """
        transport.pause_reading()

        async def wait() -> None:
            rendered = False
            try:
                decision = await self._verdict(pending)
                if transport.is_closing():
                    return  # the client left meanwhile
                if self._closed:
                    decision = Refused(503, "WebSocket server is closed")
                transport.resume_reading()
                try:
                    self._render(decision, request, transport, head, callback, slot)
                    rendered = True
                except Exception as exc:  # as in _upgrade
                    self._handshake_failed(request, transport, exc)
            finally:
                if not rendered:  # left, failed or cancelled: the slot is free again
                    slot.release()

        task = self._loop.create_task(wait())
        self._verifying.add(task)
        task.add_done_callback(self._verifying.discard)

    async def _verdict(self, pending: Pending) -> HandshakeResult:
        """Wait for a ``Pending`` handshake's answer, at most ``verify_timeout``; its decision (never raises)."""
        timeout = self.verify_timeout
        if pending.awaitable is not None:
            try:
                verdict = await asyncio.wait_for(_awaited(pending.awaitable), timeout)
            except asyncio.TimeoutError:
                return pending.timed_out(timeout or 0)
            except Exception as exc:
                return pending.settle(error=exc, date=http_date())
            return pending.settle(verdict, date=http_date())
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[None] = loop.create_future()

        def done() -> None:
            if not answered.done():
                answered.set_result(None)

        def notify() -> None:  # the callback may run on any thread
            try:
                loop.call_soon_threadsafe(done)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        pending.on_answer(notify)
        try:
            await asyncio.wait_for(answered, timeout)
        except asyncio.TimeoutError:
            return pending.timed_out(timeout or 0)
        return pending.result(date=http_date())

    def _render(
        self,
        decision: HandshakeResult,
        request: Request,
        transport: asyncio.Transport,
        head: bytes,
        callback: Callable[[WebSocket, Request], Any] | None,
        slot: Slot,
    ) -> None:
        """Write the decision: a refusal, or the 101 and a new ``WebSocket``, which then holds ``slot``."""
        if isinstance(decision, Refused):
            slot.release()
            self._refuse(request, transport, decision)
            return
        decision = self._edit_headers(decision, request)
        proto = decision.protocol
        assert proto is not None  # accept() always configures one
        extensions_header = decision.extensions
        transport.write(decision.response())
        try:
            self._open(proto, request, transport, head, callback, slot, extensions_header or "")
        except BaseException:
            transport.abort()  # the 101 is out: the client reads frames now, not the 500 of _handshake_failed
            raise

    def _open(
        self,
        proto: "ServerProtocol",
        request: Request,
        transport: asyncio.Transport,
        head: bytes,
        callback: Callable[[WebSocket, Request], Any] | None,
        slot: Slot,
        extensions_header: str,
    ) -> None:
        """The 101 is written: the new ``WebSocket`` (holding ``slot``), then ``'connection'``."""
        proto.mark_open()
        proto.read_frames()

        options = self._socket_options
        if extensions_header:  # compressed: the limit the handshake chose (see Policy.deflate_max_payload)
            options = {**options, "max_payload": proto.message_limit()}
        limit = self.max_total_buffered_amount
        if limit is None:
            budget = None
        else:
            cached = self._budget_cache
            if cached is not None and cached[0] is self._loop and cached[1] == limit:
                budget = cached[2]
            else:
                budget = budget_for(self._loop, limit)
                self._budget_cache = (self._loop, limit, budget)
        tally = _metrics.tally(self._loop, self.path)
        # Nobody hears 'connection' yet, in a script still attaching listeners: it and the socket's own events wait.
        keep = callback is None and self._keeping and not self._events.get("connection")
        ws = (WebSocket if tally is None else MeteredWebSocket)._accepted(
            self._loop, proto, transport, request, self._finished_hook, options, extensions_header,
            budget, hold_events=keep,
        )
        if tally is not None:
            assert isinstance(ws, MeteredWebSocket)
            ws._metered(tally)
            tally.handshake(101)
        self._hold(ws, slot)
        self._sockets.add(ws)
        if self._cluster is not None:
            self._join_cluster(ws, request)
        if self._heartbeat is not None:
            self._heartbeat.add(ws)
        if callback is not None:
            self._emit_run(callback, (ws, request), {})
        elif keep:
            self._emit_kept("connection", ws, request, limit=MAX_HELD_EVENTS)
        else:
            self.emit("connection", ws, request)
        if head:
            # Bytes that came with the handshake wait one loop turn, so that an
            # ``async def`` 'connection' listener (a task, started next) can
            # attach its 'message' listener first; later reads queue behind.
            self._loop.call_soon(ws._receive_head, head)

    # -- for the hosts that render a handshake themselves (ws.asgi) ---------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this server's sockets live on."""
        return self._loop

    def _accepting(self) -> bool:
        """Whether new connections are taken (``close()`` not called yet)."""
        return not self._closed

    def _edit_headers(self, decision: Accepted, request: Request) -> Accepted:
        """Let ``'headers'`` listeners edit the 101 (Node's event); the decision itself stays data."""
        if not self._events.get("headers"):
            return decision
        lines = decision.header_lines()
        self.emit("headers", lines, request)
        return decision.edited(lines)

    def _new_socket_options(self) -> dict[str, Any]:
        """The per-socket options (limits, timeouts) for one new connection, as a fresh dict."""
        return dict(self._socket_options)

    def _adopt(self, ws: WebSocket, slot: Slot | None = None) -> None:
        """Track a socket another host accepted for this server (``clients``, ``close()``); it holds ``slot``."""
        tally = _metrics.tally(self._loop, self.path)
        if tally is not None:
            tally.handshake(101)
        if slot is not None:
            self._hold(ws, slot)
        self._sockets.add(ws)
        if self._cluster is not None:
            self._join_cluster(ws, ws.request)

    def _join_cluster(self, ws: WebSocket, request: Request | None) -> None:
        cluster = self._cluster
        assert cluster is not None
        if cluster.recorded and cluster.loop is not self._loop:
            # The recovery learns of it one hop later: until then, what it hands to every client is not for it.
            self._joining.add(ws)
            cluster.joined(ws, request, lambda: _loop.call(self._loop, self._joining.discard, ws))
        else:
            cluster.joined(ws, request)

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve on ``loop`` from now on (a server built at import time, run by an ASGI server)."""
        if loop is self._loop:
            return
        if self._sockets:
            raise RuntimeError("this WebSocketServer already serves sockets on another event loop")
        if self._cluster is not None and self._cluster.loop.is_closed():
            raise RuntimeError(
                "this WebSocketServer's backplane lives on the event loop it was made on, which is closed: "
                "make the server at import time (outside any loop) or on a loop that keeps running"
            )
        self._loop = loop  # the cluster stays on its loop: its deliveries hop to this one (_deliver_remote)

    def _going_away(self) -> None:
        """The process or the host shuts down: close every client with 1001."""
        self._close_now(1001, "server shutting down")

    @property
    def max_payload(self) -> int | None:
        """The largest message accepted (1009 past it); ``None``: no limit.

        Unless set (here or as an option), a connection that negotiated
        permessage-deflate gets ``DEFAULT_MAX_PAYLOAD_DEFLATE`` (1 MiB) instead.
        """
        return self._max_payload

    @max_payload.setter
    def max_payload(self, value: int | None) -> None:
        self._max_payload = self._deflate_max_payload = value

    def _policy(self) -> Policy:
        """The handshake policy from this server's options as they are now (users may reassign them).

        Built again only when an option changed (compared by identity): a
        frozen dataclass costs about a microsecond per handshake otherwise.
        """
        cached = self._policy_cache
        if cached is not None:
            old = cached[0]  # (unrolled, and no tuple of the current ones: each costs more than the comparisons)
            if (
                old[0] is self._verify_client and old[1] is self.handle_protocols and old[2] is self.protocols
                and old[3] is self.per_message_deflate and old[4] is self._max_payload
                and old[5] is self._deflate_max_payload and old[6] is self._allowed_origins
            ):
                return cached[1]
        options = (
            self._verify_client, self.handle_protocols, self.protocols, self.per_message_deflate,
            self._max_payload, self._deflate_max_payload, self._allowed_origins,
        )
        policy = Policy(
            verify_client=self._verify_client,
            verify_form=self._verify_form,
            handle_protocols=self.handle_protocols,
            protocols=self.protocols,
            per_message_deflate=self.per_message_deflate,
            max_payload=self._max_payload,
            deflate_max_payload=self._deflate_max_payload,
            allowed_origins=self._allowed_origins,
        )
        self._policy_cache = (options, policy)
        return policy

    def _refuse(self, request: Request, transport: asyncio.WriteTransport, refused: Refused) -> None:
        """Answer a refused handshake on ``transport``, then report it (:meth:`_report`).

        The application styles that decide handshakes of their own (a
        connect handler's 403) refuse through it too.
        """
        write_refusal(transport, refused)
        self._report(refused, request)

    def _report(self, refused: Refused, request: Request | None = None) -> None:
        """Count a refused handshake and log it, one line per cause and interval (``ws_event='handshake_refused'``).

        A refusal caused by a failing user hook is a server error: it is
        logged in full instead, and emitted as ``'error'``.
        """
        status = refused.status
        cause = refusal_cause(status, refused.reason)
        tally = _metrics.tally(self._loop, self.path)
        if tally is not None:
            tally.handshake(status)
            if cause == ORIGIN_NOT_ALLOWED:
                tally.origin_refusals += 1
        if refused.error is None:
            peer = request.client_ip if request is not None else None  # (behind trusted proxies: the client's)
            report_event(
                logger, logging.INFO, "handshake_refused", cause, "WebSocket handshake refused on %s (%s): %s",
                self.path, cause, refused.reason, peer=peer, status=status, path=self.path,
            )
            return
        report_error(logger, "%s", refused.problem or "handshake hook failed", error=refused.error)
        self.emit("error", refused.error)

    # -- connection limits (ws.protocol.limits) -----------------------------------------

    def _use_limits(self, opts: dict[str, Any]) -> None:
        """``max_connections``, ``max_connections_per_ip`` (and how to count), ``trusted_proxies`` and their header."""
        self._limits = ConnectionLimits(
            opts.get("max_connections"),
            opts.get("max_connections_per_ip"),
            opts.get("retry_after", DEFAULT_RETRY_AFTER),
            opts.get("per_ip_ipv6_prefix", 128),
        )
        proxies = opts.get("trusted_proxies")
        self._trusted_proxies = TrustedProxies(proxies) if proxies else None
        self._forwarded_header = forwarded_header(opts.get("forwarded_header", "X-Forwarded-For"))
        self._slots: dict[WebSocket, Slot] = {}  # an open socket's slot, released when it closes

    @property
    def limits(self) -> ConnectionLimits:
        """This server's connection limits (read-only) and what they count now (``held``, ``held_by(ip)``)."""
        return self._limits

    @property
    def trusted_proxies(self) -> TrustedProxies | None:
        """The proxies whose :attr:`forwarded_header` is believed (``None``: none)."""
        return self._trusted_proxies

    @property
    def forwarded_header(self) -> str:
        """The one header the trusted proxies name the client in: ``'X-Forwarded-For'`` or ``'Forwarded'``.

        The other is passed on by the proxy as the client wrote it, so it is never read.
        """
        return self._forwarded_header

    def _hold(self, ws: WebSocket, slot: Slot) -> None:
        """``ws`` keeps ``slot`` until it is closed (``_socket_closed``)."""
        if not slot.counted:
            return
        if ws.ready_state is ReadyState.CLOSED:  # gone already: _socket_closed has run
            slot.release()
        else:
            self._slots[ws] = slot

    # -- JavaScript spellings (the EventEmitter ones come from EventEmitter) --------------

    handleUpgrade = handle_upgrade
    shouldHandle = should_handle

    @property
    def clientTracking(self) -> bool:
        """Node's spelling of ``client_tracking``."""
        return self.client_tracking

    @clientTracking.setter
    def clientTracking(self, value: bool) -> None:
        self.client_tracking = value

    allowedOrigins = allowed_origins




async def _awaited(awaitable: Any) -> Any:
    """``await awaitable`` as a coroutine (``wait_for`` takes any awaitable, mypy wants this shape)."""
    return await awaitable


def write_refusal(transport: asyncio.WriteTransport, refused: Refused) -> None:
    """Render a refused handshake on ``transport``: a short plain-text HTTP answer, then close.

    The application styles refuse through it too (a connect handler's 403,
    an unmatched route's 404).
    """
    if transport.is_closing():
        return
    try:
        transport.write(plain_response(refused.status, refused.reason, refused.headers))
    finally:
        transport.close()


def _backplane_env() -> bool:
    import os

    return bool(os.environ.get("WS_BACKPLANE", "").strip())


def _adapt_server(server: Any) -> Any:
    """Other HTTP servers get an adapter (see ``ws.http.stdlib``); unknown ones a ``TypeError``."""
    from .http.stdlib import adapt

    adapted = adapt(server)
    if adapted is None:
        raise TypeError(
            f"server must be a ws.http.Server (or a supported HTTP server), got {type(server).__name__}"
        )
    return adapted

