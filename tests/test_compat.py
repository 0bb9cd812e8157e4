"""ws._runtime.compat: the JavaScript (Node ws / JSH) spellings, defined once."""

from __future__ import annotations

import asyncio

import pytest

import ws
from ws import CloseEvent, MessageEvent, Request, WebSocket, WebSocketServer
from ws._runtime import compat as _compat
from ws import http
from ws.request import RequestSocket

from .conftest import Recorder, run, serving
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


def test_every_alias_reads_a_real_attribute() -> None:
    async def main() -> None:
        sock = WebSocket("ws://127.0.0.1:9/")  # refused later; we only read attributes
        wss = WebSocketServer(no_server=True)
        request = Request("GET", "/", [("Host", "h")], peername=("127.0.0.1", 1))
        assert isinstance(request.socket, RequestSocket)
        instances = {
            "WebSocket": sock,
            "WebSocketServer": wss,
            "Request": request,
            "RequestSocket": request.socket,
            "MessageEvent": MessageEvent(1, "x"),
            "CloseEvent": CloseEvent(1000, "", True),
        }
        emitter_names = _compat.ATTRIBUTE_ALIASES["EventEmitter"]
        for name, obj in instances.items():
            table = dict(_compat.ATTRIBUTE_ALIASES[name])
            if hasattr(obj, "emit"):
                table.update(emitter_names)
            for js_name, py_name in table.items():
                assert isinstance(getattr(type(obj), js_name), property), (name, js_name)
                assert getattr(obj, js_name) == getattr(obj, py_name), (name, js_name)
        sock.terminate()
        wss.close()

    run(main)


def test_install_is_idempotent() -> None:
    before = WebSocket.__dict__["readyState"]
    _compat.install(WebSocket)
    assert WebSocket.__dict__["readyState"] is before


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
            for _ in range(100):
                if plain:
                    break
                await asyncio.sleep(0.02)
            sock.off("message", off_me)
            sock.send(b"b")
            for _ in range(100):
                if len(dom) >= 2:
                    break
                await asyncio.sleep(0.02)
            sock.close(1000, "done")
            await rec.wait("close")
            await asyncio.sleep(0.05)
            assert dom == [("message", "a", False), ("message", b"b", True), ("close", 1000, "done", True, "close", True)]
            assert once_calls == ["a"] and plain == ["a"]
            assert sock.readyState == WebSocket.CLOSED

    run(main)


def test_request_and_constants_exported() -> None:
    assert ws.CONNECTING == 0 and ws.OPEN == 1 and ws.CLOSING == 2 and ws.CLOSED == 3
    assert ws.TextMessage == WebSocket.TextMessage == 1 and ws.BinaryMessage == WebSocket.BinaryMessage == 2
    for name in ws.__all__:
        assert hasattr(ws, name), name
    assert http.Server is not None
