"""``FrameReader``: incoming bytes to messages, without the protocol object for common frames.

Most traffic is complete, unfragmented, uncompressed TEXT/BINARY frames.
``websockets``' pure-Python parser costs several microseconds per frame (a
generator step per read, a ``Frame`` object, ``BytesIO``), so while the
connection is OPEN without extensions (``lean``) this reader parses those
frames itself, unmasking with ``websockets``' C ``apply_mask``, and hands
each message to ``deliver``.

The data frames of a fragmented message are parsed here too and joined by
an :class:`~ws.protocol.assembler.Assembler` (which also judges their order:
1002 for a continuation without a message or a new message inside one), so
a large fragment is copied once, by the unmasking, not three more times on
its way through the protocol object.  The reader knows the size of the
message so far: a continuation whose header announces more than what is
left of ``limit`` fails with 1009 before any of its payload is read.

Everything else (control frames, reserved bits, unknown opcodes, wrong mask
bit, frames over the size limit) goes to the protocol object through
``feed``, which stays the reference for correctness.  To keep its parser
consistent it is only ever fed whole frames while the reader is lean: an
incomplete frame waits in the reader until its last byte arrives (bounded
by ``limit``: a longer header is handed over at once, and the protocol
fails the connection with 1009).  Once the protocol takes over for good
(closing, failing: ``feed`` returned ``False``, or the owner called
:meth:`stop`) it gets every byte from then on; a fragmented message still
open is the owner's to announce to it (:attr:`message_size`).

While reading is held (:meth:`hold`), the frames of the last read not yet
delivered are kept, unparsed, and delivered first by :meth:`release`.

One call parses at most ``TURN_FRAMES`` frames (a flood of empty frames
puts 174,000 of them in one 1 MiB read; the cost of a turn is mostly per
frame, a byte costs little): the rest is kept the same way and ``more()``
asks the owner to call :meth:`release` on a later loop turn, so one peer's
read never holds the loop for long, while a read of ordinary messages
(sixteen of 64 KiB, 1,000 of 1 KiB) is parsed in one turn.  Not lean, the protocol
object is fed ``PROTOCOL_TURN_BYTES`` per call.

A large frame (``DIRECT_MIN``) is not gathered: once an eighth of it is in,
it gets a buffer of its exact size (``frame``), which the transport reads
the rest into (see :meth:`buffer`), so its payload is copied once, by the
unmasking, from the socket to the listener.

Sans-I/O: no asyncio, no socket; the owner passes bytes in and receives
calls back.
"""

from __future__ import annotations

from typing import Callable, Union

from websockets.frames import Opcode

from ..events import BINARY, TEXT
from .assembler import Assembler, MessageError
from .writer import FIN_BINARY, FIN_TEXT, apply_mask

__all__ = ["FrameReader", "unfinished_token", "DIRECT_MIN", "DIRECT_AHEAD", "LONG_READ", "SHORT_READ", "READ_AHEAD", "TURN_FRAMES", "TURN_BYTES", "PROTOCOL_TURN_BYTES", "ONE_SMALL_MAX", "apply_mask"]

Buffer = Union[bytes, bytearray, memoryview]

