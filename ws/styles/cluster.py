"""The process-wide parts of the styles on a server's backplane: ``rooms.default`` and ``kv()``.

``rooms.get(...)`` and ``kv(name)`` are module-level, with no server in
sight.  So the styles' factories (``route_ws``, ``websocket``,
``websockets``, ``serve``/``load_websockets``) call ``adopt(server)``: the
first ``ws.http.Server`` with a backplane that one of them is given becomes
the process's, and from then on the process-wide rooms and the ``kv()``
stores live on that backplane (the same handler code then works on one node
or many).  A second server with a *different* backplane is a configuration
error: it is logged, and the first one stays.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .._runtime.emitter import report
from ..backplane.base import Backplane
from ..backplane.link import Link

__all__ = ["adopt", "shared", "link"]

logger = logging.getLogger("ws.styles")

_shared: Link | None = None


def adopt(server: Any) -> None:
    """Put the process-wide rooms and stores on ``server.backplane`` (if it has one and none is chosen yet)."""
    global _shared
    backplane = getattr(server, "backplane", None)
    if not isinstance(backplane, Backplane):
        return
    if _shared is None or _shared.backplane.closed:  # the first, or the one before was closed
        loop: asyncio.AbstractEventLoop = server.loop
        _shared = Link(backplane, loop, _report)
    elif _shared.backplane is not backplane:
        logger.warning(
            "%r has a backplane of its own; the process-wide rooms and kv() stores stay on the first one (%r)",
            server, _shared.backplane,
        )


def shared() -> Backplane | None:
    """The backplane of the process-wide rooms and stores, if a server brought one."""
    return None if _shared is None else _shared.backplane


def link() -> Link | None:
    """The ``Link`` (loop and ordering) of that backplane."""
    return _shared


def forget() -> None:
    """Back to this process only (tests)."""
    global _shared
    _shared = None


def _report(exc: BaseException) -> None:
    report("process-wide rooms/stores: backplane operation failed", error=exc, log=logger)
