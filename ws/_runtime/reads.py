"""One receive buffer per loop thread, shared by every connection on it.

asyncio's plain ``Protocol`` reads allocate a fresh 256 KiB ``bytes`` per
``recv`` and shrink it to what arrived: above malloc's mmap threshold that
is an ``mmap``, a page fault, an ``mremap`` and a ``munmap`` for every read.
Our protocols are ``BufferedProtocol``s instead: the transport reads into
this buffer, and whoever keeps bytes copies them out before returning
(h11 appends them to its own buffer; the WebSocket lean path unmasks or
keeps only an incomplete tail).  Reads never nest on one thread, so one
buffer per thread is enough.
"""

from __future__ import annotations

import threading

__all__ = ["READ_SIZE", "read_buffer"]

#: Bytes read from the socket at a time, four times what asyncio reads: a
#: peer that streams large messages (64 KiB echoes, 16 in flight) is read in a
#: quarter of the reads and loop turns, its echoes written in a quarter of the
#: system calls (server CPU per MB -10 to -20%).  Only the pages a read fills
#: are ever touched.
READ_SIZE = 1024 * 1024

_local = threading.local()


def read_buffer() -> memoryview:
    """This thread's receive buffer (made on first use)."""
    view = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(READ_SIZE))
    return view
