"""Accepting connections within the process's open-file limit.

Every connection costs a file descriptor, and the soft ``RLIMIT_NOFILE``
(often 1,024) is reached long before memory or CPU run out.  This module
does three things about it, for ``ws.http.Server``:

* ``raise_open_file_limit()`` raises the soft limit to the hard one, once
  per process, when a server starts (as Go's runtime and many servers do).
  It never lowers a limit.
* ``pending_cap()`` keeps the cap on connections still sending their
  request head (``max_pending_handshakes``) at half the open-file limit, so
  that slow or silent clients meet the cap's prompt 503 before the process
  runs out of descriptors.
* ``Acceptor`` accepts on a listening socket for selector event loops.
  asyncio's own accept loop (``loop.create_server``), when ``accept()``
  fails with ``EMFILE``, logs a traceback for every remaining iteration of
  its batch and schedules as many retries, each of which starts another
  batch (Python 3.11; CPython gh-151615): tens of thousands of tracebacks
  and seconds of CPU per second under an fd exhaustion.  ``Acceptor`` stops
  accepting for ``ACCEPT_PAUSE`` seconds instead, retries, and logs one line
  per ``LOG_INTERVAL``.  Connections meanwhile wait in the kernel's backlog.
  With TLS it also bounds the connections still in their TLS handshake
  (``room``): a peer that connects and never sends its ClientHello holds a
  descriptor until the handshake timeout, and cannot be answered 503 before
  TLS, so past the cap a new connection is closed at once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any, Callable

try:
    import resource
except ImportError:  # Windows: no RLIMIT_NOFILE
    resource = None  # type: ignore[assignment]

__all__ = ["Acceptor", "open_file_limit", "pending_cap", "raise_open_file_limit"]

logger = logging.getLogger("ws.http")

#: How long accepting stops when the process (or the system) is out of
#: file descriptors or socket memory.
ACCEPT_PAUSE = 0.1
#: At most one log line per this many seconds about running out.
LOG_INTERVAL = 30.0
#: Connections accepted per wake-up.  A connection is read a loop turn or two
#: after it is accepted (asyncio makes its transport in a task), so a large
#: batch fills ``max_pending_handshakes`` with connections whose request has
#: already arrived; a small one lets their reads interleave.
BATCH = 64
#: ``accept()`` errors that mean "out of a resource": pause, then retry.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_raised = False


def open_file_limit() -> int | None:
    """The soft open-file limit of this process (``None``: unknown or unlimited)."""
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_file_limit() -> int | None:
    """Raise the soft open-file limit to the hard limit (once per process); the soft limit after.

    Never lowers it.  Where the hard limit is unlimited (macOS), a finite
    value the kernel accepts is used.  A refusal leaves the limit as it was.
    """
    global _raised
    if resource is None or _raised:
        return open_file_limit()
    _raised = True
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, 1 << 16, 10240):
        if target == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and target <= soft):
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            continue
        logger.debug("raised the open-file limit from %s to %s", soft, target)
        break
    return open_file_limit()


def pending_cap(requested: int | None, limit: int | None) -> int | None:
    """The cap on pending connections to use under an open-file ``limit``: at most half of it."""
    if requested is None or limit is None:
        return requested
    ceiling = max(1, limit // 2)
    if requested <= ceiling:
        return requested
    logger.warning(
        "max_pending_handshakes lowered from %d to %d: the process may open only %d files "
        "(raise the hard limit, ulimit -Hn, to allow more)",
        requested, ceiling, limit,
    )
    return ceiling


def _swallow(task: asyncio.Task[Any]) -> None:
    """An accepted connection that failed to start (a TLS handshake refused, a reset): the peer's problem."""
    if not task.cancelled() and task.exception() is not None:
        logger.debug("accepted connection failed to start: %r", task.exception())


