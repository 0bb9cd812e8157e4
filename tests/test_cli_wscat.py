"""ws.cli beside wscat: ``-c`` / ``-l``, scheme-less URLs, line editing on a terminal, slash commands,
and bad values refused with one line and exit status 2.

The interactive tests drive the real CLI in a pseudo-terminal (pexpect, every
wait bounded) against a ``ws`` server running in a thread of this process that
records what each client sends: messages, pings, pongs, the close code.
"""

from __future__ import annotations

import asyncio
import os
import queue
import stat
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pexpect
import pytest

from ws import WebSocket, WebSocketServer
from ws import http
from ws.cli import UsageError, connect_url, parse_line, visible_controls, wscat_argv
from ws.terminal import Key, KeyDecoder, LineBuffer, visible_window

from .conftest import ROOT
from .test_cli import TIMEOUT, ServeProcess, cli_env, finish, spawn

UP, DOWN, LEFT, RIGHT, HOME, END = "\x1b[A", "\x1b[B", "\x1b[D", "\x1b[C", "\x1b[H", "\x1b[F"


class Recorder:
    """A ``ws`` server in a thread; ``next()`` is the next thing a client did, ``say()`` sends to it."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.ready = threading.Event()
        self.port = 0
        self.clients: list[WebSocket] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Future[None] | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self.main(),), daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "the recording server did not start"

    async def main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = self.loop.create_future()
        server = http.Server(address="127.0.0.1:0")
        # No keepalive pings: every ping and pong recorded is one the client sent.
        wss = WebSocketServer(server=server, path="/", ping_interval=0)

        def on_connection(sock: WebSocket, request: Any) -> None:
            self.clients.append(sock)
            self.events.put(("connection", request.url))
            sock.on("message", lambda evt: self.events.put(("message", evt.data)))
            sock.on("ping", lambda data: self.events.put(("ping", data)))
            sock.on("pong", lambda data: self.events.put(("pong", data)))
            sock.on("close", lambda code, reason: self.events.put(("close", code, reason)))

        wss.on("connection", on_connection)
        await server.serve_async()
        self.port = int(str(server.address).rpartition(":")[2])
        self.ready.set()
        await self.stopping
        wss.close()
        await asyncio.wait_for(server.close_async(), 10)

    def next(self) -> tuple[Any, ...]:
        try:
            return self.events.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("the server saw nothing from the client in time") from None

    def nothing_more(self, seconds: float = 0.3) -> None:
        try:
            event = self.events.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected: {event!r}")

    def say(self, text: str) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.clients[-1].send, text)

    def close_client(self, code: int, reason: str = "") -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.clients[-1].close, code, reason)

    def stop(self) -> None:
        assert self.loop is not None and self.stopping is not None
        self.loop.call_soon_threadsafe(lambda: self.stopping.done() or self.stopping.set_result(None))  # type: ignore[union-attr]
        self.thread.join(15)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.stop()


def connected(recorder: Recorder, *args: str, **env: str) -> pexpect.spawn:
    """``ws -c 127.0.0.1:PORT/`` (wscat's spelling, no scheme) in a pty, once the server has it."""
    child = spawn("-c", f"127.0.0.1:{recorder.port}/", *args, **env)
    child.expect("Connected")
    assert recorder.next() == ("connection", "/")
    return child


def typed(child: pexpect.spawn, keys: str, shown: str) -> None:
    """Type ``keys`` (no Enter) and wait until the editor draws ``shown`` as the line."""
    child.send(keys)
    child.expect(re.escape("> " + shown))


# -- the terminal: line editing -------------------------------------------------------


def test_a_message_arriving_mid_line_keeps_the_half_typed_line(recorder: Recorder) -> None:
    child = connected(recorder, "--no-color")
    typed(child, "hal", "hal")
    recorder.say("from the server")
    child.expect(re.escape("< from the server"))
    # The prompt and the half line are drawn again below the message, cursor after them.
    child.expect(re.escape("> hal\x1b[K\r\x1b[5C"))
    child.send("f a line\r")
    assert recorder.next() == ("message", "half a line")  # one message, nothing sent before it
    child.expect(re.escape("> half a line\x1b[K\r\x1b[13C\r\n"))  # the sent line stays on screen
    typed(child, "again", "again")
    recorder.say("\x1b[2J\x1b]0;title\x07over\rwrite")  # a peer's control characters are shown, not obeyed
    child.expect(re.escape("< ^[[2J^[]0;title^Gover^Mwrite\r\n"))
    child.expect(re.escape("> again\x1b[K\r\x1b[7C"))
    child.send("\x15")
    child.sendeof()
    assert finish(child) == 0
    assert recorder.next() == ("close", 1000, "")


def test_arrow_keys_edit_and_history_recalls(recorder: Recorder) -> None:
    child = connected(recorder)
    child.send("helo" + LEFT + "l\r")
    assert recorder.next() == ("message", "hello")
    child.expect(re.escape("> hello\x1b[K\r\x1b[7C\r\n"))  # shown as sent, then a new line
    child.send("world" + HOME + "hello " + END + "!\r")
    assert recorder.next() == ("message", "hello world!")
    child.send(UP + "\r")  # the last line again
    assert recorder.next() == ("message", "hello world!")
    child.send(UP + UP + "\r")  # duplicates are one entry: two up is "hello"
    assert recorder.next() == ("message", "hello")
    typed(child, "draft", "draft")
    child.send(UP + UP)
    child.expect(re.escape("> hello world!\x1b[K"))
    typed(child, DOWN + DOWN, "draft")  # back down to the line being typed
    child.send("\x17" + "kept\r")  # Ctrl-W: the word before the cursor
    assert recorder.next() == ("message", "kept")
    child.send("abc\x1bOD\x1b[1;5D\x08x\x15gone\x01\x0b" + "ctrl\x02\x02\x04\r")  # SS3 left, Ctrl-left, ...
    assert recorder.next() == ("message", "ctl")
    child.send("\x1b[15~\x1b[3~\x1bx\r")  # F5, Delete at the end, Alt-x: no text, no message
    child.send("end\r")
    assert recorder.next() == ("message", "end")
    child.sendcontrol("c")
    assert finish(child) == 0
    assert recorder.next() == ("close", 1000, "")


def test_history_file_across_sessions_and_reverse_search(recorder: Recorder, tmp_path: Path) -> None:
    saved = tmp_path / ".ws_history"
    first = connected(recorder, "--history", HOME=str(tmp_path))  # the default file, in the home directory
    for line in ("alpha one", "beta two", "beta two", "   ", "gamma"):
        first.send(line + "\r")
    sent = ("alpha one", "beta two", "beta two", "   ", "gamma")  # spaces are a message, not a history entry
    assert [recorder.next() for _ in range(5)] == [("message", m) for m in sent]
    first.sendeof()
    assert finish(first) == 0 and recorder.next()[0] == "close"
    assert saved.read_text() == "alpha one\nbeta two\ngamma\n"  # no blank lines, no repeats
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600  # messages may hold secrets

    second = connected(recorder, WS_HISTORY=str(saved))  # the environment variable turns it on
    second.send(UP + UP + "\r")
    assert recorder.next() == ("message", "beta two")  # the previous session's lines
    second.send("\x12" + "alp")  # Ctrl-R, then part of the line
    second.expect(re.escape("(reverse-i-search)`alp': alpha one"))
    second.send("\r")
    assert recorder.next() == ("message", "alpha one")
    second.expect(re.escape("\r> alpha one\x1b[K"))  # sent from the search, shown as a line typed
    second.send("\x12" + "zzz")
    second.expect(re.escape("(failed reverse-i-search)`zzz'"))
    second.send("\x07" + "typed\r")  # Ctrl-G: back to the (empty) line
    assert recorder.next() == ("message", "typed")
    second.sendeof()
    assert finish(second) == 0 and recorder.next()[0] == "close"
    assert saved.read_text().splitlines() == ["alpha one", "beta two", "gamma", "beta two", "alpha one", "typed"]

    third = connected(recorder, "--no-history", WS_HISTORY=str(saved))
    third.send(UP + "\r" + "only this\r")
    assert recorder.next() == ("message", "only this")  # no history to go up to
    third.sendeof()
    assert finish(third) == 0
    assert saved.read_text().splitlines()[-1] == "typed"


def test_an_unusable_history_file_is_reported_once(recorder: Recorder, tmp_path: Path) -> None:
    child = spawn("-c", f"127.0.0.1:{recorder.port}/", "--no-color", WS_HISTORY=str(tmp_path))  # a directory
    child.expect(re.escape(f"error: history file {tmp_path}: Is a directory; history kept for this session only"))
    child.expect("Connected")
    assert recorder.next() == ("connection", "/")
    child.send("one\r" + "two\r" + UP + UP + "\r")
    assert [recorder.next() for _ in range(3)] == [("message", "one"), ("message", "two"), ("message", "one")]
    child.sendeof()
    assert finish(child) == 0
    assert "Is a directory" not in (child.before or "")


def test_the_terminal_is_given_back_as_it_was(recorder: Recorder) -> None:
    command = f"{sys.executable} -m ws -c 127.0.0.1:{recorder.port}/; stty -a"
    child = pexpect.spawn("/bin/sh", ["-c", command], cwd=str(ROOT), env=cli_env(), timeout=TIMEOUT, encoding="utf-8")
    child.expect("Connected")
    child.sendeof()
    child.expect(pexpect.EOF)
    settings = child.before or ""
    assert re.search(r"(?<!-)icanon", settings) and re.search(r"(?<![-\w])echo\b", settings), settings
    assert re.search(r"(?<!-)isig", settings) and re.search(r"(?<!-)icrnl", settings), settings


# -- slash commands -------------------------------------------------------------------


def test_slash_commands_reach_the_server_as_control_frames(recorder: Recorder) -> None:
    child = connected(recorder, "--no-color")
    child.send("/ping hey there\r")
    assert recorder.next() == ("ping", b"hey there")
    child.expect(r"< pong hey there \(\d+\.\d ms\)")  # the answer, with its round trip
    child.send("/pong\r")
    assert recorder.next() == ("pong", b"")
    child.send("/pong unsolicited\r")
    assert recorder.next() == ("pong", b"unsolicited")
    child.send("//ping is text\r")  # '//' sends the line without its first '/'
    assert recorder.next() == ("message", "/ping is text")
    child.send("/clsoe\r")  # a typo is refused, not sent
    child.expect(re.escape("error: unknown command /clsoe"))
    child.send("/close 99\r")
    child.expect(re.escape("error: invalid close code: 99 (1000, or 3000-4999)"))
    child.send("/close soon\r")
    child.expect(re.escape("error: usage: /close [code [reason]]"))
    child.send("/ping " + "x" * 126 + "\r")
    child.expect("error: .*125")
    child.send("/help\r")
    child.expect(re.escape("/ping [data], /pong [data], /close [code [reason]]"))
    recorder.nothing_more()
    child.send("/close 4000 bye now\r")
    assert recorder.next() == ("close", 4000, "bye now")
    child.expect(re.escape('Disconnected (code: 4000, reason: "bye now")'))
    assert finish(child) == 0


def test_no_slash_sends_every_line_as_typed(recorder: Recorder) -> None:
    child = connected(recorder, "--no-slash")
    child.send("/ping x\r")
    assert recorder.next() == ("message", "/ping x")
    child.send("/close\r")
    assert recorder.next() == ("message", "/close")
    child.sendeof()
    assert finish(child) == 0


@pytest.mark.parametrize("extra, expected", [([], ("message", "/ping a")), (["--slash"], ("ping", b"a"))])
def test_piped_lines_are_messages_unless_slash_is_asked(recorder: Recorder, extra: list[str], expected: tuple[Any, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ws", "-c", f"127.0.0.1:{recorder.port}", *extra],
        input="/ping a\n", cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert recorder.next() == ("connection", "/")
    assert recorder.next() == expected
    assert recorder.next() == ("close", 1000, "")


def test_wait_minus_one_holds_open_until_the_server_closes(recorder: Recorder) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "ws", "-c", f"127.0.0.1:{recorder.port}", "-x", "hold", "-w", "-1"],
        cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert recorder.next() == ("connection", "/")
        assert recorder.next() == ("message", "hold")
        recorder.nothing_more(2.5)  # past -x's usual 2 s
        assert child.poll() is None
        recorder.say("late reply")
        recorder.close_client(1000, "done")
        out, err = child.communicate(timeout=TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    assert child.returncode == 0, err
    assert out.splitlines() == ["< late reply", 'Disconnected (code: 1000, reason: "done")']


def test_a_pipe_gets_control_characters_as_sent() -> None:
    server = ServeProcess()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ws", "-c", f"127.0.0.1:{server.port}", "-x", "a\x1b[1mb\x07", "-w", "1"],
            cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "< a\x1b[1mb\x07\n"
    assert visible_controls("a\x1b[1mb\x07\tc\nd\x7f\x9b\x00") == "a^[[1mb^G\tc\nd^?\\x9b^@"


def test_execute_with_the_wscat_spelling(recorder: Recorder) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ws", "-x", "ping?", "-w", "0.5", "-c", f"localhost:{recorder.port}"],
        cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert recorder.next() == ("connection", "/")
    assert recorder.next() == ("message", "ping?")


# -- ws -l: the listener ------------------------------------------------------------------


def test_listen_and_connect_talk_both_ways() -> None:
    server = spawn("-l", "0", "-P", NO_COLOR="1")
    server.expect(r"Listening on ws://127\.0\.0\.1:(\d+) \(press CTRL\+C to quit\)")
    port = server.match.group(1)
    server.send("nobody\r")
    server.expect(re.escape("error: no client is connected: nothing was sent"))
    alice = spawn("-c", f"127.0.0.1:{port}/any/path", NO_COLOR="1")
    alice.expect("Connected")
    server.expect(r"Client #1 connected from 127\.0\.0\.1:\d+ \(/any/path\)")
    alice.send("hi from alice\r")
    server.expect(re.escape("< hi from alice"))  # one client: wscat's plain '< '
    typed(server, "half", "half")
    alice.send("/ping pp\r")
    server.expect(re.escape("< ping pp"))
    server.expect(re.escape("> half"))  # the listener's own half line survived
    server.send(" typed\r")
    alice.expect(re.escape("< half typed"))
    bob = spawn("connect", f"ws://127.0.0.1:{port}", NO_COLOR="1")
    bob.expect("Connected")
    server.expect(r"Client #2 connected")
    bob.send("from bob\r")
    server.expect(re.escape("#2 < from bob"))  # two clients: numbered
    server.send("to both\r")
    alice.expect(re.escape("< to both"))
    bob.expect(re.escape("< to both"))
    server.send("/close 1000 enough\r")
    for client in (alice, bob):
        client.expect(re.escape('Disconnected (code: 1000, reason: "enough")'))
        assert finish(client) == 0
    server.expect(re.escape('disconnected (code: 1000, reason: "enough")'))
    server.expect(re.escape('disconnected (code: 1000, reason: "enough")'))
    carol = spawn("-c", f"127.0.0.1:{port}", NO_COLOR="1")
    carol.expect("Connected")
    server.expect(r"Client #3 connected")  # a number is never given twice
    server.sendeof()  # the listener goes away: its clients get 1001
    assert finish(server) == 0
    carol.expect(re.escape('Disconnected (code: 1001, reason: "")'))
    assert finish(carol) == 0


def test_listen_in_use_port_fails_with_one_line() -> None:
    server = spawn("listen", "0", NO_COLOR="1")
    server.expect(r"Listening on ws://127\.0\.0\.1:(\d+)")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ws", "-l", server.match.group(1)],
            cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 1
        assert re.fullmatch(r"error: .*\n", result.stderr), result.stderr
    finally:
        server.sendcontrol("c")
        assert finish(server) == 0


# -- bad values: one line, exit 2 -------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["serve", "--port", "99999"], "ws serve: error: argument -p/--port: port 99999 is out of range 0-65535"),
        (["serve", "-p", "-1"], "ws serve: error: argument -p/--port: port -1 is out of range 0-65535"),
        (["serve", "--port", "80a"], "ws serve: error: argument -p/--port: port '80a' is not a number"),
        (["serve", "--host", "not a host"], "ws serve: error: argument --host: 'not a host' is not a host name or an IP address"),
        (["serve", "--host", "http://x"], "ws serve: error: argument --host: 'http://x' is a URL"),
        (["serve", "--host", "127.0.0.1:80"], "ws serve: error: argument --host: '127.0.0.1:80' includes a port"),
        (["serve", "--workers", "0"], "ws serve: error: argument --workers: 0 is less than 1"),
        (["serve", "--workers", "many"], "ws serve: error: argument --workers: 'many' is not a whole number"),
        (["serve", "--port", "99999", "--workers", "2"], "ws serve: error: argument -p/--port: port 99999"),
        (["serve", "--tls-cert", "x.pem"], "ws serve: error: --tls-cert and --tls-key go together"),
        (["serve", "--path", "/ws x"], "ws serve: error: argument --path: '/ws x' is not a URL path"),
        (["serve", "--subprotocol", "a b"], "ws serve: error: argument --subprotocol: 'a b' is not a subprotocol name"),
        (["listen", "0", "-s", "chat,v2"], "ws listen: error: argument -s/--subprotocol: 'chat,v2' is not a subprotocol"),
        (["-l", "70000"], "ws listen: error: argument -l/--listen: port 70000 is out of range 0-65535"),
        (["listen", "--host", "a_b c"], "ws listen: error: argument --host: 'a_b c' is not a host name"),
        (["listen"], "ws listen: error: which port?"),
        (["-c", "localhost:99999"], "ws connect: error: invalid URL 'localhost:99999': the port is out of range 0-65535"),
        (["connect", "ws://h:port/"], "ws connect: error: invalid URL 'ws://h:port/':"),
        (["connect", "ws://h/", "--timeout", "0"], "ws connect: error: argument --timeout: '0' must be more than 0"),
        (["connect", "ws://h/", "--timeout", "inf"], "ws connect: error: argument --timeout: 'inf' is not a finite"),
        (["connect", "ws://h/", "-w", "-2"], "ws connect: error: argument -w/--wait: '-2' is negative (-1 waits"),
        (["connect", "ws://h/", "-c", "ws://g/"], "ws connect: error: give the URL once"),
        (["-c", "h", "-l", "1"], "ws: error: use either -c/--connect or -l/--listen"),
        ([], "ws: error: a command is needed"),
        (["--nope"], "ws: error: "),
    ],
)
def test_bad_values_exit_2_with_one_line(argv: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ws", *argv], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, (argv, result.stderr)
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""


# -- the pieces, without a terminal -------------------------------------------------------


def test_wscat_argv_and_connect_url() -> None:
    assert wscat_argv(["-c", "h:1"]) == ["connect", "-c", "h:1"]
    assert wscat_argv(["-H", "A: b", "--connect=h:1"]) == ["connect", "-H", "A: b", "--connect=h:1"]
    assert wscat_argv(["-cws://h/"]) == ["connect", "-cws://h/"]
    assert wscat_argv(["-l", "8080", "-P"]) == ["listen", "-l", "8080", "-P"]
    assert wscat_argv(["connect", "-x", "-c", "ws://h/"]) == ["connect", "-x", "-c", "ws://h/"]  # a command word: as written
    assert wscat_argv(["serve", "-l"]) == ["serve", "-l"]
    with pytest.raises(UsageError):
        wscat_argv(["--listen=1", "-c", "h"])
    assert connect_url("localhost:8080/chat") == "ws://localhost:8080/chat"
    assert connect_url("echo.example") == "ws://echo.example"
    assert connect_url("//h:1/x") == "ws://h:1/x"
    assert connect_url("wss://h/") == "wss://h/"
    assert connect_url("https://h/") == "https://h/"  # the library maps http(s) to ws(s)
    assert connect_url("[::1]:9000") == "ws://[::1]:9000"
    with pytest.raises(UsageError, match="out of range"):
        connect_url("h:65536")


def test_parse_line() -> None:
    assert parse_line("/ping x", slash=False) == ("send", "/ping x")
    assert parse_line("hello", slash=True) == ("send", "hello")
    assert parse_line("/ping", slash=True) == ("ping", "")
    assert parse_line("/ping  two words ", slash=True) == ("ping", "two words ")
    assert parse_line("/pong data", slash=True) == ("pong", "data")
    assert parse_line("/close", slash=True) == ("close", (1000, ""))
    assert parse_line("/close 4000", slash=True) == ("close", (4000, ""))
    assert parse_line("/close 4000 going  away", slash=True) == ("close", (4000, "going  away"))
    assert parse_line("/close 4000, why", slash=True) == ("close", (4000, "why"))  # wscat's '[code [, reason]]'
    assert parse_line("/close why", slash=True)[0] == "error"
    assert parse_line("//close", slash=True) == ("send", "/close")
    assert parse_line("/help", slash=True) == ("help", "")
    assert parse_line("/api/v1", slash=True)[0] == "error"


def keys(*chunks: bytes) -> list[Key]:
    decoder = KeyDecoder()
    return [key for chunk in chunks for key in decoder.feed(chunk)]


def test_key_decoder() -> None:
    assert keys(b"ab\x1b[Dc\r") == [Key("insert", "ab"), Key("left"), Key("insert", "c"), Key("enter")]
    assert keys(b"\x1b", b"[", b"A") == [Key("up")]  # a sequence cut by reads
    assert keys(b"\x1bOB\x1b[1~\x1b[4~\x1b[3~") == [Key("down"), Key("home"), Key("end"), Key("delete")]
    assert keys(b"\x1b[1;5C\x1b[1;3D\x1bb\x1bf") == [Key("word-right"), Key("word-left"), Key("word-left"), Key("word-right")]
    assert keys(b"\x1b[15~\x1b[200~x\x1b[201~\x1b[5;2Z") == [Key("insert", "x")]  # unbound: nothing, never text
    assert keys(b"\x1b\r") == [Key("enter")]  # Escape, then Enter: still Enter
    assert keys(b"\xc3", b"\xa9\xe2\x82", b"\xac") == [Key("insert", "é"), Key("insert", "€")]
    assert keys(b"a\r\nb\n") == [Key("insert", "a"), Key("enter"), Key("insert", "b"), Key("enter")]
    assert keys(b"\t\x00\x1f\xc2\x9b") == [Key("insert", "\t")]  # unbound controls (C0, C1): nothing
    assert keys(b"\x03\x04\x7f\x08\x0b\x15\x17\x19\x0c\x12\x07") == [
        Key(n)
        for n in (
            "interrupt", "eof", "backspace", "backspace", "kill-end", "kill-start", "kill-word", "yank", "clear-screen",
            "search", "cancel",
        )
    ]


def edit(buffer: LineBuffer, *names: str, text: str = "") -> LineBuffer:
    for name in names:
        buffer.apply(Key(name, text) if name == "insert" else Key(name))
    return buffer


def test_line_buffer_editing() -> None:
    b = edit(LineBuffer(), "insert", text="hello world")
    assert (b.text, b.cursor) == ("hello world", 11)
    edit(b, "word-left")
    assert b.cursor == 6
    edit(b, "kill-word-right")
    assert b.text == "hello "
    edit(b, "yank", "home", "delete")
    assert (b.text, b.cursor) == ("ello world", 0)
    edit(b, "end", "backspace", "left", "kill-end")
    assert b.text == "ello wor"
    edit(b, "home", "kill-end", "yank", "yank")
    assert b.text == "ello worello wor"
    edit(b, "kill-start")
    assert (b.text, b.cursor) == ("", 0)
    assert b.apply(Key("eof")) == ("eof", "")  # Ctrl-D on an empty line: end of input
    edit(b, "insert", text="ab")
    edit(b, "left")
    assert b.apply(Key("eof")) is None and b.text == "a"  # ... else it deletes
    edit(b, "insert", text="x y  z")
    edit(b, "kill-word")
    assert b.text == "ax y  "
    assert b.apply(Key("interrupt")) == ("interrupt", "")


def test_line_buffer_history() -> None:
    b = LineBuffer(history_size=3)
    for line in ("one", "two", "two", "  ", "three", "four"):
        edit(b, "insert", text=line)
        assert b.apply(Key("enter")) == ("line", line)
    assert b.history == ["two", "three", "four"]  # no repeats, no blank lines, the newest 3
    edit(b, "insert", text="draft")
    edit(b, "up")
    assert b.text == "four"
    edit(b, "up", "up", "up")  # stops at the oldest
    assert (b.text, b.cursor) == ("two", 3)
    edit(b, "down", "down", "down")
    assert b.text == "draft"  # the line being typed comes back
    edit(b, "up")
    edit(b, "insert", text="!")
    assert b.apply(Key("enter")) == ("line", "four!")
    assert b.history[-1] == "four!" and b.text == ""


def test_reverse_search() -> None:
    b = LineBuffer()
    b.load_history(["ping one", "", "send two", "send two", "ping three"])
    assert b.history == ["ping one", "send two", "ping three"]
    edit(b, "insert", text="draft")
    edit(b, "search")
    assert b.prompt == "(reverse-i-search)`': " and b.text == "draft"
    edit(b, "insert", text="pi")
    assert (b.text, b.prompt) == ("ping three", "(reverse-i-search)`pi': ")
    edit(b, "search")  # the next older match
    assert b.text == "ping one"
    edit(b, "search")  # none older: the last match stays, marked failed
    assert (b.text, b.prompt) == ("ping one", "(failed reverse-i-search)`pi': ")
    edit(b, "backspace", "backspace", "insert", text="two")
    assert b.text == "send two"
    edit(b, "cancel")  # Ctrl-G: the line typed before
    assert (b.text, b.prompt) == ("draft", None)
    edit(b, "search", "search")  # Ctrl-R Ctrl-R: the last query again
    assert b.text == "send two"
    edit(b, "left")  # another key leaves the search with the match, and does its job
    assert (b.text, b.cursor, b.prompt) == ("send two", 7, None)
    edit(b, "search", "insert", text="one")
    assert b.apply(Key("enter")) == ("line", "ping one")  # Enter sends the match
    assert b.history[-1] == "ping one"


def test_visible_window_scrolls_a_long_line() -> None:
    assert visible_window("short", 5, 0, 10) == (0, "short", 5)
    text = "abcdefghijklmnopqrstuvwxyz"
    first, shown, column = visible_window(text, 26, 0, 10)
    assert (first, shown, column) == (16, "qrstuvwxyz", 10)
    assert visible_window(text, 20, first, 10) == (16, "qrstuvwxyz", 4)  # in view: no jump
    assert visible_window(text, 3, first, 10) == (3, "defghijklm", 0)
    assert visible_window("日本語です", 5, 0, 6) == (2, "語です", 6)  # wide characters take two columns
