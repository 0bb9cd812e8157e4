"""Choosing a backplane from configuration: a URL, an object, or the ``WS_BACKPLANE`` variable."""

from __future__ import annotations

import os
from typing import Any

from .base import Backplane
from .memory import MemoryBackplane

__all__ = ["ENV_VAR", "backplane_from", "from_url"]

#: The environment variable read when no backplane is given (twelve-factor deployments).
ENV_VAR = "WS_BACKPLANE"

REDIS_SCHEMES = ("redis", "rediss", "unix")
#: A Redis Cluster: ``redis+cluster://host:port,host:port/`` (``rediss+cluster://``: TLS).
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def from_url(url: str, **options: Any) -> Backplane:
    """``redis://host:port/db`` (``rediss://``, ``unix://``), ``redis+cluster://host:port,host:port/``
    (``rediss+cluster://``) or ``memory://``; ``options`` go to the class."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in REDIS_SCHEMES:
        from .redis_backplane import RedisBackplane

        return RedisBackplane.from_url(url, **options)
    if scheme in CLUSTER_SCHEMES:
        from .redis_cluster import RedisClusterBackplane

        return RedisClusterBackplane.from_url(url, **options)
    if scheme == "memory":
        return MemoryBackplane(**options)
    shown = url if "@" not in url else "...@" + url.rpartition("@")[2]
    raise ValueError(
        f"unknown backplane URL {shown!r}: expected redis://host:port/db, rediss://..., unix://..., "
        "redis+cluster://host:port,host:port/ (a Redis Cluster) or memory://"
    )


def backplane_from(value: Backplane | str | None = None, **options: Any) -> Backplane:
    """What a ``backplane=`` option means: the layer above calls this once and ``start()``\\ s the result.

    An object is used as it is; a string is a URL (``from_url``); ``None``
    reads ``WS_BACKPLANE`` and, when it is unset or empty, gives a new
    in-process ``MemoryBackplane`` (a cluster of one: the behaviour of a
    single process).  ``options`` apply to a backplane made here.
    """
    if value is None:
        value = os.environ.get(ENV_VAR, "").strip() or None
        if value is None:
            return MemoryBackplane(**options)
    if isinstance(value, Backplane):
        return value
    if isinstance(value, str):
        return from_url(value, **options)
    raise TypeError(f"backplane must be a URL, a Backplane or None, got {type(value).__name__}")