#: Below this a payload is sliced as bytes; above, through a memoryview (one copy fewer).
_SMALL = 2048
#: Incoming frames at least this long are read straight into a buffer of their
#: size once ``1 / DIRECT_AHEAD`` of them has arrived.
DIRECT_MIN = 128 * 1024
DIRECT_AHEAD = 8
#: A read at least this long calls :attr:`FrameReader.long_read` (uvloop's plain
#: reads copy every read: ``ws/connection/websocket.py``, ``_PlainStream``).
LONG_READ = 64 * 1024
#: Right after a large frame read in place, a read into the shared buffer
#: takes at most this much (:attr:`FrameReader.short_read`): the next large
#: frame's first part is copied from it into the kept buffer, the rest is
#: read there in place.  A whole 1 MiB read would copy most of a 1 MiB frame.
SHORT_READ = DIRECT_MIN
#: A bounded read (:meth:`FrameReader.read_size`, once the thread's budget of
#: kept bytes is spent: ``ws/_runtime/reads.py``) takes the rest of the frame
#: in progress (a message the peer has started; ``limit`` bounds it) and this
#: much beyond: all a hold (``pause()``, a rate limit, a backlog) or the turn
#: budget can then leave unparsed in a connection, however fast its peer sends.
READ_AHEAD = 256 * 1024
#: Frames parsed per call (a loop turn) before the rest waits for the next
#: turn: a frame counts as ``FRAME_COST`` bytes on top of its own, against a
#: budget of ``TURN_BYTES`` (one subtraction per frame).  That is 4,096 empty
#: frames (about 12 ms of listeners), or 2 MiB: reads are at most 1 MiB
#: (``READ_SIZE``, :meth:`FrameReader.read_size`), so a read of messages of
#: 1 KiB or more never waits (1,000 frames of 1 KiB use three quarters).
TURN_FRAMES = 4096
FRAME_COST = 512
TURN_BYTES = TURN_FRAMES * FRAME_COST
#: Input this short cannot use up ``TURN_BYTES`` (its frames, of 2 bytes at
#: least, cost at most ``n + n // 2 * FRAME_COST``): it is parsed against its
#: end alone, with no frame cost and no ``IndexError`` at its end (0.3 us a
#: read, a fifth of the reader's time for a read of one small message).
_UNBOUNDED = (TURN_BYTES - 2) // (1 + FRAME_COST // 2)
#: Not lean, input fed to the protocol object per call: its parser costs
#: about 10 us per frame, and it has no cheaper way to count them.
PROTOCOL_TURN_BYTES = 32 * 1024
#: A read longer than this completes a kept incomplete frame without being
#: appended to it whole (``_complete``): for less, the copy costs less than the
#: second call.  64 KiB echoes in 256 KiB reads: 12.3 -> 11.5 us a message
#: through the whole receive path (the copy of 192 KiB a read saved).
_SPLIT_MIN = 16384
#: A read shorter than this may be one whole masked frame of under 126 bytes (``receive``'s shortcut).
ONE_SMALL_MAX = 6 + 126
_from_bytes = int.from_bytes
_DATA_OPCODES = (Opcode.CONT, Opcode.TEXT, Opcode.BINARY)


def unfinished_token(assembler: Assembler | None, frames: int, partial: bool) -> int | None:
    """A token for the message being received, ``None`` when none is (see :meth:`FrameReader.unfinished`).

    A fragmented message open in ``assembler`` is told apart by its serial
    number; otherwise, with a ``partial`` frame in, by ``frames``, a count of
    the frames seen so far that grows with each one.
    """
    if assembler is not None and assembler.in_message:
        return assembler.serial << 1 | 1
    if partial:
        return frames << 1
    return None


def _frame_size(buf: Buffer) -> int:
    """The length of the frame ``buf`` starts with (header, mask key, payload); 0 while its header is incomplete."""
    n = len(buf)
    if n < 2:
        return 0
    b1 = buf[1]
    length = b1 & 0x7F
    if length < 126:
        head = 2
    elif length == 126:
        if n < 4:
            return 0
        length = (buf[2] << 8) | buf[3]
        head = 4
    else:
        if n < 10:
            return 0
        length = _from_bytes(buf[2:10], "big")
        head = 10
    return head + length + 4 if b1 & 0x80 else head + length


def _gone(*_args: object) -> None:
    """``deliver``/``fail`` of a reader whose connection is over (:meth:`FrameReader.detach`): nothing to tell."""


def _gone_feed(_data: bytes) -> bool:
    """``feed`` of a reader whose connection is over: no protocol object reads any more."""
    return False


