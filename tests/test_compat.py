"""The JavaScript (Node ws / JSH) spellings: option names (ws._runtime.compat) and the aliases declared in the classes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ws import CloseEvent, MessageEvent, ReconnectingWebSocket, Request, WebSocket, WebSocketServer
from ws._runtime import compat as _compat
from ws._runtime.emitter import EventEmitter
from ws.request import RequestSocket
from ws.styles.connections import ConnectionRequest
from ws.styles.handlers import HandlerContext

from .conftest import Recorder, run, serving, until
from .test_server import url


def test_normalize_options() -> None:
    plain = {"max_payload": 1}
    assert _compat.normalize_options(plain) is plain  # nothing to translate: no copy
    out = _compat.normalize_options({"maxPayload": 1, "clientTracking": False, "path": "/x"})
    assert out == {"max_payload": 1, "client_tracking": False, "path": "/x"}
    for js_name, py_name in _compat.OPTION_ALIASES.items():
        assert _compat.normalize_options({js_name: 5}) == {py_name: 5}
    with pytest.raises(TypeError, match="option given twice"):
        _compat.normalize_options({"maxPayload": 1, "max_payload": 2})


#: class -> {camelCase name: snake_case name}: every JavaScript spelling ``ws`` promises.
ALIASES: dict[type, dict[str, str]] = {
    EventEmitter: {
        "off": "remove_listener",
        "addListener": "add_listener",
        "removeListener": "remove_listener",
        "removeAllListeners": "remove_all_listeners",
        "listenerCount": "listener_count",
        "eventNames": "event_names",
        "prependListener": "prepend_listener",
        "prependOnceListener": "prepend_once_listener",
        "rawListeners": "raw_listeners",
        "setMaxListeners": "set_max_listeners",
        "getMaxListeners": "get_max_listeners",
    },
    WebSocket: {
        "readyState": "ready_state",
        "bufferedAmount": "buffered_amount",
        "remoteAddress": "remote_address",
        "isPaused": "is_paused",
        "addEventListener": "add_event_listener",
        "removeEventListener": "remove_event_listener",
    },
    WebSocketServer: {
        "clientTracking": "client_tracking", "handleUpgrade": "handle_upgrade", "shouldHandle": "should_handle",
        "allowedOrigins": "allowed_origins",
    },
    Request: {
        "rawHeaders": "raw_headers",
        "requestUri": "request_uri",
        "httpVersion": "http_version",
        "remoteAddress": "remote_address",
        "getHeader": "get_header",
        "hasHeader": "has_header",
        "queryAll": "query_all",
    },
    RequestSocket: {"remoteAddress": "remote_address", "remotePort": "remote_port"},
    ReconnectingWebSocket: {
        "readyState": "ready_state",
        "addEventListener": "add_event_listener",
        "removeEventListener": "remove_event_listener",
    },
    MessageEvent: {"isBinary": "is_binary"},
    CloseEvent: {"wasClean": "was_clean"},
    HandlerContext: {
        "getMessage": "get_message",
        "getError": "get_error",
        "getMethod": "get_method",
        "getConnection": "get_connection",
        "isOnOpen": "is_on_open",
        "isOnMessage": "is_on_message",
        "isOnError": "is_on_error",
        "isOnClose": "is_on_close",
    },
    ConnectionRequest: {"connectionId": "connection_id"},
}


def _declared(cls: type, name: str) -> object:
    """The class attribute ``name`` as declared in a class body (no descriptor call); ``None`` if none is."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def test_every_alias_is_declared_and_means_its_snake_case_name() -> None:
    """Aliases are class attributes written in the source, and resolve to what the snake_case name does now.

    A subclass that redefines a snake_case method must declare its alias
    again, or the alias would still call the base class's method: checked
    here for every emitter class.
    """
    emitters = [cls for cls in ALIASES if issubclass(cls, EventEmitter)]
    for cls, table in ALIASES.items():
        full = dict(table)
        if cls in emitters:
            full.update(ALIASES[EventEmitter])
        for js_name, py_name in full.items():
            alias, target = _declared(cls, js_name), _declared(cls, py_name)
            assert alias is not None, f"{cls.__name__}.{js_name} is not declared"
            if isinstance(alias, property) and not isinstance(target, property):
                continue  # a property over a slot or an instance attribute: values compared below
            assert alias is target, f"{cls.__name__}.{js_name} is not {cls.__name__}.{py_name}"


def test_data_aliases_read_the_attribute() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True)
        request = Request("GET", "/p?q=1", [("Host", "h")], peername=("127.0.0.1", 1))
        cr = ConnectionRequest("id-1", request, "x")
        instances: list[object] = [wss, request, request.socket, MessageEvent(2, b"x"), CloseEvent(1000, "", True), cr]
        for obj in instances:
            for js_name, py_name in ALIASES[type(obj)].items():
                if isinstance(_declared(type(obj), js_name), property):
                    assert getattr(obj, js_name) == getattr(obj, py_name), (type(obj).__name__, js_name)
        assert (request.rawHeaders, request.requestUri, request.remoteAddress) == ([("Host", "h")], "/p?q=1", "127.0.0.1")
        assert (request.socket.remotePort, cr.connectionId, CloseEvent(1006, "", False).wasClean) == (1, "id-1", False)
        wss.clientTracking = False
        assert wss.client_tracking is False and wss.clients is None
        wss.close()

    run(main)


