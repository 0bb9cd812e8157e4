"""ws.styles.routes: path parameters, validated async message streams, guards, over real connections."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Literal, Optional

import pytest
from pydantic import BaseModel

from ws import Reject
from ws.styles.routes import require_auth
from ws import http
from ws.styles.routes import RouteContext, UpgradeRouter, compile_path, compile_validator, InvalidMessage, route_ws

from .conftest import run, serving
from .styles_helpers import Peer, refused, run_example


class ClientMessage(BaseModel):
    type: Literal["message", "typing"]
    content: Optional[str] = None


SCHEMA = {
    "type": "object",
    "properties": {"type": {"enum": ["message", "typing"]}, "content": {"type": "string"}},
    "required": ["type"],
    "additionalProperties": False,
}

USERS = {"t-ann": {"name": "ann"}, "t-bob": {"name": "bob"}}


def check_token(token: str) -> Any:
    return USERS.get(token)


def test_path_patterns() -> None:
    assert compile_path("/chat/room/:room_id").match("/chat/room/general").groupdict() == {"room_id": "general"}
    assert compile_path("/a/{x}/b/:y").match("/a/1/b/2").groupdict() == {"x": "1", "y": "2"}
    assert compile_path("/a/:x").match("/a/1/extra") is None
    assert compile_path("/plain.path").match("/plainXpath") is None  # literal parts are escaped
    with pytest.raises(ValueError, match="twice"):
        compile_path("/a/:x/{x}")
    with pytest.raises(ValueError, match="starting with '/'"):
        compile_path("a/:x")


def test_validators() -> None:
    model = compile_validator(ClientMessage)
    assert model('{"type": "typing"}') == ClientMessage(type="typing")
    with pytest.raises(InvalidMessage, match="invalid ClientMessage: type"):
        model('{"type": "shout"}')
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        model("hello")
    with pytest.raises(InvalidMessage, match="binary"):
        model(b"{}")
    schema = compile_validator(SCHEMA)
    assert schema('{"type": "message", "content": "x"}') == {"type": "message", "content": "x"}
    with pytest.raises(InvalidMessage, match="content: 5 is not of type 'string'"):
        schema('{"type": "message", "content": 5}')
    predicate = compile_validator(lambda m: isinstance(m, int))
    assert predicate("5") == 5
    with pytest.raises(InvalidMessage, match="rejected"):
        predicate('"five"')
    converter = compile_validator(lambda m: m * 2)
    assert converter("21") == 42
    with pytest.raises(InvalidMessage, match="unsupported operand"):
        converter("null")
    assert compile_validator(None)('{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        compile_validator({"type": "no-such-type"})
    with pytest.raises(TypeError, match="pydantic model, a JSON-schema dict or a callable"):
        compile_validator(42)


def test_pydantic_v1_models() -> None:
    """A v1-style model (``parse_obj``, no ``model_validate``) validates and explains its errors."""
    from pydantic import v1  # pydantic 2 ships the v1 API; a test dependency

    class LegacyMessage(v1.BaseModel):
        type: Literal["message", "typing"]
        content: Optional[str] = None

    assert not hasattr(LegacyMessage, "model_validate")
    validate = compile_validator(LegacyMessage)
    assert validate('{"type": "message", "content": "hi"}') == LegacyMessage(type="message", content="hi")
    with pytest.raises(InvalidMessage, match="invalid LegacyMessage: type: unexpected value"):
        validate('{"type": "shout"}')
    with pytest.raises(InvalidMessage, match="invalid LegacyMessage: type: field required"):
        validate('{"content": "no type"}')
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        validate("{")


def test_schema_without_jsonschema_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    with pytest.raises(ImportError, match="pip install jsonschema"):
        compile_validator(SCHEMA)


def test_definition_errors() -> None:
    server = http.Server("127.0.0.1:0")

    def sync_handler(ctx: RouteContext) -> None: ...

    with pytest.raises(TypeError, match="async def"):
        route_ws(server, "/x", sync_handler)
    with pytest.raises(ValueError, match="on_invalid"):
        route_ws(server, "/x", message=ClientMessage, on_invalid="close")
    with pytest.raises(ValueError, match="on_invalid"):
        route_ws(server, "/x", on_invalid=1006)
    with pytest.raises(TypeError, match="guard must be callable"):
        route_ws(server, "/x", guard=[check_token, "nope"])
    with pytest.raises(TypeError, match="require_auth needs a function"):
        require_auth("secret")  # type: ignore[arg-type]

    async def handler(ctx: RouteContext) -> None: ...

    route_ws(server, "/dup/:a", handler)
    with pytest.raises(ValueError, match="already registered"):
        route_ws(server, "/dup/:a", handler)


def test_params_query_validated_messages_and_error_frames() -> None:
    async def main() -> None:
        received: list[Any] = []
        finished = asyncio.Event()

        async with serving(None) as (server, _):

            @route_ws(server, "/chat/room/:room_id/{kind}", message=ClientMessage)
            async def room(ctx: RouteContext) -> None:
                ctx.send({"params": ctx.params, "query": ctx.query, "user": ctx.user})
                try:
                    async for msg in ctx.messages:
                        received.append(msg)  # checked below: an assert here would only be logged
                        ctx.send({"type": msg.type, "content": msg.content, "room": ctx.params["room_id"]})
                finally:
                    finished.set()

            peer = await Peer.connect(server, "/chat/room/gen%20eral/text?username=Alice&x=1&x=2")
            assert await peer.recv_json() == {
                "params": {"room_id": "gen eral", "kind": "text"},
                "query": {"username": "Alice", "x": "1"},
                "user": None,
            }
            peer.send({"type": "message", "content": "hi"})
            assert await peer.recv_json() == {"type": "message", "content": "hi", "room": "gen eral"}
            peer.send({"type": "shout"})
            error = await peer.recv_json()
            assert list(error) == ["error"] and "type" in error["error"]
            peer.send("not json")
            assert "not valid JSON" in (await peer.recv_json())["error"]
            peer.send({"type": "typing"})
            assert (await peer.recv_json())["type"] == "typing"
            await peer.close()
            await asyncio.wait_for(finished.wait(), 5)  # the iterator ended when the client left
            assert all(isinstance(m, ClientMessage) for m in received), received
            assert [m.type for m in received] == ["message", "typing"]

    run(main)


def test_invalid_message_can_close_with_a_code() -> None:
    async def main() -> None:
        async with serving(None) as (server, _):

            async def handler(ctx: RouteContext) -> None:
                async for msg in ctx.messages:
                    ctx.send({"ok": msg})

            route_ws(server, "/strict", handler, message=SCHEMA, on_invalid=1008)
            route_ws(server, "/data", handler, message=SCHEMA, on_invalid=1007)
            peer = await Peer.connect(server, "/strict")
            peer.send({"type": "message"})
            assert await peer.recv_json() == {"ok": {"type": "message"}}
            peer.send({"type": "message", "extra": 1})
            code, reason = await peer.wait_closed()
            assert code == 1008 and "extra" in reason
            other = await Peer.connect(server, "/data")
            other.send(b"\x00")
            assert (await other.wait_closed())[0] == 1007

    run(main)


def test_guards_reject_with_401_before_opening_and_set_user() -> None:
    async def main() -> None:
        async with serving(None) as (server, _):

            @route_ws(server, "/secure/:room", guard=require_auth(check_token))
            async def secure(ctx: RouteContext) -> None:
                ctx.send({"user": ctx.user, "room": ctx.params.get("room")})
                async for msg in ctx.messages:
                    ctx.send({"from": ctx.user["name"], **msg})

            def banned(request: Any) -> Any:
                if request.query("who") == "eve":
                    raise Reject(403, "banned")
                return request.query("who") is not None

            route_ws(server, "/multi/:room", secure, guard=[banned, require_auth(check_token)])

            assert await refused(server, "/secure/a") == 401
            assert await refused(server, "/secure/a?token=wrong") == 401
            assert await refused(server, "/secure/a", headers={"Authorization": "Bearer wrong"}) == 401
            assert await refused(server, "/multi/m?who=eve&token=t-ann") == 403
            assert await refused(server, "/multi/m?token=t-ann") == 401  # banned() returned False

            by_header = await Peer.connect(server, "/secure/r1", headers={"Authorization": "Bearer t-ann"})
            assert await by_header.recv_json() == {"user": {"name": "ann"}, "room": "r1"}
            by_header.send({"text": "yo"})
            assert await by_header.recv_json() == {"from": "ann", "text": "yo"}
            by_query = await Peer.connect(server, "/secure/r2?token=t-bob")
            assert (await by_query.recv_json())["user"] == {"name": "bob"}
            multi = await Peer.connect(server, "/multi/m?who=bob&token=t-bob")
            assert (await multi.recv_json())["user"] == {"name": "bob"}
            for peer in (by_header, by_query, multi):
                await peer.close()

    run(main)


def test_handler_end_and_failure_close_the_connection() -> None:
    async def main() -> None:
        async with serving(None) as (server, _):

            async def short(ctx: RouteContext) -> None:
                ctx.send("bye")

            async def broken(ctx: RouteContext) -> None:
                async for _ in ctx.messages:
                    raise RuntimeError("handler bug")

            route_ws(server, "/short", short)
            route_ws(server, "/broken", broken)
            peer = await Peer.connect(server, "/short")
            assert await peer.recv() == "bye"
            assert (await peer.wait_closed())[0] == 1000
            peer = await Peer.connect(server, "/broken")
            peer.send("x")
            assert await peer.wait_closed() == (1011, "internal error")

    run(main)


def test_unrouted_paths_keep_their_http_answers() -> None:
    async def main() -> None:
        async with serving(None) as (server, _):

            async def handler(ctx: RouteContext) -> None: ...

            route_ws(server, "/rooms/:id", handler)
            server.get("/hello", lambda ctx: ctx.text(200, "hi"))
            assert await refused(server, "/elsewhere") == 404
            for path, expected in (("/hello", b" 200 "), ("/nothing", b" 404 "), ("/rooms/1", b" 426 ")):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                status = await asyncio.wait_for(reader.readline(), 5)
                assert expected in status, (path, status)
                await asyncio.wait_for(reader.read(), 5)
                writer.close()

    run(main)


def ctx_paused_at_end(server: http.Server) -> bool:
    router = UpgradeRouter.of(server)
    return any(ws.is_paused for _, wss in router._routes for ws in wss.clients)


def test_a_lagging_handler_pauses_reading_and_loses_nothing() -> None:
    async def main() -> None:
        async with serving(None) as (server, _):
            got: list[int] = []
            paused: list[bool] = []

            async def slow(ctx: RouteContext) -> None:
                async for n in ctx.messages:
                    if len(got) % 50 == 0:
                        await asyncio.sleep(0.05)  # lags on purpose
                        paused.append(ctx.socket.is_paused)
                    got.append(n)
                    if n == 299:
                        ctx.send("done")

            route_ws(server, "/slow", slow)
            peer = await Peer.connect(server, "/slow")
            for n in range(300):
                peer.send(str(n))
            assert await peer.recv() == "done"
            assert got == list(range(300))
            assert any(paused) and not ctx_paused_at_end(server)
            await peer.close()

    run(main)


def test_example_runs() -> None:
    out = run_example("style_routes.py")
    assert "intruder: Unexpected server response: 401" in out
    assert 'Bob sees: {"type":"message","username":"Alice","content":"Hello everyone!"' in out
    assert 'Alice sees: {"type":"message","username":"Alice","content":"Hello everyone!"' in out
    assert "Bob sees: {\"error\":\"invalid ClientMessage: type:" in out
    assert 'Alice sees: {"type":"left","room":"general","member":"Bob"' in out


def test_pydantic_and_jsonschema_are_optional_at_runtime() -> None:
    import subprocess

    code = (
        "import sys, ws, ws.styles.routes, ws.styles.rooms, ws.styles.handlers, ws.styles.endpoints, ws.styles.connections\n"
        "from ws import http\n"
        "server = http.Server('127.0.0.1:0')\n"
        "async def h(ctx): pass\n"
        "ws.styles.routes.route_ws(server, '/a/:b', h, message=lambda m: True)\n"
        "assert 'pydantic' not in sys.modules and 'jsonschema' not in sys.modules, sorted(sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
