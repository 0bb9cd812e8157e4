"""ws/_runtime/ticker.py: timers off asyncio's heap, run on their loop when due."""

from __future__ import annotations

import asyncio
import threading
import time

from ws._runtime import ticker


def test_a_timer_runs_on_its_loop_when_due_and_leaves_the_heap_empty() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        start = time.monotonic()
        ticker.call_later(loop, 0.05, lambda: fired.set_result((threading.get_ident(), time.monotonic())))
        assert not loop._scheduled  # type: ignore[attr-defined]  # the point: no timer for asyncio's loop turns
        thread, when = await asyncio.wait_for(fired, 5)
        assert thread == threading.get_ident()
        assert when - start >= 0.05

    asyncio.run(main())


def test_cancelled_timers_never_run_and_the_rest_keep_their_order() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        done = loop.create_future()
        ticker.call_later(loop, 0.06, lambda: (order.append("late"), done.set_result(None)))
        ticker.call_later(loop, 0.02, lambda: order.append("early"))
        ticker.call_later(loop, 0.01, lambda: order.append("cancelled")).cancel()
        await asyncio.wait_for(done, 5)
        assert order == ["early", "late"]

    asyncio.run(main())


def test_a_closed_loop_does_not_stop_the_others_timers_and_the_thread_ends_when_idle() -> None:
    own = ticker._Ticker()  # its own thread: other tests' heartbeats keep the shared one busy
    closed = asyncio.new_event_loop()
    closed.close()
    own.call_later(closed, 0.01, lambda: None)
    own.call_later(closed, 0.02, lambda: None).cancel()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        own.call_later(loop, 0.03, lambda: fired.set_result(None))
        await asyncio.wait_for(fired, 5)

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while own._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert own._thread is None and not own._heap


def test_a_thread_that_cannot_start_leaves_the_timer_to_the_loop_and_the_next_one_starts_it(monkeypatch) -> None:
    """No thread to be had once (a pid or thread limit): that timer is the loop's own, and later ones are ours again."""
    own = ticker._Ticker()
    real_start = threading.Thread.start
    failures = []

    def start_once_fails(thread: threading.Thread) -> None:
        if thread.name == "ws-ticker" and not failures:
            failures.append(thread)
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_once_fails)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        first = loop.create_future()
        second = loop.create_future()
        fallback = own.call_later(loop, 0.01, lambda: (order.append("first"), first.set_result(None)))
        assert isinstance(fallback, asyncio.TimerHandle) and own._thread is None
        await asyncio.wait_for(first, 5)
        own.call_later(loop, 0.01, lambda: (order.append("second"), second.set_result(None)))
        assert own._thread is not None and own._thread.is_alive()
        await asyncio.wait_for(second, 5)
        return order

    assert asyncio.run(main()) == ["first", "second"]
    assert len(failures) == 1


def test_a_cancelled_timer_lets_its_loop_go_before_it_was_due() -> None:
    import gc
    import weakref

    own = ticker._Ticker()
    other = asyncio.new_event_loop()
    sooner = own.call_later(other, 60, lambda: None)  # what the thread sleeps for: the later entry stays in the heap
    loop = asyncio.new_event_loop()
    handle = own.call_later(loop, 3600, lambda: None)
    gone = weakref.ref(loop)
    handle.cancel()
    loop.close()
    del loop
    gc.collect()
    try:
        assert any(entry[2] is handle for entry in own._heap)
        assert gone() is None  # not held by the heap for an hour
    finally:
        sooner.cancel()
        other.close()


def test_cancelled_timers_do_not_pile_up_in_the_heap() -> None:
    own = ticker._Ticker()
    loop = asyncio.new_event_loop()
    try:
        live = own.call_later(loop, 60, lambda: None)
        for _ in range(5 * ticker.PURGE_AT):
            own.call_later(loop, 60, lambda: None).cancel()
        assert len(own._heap) <= ticker.PURGE_AT  # swept whenever the heap doubled
        assert any(entry[2] is live for entry in own._heap)  # the live one stays
        live.cancel()
    finally:
        loop.close()
