"""Connection limits as data: how many connections a server holds, and the refusal past them.

A server takes a :class:`Slot` for each upgrade request before anything
else of the handshake runs (``verify_client`` included: a refusal here calls
no user code and costs no parsing), and releases it exactly once -- when the
handshake is refused, when the client leaves before it completes, or when the
connection it became is closed.  So the count is of connections open *and*
being accepted: a burst of parallel handshakes, or handshakes waiting for an
``async`` ``verify_client``, cannot overshoot the limit.

Past ``max_connections``: **503**; past ``max_connections_per_ip`` for the
client's address (IPv6 grouped by ``per_ip_ipv6_prefix``): **429**; both with
``Retry-After`` (whole seconds).  The server owns one :class:`ConnectionLimits`
and renders the :class:`Refused` it returns; no I/O here.
"""

from __future__ import annotations

from typing import Any

from ..forwarded import ip_group
from ..request import Request
from .handshake import Refused

__all__ = ["DEFAULT_RETRY_AFTER", "ConnectionLimits", "Slot", "UNLIMITED"]

#: ``Retry-After`` of a refusal at a limit, in seconds: long-lived connections free their
#: slots slowly, so a client told to come back at once would only be refused again.
DEFAULT_RETRY_AFTER = 5


class Slot:
    """One connection counted against the limits; :meth:`release` gives it back (once, later calls do nothing)."""

    __slots__ = ("_limits", "_key")

    def __init__(self, limits: ConnectionLimits | None, key: str | None) -> None:
        self._limits = limits
        self._key = key

    @property
    def counted(self) -> bool:
        """Whether this slot is still counted (not released, not ``UNLIMITED``)."""
        return self._limits is not None

    def release(self) -> None:
        limits, self._limits = self._limits, None
        if limits is not None:
            limits._release(self._key)


#: The slot of a server without limits: nothing is counted.
UNLIMITED = Slot(None, None)


def _check_count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return value


class ConnectionLimits:
    """``max_connections`` for the server, ``max_connections_per_ip`` per client address, and their counts."""

    __slots__ = ("_max", "_max_per_ip", "_retry_after", "_prefix", "_retry", "_total", "_per_ip")

    def __init__(
        self,
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        retry_after: int | None = DEFAULT_RETRY_AFTER,
        per_ip_ipv6_prefix: int = 128,
    ) -> None:
        self._max = _check_count("max_connections", max_connections)
        self._max_per_ip = _check_count("max_connections_per_ip", max_connections_per_ip)
        if retry_after is not None and (isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0):
            raise ValueError(f"retry_after must be a whole number of seconds (>= 0) or None, got {retry_after!r}")
        self._retry_after = retry_after
        if isinstance(per_ip_ipv6_prefix, bool) or not isinstance(per_ip_ipv6_prefix, int) or not 1 <= per_ip_ipv6_prefix <= 128:
            raise ValueError(f"per_ip_ipv6_prefix must be an integer from 1 to 128, got {per_ip_ipv6_prefix!r}")
        self._prefix = per_ip_ipv6_prefix
        self._retry: tuple[tuple[str, str], ...] = () if retry_after is None else (("Retry-After", str(retry_after)),)
        self._total = 0
        self._per_ip: dict[str, int] = {}

    # Read-only: the counts are kept only for the limits set when the server was built.

    @property
    def max_connections(self) -> int | None:
        return self._max

    @property
    def max_connections_per_ip(self) -> int | None:
        return self._max_per_ip

    @property
    def retry_after(self) -> int | None:
        return self._retry_after

    @property
    def per_ip_ipv6_prefix(self) -> int:
        return self._prefix

    @property
    def active(self) -> bool:
        """Whether any limit is set (without one, nothing needs counting)."""
        return self._max is not None or self._max_per_ip is not None

    @property
    def held(self) -> int:
        """Connections counted now: open ones and handshakes under way."""
        return self._total

    def held_by(self, ip: str) -> int:
        """Connections counted now for ``ip``'s group (0 without ``max_connections_per_ip``)."""
        return self._per_ip.get(ip_group(ip, self._prefix), 0)

    def admit(self, request: Request) -> Slot | Refused:
        """A slot for ``request``, or the refusal when a limit is reached (nothing is counted then)."""
        if self._max is None and self._max_per_ip is None:
            return UNLIMITED
        if self._max is not None and self._total >= self._max:
            return Refused(503, "Service Unavailable: the server has too many connections, retry later", self._retry)
        key = None
        if self._max_per_ip is not None:
            ip = request.client_ip
            if ip is not None:  # no address (a unix socket): only max_connections applies
                key = ip_group(ip, self._prefix)
                count = self._per_ip.get(key, 0)
                if count >= self._max_per_ip:
                    return Refused(429, "Too Many Requests: too many connections from your address, retry later", self._retry)
                self._per_ip[key] = count + 1
        self._total += 1
        return Slot(self, key)

    def _release(self, key: str | None) -> None:
        self._total -= 1
        if key is not None:
            count = self._per_ip[key] - 1
            if count:
                self._per_ip[key] = count
            else:
                del self._per_ip[key]
