"""``FrameReader``: incoming bytes to messages, without the protocol object for common frames.

Most traffic is complete, unfragmented, uncompressed TEXT/BINARY frames.
``websockets``' pure-Python parser costs several microseconds per frame (a
generator step per read, a ``Frame`` object, ``BytesIO``), so while the
connection is OPEN without extensions (``lean``) this reader parses those
frames itself, unmasking with ``websockets``' C ``apply_mask``, and hands
each message to ``deliver``.

Everything else (control frames, fragments, reserved bits, wrong mask bit,
frames over the size limit) goes to the protocol object through ``feed``,
which stays the reference for correctness.  To keep its parser consistent it
is only ever fed whole frames while the reader is lean: an incomplete frame
waits in the reader until its last byte arrives (bounded by ``limit``: a
longer header is handed over at once, and the protocol fails the
connection with 1009).  Once the protocol takes over for good (closing,
failing: ``feed`` returned ``False``, or the owner called :meth:`stop`) it
gets every byte from then on.

While reading is held (:meth:`hold`), the frames of the last read not yet
delivered are kept, unparsed, and delivered first by :meth:`release`.

A large frame (``DIRECT_MIN``) is not gathered: once an eighth of it is in,
it gets a buffer of its exact size (``frame``), which the transport reads
the rest into (see :meth:`buffer`), so its payload is copied once, by the
unmasking, from the socket to the listener.

Sans-I/O: no asyncio, no socket; the owner passes bytes in and receives
calls back.
"""

from __future__ import annotations

from typing import Callable, Union

from ..events import BINARY, TEXT
from .writer import FIN_BINARY, FIN_TEXT, apply_mask

__all__ = ["FrameReader", "DIRECT_MIN", "DIRECT_AHEAD", "apply_mask"]

Buffer = Union[bytes, bytearray, memoryview]

#: Below this a payload is sliced as bytes; above, through a memoryview (one copy fewer).
_SMALL = 2048
#: Incoming frames at least this long are read straight into a buffer of their
#: size once ``1 / DIRECT_AHEAD`` of them has arrived.
DIRECT_MIN = 128 * 1024
DIRECT_AHEAD = 8
_from_bytes = int.from_bytes


