"""Serving a folder of files under a URL prefix, without escaping it.

The request path is untrusted: it is percent-decoded once, NUL bytes and
backslashes are refused, ``..`` segments are refused, and the final file is
resolved (symlinks included) and must still lie inside the resolved root.
Anything that fails those checks is answered 404 (400 for malformed paths),
so probing reveals nothing about the file system outside the root.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import quote, unquote

from . import status
from .context import Context

__all__ = ["StaticFiles"]

logger = logging.getLogger("ws.http")


class StaticFiles:
    """Route handler serving files below ``root`` for paths under ``prefix``."""

    def __init__(self, prefix: str, root: str | os.PathLike[str], index: str | None = "index.html") -> None:
        if not prefix.startswith("/"):
            raise ValueError(f"static prefix must start with '/': {prefix!r}")
        self.prefix = prefix.rstrip("/") or "/"
        self.root = Path(root).resolve(strict=True)
        if not self.root.is_dir():
            raise NotADirectoryError(f"static root is not a directory: {self.root}")
        self.index = index

    def matches(self, path: str) -> bool:
        """Whether the request path falls under the prefix."""
        if self.prefix == "/":
            return path.startswith("/")
        return path == self.prefix or path.startswith(self.prefix + "/")

    def _locate(self, raw_rest: str) -> Path | int:
        """Map the part of the path after the prefix to a file, or a status."""
        if "\\" in raw_rest or "\0" in raw_rest:
            return status.BAD_REQUEST
        try:
            rest = unquote(raw_rest, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            return status.BAD_REQUEST
        if "\0" in rest or "\\" in rest:
            return status.BAD_REQUEST
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            return status.NOT_FOUND
        candidate = self.root.joinpath(*parts)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, loops, permission
            return status.NOT_FOUND
        if resolved != self.root and not resolved.is_relative_to(self.root):
            return status.NOT_FOUND
        return resolved

    def __call__(self, ctx: Context) -> None:
        request = ctx.request
        rest = request.path[len(self.prefix):] if self.prefix != "/" else request.path
        found = self._locate(rest)
        if isinstance(found, int):
            ctx.text(found, f"{int(found)} {status.reason(found)}\n")
            return
        if found.is_dir():
            if not request.path.endswith("/"):
                # Relative links inside the index page need the slash.
                location = quote(request.path, safe="/%:@!$&'()*+,;=-._~") + "/"
                if request.query_string:
                    location += "?" + request.query_string
                ctx.redirect(location, status.MOVED_PERMANENTLY)
                return
            if self.index is None:
                ctx.text(status.NOT_FOUND, "404 Not Found\n")
                return
            found = found / self.index
            try:
                found = found.resolve(strict=True)
            except (OSError, RuntimeError):
                ctx.text(status.NOT_FOUND, "404 Not Found\n")
                return
            if not found.is_relative_to(self.root) or not found.is_file():
                ctx.text(status.NOT_FOUND, "404 Not Found\n")
                return
        elif not found.is_file():  # sockets, devices, fifos
            ctx.text(status.NOT_FOUND, "404 Not Found\n")
            return
        try:
            ctx.file(found)
        except PermissionError:
            ctx.text(status.FORBIDDEN, "403 Forbidden\n")
        except OSError:
            logger.debug("static file vanished: %s", found, exc_info=True)
            ctx.text(status.NOT_FOUND, "404 Not Found\n")

    def __repr__(self) -> str:
        return f"<StaticFiles {self.prefix} -> {self.root}>"