def test_handler_module_aliases() -> None:
    from ws.styles import handlers

    assert handlers.createWebsocket is handlers.create_websocket
    assert handlers.getClients is handlers.get_clients and handlers.getClient is handlers.get_client
    assert handlers.getClientByHandler is handlers.get_client_by_handler
    assert handlers.context.getMethod() is None and handlers.context.isOnOpen() is False


MYPY_SNIPPET = """
from ws import CloseEvent, MessageEvent, ReconnectingWebSocket, Request, WebSocket, WebSocketServer
from ws.styles.handlers import context, createWebsocket


def state(s: WebSocket) -> int:
    return s.readyState


def amount(s: WebSocket) -> int:
    return s.bufferedAmount + s.listenerCount("message")


def listen(s: WebSocket, r: ReconnectingWebSocket, wss: WebSocketServer) -> None:
    s.addEventListener("message", print)
    s.addListener("close", print)
    s.off("close", print)
    r.removeAllListeners("x")
    tracking: bool = wss.clientTracking
    names: list[str] = list(wss.eventNames())
    print(tracking, names)


def request(req: Request) -> str | None:
    raw: list[tuple[str, str]] = req.rawHeaders
    print(raw, req.httpVersion, req.queryAll("a"), req.socket.remoteAddress)
    return req.getHeader("host")


def events(m: MessageEvent, c: CloseEvent) -> bool:
    return m.isBinary and c.wasClean and context.isOnMessage()


client = createWebsocket
"""


def test_type_checkers_see_the_aliases(tmp_path: Path) -> None:
    """mypy (the API, strict) accepts code written with the camelCase names, and rejects a misspelling."""
    from mypy import api
    snippet = tmp_path / "uses_aliases.py"
    snippet.write_text(MYPY_SNIPPET + "\n\ndef wrong(s: WebSocket) -> int:\n    return s.readystate\n")
    stdout, stderr, status = api.run(
        ["--strict", "--follow-imports=silent", "--no-incremental", "--cache-dir", os.devnull, "--python-version", "3.10", str(snippet)]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    last = f"{snippet.name}:{len(snippet.read_text().splitlines())}:"
    # Only the deliberate misspelling on the last line fails: every alias above type-checked.
    assert errors and all(last in line for line in errors), stdout + stderr
    assert any('has no attribute "readystate"' in line for line in errors), stdout + stderr
    assert status == 1


def test_emitter_aliases_on_server() -> None:
    async def main() -> None:
        wss = WebSocketServer(no_server=True)
        got: list[str] = []

        def listener() -> None:
            got.append("x")

        wss.addListener("x", listener)
        assert wss.listenerCount("x") == 1 and "x" in wss.eventNames()
        wss.emit("x")
        wss.off("x", listener)
        wss.emit("x")
        assert got == ["x"] and wss.listenerCount("x") == 0
        wss.on("y", listener)
        wss.removeListener("y", listener)
        wss.on("z", listener)
        wss.removeAllListeners("z")
        assert wss.listenerCount("y") == wss.listenerCount("z") == 0
        wss.close()

    run(main)


def test_socket_aliases_and_dom_listeners() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            wss.on("connection", lambda s, r: s.on("message", lambda evt: s.send(evt.data)))
            sock = WebSocket(url(server))
            rec = Recorder(sock, "open", "close")
            dom: list = []

            def on_message(event: MessageEvent) -> None:
                dom.append(("message", event.data, event.isBinary))

            def on_close(event: CloseEvent) -> None:
                dom.append(("close", event.code, event.reason, event.wasClean, event.type, event.target is sock))

            def never(event: object) -> None:
                dom.append("never")

            sock.addEventListener("message", on_message)
            sock.addEventListener("message", never)
            sock.removeEventListener("message", never)
            sock.addEventListener("close", on_close, once=True)
            once_calls: list = []
            sock.once("message", lambda evt: once_calls.append(evt.data))
            plain: list = []

            def off_me(evt: MessageEvent) -> None:
                plain.append(evt.data)

            sock.addListener("message", off_me)
            await rec.wait("open")
            assert sock.readyState == WebSocket.OPEN and sock.bufferedAmount == 0
            assert sock.remoteAddress == "127.0.0.1"
            sock.send("a")
            await until(lambda: plain, what="no echo of 'a'")
            sock.off("message", off_me)
            sock.send(b"b")
            await until(lambda: len(dom) >= 2, what="no echo of b'b'")  # after off(): off_me must have missed it
            sock.close(1000, "done")
            await rec.wait("close")
            await until(lambda: dom and dom[-1][0] == "close", what="no DOM 'close' event")
            assert dom == [("message", "a", False), ("message", b"b", True), ("close", 1000, "done", True, "close", True)]
            assert once_calls == ["a"] and plain == ["a"]
            assert sock.readyState == WebSocket.CLOSED

    run(main)
