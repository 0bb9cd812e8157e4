"""The worker side of ``serve(workers=N)``: which worker this process is, and its link to the parent.

The parent (``ws._runtime.supervisor``) starts each worker by running the
program's command line again, with these environment variables:

- ``WS_WORKER``: this worker's number, 1 to N, and ``WS_WORKERS``: N.  They
  stay in the environment for the application to read (children of a worker
  inherit them).
- ``WS_WORKER_PORT``: the port the parent reserved (it matters for port 0).
- ``WS_WORKER_FDS``: ``status,lifeline``, two pipe ends the worker inherits.
  A worker writes its pid on *status* once its server listens.  The parent
  holds the write end of *lifeline* and never writes: end of file there means
  the parent is gone, and the worker then sends itself SIGTERM, so that no
  worker outlives its supervisor (a SIGKILLed parent included).

The last two are private: they are taken out of ``os.environ`` when this
module is imported (``ws.http`` imports it, so a worker always has), and the two pipe ends are made
non-inheritable, so that a process started by a worker is no worker and holds
none of its pipes.  Only a process that had them is one (``current()``).

The worker's ``serve(workers=N)`` does not supervise: it binds its own
listening socket with ``SO_REUSEPORT`` on the parent's port (``claim()``,
``reuse_port()``) and says when it listens (``report_listening()``).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass

from .log import announce

__all__ = ["Worker", "check_count", "check_platform", "claim", "current", "report_listening", "reuse_port", "supervises"]

logger = logging.getLogger("ws.workers")

INDEX_VAR = "WS_WORKER"
COUNT_VAR = "WS_WORKERS"
PORT_VAR = "WS_WORKER_PORT"
FDS_VAR = "WS_WORKER_FDS"


@dataclass(frozen=True)
class Worker:
    """This process is worker ``index`` (1 to ``count``) of a ``serve(workers=count)``."""

    index: int
    count: int


class _Link:
    """What the parent passed: the port and the two pipe ends."""

    def __init__(self, worker: Worker, port: int, status_fd: int, lifeline_fd: int) -> None:
        self.worker = worker
        self.port = port
        self.status_fd = status_fd
        self.lifeline_fd = lifeline_fd
        self.owner: object | None = None
        self.reported = False


def _from_environment() -> _Link | None:
    port = os.environ.pop(PORT_VAR, None)
    fds = os.environ.pop(FDS_VAR, None)
    if port is None or fds is None:
        return None
    try:
        status_fd, lifeline_fd = (int(fd) for fd in fds.split(","))
        worker = Worker(int(os.environ[INDEX_VAR]), int(os.environ[COUNT_VAR]))
    except (KeyError, ValueError):
        logger.warning("ignoring malformed worker variables %s=%r %s=%r", PORT_VAR, port, FDS_VAR, fds)
        return None
    for fd in (status_fd, lifeline_fd):  # the parent's pipes are this worker's, not its children's
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass
    return _Link(worker, int(port), status_fd, lifeline_fd)


_link = _from_environment()


def current() -> Worker | None:
    """Which worker this process is, or ``None`` outside ``serve(workers=N)`` (and in its parent)."""
    return _link.worker if _link is not None else None


def check_count(workers: int | None) -> int:
    """The number of processes ``workers=`` asks for: ``None`` is 1."""
    if workers is None:
        return 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    return workers


def supervises(workers: int | None) -> bool:
    """Whether ``serve(workers=workers)`` makes this process the workers' parent (it serves no client itself)."""
    return check_count(workers) > 1 and current() is None


def check_platform() -> None:
    """Raise ``NotImplementedError`` where workers cannot share a port (no ``SO_REUSEPORT``)."""
    if os.name != "posix" or not hasattr(socket, "SO_REUSEPORT"):
        raise NotImplementedError(
            f"workers=N needs SO_REUSEPORT, which this platform ({sys.platform}) lacks; "
            "run one process per port behind a load balancer instead"
        )


def reuse_port(sock: socket.socket) -> None:
    """Let every worker bind its own listening socket on the port (the kernel spreads connections over them)."""
    # FreeBSD balances only with SO_REUSEPORT_LB; Linux balances with SO_REUSEPORT.
    option = getattr(socket, "SO_REUSEPORT_LB", None) or getattr(socket, "SO_REUSEPORT")
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
    except OSError as exc:
        raise OSError(exc.errno or errno.ENOPROTOOPT, f"workers=N needs SO_REUSEPORT: {exc.strerror}") from None


def claim(owner: object) -> int:
    """The port ``owner`` (a server in a worker) binds with ``SO_REUSEPORT``; one server per worker."""
    link = _link
    if link is None:
        raise RuntimeError("not a worker process")
    if link.owner is None:
        link.owner = owner
        _watch_parent(link)
    elif link.owner is not owner:
        raise RuntimeError("only one server of a program may serve with workers=N")
    return link.port


def report_listening() -> None:
    """Tell the parent that this worker listens (once)."""
    link = _link
    if link is None or link.reported:
        return
    link.reported = True
    try:
        os.write(link.status_fd, b"%d\n" % os.getpid())
    except OSError:  # the parent is gone: the lifeline stops us
        pass


def _watch_parent(link: _Link) -> None:
    """A thread that waits for the end of the lifeline, then stops this worker as SIGTERM does."""

    def watch() -> None:
        if hasattr(signal, "pthread_sigmask"):
            # Signals must reach the main thread (see ws._runtime.loop).
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            while os.read(link.lifeline_fd, 1):
                pass
        except OSError:
            pass
        announce(logger, logging.WARNING, "worker %d: the supervisor is gone; stopping", link.worker.index)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="ws-worker-lifeline", daemon=True).start()