class FrameReader:
    """The receive half of one connection's wire state.

    ``deliver(kind, data)`` gets each complete message (``TEXT``: ``str``,
    ``BINARY``: ``bytes``); ``fail(code, reason)`` a violation found here
    (invalid UTF-8); ``feed(data)`` gives bytes to the protocol object and
    says whether it is still OPEN (``False``: it reads everything from now on).
    """

    __slots__ = (
        "lean", "_stopped", "_held", "direct_reads", "frame", "fill", "_partial", "_held_input",
        "_spare", "_fragmented", "_server", "limit", "_deliver", "_fail", "_feed",
    )

    def __init__(
        self,
        *,
        server: bool,
        limit: int | None,
        deliver: Callable[[int, str | bytes], object],
        fail: Callable[[int, str], object],
        feed: Callable[[bytes], bool],
    ) -> None:
        #: Common frames are parsed here (``start``); ``False``: the protocol reads everything.
        self.lean = False
        self._stopped = True  # checked between frames: held, or no longer lean
        self._held = False
        #: The transport reads through :meth:`buffer` (a large frame can go straight into its buffer).
        self.direct_reads = False
        #: A large frame being read into a buffer of its size, and how much of it is in.
        self.frame: memoryview | None = None
        self.fill = 0
        self._partial: bytearray | None = None  # the incomplete frame at the end of the last read
        self._held_input: bytearray | None = None  # frames not delivered while held, unparsed
        self._spare: bytearray | None = None  # the last large frame's buffer, for the next one
        self._fragmented = False  # the protocol holds a fragmented message: data frames are its
        self._server = server  # frames come masked
        self.limit = limit
        self._deliver = deliver
        self._fail = fail
        self._feed = feed

    # -- the owner's controls ---------------------------------------------------

    def start(self) -> None:
        """Parse common frames here from now on (OPEN, no extension, no debug log)."""
        self.lean = True
        self._stopped = self._held

    def stop(self) -> None:
        """The connection left OPEN: the protocol reads the rest, even of the current read."""
        self.lean = False
        self._stopped = True

    def hold(self, held: bool) -> None:
        """Stop (or go on) delivering between frames: ``pause()``, or a backlog of listeners."""
        self._held = held
        self._stopped = held or not self.lean

    @property
    def holding(self) -> bool:
        """Frames wait to be delivered once reading is no longer held."""
        return bool(self._held_input)

    def release(self) -> None:
        """Deliver the frames kept while held (call once no longer held)."""
        if self._held_input is not None:
            self.receive(b"")

    def unparsed(self) -> bytes:
        """Take the bytes received and not parsed (the end of the stream came; the protocol judges them)."""
        frame = self.frame
        if frame is not None:
            rest = bytes(frame[: self.fill])
        else:
            rest = bytes(self._partial or self._held_input or b"")
        self.reset()
        return rest

    def reset(self) -> None:
        """Drop every buffer (the connection is gone)."""
        self.lean = False
        self._stopped = True
        self.frame = self._partial = self._held_input = self._spare = None

    # -- large frames, read in place ----------------------------------------------

    def buffer(self) -> memoryview | None:
        """Where the transport should read next: the rest of a large frame, or ``None`` (anywhere)."""
        frame = self.frame
        if frame is not None:
            return frame[self.fill :]
        self.direct_reads = True
        return None

    def filled(self, nbytes: int) -> memoryview | None:
        """``nbytes`` more of the large frame are in; the whole frame once complete."""
        self.fill += nbytes
        frame = self.frame
        if frame is not None and self.fill >= len(frame):
            self.frame = None
            return frame
        return None

    def recycle(self, frame: memoryview) -> None:
        """A large frame was delivered (its payload copied out): its buffer may take the next one."""
        if self.lean:
            self._spare = frame.obj  # type: ignore[assignment]

    # -- parsing ------------------------------------------------------------------

    def receive(self, data: Buffer) -> None:
        """Deliver the common frames of ``data``; hand the others to the protocol, whole.

        ``data`` may be a view of a buffer reused after this call: what is
        kept is copied.
        """
        if not self.lean:
            if data:
                self._feed(bytes(data))
            return
        buf = self._partial
        if buf is None:
            buf = self._held_input
            self._held_input = None
        else:
            self._partial = None
        if buf is not None:
            buf += data
            data = buf
        n = len(data)
        pos = 0
        need = 0  # the length of the incomplete frame at ``pos``, once its header is in
        server = self._server
        limit = self.limit
        deliver = self._deliver
        fragmented = self._fragmented
        view: memoryview | None = None
        while n - pos >= 2:
            if self._stopped:
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                head = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                head = pos + 4
            else:
                if n - pos < 10:
                    break
                length = _from_bytes(data[pos + 2 : pos + 10], "big")
                head = pos + 10
            if (b1 >= 0x80) is not server or (limit is not None and length > limit):
                # A masking error or an oversized frame: the protocol fails the
                # connection from the header alone; it reads from here on.
                self._hand_over(data[pos:])
                return
            if server:
                head += 4
            end = head + length
            if end > n:
                need = end - pos
                break
            if (b0 == FIN_TEXT or b0 == FIN_BINARY) and not fragmented:
                if length < _SMALL:
                    payload = data[head:end]
                else:
                    if view is None:
                        view = memoryview(data)
                    payload = view[head:end]
                if server:
                    # Any buffer will do for the C apply_mask; its stub says bytes.
                    message = apply_mask(payload, data[head - 4 : head])  # type: ignore[arg-type]
                elif type(payload) is bytes:
                    message = payload
                else:
                    message = bytes(payload)
                pos = end
                if b0 == FIN_TEXT:
                    try:
                        text = message.decode()
                    except UnicodeDecodeError as exc:
                        self._fail(1007, f"invalid UTF-8 at position {exc.start}")
                        self._hand_over(data[pos:])
                        return
                    deliver(TEXT, text)
                else:
                    deliver(BINARY, message)
            else:
                # Control frame, fragment, reserved bits...: the protocol's job.
                if not self._feed(bytes(data[pos:end])):
                    self._hand_over(data[end:])
                    return
                pos = end
                opcode = b0 & 0x0F
                if opcode == 0:
                    if b0 & 0x80:
                        fragmented = False  # the protocol took the last fragment
                elif opcode < 3 and not b0 & 0x80:
                    fragmented = True  # ... or the first one
                self._fragmented = fragmented
        if self._stopped:
            if not self.lean:
                # A listener closed, failed or terminated the connection: the
                # protocol reads the rest.
                self._hand_over(data[pos:])
                return
            if pos < n:  # held: the rest waits, unparsed
                self._held_input = bytearray(memoryview(data)[pos:])
            return
        spare = self._spare
        self._spare = None  # kept only from one large frame to the next
        if pos < n:
            have = n - pos
            if need >= DIRECT_MIN and self.direct_reads:
                # A large frame: a buffer of its size, which the transport reads
                # the rest into; no growing buffer, no copy between the socket
                # and the unmasking.  The previous large frame's buffer is
                # reused (no allocation, no page faults); a new one is made only
                # once an eighth of the frame is here, so that a header alone
                # cannot make us reserve its claimed length.
                if spare is not None and need <= len(spare) <= 4 * need:
                    frame: memoryview | None = memoryview(spare)[:need]
                elif have * DIRECT_AHEAD >= need:
                    frame = memoryview(bytearray(need))
                else:
                    frame = None
                if frame is not None:
                    frame[:have] = memoryview(data)[pos:]
                    self.frame, self.fill = frame, have
                    return
            # Only the tail of an incomplete frame waits (reused when nothing was taken).
            if type(data) is bytearray:
                self._partial = data if pos == 0 else data[pos:]
            else:
                self._partial = bytearray(memoryview(data)[pos:])  # one copy, not two

    def _hand_over(self, rest: Buffer) -> None:
        """The protocol object reads everything from now on (closing or failing)."""
        self.lean = False
        self._stopped = True
        if rest:
            self._feed(bytes(rest))
