"""The parent of ``serve(workers=N)``: start N workers, replace those that die, stop them all on a signal.

**Why each worker runs the program again instead of being forked.**  By the
time a script calls ``serve(workers=N)``, ``ws`` has usually started its
reactor thread (``ws._runtime.loop``), and the script may have started
threads of its own.  ``fork()`` copies only the calling thread: the child
would hold a loop whose thread does not exist, an epoll instance shared with
the parent, and whatever locks the other threads held at that instant.  So
the parent runs the program's own command line again (``sys.orig_argv``:
the script, ``python -m ws serve ...`` or ``python -c``, with this
interpreter and its options) with ``WS_WORKER=i`` in the environment
(``ws._runtime.workers``).  Each worker builds its objects from scratch on
its own loop, and ``subprocess`` execs the new program at once, which is
safe with threads.  The price: the code before ``serve()`` runs in the parent
and in every worker, and a program that cannot be run again (an interactive
session, a script read from stdin) cannot have workers.

The parent reserves the port before starting anyone (``ws.http.Server``
binds it with ``SO_REUSEPORT`` without listening), so port 0 is chosen once
and a replacement worker binds the same port.  Workers start in their own
session: a Ctrl-C in the terminal reaches the parent only, and the parent
sends each worker one SIGTERM.

The parent's exit status: 0 when every worker was up when the stop came and
each stopped by itself within ``stop_timeout``; 1 otherwise (a worker
failing or waiting to be replaced, one that had to be killed, a second
signal).  Without a stop it exits 1 by itself when every worker failed
``GIVE_UP_AFTER`` times in a row without ever listening: workers that cannot
start are not restarted forever.
"""

from __future__ import annotations

import builtins
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from . import metrics as _metrics
from .log import announce
from .workers import COUNT_VAR, FDS_VAR, INDEX_VAR, PORT_VAR

__all__ = ["Supervisor", "backoff", "command", "describe"]

logger = logging.getLogger("ws.workers")

#: A dead worker is replaced after this long; each failure in a row doubles the wait, up to MAX_DELAY.
BASE_DELAY = 0.1
MAX_DELAY = 10.0
#: A worker that has listened this long was healthy: its death starts the count of failures again.
STABLE_AFTER = 10.0
#: When every worker has failed this many times in a row without ever listening, the parent gives up
#: (exit status 1): a worker that cannot start (a backplane it cannot reach, a bad option) stays so.
GIVE_UP_AFTER = 6
#: With nothing happening, the parent looks at its workers this often (signals wake it at once).
POLL = 1.0
#: Exit statuses of a worker that stopped as asked: 0, killed by SIGTERM, or 128 + SIGTERM.
STOPPED = (0, -signal.SIGTERM, 128 + signal.SIGTERM)
#: A signal this soon after the first is the same stop sent twice (``timeout``, ``kill -- -pgid``
#: and systemd signal a whole group); a later one kills the workers at once.
REPEAT = 1.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def backoff(failures: int) -> float:
    """How long to wait before replacing a worker after ``failures`` failures in a row."""
    return min(MAX_DELAY, BASE_DELAY * 2 ** (failures - 1)) if failures > 0 else 0.0


def describe(returncode: int) -> str:
    """Why a process ended, from its return code: ``exited with status 3``, ``was killed by SIGKILL``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"


def command() -> list[str]:
    """The command line that runs this program again: ``sys.orig_argv`` with this interpreter."""
    argv = list(getattr(sys, "orig_argv", None) or ())
    if not argv or not sys.executable or sys.argv[0] in ("", "-") or sys.flags.interactive or _in_ipython():
        raise RuntimeError(
            "serve(workers=N) starts each worker by running this program again, which needs a script, "
            "'python -m module' or 'python -c code': not an interactive session or a program read from stdin"
        )
    argv[0] = sys.executable
    # The same script even if the program changed directory since (__main__.__file__ is absolute).
    at = len(argv) - len(sys.argv)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if (
        0 < at < len(argv) and argv[at] == sys.argv[0] and not os.path.isabs(argv[at])
        and isinstance(main_file, str) and os.path.isabs(main_file)
    ):
        argv[at] = main_file
    return argv


def _in_ipython() -> bool:
    return bool(getattr(builtins, "__IPYTHON__", False))


@dataclass
class _Slot:
    """Worker number ``index``: its current process, if any, and its record."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    listening_since: float | None = None
    #: Deaths in a row (reset by a death after STABLE_AFTER of listening).
    failures: int = 0
    #: The last process stopped as asked (a SIGTERM from someone else, or the program ended).
    stopped: bool = False
    #: When to start its next process (``None``: not waiting).
    restart_at: float | None = 0.0
    #: One of its processes has listened during this run.
    listened: bool = False


