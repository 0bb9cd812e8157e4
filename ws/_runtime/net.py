"""Network addresses: the one ``host:port`` formatter and the server address parser.

Every place that shows or parses an address (the HTTP server, the stdlib
adapter, ``WebSocketServer(port=...)``, the client's ``Host`` header) goes
through here, so IPv6 hosts are bracketed the same way everywhere.
"""

from __future__ import annotations

import os
from typing import Union

__all__ = ["Target", "check_port", "format_host_port", "parse_address"]

#: The TCP port range (0: any free port, where a server binds).
MAX_PORT = 65535

#: Where a server listens: ``(host, port)`` for TCP (``None`` host: every
#: interface) or a unix socket path.
Target = Union[tuple[Union[str, None], int], str]


def format_host_port(host: str, port: int) -> str:
    """``'host:port'``; an IPv6 host is bracketed (``'[::1]:8080'``), as in URLs."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_port(port: object, where: str = "") -> int:
    """``port`` as an int in 0-65535, else ``ValueError`` (``TypeError`` for a non-number) naming it.

    One check for every place a user gives a port (a URL, ``listen()``, an
    address, the CLI's ``--port``), so that the message is the same
    everywhere: ``port 99999 is out of range 0-65535 in 'ws://h:99999/'``.
    ``where`` (the URL, the option) ends the message.  Digit strings are
    accepted, as Node's ``listen('8080')`` does.
    """
    suffix = f" in {where}" if where else ""
    if isinstance(port, str) and port.strip().lstrip("-").isdigit():
        port = int(port.strip())
    if isinstance(port, bool) or not isinstance(port, int):
        if isinstance(port, str):
            raise ValueError(f"port {port!r} is not a number{suffix}")
        raise TypeError(f"port must be an int, got {type(port).__name__}{suffix}")
    if not 0 <= port <= MAX_PORT:
        raise ValueError(f"port {port} is out of range 0-{MAX_PORT}{suffix}")
    return port


def parse_address(network: str, address: object) -> Target:
    """``'host:port'`` (or a port) -> ``(host, port)``; for ``network='unix'`` the path.

    A missing host (``':3000'`` or ``3000``) means every interface, as in
    Node and Go.  Raises ``ValueError``/``TypeError`` naming the bad address.
    """
    if network == "unix":
        if not isinstance(address, (str, os.PathLike)) or not os.fspath(address):
            raise ValueError(f"a unix server needs a socket path, not {address!r}")
        path = os.fspath(address)
        return path if isinstance(path, str) else os.fsdecode(path)
    if network != "tcp":
        raise ValueError(f"network must be 'tcp' or 'unix', not {network!r}")
    if isinstance(address, bool):
        raise TypeError(f"invalid address: {address!r}")
    host: str | None
    if isinstance(address, int):
        host, port_text = None, str(address)
    elif isinstance(address, str):
        text = address.strip()
        if text.startswith("["):  # [::1]:3000
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ValueError(f"invalid address {address!r}: expected '[host]:port'")
            host, port_text = text[1:end], text[end + 2 :]
        elif text.isdigit():
            host, port_text = None, text
        elif ":" in text:
            host, _, port_text = text.rpartition(":")
        else:
            raise ValueError(f"invalid address {address!r}: expected 'host:port'")
        host = host or None
    else:
        raise TypeError(f"invalid address: {address!r}")
    return host, check_port(port_text, f"address {address!r}")
