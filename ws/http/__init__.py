"""``ws.http``: a small embedded HTTP/1.1 server (h11) that WebSockets can share.

    from ws import http

    server = http.Server("127.0.0.1:3000")

    @server.get("/hello")
    def hello(ctx):
        ctx.text(http.status.OK, "hi")

    server.serve()

Node's spellings work too: ``server = http.create_server()`` (``createServer``)
then ``server.listen(3000, '127.0.0.1', callback)``.

See ``docs/http.md`` for the full reference.
"""

from __future__ import annotations

from . import status
from .context import Context
from .server import Server, create_server
from .server import createServer as createServer  # re-exported (Node's spelling), outside __all__

__all__ = ["Server", "Context", "status", "create_server"]  # one spelling per name: createServer is its alias
