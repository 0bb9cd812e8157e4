"""ws._runtime.emitter: pyee with JavaScript manners (arity, async listeners, errors)."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
from typing import Any

import pytest

from ws._runtime.emitter import EventEmitter, adapt_arity, arity, direct, invoke, spawn

from .conftest import run, until


class Box:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def method(self, a: Any) -> None:
        self.calls.append(a)


def test_adapt_arity_drops_surplus_arguments() -> None:
    assert adapt_arity(lambda: "none")(1, 2, 3) == "none"
    assert adapt_arity(lambda a: a)(1, 2, 3) == 1
    assert adapt_arity(lambda a, b: (a, b))(1, 2, 3) == (1, 2)
    assert adapt_arity(lambda a, b=0, c=0: (a, b, c))(1, 2) == (1, 2, 0)
    assert adapt_arity(lambda *args: args)(1, 2, 3) == (1, 2, 3)
    assert adapt_arity(lambda a, *args: (a, args))(1, 2) == (1, (2,))
    assert adapt_arity(lambda *, key=1: key)(1, 2) == 1
    box = Box()
    adapt_arity(box.method)(7, 8)
    assert box.calls == [7]
    assert adapt_arity(functools.partial(lambda a, b: (a, b), 1))(2, 3) == (1, 2)
    # Callables without a signature are called as they are.
    assert adapt_arity(print) is print


def test_direct_finds_the_listener_an_arity_wrapper_calls() -> None:
    """A one-argument emit may call the listener itself; ``direct`` finds it in ``adapt_arity``'s wrapper."""
    one, two = (lambda a: a), (lambda a, b=0: (a, b))
    assert direct(adapt_arity(one)) is one and direct(adapt_arity(two)) is two
    box = Box()
    assert direct(adapt_arity(box.method)) == box.method
    for call in (adapt_arity(lambda: 1), adapt_arity(lambda *args: args), print, one):  # nothing to skip
        assert direct(call) is call
    assert arity(lambda a, b, c=1, *args: 0) == (2, None) and arity(box.method) == (1, 1) and arity(print) == (0, None)


def test_an_arity_wrapper_is_one_object_holding_its_listener() -> None:
    """No closure (function, cell and tuple of cells): one bound method per wrapped listener, freed with it."""
    one, two = (lambda a: a), (lambda a, b: (a, b))
    for listener, wrapper in ((one, adapt_arity(one)), (two, adapt_arity(two))):
        assert getattr(wrapper, "__closure__", None) is None
        (held,) = [ref for ref in gc.get_referents(wrapper) if ref is listener or isinstance(ref, tuple)]
        assert held is listener or held[0] is listener
    assert adapt_arity(two)(1, 2, 3) == (1, 2) and adapt_arity(one)(4, 5) == 4


def test_fewer_argument_listeners_on_emit() -> None:
    em = EventEmitter()
    got: list[Any] = []
    em.on("close", lambda: got.append("none"))
    em.on("close", lambda code: got.append(code))
    em.on("close", lambda code, reason: got.append((code, reason)))
    em.on("close", lambda *args: got.append(args))
    assert em.emit("close", 1000, "bye") is True
    assert got == ["none", 1000, (1000, "bye"), (1000, "bye")]  # registration order


def test_remove_and_once_work_with_the_original_function() -> None:
    em = EventEmitter()
    got: list[Any] = []

    def listener() -> None:
        got.append("on")

    def once_listener(x: Any) -> None:
        got.append(("once", x))

    em.on("e", listener)
    em.once("e", once_listener)
    assert em.listener_count("e") == 2
    em.emit("e", 1, 2)
    em.emit("e", 3, 4)
    assert got == ["on", ("once", 1), "on"]
    em.remove_listener("e", listener)
    em.emit("e")
    assert got == ["on", ("once", 1), "on"]
    assert em.listener_count("e") == 0
    em.once("e", once_listener)
    em.remove_listener("e", once_listener)  # removed before it ever ran
    em.emit("e", 9)
    assert got == ["on", ("once", 1), "on"]
    decorated = em.on("d")(lambda: got.append("deco"))
    em.emit("d", 1)
    assert got[-1] == "deco" and callable(decorated)


