"""ws._runtime.loop: which loop objects bind to, the reactor thread, refs, thread hops.

The plain (non-async) tests here behave like a script: no loop runs in the
calling thread, so everything binds to the shared reactor thread.  Process
exit behaviour (refs keeping a script alive, signals) is tested end to end
in test_e2e.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest

from ws import WebSocket, WebSocketServer
from ws._runtime import loop as _loop
from ws import http

from .conftest import ROOT, until_sync

TIMEOUT = 10.0


def test_objects_made_in_asyncio_bind_to_the_running_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert _loop.bind() is loop
        server = http.Server("127.0.0.1:0")
        wss = WebSocketServer(server=server, path="/ws")
        sock = WebSocket("ws://127.0.0.1:9/")  # never connects; we only look at its loop
        try:
            assert server._loop is loop and wss._loop is loop and sock._loop is loop
            assert not _loop.is_reactor(loop)
            assert _loop.in_loop(loop)
        finally:
            sock.terminate()
            wss.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


@pytest.mark.parametrize("check", [_loop._in_loop_by_thread, _loop._in_loop_asking])
def test_in_loop_answers_alike_by_thread_id_and_by_asking_asyncio(check: Any) -> None:
    """Both spellings of ``in_loop`` (by thread id before 3.12, asking asyncio after) give the same answers."""
    loop = asyncio.new_event_loop()
    other = asyncio.new_event_loop()
    try:
        assert not check(loop)  # not running
        answers: list[bool] = []

        async def inside() -> None:
            answers.append(check(loop))
            answers.append(check(other))
            in_thread: list[bool] = []
            thread = threading.Thread(target=lambda: in_thread.append(check(loop)))
            thread.start()
            thread.join(TIMEOUT)
            answers.append(in_thread[0])

        loop.run_until_complete(inside())
        assert answers == [True, False, False]  # its own loop; another loop; another thread
        assert not check(loop)  # stopped
    finally:
        loop.close()
        other.close()


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """One entry per time ``ws._runtime.loop`` asks asyncio for the running loop (the getpid() before 3.12)."""
    calls: list[object] = []

    def ask() -> object:
        calls.append(None)
        return asyncio._get_running_loop()

    monkeypatch.setattr(_loop, "_get_running_loop", ask)
    return calls


def test_in_loop_by_thread_id_spares_asyncio_and_asks_a_loop_without_one(
    monkeypatch: pytest.MonkeyPatch, asked: list[object]
) -> None:
    """asyncio's loops name their thread (no getpid() before 3.12); a loop that does not is asked about."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert _loop._in_loop_by_thread(loop)
        assert asked == []  # answered by the thread id
        monkeypatch.setattr(loop, "_thread_id", None)  # as a subclass that runs without noting its thread
        assert _loop._in_loop_by_thread(loop)
        assert asked == [None]  # the fallback asked asyncio

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_call_on_the_loop_runs_at_once_and_asks_as_in_loop_does(asked: list[object]) -> None:
    """``call`` on its own loop runs now (elsewhere soon); before 3.12 asyncio's loop answers without asyncio's getpid()."""
    ran: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        _loop.call(loop, ran.append, "now")
        assert ran == ["now"]
        assert asked == ([] if _loop.GETPID_IN_RUNNING_LOOP else [None])
        thread = threading.Thread(target=_loop.call, args=(loop, ran.append, "soon"))
        thread.start()
        thread.join(TIMEOUT)
        assert ran == ["now"]  # (from another thread: scheduled, not run there)
        await asyncio.sleep(0)
        assert ran == ["now", "soon"]

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_in_loop_by_thread_id_on_uvloop() -> None:
    """uvloop keeps no ``_thread_id``: the fallback answers."""
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert getattr(loop, "_thread_id", None) is None
        assert not _loop._in_loop_by_thread(loop)

        async def inside() -> bool:
            return _loop._in_loop_by_thread(loop)

        assert loop.run_until_complete(inside())
    finally:
        loop.close()


def test_objects_made_in_a_plain_thread_bind_to_the_reactor() -> None:
    loop = _loop.bind()
    assert _loop.is_reactor(loop) and loop is _loop.reactor.loop
    thread = _loop.reactor.thread
    assert thread is not None and thread.is_alive()
    assert thread.name == "ws-reactor" and thread.daemon is False  # it keeps a script alive
    assert _loop.bind() is loop  # one shared reactor
    assert not _loop.in_loop(loop)


