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
asyncio's selector loop or of uvloop (not TLS, whose closing handshake may
wait for the peer while the cork would hold the data), with nothing queued
in the transport, so that the write goes to the kernel now and the close
follows within the loop turn.  The kernel sends corked bytes after 200 ms
at the latest in any case.  Elsewhere (no ``TCP_CORK``, another transport)
it does nothing.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

__all__ = ["hold_for_fin"]

_CORK: int | None = getattr(socket, "TCP_CORK", None)

#: The transport classes whose socket carries our bytes as they are written, by module and name
#: (uvloop is not imported for its class): asyncio's plain socket transport (TCP or unix: a unix
#: socket refuses the option) and uvloop's TCP transport.
PLAIN_TRANSPORTS = frozenset({("asyncio.selector_events", "_SelectorSocketTransport"), ("uvloop.loop", "TCPTransport")})

_plain: dict[type, bool] = {}  # transport class -> in PLAIN_TRANSPORTS


def hold_for_fin(transport: asyncio.Transport) -> None:
    """Cork ``transport``'s TCP socket: call just before the last write, with ``close()`` right after it."""
    if _CORK is None:
        return
    kind = type(transport)
    plain = _plain.get(kind)
    if plain is None:
        plain = _plain[kind] = (kind.__module__, kind.__qualname__) in PLAIN_TRANSPORTS
    if not plain or transport.get_write_buffer_size():
        return
    sock: Any = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
    except OSError:  # a unix socket (asyncio's class serves both; asking its family costs more), or reset
        pass
