"""docs/deploying.md's nginx configuration, run by a real nginx in front of ws.

The configuration is the page's block marked ``<!-- run: nginx-site -->``, read from the page (so
the page cannot drift from what is tested), with only its ports and certificate replaced. nginx
runs unprivileged in the foreground, with its own prefix in a temporary folder (``nginx -p TMP
-c nginx.conf -g 'daemon off;'``), on free ports of 127.0.0.1. Behind it runs the page's
application (``<!-- run: deploy-app -->``) in its own process, or an echo server in this process
for the keepalive tests. scripts/setup-peers installs Debian's nginx-light; without nginx the
tests are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ws import ConnectionClosed, WebSocket

from .conftest import Recorder, echo_server, run
from .fixtures.doc_blocks import Script, block, with_port
from .fixtures.processes import free_port
from .fixtures.tls import TestPKI

T = 10.0


def _nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    # Debian installs it in /usr/sbin, which is not on an ordinary user's PATH.
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


NGINX = _nginx_binary()
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (scripts/setup-peers installs Debian's nginx-light with apt-get, as root)"
)
pki = TestPKI()


def replace_once(text: str, pattern: str, new: str) -> str:
    """``pattern`` replaced by ``new``, where the page's block has it exactly once."""
    result, count = re.subn(pattern, new, text)
    assert count == 1, f"docs/deploying.md's nginx block has {count} matches of {pattern!r}, expected 1:\n{text}"
    return result


def site_config(
    folder: Path, backend: int, http_port: int, https_port: int, read_timeout: str | None = None, without: tuple[str, ...] = ()
) -> str:
    """The page's block, on these ports, with a certificate of the test CA; ``read_timeout`` replaces its
    own, and the lines starting with one of ``without`` are left out."""
    cert, key = pki.server_files(folder, "127.0.0.1")
    site = with_port(block("nginx-site").code, 8080, backend)
    for start in without:
        site = replace_once(site, rf"\n[ \t]*{re.escape(start)}[^\n]*", "")
    site = replace_once(site, r"listen 80;", f"listen 127.0.0.1:{http_port};")
    site = replace_once(site, r"listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    site = replace_once(site, r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};")
    site = replace_once(site, r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};")
    if read_timeout is not None:
        site = replace_once(site, r"proxy_read_timeout\s+\S+;", f"proxy_read_timeout {read_timeout};")
    return site


def temp_paths(prefix: Path) -> str:
    """A temp path inside ``prefix`` for each module this nginx has: the built-in ones are under /var/lib."""
    built = subprocess.run([NGINX or "nginx", "-V"], capture_output=True, text=True, timeout=T).stderr
    names = ["client_body", "proxy"] + [m for m in ("fastcgi", "uwsgi", "scgi") if f"--without-http_{m}_module" not in built]
    return "\n".join(f"    {name}_temp_path {prefix / name};" for name in names)