def test_raising_listener_is_logged_and_emitted_as_error(caplog: pytest.LogCaptureFixture) -> None:
    em = EventEmitter()
    errors: list[BaseException] = []
    after: list[int] = []
    em.on("error", errors.append)
    em.on("data", lambda: 1 / 0)
    em.on("data", lambda: after.append(1))
    with caplog.at_level(logging.ERROR, logger="ws"):
        em.emit("data", "x")
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)
    assert after == [1]  # the next listener still ran
    assert "ZeroDivisionError" in caplog.text and "listener of EventEmitter raised" in caplog.text


def test_raising_error_listener_does_not_loop(caplog: pytest.LogCaptureFixture) -> None:
    em = EventEmitter()
    calls: list[int] = []

    def bad_error_listener(exc: BaseException) -> None:
        calls.append(1)
        raise RuntimeError("error listener bug")

    em.on("error", bad_error_listener)
    em.on("data", lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="ws"):
        em.emit("data")
    assert calls == [1]
    assert "error listener bug" in caplog.text


def test_unhandled_error_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    em = EventEmitter()
    with caplog.at_level(logging.ERROR, logger="ws"):
        assert em.emit("error", ValueError("nobody listens")) is False
        em.emit("error", "a string error")
    assert "nobody listens" in caplog.text and "a string error" in caplog.text
    em.on("data", lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="ws"):
        em.emit("data")  # no 'error' listener: logged only
    assert "ZeroDivisionError" in caplog.text


