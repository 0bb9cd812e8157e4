"""The last bytes a server writes before it closes TCP leave with the FIN, in one segment.

A server that answers the peer's Close writes the frame and closes the
connection in the same callback.  Written as they are, the frame goes out
at once in its own segment and the FIN follows in another when the loop
closes the socket (a turn later on asyncio's loop): on loopback each segment
costs the sender its trip through the peer's TCP receive path and a wake-up
of the peer, and the peer wakes twice, once for the frame and once for the
end of the stream.  ``hold_for_fin`` corks the socket (Linux ``TCP_CORK``)
before that last write: the kernel keeps the bytes, and ``close()`` puts the
FIN on the same segment (``tcp_send_fin`` marks the unsent tail).  The bytes
on the wire are the same; only their segmentation changes.

Only where nothing else can hold the bytes back: a plain TCP transport of
asyncio's selector loop (not TLS, whose closing handshake may wait for the
peer while the cork would hold the data), with nothing queued in the
transport, so that the write goes to the kernel now; :func:`send_fin` then
shuts the socket's sending side, which sends the bytes and the FIN at once.
Not uvloop's transport: the socket it lends (``get_extra_info('socket')``)
refuses ``shutdown``, and each ``setsockopt`` through it builds a Python
socket (about 15,000 instructions a connection, measured neutral in CPU).
Elsewhere (no ``TCP_CORK``, another transport) it does nothing.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

__all__ = ["hold_for_fin", "send_fin"]

_CORK: int | None = getattr(socket, "TCP_CORK", None)

#: The transport classes whose socket carries our bytes as they are written, by module and name:
#: asyncio's plain socket transport (TCP or unix: a unix socket refuses the option).
PLAIN_TRANSPORTS = frozenset({("asyncio.selector_events", "_SelectorSocketTransport")})

_plain: dict[type, bool] = {}  # transport class -> in PLAIN_TRANSPORTS


def hold_for_fin(transport: asyncio.Transport) -> Any:
    """Cork ``transport``'s TCP socket: call just before the last write, then :func:`send_fin`.

    Returns the corked socket, or ``None`` when nothing was corked.
    """
    if _CORK is None:
        return None
    kind = type(transport)
    plain = _plain.get(kind)
    if plain is None:
        plain = _plain[kind] = (kind.__module__, kind.__qualname__) in PLAIN_TRANSPORTS
    if not plain or transport.get_write_buffer_size():
        return None
    sock: Any = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
    except OSError:  # a unix socket (asyncio's class serves both; asking its family costs more), or reset
        return None
    return sock


def send_fin(transport: asyncio.Transport, sock: Any) -> None:
    """Send the corked bytes with the FIN now (``shutdown(SHUT_WR)``), before the transport closes.

    Why not leave it to ``close()``: a socket closed with unread input (a
    peer that sent more after its Close, or bytes in flight) makes Linux
    answer with a reset and drop what is still unsent, corked bytes
    included, so the peer would never read our Close.  Shut down first,
    the bytes and the FIN are on their way; a reset can only follow them.
    Not while the transport still holds part of the write (the kernel took
    only some of it): ending the stream then would cut it; ``close()``
    sends the rest, and the FIN, when it has drained.
    """
    if transport.get_write_buffer_size():
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except (OSError, TypeError):  # reset or gone already (or a socket that refuses): close() ends it
        pass
