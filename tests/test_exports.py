"""The public surface of ``ws``, pinned: a change to it must be a deliberate one.

``ws`` exports the core (one spelling per name); the HTTP server, ASGI and the
application styles are imported from their own modules.  The names are loaded
lazily, so importing a lower layer (``ws.http``, ``ws.protocol``) through the
package does not load the layers above it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ws

ROOT = Path(__file__).resolve().parent.parent

CORE = [
    "WebSocket",
    "WebSocketServer",
    "ReconnectingWebSocket",
    "Request",
    "VerifyInfo",
    "ReadyState",
    "Event",
    "MessageEvent",
    "CloseEvent",
    "ErrorEvent",
    "WebSocketError",
    "ConnectError",
    "ConnectionClosed",
    "HandshakeError",
    "ProtocolError",
    "NotOpenError",
    "Reject",
    "ReconnectError",
    "QueueFullError",
    "Recovery",
    "Position",
    "enable_debug",
    "disable_debug",
    "__version__",
]

SUBMODULES = ["asgi", "cli", "connection", "events", "exceptions", "forwarded", "http", "protocol", "reconnect", "request", "server", "styles", "upgrade"]

#: A name that left ``ws`` -> a word its AttributeError must contain (where it lives now).
MOVED = {
    "CONNECTING": "WebSocket.CONNECTING",
    "OPEN": "WebSocket.OPEN",
    "CLOSING": "WebSocket.CLOSING",
    "CLOSED": "WebSocket.CLOSED",
    "TextMessage": "WebSocket.TextMessage",
    "BinaryMessage": "WebSocket.BinaryMessage",
    "context": "ws.styles.handlers",
    "create_websocket": "ws.styles.handlers",
    "createWebsocket": "ws.styles.handlers",
    "get_clients": "ws.styles.handlers",
    "get_client": "ws.styles.handlers",
    "get_client_by_handler": "ws.styles.handlers",
    "getClients": "ws.styles.handlers",
    "require_auth": "ws.styles.routes",
    "rooms": "ws.styles.rooms",
    "RequestSocket": "ws.request",
}


def test_all_is_the_core() -> None:
    assert ws.__all__ == CORE


def test_every_name_is_importable_from_its_home() -> None:
    from ws import events, exceptions, reconnect, request, server
    from ws._runtime import log
    from ws.connection import websocket
    from ws.backplane import history
    from ws.protocol import handshake

    homes = {
        "Recovery": history,
        "Position": history,
        "WebSocket": websocket,
        "WebSocketServer": server,
        "VerifyInfo": handshake,
        "ReconnectingWebSocket": reconnect,
        "Request": request,
        "enable_debug": log,
        "disable_debug": log,
    }
    for name in CORE:
        if name == "__version__":
            continue
        value = getattr(ws, name)
        home = homes.get(name) or (events if hasattr(events, name) else exceptions)
        assert value is getattr(home, name), name
        namespace: dict[str, object] = {}
        exec(f"from ws import {name}", namespace)
        assert namespace[name] is value, name
    assert isinstance(ws.__version__, str) and ws.__version__.count(".") == 2
    from ws import _version

    assert ws.__version__ is _version.__version__ and _version.DISTRIBUTION == "ws-js"  # setup.cfg reads the same


def test_star_import_gives_exactly_the_core() -> None:
    namespace: dict[str, object] = {}
    exec("from ws import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(CORE)


def test_errors_are_websocket_errors() -> None:
    for name in CORE:
        value = getattr(ws, name)
        if name.endswith("Error") or name in ("Reject", "ConnectionClosed"):
            assert issubclass(value, ws.WebSocketError), name


def test_every_exception_is_defined_in_ws_exceptions() -> None:
    from ws import exceptions
    from ws.connection import proxy
    from ws.styles import connections, routes

    assert ws.reconnect.ReconnectError is exceptions.ReconnectError
    assert ws.reconnect.QueueFullError is exceptions.QueueFullError
    assert proxy.ProxyError is exceptions.ProxyError and issubclass(proxy.ProxyError, OSError)
    assert routes.InvalidMessage is exceptions.InvalidMessage and issubclass(routes.InvalidMessage, ValueError)
    assert connections.ConnectionNotFound is exceptions.ConnectionNotFound
    for name in exceptions.__all__:
        assert getattr(exceptions, name).__module__ == "ws.exceptions", name


def test_dir_lists_the_core_and_the_submodules() -> None:
    assert dir(ws) == sorted(set(CORE) | set(SUBMODULES))
    for name in SUBMODULES:
        assert getattr(ws, name).__name__ == f"ws.{name}"


@pytest.mark.parametrize("name", sorted(MOVED))
def test_a_moved_name_says_where_it_lives(name: str) -> None:
    with pytest.raises(AttributeError, match=f"moved to .*{MOVED[name]}"):
        getattr(ws, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'$"):
        ws.nope  # noqa: B018
    assert not hasattr(ws, "nope")


def _loaded_by(statement: str) -> set[str]:
    """The ``ws`` modules a fresh interpreter has loaded after ``statement``."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m == 'ws' or m.startswith('ws.'))))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def test_import_ws_loads_almost_nothing() -> None:
    # The logging setup stays: WS_DEBUG=1 works from the first import; ws.__version__ is ws/_version.py's.
    assert _loaded_by("import ws") == {"ws", "ws._runtime", "ws._runtime.log", "ws._version"}


def test_import_ws_http_loads_no_websocket_code() -> None:
    loaded = _loaded_by("import ws.http")
    assert "ws.http" in loaded
    above = [m for m in loaded if m.partition(".")[2].split(".")[0] in ("server", "connection", "styles", "asgi", "reconnect", "cli")]
    assert above == []


def test_import_ws_protocol_loads_no_io_layer() -> None:
    loaded = _loaded_by("import ws.protocol")
    layer0 = {"ws.events", "ws.exceptions", "ws.forwarded", "ws.request", "ws.upgrade"}
    others = {m for m in loaded if not m.startswith("ws.protocol") and m not in layer0}
    assert others == {"ws", "ws._runtime", "ws._runtime.log", "ws._version"}
