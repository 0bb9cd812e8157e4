"""ws.styles.handlers: handler modules, context, the client registry and .websocket descriptors."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from ws.styles import handlers
from ws.styles.endpoints import websockets
from ws.styles.handlers import load_websockets

from .conftest import run, serving, until
from .styles_helpers import Peer, run_example

HANDLER_SOURCE = '''
import asyncio
from ws.styles import handlers

events = []

def onOpen(client):
    events.append(("open", handlers.context.get_method(), handlers.context.isOnOpen()))
    handlers.context.get_connection().send("hello")

async def on_message(message):
    await asyncio.sleep(0)  # the context survives awaits
    events.append(("message", message, handlers.context.get_message(), handlers.context.getMethod(), handlers.context.is_on_message()))
    if message == "hello":
        handlers.context.get_connection().close(4000, "enough")

def on_error(error):
    events.append(("error", type(error).__name__, handlers.context.get_error() is error, handlers.context.is_on_error()))

def on_close():
    events.append(("close", handlers.context.get_method(), handlers.context.is_on_close()))
'''

SERVER_HANDLER_SOURCE = '''
def on_open(connection):
    connection.send("welcome " + connection.endpoint)

def on_message(message, connection):
    connection.send("echo:" + message)
'''


@pytest.fixture
def handler_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh importable package ``stylepkg_<n>`` with a client and a server handler module."""
    name = f"stylepkg_{tmp_path.name.replace('-', '_')}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "client_handler.py").write_text(HANDLER_SOURCE)
    (pkg / "server_handler.py").write_text(SERVER_HANDLER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


# -- resolving handlers ---------------------------------------------------------------------------


def test_resolve_module_object_mapping_and_paths(handler_pkg: str) -> None:
    module = handlers._import(f"{handler_pkg}.server_handler")
    assert set(handlers.resolve_handler(module)) == {"on_open", "on_message"}
    assert set(handlers.resolve_handler(f"{handler_pkg}.client_handler")) == {"on_open", "on_message", "on_error", "on_close"}
    assert set(handlers.resolve_handler(f"{handler_pkg}/server_handler")) == {"on_open", "on_message"}  # JSH spelling

    class Obj:
        def onMessage(self, message: str) -> None: ...

    assert list(handlers.resolve_handler(Obj())) == ["on_message"]
    assert list(handlers.resolve_handler({"on_close": print})) == ["on_close"]
    holder = types.ModuleType(f"{handler_pkg}.holder")
    holder.thing = {"on_open": print}  # type: ignore[attr-defined]
    sys.modules[holder.__name__] = holder
    assert list(handlers.resolve_handler(f"{holder.__name__}:thing")) == ["on_open"]


def test_bad_handlers_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="defines none of"):
        handlers.resolve_handler(object())
    with pytest.raises(TypeError, match="defines both on_open and onOpen"):
        handlers.resolve_handler({"on_open": print, "onOpen": print})
    with pytest.raises(TypeError, match="on_message must be callable"):
        handlers.resolve_handler({"on_message": 3})
    with pytest.raises(ImportError, match="cannot import handler module 'no_such_pkg_xyz.mod'"):
        handlers.resolve_handler("no_such_pkg_xyz.mod")
    with pytest.raises(ImportError, match="has no attribute"):
        handlers.resolve_handler("json:nothing_here")
    with pytest.raises(TypeError, match="got None"):
        handlers.resolve_handler(None)
    with pytest.raises(ValueError, match="engine"):
        handlers.create_websocket("ws://127.0.0.1:1/", {"on_open": print}, engine="netty")


def test_context_outside_a_handler() -> None:
    ctx = handlers.context
    assert ctx.get_method() is None and ctx.get_message() is None and ctx.get_error() is None
    assert not (ctx.is_on_open() or ctx.is_on_message() or ctx.is_on_error() or ctx.is_on_close())
    assert ctx.getMethod() is None and handlers.createWebsocket is handlers.create_websocket
    assert handlers.getClientByHandler is handlers.get_client_by_handler and handlers.getClients is handlers.get_clients


# -- clients and the registry ------------------------------------------------------------------------


def test_client_with_module_path_context_and_registry(handler_pkg: str) -> None:
    async def main() -> None:
        async with serving(None) as (server, _):
            websockets(server, {"echo": {"on_message": lambda m, c: c.send(m)}}, prefix="/")
            path = f"{handler_pkg}.client_handler"
            client = handlers.create_websocket(f"ws://127.0.0.1:{server.port}/echo", path)
            module = sys.modules[path]
            assert handlers.get_client(client.id) is client
            assert handlers.get_client_by_handler(path) is client
            assert handlers.get_client_by_handler(module) is client
            assert handlers.get_client_by_handler(f"{handler_pkg}/client_handler") is client
            (meta,) = [m for m in handlers.get_clients() if m["id"] == client.id]
            assert meta["uri"] == f"ws://127.0.0.1:{server.port}/echo" and meta["handler"] == path
            assert meta["state"] in ("CONNECTING", "OPEN")
            await until(lambda: any(e[0] == "close" for e in module.events))
            assert module.events == [
                ("open", "onopen", True),
                ("message", "hello", "hello", "onmessage", True),
                ("close", "onclose", True),
            ]
            assert client.state == "CLOSED"
            assert handlers.get_client(client.id) is None
            assert handlers.get_client_by_handler(path) is None
            assert all(m["id"] != client.id for m in handlers.get_clients())

    run(main)


