"""``MeteredWebSocket``: a server-side ``WebSocket`` that counts for its path's metrics.

A ``WebSocketServer`` makes these instead of plain ``WebSocket``s while
metrics are on (``ws.metrics.enable()``), so a plain socket's message path
carries no counting at all.  Each override adds to the plain ints of the
path's ``Tally`` (``ws/_runtime/metrics.py``), then does what ``WebSocket``
does; the tally is folded into Prometheus lazily, never per message.

Broadcasts are counted by the server, once per broadcast
(``WebSocketServer._write_once``): ``WebSocket._broadcast`` writes to the
transports without these methods, and its fallback calls
``WebSocket._send_frame`` itself, so nothing is counted twice.
"""

from __future__ import annotations

from typing import Any

from .._runtime.metrics import Tally
from ..events import ReadyState
from .websocket import WebSocket

__all__ = ["MeteredWebSocket"]

_OPEN = ReadyState.OPEN
_CLOSED = ReadyState.CLOSED


class MeteredWebSocket(WebSocket):
    """A ``WebSocket`` whose messages, close code, drops and keepalive timeouts count in ``_tally``."""

    __slots__ = ("_tally",)  # a slot: the instance dict keeps WebSocket's shared keys (see its __slots__)

    _tally: Tally

    def _metered(self, tally: Tally) -> None:
        """Count for ``tally`` from now on (just accepted: one more open connection on its path)."""
        self._tally = tally
        tally.open += 1

    def _deliver(self, kind: int, data: str | bytes) -> None:
        tally = self._tally
        tally.messages_in += 1
        if type(data) is str and not data.isascii():  # (isascii() is O(1) on a str)
            tally.bytes_in += len(data.encode())
        else:
            tally.bytes_in += len(data)
        WebSocket._deliver(self, kind, data)

    def _send_frame(self, is_text: bool, payload: Any, fin: bool = True) -> None:
        if self._ready_state is _OPEN:
            tally = self._tally
            tally.bytes_out += len(payload)
            if fin:
                tally.messages_out += 1  # a fragmented message counts at its last frame
        WebSocket._send_frame(self, is_text, payload, fin)

    def _send_uncompressed(self, is_text: bool, payload: Any, proto: Any) -> None:
        tally = self._tally
        tally.messages_out += 1
        tally.bytes_out += len(payload)
        WebSocket._send_uncompressed(self, is_text, payload, proto)

    def _keepalive_expired(self) -> None:
        if self._proto is not None and self._ready_state is not _CLOSED:
            self._tally.keepalive_timeouts += 1
        WebSocket._keepalive_expired(self)

    def _drop_unread(self, message: str, reason: str, limit: str) -> None:
        self._tally.dropped(limit)
        WebSocket._drop_unread(self, message, reason, limit)

    def _note_rate_limited(self) -> None:
        self._tally.rate_limited += 1

    def _finish(self, code: int, reason: str) -> None:
        if self._closed_with is None:  # the first time: 'close' is decided now
            tally = self._tally
            tally.open -= 1
            tally.closed(code)
        WebSocket._finish(self, code, reason)