def test_script_style_server_and_client_listeners_run_on_the_reactor_in_order() -> None:
    server = http.Server("127.0.0.1:0")
    wss = WebSocketServer(server=server, path="/ws")
    events: list[tuple[str, Any, str]] = []
    done = threading.Event()

    def record(name: str, *args: Any) -> None:
        events.append((name, args, threading.current_thread().name))

    def on_connection(sock: WebSocket, request: Any) -> None:
        record("connection")
        sock.on("message", lambda evt: sock.send(evt.data.upper()))

    wss.on("connection", on_connection)
    server.serve()
    address = server.address
    assert address is not None
    try:
        sock = WebSocket(f"ws://{address}/ws")
        sock.on("open", lambda: (record("open"), sock.send("a"), sock.send("b")))

        def on_message(evt: Any) -> None:
            record("message", evt.data)
            if evt.data == "B":
                sock.close()

        sock.on("message", on_message)

        async def on_close(code: int, reason: str) -> None:  # async def listener in a script
            await asyncio.sleep(0)
            record("close", code)
            done.set()

        sock.on("close", on_close)
        assert done.wait(TIMEOUT)
        names = [(name, args) for name, args, _ in events if name != "connection"]
        assert names == [("open", ()), ("message", ("A",)), ("message", ("B",)), ("close", (1000,))]
        assert {thread for _, _, thread in events} == {"ws-reactor"}
        assert sock._loop is _loop.reactor.loop
    finally:
        wss.close()
        server.close()


def test_late_listeners_of_a_script_client_still_get_early_events() -> None:
    """A script attaches listeners after the constructor; the reactor may be faster."""
    server = http.Server("127.0.0.1:0")
    WebSocketServer(server=server, path="/ws").on("connection", lambda s, r: s.send("welcome"))
    server.serve()
    address = server.address
    try:
        sock = WebSocket(f"ws://{address}/ws")
        until_sync(lambda: sock.ready_state == WebSocket.OPEN, TIMEOUT)
        # 'open' and 'message' happened with no listener attached: both are kept for late listeners
        until_sync(lambda: [name for name, _ in list(sock._held or ())] == ["open", "message"], TIMEOUT)
        got: list[Any] = []
        done = threading.Event()
        sock.on("open", lambda: got.append("open"))
        sock.on("message", lambda evt: (got.append(evt.data), done.set()))
        assert done.wait(TIMEOUT)
        assert got == ["open", "welcome"]
        closed = threading.Event()
        sock.on("close", lambda: closed.set())
        sock.close()
        assert closed.wait(TIMEOUT)
    finally:
        server.close()


def test_script_client_error_without_listener_is_replayed_to_a_late_listener() -> None:
    sock = WebSocket("ws://127.0.0.1:9/")  # discard port: refused
    until_sync(lambda: sock.ready_state == WebSocket.CLOSED, TIMEOUT)
    errors: list[BaseException] = []
    sock.on("error", errors.append)
    until_sync(lambda: bool(errors), TIMEOUT)
    assert "ECONNREFUSED" in str(errors[0]) or "refused" in str(errors[0]).lower()



# -- the reactor's executor: DNS lookups after the script's last line ----------------------

_SCRIPT_RESOLVES_AFTER_ITS_LAST_LINE = """
import sys, threading
from ws import WebSocket
from ws._runtime import loop

port = sys.argv[1]
first = WebSocket(f"ws://127.0.0.1:{port}/?first")  # the server says 'go' once this script's last line has run

def go(event):
    second = WebSocket(f"ws://localhost:{port}/?second")  # a host name: the reactor's executor resolves it
    second.on("message", lambda event: (print(event.data, flush=True), second.close(), first.close()))
    second.on("error", lambda error: (print("error", error, flush=True), first.close()))
    print(loop.THREADS_END_WITH_MAIN, threading.main_thread().is_alive(), flush=True)

first.on("message", go)
"""


def test_a_script_client_resolves_a_host_name_after_its_last_line(tmp_path: Any) -> None:
    """The lookup runs on a thread once the main thread has finished: on CPython 3.12.0-3.12.2, which
    start none then, on the executor's standby thread (``THREADS_END_WITH_MAIN`` tells which branch ran)."""
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    def on_connection(sock: WebSocket, request: Any) -> None:
        if request.url.endswith("first"):
            threading.Timer(0.5, sock.send, ("go",)).start()
        else:
            sock.send("resolved")

    server = http.Server("127.0.0.1:0")
    WebSocketServer(server=server).on("connection", on_connection)
    server.serve()
    try:
        script = tmp_path / "script.py"
        script.write_text(_SCRIPT_RESOLVES_AFTER_ITS_LAST_LINE)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, str(script), str(server.port)], capture_output=True, text=True, env=env, timeout=30
        )
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(_loop.THREADS_END_WITH_MAIN), "False", "resolved"], done.stdout + done.stderr


