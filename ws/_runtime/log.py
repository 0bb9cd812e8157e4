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

Reports a peer can repeat at will (a listener that raises on every bad
message, a hook that fails on every handshake) go through
:func:`report_error`: the first of a cause is logged in full, with its
traceback; repeats within ``REPORT_INTERVAL`` seconds are only counted, and
one line per cause and interval says how many there were
(:class:`ReportLimiter`).  ``WS_LOG_INTERVAL`` sets the interval.

Events a peer causes at will (a refused handshake, a protocol error) go
through :func:`report_event` under the same limiter: one line per cause
(``403 origin not allowed``, ``1002 protocol error``) and interval, then
one count line, each with structured fields in the record (``ws_event``,
``cause``, ``count``... see :func:`report_event`) for JSON formatters.
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
import sys
import threading
import time
import traceback
import types
from typing import IO, Any, Callable, Hashable

__all__ = [
    "ORIGIN_NOT_ALLOWED",
    "ReportLimiter",
    "announce",
    "configure_from_env",
    "disable_debug",
    "enable_debug",
    "protocol_cause",
    "refusal_cause",
    "report_error",
    "report_event",
    "reports",
]

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
    """``WS_DEBUG=1`` (any value but ``''``/``0``) turns debug mode on at import;
    ``WS_LOG_INTERVAL=seconds`` sets the interval of repeated reports."""
    if os.environ.get("WS_DEBUG", "") not in ("", "0"):
        enable_debug()
    interval = os.environ.get("WS_LOG_INTERVAL", "")
    if interval:
        try:
            reports.interval = float(interval)
        except ValueError:
            ROOT.warning("WS_LOG_INTERVAL=%r is not a number of seconds; using %s", interval, reports.interval)


# -- repeated reports ---------------------------------------------------------------

#: Seconds during which repeats of one cause are counted instead of logged.
REPORT_INTERVAL = 10.0

#: How many frames of a traceback tell causes apart.
_CAUSE_DEPTH = 32


class _Window:
    """One cause's interval: when it began, the repeats counted, and how to summarise them."""

    __slots__ = ("start", "count", "summary")

    def __init__(self, start: float, count: int, summary: Callable[[int, float], None]) -> None:
        self.start = start
        self.count = count
        self.summary = summary