def test_object_handler_send_close_and_errors() -> None:
    async def main() -> None:
        class Handler:
            def __init__(self) -> None:
                self.log: list[tuple] = []

            def on_open(self) -> None:
                self.log.append(("open",))

            def on_message(self, message: str, client: handlers.Client) -> None:
                self.log.append(("message", message, client.id))

            def on_error(self, error: BaseException) -> None:
                self.log.append(("error", type(error).__name__, handlers.context.get_method()))

            def on_close(self) -> None:
                self.log.append(("close",))

        async with serving(None) as (server, _):
            websockets(server, {"echo": {"on_message": lambda m, c: c.send(m)}}, prefix="/")
            handler = Handler()
            client = handlers.create_websocket(f"ws://127.0.0.1:{server.port}/echo", handler)
            assert handlers.get_client_by_handler(handler) is client
            await until(lambda: handler.log == [("open",)])
            client.send("ping")
            await until(lambda: len(handler.log) == 2)
            assert handler.log[1] == ("message", "ping", client.id)
            client.close()
            await until(lambda: handler.log[-1] == ("close",))
            assert handlers.get_client_by_handler(handler) is None

            # A refused connection: on_error (with the error in handlers.context), then on_close.
            failing = Handler()
            port = server.port
        bad = handlers.create_websocket(f"ws://127.0.0.1:{port}/echo", failing)
        await until(lambda: failing.log and failing.log[-1] == ("close",))
        assert failing.log[0] == ("error", "ConnectError", "onerror")
        assert handlers.get_client(bad.id) is None

    run(main)


# -- server side: descriptors ----------------------------------------------------------------------------


def test_load_websockets_reports_bad_descriptors_and_loads_the_rest(handler_pkg: str, tmp_path: Path) -> None:
    folder = tmp_path / "endpoints"
    (folder / "nested").mkdir(parents=True)
    good = {"handler": f"{handler_pkg}.server_handler", "endpoint": "my-endpoint", "description": "My Websocket"}
    (folder / "my-endpoint.websocket").write_text(json.dumps(good))
    (folder / "nested" / "implicit.websocket").write_text(json.dumps({"handler": f"{handler_pkg}/server_handler"}))
    (folder / "broken.websocket").write_text("{not json")
    (folder / "extra.websocket").write_text(json.dumps({**good, "endpoint": "x", "color": "red"}))
    (folder / "missing.websocket").write_text(json.dumps({"handler": "no_such_pkg_xyz.handler", "endpoint": "m"}))
    (folder / "twice.websocket").write_text(json.dumps(good))
    (folder / "list.websocket").write_text("[]")
    (folder / "ignored.json").write_text("{}")

    async def main() -> None:
        async with serving(None) as (server, _):
            loaded = load_websockets(server, folder, prefix="/websockets/v4/service")
            assert sorted(loaded.endpoints) == ["implicit", "my-endpoint"]
            assert loaded.descriptions["my-endpoint"] == "My Websocket"
            errors = {Path(name).name: text for name, text in loaded.errors.items()}
            assert sorted(errors) == [
                "broken.websocket",
                "extra.websocket",
                "list.websocket",
                "missing.websocket",
                "twice.websocket",
            ]
            assert "not valid JSON" in errors["broken.websocket"]
            assert "color" in errors["extra.websocket"]
            assert "no_such_pkg_xyz" in errors["missing.websocket"]
            assert "already declared" in errors["twice.websocket"]
            assert "JSON object" in errors["list.websocket"]
            peer = await Peer.connect(server, "/websockets/v4/service/my-endpoint")
            assert await peer.recv() == "welcome my-endpoint"
            peer.send("hello")
            assert await peer.recv() == "echo:hello"
            await peer.close()
            other = await Peer.connect(server, "/websockets/v4/service/implicit")
            assert await other.recv() == "welcome implicit"
            await other.close()

    run(main)


def test_load_websockets_needs_a_folder(tmp_path: Path) -> None:
    from ws import http

    server = http.Server("127.0.0.1:0")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_websockets(server, tmp_path / "nope")


def test_example_runs() -> None:
    out = run_example("style_handlers.py")
    assert "endpoints: ['my-endpoint']" in out
    assert "bad descriptor: broken.websocket - ValueError: not valid JSON" in out
    assert "registry: [('my-endpoint', 'style_handlers_app.client_handler')]" in out
    lines = [line for line in out.splitlines() if line.startswith(("client:", "server:"))]
    assert lines == [
        "client: opened, onopen",
        "client: onmessage 'welcome to my-endpoint'",
        "server: onmessage 'hello'",
        "client: onmessage 'HELLO'",
        "client: onclose",
    ]
    assert "client left the registry: True" in out
