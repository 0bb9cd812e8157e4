"""HTTP CONNECT tunnels for the client: choosing a proxy and opening the tunnel.

A WebSocket client behind a corporate proxy must ask the proxy for a raw TCP
tunnel (``CONNECT host:port``) and then speak TLS and WebSocket through it,
exactly as it would on a direct connection.  The choice of proxy follows
curl, Node's proxy agents and ``requests``: an explicit ``proxy=`` URL, or
(``proxy='env'``, the default) ``http_proxy`` for ``ws://`` and
``https_proxy`` for ``wss://``, skipped for hosts listed in ``no_proxy``;
``proxy=None`` always connects directly.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from .._runtime.net import format_host_port
from ..exceptions import ProxyError

__all__ = ["ProxyError", "ProxyURL", "open_tunnel", "parse_proxy", "proxy_for"]

#: The most we read of a proxy's answer to CONNECT before giving up on it.
MAX_RESPONSE_HEAD = 16 * 1024


class ProxyURL:
    """A parsed ``http://[user:pass@]host:port`` proxy address."""

    __slots__ = ("host", "password", "port", "username")

    def __init__(self, host: str, port: int, username: str | None = None, password: str | None = None) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password

    @property
    def address(self) -> str:
        return format_host_port(self.host, self.port)

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value (basic auth), if credentials were given."""
        if self.username is None:
            return None
        token = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")

    def __repr__(self) -> str:  # never show the password
        user = f"{self.username}:***@" if self.username is not None else ""
        return f"<ProxyURL http://{user}{self.address}>"


def parse_proxy(url: Any) -> ProxyURL:
    """Check a proxy URL at once: only ``http://`` proxies (CONNECT over plain TCP)."""
    if not isinstance(url, str):
        raise TypeError(f"proxy must be a URL string, 'env' or None, got {type(url).__name__}")
    if "://" not in url:
        url = "http://" + url  # curl and requests accept a bare host:port
    split = urlsplit(url)
    if split.scheme.lower() != "http":
        raise ValueError(f"Invalid proxy URL {_redact(url)!r}: only 'http://' proxies are supported, got {split.scheme!r}")
    try:
        port = split.port or 80
    except ValueError:
        raise ValueError(f"Invalid proxy URL {_redact(url)!r}: bad port") from None
    if not split.hostname:
        raise ValueError(f"Invalid proxy URL {_redact(url)!r}: no host")
    username = unquote(split.username) if split.username is not None else None
    password = unquote(split.password) if split.password is not None else None
    return ProxyURL(split.hostname, port, username, password)


def _redact(url: str) -> str:
    split = urlsplit(url)
    if split.password is None:
        return url
    return url.replace(f":{split.password}@", ":***@", 1)


def _env(environ: Mapping[str, str], name: str) -> str:
    # Lower case wins, as in curl; empty means unset.
    return environ.get(name) or environ.get(name.upper()) or ""


def bypasses(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma-separated hosts, domains, ``*``, IP/CIDR, optional ``:port``) covers ``host``."""
    host = host.strip("[]").lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = entry, None
        if entry.startswith("["):  # [::1]:8080
            name, _, rest = entry[1:].partition("]")
            entry_port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:
            name, entry_port = entry.split(":")
        if entry_port is not None and entry_port != str(port):
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip("*").rstrip(".")
        name = name.removeprefix(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(option: Any, secure: bool, host: str, port: int, environ: Mapping[str, str] | None = None) -> ProxyURL | None:
    """The proxy to use for one connection (``None``: connect directly)."""
    if option is None or option is False or option == "":
        return None
    if option != "env":
        return option if isinstance(option, ProxyURL) else parse_proxy(option)
    environ = os.environ if environ is None else environ
    name = "https_proxy" if secure else "http_proxy"
    url = _env(environ, name)
    if not url or bypasses(host, port, _env(environ, "no_proxy")):
        return None
    try:
        return parse_proxy(url)
    except ValueError as exc:
        raise ProxyError(f"{name} from the environment: {exc}") from None


def connect_request(proxy: ProxyURL, host: str, port: int) -> bytes:
    target = format_host_port(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    auth = proxy.authorization()
    if auth is not None:
        lines.append(f"Proxy-Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_connect_response(head: bytes, proxy: ProxyURL, target: str) -> None:
    """Raise ``ProxyError`` unless the proxy's answer is a 2xx."""
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProxyError(f"proxy {proxy.address} sent an invalid answer to CONNECT {target}: {status_line[:80]!r}")
    status = int(parts[1])
    if not 200 <= status < 300:
        reason = parts[2] if len(parts) > 2 else ""
        raise ProxyError(f"proxy {proxy.address} refused CONNECT {target}: {status} {reason}".rstrip(), status)


async def open_tunnel(loop: asyncio.AbstractEventLoop, proxy: ProxyURL, host: str, port: int) -> socket.socket:
    """Connect to ``proxy``, ask for a tunnel to ``host:port``; the socket is then the tunnel.

    The caller hands the socket to ``loop.create_connection(sock=...)``,
    which adds TLS for ``wss://`` on top as on a direct connection.
    """
    sock = await _connect(loop, proxy)
    target = format_host_port(host, port)
    try:
        await loop.sock_sendall(sock, connect_request(proxy, host, port))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                raise ProxyError(f"proxy {proxy.address} closed the connection during CONNECT {target}")
            head += chunk
            if len(head) > MAX_RESPONSE_HEAD:
                raise ProxyError(f"proxy {proxy.address} sent an oversized answer to CONNECT {target}")
        head, _, extra = head.partition(b"\r\n\r\n")
        parse_connect_response(head, proxy, target)
        if extra:  # the server cannot speak before our request
            raise ProxyError(f"proxy {proxy.address} sent unexpected data after accepting CONNECT {target}")
    except BaseException:
        sock.close()
        raise
    return sock


def _literal_address(proxy: ProxyURL) -> list[tuple[Any, ...]] | None:
    """An IP literal needs no resolver thread (none can start once a script's main thread ended)."""
    try:
        ip = ipaddress.ip_address(proxy.host)
    except ValueError:
        return None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (proxy.host, proxy.port))]


async def _connect(loop: asyncio.AbstractEventLoop, proxy: ProxyURL) -> socket.socket:
    infos = _literal_address(proxy)
    if infos is None:
        try:
            infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ProxyError(f"cannot resolve proxy {proxy.address}: {exc.strerror or exc}") from exc
    last: OSError | None = None
    for family, type_, proto, _, address in infos:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    reason = os.strerror(last.errno) if last is not None and last.errno else str(last)
    raise ProxyError(f"cannot connect to proxy {proxy.address}: {reason}") from last
