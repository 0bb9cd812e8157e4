"""Logging: the ``ws`` logger hierarchy, quiet unless the application asks.

Modules log to ``ws`` (loop, emitter), ``ws.websocket``, ``ws.server``,
``ws.http`` and, frame by frame at DEBUG, ``ws.client.protocol`` /
``ws.server.protocol``.  As a library, ``ws`` only installs a
``NullHandler``: where records go is the application's choice.
``enable_debug()`` (or ``WS_DEBUG=1`` in the environment) is the shortcut
for "show me everything, frames included" while developing.

The Sans-I/O protocol decides whether to log frames when a connection
starts, so debug mode applies to connections opened after it is enabled
and costs nothing otherwise.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO

__all__ = ["enable_debug", "disable_debug", "configure_from_env"]

ROOT = logging.getLogger("ws")
ROOT.addHandler(logging.NullHandler())

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

_handler: logging.Handler | None = None


def enable_debug(stream: IO[str] | None = None, level: int = logging.DEBUG) -> logging.Handler:
    """Log everything of ``ws`` (frames included) to ``stream`` (stderr); returns the handler.

    Calling it again replaces the previous debug handler rather than adding one.
    """
    global _handler
    disable_debug()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(level)
    ROOT.addHandler(handler)
    ROOT.setLevel(level)
    _handler = handler
    return handler


def disable_debug() -> None:
    """Undo ``enable_debug()``: ``ws`` is quiet again (back to the root logger's level)."""
    global _handler
    if _handler is not None:
        ROOT.removeHandler(_handler)
        _handler = None
        ROOT.setLevel(logging.NOTSET)


def configure_from_env() -> None:
    """``WS_DEBUG=1`` (any value but ``''``/``0``) turns debug mode on at import."""
    if os.environ.get("WS_DEBUG", "") not in ("", "0"):
        enable_debug()
