"""One receive buffer per loop thread, shared by every connection on it.

asyncio's plain ``Protocol`` reads allocate a fresh 256 KiB ``bytes`` per
``recv`` and shrink it to what arrived: above malloc's mmap threshold that
is an ``mmap``, a page fault, an ``mremap`` and a ``munmap`` for every read.
Our protocols are ``BufferedProtocol``s instead: the transport reads into
this buffer, and whoever keeps bytes copies them out before returning
(h11 appends them to its own buffer; the WebSocket lean path unmasks or
keeps only an incomplete tail).  Reads never nest on one thread, so one
buffer per thread is enough.

Reads are 1 MiB, but what a connection keeps of a read it cannot parse yet
(held by ``pause()``, a rate limit or a backlog of listeners; past the turn
budget) stays small for all but a few: each thread has a :class:`KeptBudget`
of bytes kept beyond ``READ_AHEAD`` (256 KiB) by connections whose reading
is paused.  While it is spent, reads take only the frame in progress and
``READ_AHEAD`` beyond it, so 10,000 paused peers hold at most 256 KiB each
(plus the frame each has started, which ``max_payload`` bounds) and the
budget, not 1 MiB each.
"""

from __future__ import annotations

import threading

__all__ = ["READ_SIZE", "KEPT_BUDGET", "KeptBudget", "read_buffer", "kept_budget", "plain_reads"]

#: Bytes read from the socket at a time, four times what asyncio reads: a
#: peer that streams large messages (64 KiB echoes, 16 in flight) is read in a
#: quarter of the reads and loop turns, its echoes written in a quarter of the
#: system calls (server CPU per MB -10 to -20%).  Only the pages a read fills
#: are ever touched.
READ_SIZE = 1024 * 1024

#: Bytes a thread's connections may keep beyond ``READ_AHEAD`` each, all
#: together, while their reading is paused, before their reads shrink.
KEPT_BUDGET = 32 * 1024 * 1024

_local = threading.local()


class KeptBudget:
    """A thread's bytes kept beyond ``READ_AHEAD`` by paused connections (``over``), against ``limit``.

    Reads are 1 MiB until ``spent`` (``over >= limit``): the one read that
    may cross the limit adds at most 1 MiB to it.  Each connection adds what
    it keeps when its reading pauses and takes it back when it resumes or ends.
    """

    __slots__ = ("over", "limit", "spent")

    def __init__(self) -> None:
        self.over = 0
        self.limit = KEPT_BUDGET
        #: Reads are bounded (one attribute for ``get_buffer`` to look at).
        self.spent = False

    def add(self, nbytes: int) -> None:
        """``nbytes`` more are kept (less, when negative)."""
        self.over += nbytes
        self.spent = self.over >= self.limit

    def set_limit(self, limit: int) -> None:
        """Change the limit (tests spend it at once with 0)."""
        self.limit = limit
        self.spent = self.over >= limit


def kept_budget() -> KeptBudget:
    """This thread's budget (made on first use)."""
    budget = getattr(_local, "budget", None)
    if budget is None:
        budget = _local.budget = KeptBudget()
    return budget



def read_buffer() -> memoryview:
    """This thread's receive buffer (made on first use)."""
    view = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(READ_SIZE))
    return view


#: uvloop's transports that read into one buffer of the loop and pass plain
#: protocols a ``bytes`` copy of each read (at most 256,000 bytes).
_PLAIN_READ_TRANSPORTS = frozenset({("uvloop.loop", "TCPTransport"), ("uvloop.loop", "UnixTransport")})


def plain_reads(transport: object) -> bool:
    """Whether small reads cost less through ``data_received`` than through a ``BufferedProtocol`` on ``transport``.

    uvloop's TCP and Unix transports read into a buffer of the loop and hand
    a plain protocol a ``bytes`` copy of each read: for a small read that
    copy costs less than the two Python calls of a ``BufferedProtocol``
    (``get_buffer``, ``buffer_updated``), the export of its buffer and our
    view of what arrived (about 2,950 instructions per read of a 32-byte
    message; docs/performance-log.md, "Plain reads on uvloop").  Long reads
    still go through a buffer of ours: no copy, large frames straight into
    their own buffer.  asyncio's transports allocate 256 KiB per plain read
    (above) and uvloop's TLS transport copies either way: both keep the
    buffered protocol.
    """
    cls = type(transport)
    return (cls.__module__, cls.__name__) in _PLAIN_READ_TRANSPORTS
