"""End to end: real scripts from scripts/examples/ in subprocesses.

Each script runs with ``sys.executable`` and without ``WS_NO_SIGNALS`` (so
its SIGINT/SIGTERM handling is the real one); every wait is bounded and every
process is killed in the end, whatever happens.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ws import WebSocket

from .conftest import ROOT, Recorder, run

EXAMPLES = ROOT / "scripts" / "examples"
START_TIMEOUT = 20.0  # a loaded CI machine imports slowly
EXIT_TIMEOUT = 20.0

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and subprocess checks assume POSIX")


def script_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WS_NO_SIGNALS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    return env


# Runs an example as its own __main__, then says when the interpreter has marked the main thread finished
# (the script's last line ran; ws then treats a signal as a silent shutdown, not a KeyboardInterrupt).
# The marker goes to stderr in one write: on stdout, under PYTHONUNBUFFERED, it could land between the
# two writes of a print() of the script's (its text, then its newline) and merge with that line.
WATCHED = """
import os, runpy, sys, threading, time
def watch():
    while threading.main_thread().is_alive():
        time.sleep(0.01)
    os.write(2, {marker!r}.encode() + b"\\n")
threading.Thread(target=watch, daemon=True).start()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
MAIN_DONE = "-- main thread finished --"


class Script(subprocess.Popen):  # type: ignore[type-arg]
    """A script in a subprocess whose stdout and stderr are read by one thread each, from start to end.

    ``line()`` takes stdout's next line (bounded wait) and ``communicate()`` the rest once the
    process ended.  One reader per pipe for the process' whole life: reading one shared
    ``proc.stdout`` from a new thread per line, then with ``Popen.communicate``, lost a line now
    and then under load (``test_signal_closes_a_client_script_with_1001``).
    """

    def __init__(self, args: list[str], **kwargs: Any) -> None:
        super().__init__(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.taken: list[str] = []
        self.errors: list[str] = []
        self.changed = threading.Condition()
        self.readers = [
            threading.Thread(target=self._read_lines, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_lines(self) -> None:
        assert self.stdout is not None
        for line in self.stdout:
            self.lines.put(line)
        self.lines.put(None)  # end of file

    def _read_errors(self) -> None:
        assert self.stderr is not None
        for line in self.stderr:
            with self.changed:
                self.errors.append(line)
                self.changed.notify_all()

    def dump_and_kill(self) -> None:
        """End a stuck script, its threads' stacks on stderr first (PYTHONFAULTHANDLER, see ``script_env``)."""
        if self.poll() is None:
            self.send_signal(signal.SIGABRT)
            try:
                self.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
                self.wait(5)

    def main_done(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until a ``watched`` script's last line ran (MAIN_DONE on its stderr)."""
        with self.changed:
            if not self.changed.wait_for(lambda: MAIN_DONE in "".join(self.errors), timeout):
                raise AssertionError(f"{self.args}: its main thread did not finish in {timeout} s")

    def line(self, timeout: float = START_TIMEOUT) -> str:
        """stdout's next line, stripped; fails (and kills the script) after ``timeout`` s or at its end."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self.dump_and_kill()
            _, err = self.communicate(timeout=5)
            raise AssertionError(
                f"{self.args} printed no line in {timeout} s after {self.taken}; stderr:\n{err}"
            )
        self.taken.append(line.strip())
        return line.strip()

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the end, then the stdout not taken by ``line()``, and stderr.

        A script still running after ``timeout`` fails the test with its threads' stacks.
        """
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.dump_and_kill()
            raise AssertionError(f"{self.args} still ran after {timeout} s; stderr:\n{self.communicate(timeout=5)[1]}")
        for reader in self.readers:
            reader.join(10)
        rest: list[str] = []
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self.lines.put(None)  # stays at its end
                break
            rest.append(line)
        with self.changed:
            err = "".join(self.errors).replace(MAIN_DONE + "\n", "")
        return "".join(rest), err


def start(name: str, *args: str, watched: bool = False) -> Script:
    """Start ``scripts/examples/<name>``; ``watched``: ``main_done()`` can wait until its last line ran."""
    prefix = ["-c", WATCHED.format(marker=MAIN_DONE)] if watched else []
    return Script([sys.executable, *prefix, str(EXAMPLES / name), *args], env=script_env(), cwd=ROOT)


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a script to its end (bounded): it must exit by itself."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=EXIT_TIMEOUT,
    )


def stop(proc: Script) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=10)


def first_line(proc: Script, timeout: float = START_TIMEOUT) -> str:
    """The script's next stdout line (bounded wait)."""
    return proc.line(timeout)


@pytest.fixture
def echo_server() -> Iterator[tuple[Script, int]]:
    proc = start("echo_server.py", "0", watched=True)
    try:
        line = first_line(proc)
        assert line.startswith("listening on 127.0.0.1:"), line
        yield proc, int(line.rsplit(":", 1)[1])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_readme_script_prints_in_order_and_exits_by_itself(echo_server: tuple) -> None:
    _, port = echo_server
    done = run_script("hello_client.py", f"ws://127.0.0.1:{port}/ws")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["hello", "closed 1000"]
    assert done.stderr == ""


def test_client_script_reports_a_refused_connection_and_exits(tmp_path: Path) -> None:
    script = tmp_path / "refused.py"
    script.write_text(
        "from ws import WebSocket\n"
        "ws = WebSocket('ws://127.0.0.1:9/ws')\n"
        "ws.on('error', lambda err: print('error', err))\n"
        "ws.on('close', lambda code, reason: print('closed', code))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=script_env(),
                          timeout=EXIT_TIMEOUT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error connect ECONNREFUSED 127.0.0.1:9")
    assert lines[1] == "closed 1006"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_closes_clients_with_1001_and_exits_promptly(echo_server: tuple, signum: int) -> None:
    proc, port = echo_server
    # 'listening' prints from the reactor before serve() returns: a signal while the script's
    # main thread still runs is a KeyboardInterrupt there (with its traceback), as in any script.
    proc.main_done()

    async def main() -> tuple[int, float]:
        sock = WebSocket(f"ws://127.0.0.1:{port}/ws")
        rec = Recorder(sock, "open", "message", "close")
        await rec.wait("open", timeout=START_TIMEOUT)
        sock.send("are you there")
        await rec.wait("message", timeout=START_TIMEOUT)
        proc.send_signal(signum)
        sent = time.monotonic()
        ((code, _),) = await rec.wait("close", timeout=EXIT_TIMEOUT)
        return code, sent

    code, sent = run(main, timeout=60)
    assert code == 1001
    out, err = proc.communicate(timeout=EXIT_TIMEOUT)
    elapsed = time.monotonic() - sent
    assert elapsed < 5, f"the server took {elapsed:.1f} s to exit"
    assert "Traceback" not in err, err
    assert proc.returncode in (0, 128 + signum, -signum), (proc.returncode, err)
    assert "connected 127.0.0.1" in out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_closes_a_client_script_with_1001(echo_server: tuple, signum: int) -> None:
    server, port = echo_server
    proc = start("idle_client.py", f"ws://127.0.0.1:{port}/ws", watched=True)
    try:
        assert first_line(proc) == "open"
        proc.main_done()  # only waiting now
        proc.send_signal(signum)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=EXIT_TIMEOUT)
        assert time.monotonic() - sent < 5
        assert out.splitlines() == ["closed 1001"]
        assert "Traceback" not in err, err
        assert proc.returncode in (0, 128 + signum, -signum), (proc.returncode, err)
    finally:
        stop(proc)
    server.send_signal(signal.SIGTERM)
    out, _ = server.communicate(timeout=EXIT_TIMEOUT)
    assert "closed 1001" in out  # the server saw the client go away


def test_signal_with_no_client_exits_quietly(echo_server: tuple) -> None:
    proc, _ = echo_server
    # 'listening' prints from the reactor just before serve() returns; wait until the script
    # has finished its last line (a SIGINT while it still runs user code is a KeyboardInterrupt
    # there, as in any Python script).
    proc.main_done()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=EXIT_TIMEOUT)
    assert "Traceback" not in err, err
    assert proc.returncode in (0, 128 + signal.SIGINT, -signal.SIGINT)


def test_sigint_while_serve_is_still_returning_prints_no_traceback(tmp_path: Path) -> None:
    script = tmp_path / "slow_start.py"
    script.write_text(
        "import time\n"
        "from ws import http\n"
        "server = http.Server('127.0.0.1:0')\n"
        "# The callback holds serve() open: the main thread waits inside ws.\n"
        "server.serve(lambda address: (print('listening', address, flush=True), time.sleep(1)))\n"
        "print('serve returned', flush=True)\n"
    )
    proc = Script([sys.executable, str(script)], env=script_env())
    try:
        assert first_line(proc).startswith("listening")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=EXIT_TIMEOUT)
        assert "Traceback" not in err, err
        assert out.strip() == "serve returned"  # the script ran to its end, then exited
        assert proc.returncode in (0, 130), (proc.returncode, err)
    finally:
        stop(proc)


