"""The event-loop model: which asyncio loop an object lives on.

Code running inside asyncio binds its objects to the running loop.  A plain
script has no loop, so its objects bind to one shared *reactor*: a single
background thread running one asyncio loop, started on demand.  Like Node,
the process stays alive while anything holds a reference on the reactor
(an open socket or a listening server) and exits by itself when the last
one is released (``ref()`` / ``unref()`` opt out and back in).

Nothing fails silently in a script: an ``'error'`` nobody listens to is
reported at once, and a script that ends with one still unclaimed exits
with status 1, as a Node process would (``unhandled``/``claimed``; the
status is set after every other exit handler ran).  Errors kept for a
listener the script's next lines may still attach wait for it at most
until the main thread has finished (``after_script``).

Everything here is internal; the public surface is ``ref``/``unref`` on
sockets and servers.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any, Callable, Coroutine, TypeVar

from .log import announce

logger = logging.getLogger("ws")

T = TypeVar("T")

_get_running_loop = asyncio._get_running_loop  # C-accelerated, no exception when none
_get_ident = threading.get_ident
_BaseEventLoop = asyncio.BaseEventLoop

#: Before Python 3.12 ``_get_running_loop()`` makes a ``getpid()`` system call whenever a loop
#: runs (CPython gh-100363 removed it): ~200 ns, where comparing thread ids costs ~40 ns.  From
#: 3.12 on, asking asyncio is the cheaper of the two (docs/performance-log.md, "Python versions").
GETPID_IN_RUNNING_LOOP = sys.version_info < (3, 12)


#: CPython 3.12.0 to 3.12.2 start no thread once the main thread has finished (gh-113964, fixed
#: in 3.12.3), which is when a script's reactor goes on serving.
THREADS_END_WITH_MAIN = (3, 12, 0) <= sys.version_info[:3] < (3, 12, 3)


class _ThreadPerCall(concurrent.futures.ThreadPoolExecutor):
    """The reactor's ``run_in_executor`` (DNS lookups): one daemon thread per call.

    The standard thread pool refuses new work once the main thread has
    ended, which is when a script's reactor goes on serving: a client
    redirected or reconnecting to a host name would fail to resolve it.
    With ``standby`` (the default on the releases of ``THREADS_END_WITH_MAIN``)
    a thread started with the executor, while the main thread still runs,
    takes the calls that cannot have a thread of their own, one at a time.
    """

    def __init__(self, standby: bool = THREADS_END_WITH_MAIN) -> None:
        super().__init__()
        self._standby: queue.SimpleQueue[Callable[[], None]] | None = None
        if standby:
            self._standby = queue.SimpleQueue()
            threading.Thread(
                target=self._serve_standby, args=(self._standby,), name="ws-executor-standby", daemon=True
            ).start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        try:
            threading.Thread(target=work, name="ws-executor", daemon=True).start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            if self._standby is None:
                raise
            self._standby.put(work)
        return future

    @staticmethod
    def _serve_standby(calls: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            calls.get()()


class _Reactor:
    """The shared background loop of plain scripts."""

    # How often the idle reactor checks whether the main thread has finished.
    POLL = 0.05
    # A signal this soon after the first is the same stop sent twice (a supervisor and
    # systemd's KillMode=control-group both send SIGTERM to a worker), not a second one.
    REPEAT = 1.0

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._refs = 0
        # A dict as an ordered set: script clients come and go by the thousand.
        self._shutdown_hooks: dict[Callable[[], Any], None] = {}
        self._signals_installed = False
        self._stopping = False
        self._first_signal = 0.0
        # Nothing silent: work waiting for the main thread's end, errors nobody claimed.
        self._main_done = False
        self._at_main_end: dict[object, Callable[[], Any]] = {}
        self._unhandled: dict[int, object] = {}  # errors a late listener may still claim
        self._failed = False  # an unhandled error nobody can claim any more
        self._exit_hooked = False
        #: Whether an unclaimed error makes the process exit with status 1 (the test suite, one
        #: process for many scripts' worth of sockets, turns it off).
        self.sets_exit_status = True

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self.loop is None or self.thread is None or not self.thread.is_alive():
                self._start()
            assert self.loop is not None
            return self.loop

    def _start(self) -> None:
        loop = new_loop()
        loop.set_default_executor(_ThreadPerCall())
        ready = threading.Event()
        self.loop = loop
        self._stopping = False

        def run() -> None:
            if hasattr(signal, "pthread_sigmask"):
                # SIGINT/SIGTERM must reach the main thread: a signal taken by
                # this thread only sets Python's flag, and a main thread asleep
                # waiting for us to finish would never run the handler.
                # Threads started from here (DNS executors) inherit the mask.
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.call_soon(self._watch)
            try:
                loop.run_forever()
            finally:
                _drain(loop)

        # Not a daemon: the interpreter waits for it at exit, which is what
        # keeps a serving script alive after its last line (like Node).
        self.thread = threading.Thread(target=run, name="ws-reactor", daemon=False)
        self.thread.start()
        ready.wait(10)
        self._install_signal_handlers()
        self._hook_main_end()

    def _watch(self) -> None:
        """Stop the loop once the main thread is done and nothing holds a ref."""
        loop = self.loop
        if loop is None:
            return
        if not self._main_done and not threading.main_thread().is_alive():
            self._main_ended()  # (when the interpreter's hook did not run: see _hook_main_end)
        if self._refs <= 0 and not threading.main_thread().is_alive():
            with self._lock:
                if self._refs <= 0:
                    self.loop = None
                    loop.stop()
                    return
        loop.call_later(self.POLL, self._watch)

    def hold(self) -> None:
        with self._lock:
            self._refs += 1

    def release(self) -> None:
        with self._lock:
            self._refs -= 1

    @property
    def refs(self) -> int:
        return self._refs

    def on_shutdown(self, hook: Callable[[], Any]) -> None:
        """Register ``hook`` to run on the reactor when SIGINT/SIGTERM arrives."""
        self._shutdown_hooks[hook] = None

    def remove_shutdown(self, hook: Callable[[], Any]) -> None:
        self._shutdown_hooks.pop(hook, None)

    # -- nothing silent ---------------------------------------------------------------------

    def after_script(self, fn: Callable[[], Any], grace: float) -> None:
        """Call ``fn`` on the reactor in ``grace`` seconds, or once the main thread has finished if sooner.

        For an ``'error'`` kept for a listener the script may still attach:
        the lines after ``WebSocket(url)`` run while the reactor connects.
        When the script's last line has run, no listener can come any more,
        and the reactor may stop long before ``grace`` (nothing holds it):
        then ``fn`` runs at once.  Call it on the reactor's thread.
        """
        loop = self.loop
        if loop is None or self._main_done or not threading.main_thread().is_alive():
            fn()
            return
        key = object()
        self._at_main_end[key] = fn

        def due() -> None:
            pending = self._at_main_end.pop(key, None)
            if pending is not None:
                pending()

        loop.call_later(grace, due)

    def _main_ended(self) -> None:
        """On the reactor: the script's main thread has finished; run what waited for it."""
        self._main_done = True
        pending, self._at_main_end = self._at_main_end, {}
        for fn in pending.values():
            try:
                fn()
            except Exception:  # pragma: no cover - ours and defensive
                logger.exception("error while reporting at the end of the script")

    #: Claimable errors remembered, at most; past it the status is 1 whatever is claimed.
    MAX_UNCLAIMED = 1024

    def unhandled(self, error: object, claimable: bool = False) -> None:
        """An ``'error'`` nobody listened to was reported: a script ending with it exits with status 1.

        ``claimable``: it was kept for a listener attached later (``claimed``).
        """
        with self._lock:
            if claimable and len(self._unhandled) < self.MAX_UNCLAIMED:
                self._unhandled[id(error)] = error
            else:
                self._failed = True

    def claimed(self, error: object) -> None:
        """A listener attached late received ``error`` after all: it no longer sets the exit status."""
        with self._lock:
            self._unhandled.pop(id(error), None)

    @property
    def failed(self) -> bool:
        """Whether an unhandled ``'error'`` is still unclaimed."""
        return self._failed or bool(self._unhandled)

    def _hook_main_end(self) -> None:
        """Be told when the main thread finishes: before the interpreter waits for our thread.

        ``threading._register_atexit`` (Python 3.9+; what ``concurrent.futures``
        uses) runs in the main thread when the script's last line has run,
        before non-daemon threads are joined.  Without it the reactor's
        ``_watch`` notices within ``POLL`` seconds.
        """
        register = getattr(threading, "_register_atexit", None)
        if self._exit_hooked or register is None:
            return
        try:
            register(self._main_ending)
        except RuntimeError:  # the interpreter is shutting down already
            return
        self._exit_hooked = True

    def _main_ending(self) -> None:
        """In the main thread, its script done: report the errors kept for listeners, then arm the exit status."""
        loop = self.loop
        if loop is not None and loop.is_running():
            done = threading.Event()

            def on_loop() -> None:
                try:
                    self._main_ended()
                finally:
                    done.set()

            try:
                loop.call_soon_threadsafe(on_loop)
                done.wait(2.0)
            except RuntimeError:  # closed meanwhile
                pass
        # Registered now, so it is the first exit handler to run: it runs the others itself.
        atexit.register(self._exit_status)

    def _exit_status(self) -> None:
        """At exit, after every thread finished: status 1 if an unhandled ``'error'`` is still unclaimed."""
        if not self.failed or not self.sets_exit_status:
            return
        atexit.unregister(self._exit_status)
        run_others = getattr(atexit, "_run_exitfuncs", None)
        try:
            if run_others is not None:
                run_others()  # the other exit handlers, as the interpreter would run them
            else:  # pragma: no cover - CPython has it
                logging.shutdown()
        finally:
            _force_exit(1)

    def _install_signal_handlers(self) -> None:
        if self._signals_installed or threading.current_thread() is not threading.main_thread():
            return
        if os.environ.get("WS_NO_SIGNALS"):
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(signum)
            if current in (signal.default_int_handler, signal.SIG_DFL):
                signal.signal(signum, self._on_signal)
        self._signals_installed = True

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Close everything with 1001 (going away) and let the process end.

        While the main thread still runs user code, SIGINT also raises
        ``KeyboardInterrupt`` there, as Python users expect; once the script
        has finished (the usual serving script), the shutdown is silent.
        """
        loop = self.loop
        first = not self._stopping
        if not first and time.monotonic() - self._first_signal < self.REPEAT:
            return
        self._stopping = True
        if first:
            self._first_signal = time.monotonic()
        if loop is not None and first:
            loop.call_soon_threadsafe(self._run_shutdown_hooks)
            # Leave a stuck peer no more than a few seconds.
            timer = threading.Timer(5.0, _force_exit, args=(128 + signum,))
            timer.daemon = True
            timer.start()
        elif not first:
            _force_exit(128 + signum)
        if signum == signal.SIGINT and _main_thread_running_user_code():
            raise KeyboardInterrupt

    def _run_shutdown_hooks(self) -> None:
        for hook in list(self._shutdown_hooks):
            try:
                hook()
            except Exception:  # pragma: no cover - hooks are ours and defensive
                logger.exception("error during shutdown")


#: Whether the main thread waits inside ws (``run_blocking``: ``serve()``,
#: ``close()``) rather than running the user's code.
_main_waiting_in_ws = False


def _main_thread_running_user_code() -> bool:
    # Once the script's last line ran, the interpreter marks the main thread
    # stopped before joining the reactor thread.  While it waits inside ws
    # (say ``serve()`` returning), a KeyboardInterrupt would only print our
    # internals: the shutdown hooks are the whole answer then.
    return threading.main_thread().is_alive() and not _main_waiting_in_ws


def _force_exit(code: int) -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


# -- which event loop: uvloop when installed (the ``ws-js[speed]`` extra) ----------------------

# ``WS_LOOP``: ``asyncio`` forces asyncio's loop, ``uvloop`` asks for uvloop (warned once when it
# is missing); unset, uvloop is used whenever it can be imported.

_uvloop: Any = None  # the module once imported; False when it cannot be
_warned: set[str] = set()


def _import_uvloop() -> Any:
    """The uvloop module, or ``None`` when it cannot be imported (tried once per process)."""
    global _uvloop
    if _uvloop is None:
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]  # the optional speed extra
        except ImportError:
            _uvloop = False
        else:
            _uvloop = uvloop
    return _uvloop or None


def _warn_once(message: str, *args: object) -> None:
    """A warning about the environment: once per process, on stderr when the application configured no logging."""
    if message not in _warned:
        _warned.add(message)
        announce(logger, logging.WARNING, message, *args)


def _uvloop_wanted() -> Any:
    """The uvloop module when ws's own loops should be uvloop loops (``WS_LOOP``, read at each call), else ``None``."""
    wanted = os.environ.get("WS_LOOP", "").strip().lower()
    if wanted == "asyncio":
        return None
    if wanted not in ("", "uvloop"):
        _warn_once("WS_LOOP=%r is neither 'asyncio' nor 'uvloop'; choosing by what is installed", wanted)
    uvloop = _import_uvloop()
    if uvloop is None and wanted == "uvloop":
        _warn_once("WS_LOOP=uvloop but uvloop cannot be imported (pip install 'ws-js[speed]'); using asyncio")
    return uvloop


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``'uvloop'`` or ``'asyncio'``: what ``loop`` is or, without one, what ``new_loop()`` creates."""
    if loop is None:
        return "uvloop" if _uvloop_wanted() is not None else "asyncio"
    return "uvloop" if type(loop).__module__.partition(".")[0] == "uvloop" else "asyncio"


def new_loop() -> asyncio.AbstractEventLoop:
    """A loop ws owns (the reactor, ``ws`` commands): uvloop's when installed, unless ``WS_LOOP=asyncio``.

    Only loops ws creates: code inside the user's asyncio keeps the user's
    loop, and no global event-loop policy is ever installed.
    """
    uvloop = _uvloop_wanted()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
    _log_choice(loop_name(loop))
    return loop


def _log_choice(name: str) -> None:
    logger.debug("event loop: %s (WS_LOOP=%s)", name, os.environ.get("WS_LOOP", ""))


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a loop of ``new_loop()``: how the ``ws`` commands run."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=new_loop) as runner:
            return runner.run(main)
    # Python 3.10's asyncio.run takes no loop factory; uvloop.run takes one, and is the same steps.
    uvloop = _uvloop_wanted()
    if uvloop is None:
        _log_choice("asyncio")
        return asyncio.run(main)
    result: T = uvloop.run(main, loop_factory=new_loop)
    return result


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel leftovers so the loop closes without 'Task was destroyed' noise."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    except Exception:  # pragma: no cover
        pass
    finally:
        loop.close()


reactor = _Reactor()


def bind() -> asyncio.AbstractEventLoop:
    """The loop a new object should live on: the running one, else the reactor."""
    loop = _get_running_loop()
    if loop is not None:
        return loop
    return reactor.get()


def is_reactor(loop: asyncio.AbstractEventLoop) -> bool:
    return loop is reactor.loop


def _in_loop_asking(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the caller runs on ``loop``'s thread, inside it."""
    return _get_running_loop() is loop


