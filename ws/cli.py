"""``python -m ws`` / ``ws``: a wscat-like client and listener, and a small echo/broadcast server.

    ws connect ws://127.0.0.1:8080/ws      # type lines, see messages (wscat: ws -c 127.0.0.1:8080/ws)
    ws connect URL -x '{"op":"hi"}' -w 1   # send, print replies for 1 s, exit
    ws listen 8080                         # wait for clients, type lines to them (wscat: ws -l 8080)
    ws serve --port 8080 --path /ws --broadcast --static ./public
    ws serve --port 8080 --workers 4       # 4 processes on one port (SO_REUSEPORT)
    ws serve --allowed-origin https://app.example.com   # pages of that site may connect (default: its own)
    ws serve --port 8080 --metrics /metrics   # Prometheus metrics (pip install 'ws-js[metrics]')

Each command runs on its own asyncio loop (``asyncio.run``; uvloop's when
installed, see ``ws._runtime.loop.new_loop``), so Ctrl-C is
an ordinary loop signal handler and the exit status is the function's
return value: 0 for a normal end, 1 for a failure (with a one-line reason
on stderr), 2 for bad arguments (one line on stderr, never a traceback).

On a terminal, ``connect`` and ``listen`` edit the line being typed
themselves (``LineEditor``): keys are read on the event loop, so a message
that arrives while a line is half typed is printed above it and the line is
drawn again, as wscat (Node's readline) does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ipaddress
import json
import math
import os
import re
import signal
import ssl
import sys
import threading
import time
from typing import Any, Callable, NoReturn, Sequence, TextIO
from urllib.parse import urlsplit

from ._version import DISTRIBUTION, __version__
from ._runtime import loop as _loop
from ._runtime.net import check_port, format_host_port
from .events import MessageEvent
from .terminal import HistoryFile, LineEditor
from .exceptions import ConnectionClosed, WebSocketError
from .http import Server as HttpServer
from .http.parsing import parser_name
from .server import WebSocketServer
from .protocol.origins import AllowedOrigins, OriginEntry, page_origins
from .connection.websocket import WebSocket

__all__ = ["main", "build_parser", "wscat_argv", "connect_url", "parse_line"]

#: Closing codes that end a session normally (anything else exits with 1).
NORMAL_CLOSE_CODES = (1000, 1001, 1005)

COMMANDS = ("connect", "listen", "serve")


class UsageError(Exception):
    """A bad command-line value found after argparse (exit status 2)."""


class Style:
    """ANSI colours, only when writing to a terminal (and ``NO_COLOR`` is unset)."""

    CODES = {"in": "32", "out": "36", "info": "33", "error": "31", "dim": "2"}

    def __init__(self, stream: TextIO, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = stream.isatty() and not os.environ.get("NO_COLOR")
        self.enabled = enabled

    def __call__(self, kind: str, text: str) -> str:
        if not self.enabled:
            return text
        return f"\x1b[{self.CODES[kind]}m{text}\x1b[0m"


# -- arguments -------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block), still exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _port(text: str) -> int:
    """A port option: the library's one check (``check_port``), as an argparse error (exit 2)."""
    try:
        return check_port(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_HOST_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*\.?")


def _host(text: str) -> str:
    """An IP address or a host name to listen on; refused here so that a typo is not a DNS error later."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if "://" in host:
        raise argparse.ArgumentTypeError(f"{text!r} is a URL, not a host (e.g. 127.0.0.1, 0.0.0.0, ::, localhost)")
    if host.count(":") == 1 and host.rpartition(":")[2].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} includes a port: give the host alone and the port with --port")
    if len(host) <= 253 and _HOSTNAME.fullmatch(host):
        return host
    raise argparse.ArgumentTypeError(f"{text!r} is not a host name or an IP address")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds")
    return value


def _wait(text: str) -> float:
    """Seconds, or -1 for no limit (wscat's ``-w -1``)."""
    value = _number(text)
    if value == -1:
        return math.inf
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative (-1 waits until the server closes)")
    return value


def _positive_seconds(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*[-+]?\d+\s*", text):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    parse.__name__ = "count"
    return parse


def _url_path(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} does not start with '/'")
    if re.search(r"[\s\x00-\x1f\x7f?#]", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL path (no spaces, control characters, '?' or '#')")
    return text


def _token(text: str) -> str:
    """A subprotocol name: an HTTP token (RFC 6455 section 4.1), as a client would offer it."""
    if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a subprotocol name (letters, digits, !#$%&'*+-.^_`|~)")
    return text


def _origin(text: str) -> str:
    """An ``--allowed-origin``: one ``allowed_origins`` entry, checked by the library's own rules."""
    try:
        AllowedOrigins([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("allowed_origins: ")) from None
    return text


def _interactive_options(parser: argparse.ArgumentParser) -> None:
    """The options ``connect`` and ``listen`` share: how lines and frames are shown."""
    parser.add_argument(
        "-P", "--show-ping-pong", "--ping", dest="ping", action="store_true",
        help="show the ping and pong frames received",
    )
    parser.add_argument(
        "--slash", action=argparse.BooleanOptionalAction, default=None,
        help="/ping [data], /pong [data], /close [code [reason]] (default: on when typing at a terminal)",
    )
    parser.add_argument("--json", action="store_true", help="pretty-print JSON messages")
    parser.add_argument("--no-color", action="store_true", help="never use colours")
    parser.add_argument(
        "--history", action="store_true",
        help=f"keep the lines typed at a terminal in $WS_HISTORY, else {HistoryFile.DEFAULT} (on when $WS_HISTORY is set)",
    )
    parser.add_argument("--no-history", action="store_true", help="no history file, even with $WS_HISTORY")


def accelerators(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """What runs underneath, ``loop: uvloop, http: httptools`` (the ``speed`` extra) or ``loop: asyncio, http: h11``.

    The loop is ``loop``'s kind, or what ws would choose; the parser, what a server made now would
    use.  For ``--version`` and ``ws serve``'s start line (``WS_LOOP``, ``WS_HTTP``: docs/api.md).
    """
    return f"loop: {_loop.loop_name(loop)}, http: {parser_name()}"


class _Version(argparse.Action):
    """``--version``: one line, never wrapped (argparse's own wraps a long path at the terminal's width)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        where = os.path.dirname(os.path.abspath(__file__))
        print(f"{DISTRIBUTION} {__version__} (the ws package in {where}; {accelerators()})", flush=True)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ws",
        description="WebSocket client and server for the command line.",
        epilog="wscat's shorthands work too: 'ws -c URL [options]' is 'ws connect URL [options]', "
        "'ws -l PORT [options]' is 'ws listen PORT [options]'.",
    )
    parser.add_argument("--version", action=_Version, help="show the distribution, its version, where ws was imported from and its event loop")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{connect,listen,serve}")

    conn = sub.add_parser("connect", help="connect to a WebSocket server (wscat -c)")
    conn.add_argument("url", nargs="?", help="ws://, wss://, http:// or https:// URL; without a scheme, ws://")
    conn.add_argument("-c", "--connect", dest="connect_url", metavar="URL", help="the URL, as wscat takes it")
    conn.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="extra request header (repeatable)")
    conn.add_argument("--auth", metavar="USER:PASSWORD", help="HTTP basic authentication header")
    conn.add_argument("-s", "--subprotocol", action="append", default=[], metavar="PROTO", help="offer a subprotocol (repeatable)")
    conn.add_argument("-o", "--origin", help="Origin header")
    conn.add_argument("--ca", metavar="FILE", help="trust the CA certificates in FILE (PEM)")
    conn.add_argument("--cert", metavar="FILE", help="client certificate (PEM)")
    conn.add_argument("--key", metavar="FILE", help="the client certificate's key (PEM)")
    conn.add_argument("--passphrase", metavar="TEXT", help="the key's passphrase")
    conn.add_argument("-n", "--no-check", "--insecure", dest="insecure", action="store_true", help="do not verify the server's TLS certificate")
    conn.add_argument("--proxy", metavar="URL", help="HTTP CONNECT proxy (default: $HTTPS_PROXY / $HTTP_PROXY)")
    conn.add_argument("-L", "--location", action="store_true", help="follow redirects")
    conn.add_argument("--max-redirects", type=_count(0), default=10, metavar="N", help="with -L: at most N redirects (default 10)")
    conn.add_argument("-x", "--execute", action="append", default=[], metavar="MESSAGE", help="send MESSAGE, print replies, exit (repeatable)")
    conn.add_argument("-w", "--wait", type=_wait, metavar="SECONDS", help="with -x: how long to print replies (default 2); otherwise: close after SECONDS; -1: no limit")
    conn.add_argument("--timeout", type=_positive_seconds, default=10.0, metavar="SECONDS", help="opening handshake timeout (default 10)")
    _interactive_options(conn)

    lis = sub.add_parser("listen", help="wait for clients and talk to them (wscat -l)")
    lis.add_argument("port", nargs="?", type=_port, help="port (0 for any free port)")
    lis.add_argument("-l", "--listen", dest="listen_port", type=_port, metavar="PORT", help="the port, as wscat takes it")
    lis.add_argument("--host", type=_host, default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    lis.add_argument("-s", "--subprotocol", type=_token, action="append", default=[], metavar="PROTO", help="accept this subprotocol (repeatable, first match wins)")
    lis.add_argument("--tls-cert", metavar="FILE", help="TLS certificate chain (PEM); needs --tls-key")
    lis.add_argument("--tls-key", metavar="FILE", help="TLS private key (PEM)")
    _interactive_options(lis)

    srv = sub.add_parser("serve", help="run an echo or broadcast WebSocket server")
    mode = srv.add_mutually_exclusive_group()
    mode.add_argument("--echo", dest="mode", action="store_const", const="echo", help="send every message back to its sender (default)")
    mode.add_argument("--broadcast", dest="mode", action="store_const", const="broadcast", help="send every message to every client")
    srv.set_defaults(mode="echo")
    srv.add_argument("--host", type=_host, default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("-p", "--port", type=_port, default=8080, help="port (default 8080, 0 for any free port)")
    srv.add_argument("--path", type=_url_path, default="/", help="WebSocket path (default /)")
    srv.add_argument("--static", metavar="DIR", help="also serve the files of DIR over HTTP")
    srv.add_argument("--subprotocol", type=_token, action="append", default=[], metavar="PROTO", help="accept this subprotocol (repeatable, first match wins)")
    srv.add_argument("--tls-cert", metavar="FILE", help="TLS certificate chain (PEM); needs --tls-key")
    srv.add_argument("--tls-key", metavar="FILE", help="TLS private key (PEM)")
    srv.add_argument("--workers", type=_count(1), default=1, metavar="N", help="serve in N processes on one port (default 1); each has its own clients")
    srv.add_argument("--backplane", metavar="URL", help="share --broadcast with the other servers of this backplane (redis://host:port/db; default: $WS_BACKPLANE)")
    origins = srv.add_mutually_exclusive_group()
    origins.add_argument(
        "--allowed-origin", dest="allowed_origins", type=_origin, action="append", metavar="ORIGIN",
        help="a page that may connect, e.g. https://app.example.com or https://*.example.com (repeatable; "
        "replaces the default, this server's own http://HOST:PORT); clients that send no Origin always may",
    )
    origins.add_argument("--any-origin", action="store_true", help="no Origin check: a page of any site may connect")
    srv.add_argument("--metrics", type=_url_path, metavar="PATH", help="serve Prometheus metrics on GET PATH (every worker's with --workers; needs ws-js[metrics])")
    return parser


def _is_option(token: str, short: str, long: str) -> bool:
    return token == long or token.startswith(long + "=") or (token.startswith(short) and not token.startswith("--"))


def wscat_argv(argv: Sequence[str]) -> list[str]:
    """wscat's ``-c URL`` / ``-l PORT`` given without a command word become ``connect`` / ``listen``.

    Only when the first word is not a command, so ``ws connect -x -c URL``
    (sending ``-c``) means what it says.
    """
    args = list(argv)
    if not args or args[0] in COMMANDS or args[0] in ("-h", "--help", "--version"):
        return args
    head = args[: args.index("--")] if "--" in args else args
    connect = any(_is_option(token, "-c", "--connect") for token in head)
    listen = any(_is_option(token, "-l", "--listen") for token in head)
    if connect and listen:
        raise UsageError("use either -c/--connect or -l/--listen")
    if connect:
        return ["connect", *args]
    if listen:
        return ["listen", *args]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ws`` and the ``ws`` console script."""
    try:
        words = wscat_argv(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"ws: error: {exc}", file=sys.stderr)
        return 2
    if not words:
        print("ws: error: a command is needed: connect URL, listen PORT or serve (or wscat's -c URL, -l PORT);"
              " see 'ws --help'", file=sys.stderr)
        return 2
    args = build_parser().parse_args(words)
    command = {"connect": _connect, "listen": _listen, "serve": _serve}[args.command]
    try:
        return _loop.run(command(args))
    except UsageError as exc:
        print(f"ws {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before our signal handlers were installed
        return 130


def _history_path(args: argparse.Namespace) -> str | None:
    """The history file: ``$WS_HISTORY`` when set, else with ``--history`` the default; ``--no-history`` wins."""
    if args.no_history:
        return None
    return os.environ.get("WS_HISTORY") or (HistoryFile.DEFAULT if args.history else None)


# -- the terminal side of connect / listen ---------------------------------------------


class Console:
    """Where ``connect`` and ``listen`` print, and where typed lines come from.

    Three cases: stdin and stdout are a terminal (``interactive``: a prompt,
    line editing, information lines); only stdin is (lines read as the
    terminal gives them, output kept clean for a pipe); neither (lines read
    from a pipe or a file).
    """

    def __init__(self, style: Style, interactive: bool, history: str | None = None) -> None:
        self.style = style
        self.interactive = interactive
        self.on_terminal = sys.stdout.isatty()
        self.editor: LineEditor | None = None
        if interactive and os.name == "posix" and os.environ.get("TERM") != "dumb":  # termios, add_reader on stdin
            saved = HistoryFile(history, self.error) if history else None
            self.editor = LineEditor(sys.stdin.fileno(), sys.stdout, saved)

    def prompt(self) -> None:
        if self.interactive and self.editor is None:
            sys.stdout.write("> ")
            sys.stdout.flush()

    def show(self, kind: str, prefix: str, text: str) -> None:
        if self.on_terminal:
            text = visible_controls(text)
        lines = text.split("\n")
        body = "\n".join([f"{prefix}{lines[0]}"] + [" " * len(prefix) + line for line in lines[1:]])
        if self.editor is not None and self.editor.active:
            self.editor.print_above(self.style(kind, body))
            return
        lead = "\r" if self.interactive and self.editor is None else ""
        sys.stdout.write(lead + self.style(kind, body) + "\n")
        sys.stdout.flush()
        self.prompt()

    def info(self, text: str) -> None:
        """A line about the session (connected, disconnected): on a terminal only, as wscat."""
        if self.interactive:
            self.show("info", "", text)

    def error(self, text: str) -> None:
        line = self.style("error", f"error: {text}")
        if self.editor is not None and self.editor.active:
            self.editor.print_above(line, sys.stderr)
            return
        if self.interactive:
            sys.stdout.write("\r")
            sys.stdout.flush()
        print(line, file=sys.stderr, flush=True)
        self.prompt()

    def read_lines(
        self,
        loop: asyncio.AbstractEventLoop,
        on_line: Callable[[str], None],
        on_eof: Callable[[], None],
        on_interrupt: Callable[[], None],
    ) -> None:
        """Typed lines to ``on_line``: from the line editor, else read in a daemon thread (pipes, files)."""
        if self.editor is not None:
            self.editor.start(loop, on_line, on_eof, on_interrupt)
            return

        def reader() -> None:
            try:
                for line in sys.stdin:
                    loop.call_soon_threadsafe(on_line, line.rstrip("\r\n"))
            except (OSError, ValueError):
                pass
            try:
                loop.call_soon_threadsafe(on_eof)
            except RuntimeError:  # the loop has finished already
                pass

        self.prompt()
        threading.Thread(target=reader, name="ws-cli-stdin", daemon=True).start()

    def close(self) -> None:
        if self.editor is not None:
            self.editor.stop()


_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible_controls(text: str) -> str:
    """Control characters of a message as ``^[`` (C0, DEL) or ``\\x9b`` (C1), for a terminal.

    A peer's text must not move the cursor, recolour or retitle the terminal,
    or wipe the line being typed; a pipe still gets the bytes as sent.
    """

    def shown(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"^{chr(code ^ 0x40)}" if code < 0x20 or code == 0x7F else f"\\x{code:02x}"

    return _CONTROLS.sub(shown, text)


def format_message(event: MessageEvent, pretty_json: bool = False) -> str:
    """How a received message is shown: text as is (or indented JSON), binary as hex."""
    data = event.data
    if isinstance(data, bytes):
        return f"<binary {len(data)} bytes> {data.hex(' ')}".rstrip()
    if pretty_json:
        try:
            return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return data


def _show_bytes(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.hex(" ")


SLASH_HELP = "/ping [data], /pong [data], /close [code [reason]], /help; '//text' sends '/text'"


def parse_line(line: str, slash: bool) -> tuple[str, Any]:
    """What a typed line asks for: ``('send', text)``, ``('ping'|'pong', data)``,
    ``('close', (code, reason))``, ``('help', '')`` or ``('error', why)``.

    Slash commands are wscat's ``--slash`` ones; with them on, a line that
    starts with ``//`` is sent without its first ``/``, and an unknown
    command is refused rather than sent (a typo of ``/close`` is not a message).
    """
    if not slash or not line.startswith("/"):
        return ("send", line)
    if line.startswith("//"):
        return ("send", line[1:])
    match = re.match(r"/(\S*)\s*(.*)", line, re.S)
    assert match is not None
    name, rest = match.group(1), match.group(2)
    if name in ("ping", "pong"):
        return (name, rest)
    if name == "close":
        parts = rest.split(None, 1)
        if parts and not parts[0].rstrip(",").isdigit():
            return ("error", "usage: /close [code [reason]], e.g. /close 4000 going away")
        code = int(parts[0].rstrip(",")) if parts else 1000
        reason = parts[1].lstrip(", ") if len(parts) > 1 else ""
        return ("close", (code, reason))
    if name in ("help", "?"):
        return ("help", "")
    return ("error", f"unknown command /{name} ({SLASH_HELP})")


class _Pings:
    """When each socket's ``/ping`` went out, to show its pong with the round trip."""

    def __init__(self) -> None:
        self.sent: dict[WebSocket, list[float]] = {}

    def ping(self, sock: WebSocket, data: str) -> None:
        sock.ping(data)
        self.sent.setdefault(sock, []).append(time.monotonic())

    def answered(self, sock: WebSocket) -> float | None:
        times = self.sent.get(sock)
        if not times:
            return None
        return time.monotonic() - times.pop(0)

    def forget(self, sock: WebSocket) -> None:
        self.sent.pop(sock, None)


def _run_command(console: Console, command: str, value: Any, targets: Sequence[WebSocket], pings: _Pings) -> bool:
    """A line or a slash command on ``targets`` (the connection, or every client of ``listen``); False: refused."""
    try:
        for sock in targets:
            if command == "send":
                sock.send(value)
            elif command == "ping":
                pings.ping(sock, value)
            elif command == "pong":
                sock.pong(value)
            elif command == "close":
                code, reason = value
                sock.close(code, reason)
    except ValueError as exc:  # a payload over 125 bytes, a code that is not a close code
        message = str(exc)
        if "close code" in message:
            message += " (1000, or 3000-4999)"
        console.error(message)
        return False
    return True


def _watch_control_frames(console: Console, sock: WebSocket, pings: _Pings, show_all: bool, prefix: Callable[[], str]) -> None:
    def on_ping(data: bytes) -> None:
        if show_all:
            console.show("info", prefix(), f"ping {_show_bytes(data)}".rstrip())

    def on_pong(data: bytes) -> None:
        elapsed = pings.answered(sock)
        if elapsed is not None:
            console.show("info", prefix(), f"pong {_show_bytes(data)}".rstrip() + f" ({elapsed * 1000:.1f} ms)")
        elif show_all:
            console.show("info", prefix(), f"pong {_show_bytes(data)}".rstrip())

    sock.on("ping", on_ping)
    sock.on("pong", on_pong)


# -- ws connect ------------------------------------------------------------------


def connect_url(text: str) -> str:
    """The URL to connect to.  wscat's rule: without ``scheme://`` it is ``ws://`` (``localhost:8080/chat``)."""
    url = text.strip()
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
        url = "ws://" + url.lstrip("/")
    try:
        urlsplit(url).port
    except ValueError as exc:
        detail = str(exc)
        if "out of range" in detail:
            detail = "the port is out of range 0-65535"
        raise UsageError(f"invalid URL {text!r}: {detail}") from None
    return url


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"handshake_timeout": args.timeout}
    headers = []
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"invalid header {item!r} (expected 'Name: value')")
        headers.append((name.strip(), value.strip()))
    if args.auth is not None:
        if ":" not in args.auth:
            raise UsageError(f"--auth {args.auth!r}: expected USER:PASSWORD")
        headers.append(("Authorization", "Basic " + base64.b64encode(args.auth.encode()).decode()))
    if headers:
        options["headers"] = headers
    if args.origin:
        options["origin"] = args.origin
    if args.proxy:
        options["proxy"] = args.proxy
    if args.location:
        options["follow_redirects"] = True
        options["max_redirects"] = args.max_redirects
    if args.key and not args.cert:
        raise UsageError("--key goes with --cert")
    if args.ca or args.insecure or args.cert:
        try:
            context = ssl.create_default_context(cafile=args.ca)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load --ca {args.ca}: {exc}") from None
        if args.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if args.cert:
            try:
                context.load_cert_chain(args.cert, args.key, args.passphrase)
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"cannot load --cert {args.cert}: {exc}") from None
        options["ssl"] = context
    return options


async def _connect(args: argparse.Namespace) -> int:
    if args.url and args.connect_url:
        raise UsageError("give the URL once (either 'ws connect URL' or 'ws -c URL')")
    if not (args.url or args.connect_url):
        raise UsageError("which URL? ws connect URL (or ws -c URL)")
    url = connect_url(args.url or args.connect_url)
    options = _client_options(args)
    style = Style(sys.stdout, False if args.no_color else None)
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not args.execute
    console = Console(style, interactive, _history_path(args))
    try:
        sock = WebSocket(url, args.subprotocol or None, **options)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        return await _session(args, sock, console)
    finally:
        console.close()


async def _session(args: argparse.Namespace, sock: WebSocket, console: Console) -> int:
    loop = asyncio.get_running_loop()
    style = console.style
    slash = args.slash if args.slash is not None else (sys.stdin.isatty() and not args.execute)
    finished: asyncio.Future[tuple[int, str]] = loop.create_future()
    by_us = False  # Ctrl-C, Ctrl-D, end of input, -w: the session ends quietly
    asked = False  # /close: the user wants to see how it ended

    def on_close(code: int, reason: str) -> None:
        if not finished.done():
            finished.set_result((code, reason))

    sock.on("close", on_close)
    # Listen before the handshake ends: a greeting may arrive with it.
    sock.on("message", lambda evt: console.show("in", "< ", format_message(evt, args.json)))
    try:
        await sock.wait_open_async(timeout=args.timeout + 5)
    except (WebSocketError, ConnectionClosed, TimeoutError, OSError) as exc:
        console.error(str(exc))
        return 1
    sock.on("error", lambda exc: console.error(str(exc)))
    pings = _Pings()
    _watch_control_frames(console, sock, pings, args.ping, lambda: "< ")

    def stop(code: int = 1000) -> None:
        nonlocal by_us
        by_us = True
        if sock.ready_state == WebSocket.OPEN:
            sock.close(code)
        elif sock.ready_state == WebSocket.CONNECTING:
            sock.terminate()

    def on_line(line: str) -> None:
        nonlocal asked
        if sock.ready_state != WebSocket.OPEN:
            return
        command, value = parse_line(line, slash)
        if command == "send" and not value:
            pass  # an empty line is not a message
        elif command == "help":
            console.show("info", "", SLASH_HELP)
        elif command == "error":
            console.error(value)
        elif _run_command(console, command, value, [sock], pings) and command == "close":
            asked = True
        console.prompt()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
            pass

    if args.execute:
        for message in args.execute:
            sock.send(message)
        wait = 2.0 if args.wait is None else args.wait
        if wait != math.inf:
            loop.call_later(wait, stop)
    else:
        # End of input closes at once, unless -w asked to keep listening.
        console.read_lines(loop, on_line, stop if args.wait is None else lambda: None, stop)
        if args.wait is not None and args.wait != math.inf:
            loop.call_later(args.wait, stop)
    # Once keys are read (a key typed on seeing this line is the editor's, not the terminal's).
    note = f"subprotocol: {sock.protocol}; " if sock.protocol else ""
    console.info(f"Connected ({note}press CTRL+C to quit)")

    code, reason = await finished
    console.close()
    if by_us and code in NORMAL_CLOSE_CODES and not asked:
        return 0
    if asked or code in NORMAL_CLOSE_CODES:
        print(style("info", f"Disconnected (code: {code}, reason: {json.dumps(reason)})"), flush=True)
        return 0
    console.error(f"connection closed with code {code}" + (f" ({reason})" if reason else ""))
    return 1


# -- ws listen -------------------------------------------------------------------


async def _listen(args: argparse.Namespace) -> int:
    if args.port is not None and args.listen_port is not None:
        raise UsageError("give the port once (either 'ws listen PORT' or 'ws -l PORT')")
    port = args.listen_port if args.port is None else args.port
    if port is None:
        raise UsageError("which port? ws listen PORT (or ws -l PORT)")
    context = _server_ssl(args)
    style = Style(sys.stdout, False if args.no_color else None)
    console = Console(style, sys.stdin.isatty() and sys.stdout.isatty(), _history_path(args))
    try:
        return await _listen_session(args, port, context, console)
    finally:
        console.close()


async def _listen_session(args: argparse.Namespace, port: int, context: ssl.SSLContext | None, console: Console) -> int:
    """wscat -l: clients connect on any path; typed lines go to every open client, theirs are printed."""
    loop = asyncio.get_running_loop()
    slash = args.slash if args.slash is not None else sys.stdin.isatty()
    server = HttpServer(address=format_host_port(args.host, port), ssl=context)
    wss = WebSocketServer(no_server=True, protocols=args.subprotocol or None)
    server.add_upgrade_handler(None, wss)  # every path, as wscat's listener
    numbers: dict[WebSocket, int] = {}  # the open clients, numbered in the order they came
    counter = iter(range(1, sys.maxsize))
    pings = _Pings()

    def note(text: str) -> None:
        # Information goes to the terminal; with stdout redirected, to stderr, so the file gets messages only.
        if console.interactive:
            console.info(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def prefix(sock: WebSocket) -> str:
        return f"#{numbers.get(sock, '?')} < " if len(numbers) > 1 else "< "

    def on_connection(sock: WebSocket, request: Any) -> None:
        number = next(counter)
        numbers[sock] = number
        peer = format_host_port(request.socket.remote_address or "?", request.socket.remote_port or 0)
        protocol = f", subprotocol {sock.protocol}" if sock.protocol else ""
        note(f"Client #{number} connected from {peer} ({request.url}{protocol})")
        sock.on("message", lambda evt: console.show("in", prefix(sock), format_message(evt, args.json)))
        sock.on("error", lambda exc: console.error(f"client #{number}: {exc}"))
        _watch_control_frames(console, sock, pings, args.ping, lambda: prefix(sock))

        def on_close(code: int, reason: str) -> None:
            numbers.pop(sock, None)
            pings.forget(sock)
            note(f"Client #{number} disconnected (code: {code}, reason: {json.dumps(reason)})")

        sock.on("close", on_close)

    wss.on("connection", on_connection)
    wss.on("error", lambda exc: console.error(str(exc)))
    try:
        await server.serve_async()
    except OSError as exc:
        console.error(str(exc.strerror or exc))
        return 1
    except (RuntimeError, ValueError, WebSocketError) as exc:
        console.error(str(exc))
        return 1

    stopped: asyncio.Future[None] = loop.create_future()

    def on_line(line: str) -> None:
        command, value = parse_line(line, slash)
        clients = [sock for sock in numbers if sock.ready_state == WebSocket.OPEN]
        if command == "send" and not value:
            pass
        elif command == "help":
            console.show("info", "", SLASH_HELP + " (to every client)")
        elif command == "error":
            console.error(value)
        elif not clients:
            console.error("no client is connected: nothing was sent")
        else:
            _run_command(console, command, value, clients, pings)
        console.prompt()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, _settle, stopped)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
            pass
    console.read_lines(loop, on_line, lambda: _settle(stopped), lambda: _settle(stopped))
    scheme = "wss" if context is not None else "ws"
    note(f"Listening on {scheme}://{server.address} (press CTRL+C to quit)")
    await stopped
    console.close()
    wss.close()
    try:
        await asyncio.wait_for(server.close_async(), 10)
    except asyncio.TimeoutError:
        pass
    return 0


# -- ws serve --------------------------------------------------------------------


def _server_ssl(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.tls_cert and not args.tls_key:
        return None
    if not (args.tls_cert and args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS certificate/key: {exc}") from None
    return context


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _log_line(text: str) -> None:
    # One write per line: under PYTHONUNBUFFERED, print() writes the text and its newline apart, and
    # the workers of ``ws serve --workers N`` share one stdout, so their lines could interleave.
    sys.stdout.write(f"{time.strftime('%H:%M:%S')} {text}\n")
    sys.stdout.flush()


def _serve_origins(args: argparse.Namespace, server: HttpServer) -> list[OriginEntry] | None:
    """``ws serve``'s ``allowed_origins``: its own pages' origins (or ``--allowed-origin``) and clients without Origin."""
    if args.any_origin:
        return None
    pages = args.allowed_origins or page_origins(args.host, server.port or args.port, secure=server.secure)
    return [*pages, None]


async def _serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    if args.static and not os.path.isdir(args.static):
        raise UsageError(f"--static {args.static}: not a directory")
    context = _server_ssl(args)
    try:
        server = HttpServer(address=format_host_port(args.host, args.port), ssl=context, backplane=args.backplane)
    except ImportError as exc:  # redis-py missing
        raise UsageError(f"--backplane: {exc}") from None
    except ValueError as exc:  # an unknown backplane URL (the address was checked by argparse)
        raise UsageError(f"--backplane: {exc}" if args.backplane or os.environ.get("WS_BACKPLANE") else str(exc)) from None
    # Browsers send cookies with a handshake from any page: only this server's own pages (and clients
    # that send no Origin) connect, set once the port is known; no page until then.
    wss = WebSocketServer(
        server=server, path=args.path, protocols=args.subprotocol or None,
        allowed_origins=None if args.any_origin else [None],
    )

    def allow_own_pages(address: str) -> None:  # runs before the first connection is accepted
        wss.allowed_origins = _serve_origins(args, server)

    server.on("listening", allow_own_pages)
    if args.static:
        server.static("/", args.static)
    if args.metrics:
        try:
            server.metrics(args.metrics)
        except ImportError as exc:  # prometheus_client missing
            raise UsageError(f"--metrics: {exc}") from None
    worker = server.worker
    tag = f"[worker {worker.index}/{worker.count}] " if worker is not None else ""

    def log_line(text: str) -> None:
        _log_line(tag + text)

    def on_connection(sock: WebSocket, request: Any) -> None:
        peer = f"{request.socket.remote_address}:{request.socket.remote_port}"
        started = time.monotonic()
        protocol = f" subprotocol={sock.protocol}" if sock.protocol else ""
        log_line(f"{peer} connected {request.url}{protocol} ({len(wss.clients or ())} open)")
        if args.mode == "broadcast":
            sock.on("message", lambda evt: wss.broadcast(evt.data))
        else:

            def echo(evt: MessageEvent) -> None:
                if sock.ready_state == WebSocket.OPEN:  # not after the peer's close in the same read
                    sock.send(evt.data)

            sock.on("message", echo)
        sock.on("error", lambda exc: log_line(f"{peer} error: {exc}"))

        def on_close(code: int, reason: str) -> None:
            shown = f" {json.dumps(reason)}" if reason else ""
            log_line(f"{peer} closed {code}{shown} after {time.monotonic() - started:.2f}s")

        sock.on("close", on_close)

    wss.on("connection", on_connection)
    wss.on("error", lambda exc: log_line(f"error: {exc}"))
    try:
        # With --workers N this process supervises the workers here and exits (SystemExit) when stopped.
        await server.serve_async(workers=args.workers)
    except OSError as exc:
        print(f"error: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 1
    except (RuntimeError, ValueError, WebSocketError) as exc:  # workers where they cannot be; the backplane could not start
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    scheme = "wss" if context is not None else "ws"
    extra = f", files of {args.static} at /" if args.static else ""
    if server.backplane is not None:
        extra += f", backplane node {server.backplane.node_id}"
    if args.metrics:
        extra += f", metrics at {args.metrics}"
    extra += f", {accelerators(loop)}"
    log_line(f"Listening on {scheme}://{server.address}{args.path} ({args.mode}{extra}); CTRL+C to stop")
    allowed = wss.allowed_origins
    if allowed is None:
        log_line("Pages of any site may connect (--any-origin)")
    else:
        pages = ", ".join(str(entry) for entry in allowed if entry is not None)
        log_line(f"Pages allowed to connect: {pages} (and clients that send no Origin); see --allowed-origin")

    stopped = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, _settle, stopped)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
            pass
    await stopped
    wss.close()
    try:
        await asyncio.wait_for(server.close_async(), 10)
    except asyncio.TimeoutError:
        pass
    log_line("Stopped")
    return 0