class FrameReader:
    """The receive half of one connection's wire state.

    ``deliver(kind, data)`` gets each complete message (``TEXT``: ``str``,
    ``BINARY``: ``bytes``); ``fail(code, reason)`` a violation found here
    (invalid UTF-8, fragments out of order, a message over ``limit``, more
    than ``max_fragments`` fragments); ``feed(data)`` gives bytes to the
    protocol object and says whether it is still OPEN (``False``: it reads
    everything from now on); ``more()`` (optional) says that input was kept
    for a later turn (``TURN_FRAMES``).
    """

    __slots__ = (
        "lean", "_stopped", "_held", "direct_reads", "long_read", "frame", "fill", "_partial", "_held_input", "_held_from",
        "spare", "_fragmented", "_server", "_limit", "_small_end", "_small_now", "_deliver", "_fail", "_feed", "_more",
        "max_fragments", "assembler", "message_size", "_frames",
    )

    def __init__(
        self,
        *,
        server: bool,
        limit: int | None,
        deliver: Callable[[int, str | bytes], object],
        fail: Callable[[int, str], object],
        feed: Callable[[bytes], bool],
        more: Callable[[], object] | None = None,
        max_fragments: int | None = None,
    ) -> None:
        #: Common frames are parsed here (``start``); ``False``: the protocol reads everything.
        self.lean = False
        self._stopped = True  # checked between frames: held, or no longer lean
        self._held = False
        #: The transport reads through :meth:`buffer` (a large frame can go straight into its buffer).
        self.direct_reads = False
        #: Called (lean) when a read of ``LONG_READ`` bytes or more arrives, before it is parsed.
        self.long_read: Callable[[], object] | None = None
        #: A large frame being read into a buffer of its size, and how much of it is in.
        self.frame: memoryview | None = None
        self.fill = 0
        self._partial: bytearray | None = None  # the incomplete frame at the end of the last read
        self._held_input: bytearray | None = None  # bytes not parsed yet (held, or for the next turn)...
        self._held_from = 0  # ... from this offset on
        #: The last large frame's buffer, kept for the next one (reads are short while it is: :attr:`short_read`).
        self.spare: bytearray | None = None
        self._fragmented = False  # a fragmented message is open (lean): its frames go to the assembler
        self._server = server  # frames come masked
        self._limit = limit
        self._small_end = 0  # reads shorter than this may be one small frame within the limit (see limit)
        self._small_now = 0  # _small_end while nothing else stands in the shortcut's way (see _ready), else 0
        self.limit = limit
        self._deliver = deliver
        self._fail = fail
        self._feed = feed
        self._more = more
        self.max_fragments = max_fragments
        #: Joins fragmented messages (made by the first one); the protocol's frames go to it too once it reads.
        self.assembler: Assembler | None = None
        #: Bytes of the fragmented message open in the lean path so far.
        self.message_size = 0
        self._frames = 0  # incomplete frames kept so far (tells one from the next, see unfinished())

    @property
    def limit(self) -> int | None:
        """The largest message accepted (``None``: any); a larger one is the protocol object's to fail (1009)."""
        return self._limit

    @limit.setter
    def limit(self, limit: int | None) -> None:
        self._limit = limit
        # A server's read of fewer bytes than this may be one masked frame of under 126 bytes within
        # the limit (receive's shortcut, which then needs no test of its own for either).
        small = ONE_SMALL_MAX if limit is None else min(ONE_SMALL_MAX, 6 + limit + 1)
        self._small_end = small if self._server else 0
        self._ready()

    def _ready(self) -> None:
        """Keep :attr:`_small_now` true to the state: ``receive``'s shortcut then tests one attribute, not five.

        The shortcut is for a read that may be one small frame of a server's,
        within the limit, parsed here (lean, neither held nor stopped), with
        nothing kept from before (no incomplete frame, no input held, no
        large frame's buffer: :attr:`spare`, which the next read parsed whole
        drops) and no fragmented message open.  Called by every method that
        changes one of these (the controls, and ``receive``'s general path as
        it ends).
        """
        self._small_now = (
            self._small_end
            if not self._stopped and self._partial is None and not self._fragmented and self._held_input is None
            and self.spare is None
            else 0
        )

    # -- the owner's controls ---------------------------------------------------

    def start(self) -> None:
        """Parse common frames here from now on (OPEN, no extension, no debug log)."""
        self.lean = True
        self._stopped = self._held
        self._ready()

    def stop(self) -> None:
        """The connection left OPEN: the protocol reads the rest, even of the current read.

        Outside a call to :meth:`receive`, bytes kept (an incomplete frame,
        frames held or left for the next turn) go to the protocol first, with
        the next bytes received or :meth:`release`.  A fragmented message
        still open stays in :attr:`assembler`; :attr:`message_size` says how
        much of it came (the protocol must be told).
        """
        self.lean = False
        self._stopped = True
        self._small_now = 0
        if self._partial is not None:
            self._held_input, self._held_from, self._partial = self._partial, 0, None

    def hold(self, held: bool) -> None:
        """Stop (or go on) delivering between frames: ``pause()``, or a backlog of listeners."""
        self._held = held
        self._stopped = held or not self.lean
        self._ready()

    @property
    def holding(self) -> bool:
        """Bytes wait to be parsed (reading was held, or the last call reached ``TURN_FRAMES``)."""
        return self._held_input is not None

    @property
    def in_message(self) -> bool:
        """A fragmented message is open in the lean path (its frames are the assembler's)."""
        return self._fragmented

    def assembling(self) -> Assembler:
        """The assembler, made on first use (frames from the protocol object go to it too)."""
        assembler = self.assembler
        if assembler is None:
            assembler = self.assembler = Assembler(self.max_fragments)
        return assembler

    def drop_message(self) -> None:
        """Forget the fragmented message being received (a close frame came, or the connection ended)."""
        self._fragmented = False
        self.message_size = 0
        self._ready()
        if self.assembler is not None:
            self.assembler.reset()

    def unfinished(self) -> int | None:
        """A token for the message being received in the lean path, ``None`` when none is.

        The token stays the same while one message is unfinished (a
        fragmented message, from its first frame to its last; otherwise one
        incomplete frame) and changes with the next, so an owner that sees
        the same token for too long knows the message is too slow.  Input
        held or left for the next turn is ours, not the peer's: it does not
        count.
        """
        if not self.lean:
            return None
        return unfinished_token(self.assembler, self._frames, self._partial is not None or self.frame is not None)

    def trim(self) -> None:
        """Drop the buffer kept from the last large frame (an idle connection holds nothing that large)."""
        self.spare = None
        self._ready()

    def release(self) -> None:
        """Parse the input kept for later: while held, past ``TURN_FRAMES``, or when not lean (call once no longer held)."""
        if self._held_input is not None:
            self.receive(b"")

    def unparsed(self) -> bytes:
        """Take the bytes received and not parsed (the end of the stream came; the protocol judges them).

        A fragmented message open stays in :attr:`assembler`.
        """
        frame = self.frame
        if frame is not None:
            rest = bytes(frame[: self.fill])
        elif self._held_input is not None:
            rest = bytes(memoryview(self._held_input)[self._held_from :])
        else:
            rest = bytes(self._partial or b"")
        self._drop_input()
        return rest

    def reset(self) -> None:
        """Drop every buffer and the message being received (the connection is gone, or fails).

        Bytes received from then on go to the protocol object.
        """
        self._drop_input()
        self.drop_message()
        self.assembler = None

    def detach(self) -> None:
        """The connection is over: forget the owner's callbacks (call after :meth:`reset`).

        They are its bound methods, and the owner holds this reader: without
        them the owner is in no reference cycle of ours, and is freed by
        reference counting, not by the cyclic garbage collector.  Anything
        received from then on goes nowhere.
        """
        self._deliver = self._fail = _gone
        self._feed = _gone_feed
        self._more = self.long_read = None

    def _drop_input(self) -> None:
        self.lean = False
        self._stopped = True
        self._small_now = 0
        self.frame = self._partial = self._held_input = self.spare = None

    # -- large frames, read in place ----------------------------------------------

    def buffer(self) -> memoryview | None:
        """Where the transport should read next: the rest of a large frame, or ``None`` (anywhere)."""
        frame = self.frame
        if frame is not None:
            return frame[self.fill :]
        self.direct_reads = True
        return None

    @property
    def short_read(self) -> bool:
        """A large frame was just read in place (its buffer is kept for the next): read at most ``SHORT_READ``."""
        return self.spare is not None

    def read_size(self) -> int:
        """How much the next read into the shared buffer may take: ``READ_AHEAD`` beyond the frame in progress.

        What a read brings past the frame the peer has started may wait
        unparsed (held, or past the turn budget), so that part is bounded;
        right after a large frame read in place, ``SHORT_READ`` (the next
        one's first part is copied out of the shared buffer).
        """
        if self.spare is not None:
            return SHORT_READ
        partial = self._partial
        if partial is None:
            return READ_AHEAD
        rest = _frame_size(partial) - len(partial)  # (negative while its header is incomplete)
        return READ_AHEAD + rest if rest > 0 else READ_AHEAD

    @property
    def kept(self) -> int:
        """Bytes received and kept unparsed beyond the frame in progress (held, or for the next turn)."""
        held = self._held_input
        return 0 if held is None else len(held) - self._held_from

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
            self.spare = frame.obj  # type: ignore[assignment]
            self._small_now = 0  # (the next read goes the general way, which drops it: short reads end)

    # -- parsing ------------------------------------------------------------------

    def receive(self, data: Buffer) -> None:
        """Deliver the common frames of ``data``; hand the others to the protocol, whole.

        ``data`` may be a view of a buffer reused after this call: what is
        kept is copied.
        """
        n = len(data)
        if 5 < n < self._small_now:
            # A strict ping-pong reads one small message at a time: when ``data`` is
            # exactly one masked frame of under 126 bytes (its length byte says
            # ``n - 6``; 0x80 + n - 6 is ``n + 122``), skip the loop's bookkeeping
            # (about half of the reader's bytecodes for such a read).  A server's only,
            # within the limit, lean and not stopped, nothing kept, no fragmented
            # message open: _small_now says all of it (it is 0 otherwise, see _ready).
            if data[1] == n + 122:
                b0 = data[0]
                # (Such reads come as a bytearray or bytes, whose slices cost less than views: ``_Stream``.)
                if b0 == FIN_TEXT:
                    try:
                        text = apply_mask(data[6:], data[2:6]).decode()
                    except UnicodeDecodeError as exc:
                        self._fail(1007, f"invalid UTF-8 at position {exc.start}")
                        self._hand_over(b"")
                        return
                    self._deliver(TEXT, text)
                    return
                if b0 == FIN_BINARY:
                    self._deliver(BINARY, apply_mask(data[6:], data[2:6]))
                    return
                if b0 & 0x70 or (b0 & 0x0F) > 2:
                    # One control frame (a peer's Close ends every connection): the protocol's, as in the
                    # loop below, without its bookkeeping.
                    if not self._feed(bytes(data)):
                        self._hand_over(b"")
                        return
                    if self._stopped and not self.lean:
                        self._hand_over(b"")
                    return
        if not self.lean:
            self._receive_all(data)
            return
        try:
            if n >= LONG_READ and self.long_read is not None:
                self.long_read()  # (the owner may read such reads differently from the next on)
            partial = self._partial
            pos = 0
            if partial is None:
                buf = self._held_input
                if buf is not None:
                    self._held_input = None
                    pos = self._held_from
                    buf += data
                    data = buf
            else:
                self._partial = None
                if len(data) > _SPLIT_MIN and not self._stopped:
                    missing = _frame_size(partial) - len(partial)
                    if 0 < missing < len(data):
                        # The incomplete frame ends early in a long read: it gets
                        # only what it lacks, and the rest is parsed in place, not
                        # appended to it (a copy of the whole read).
                        self._complete(partial, data, missing)
                        return
                partial += data
                data = partial
            n = len(data)
            # The loop ends at ``stop`` (or at the end of ``data``), which each
            # complete frame brings FRAME_COST closer: at most TURN_FRAMES frames
            # per call, however long the read.  Short input ends first anyway.
            if self._more is None or n - pos <= _UNBOUNDED:
                stop, cost = n, 0
            else:
                stop, cost = pos + TURN_BYTES, FRAME_COST
            need = 0  # the length of the incomplete frame at ``pos``, once its header is in
            server = self._server
            limit = self._limit
            deliver = self._deliver
            fragmented = self._fragmented
            if fragmented and limit is not None:
                limit -= self.message_size  # what the next continuation may carry
            view: memoryview | None = None
            while stop - pos >= 2:
                if self._stopped:
                    break
                try:  # (free while no exception, once a call: the end of ``data`` costs no test per frame)
                    b0 = data[pos]
                    b1 = data[pos + 1]
                except IndexError:
                    break  # fewer than 2 bytes left
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
                    if not self._may_parse(b0, b1 >= 0x80, length):
                        # A masking error or an oversized frame: the connection fails
                        # from the header alone; the protocol reads from here on.
                        self._hand_over(data[pos:])
                        return
                if server:
                    head += 4
                end = head + length
                if end > n:
                    need = end - pos
                    break
                stop -= cost
                if (b0 == FIN_TEXT or b0 == FIN_BINARY) and not fragmented:
                    if length < _SMALL:
                        payload = data[head:end]
                    else:
                        if view is None:
                            view = memoryview(data)
                        payload = view[head:end]
                    if server:
                        message = apply_mask(payload, data[head - 4 : head])
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
                elif b0 & 0x70 or (b0 & 0x0F) > 2:
                    # Control frame, reserved bits, unknown opcode: the protocol's job.
                    if not self._feed(bytes(data[pos:end])):
                        self._hand_over(data[end:])
                        return
                    pos = end
                else:
                    # A fragment (or any data frame while a fragmented message is open).
                    if server:
                        chunk = apply_mask(memoryview(data)[head:end], data[head - 4 : head])
                    else:
                        chunk = bytes(memoryview(data)[head:end])
                    pos = end
                    self._fragment(b0, chunk)
                    fragmented = self._fragmented
                    limit = self._limit
                    if fragmented and limit is not None:
                        limit -= self.message_size
            if self._stopped:
                if not self.lean:
                    # A listener closed, failed or terminated the connection: the
                    # protocol reads the rest.
                    self._hand_over(data[pos:])
                    return
                if pos < n:  # held: the rest waits, unparsed
                    self._keep(data, pos)
                return
            if stop - pos < 2 <= n - pos:
                # TURN_FRAMES parsed: the rest waits for the owner's next loop turn.
                assert self._more is not None
                self._keep(data, pos)
                self._more()
                return
            spare = self.spare
            self.spare = None  # kept only from one large frame to the next
            if pos < n:
                if pos or partial is None:
                    self._frames += 1  # a new incomplete frame, not more of the last one
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
        finally:
            self._ready()  # (what the general path changed: what it keeps, a message left open, a stop)

    def _complete(self, partial: bytearray, data: Buffer, missing: int) -> None:
        """Parse the frame kept in ``partial`` once ``missing`` more bytes of ``data`` complete it, then the rest of ``data``.

        The same as parsing ``partial + data``: what the first frame's
        listeners did (a close, ``pause()``) applies to the rest.
        """
        view = memoryview(data)
        partial += view[:missing]
        self.receive(partial)  # (no large frame's buffer to keep: the read that kept ``partial`` dropped it)
        rest = view[missing:]
        if not self.lean:
            self._hand_over(rest)  # closing or failing: the protocol reads the rest, as in one call
            return
        self.receive(rest)

    def _keep(self, data: Buffer, pos: int) -> None:
        """Keep ``data[pos:]`` for later: our own buffer as it is, a view of the caller's as a copy."""
        if type(data) is bytearray:
            self._held_input, self._held_from = data, pos
        else:
            self._held_input, self._held_from = bytearray(memoryview(data)[pos:]), 0

    def _receive_all(self, data: Buffer) -> None:
        """Not lean: the protocol object parses everything, at most ``PROTOCOL_TURN_BYTES`` per call."""
        pos = 0
        held = self._held_input
        if held is not None:  # kept for this turn, or when the reader stopped between two reads
            self._held_input = None
            pos = self._held_from
            held += data
            data = held
        if len(data) - pos > PROTOCOL_TURN_BYTES and self._more is not None:
            self._keep(data, pos + PROTOCOL_TURN_BYTES)
            self._feed(bytes(memoryview(data)[pos : pos + PROTOCOL_TURN_BYTES]))
            if self._held_input is not None:  # (the connection did not end meanwhile)
                self._more()
        elif len(data) > pos:
            self._feed(bytes(memoryview(data)[pos:]) if pos else bytes(data))

    def _may_parse(self, b0: int, masked: bool, length: int) -> bool:
        """A frame wrongly masked or over what is left of ``limit``: whether it is parsed here all the same.

        Only inside a fragmented message: a continuation that can only take
        the message over ``limit`` fails it with 1009 now, before any of its
        payload is read; a control frame or a new message within ``limit``
        is judged as usual.  Anything else the protocol fails from its header.
        """
        limit = self._limit
        if masked is not self._server or not self._fragmented or limit is None:
            return False
        if b0 & 0x0F:
            return length <= limit
        self._violation(1009, f"max payload size exceeded: {length} more bytes after {self.message_size} exceed the limit of {limit}")
        return False

    def _fragment(self, b0: int, payload: bytes) -> None:
        """A data frame of a fragmented message, or the first one: to the assembler; the message once complete."""
        try:
            message = self.assembling().frame(_DATA_OPCODES[b0 & 0x0F], payload, b0 >= 0x80)
        except MessageError as exc:  # out of order, invalid UTF-8, too many fragments
            self._violation(exc.code, exc.reason)
            return
        if message is None:
            self._fragmented = True
            self.message_size += len(payload)
            return
        self._fragmented = False
        self.message_size = 0
        self._deliver(*message)

    def _violation(self, code: int, reason: str) -> None:
        """The peer broke a rule in a fragmented message: drop the message, fail; the protocol reads the rest."""
        self.drop_message()
        self._fail(code, reason)
        self.lean = False
        self._stopped = True
        self._small_now = 0

    def _hand_over(self, rest: Buffer) -> None:
        """The protocol object reads everything from now on (closing or failing)."""
        self.lean = False
        self._stopped = True
        self._small_now = 0
        if rest:
            self._feed(bytes(rest))
