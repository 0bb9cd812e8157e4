"""The lean path's parser: the common WebSocket upgrade request, read strictly in one pass.

Most handshakes arrive as one read holding a whole ``GET ... HTTP/1.1``
head with a dozen ordinary headers and nothing else.  ``upgrade_head``
recognises exactly that and nothing more: anything it does not vouch for
gives ``None``, and the connection hands the bytes to its full parser
(h11 or httptools), which then gives the proper answer.  So it may refuse
more than it must, but what it accepts must come out as the full parser
would build it: the same target, the same raw header list (wire order and
spelling, values without surrounding whitespace).

Pure and without I/O: ``tests/unit/test_http_lean.py`` checks it against
the full parsers.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["SLACK", "LeanHead", "upgrade_head"]

# A whole head: the request line (an origin-form target: llhttp refuses some
# other forms h11 takes), header lines with token names and values of visible
# ASCII, spaces and tabs, a blank line.  No obs-fold, no bare CR or LF, no
# control or non-ASCII byte anywhere.  (A value of nothing but whitespace is
# refused by ``upgrade_head`` after its strip: in the pattern, "at least one
# visible byte" made the engine backtrack on every line, a third of its time.)
_HEAD = re.compile(
    rb"GET (/[\x21-\x7e]*) HTTP/1\.1\r\n"
    rb"((?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t\x21-\x7e]*\r\n)+)"
    rb"\r\n"
)


#: Bytes a first read may hold beyond ``max_size`` (a frame or two after the head, and the
#: request line and CRLFs, which the size does not count): a larger read is no plain
#: handshake and goes to the full parser unread, so the regex never scans more than this.
#: (The pattern runs in linear time, ``tests/unit/test_http_lean.py`` checks its worst
#: case; this bound makes the cost of a failed attempt small as well.)
SLACK = 4096


class LeanHead(NamedTuple):
    """A request head the lean path accepted."""

    target: str
    #: ``(name, value)`` as the full parsers give them, decoded (all ASCII).
    headers: list[tuple[str, str]]
    #: The ``Upgrade`` header's value.
    upgrade: bytes
    #: Where the head ends in the data: what follows is the new protocol's.
    end: int
    #: ``Request.headers`` when no name repeats (lower-cased names, values as sent); ``None``: build them.
    fields: dict[str, str] | None = None


_new_head = tuple.__new__


def upgrade_head(data: bytes | memoryview, max_size: int, max_count: int) -> LeanHead | None:
    """``data`` as one complete, plain upgrade request head, or ``None`` (use the full parser).

    Accepted: ``GET`` with ``HTTP/1.1``, exactly one ``Host``, one
    ``Upgrade``, a ``Connection`` naming ``upgrade``, no body
    (``Content-Length: 0`` at most, no ``Transfer-Encoding``), no
    ``Expect``, within ``max_size`` (counted as ``Connection`` counts it)
    and ``max_count``, in at most ``max_size + SLACK`` bytes of ``data`` (a view is
    fine: nothing of it is kept); after the head, nothing or what looks like the start
    of a masked WebSocket frame, never a pipelined request.
    """
    if len(data) > max_size + SLACK:
        return None
    match = _HEAD.match(data)
    if match is None:
        return None
    end = match.end()
    if end < len(data):
        first = data[end]
        # A client's frame: RSV2 and RSV3 clear (RSV1 is permessage-deflate's), a
        # known opcode, and, if its second byte is here, masked: never ASCII text.
        if first & 0x30 or (first & 0x0F) not in (0, 1, 2, 8, 9, 10):
            return None
        if end + 1 < len(data) and not data[end + 1] & 0x80:
            return None
    target = match.group(1)
    # Validated ASCII: decoded once, split into fields as str (what ``Request`` takes).
    block = match.group(2).decode("ascii")
    lines = block.split("\r\n")
    lines.pop()  # (after the last CRLF)
    if len(lines) > max_count:
        return None
    headers = []
    lowered: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        value = value.strip(" \t")
        if not value:
            return None  # (empty or only whitespace: left to the full parser)
        headers.append((name, value))
        lowered[name.lower()] = value
    fields: dict[str, str] | None = lowered
    if len(lowered) == len(headers):  # no name twice (the common case): looked up, not walked
        upgrade = lowered.get("upgrade")
        connection = lowered.get("connection")
        length = lowered.get("content-length")
        if (
            upgrade is None or connection is None or "host" not in lowered or (length is not None and length != "0")
            or "transfer-encoding" in lowered or "expect" in lowered
            or (connection != "Upgrade" and _no_upgrade_token(connection))  # (as browsers send it: no call)
        ):
            return None
    else:
        fields = None  # (``Request`` joins the repeated ones)
        upgrade = _walk(headers)
        if upgrade is None:
            return None
    # At most one more per field than what ``Connection`` counts (``len(name) + len(value) + 4``).
    if len(target) + len(block) + len(headers) > max_size:
        if len(target) + sum(len(name) + len(value) + 4 for name, value in headers) > max_size:
            return None
    # (``tuple.__new__`` directly: the named tuple's generated ``__new__`` is a Python call)
    return _new_head(LeanHead, (target.decode("ascii"), headers, upgrade.encode("ascii"), end, fields))


def _no_upgrade_token(connection: str) -> bool:
    """Whether a ``Connection`` value lacks the ``upgrade`` token (any case, among others or alone)."""
    lowered = connection.lower()
    return "upgrade" not in lowered or "upgrade" not in [v.strip() for v in lowered.split(",")]


def _walk(headers: list[tuple[str, str]]) -> str | None:
    """The ``Upgrade`` value of fields where a name repeats, if they are a plain upgrade's (else ``None``)."""
    hosts = 0
    upgrade: str | None = None
    connection_upgrade = False
    lengths = 0
    for name, value in headers:
        key = name.lower()
        if key == "host":
            hosts += 1
        elif key == "upgrade":
            if upgrade is not None:
                return None
            upgrade = value
        elif key == "connection":
            connection_upgrade = connection_upgrade or "upgrade" in (v.strip().lower() for v in value.split(","))
        elif key == "content-length":
            if value != "0" or lengths:
                return None  # (h11 merges repeated ones: the raw list would differ)
            lengths = 1
        elif key == "transfer-encoding" or key == "expect":
            return None
    if hosts != 1 or not connection_upgrade:
        return None
    return upgrade