def _in_loop_by_thread(loop: asyncio.AbstractEventLoop) -> bool:
    """``_in_loop_asking``, answered without the ``getpid()`` where the loop names its thread.

    asyncio's own loops keep the id of the thread running them in
    ``_thread_id`` (``None`` when not running; a thread runs one loop at a
    time), set before the first callback and cleared after the last.  Any
    other loop (uvloop: no ``getattr`` miss, which costs an exception), or a
    "no" (another thread's loop, a subclass that runs without noting it),
    is asked about as before.
    """
    if isinstance(loop, _BaseEventLoop) and loop._thread_id == _get_ident():  # type: ignore[attr-defined]
        return True
    return _get_running_loop() is loop


#: ``in_loop(loop)``: whether the caller runs on ``loop``'s thread, inside it (sends from a coroutine,
#: ``recv_async`` ask it per message).  Before 3.12 a thread id spares asyncio's ``getpid()``.
in_loop = _in_loop_by_thread if GETPID_IN_RUNNING_LOOP else _in_loop_asking


def call(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop``: now if we are on it, else soon (thread-safe).

    Asked by ``in_loop`` (before 3.12 asyncio's loops answer by thread id, without the
    ``getpid()`` of asking asyncio: every handshake of ``ws.http`` and every ``broadcast`` passes here).
    """
    if in_loop(loop):
        fn(*args)
    else:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            # The loop is closed: nothing is left to act on.
            logger.debug("call on a closed loop ignored: %r", fn)


def run_blocking(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float | None = 30) -> T:
    """Run ``coro`` on ``loop`` from another thread and wait for its result."""
    global _main_waiting_in_ws
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:
        _main_waiting_in_ws = True  # before scheduling: the coroutine may run at once
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"timed out after {timeout} s") from None
    finally:
        if on_main:
            _main_waiting_in_ws = False


class Ref:
    """A keep-alive reference of one socket or server on the reactor.

    ``hold()``/``release()`` follow the object's life; ``ref()``/``unref()``
    are the user's switch.  Only the reactor counts references: a loop the
    user runs lives as long as the user says.
    """

    __slots__ = ("_loop", "_alive", "_wanted")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._alive = False
        self._wanted = True

    def _counts(self) -> bool:
        return self._alive and self._wanted

    def _update(self, before: bool) -> None:
        after = self._counts()
        if before == after or self._loop is not reactor.loop:
            return
        if after:
            reactor.hold()
        else:
            reactor.release()

    def hold(self) -> None:
        if self._loop is not reactor.loop:  # (every server socket on a loop of the user's: nothing counts)
            self._alive = True
            return
        before = self._counts()
        self._alive = True
        self._update(before)

    def release(self) -> None:
        if self._loop is not reactor.loop:
            self._alive = False
            return
        before = self._counts()
        self._alive = False
        self._update(before)

    def ref(self) -> None:
        before = self._counts()
        self._wanted = True
        self._update(before)

    def unref(self) -> None:
        before = self._counts()
        self._wanted = False
        self._update(before)