def test_async_listeners_run_on_the_emitters_loop(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        em = EventEmitter()
        em._loop = asyncio.get_running_loop()
        done = em._loop.create_future()
        errors: list[BaseException] = []
        em.on("error", errors.append)

        async def listener(a: Any) -> None:
            await asyncio.sleep(0)
            done.set_result((a, asyncio.get_running_loop()))

        async def failing() -> None:
            await asyncio.sleep(0)
            raise KeyError("async bug")

        em.on("tick", listener)
        em.on("tick", failing)
        em.emit("tick", 5, 6)
        value, loop = await asyncio.wait_for(done, 5)
        assert value == 5 and loop is em._loop
        await until(lambda: errors, what="the failing async listener was not reported")
        assert len(errors) == 1 and isinstance(errors[0], KeyError)

    with caplog.at_level(logging.ERROR, logger="ws"):
        run(main)
    assert "async bug" in caplog.text


def test_async_listener_without_any_loop_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    em = EventEmitter()  # no loop bound, none running

    async def listener() -> None:  # pragma: no cover - never runs
        pass

    em.on("x", listener)
    with caplog.at_level(logging.ERROR, logger="ws"):
        em.emit("x")
    assert "listener of EventEmitter raised" in caplog.text


def test_report_falls_back_to_stderr_only_without_logging_setup(capsys: pytest.CaptureFixture) -> None:
    from ws._runtime.emitter import report

    isolated = logging.getLogger("ws-test-isolated")
    isolated.propagate = False
    isolated.addHandler(logging.NullHandler())  # what a library installs: still "no setup"
    try:
        raise ValueError("bug in a listener")
    except ValueError as exc:
        error = exc
    report("listener of %s raised", "X", error=error, log=isolated)
    err = capsys.readouterr().err
    assert err.startswith("ws: listener of X raised\n")
    assert "Traceback" in err and "ValueError: bug in a listener" in err
    report("unhandled %s", "thing", error=ValueError("never raised"), log=isolated)
    assert capsys.readouterr().err == "ws: unhandled thing\n"  # no traceback to show
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    isolated.addHandler(handler)  # the application configured logging: no stderr copy
    try:
        report("configured %d", 1, error=error, log=isolated)
    finally:
        isolated.removeHandler(handler)
    assert capsys.readouterr().err == ""
    assert [r.getMessage() for r in records] == ["configured 1"] and records[0].exc_info


class Keeper(EventEmitter):
    """An emitter that keeps events nobody listens to yet, as servers and script clients do."""


def test_kept_events_replay_in_order_to_the_first_listener_on_the_loop() -> None:
    async def main() -> None:
        e = Keeper()
        e._loop = asyncio.get_running_loop()
        e._emit_kept("message", 1)
        e._emit_kept("open")
        e._emit_kept("message", 2)
        got: list[Any] = []
        e.on("message", got.append)
        assert got == []  # never synchronously: pyee may hold its lock while calling the hook
        await asyncio.sleep(0)
        assert got == [1, 2]
        assert e._held == [("open", ())]  # the other event waits for its own listener
        e._emit_kept("message", 3)  # someone listens now: emitted at once
        assert got == [1, 2, 3]

    run(main)


def test_a_listener_added_once_the_loop_is_gone_does_not_raise() -> None:
    closed = asyncio.new_event_loop()
    closed.close()
    for loop in (closed, None):
        e = Keeper()
        e._loop = loop
        e._emit_kept("open")
        got: list[Any] = []
        e.on("open", lambda: got.append("open"))  # RuntimeError / AttributeError swallowed
        assert got == [] and e._held == [("open", ())]  # nothing left to replay to


class _AttachDuringCheck(dict):  # type: ignore[type-arg]
    """The listeners table of an emitter: the emitting thread's first look for ``event`` lets
    ``attach`` (another thread) run right after, waiting for it at most ``wait`` s."""

    def __init__(self, event: str, attach: Any, wait: float) -> None:
        super().__init__()
        self.event, self.attach, self.wait = event, attach, wait
        self.emitter_thread = threading.get_ident()
        self.fired = False

    def get(self, key: Any, default: Any = None) -> Any:
        found = super().get(key, default)  # what the emitting thread saw: nobody listening
        if key == self.event and not self.fired and threading.get_ident() == self.emitter_thread:
            self.fired = True
            other = threading.Thread(target=self.attach)
            other.start()
            other.join(self.wait)  # with the check and the keeping one step, it waits for the emitter's lock
        return found


def test_a_listener_attached_while_the_event_is_being_kept_gets_it() -> None:
    """A script's ``on('open')`` (main thread) landing between the reactor's "nobody listens"
    and its keeping of ``'open'``: the listener saw nothing kept, nothing replayed, ``'open'``
    stayed kept for good (a client script that never printed "open", tests/test_e2e.py)."""

    async def main() -> None:
        e = Keeper()
        e._loop = asyncio.get_running_loop()
        got: list[str] = []
        e._events = _AttachDuringCheck("open", lambda: e.on("open", lambda: got.append("open")), wait=0.5)
        e._emit_kept("open")
        await until(lambda: got, timeout=3, what="the listener attached meanwhile never got 'open'")
        assert got == ["open"] and not e._held

    run(main)


# -- invoke / spawn: the styles' handlers, called with the same manners --------------------


def test_invoke_drops_surplus_arguments_and_logs_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    assert invoke(lambda a: a * 2, 21, "surplus") == 42
    assert invoke(lambda: "none", 1, 2) == "none"

    def broken(a: int) -> None:
        raise ZeroDivisionError(a)

    with caplog.at_level(logging.ERROR, logger="ws.styles"):
        assert invoke(broken, 1, what="handler on_open") is None
    assert "handler on_open" in caplog.text and "broken raised" in caplog.text and "ZeroDivisionError" in caplog.text


def test_invoke_runs_an_async_handler_as_a_task_and_logs_its_failure(caplog: pytest.LogCaptureFixture) -> None:
    got: list[int] = []

    async def handler(a: int) -> None:
        got.append(a)
        raise KeyError("late")

    async def main() -> None:
        task = invoke(handler, 7, "surplus")
        assert isinstance(task, asyncio.Task)
        await asyncio.wait([task], timeout=5)
        await asyncio.sleep(0)  # the done callback runs on the next turn

    with caplog.at_level(logging.ERROR, logger="ws.styles"):
        run(main)
    assert got == [7] and "KeyError" in caplog.text


def test_spawn_outside_a_loop_drops_the_coroutine_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async def never() -> None:
        raise AssertionError("must not run")

    coro = never()
    with caplog.at_level(logging.ERROR, logger="ws.styles"):
        assert spawn(coro, what="route handler") is None
    assert coro.cr_frame is None  # closed: no "never awaited" warning
    assert "route handler returned an awaitable outside an event loop" in caplog.text
