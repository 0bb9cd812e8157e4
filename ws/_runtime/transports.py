"""asyncio's plain socket transport, freed by reference counting once it is done.

``asyncio``'s ``_SelectorSocketTransport`` keeps bound methods of its own in
instance attributes (``_read_ready_cb``, set by ``set_protocol``; from
Python 3.12 ``_write_ready`` too), so every such transport is in a reference
cycle with itself: once closed it goes, with its socket, ``TransportSocket``
and ``extra`` dict, only with the cyclic garbage collector (7 objects of a
server's handshake that the collector had to find).  :func:`untangle` puts a
function of ours in their place once the transport can neither read nor
write any more.  It reads nothing else of the transport's insides; on another
transport (uvloop's, TLS), or a Python whose transport keeps no such attribute,
it changes nothing.
"""

from __future__ import annotations

import asyncio
from asyncio import selector_events as _selector_events
from typing import Any

__all__ = ["untangle"]

#: The transport class, when asyncio still has it under that name.
_SOCKET_TRANSPORT: Any = getattr(_selector_events, "_SelectorSocketTransport", None)
#: The attributes that hold the transport's own bound methods: those the class does not define
#: (``_write_ready`` is a method of the class up to 3.11, an instance attribute from 3.12).
_SELF_BOUND = tuple(
    name for name in ("_read_ready_cb", "_write_ready") if not callable(getattr(_SOCKET_TRANSPORT, name, None))
)


def _done(*_args: object) -> None:
    """A finished transport's read or write callback: nothing is read or written any more."""


def untangle(transport: asyncio.BaseTransport) -> bool:
    """Break a finished transport's cycles with itself; whether any attribute was replaced.

    Finished: closing (its reader is removed, ``resume_reading`` does
    nothing) with nothing left to write (aborted, or drained: its writer is
    removed too), so neither callback can run again.
    """
    if type(transport) is not _SOCKET_TRANSPORT or not transport.is_closing():
        return False
    if transport.get_write_buffer_size():  # type: ignore[attr-defined]
        return False  # close() still drains it: its write callback is needed
    replaced = False
    for name in _SELF_BOUND:  # (read one by one: vars() would build the instance's dict)
        if getattr(getattr(transport, name, None), "__self__", None) is transport:
            setattr(transport, name, _done)
            replaced = True
    return replaced
