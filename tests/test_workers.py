"""``serve(workers=N)``: real processes on one port, real signals; every wait bounded.

The programs are ``tests/fixtures/workers_app.py`` (each connection gets the
worker's pid first, then its messages echoed) and ``python -m ws serve``.
The parent's lines (``ws: ...`` on stderr) tell the port and the pids.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ws import WebSocketServer, http
from ws._runtime import supervisor as _supervisor
from ws._runtime import workers as _workers

from .conftest import ROOT, run
from .fixtures.processes import free_port

pytestmark = pytest.mark.skipif(
    os.name != "posix" or not hasattr(socket, "SO_REUSEPORT"), reason="workers need POSIX signals and SO_REUSEPORT"
)

APP = ROOT / "tests" / "fixtures" / "workers_app.py"
START = 20.0  # a loaded machine starts Python slowly
READY = re.compile(r"ws: (\d+) workers listening on 127\.0\.0\.1:(\d+) \(pids ([\d, ]+)\)")


class Program:
    """A program under ``workers=N`` in a subprocess; stdout and stderr lines collected by a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        """``args`` after the interpreter; ``env``: variables added to a cleaned copy of ours."""
        env = {k: v for k, v in os.environ.items() if k not in ("WS_NO_SIGNALS", "WS_DEBUG", "WS_BACKPLANE")} | (env or {})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        # Unbuffered, as a CI runner or a container often has it: lines the workers write at the same
        # moment must still arrive whole (print() writes a line in two pieces then).
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
        )
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = 0
        self.pids: list[int] = []

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = START, after: int = 0) -> re.Match[str]:
        """The first line from index ``after`` that matches ``pattern`` (waits for it, bounded)."""
        regex = re.compile(pattern)
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    match = regex.search(line)
                    if match:
                        return match
                left = end - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(f"no line matching {regex.pattern!r} within {timeout} s:\n" + self.output())
                self._changed.wait(min(left, 0.2))

    def ready(self) -> Program:
        """Wait until the parent says that every worker listens; learn the port and the pids."""
        match = self.wait_for(READY)
        self.port = int(match.group(2))
        self.pids = [int(pid) for pid in match.group(3).split(", ")]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def count(self, pattern: str) -> int:
        with self._changed:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def signal(self, signum: int) -> float:
        self.proc.send_signal(signum)
        return time.monotonic()

    def exit_status(self, timeout: float = 20.0) -> int:
        """Wait for the parent to exit and for the last of its output (the workers may write after it)."""
        status = self.proc.wait(timeout)
        with self._changed:
            self._changed.wait_for(lambda: self._eof, timeout)
        return status

    def kill(self) -> None:
        """Teardown: the parent and every worker it named, whatever state they are in."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in set(int(p) for p in re.findall(r"pid (\d+)", self.output())) | set(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def programs() -> Iterator[list[Program]]:
    started: list[Program] = []
    yield started
    for program in started:
        program.kill()


def app(programs: list[Program], workers: int = 2, mode: str = "http") -> Program:
    program = Program(str(APP), "0", str(workers), mode)
    programs.append(program)
    return program


async def worker_pid(url: str) -> int:
    """Connect, read the pid the worker sends first, close."""
    async with connect(url, open_timeout=10, close_timeout=5) as conn:
        return int(await asyncio.wait_for(conn.recv(), 10))


async def pids_of(url: str, connections: int, concurrency: int = 20) -> Counter[int]:
    limit = asyncio.Semaphore(concurrency)

    async def one() -> int:
        async with limit:
            return await worker_pid(url)

    return Counter(await asyncio.gather(*(one() for _ in range(connections))))


async def until_pid(url: str, pid: int, attempts: int = 200) -> int:
    """Connect until a connection lands on worker ``pid``; how many connections that took."""
    for attempt in range(1, attempts + 1):
        if await worker_pid(url) == pid:
            return attempt
    raise AssertionError(f"no connection reached pid {pid} in {attempts} attempts")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- spreading --------------------------------------------------------------------------


def test_connections_spread_evenly_over_the_workers(programs: list[Program]) -> None:
    program = app(programs).ready()
    assert len(program.pids) == 2 and program.proc.pid not in program.pids
    assert "without a backplane" in program.output()
    seen = run(lambda: pids_of(program.url, 200), timeout=60)
    assert set(seen) == set(program.pids), seen
    # The kernel hashes each connection to one socket: 100 +- 7 for each; 50 is far out of the noise.
    assert min(seen.values()) >= 50, seen
    # Each worker ran the program's callback once, with its own number.
    for pid in program.pids:
        program.wait_for(rf"^listening {pid} [12]$")


def test_websocketserver_port_workers(programs: list[Program]) -> None:
    program = app(programs, mode="standalone").ready()

    async def main() -> None:
        for pid in program.pids:
            await until_pid(program.url, pid)

    run(main, timeout=60)
    program.signal(signal.SIGTERM)
    assert program.exit_status() == 0, program.output()


# -- a worker dies ----------------------------------------------------------------------


def test_a_killed_worker_is_replaced_while_the_others_keep_serving(programs: list[Program]) -> None:
    program = app(programs).ready()

    async def main() -> None:
        async with connect(program.url, open_timeout=10) as probe:
            survivor = int(await asyncio.wait_for(probe.recv(), 10))
            (victim,) = set(program.pids) - {survivor}
            os.kill(victim, signal.SIGKILL)
            died = program.wait_for(rf"ws: worker (\d) \(pid {victim}\) was killed by SIGKILL; starting another in 0\.1 s")
            # Meanwhile the survivor serves: new connections and the open one.
            seen = await pids_of(program.url, 20)
            assert survivor in seen and victim not in seen, seen
            await probe.send("still there?")
            assert await asyncio.wait_for(probe.recv(), 10) == "still there?"
            # The replacement listens, and connections reach it.
            slot = died.group(1)
            new = int(program.wait_for(rf"ws: worker {slot} \(pid (\d+)\) listening").group(1))
            assert new not in (survivor, victim)
            await until_pid(program.url, new)
            await probe.send("and now?")
            assert await asyncio.wait_for(probe.recv(), 10) == "and now?"

    run(main, timeout=60)
    # A replaced worker that serves again is no failure: a clean stop exits 0.
    program.signal(signal.SIGTERM)
    assert program.exit_status() == 0, program.output()


def test_a_worker_crashing_at_start_is_restarted_with_growing_delays(programs: list[Program]) -> None:
    program = app(programs, mode="crash")
    first = program.wait_for(r"ws: worker 1 \(pid \d+\) exited with status 3 before listening")
    assert first is not None
    time.sleep(3.0)
    deaths = program.count(r"ws: worker \d \(pid \d+\) exited with status 3 before listening")
    program.signal(signal.SIGTERM)
    status = program.exit_status()
    output = program.output()
    # Python starts in ~0.1-0.3 s: without backoff each worker would die 10 to 30 times in 3 s.
    assert 4 <= deaths <= 2 * 7, output
    delays = [float(d) for d in re.findall(r"ws: worker 1 \(pid \d+\) exited .* starting another in ([\d.]+) s", output)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8], output
    assert "(2 failures in a row)" in output
    # Told to stop while its workers fail, the parent says so and exits non-zero.
    assert status == 1, output
    assert re.search(r"ws: stopped \(exit status 1; worker 1 was failing; worker 2 was failing\)", output), output


def test_workers_that_never_listen_make_the_parent_give_up(programs: list[Program]) -> None:
    """An unreachable backplane: every worker exits before listening; the parent exits 1, not restarting forever."""
    program = Program("-m", "ws", "serve", "--port", "0", "--workers", "2", "--backplane", f"redis://127.0.0.1:{free_port()}/0")
    programs.append(program)
    started = time.monotonic()
    status = program.exit_status(timeout=40)
    output = program.output()
    assert status == 1, output
    assert time.monotonic() - started < 40
    assert re.search(rf"giving up: each of the 2 workers failed {_supervisor.GIVE_UP_AFTER} times in a row without ever listening", output), output
    assert "could not connect to Redis" in output  # the workers' own errors say why


def test_backoff_grows_and_is_bounded() -> None:
    delays = [_supervisor.backoff(n) for n in range(1, 12)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays == sorted(delays) and max(delays) == _supervisor.MAX_DELAY
    assert _supervisor.describe(3) == "exited with status 3"
    assert _supervisor.describe(-signal.SIGKILL) == "was killed by SIGKILL"


# -- stopping ---------------------------------------------------------------------------


@pytest.mark.parametrize("whole_group", [False, True], ids=["parent", "parent-and-workers"])
def test_sigterm_closes_every_client_with_1001_and_exits_0(programs: list[Program], whole_group: bool) -> None:
    """SIGTERM to the parent (docker stop), or to every process at once (systemd's KillMode=control-group)."""
    program = app(programs).ready()

    async def main() -> list[int | None]:
        clients: list[ClientConnection] = []
        on: Counter[int] = Counter()
        while len(clients) < 40 and (len(on) < 2 or len(clients) < 10):
            conn = await connect(program.url, open_timeout=10)
            on[int(await asyncio.wait_for(conn.recv(), 10))] += 1
            clients.append(conn)
        assert set(on) == set(program.pids), on
        if whole_group:  # the parent's own SIGTERM reaches each worker a little later: one stop, not two
            for pid in program.pids:
                os.kill(pid, signal.SIGTERM)
            await asyncio.sleep(0.1)
        program.signal(signal.SIGTERM)

        async def code(conn: ClientConnection) -> int | None:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(conn.recv(), 15)
            return conn.close_code

        return await asyncio.gather(*(code(conn) for conn in clients))

    codes = run(main, timeout=60)
    assert set(codes) == {1001}, codes
    assert program.exit_status() == 0, program.output()
    assert all(gone(pid) for pid in program.pids)
    assert "ws: stopped (exit status 0)" in program.output()
    assert "Traceback" not in program.output()


def test_workers_that_do_not_stop_are_killed_at_the_deadline(programs: list[Program]) -> None:
    """close_timeout + 5 s after the SIGTERM, the parent kills what is left, and says so in its status."""
    program = app(programs, mode="stubborn").ready()
    for index in (1, 2):
        program.wait_for(rf"^ignoring SIGTERM {index}$")
    sent = program.signal(signal.SIGTERM)
    assert program.exit_status() == 1, program.output()
    assert 5.0 <= time.monotonic() - sent < 10.0
    assert program.count(r"ws: worker [12] \(pid \d+\) killed: it did not stop within 5\.1 s") == 2, program.output()
    assert "ws: stopped (exit status 1; worker 1 did not stop cleanly; worker 2 did not stop cleanly)" in program.output()
    assert all(gone(pid) for pid in program.pids)


def test_a_killed_parent_takes_its_workers_down(programs: list[Program]) -> None:
    """The workers watch a pipe only the parent holds open: no worker outlives a SIGKILLed parent."""
    program = app(programs).ready()

    async def main() -> int | None:
        async with connect(program.url, open_timeout=10) as conn:
            await asyncio.wait_for(conn.recv(), 10)
            program.signal(signal.SIGKILL)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(conn.recv(), 15)
            return conn.close_code

    assert run(main, timeout=60) == 1001
    deadline = time.monotonic() + 15
    while not all(gone(pid) for pid in program.pids):
        assert time.monotonic() < deadline, "workers outlived their parent"
        time.sleep(0.05)
    assert program.count("the supervisor is gone; stopping") == 2


# -- ws serve --workers -----------------------------------------------------------------


def test_ws_serve_workers(programs: list[Program]) -> None:
    import uvloop  # noqa: F401  (the speed extra, a test dependency: each worker runs on it unasked)

    program = Program("-m", "ws", "serve", "--port", "0", "--workers", "2", env={"WS_LOOP": ""})
    programs.append(program)
    program.ready()
    for index in (1, 2):
        program.wait_for(rf"\[worker {index}/2\] Listening on ws://127\.0\.0\.1:{program.port}/ \(echo, loop: uvloop[,)]")

    async def main() -> None:
        for text in ("one", "two", "three"):
            async with connect(program.url, open_timeout=10) as conn:
                await conn.send(text)
                assert await asyncio.wait_for(conn.recv(), 10) == text

    run(main, timeout=60)
    sent = program.signal(signal.SIGINT)
    assert program.exit_status() == 0, program.output()
    assert time.monotonic() - sent < 10
    assert program.count(r"\[worker [12]/2\] Stopped") == 2, program.output()


def test_ws_serve_workers_0_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ws", "serve", "--port", "0", "--workers", "0"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "--workers: 0 is less than 1" in done.stderr


# -- one process, as before -------------------------------------------------------------


def test_workers_1_is_one_process_as_before(programs: list[Program]) -> None:
    program = app(programs, workers=1)
    match = program.wait_for(r"^listening (\d+) None$")
    assert int(match.group(1)) == program.proc.pid  # no supervisor, no worker variables
    program.signal(signal.SIGTERM)
    assert program.exit_status() in (0, 128 + signal.SIGTERM, -signal.SIGTERM)
    assert "ws:" not in program.output()


def test_workers_none_or_1_binds_without_so_reuseport() -> None:
    async def main() -> None:
        for workers in (None, 1):
            server = http.Server("127.0.0.1:0")
            await server.serve_async(workers=workers)
            try:
                assert server.worker is None
                (sock,) = server._sockets
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
            finally:
                await server.close_async()

    run(main)


# -- what cannot work fails at once, before any process starts --------------------------


@pytest.fixture
def no_supervision(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests must never start workers (they would run pytest again)."""

    def refuse(*args: Any) -> int:
        raise AssertionError("a worker would have been started")

    monkeypatch.setattr(_supervisor.Supervisor, "run", refuse)


@pytest.mark.usefixtures("no_supervision")
@pytest.mark.parametrize("workers", [0, -1, True, "2", 1.5])
def test_bad_worker_counts(workers: Any) -> None:
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        http.Server("127.0.0.1:0").serve(workers=workers)


@pytest.mark.usefixtures("no_supervision")
def test_workers_need_so_reuseport_and_tcp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a TCP address"):
        http.Server(str(tmp_path / "s.sock"), network="unix").serve(workers=2)
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(NotImplementedError, match="needs SO_REUSEPORT"):
        http.Server("127.0.0.1:0").serve(workers=2)


@pytest.mark.usefixtures("no_supervision")
def test_workers_on_a_taken_port_fail_at_once() -> None:
    """Taken by a plain server, or by one with SO_REUSEPORT (an earlier run still up): never shared silently."""
    for reuse in (False, True):
        with socket.socket() as other:
            if reuse:
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = other.getsockname()[1]
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
                http.Server(f"127.0.0.1:{port}").serve(workers=2)


@pytest.mark.usefixtures("no_supervision")
def test_supervising_needs_the_main_thread() -> None:
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            http.Server("127.0.0.1:0").serve(workers=2)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError) and "main thread" in str(errors[0])


def test_workers_goes_with_port() -> None:
    server = http.Server("127.0.0.1:0")
    with pytest.raises(TypeError, match="workers goes with port="):
        WebSocketServer(server=server, workers=2)


def test_the_command_line_run_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-X", "dev", "app.py", "8080"])
    monkeypatch.setattr(sys, "argv", ["app.py", "8080"])
    monkeypatch.setattr(sys.modules["__main__"], "__file__", str(script), raising=False)
    # The interpreter running now, its options, and the script by its absolute path.
    assert _supervisor.command() == [sys.executable, "-X", "dev", str(script), "8080"]
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "ws", "serve"])
    monkeypatch.setattr(sys, "argv", ["/x/ws/__main__.py", "serve"])
    assert _supervisor.command() == [sys.executable, "-m", "ws", "serve"]
    for argv in ([""], ["-"]):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(RuntimeError, match="running this program again"):
            _supervisor.command()


def test_a_backplane_is_configured_by_the_option_or_ws_backplane(monkeypatch: pytest.MonkeyPatch) -> None:
    """backplane= or WS_BACKPLANE, read when the server is made; memory:// shares nothing between processes."""
    monkeypatch.delenv("WS_BACKPLANE", raising=False)
    assert http.Server("127.0.0.1:0").backplane is None
    in_process = http.Server("127.0.0.1:0", backplane="memory://").backplane
    assert in_process is not None and not in_process.crosses_processes  # it does not silence the warning
    monkeypatch.setenv("WS_BACKPLANE", "memory://")
    from_env = http.Server("127.0.0.1:0").backplane
    assert from_env is not None and not from_env.crosses_processes


def test_workers_with_an_in_process_backplane_are_warned(programs: list[Program]) -> None:
    """memory:// gives each worker a hub of its own: as partial as no backplane, and said as clearly."""
    program = Program("-m", "ws", "serve", "--port", "0", "--workers", "2", "--backplane", "memory://")
    programs.append(program)
    program.ready()
    program.wait_for(r"2 workers with an in-process backplane \(MemoryBackplane\): each worker gets a backplane of its own")
    sent = program.signal(signal.SIGINT)
    assert program.exit_status() == 0, program.output()
    assert time.monotonic() - sent < 10


def test_not_a_worker_here() -> None:
    assert _workers.current() is None
    assert http.Server("127.0.0.1:0").worker is None


def test_a_workers_children_get_none_of_its_pipes_and_die_with_it_at_the_deadline(programs: list[Program]) -> None:
    """A worker's child (even with close_fds=False) holds neither pipe of the parent nor WS_WORKER_PORT/FDS,
    and the parent's kill at the stop deadline takes the worker's whole process group."""
    program = app(programs, mode="family").ready()
    for index in (1, 2):
        program.wait_for(rf"^ignoring SIGTERM {index}$")
    found = re.findall(r"^child (\d+) fds=(.*) env=(.*)$", program.output(), re.M)
    end = time.monotonic() + 10
    while len(found) < 2 and time.monotonic() < end:
        time.sleep(0.05)
        found = re.findall(r"^child (\d+) fds=(.*) env=(.*)$", program.output(), re.M)
    assert len(found) == 2, program.output()
    for pid, fds, env in found:
        assert fds == "[]" and env == "[]", program.output()
    sent = program.signal(signal.SIGTERM)
    assert program.exit_status() == 1, program.output()
    assert time.monotonic() - sent < 10.0
    child_pids = [int(pid) for pid, _, _ in found]
    end = time.monotonic() + 5
    while not all(gone(pid) for pid in child_pids) and time.monotonic() < end:
        time.sleep(0.05)
    try:
        assert all(gone(pid) for pid in child_pids), "a worker's child outlived the kill at the deadline"
    finally:
        for pid in child_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- metrics ------------------------------------------------------------------------------


def test_one_scrape_shows_every_workers_metrics(programs: list[Program]) -> None:
    pytest.importorskip("prometheus_client", reason="pip install 'ws-js[metrics]'")
    from .test_metrics import until_scraped as scraped

    program = app(programs, mode="metrics").ready()
    directory = program.wait_for(r"^metrics dir (\S+)$").group(1)
    assert directory != "None" and os.path.isdir(directory)

    async def main() -> None:
        clients: list[tuple[ClientConnection, int]] = []
        try:
            while len({pid for _, pid in clients}) < 2 or len(clients) < 4:  # connections on both workers
                assert len(clients) < 100, "every connection went to one worker"
                conn = await connect(program.url, open_timeout=10, close_timeout=5)
                clients.append((conn, int(await asyncio.wait_for(conn.recv(), 10))))
                await conn.send("x" * 10)
                assert await asyncio.wait_for(conn.recv(), 10) == "x" * 10
            n = len(clients)
            await scraped(program.port, "ws_connections_open", n, path="/")
            await scraped(program.port, "ws_messages_received_total", n, path="/")
            await scraped(program.port, "ws_received_bytes_total", 10 * n, path="/")
            await scraped(program.port, "ws_messages_sent_total", 2 * n, path="/")  # the pid, the echo
            await scraped(program.port, "ws_handshakes_total", n, path="/", outcome="accepted", status="101")

            # A worker killed: its connections leave the live gauge (the parent marks it dead); its counts stay.
            victim = clients[0][1]
            os.kill(victim, signal.SIGKILL)
            program.wait_for(rf"ws: worker \d \(pid {victim}\) was killed by SIGKILL")
            survivors = [conn for conn, pid in clients if pid != victim]
            await scraped(program.port, "ws_connections_open", len(survivors), path="/")
            await scraped(program.port, "ws_messages_received_total", n, path="/")
            for conn in survivors:
                await conn.close()
            await scraped(program.port, "ws_connections_open", 0, path="/")
            await scraped(program.port, "ws_connections_closed_total", len(survivors), path="/", code="1000")
        finally:
            for conn, _ in clients:
                await conn.close()

    run(main, timeout=90)
    program.signal(signal.SIGTERM)
    program.exit_status()
    assert not os.path.exists(directory), "the parent removes the metrics directory it made"
