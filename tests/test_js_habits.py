"""A JavaScript developer's first scripts run as written, and nothing fails silently (issue 14).

Two halves: the scripts of ``tests/js_habits/``, written with Node and
browser habits and run in subprocesses as a user would (their output and
exit status are the test); and in-process checks of the rules behind them:
Node's ``'message'`` signature, the handler properties, Node's
EventEmitter bookkeeping, and what ``str``/``send`` do with a message event.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from ws import CloseEvent, ErrorEvent, Event, MessageEvent, ReconnectingWebSocket, WebSocket, WebSocketServer
from ws._runtime import loop as _loop
from ws._runtime.emitter import EventEmitter
from ws.connection.dom import adapt_message
from ws.events import BINARY, TEXT
from ws.exceptions import MaxListenersExceededWarning

from .conftest import ROOT, Recorder, run, serving, until
from .test_server import url

HABITS = Path(__file__).resolve().parent / "js_habits"
SCRIPT_TIMEOUT = 30.0  # a loaded machine imports slowly; every script ends by itself well before


def run_habit(name: str) -> subprocess.CompletedProcess[str]:
    """``python tests/js_habits/<name>``, as a user runs a script: real exit status, real stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("WS_NO_SIGNALS", "WS_DEBUG")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, str(HABITS / name)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=SCRIPT_TIMEOUT
    )


# -- the scripts ------------------------------------------------------------------------------


