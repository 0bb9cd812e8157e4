"""The per-request object route handlers receive: ``handler(ctx)``.

A handler reads ``ctx.request`` and answers once with one of the response
helpers (``ctx.text``, ``ctx.json``, ...).  The context builds a complete
response description and hands it to the connection, which owns h11 and the
socket; the context itself does no I/O, so it is cheap and easy to test.
"""

from __future__ import annotations

import builtins
import json as _json
import os
from typing import TYPE_CHECKING, Any, Callable, Union

from .._runtime import loop as _loop
from ..request import Request
from . import status as _status
from .responses import check_header

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server

__all__ = ["Context", "Response"]

HeaderValue = Union[str, "list[str]"]

# Framing headers are computed by the server from the body; a handler
# setting them by hand would only produce malformed responses.
_FRAMING = frozenset({"content-length", "transfer-encoding"})


def _check_status(code: int) -> None:
    """Final statuses only: 1xx answers are the server's business (100, 101)."""
    if not 200 <= int(code) <= 999:
        raise ValueError(f"invalid response status: {code!r}")


class Response:
    """A complete response, ready for the connection to send.

    Either ``body`` holds the whole payload, or ``file`` is an open binary
    file of ``length`` bytes that the connection streams (and closes).
    """

    __slots__ = ("status", "headers", "body", "file", "length")

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        file: Any = None,
        length: int | None = None,
    ) -> None:
        self.status = int(status)
        self.headers = headers
        self.body = body
        self.file = file
        self.length = len(body) if length is None else length


class Context:
    """One request being answered: ``ctx.request`` in, one response out.

    Response headers set with :meth:`set_header` (or by editing
    :attr:`headers`) go out with whichever response helper is called.  Each
    helper may be called once; a second answer raises ``RuntimeError``
    because the first one may already be on the wire.
    """

    __slots__ = ("request", "params", "server", "headers", "_send", "_loop", "_responded")

    def __init__(
        self,
        request: Request,
        server: Server | None = None,
        send: Callable[[Response], None] | None = None,
        params: dict[str, str] | None = None,
        loop: Any = None,
    ) -> None:
        self.request = request
        #: Values of ``:name`` segments of the matched route path.
        self.params: dict[str, str] = params or {}
        self.server = server
        #: Response headers; a value may be a list for repeated headers.
        self.headers: dict[str, HeaderValue] = {}
        self._send = send
        self._loop = loop
        self._responded = False

    @property
    def responded(self) -> bool:
        """Whether a response was already given."""
        return self._responded

    # -- response headers -------------------------------------------------

    def set_header(self, name: str, value: HeaderValue) -> Context:
        """Set response header ``name`` (replacing any of another case).

        ``value`` may be a list to send the header several times, as
        ``Set-Cookie`` needs.  Returns the context for chaining.
        """
        values = value if isinstance(value, list) else [value]
        for item in values:
            check_header(name, str(item))
        key = name.lower()
        for existing in [k for k in self.headers if k.lower() == key]:
            del self.headers[existing]
        self.headers[name] = [str(v) for v in value] if isinstance(value, list) else str(value)
        return self

    def get_header(self, name: str) -> HeaderValue | None:
        """The response header ``name`` set so far (any case), or ``None``."""
        key = name.lower()
        for existing, value in self.headers.items():
            if existing.lower() == key:
                return value
        return None

    # -- response helpers -------------------------------------------------

    def status(self, code: int) -> None:
        """Answer with ``code`` and an empty body."""
        self.send(code, b"")

    def text(self, status: int, body: str = "") -> None:
        """Answer with plain text (UTF-8)."""
        self.send(status, body.encode("utf-8"), "text/plain; charset=utf-8")

    def html(self, status: int, body: str = "") -> None:
        """Answer with an HTML document (UTF-8)."""
        self.send(status, body.encode("utf-8"), "text/html; charset=utf-8")

    def json(self, status: int, obj: Any) -> None:
        """Answer with ``obj`` serialised as compact JSON."""
        data = _json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.send(status, data, "application/json")

    def bytes(self, status: int, data: builtins.bytes, content_type: str = "application/octet-stream") -> None:
        """Answer with raw bytes of the given content type.

        (This method shadows the builtin inside the class body, so the
        annotations here spell it ``builtins.bytes``.)
        """
        self.send(status, bytes(data), content_type)

    def redirect(self, url: str, status: int = _status.FOUND) -> None:
        """Answer with a redirect to ``url`` (302 unless told otherwise)."""
        self.set_header("Location", url)
        self.send(status, f"Redirecting to {url}\n".encode("utf-8"), "text/plain; charset=utf-8")

    def file(self, path: str | os.PathLike[str], status: int = _status.OK, content_type: str | None = None) -> None:
        """Answer with the content of the file at ``path``, streamed.

        The file is opened here, so a missing or unreadable file raises
        ``OSError`` in the handler, before anything was sent.
        """
        import mimetypes

        _check_status(status)
        handle = open(path, "rb")
        try:
            length = os.fstat(handle.fileno()).st_size
            if content_type is None:
                guessed, encoding = mimetypes.guess_type(os.fspath(path))
                if encoding is not None or guessed is None:
                    guessed = "application/octet-stream"
                elif guessed.startswith("text/") or guessed in ("application/javascript", "image/svg+xml"):
                    guessed += "; charset=utf-8"
                content_type = guessed
            self._respond(Response(status, self._header_list(content_type), file=handle, length=length))
        except BaseException:
            handle.close()
            raise

    def send(self, status: int, body: builtins.bytes = b"", content_type: str | None = None) -> None:
        """Answer with ``body``; ``content_type`` applies unless a header sets one."""
        _check_status(status)
        self._respond(Response(status, self._header_list(content_type), bytes(body)))

    # -- internals ----------------------------------------------------------

    def _header_list(self, content_type: str | None) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        has_type = False
        for name, value in self.headers.items():
            key = name.lower()
            if key in _FRAMING:
                continue
            has_type = has_type or key == "content-type"
            for item in value if isinstance(value, list) else [value]:
                headers.append((name, item))
        if content_type and not has_type:
            headers.append(("Content-Type", content_type))
        return headers

    def _respond(self, response: Response) -> None:
        if self._responded:
            if response.file is not None:
                response.file.close()
            raise RuntimeError(f"{self.request.method} {self.request.url} was already answered")
        self._responded = True
        if self._send is None:
            return
        loop = self._loop
        if loop is None or _loop.in_loop(loop):
            self._send(response)
        else:
            # A handler that answers from a worker thread: the connection
            # lives on its loop, so hop there.
            _loop.call(loop, self._send, response)

    def __repr__(self) -> str:
        state = "answered" if self._responded else "pending"
        return f"<Context {self.request.method} {self.request.url} {state}>"