def test_a_raising_listener_keeps_the_script_serving() -> None:
    proc = start("fragile_server.py", "0")
    try:
        line = first_line(proc)
        port = int(line.rsplit(":", 1)[1])

        async def main() -> list[str]:
            sock = WebSocket(f"ws://127.0.0.1:{port}/ws")
            rec = Recorder(sock, "open", "message", "close")
            await rec.wait("open", timeout=START_TIMEOUT)
            sock.send("boom")
            sock.send("after")
            await rec.wait("message", timeout=START_TIMEOUT)
            sock.send("boom")
            sock.send("again")
            msgs = await rec.wait("message", 2, timeout=START_TIMEOUT)
            assert sock.ready_state == WebSocket.OPEN
            sock.close()
            await rec.wait("close")
            return [m[0].data for m in msgs]

        assert run(main, timeout=60) == ["after", "again"]
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=EXIT_TIMEOUT)
        assert err.count("listener exploded on purpose") >= 2  # logged with its traceback
        assert "RuntimeError" in err
    finally:
        stop(proc)


def test_unref_socket_lets_the_script_exit(echo_server: tuple) -> None:
    server, port = echo_server
    done = run_script("unref_client.py", f"ws://127.0.0.1:{port}/ws")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "open"
    assert "Traceback" not in done.stderr


def test_unref_server_lets_the_script_exit() -> None:
    done = run_script("unref_server.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("listening on ")
    assert "Traceback" not in done.stderr
