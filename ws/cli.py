"""``python -m ws`` / ``ws``: a wscat-like client and a small echo/broadcast server.

    ws connect ws://127.0.0.1:8080/ws      # type lines, see messages
    ws connect URL -x '{"op":"hi"}' -w 1   # send, print replies for 1 s, exit
    ws serve --port 8080 --path /ws --broadcast --static ./public
    ws serve --port 8080 --workers 4       # 4 processes on one port (SO_REUSEPORT)

Both commands run on their own asyncio loop (``asyncio.run``), so Ctrl-C is
an ordinary loop signal handler and the exit status is the function's
return value: 0 for a normal end, 1 for a failure (with a one-line reason
on stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import threading
import time
from typing import Any, Callable, Sequence, TextIO

from . import __version__
from ._runtime.net import format_host_port
from .events import MessageEvent
from .exceptions import ConnectionClosed, WebSocketError
from .http import Server as HttpServer
from .server import WebSocketServer
from .connection.websocket import WebSocket

__all__ = ["main", "build_parser"]

#: Closing codes that end a session normally (anything else exits with 1).
NORMAL_CLOSE_CODES = (1000, 1001, 1005)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ws", description="WebSocket client and server for the command line.")
    parser.add_argument("--version", action="version", version=f"ws {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{connect,serve}")

    conn = sub.add_parser("connect", help="connect to a WebSocket server (like wscat -c)")
    conn.add_argument("url", help="ws://, wss://, http:// or https:// URL")
    conn.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="extra request header (repeatable)")
    conn.add_argument("-s", "--subprotocol", action="append", default=[], metavar="PROTO", help="offer a subprotocol (repeatable)")
    conn.add_argument("-o", "--origin", help="Origin header")
    conn.add_argument("--ca", metavar="FILE", help="trust the CA certificates in FILE (PEM)")
    conn.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    conn.add_argument("-x", "--execute", action="append", default=[], metavar="MESSAGE", help="send MESSAGE, print replies, exit (repeatable)")
    conn.add_argument("-w", "--wait", type=float, metavar="SECONDS", help="with -x: how long to print replies (default 2); otherwise: close after SECONDS")
    conn.add_argument("--ping", action="store_true", help="show ping/pong frames; '/ping [text]' sends a ping")
    conn.add_argument("--json", action="store_true", help="pretty-print JSON messages")
    conn.add_argument("--no-color", action="store_true", help="never use colours")
    conn.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="opening handshake timeout (default 10)")

    srv = sub.add_parser("serve", help="run an echo or broadcast WebSocket server")
    mode = srv.add_mutually_exclusive_group()
    mode.add_argument("--echo", dest="mode", action="store_const", const="echo", help="send every message back to its sender (default)")
    mode.add_argument("--broadcast", dest="mode", action="store_const", const="broadcast", help="send every message to every client")
    srv.set_defaults(mode="echo")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("-p", "--port", type=int, default=8080, help="port (default 8080, 0 for any free port)")
    srv.add_argument("--path", default="/", help="WebSocket path (default /)")
    srv.add_argument("--static", metavar="DIR", help="also serve the files of DIR over HTTP")
    srv.add_argument("--subprotocol", action="append", default=[], metavar="PROTO", help="accept this subprotocol (repeatable, first match wins)")
    srv.add_argument("--tls-cert", metavar="FILE", help="TLS certificate chain (PEM); needs --tls-key")
    srv.add_argument("--tls-key", metavar="FILE", help="TLS private key (PEM)")
    srv.add_argument("--workers", type=int, default=1, metavar="N", help="serve in N processes on one port (default 1); each has its own clients")
    srv.add_argument("--backplane", metavar="URL", help="share --broadcast with the other servers of this backplane (redis://host:port/db; default: $WS_BACKPLANE)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ws`` and the ``ws`` console script."""
    args = build_parser().parse_args(argv)
    command = _connect if args.command == "connect" else _serve
    try:
        return asyncio.run(command(args))
    except UsageError as exc:
        print(f"ws {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before our signal handlers were installed
        return 130


# -- ws connect ------------------------------------------------------------------


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"handshake_timeout": args.timeout}
    headers = []
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"invalid header {item!r} (expected 'Name: value')")
        headers.append((name.strip(), value.strip()))
    if headers:
        options["headers"] = headers
    if args.origin:
        options["origin"] = args.origin
    if args.ca or args.insecure:
        try:
            context = ssl.create_default_context(cafile=args.ca)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load --ca {args.ca}: {exc}") from None
        if args.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        options["ssl"] = context
    return options


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