def test_the_standby_thread_takes_the_calls_no_thread_can_start_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both branches on every interpreter: the refusal of CPython 3.12.0-3.12.2 is played by Thread.start."""
    with_standby = _loop._ThreadPerCall(standby=True)
    without = _loop._ThreadPerCall(standby=False)
    assert with_standby.submit(threading.current_thread).result(TIMEOUT).name == "ws-executor"
    start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        if thread.name == "ws-executor":
            raise RuntimeError("can't create new thread at interpreter shutdown")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    names = [with_standby.submit(lambda i=i: (i, threading.current_thread().name)) for i in range(3)]
    assert [future.result(TIMEOUT) for future in names] == [(i, "ws-executor-standby") for i in range(3)]
    with pytest.raises(RuntimeError, match="interpreter shutdown"):
        without.submit(threading.current_thread)


def test_refs_follow_open_sockets_and_servers() -> None:
    base = _loop.reactor.refs
    server = http.Server("127.0.0.1:0")
    server.serve()
    assert _loop.reactor.refs == base + 1
    server.unref()
    assert _loop.reactor.refs == base
    server.ref()
    assert _loop.reactor.refs == base + 1
    opened = threading.Event()
    peers: list[WebSocket] = []
    WebSocketServer(server=server, path="/ws").on("connection", lambda s, r: (peers.append(s), opened.set()))
    sock = WebSocket(f"ws://{server.address}/ws")
    assert _loop.reactor.refs >= base + 2  # a connecting client counts at once
    assert opened.wait(TIMEOUT)
    until_sync(lambda: _loop.reactor.refs == base + 3, TIMEOUT)  # + the accepted socket
    assert sock.unref() is sock
    assert _loop.reactor.refs == base + 2
    sock.unref()  # twice changes nothing
    assert _loop.reactor.refs == base + 2
    sock.ref()
    assert _loop.reactor.refs == base + 3
    sock.close()
    until_sync(lambda: _loop.reactor.refs == base + 1, TIMEOUT)
    server.close()
    until_sync(lambda: _loop.reactor.refs == base, TIMEOUT)


def test_unref_while_closed_does_not_go_negative() -> None:
    base = _loop.reactor.refs
    sock = WebSocket("ws://127.0.0.1:9/")
    until_sync(lambda: sock.ready_state == WebSocket.CLOSED, TIMEOUT)
    assert _loop.reactor.refs == base
    sock.unref()
    sock.ref()
    assert _loop.reactor.refs == base


def test_call_and_run_blocking() -> None:
    loop = _loop.bind()
    seen: list[str] = []
    done = threading.Event()
    _loop.call(loop, lambda: (seen.append(threading.current_thread().name), done.set()))
    assert done.wait(TIMEOUT) and seen == ["ws-reactor"]

    async def answer() -> int:
        return 42

    assert _loop.run_blocking(loop, answer()) == 42

    async def slow() -> None:
        await asyncio.sleep(5)

    with pytest.raises(TimeoutError, match="timed out"):
        _loop.run_blocking(loop, slow(), timeout=0.1)


def test_call_on_a_closed_loop_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """Late work for a loop that is gone is dropped (and said at debug level), not raised to the caller."""
    calls: list[str] = []
    closed = asyncio.new_event_loop()
    closed.close()
    with caplog.at_level(logging.DEBUG, logger="ws"):
        _loop.call(closed, calls.append, "late")
    assert calls == []
    assert any(r.levelno == logging.DEBUG and "closed loop" in r.getMessage() for r in caplog.records), caplog.text

    open_loop = asyncio.new_event_loop()  # the same call on a live loop from outside it: run soon
    try:
        _loop.call(open_loop, calls.append, "soon")
        assert calls == []
        open_loop.run_until_complete(asyncio.sleep(0))
    finally:
        open_loop.close()
    assert calls == ["soon"]


def test_keepalive_detects_a_silent_peer() -> None:
    """ping_interval/ping_timeout close a socket whose peer never answers pings."""

    async def main() -> None:
        # A raw server that accepts the upgrade and then never reads again.
        from websockets.server import ServerProtocol

        transports: list[asyncio.Transport] = []

        class Mute(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.proto = ServerProtocol()
                self.transport = transport
                transports.append(transport)  # type: ignore[arg-type]

            def data_received(self, data: bytes) -> None:
                if self.proto.state.name == "CONNECTING":
                    self.proto.receive_data(data)
                    for request in self.proto.events_received():
                        self.proto.send_response(self.proto.accept(request))
                    for chunk in self.proto.data_to_send():
                        self.transport.write(chunk)  # type: ignore[attr-defined]
                # afterwards: silence, no pong

        loop = asyncio.get_running_loop()
        tcp = await loop.create_server(Mute, "127.0.0.1", 0)
        port = tcp.sockets[0].getsockname()[1]
        closed = loop.create_future()
        sock = WebSocket(f"ws://127.0.0.1:{port}/", ping_interval=0.2, ping_timeout=0.3)
        sock.on("close", lambda code, reason: closed.set_result((code, reason)) if not closed.done() else None)
        code, reason = await asyncio.wait_for(closed, TIMEOUT)
        assert code == 1011 and "keepalive" in reason
        tcp.close()
        for transport in transports:
            transport.abort()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT * 2))


# -- the ws-js[speed] extra: uvloop, used automatically ------------------------------------
#
# uvloop is a test dependency (setup.cfg): these fail, never skip, when it is missing.  A plain
# install is a subprocess in which importing uvloop really fails (``sys.modules['uvloop'] = None``).

_NO_UVLOOP = "import sys; sys.modules['uvloop'] = None  # a plain install: 'import uvloop' fails\n"

_SCRIPT_ON_THE_REACTOR = """
import sys
from ws import WebSocket, WebSocketServer
from ws._runtime import loop as _loop