class Acceptor:
    """Accepts connections on one listening socket (a selector loop), pausing when out of descriptors.

    Each accepted socket becomes a transport through the loop's public
    ``connect_accepted_socket``, with ``factory`` building its protocol, as
    ``create_server`` would.  ``close()`` stops accepting and abandons the
    TLS handshakes under way (their sockets close); the listening socket
    itself belongs to the caller.

    With ``ssl``, ``room(n)`` (optional) says whether one more connection may
    start its TLS handshake while ``n`` others are in theirs (the owner counts
    them against its cap on pending connections); ``False`` closes it at
    once.  A handshake counts from ``accept()`` until its task ends, which is
    a loop turn or two after the connection is handed to ``factory``'s
    protocol: the count errs on the safe side.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.BaseProtocol],
        *,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
        room: Callable[[int], bool] | None = None,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout if ssl is not None else None
        self._room = room if ssl is not None else None
        self._tasks: set[asyncio.Task[Any]] = set()  # connections being made (with TLS: in their handshake)
        self._reading = False
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        # Running out: when the next log line may be written, and how many pauses since the last one.
        self._quiet_until = 0.0
        self._unreported = 0

    @staticmethod
    def supported(loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``loop`` is a selector loop, whose own accept loop this replaces."""
        return isinstance(loop, asyncio.SelectorEventLoop)

    def start(self) -> None:
        if not self._closed and not self._reading:
            self._loop.add_reader(self._sock.fileno(), self._accept)
            self._reading = True

    def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._stop_reading()
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()  # asyncio closes the transport of a handshake it abandons

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._sock.fileno())

    def _accept(self) -> None:
        for _ in range(BATCH):
            try:
                conn, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # that peer gave up while queued; take the next one
            except OSError as exc:
                self._pause(exc)
                return
            if self._ssl is None and self._plain(conn, addr):
                continue
            room = self._room
            if room is not None and not room(len(self._tasks)):
                conn.close()  # too many TLS handshakes under way: no 503 can be sent before TLS
                continue
            try:
                task = self._loop.create_task(
                    self._loop.connect_accepted_socket(
                        self._factory, conn, ssl=self._ssl, ssl_handshake_timeout=self._ssl_handshake_timeout
                    )
                )
            except Exception:
                conn.close()
                logger.exception("HTTP server could not take a connection")
                continue
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(_swallow)

    def _plain(self, conn: socket.socket, addr: Any) -> bool:
        """A plain TCP connection: its transport made at once, as asyncio's own accept makes it, but without a task.

        ``connect_accepted_socket`` runs a task per connection (a coroutine,
        a future it awaits, three more callbacks, a ``getpeername`` call):
        about a tenth of a handshake's instructions on asyncio's loop.  The
        transport schedules ``connection_made`` itself.  ``False`` (nothing
        done) on a loop without the method; the task path then takes it.
        """
        make = getattr(self._loop, "_make_socket_transport", None)
        if make is None:
            return False
        try:
            conn.setblocking(False)
            make(conn, self._factory(), extra={"peername": addr})
        except Exception:
            conn.close()
            logger.exception("HTTP server could not take a connection")
        return True

    def _pause(self, exc: OSError) -> None:
        """Out of descriptors (or another accept failure): stop for a moment, log rarely, retry."""
        self._stop_reading()
        self._retry = self._loop.call_later(ACCEPT_PAUSE, self._resume)
        now = self._loop.time()
        if now < self._quiet_until:
            self._unreported += 1
            return
        self._quiet_until = now + LOG_INTERVAL
        limit = open_file_limit()
        if exc.errno in _EXHAUSTED:
            logger.warning(
                "HTTP server cannot accept: %s (open-file limit %s); pausing accepts for %s s at a time%s",
                exc.strerror, limit, ACCEPT_PAUSE, self._since_last(),
            )
        else:
            logger.warning("HTTP server cannot accept: %s; retrying in %s s%s", exc, ACCEPT_PAUSE, self._since_last())
        self._unreported = 0

    def _since_last(self) -> str:
        return f" ({self._unreported} more pauses since the last report)" if self._unreported else ""

    def _resume(self) -> None:
        self._retry = None
        self.start()