class Supervisor:
    """Runs ``count`` workers on ``port`` until SIGINT or SIGTERM (from the main thread).

    Made before the port is reserved, so that what cannot work (another
    thread, a program that cannot be run again) fails before anything
    happens; ``run(port, where)`` then blocks until the workers are stopped
    and returns the exit status.
    """

    def __init__(self, count: int, *, stop_timeout: float, argv: list[str] | None = None) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("serve(workers=N) must be called from the main thread (the parent handles SIGINT and SIGTERM)")
        self.count = count
        self.stop_timeout = stop_timeout
        self.argv = command() if argv is None else argv
        self._slots = [_Slot(index) for index in range(1, count + 1)]
        self._signals: list[int] = []
        self._first_signal = 0.0
        self._all_listening = False
        self._status = b""
        self._env: dict[str, str] = {}
        self._fds: list[int] = []
        self._pass_fds: tuple[int, ...] = ()
        self._status_r = self._wake_r = -1
        self._where = ""

    # -- the whole run --

    def run(self, port: int, where: str) -> int:
        """Start the workers, keep them up until a stop signal, stop them; the exit status."""
        status_r, status_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()  # the parent holds the write end and never writes
        wake_r, wake_w = os.pipe()
        self._fds = [status_r, status_w, lifeline_r, lifeline_w, wake_r, wake_w]
        for fd in (status_r, wake_r, wake_w):
            os.set_blocking(fd, False)
        self._status_r, self._wake_r = status_r, wake_r
        self._pass_fds = (status_w, lifeline_r)
        self._env = {
            **os.environ, COUNT_VAR: str(self.count), PORT_VAR: str(port), FDS_VAR: f"{status_w},{lifeline_r}",
        }
        self._where = where
        # Metrics on (ws.metrics.enable() ran here too): the workers share a multiprocess directory.
        remove_metrics_dir = _metrics.prepare_workers(self._env)
        previous = {signum: signal.getsignal(signum) for signum in (*_STOP_SIGNALS, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(wake_w)
        try:
            for signum in _STOP_SIGNALS:
                signal.signal(signum, self._on_stop_signal)
            # Only for the wakeup byte: a signal taken by another thread still wakes select().
            signal.signal(signal.SIGCHLD, lambda signum, frame: None)
            logger.debug("starting %d workers: %s", self.count, self.argv)
            while not self._signals:
                self._start_due()
                self._wait(self._timeout())
                self._reap()
                if self._hopeless():
                    return self._give_up()
            return self._stop()
        finally:
            for slot in self._slots:  # only after an error of ours: _stop() leaves no process behind
                if slot.process is not None and slot.process.poll() is None:
                    _kill_group(slot.process)
                    slot.process.wait()
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            for fd in self._fds:
                os.close(fd)
            self._fds = []
            remove_metrics_dir()

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if not self._signals:
            self._first_signal = now
        elif now - self._first_signal < REPEAT:
            return
        self._signals.append(signum)

    # -- starting and replacing --

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                self._start(slot)

    def _start(self, slot: _Slot) -> None:
        slot.restart_at = None
        env = {**self._env, INDEX_VAR: str(slot.index)}
        try:
            slot.process = subprocess.Popen(
                self.argv, env=env, pass_fds=self._pass_fds, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError as exc:
            self._failed(slot, f"could not start: {exc}")

    def _failed(self, slot: _Slot, why: str, stopped: bool = False) -> None:
        """``slot``'s worker is gone (or never started): log why and schedule the next one, with backoff.

        A worker that ``stopped`` as asked is replaced after REPEAT at the
        soonest: when the whole group is being stopped (systemd signals
        every process), the parent's own signal comes meanwhile.
        """
        now = time.monotonic()
        if slot.listening_since is not None and now - slot.listening_since >= STABLE_AFTER:
            slot.failures = 0
        slot.failures += 1
        slot.stopped = stopped
        delay = max(backoff(slot.failures), REPEAT if stopped else 0.0)
        streak = f" ({slot.failures} failures in a row)" if slot.failures > 1 else ""
        announce(logger, logging.WARNING, "worker %d %s; starting another in %.1f s%s", slot.index, why, delay, streak)
        slot.process = None
        slot.listening_since = None
        slot.restart_at = now + delay

    def _reap(self) -> None:
        for slot in self._slots:
            process = slot.process
            if process is None:
                continue
            returncode = process.poll()
            if returncode is not None:
                _metrics.worker_gone(process.pid, self._env)
                when = "" if slot.listening_since is not None else " before listening"
                self._failed(slot, f"(pid {process.pid}) {describe(returncode)}{when}", returncode in STOPPED)

    # -- waiting --

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [slot.restart_at - now for slot in self._slots if slot.restart_at is not None]
        return max(0.0, min([POLL, *due]))

    def _wait(self, timeout: float) -> None:
        """Until a signal, a worker's status line or ``timeout``; reads what came."""
        ready, _, _ = select.select([self._status_r, self._wake_r], [], [], timeout)
        if self._wake_r in ready:
            _drain(self._wake_r)
        if self._status_r in ready:
            self._status += _drain(self._status_r)
            *lines, self._status = self._status.split(b"\n")
            for line in lines:
                if line.strip().isdigit():
                    self._listening(int(line))

    def _listening(self, pid: int) -> None:
        slot = next((s for s in self._slots if s.process is not None and s.process.pid == pid), None)
        if slot is None or slot.listening_since is not None:
            return
        slot.listening_since = time.monotonic()
        slot.listened = True
        if self._all_listening:
            announce(logger, logging.INFO, "worker %d (pid %d) listening", slot.index, pid)
        elif all(s.listening_since is not None for s in self._slots):
            self._all_listening = True
            pids = ", ".join(str(s.process.pid) for s in self._slots if s.process is not None)
            announce(logger, logging.INFO, "%d workers listening on %s (pids %s)", self.count, self._where, pids)

    def _hopeless(self) -> bool:
        """Every slot failed GIVE_UP_AFTER times in a row, none ever listened, none is running."""
        return all(s.failures >= GIVE_UP_AFTER and not s.listened and s.process is None for s in self._slots)

    def _give_up(self) -> int:
        announce(
            logger, logging.ERROR,
            "giving up: each of the %d workers failed %d times in a row without ever listening "
            "(the cause is in the workers' errors above: e.g. a backplane they cannot reach); exit status 1",
            self.count, GIVE_UP_AFTER,
        )
        return 1

    # -- stopping --

    def _stop(self) -> int:
        """SIGTERM to every worker, SIGKILL to those still there after ``stop_timeout``; the exit status."""
        name = signal.Signals(self._signals[0]).name
        failing = [
            slot.index for slot in self._slots
            if slot.failures and slot.listening_since is None and not (slot.process is None and slot.stopped)
        ]
        live = [slot for slot in self._slots if slot.process is not None]
        announce(logger, logging.INFO, "%s: stopping the workers (%d running)", name, len(live))
        for slot in live:
            assert slot.process is not None
            slot.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while len(self._signals) == 1 and any(slot.process.poll() is None for slot in live if slot.process):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wait(min(left, POLL))
        why = "a second signal came" if len(self._signals) > 1 else f"it did not stop within {self.stop_timeout:g} s"
        failed = []
        for slot in live:
            process = slot.process
            assert process is not None
            returncode = process.poll()
            if returncode is None:
                _kill_group(process)  # the worker and what it started (it leads its own session)
                process.wait()
                announce(logger, logging.WARNING, "worker %d (pid %d) killed: %s", slot.index, process.pid, why)
                failed.append(slot.index)
            elif returncode not in STOPPED:
                announce(logger, logging.WARNING, "worker %d (pid %d) %s while stopping", slot.index, process.pid, describe(returncode))
                failed.append(slot.index)
            _metrics.worker_gone(process.pid, self._env)
            slot.process = None
        status = 1 if failing or failed else 0
        notes = [f"worker {i} was failing" for i in failing] + [f"worker {i} did not stop cleanly" for i in failed]
        announce(logger, logging.INFO, "stopped (exit status %d%s)", status, "".join(f"; {n}" for n in notes))
        return status


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker's process group (it leads its own session: its children are in it)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def _drain(fd: int) -> bytes:
    """Everything readable now on non-blocking ``fd``."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk
