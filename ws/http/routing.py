"""Request routing: the one path-pattern compiler and the HTTP route table.

A route path is matched against the whole request path (no query).  A
parameter is written ``:name`` or ``{name}`` (``name``: ASCII letters,
digits and ``_``, not starting with a digit); it matches one or more
characters other than ``/`` and its value is percent-decoded once.  Text
around parameters is literal, so ``'/files/:name.json'`` and
``'/flights/:from-:to'`` work as in Express.  The HTTP routes of
``ws.http.Server`` and the WebSocket routes of ``ws.styles.routes`` both
compile their paths here, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Any, Callable
from urllib.parse import unquote

from .context import Context
from .static import StaticFiles

__all__ = ["PathPattern", "Router", "Handler"]

#: A route handler: ``handler(ctx)``, plain or ``async def``; what it returns
#: may answer the request (see ``docs/http.md``).
Handler = Callable[[Context], Any]

_PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PathPattern:
    """A route path compiled once: ``match(path)`` gives its decoded parameters or ``None``.

    Raises ``ValueError`` for a path that does not start with ``/`` or that
    names one parameter twice.
    """

    __slots__ = ("path", "regex", "names")

    def __init__(self, path: str) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"route path must be a string starting with '/', got {path!r}")
        parts: list[str] = []
        names: list[str] = []
        position = 0
        for found in _PARAM.finditer(path):
            name = found.group(1) or found.group(2)
            if name in names:
                raise ValueError(f"route path {path!r} uses parameter {name!r} twice")
            names.append(name)
            parts.append(re.escape(path[position : found.start()]))
            parts.append(f"(?P<{name}>[^/]+)")
            position = found.end()
        parts.append(re.escape(path[position:]))
        self.path = path
        #: The compiled regex; its named groups are the parameters (not decoded).
        self.regex: re.Pattern[str] = re.compile("^" + "".join(parts) + "$")
        #: Parameter names in order; empty for a literal path.
        self.names: tuple[str, ...] = tuple(names)

    @property
    def literal(self) -> bool:
        """Whether the path has no parameters (it matches only itself)."""
        return not self.names

    def match(self, path: str) -> dict[str, str] | None:
        """The parameters of ``path`` (percent-decoded), or ``None`` if it does not match."""
        if not self.names:
            return {} if path == self.path else None
        found = self.regex.match(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}

    def __repr__(self) -> str:
        return f"<PathPattern {self.path!r}>"


class Router:
    """The HTTP route table: exact paths, then patterns (in registration order), then static mounts (longest first)."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._patterns: list[tuple[PathPattern, dict[str, Handler]]] = []
        self._mounts: list[StaticFiles] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` (upper case) on ``path``; a later one replaces it."""
        pattern = PathPattern(path)
        if pattern.literal:
            methods = self._exact.setdefault(path, {})
        else:
            for existing, methods in self._patterns:
                if existing.path == path:
                    break
            else:
                methods = {}
                self._patterns.append((pattern, methods))
        methods[method] = handler

    def mount(self, static: StaticFiles) -> None:
        """Serve ``static`` under its prefix (after every route)."""
        self._mounts.append(static)
        self._mounts.sort(key=lambda s: len(s.prefix), reverse=True)

    def resolve(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], list[str]]:
        """``(handler, params, allowed_methods)``; no handler and no methods: unknown path.

        HEAD falls back to the GET handler, and GET implies HEAD in ``allowed``.
        """
        params: dict[str, str] = {}
        methods = self._exact.get(path)
        if methods is None:
            for pattern, candidate in self._patterns:
                found = pattern.match(path)
                if found is not None:
                    methods, params = candidate, found
                    break
        if methods is None:
            for static in self._mounts:
                if static.matches(path):
                    methods = {"GET": static, "HEAD": static}
                    break
        if not methods:
            return None, {}, []
        handler = methods.get(method)
        if handler is None and method == "HEAD":
            handler = methods.get("GET")
        allowed = set(methods)
        if "GET" in allowed:
            allowed.add("HEAD")
        return handler, params, sorted(allowed)