print(_loop.loop_name(), _loop.loop_name(), flush=True)  # asked twice: a warning comes once
wss = WebSocketServer(port=0, host="127.0.0.1")
wss.on("connection", lambda sock, req: sock.on("message", lambda ev: sock.send(ev.data * 2)))

def listening():
    client = WebSocket(f"ws://127.0.0.1:{wss.address()['port']}/")
    client.on("open", lambda: client.send("ab"))
    def got(ev):
        print(type(_loop.reactor.loop).__module__, ev.data, flush=True)
        client.close()
        wss.close()
    client.on("message", got)

wss.on("listening", listening)
"""

_IN_THE_USERS_LOOP = """
import asyncio, sys
from ws import WebSocket, WebSocketServer

async def main():
    listening = asyncio.get_running_loop().create_future()
    wss = WebSocketServer(port=0, host="127.0.0.1")
    wss.on("listening", lambda: listening.done() or listening.set_result(None))
    await asyncio.wait_for(listening, 10)
    wss.on("connection", lambda sock, req: sock.on("message", lambda ev: sock.send(ev.data.upper())))
    async with WebSocket(f"ws://127.0.0.1:{wss.address()['port']}/") as client:
        client.send("hi")
        reply = (await client.recv_async(timeout=10)).data
    print(type(asyncio.get_running_loop()).__module__, reply, flush=True)
    wss.close()
    await asyncio.wait_for(wss.wait_closed_async(), 10)

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
# No global policy was installed: a loop made now is asyncio's own.
print(type(asyncio.new_event_loop()).__module__, flush=True)
"""

_WARNING = "ws: WS_LOOP=uvloop but uvloop cannot be imported (pip install 'ws-js[speed]'); using asyncio"


def _python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -c code args`` with ``env`` over ours (``WS_LOOP`` only as given): status 0, its output."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("WS_LOOP", "WS_DEBUG")}
    full_env.update(env, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), full_env.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env, timeout=30)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize(
    "installed, env, expected, warning",
    [
        (True, {}, "uvloop uvloop\nuvloop abab", False),  # the speed extra: used without asking
        (True, {"WS_LOOP": "asyncio"}, "asyncio asyncio\nasyncio.unix_events abab", False),  # forced off
        (True, {"WS_LOOP": "uvloop"}, "uvloop uvloop\nuvloop abab", False),
        (False, {}, "asyncio asyncio\nasyncio.unix_events abab", False),  # a plain install: silently asyncio
        (False, {"WS_LOOP": "uvloop"}, "asyncio asyncio\nasyncio.unix_events abab", True),  # asked for: warned once
    ],
    ids=["auto", "forced-asyncio", "asked-uvloop", "plain-install", "asked-uvloop-missing"],
)
def test_a_scripts_reactor_runs_on_uvloop_when_installed(
    installed: bool, env: dict[str, str], expected: str, warning: bool
) -> None:
    import uvloop  # noqa: F401

    done = _python(("" if installed else _NO_UVLOOP) + _SCRIPT_ON_THE_REACTOR, env=env)
    assert done.stdout.strip() == expected, done.stderr
    assert done.stderr.count(_WARNING) == (1 if warning else 0), done.stderr


@pytest.mark.parametrize(
    "runner, env, expected",
    [
        ("uvloop", {}, "uvloop HI"),  # the user's uvloop loop
        ("asyncio", {}, "asyncio.unix_events HI"),  # the user's asyncio.run: kept though uvloop is installed
        ("asyncio", {"WS_LOOP": "uvloop"}, "asyncio.unix_events HI"),  # WS_LOOP is about ws's own loops only
    ],
    ids=["uvloop-run", "asyncio-run", "asyncio-run-ws-loop-uvloop"],
)
def test_code_in_the_users_loop_keeps_that_loop(runner: str, env: dict[str, str], expected: str) -> None:
    import uvloop  # noqa: F401

    done = _python(_IN_THE_USERS_LOOP, runner, env=env)
    assert done.stdout.splitlines() == [expected, "asyncio.unix_events"], done.stderr


def test_the_loops_ws_owns_follow_ws_loop(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import uvloop

    async def kind() -> str:
        return _loop.loop_name(asyncio.get_running_loop())

    for setting, cls in (("", uvloop.Loop), ("uvloop", uvloop.Loop), ("asyncio", asyncio.SelectorEventLoop)):
        monkeypatch.setenv("WS_LOOP", setting)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="ws"):
            made = _loop.new_loop()
        made.close()
        name = "uvloop" if cls is uvloop.Loop else "asyncio"
        assert type(made) is cls and _loop.loop_name() == name
        assert f"event loop: {name}" in caplog.text  # said at DEBUG
        assert _loop.run(kind()) == name  # how the ws commands run
    assert asyncio.get_event_loop_policy().__module__.startswith("asyncio")  # no policy installed


@pytest.mark.parametrize(
    "env, stack",
    [
        ({}, "loop: uvloop, http: httptools"),  # the speed extra (the test extra has it)
        ({"WS_LOOP": "asyncio", "WS_HTTP": "h11"}, "loop: asyncio, http: h11"),  # the plain stack
    ],
)
def test_ws_version_names_the_loop_and_the_parser(
    env: dict[str, str], stack: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import httptools  # noqa: F401

    from ws.cli import main

    for name in ("WS_LOOP", "WS_HTTP"):
        monkeypatch.setenv(name, env.get(name, ""))
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.rstrip().endswith(f"; {stack})")


def test_a_repeated_signal_within_a_second_is_the_same_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A supervisor and systemd both SIGTERM a worker: one graceful stop; a later signal exits at once."""
    exits: list[int] = []
    hooks: list[Any] = []

    class Loop:
        def call_soon_threadsafe(self, fn: Any) -> None:
            hooks.append(fn)

    class NoTimer:  # the 5 s force-exit timer of the first signal: not in the test process
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.daemon = False

        def start(self) -> None:
            pass

    monkeypatch.setattr(_loop, "_force_exit", exits.append)
    monkeypatch.setattr(_loop.threading, "Timer", NoTimer)
    reactor = _loop._Reactor()
    reactor.loop = Loop()  # type: ignore[assignment]
    reactor._on_signal(signal.SIGTERM, None)
    reactor._on_signal(signal.SIGTERM, None)
    assert len(hooks) == 1 and exits == []
    reactor._first_signal -= reactor.REPEAT
    reactor._on_signal(signal.SIGTERM, None)
    assert exits == [128 + signal.SIGTERM]


def test_a_client_refused_before_its_connect_call_returned_closes_on_uvloop() -> None:
    """A 401 read while ``create_connection`` had not returned yet: 'close' comes (uvloop lost it once).

    The server, a thread, answers as it accepts and keeps the connection open
    (as ``ws.http.Server`` does after a refusal), so the answer often arrives
    before the client's connect task resumes.
    """
    import socket as _socket

    import uvloop

    listener = _socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[_socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            accepted.append(conn)
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()

    async def main() -> list[tuple[int | None, int]]:
        results = []
        for _ in range(20):
            closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            status: list[int] = []
            sock = WebSocket(f"ws://127.0.0.1:{port}/")
            sock.on("unexpected-response", lambda code, headers, body: status.append(code))
            sock.on("error", lambda error: None)
            sock.on("close", lambda code, reason: closed.done() or closed.set_result(code))
            try:
                code = await asyncio.wait_for(closed, TIMEOUT)
                results.append((status[0] if status else None, code))
            finally:
                sock.terminate()
        return results

    try:
        assert uvloop.run(main()) == [(401, 1006)] * 20
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
