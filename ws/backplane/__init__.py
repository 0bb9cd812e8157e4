"""The backplane: how several ``ws`` processes share broadcast, rooms, send-by-id, a store and presence.

``Backplane`` is the interface (``base``); ``MemoryBackplane`` the in-process
implementation and default; ``RedisBackplane`` the one on Redis (``pip
install 'ws-js[redis]'``) and ``RedisClusterBackplane`` on a Redis Cluster,
both loaded on first use.  ``backplane_from(value)``
turns a ``backplane=`` option (URL, object, ``None`` with ``WS_BACKPLANE``)
into one.  See docs/backplane.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Backplane, BackplaneError, Callback, Member, Message, Subscription
from .config import ENV_VAR, backplane_from, from_url
from .history import Position, Recovery, Replay
from .memory import MemoryBackplane, MemoryHub

if TYPE_CHECKING:
    from .redis_backplane import RedisBackplane
    from .redis_cluster import RedisClusterBackplane

__all__ = [
    "Backplane",
    "BackplaneError",
    "Callback",
    "Member",
    "Message",
    "Subscription",
    "Position",
    "Recovery",
    "Replay",
    "MemoryBackplane",
    "MemoryHub",
    "RedisBackplane",
    "RedisClusterBackplane",
    "ENV_VAR",
    "backplane_from",
    "from_url",
]


def __getattr__(name: str) -> Any:
    if name == "RedisBackplane":
        from .redis_backplane import RedisBackplane

        return RedisBackplane
    if name == "RedisClusterBackplane":
        from .redis_cluster import RedisClusterBackplane

        return RedisClusterBackplane
    raise AttributeError(f"module 'ws.backplane' has no attribute {name!r}")
