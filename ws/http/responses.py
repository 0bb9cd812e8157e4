"""Plain-text HTTP answers written straight to a transport, and the ``Date`` header.

Every refusal the library writes itself (a handshake refused with 401, a
busy server's 503, a malformed request's 400) has the same shape: a status
line, ``Date``, ``Server``, a short ``text/plain`` body, ``Connection:
close``.  This is the one place that builds it.  It imports nothing from
``ws`` above ``ws.http.status``.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from typing import Iterable

from .status import reason

__all__ = ["SERVER_NAME", "check_header", "http_date", "phrase", "plain_response"]

#: The ``Server`` header value of responses the library writes.
SERVER_NAME = "ws-python"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: What a response header value must not hold: a control character (CR or LF would put a second
#: header, or a body, on the wire) or one ``latin-1`` cannot encode.  (A negated class: cheap to compile.)
_BAD_VALUE = re.compile("[^\t\x20-\x7e\x80-\xff]")


def check_header(name: str, value: str) -> None:
    """Raise ``ValueError`` unless ``name: value`` is one well-formed response header line.

    Every response header goes through it before anything is written:
    ``ctx.set_header`` at once, ``ctx.headers`` edited by hand when the
    response is framed (``Connection``).
    """
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid header name: {name!r}")
    if _BAD_VALUE.search(value):
        raise ValueError(f"invalid value for header {name!r}: {value!r}")


_date_cache: list[int | str] = [0, ""]


def http_date() -> str:
    """The ``Date`` header value, formatted at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True)
    return str(_date_cache[1])


def phrase(status: int) -> str:
    """The reason phrase of ``status``; ``'Error'`` for codes without one."""
    return reason(status) or "Error"


def plain_response(status: int, text: str | None = None, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete ``Connection: close`` response with a one-line text body.

    ``text`` defaults to ``'<status> <phrase>'``; ``headers`` are added
    after the standard ones (a ``Retry-After``, a ``WWW-Authenticate``...).
    """
    body = ((text if text is not None else f"{status} {phrase(status)}").rstrip("\n") + "\n").encode()
    lines = [
        f"HTTP/1.1 {status} {phrase(status)}",
        f"Date: {http_date()}",
        f"Server: {SERVER_NAME}",
        "Connection: close",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
    ]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