class ReportLimiter:
    """One full report per cause and interval; repeats are counted and summarised in one line.

    ``allow(cause, summary)`` says whether an occurrence is to be reported in
    full.  The first of a cause is; repeats within ``interval`` seconds are
    counted, and when the interval ends ``summary(count, seconds)`` is called
    once (by a timer on the running loop, or at the next occurrence).  While a
    cause keeps repeating it gets one summary per interval and no further
    traceback; after a quiet interval its next occurrence is reported in full
    again.  ``clock`` and ``interval`` may be set for tests.
    """

    def __init__(
        self, interval: float = REPORT_INTERVAL, *, clock: Callable[[], float] = time.monotonic, max_causes: int = 256
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.max_causes = max_causes
        self._windows: dict[Hashable, _Window] = {}
        self._lock = threading.Lock()

    def allow(self, cause: Hashable, summary: Callable[[int, float], None]) -> bool:
        """``True``: report this occurrence in full; ``False``: it was counted."""
        now = self.clock()
        due: list[tuple[_Window, float]] = []
        with self._lock:
            window = self._windows.get(cause)
            if window is not None and now - window.start < self.interval:
                window.count += 1
                if window.count == 1:
                    self._arm(window.start + self.interval - now)
                return False
            full = window is None or window.count == 0
            if window is not None:
                del self._windows[cause]
                if window.count:
                    due.append((window, now - window.start))
            elif len(self._windows) >= self.max_causes:  # make room: the oldest cause goes
                oldest = next(iter(self._windows))
                dropped = self._windows.pop(oldest)
                if dropped.count:
                    due.append((dropped, now - dropped.start))
            # A cause that keeps repeating counts this one in its next interval (still "like" the first).
            self._windows[cause] = _Window(now, 0, summary) if full else _Window(now, 1, window.summary)  # type: ignore[union-attr]
            if not full:
                self._arm(self.interval)
        for ended, seconds in due:
            ended.summary(ended.count, seconds)
        return full

    def flush(self, force: bool = False) -> None:
        """Summarise the intervals that ended (all of them with ``force``).

        A timer may come early: uvloop counts a delay from the time its loop
        read when the turn began, so after a long turn it fires that much
        sooner.  Counted repeats whose interval has not ended then get
        another timer, for what is left of it.
        """
        now = self.clock()
        due: list[tuple[_Window, float]] = []
        left: float | None = None  # until the next interval with counted repeats ends
        with self._lock:
            for cause, window in list(self._windows.items()):
                if force or now - window.start >= self.interval:
                    if window.count:
                        due.append((window, now - window.start))
                        self._windows[cause] = _Window(now, 0, window.summary)  # still repeating: quiet
                    else:
                        del self._windows[cause]
                elif window.count:
                    remaining = window.start + self.interval - now
                    left = remaining if left is None else min(left, remaining)
        if left is not None:
            self._arm(left)
        for ended, seconds in due:
            ended.summary(ended.count, seconds)

    def reset(self) -> None:
        """Forget every cause (nothing is summarised)."""
        with self._lock:
            self._windows.clear()

    def _arm(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop on this thread: summarised at the next occurrence
            return
        loop.call_later(max(delay, 0.0), self.flush)


#: The limiter of every report :func:`report_error` makes.
reports = ReportLimiter()


def cause_of(log: logging.Logger, message: str, error: BaseException | None) -> Hashable:
    """What makes two reports "the same": logger, message template, exception type and where it was raised."""
    if error is None:
        return (log.name, message)
    where: list[tuple[str, int]] = []
    tb: types.TracebackType | None = error.__traceback__
    while tb is not None and len(where) < _CAUSE_DEPTH:
        where.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return (log.name, message, type(error), tuple(where))


def _logging_configured(log: logging.Logger) -> bool:
    """Whether a record of ``log`` at ERROR reaches a handler other than a NullHandler."""
    current: logging.Logger | None = log
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def _to_stderr(message: str, args: tuple[Any, ...], error: BaseException | None = None) -> None:
    """``ws: message`` (and ``error``'s traceback) on stderr, for an application that configured no logging."""
    try:
        text = message % args if args else message
        sys.stderr.write(f"ws: {text}\n")
        if error is not None and error.__traceback__ is not None:
            traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        sys.stderr.flush()
    except Exception:  # stderr closed or broken: nothing more we can do
        pass


def _emit(log: logging.Logger, message: str, args: tuple[Any, ...], error: BaseException | None, stderr: bool) -> None:
    log.error(message, *args, exc_info=error)
    if stderr and log.isEnabledFor(logging.ERROR) and not _logging_configured(log):
        _to_stderr(message, args, error)


def announce(log: logging.Logger, level: int, message: str, *args: Any) -> None:
    """A line a process says about itself (the workers' supervisor: started, died, stopped).

    It is logged at ``level``; when the application configured no logging at
    all, it is also printed to stderr as ``ws: ...``, whatever the level, as
    a process manager's lines are.
    """
    log.log(level, message, *args)
    if not _logging_configured(log):
        _to_stderr(message, args)


def report_error(
    log: logging.Logger,
    message: str,
    *args: Any,
    error: BaseException | None = None,
    stderr: bool = False,
    limiter: ReportLimiter | None = None,
) -> None:
    """``log.error(message % args)`` with ``error``'s traceback, at most once per cause and interval.

    Repeats of the same cause (:func:`cause_of`) within the interval are
    counted and summarised in one line.  With ``stderr``, a report is also
    printed to stderr when the application configured no logging at all.
    """
    kind = type(error).__name__ if error is not None else None  # the summary keeps no error or frames

    def summary(count: int, seconds: float) -> None:
        text = message % args if args else message
        what = f" ({kind})" if kind is not None else ""
        _emit(log, "%s more like %r%s in the last %.1f s", (f"{count:,}", text, what, seconds), None, stderr)

    if (limiter or reports).allow(cause_of(log, message, error), summary):
        _emit(log, message, args, error, stderr)


# -- events a peer causes: refusals, protocol errors -------------------------------------------

#: The cause of a refused handshake by status; 403 and 503 are told apart by their reason.
_REFUSALS = {
    400: "bad handshake",
    401: "unauthorized",
    403: "forbidden",
    404: "no such path",
    405: "method not allowed",
    426: "unsupported version",
    429: "too many requests",
    500: "internal error",
    503: "unavailable",
    505: "http version not supported",
}

#: The cause of a connection we failed, by close code.
_CLOSES = {
    1002: "protocol error",
    1003: "unsupported data",
    1007: "invalid payload",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
}


#: The cause of a handshake refused for its ``Origin`` (``allowed_origins``, or a ``verify_client`` saying so).
ORIGIN_NOT_ALLOWED = "403 origin not allowed"


def refusal_cause(status: int, reason: str) -> str:
    """What a refused handshake is counted and logged as: ``'403 origin not allowed'``, ``'400 bad handshake'``."""
    kind = _REFUSALS.get(status)
    lowered = reason.lower()
    if status == 403 and "origin" in lowered:
        kind = "origin not allowed"
    elif status == 503 and "closed" in lowered:
        kind = "server closed"
    elif status == 503 and "too many connections" in lowered:
        kind = "too many connections"
    elif kind is None:
        try:
            kind = http.HTTPStatus(status).phrase.lower()
        except ValueError:
            kind = "refused"
    return f"{status} {kind}"


def protocol_cause(code: int) -> str:
    """What a connection failed with ``code`` is logged as: ``'1002 protocol error'``."""
    return f"{code} {_CLOSES.get(code, 'closed')}"


def report_event(
    log: logging.Logger, level: int, event: str, cause: str, message: str, *args: Any,
    peer: str | None = None, limiter: ReportLimiter | None = None, **fields: Any,
) -> None:
    """Log ``message % args`` at ``level``, at most once per ``(event, cause)`` and interval; repeats are counted.

    The record carries ``extra`` fields: ``ws_event`` (``event``),
    ``cause``, ``count`` (1), ``peer`` and ``fields`` (the same for every
    occurrence of the cause, e.g. ``status``).  When the interval ends, one
    line says how many more there were: ``ws_event``, ``cause``, ``count``
    (the repeats), ``interval`` (seconds), ``summary`` (``True``) and ``fields``.
    """
    if not log.isEnabledFor(level):
        return

    def summary(count: int, seconds: float) -> None:
        extra = {"ws_event": event, "cause": cause, "count": count, "interval": round(seconds, 3), "summary": True, **fields}
        log.log(level, "%s (%s): %s more in the last %.1f s", event.replace("_", " "), cause, f"{count:,}", seconds, extra=extra)

    if (limiter or reports).allow((log.name, event, cause), summary):
        log.log(level, message, *args, extra={"ws_event": event, "cause": cause, "count": 1, "peer": peer, **fields})