def test_node_message_signature_echo() -> None:
    done = run_habit("echo_node_signature.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["received: 'hello' False", "received: b'\\x00\\x01' True", "closed 1000"]
    assert done.stderr == ""


def test_printing_and_echoing_the_message_event() -> None:
    done = run_habit("print_and_echo_event.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["hi there", "got hi there (text)", "b'\\xff\\x00'", "got b'\\xff\\x00' (binary)"]
    assert done.stderr == ""


def test_browser_handler_properties() -> None:
    done = run_habit("browser_handlers.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "handler is on_message: True",
        "onmessage: HELLO 1",
        "listener: HELLO",
        "onclose: 1000 bye True",
    ]
    assert done.stderr == ""


def test_an_unhandled_refusal_is_printed_at_once_and_exits_with_1() -> None:
    start = time.monotonic()
    done = run_habit("unhandled_refused.py")
    elapsed = time.monotonic() - start
    assert done.returncode == 1, (done.stdout, done.stderr)
    # The status is set last: the script's own exit handlers ran, in their order.
    assert done.stdout.splitlines() == [
        "last line", "exit handler registered after ws ran", "exit handler registered before ws ran"
    ]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ws: unhandled 'error' event on WebSocket ws://127.0.0.1:"), done.stderr
    assert "connect ECONNREFUSED 127.0.0.1:" in lines[0] and "(Connection refused)" in lines[0]
    # Before, the report waited a second on a reactor that stopped first: nothing was printed at all.
    assert elapsed < 10, elapsed


def test_inside_asyncio_the_error_is_printed_and_the_status_is_the_programs() -> None:
    done = run_habit("asyncio_unhandled.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "closed 1006\n"
    assert done.stderr.startswith("ws: unhandled 'error' event on WebSocket ws://127.0.0.1:") and "ECONNREFUSED" in done.stderr


def test_a_peers_error_on_a_server_socket_is_printed_but_the_status_stays_0() -> None:
    done = run_habit("server_peer_error.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "server socket closed 1002\n"
    assert done.stderr == "ws: unhandled 'error' event on WebSocket: incorrect masking\n"


def test_a_handled_refusal_is_quiet_and_exits_with_0() -> None:
    done = run_habit("handled_refused.py")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout.splitlines()
    assert out[0].startswith("error: connect ECONNREFUSED") and out[1] == "closed 1006"


def test_an_error_listener_attached_late_claims_the_kept_error() -> None:
    done = run_habit("late_error_listener.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "late listener got: ConnectError\n"
    assert done.stderr == ""


def test_a_rejected_handshake_names_the_status() -> None:
    done = run_habit("rejected_401.py")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == "closed 1006\n"
    assert "Unexpected server response: 401 Unauthorized" in done.stderr, done.stderr


def test_send_while_not_open_is_said_once_per_socket() -> None:
    done = run_habit("send_not_open.py")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout.splitlines() == ["still connecting", "error: WebSocket is not open: readyState 3 (CLOSED)"]
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr  # two sends on each socket: one line each
    assert lines[0].startswith("ws: send() on WebSocket ws://127.0.0.1:")
    assert "while it is CONNECTING (readyState 0): nothing was sent; send once 'open' has fired" in lines[0]
    assert lines[1].startswith("ws: send() on WebSocket / while it is CLOSED (readyState 3): nothing was sent")


def test_a_raising_listener_is_reported_and_the_script_exits_with_1() -> None:
    done = run_habit("listener_raises.py")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == "still running: after\n"
    assert done.stderr.startswith("ws: listener of WebSocket raised\nTraceback")
    assert "ValueError: a bug in my listener" in done.stderr


def test_node_emitter_habits() -> None:
    done = run_habit("node_emitter.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "listenerCount: 4 2",
        "calls: [('first', 1), ('tick', 1), ('tick', 1), ('once', 1), ('first', 2), ('tick', 2), ('first', 3)]",
        "eventNames: ['tick']",
        "maxListeners: 10",
    ]
    warning_lines = [line for line in done.stderr.splitlines() if "MaxListenersExceededWarning" in line]
    assert len(warning_lines) == 1, done.stderr
    assert "node_emitter.py:" in warning_lines[0]  # points at the script's own on() call
    assert "11 'leak' listeners added to <WebSocketServer" in warning_lines[0]
    assert "MaxListeners is 10. Use emitter.set_max_listeners() to increase limit" in warning_lines[0]


def test_reconnecting_websocket_handlers_and_node_signature() -> None:
    done = run_habit("reconnecting_handlers.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["onmessage: via onopen", "node listener: via onopen False"]
    assert done.stderr == ""


# -- the 'message' signature rule ----------------------------------------------------------------


class Listener:
    def __init__(self) -> None:
        self.got: list[tuple[Any, ...]] = []

    def node(self, data: Any, is_binary: bool) -> None:
        self.got.append((data, is_binary))

    def jsh(self, event: MessageEvent) -> None:
        self.got.append((event,))

    def __call__(self, data: Any, is_binary: bool) -> None:
        self.got.append(("call", data, is_binary))


def shape(listener: Any, event: MessageEvent) -> Any:
    """What ``listener`` is called with for ``event`` (its return value, or what it recorded)."""
    return adapt_message(listener)(event)


def test_two_required_parameters_get_data_and_is_binary_any_other_the_event() -> None:
    text, binary = MessageEvent(TEXT, "t"), MessageEvent(BINARY, b"b")
    assert shape(lambda data, is_binary: (data, is_binary), text) == ("t", False)
    assert shape(lambda data, is_binary: (data, is_binary), binary) == (b"b", True)
    assert shape(lambda event: event, text) is text
    assert shape(lambda: "none", text) == "none"
    assert shape(lambda *args: args, text) == (text,)
    assert shape(lambda event, *rest: (event, rest), text) == (text, ())
    # A default binds a loop variable (Python's idiom): still one argument, the event.
    assert shape(lambda event, sock="bound": (event, sock), text) == (text, "bound")
    assert shape(lambda data, is_binary, extra="x": (data, is_binary, extra), binary) == (b"b", True, "x")
    assert shape(functools.partial(lambda prefix, data, is_binary: (prefix, data, is_binary), "p"), text) == ("p", "t", False)
    assert shape(functools.partial(lambda prefix, event: (prefix, event), "p"), text) == ("p", text)
    box = Listener()
    shape(box.node, binary)
    shape(box.jsh, text)
    shape(box, text)  # a callable object, by its __call__
    assert box.got == [(b"b", True), (text,), ("call", "t", False)]
    got: list[Any] = []
    shape(got.append, text)  # a builtin method: one argument
    assert got == [text]


def test_a_message_listener_requiring_three_arguments_fails_when_added() -> None:
    async def main() -> None:
        client = WebSocket("ws://127.0.0.1:9/")
        client.on("error", lambda exc: None)
        with pytest.raises(TypeError, match=r"'message' listener takes one argument .* or two .* requires 3"):
            client.on("message", lambda a, b, c: None)
        assert client.listener_count("message") == 0
        client.close()

    run(main)


def test_both_signatures_on_one_socket_and_async_listeners() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            wss.on("connection", lambda s, r: s.on("message", lambda data, is_binary: s.send(data, binary=is_binary)))
            sock = WebSocket(url(server))
            rec = Recorder(sock, "open", "close")
            got: list[Any] = []
            done = asyncio.get_running_loop().create_future()

            async def async_node(data: Any, is_binary: bool) -> None:
                await asyncio.sleep(0)
                got.append(("async", data, is_binary))
                if data == b"2" and not done.done():
                    done.set_result(None)

            sock.on("message", lambda data, is_binary: got.append(("node", data, is_binary)))
            sock.on("message", lambda event: got.append(("event", event.data, event.is_binary)))
            sock.once("message", lambda data, is_binary: got.append(("once", data, is_binary)))
            sock.prepend_listener("message", async_node)
            await rec.wait("open")
            sock.send("1")
            sock.send(b"2")
            await asyncio.wait_for(done, 10)
            await until(lambda: len(got) >= 7)
            assert sorted(got, key=repr) == sorted(
                [
                    ("async", "1", False), ("node", "1", False), ("event", "1", False), ("once", "1", False),
                    ("async", b"2", True), ("node", b"2", True), ("event", b"2", True),
                ],
                key=repr,
            )
            sock.close()
            await rec.wait("close")

    run(main)


def test_a_single_node_listener_takes_the_direct_path() -> None:
    # One 'message' listener is called by the socket itself, without emit(); Node's shape too.
    async def main() -> None:
        async with serving() as (server, wss):
            wss.on("connection", lambda s, r: s.on("message", lambda data, is_binary: s.send(data)))
            sock = WebSocket(url(server))
            rec = Recorder(sock, "open", "close")
            got: list[Any] = []
            sock.on("message", lambda data, is_binary: got.append((data, is_binary)))
            await rec.wait("open")
            assert sock._on_message is not None
            for n in range(100):
                sock.send(str(n))
            await until(lambda: len(got) == 100)
            assert got == [(str(n), False) for n in range(100)]
            sock.close()
            await rec.wait("close")

    run(main)


# -- what a message event does when printed or sent ----------------------------------------------


def test_str_of_a_message_event_is_its_data() -> None:
    assert str(MessageEvent(TEXT, "héllo")) == "héllo"
    assert f"{MessageEvent(TEXT, 'x')}!" == "x!"
    assert str(MessageEvent(BINARY, b"\x00a")) == "b'\\x00a'"
    assert repr(MessageEvent(TEXT, "abc")) == "<MessageEvent text 3 chars>"


def test_send_of_a_message_event_sends_its_data_as_it_came() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            wss.on("connection", lambda s, r: s.on("message", lambda event: s.send(event)))
            sock = WebSocket(url(server))
            rec = Recorder(sock, "open", "close")
            got: list[Any] = []
            sock.on("message", lambda data, is_binary: got.append((data, is_binary)))
            await rec.wait("open")
            sock.send("text")
            sock.send(b"bytes")
            sock.send(MessageEvent(TEXT, "from an event"))
            sock.send(MessageEvent(TEXT, "forced binary"), binary=True)
            await until(lambda: len(got) == 4)
            assert got == [("text", False), (b"bytes", True), ("from an event", False), (b"forced binary", True)]
            await sock.send_async(MessageEvent(BINARY, b"pull style"))
            await until(lambda: len(got) == 5)
            assert got[-1] == (b"pull style", True)
            with pytest.raises(TypeError, match="data must be str or bytes-like, got int"):
                sock.send(5)  # type: ignore[arg-type]
            sock.close()
            await rec.wait("close")

    run(main)


# -- handler properties and addEventListener ---------------------------------------------------


def test_handler_properties_replace_remove_and_read_back() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            wss.on("connection", lambda s, r: s.on("message", lambda msg: s.send(msg)))
            sock = WebSocket(url(server))
            names = set(vars(sock))
            got: list[Any] = []
            opened = asyncio.get_running_loop().create_future()
            closed = asyncio.get_running_loop().create_future()

            def first(event: MessageEvent) -> None:
                got.append(("first", event.data))

            def second(event: MessageEvent) -> None:
                got.append(("second", event.data))

            def listener(event: MessageEvent) -> None:
                got.append(("listener", event.data))

            assert sock.onmessage is None and sock.onopen is None
            sock.onopen = lambda event: opened.set_result(event)
            sock.onmessage = first
            sock.onmessage = second  # replaces first
            assert sock.onmessage is second
            sock.addEventListener("message", listener)
            sock.addEventListener("message", listener)  # the DOM's rule: the same listener once
            sock.onclose = lambda event: closed.set_result(event)
            assert set(vars(sock)) == names  # the properties keep nothing on the socket
            event = await asyncio.wait_for(opened, 10)
            assert isinstance(event, Event) and event.type == "open" and event.target is sock
            sock.send("a")
            await until(lambda: len(got) == 2)
            assert got == [("second", "a"), ("listener", "a")]
            sock.removeEventListener("message", second)  # not a listener of addEventListener: stays
            sock.onmessage = None
            assert sock.onmessage is None and sock.listener_count("message") == 1
            sock.send("b")
            await until(lambda: len(got) == 3)
            assert got[-1] == ("listener", "b")
            sock.removeEventListener("message", listener)
            assert sock.listener_count("message") == 0
            with pytest.raises(TypeError, match="onerror must be a function or None, got str"):
                sock.onerror = "not a function"  # type: ignore[assignment]
            sock.close(4000, "done")
            close = await asyncio.wait_for(closed, 10)
            assert isinstance(close, CloseEvent) and (close.code, close.reason, close.was_clean) == (4000, "done", True)

    run(main)


def test_onerror_gets_an_error_event() -> None:
    async def main() -> None:
        sock = WebSocket("ws://127.0.0.1:9/")
        errors: list[Any] = []
        closes: list[Any] = []
        sock.onerror = errors.append
        sock.onclose = closes.append
        await until(lambda: closes, timeout=10)
        assert len(errors) == 1 and isinstance(errors[0], ErrorEvent)
        assert "ECONNREFUSED" in errors[0].message and errors[0].target is sock
        assert closes[0].code == 1006 and closes[0].was_clean is False

    run(main)


def test_reconnecting_websocket_has_the_handler_properties() -> None:
    async def main() -> None:
        async with serving() as (server, wss):
            wss.on("connection", lambda s, r: s.on("message", lambda msg: s.send(msg)))
            rws = ReconnectingWebSocket(url(server))
            got: list[Any] = []
            rws.onopen = lambda: rws.send(MessageEvent(TEXT, "echo me"))  # send(event) here too
            rws.onmessage = lambda event: got.append(event.data)
            rws.on("message", lambda data, is_binary: got.append((data, is_binary)))
            await until(lambda: len(got) == 2, timeout=10)
            assert got == ["echo me", ("echo me", False)]
            rws.close()

    run(main)


# -- Node's EventEmitter bookkeeping ------------------------------------------------------------


def test_the_same_listener_twice_is_two_registrations_and_remove_takes_the_last() -> None:
    em = EventEmitter()
    calls: list[Any] = []

    def f(x: Any) -> None:
        calls.append(("f", x))

    em.on("e", f)
    em.once("e", f)
    em.on("e", f)
    assert em.listener_count("e") == 3 and em.listener_count("e", f) == 3
    assert em.listeners("e") == [f, f, f]
    em.emit("e", 1)
    assert calls == [("f", 1)] * 3 and em.listener_count("e") == 2  # the once one went
    em.once("e", f)
    em.remove_listener("e", f)  # the last added: the once registration
    em.emit("e", 2)
    assert calls[3:] == [("f", 2), ("f", 2)]
    em.off("e", f)
    em.removeListener("e", f)
    em.remove_listener("e", f)  # none left: nothing happens (Node), no KeyError (pyee)
    assert em.listener_count("e") == 0 and em.event_names() == []


def test_prepend_raw_listeners_and_event_names() -> None:
    em = EventEmitter()
    order: list[str] = []

    def a() -> None:
        order.append("a")

    def b() -> None:
        order.append("b")

    def c() -> None:
        order.append("c")

    em.on("x", a)
    em.prependListener("x", b)
    em.prependOnceListener("x", c)
    em.on("y", a)
    assert em.eventNames() == ["x", "y"]
    assert em.listeners("x") == [c, b, a]
    raw = em.rawListeners("x")
    assert raw[1:] == [b, a] and raw[0] is not c and raw[0].listener is c  # type: ignore[attr-defined]
    em.emit("x")
    em.emit("x")
    assert order == ["c", "b", "a", "b", "a"]
    raw_once = em.raw_listeners("x")
    assert raw_once == [b, a]
    em.remove_all_listeners("x")
    assert em.event_names() == ["y"]
    em.removeAllListeners()
    assert em.event_names() == []


def test_once_removed_before_it_runs_and_once_from_a_listener() -> None:
    em = EventEmitter()
    got: list[Any] = []
    em.once("e", got.append)
    em.remove_listener("e", got.append)  # a bound method: equal, not identical
    em.emit("e", 1)
    assert got == []

    def add_once() -> None:
        em.once("e", lambda: got.append("added by a listener"))

    em.once("e", add_once)
    em.emit("e")
    em.emit("e")
    em.emit("e")
    assert got == ["added by a listener"]


def test_max_listeners_warns_once_per_event_at_the_callers_line() -> None:
    em = EventEmitter()
    assert em.get_max_listeners() == 10 == em.getMaxListeners()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(10):
            em.on("e", lambda: None)
        assert caught == []
        em.on("e", lambda: None)  # the 11th
        em.on("e", lambda: None)
        for _ in range(11):
            em.once("other", lambda: None)
    assert [w.category for w in caught] == [MaxListenersExceededWarning] * 2
    assert "11 'e' listeners added to" in str(caught[0].message) and "MaxListeners is 10" in str(caught[0].message)
    assert caught[0].filename == __file__  # the warning points at the on() call, not into ws
    em2 = EventEmitter()
    assert em2.set_max_listeners(2) is em2 and em2.get_max_listeners() == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        em2.on("e", lambda: None)
        em2.on("e", lambda: None)
        em2.on("e", lambda: None)
        em2.setMaxListeners(0)  # 0: no limit (Node)
        em2.on("f", lambda: None)
        em2.on("f", lambda: None)
        em2.on("f", lambda: None)
    assert len(caught) == 1 and "3 'e' listeners" in str(caught[0].message)
    for bad in (-1, "10", float("nan"), True):
        with pytest.raises(ValueError, match="non-negative number"):
            em2.set_max_listeners(bad)  # type: ignore[arg-type]


def test_the_limit_is_per_emitter_and_sockets_warn_too() -> None:
    async def main() -> None:
        sock = WebSocket("ws://127.0.0.1:9/")
        sock.on("error", lambda exc: None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(11):
                sock.on("message", lambda data, is_binary: None)
        assert len(caught) == 1 and "'message' listeners added to <WebSocket client" in str(caught[0].message)
        assert "_max_listeners" not in vars(sock)  # the default is the class's: nothing per socket
        sock.close()

    run(main)


# -- the reactor's bookkeeping of unhandled errors ----------------------------------------------


def test_claimable_errors_can_be_claimed_the_others_and_the_overflow_stay() -> None:
    reactor = _loop._Reactor()
    assert not reactor.failed
    kept, other = ValueError("kept"), ValueError("other")
    reactor.unhandled(kept, claimable=True)
    assert reactor.failed
    reactor.claimed(kept)  # a late listener got it
    assert not reactor.failed
    reactor.unhandled(other)  # reported and never kept: no listener can take it any more
    reactor.claimed(other)
    assert reactor.failed
    full = _loop._Reactor()
    errors = [ValueError(n) for n in range(full.MAX_UNCLAIMED + 1)]
    for error in errors:
        full.unhandled(error, claimable=True)
    for error in errors:
        full.claimed(error)
    assert full.failed  # past the bound, the status no longer depends on claims