class Nginx:
    """nginx in the foreground around ``site`` (an ``http { }`` block's content), stopped on the way out."""

    def __init__(self, prefix: Path, site: str, https_port: int) -> None:
        prefix.mkdir(exist_ok=True)
        self.prefix = prefix
        self.https_port = https_port
        # As root, nginx would switch its workers to 'nobody', who cannot enter pytest's folders.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (prefix / "nginx.conf").write_text(
            f"{user}pid {prefix / 'nginx.pid'};\nerror_log stderr info;\nworker_processes 1;\n"
            f"events {{\n    worker_connections 256;\n}}\n"
            f"http {{\n    access_log off;\n{temp_paths(prefix)}\n{site}\n}}\n"
        )
        self.log = prefix / "stderr.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [NGINX or "nginx", "-p", str(prefix), "-c", "nginx.conf", "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )

    def errors(self) -> str:
        return self.log.read_text(errors="replace")

    async def ready(self, timeout: float = T) -> None:
        """Until nginx accepts on its https port; fails if it exits or takes longer."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"nginx exited with {self.proc.returncode}:\n{self.errors()}"
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.https_port), 1)
            except (OSError, asyncio.TimeoutError):
                assert time.monotonic() < deadline, f"nginx not accepting on {self.https_port} in {timeout} s:\n{self.errors()}"
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # nginx's fast shutdown, workers included
        try:
            self.proc.wait(T)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its workers are in its session
            self.proc.wait(T)


def https_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=T, context=pki.client_context())
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def plain_get(port: int, path: str) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=T)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location")
    finally:
        conn.close()


def test_the_pages_application_behind_the_pages_nginx(tmp_path: Path) -> None:
    backend, http_port, https_port = free_port(), free_port(), free_port()
    site = site_config(tmp_path, backend, http_port, https_port)
    url = f"wss://127.0.0.1:{https_port}/ws"
    client_ssl = pki.client_context()
    with Script(with_port(block("deploy-app").code, 8080, backend), tmp_path, "app.py") as app, Nginx(tmp_path / "nginx", site, https_port) as nginx:
        asyncio.run(nginx.ready())
        assert app.expect("listening on") == f"listening on 127.0.0.1:{backend}"

        with WebSocket(url, ssl=client_ssl) as sock:
            sock.send("through nginx")
            assert sock.recv(timeout=T).data == "through nginx"
        # The server saw nginx's X-Forwarded-For (request.get_header) and that the browser used https.
        assert app.expect("connected") == "connected 127.0.0.1 https"

        # A client's own X-Forwarded-For stays in front: only the last entry is nginx's.
        with WebSocket(url, ssl=client_ssl, headers={"X-Forwarded-For": "203.0.113.9"}) as sock:
            sock.send("forged")
            assert sock.recv(timeout=T).data == "forged"
        assert app.expect("connected") == "connected 203.0.113.9, 127.0.0.1 https"

        # The health check through nginx (a plain request: Connection: close upstream), and the redirect.
        assert https_get(https_port, "/healthz") == (200, "ok")
        assert plain_get(http_port, "/ws") == (301, "https://127.0.0.1/ws")

        # SIGTERM to the application: the client hears 1001 through nginx, and the app exits with 0.
        sock = WebSocket(url, ssl=client_ssl)
        sock.wait_open(timeout=T)
        sock.send("before the stop")
        assert sock.recv(timeout=T).data == "before the stop"
        app.expect("connected")
        app.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            sock.recv(timeout=T)
        assert closed.value.code == 1001, closed.value
        assert app.wait() == 0, app.report()
        assert app.stderr == "", app.report()
        assert "[error]" not in nginx.errors() and "[emerg]" not in nginx.errors(), nginx.errors()


@pytest.mark.parametrize(
    ("without", "status"),
    [
        (("proxy_http_version",), 505),
        (("proxy_set_header Upgrade", "proxy_set_header Connection"), 426),
        (("proxy_set_header Connection",), 400),
    ],
    ids=["http-version", "upgrade-and-connection", "connection"],
)
def test_each_upgrade_line_of_the_page_is_needed(tmp_path: Path, without: tuple[str, ...], status: int) -> None:
    """The page says what ws answers when one of these lines is missing: the handshake fails so."""

    async def main() -> None:
        async with echo_server("/ws") as served:
            http_port, https_port = free_port(), free_port()
            site = site_config(tmp_path, served.port, http_port, https_port, without=without)
            with Nginx(tmp_path / "nginx", site, https_port) as nginx:
                await nginx.ready()
                sock = WebSocket(f"wss://127.0.0.1:{https_port}/ws", ssl=pki.client_context())
                rec = Recorder(sock, "open", "unexpected-response", "close", "error")
                await rec.wait("close", timeout=T)
                assert rec.count("open") == 0 and [args[0] for args in rec.args("unexpected-response")] == [status], rec.log
                assert served.accepted == []

    run(main, 30)


async def idle_through_nginx(tmp_path: Path, idle: float, **ws_options: Any) -> tuple[Recorder, float, Nginx, Any]:
    """An echo server (``ws_options``) behind the page's nginx with ``proxy_read_timeout 3s``; one
    client stays idle for up to ``idle`` seconds (or until closed). Returns its recorder, the time
    it was open, nginx, and the server side's (socket, recorder)."""
    async with echo_server("/ws", **ws_options) as served:
        http_port, https_port = free_port(), free_port()
        site = site_config(tmp_path, served.port, http_port, https_port, read_timeout="3s")
        with Nginx(tmp_path / "nginx", site, https_port) as nginx:
            await nginx.ready()
            sock = WebSocket(f"wss://127.0.0.1:{https_port}/ws", ssl=pki.client_context())
            rec = Recorder(sock, "open", "message", "ping", "close", "error")
            await rec.wait("open", timeout=T)
            opened = time.monotonic()
            server_side = await served.socket()
            request = server_side[0].request
            assert request.get_header("x-forwarded-for") == "127.0.0.1"
            assert request.get_header("x-forwarded-proto") == "https"
            assert request.host == "127.0.0.1"  # $host: the name asked for, without the port
            try:
                await rec.wait("close", timeout=idle)
            except asyncio.TimeoutError:
                pass  # still open after the idle time
            held = time.monotonic() - opened
            if sock.ready_state == WebSocket.OPEN:
                sock.send("still here")
                (event,), = (await rec.wait("message", timeout=T))[-1:]
                assert event.data == "still here"
                sock.close()
                await rec.wait("close", timeout=T)
            return rec, held, nginx, server_side


def test_pings_keep_an_idle_connection_open_past_proxy_read_timeout(tmp_path: Path) -> None:
    rec, held, nginx, (_, server_rec) = run(lambda: idle_through_nginx(tmp_path, 5.0, ping_interval=1, ping_timeout=5), 40)
    # 5 s idle behind a 3 s proxy_read_timeout: open all along, the pings went through nginx.
    assert held >= 5.0
    assert rec.args("close") == [(1000, "")], rec.log
    assert [args[0] for args in server_rec.args("close")] == [1000], server_rec.log
    assert rec.count("ping") >= 3, rec.log
    assert rec.count("error") == 0 and server_rec.count("error") == 0, (rec.log, server_rec.log)
    assert "upstream timed out" not in nginx.errors(), nginx.errors()


def test_without_pings_nginx_cuts_an_idle_connection_at_proxy_read_timeout(tmp_path: Path) -> None:
    rec, held, nginx, (_, server_rec) = run(lambda: idle_through_nginx(tmp_path, 10.0, ping_interval=None), 40)
    # The same connection, with the server's pings off: nginx closes it after its 3 s, no close frame.
    assert 2.5 <= held < 8.0, held
    (code, _reason), = rec.args("close")
    assert code == 1006, rec.log
    assert [args[0] for args in server_rec.args("close")] == [1006], server_rec.log  # nginx closed both sides
    assert rec.count("ping") == 0
    assert "upstream timed out" in nginx.errors() and "upgraded connection" in nginx.errors(), nginx.errors()