class _Console:
    """The terminal side of ``ws connect``: prompt, printing, stdin lines."""

    def __init__(self, style: Style, interactive: bool) -> None:
        self.style = style
        self.interactive = interactive

    def prompt(self) -> None:
        if self.interactive:
            sys.stdout.write("> ")
            sys.stdout.flush()

    def show(self, kind: str, prefix: str, text: str) -> None:
        lines = text.split("\n")
        body = "\n".join([f"{prefix}{lines[0]}"] + [" " * len(prefix) + line for line in lines[1:]])
        # On a terminal, print over the prompt and draw it again below.
        lead = "\r\x1b[K" if self.interactive and self.style.enabled else ("\r" if self.interactive else "")
        sys.stdout.write(lead + self.style(kind, body) + "\n")
        self.prompt()

    def error(self, text: str) -> None:
        if self.interactive:
            sys.stdout.write("\r")
            sys.stdout.flush()
        print(self.style("error", f"error: {text}"), file=sys.stderr, flush=True)

    def read_lines(self, loop: asyncio.AbstractEventLoop, on_line: Callable[[str], None], on_eof: Callable[[], None]) -> None:
        """Read stdin in a daemon thread (works for terminals, pipes and files alike)."""

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

        threading.Thread(target=reader, name="ws-cli-stdin", daemon=True).start()


async def _connect(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    options = _client_options(args)
    style = Style(sys.stdout, False if args.no_color else None)
    console = _Console(style, interactive=sys.stdin.isatty() and not args.execute)
    try:
        sock = WebSocket(args.url, args.subprotocol or None, **options)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    finished: asyncio.Future[tuple[int, str]] = loop.create_future()
    by_us = False

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
    if args.ping:
        sock.on("ping", lambda data: console.show("info", "< ", f"ping {_show_bytes(data)}".rstrip()))
        sock.on("pong", lambda data: console.show("info", "< ", f"pong {_show_bytes(data)}".rstrip()))

    def stop(code: int = 1000) -> None:
        nonlocal by_us
        by_us = True
        if sock.ready_state == WebSocket.OPEN:
            sock.close(code)
        elif sock.ready_state == WebSocket.CONNECTING:
            sock.terminate()

    def on_line(line: str) -> None:
        if sock.ready_state != WebSocket.OPEN:
            return
        if args.ping and (line == "/ping" or line.startswith("/ping ")):
            payload = line[6:]
            try:
                sock.ping(payload)
            except ValueError as exc:
                console.error(str(exc))
        elif line:
            sock.send(line)
        console.prompt()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
            pass

    if console.interactive:
        note = f"subprotocol: {sock.protocol}; " if sock.protocol else ""
        console.show("info", "", f"Connected ({note}press CTRL+C to quit)")
    if args.execute:
        for message in args.execute:
            sock.send(message)
        wait = 2.0 if args.wait is None else args.wait
        loop.call_later(wait, stop)
    else:
        # End of input closes at once, unless -w asked to keep listening.
        console.read_lines(loop, on_line, stop if args.wait is None else lambda: None)
        if args.wait is not None:
            loop.call_later(args.wait, stop)

    code, reason = await finished
    if console.interactive:
        sys.stdout.write("\r\x1b[K" if style.enabled else "\n")
    if by_us and code in NORMAL_CLOSE_CODES:
        return 0
    if code in NORMAL_CLOSE_CODES:
        print(style("info", f"Disconnected (code: {code}, reason: {json.dumps(reason)})"), flush=True)
        return 0
    console.error(f"connection closed with code {code}" + (f" ({reason})" if reason else ""))
    return 1


def _show_bytes(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.hex(" ")


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
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


async def _serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    if not args.path.startswith("/"):
        raise UsageError(f"--path must start with '/', got {args.path!r}")
    if args.static and not os.path.isdir(args.static):
        raise UsageError(f"--static {args.static}: not a directory")
    if args.workers < 1:
        raise UsageError(f"--workers must be 1 or more, got {args.workers}")
    context = _server_ssl(args)
    host = args.host
    try:
        server = HttpServer(address=format_host_port(host, args.port), ssl=context, backplane=args.backplane)
    except (ValueError, ImportError) as exc:  # an unknown URL, redis-py missing
        raise UsageError(f"--backplane: {exc}") from None
    wss = WebSocketServer(server=server, path=args.path, protocols=args.subprotocol or None)
    if args.static:
        server.static("/", args.static)
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
    log_line(f"Listening on {scheme}://{server.address}{args.path} ({args.mode}{extra}); CTRL+C to stop")

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
