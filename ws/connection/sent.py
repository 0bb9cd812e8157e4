"""Node's ``send(data, options, callback)``: the options dict, and callbacks told when their data left.

``WebSocket.send`` keeps its fast path for ``send(data)``; a call with
Node's options dict, a callback or ``compress=`` comes here to be read
(:func:`send_arguments`), and a callback waits in the socket's
:class:`SendCallbacks` until its frame has left for the kernel.

When a callback runs, as in Node (where it is the socket's write callback):

* once the frame was handed to the transport and the transport's buffer
  has emptied since (its bytes are in the kernel), with ``None``.  Under a
  sustained stream the buffer may stay non-empty for a while: the callback
  comes later than the write, never before it;
* with the error, if the socket was not OPEN (``NotOpenError``: no
  ``'error'`` event then, the callback is told instead), or if the
  connection ended before that (``ConnectionClosed``), unless it ended with
  a completed closing handshake, which the peer only answers after reading
  everything sent before it (``None``);
* never synchronously inside ``send()``: always from the socket's loop,
  later, as Node calls it on a later tick.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import asyncio

    from .websocket import WebSocket

__all__ = ["SEND_OPTIONS", "SendCallbacks", "send_arguments"]

#: The keys of Node's ``send`` options object that ``ws`` takes.
SEND_OPTIONS = ("binary", "compress", "fin")

#: While a callback's bytes wait in the transport, it is checked again after
#: this many seconds, doubling up to ``_MAX_POLL`` (asyncio tells when the
#: buffer falls below its low-water mark, not when it is empty).
_FIRST_POLL = 0.001
_MAX_POLL = 0.05


def send_arguments(
    options: Any, callback: Any, binary: bool | None, compress: bool | None, fin: bool
) -> tuple[bool | None, bool | None, bool, Callable[..., Any] | None]:
    """Read Node's ``send(data, options, callback)`` / ``send(data, callback)``: ``(binary, compress, fin, callback)``.

    The options dict and the keywords may both be used, but not for the same
    name.  Anything else in the second position is a ``TypeError`` that says
    what to write.
    """
    if callable(options) and not isinstance(options, Mapping):
        if callback is not None:
            raise TypeError("send(data, callback, callback): the second argument is the options dict, the third the callback")
        options, callback = None, options
    if callback is not None and not callable(callback):
        raise TypeError(f"send()'s callback must be callable, got {type(callback).__name__}")
    if options is None:
        return binary, compress, fin, callback
    if not isinstance(options, Mapping):
        hint = f"send(data, binary={options!r})" if isinstance(options, bool) else "send(data, {'binary': True})"
        raise TypeError(
            f"send()'s second argument is Node's options dict or a callback, got {type(options).__name__}: "
            f"write {hint}"
        )
    unknown = sorted(set(options) - set(SEND_OPTIONS))
    if "mask" in unknown:
        raise TypeError("send() has no 'mask' option: clients always mask their frames and servers never do (RFC 6455)")
    if unknown:
        raise TypeError(f"unknown send() option(s): {', '.join(map(str, unknown))}; Node's are binary, compress and fin")
    given = {"binary": binary is not None, "compress": compress is not None, "fin": fin is not True}
    twice = [name for name in options if given[name]]
    if twice:
        raise TypeError(f"send() option(s) given both in the options dict and as keywords: {', '.join(twice)}")
    if "binary" in options and options["binary"] is not None:
        binary = bool(options["binary"])
    if "compress" in options and options["compress"] is not None:
        compress = bool(options["compress"])
    if "fin" in options:
        fin = bool(options["fin"])
    return binary, compress, fin, callback


class SendCallbacks:
    """The send callbacks of one socket whose frames have not left yet, in send order.

    Made by the socket on its first ``send(..., callback)``; lives on its
    loop.  :meth:`add` after the frame was queued; the socket calls
    :meth:`finish` when the connection is gone.
    """

    __slots__ = ("_socket", "_loop", "_waiting", "_timer", "_delay")

    def __init__(self, socket: "WebSocket", loop: "asyncio.AbstractEventLoop") -> None:
        self._socket = socket
        self._loop = loop
        self._waiting: collections.deque[Callable[..., Any]] = collections.deque()
        self._timer: asyncio.Handle | None = None
        self._delay = _FIRST_POLL

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, callback: Callable[..., Any]) -> None:
        """``callback``'s frame is queued: check once this loop turn's writes are done."""
        self._waiting.append(callback)
        if self._timer is None:
            self._delay = _FIRST_POLL
            # After the flush the send scheduled (call_soon runs in order) or the read's own.
            self._timer = self._loop.call_soon(self._check)

    def _check(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        unwritten = self._socket._unwritten()
        if unwritten is None:
            return  # the transport is closing: the end of the connection decides (finish)
        if unwritten == 0:
            self._settle(None)
            return
        self._timer = self._loop.call_later(self._delay, self._check)
        self._delay = min(self._delay * 2, _MAX_POLL)

    def finish(self, error: BaseException | None) -> None:
        """The connection is gone: every waiting callback gets ``error`` (``None``: its data was delivered)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._settle(error)

    def _settle(self, error: BaseException | None) -> None:
        waiting = self._waiting
        while waiting:
            self._socket._call_back(waiting.popleft(), error)
