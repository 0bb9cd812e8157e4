"""``MeteredWebSocket``: a server-side ``WebSocket`` that counts for its path's metrics.

A ``WebSocketServer`` makes these instead of plain ``WebSocket``s while
metrics are on (``ws.metrics.enable()``), so a plain socket's message path
carries no counting at all.  Each override adds to the plain ints of the
path's ``Tally`` (``ws/_runtime/metrics.py``) or to the socket's own
counts, then does what ``WebSocket`` does; they reach Prometheus lazily,
never per message.

Broadcasts are counted by the server, once per broadcast
(``WebSocketServer._write_once``): ``WebSocket._broadcast`` writes to the
transports without these methods, and its fallback calls
``WebSocket._send_frame`` itself, so nothing is counted twice.
"""

from __future__ import annotations

from typing import Any

from .._runtime.metrics import Tally
from ..events import TEXT, ReadyState
from .websocket import WebSocket

__all__ = ["MeteredWebSocket"]

_OPEN = ReadyState.OPEN
_CLOSED = ReadyState.CLOSED


class MeteredWebSocket(WebSocket):
    """A ``WebSocket`` that counts its messages, and tells its path's ``Tally`` its close code, drops and timeouts."""

    # Slots: the instance dict keeps WebSocket's shared keys (see its __slots__), and a slot is the
    # cheapest counter there is (a message costs two additions to the socket's own ints).
    __slots__ = ("_tally", "_messages_in", "_bytes_in", "_messages_out", "_bytes_out")

    _tally: Tally
    _shown_as = "WebSocket"  # an internal class: reports and warnings name the public one (repr does too)

    def _metered(self, tally: Tally) -> None:
        """Count for ``tally`` from now on (just accepted: one more open connection on its path)."""
        self._messages_in = self._bytes_in = self._messages_out = self._bytes_out = 0
        self._tally = tally
        tally.joined(self)

    def _deliver(self, kind: int, data: str | bytes) -> None:
        self._messages_in += 1
        # Text counts its UTF-8 bytes (isascii() is O(1) on a str: only other text is encoded again).
        self._bytes_in += len(data) if kind != TEXT or data.isascii() else len(data.encode())  # type: ignore[union-attr]
        WebSocket._deliver(self, kind, data)

    def _send_frame(self, is_text: bool, payload: Any, fin: bool = True) -> None:
        if self._ready_state is _OPEN:
            self._bytes_out += len(payload)
            if fin:
                self._messages_out += 1  # a fragmented message counts at its last frame
        WebSocket._send_frame(self, is_text, payload, fin)

    def _send_uncompressed(self, is_text: bool, payload: Any, proto: Any) -> None:
        self._messages_out += 1
        self._bytes_out += len(payload)
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
            self._tally.left(self, code)
        WebSocket._finish(self, code, reason)
