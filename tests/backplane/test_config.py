"""``backplane_from``: what a ``backplane=`` option (or ``WS_BACKPLANE``) turns into.  No server needed."""

from __future__ import annotations

import pytest

from ws.backplane import ENV_VAR, MemoryBackplane, MemoryHub, backplane_from, from_url


def test_none_without_the_variable_is_a_new_in_process_backplane(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    first, second = backplane_from(), backplane_from(None, presence_ttl=2)
    assert isinstance(first, MemoryBackplane) and isinstance(second, MemoryBackplane)
    assert first.hub is not second.hub  # each is a cluster of one: nothing shared by accident
    assert second.presence_ttl == 2
    monkeypatch.setenv(ENV_VAR, "  ")
    assert isinstance(backplane_from(), MemoryBackplane)


def test_the_environment_variable_names_the_backplane(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redis", reason="the redis package is not installed: pip install 'ws-js[redis]'")
    from ws.backplane import RedisBackplane

    monkeypatch.setenv(ENV_VAR, "redis://cache.internal:6380/2")
    made = backplane_from(prefix="chat:")
    assert isinstance(made, RedisBackplane)
    assert made.url == "redis://cache.internal:6380/2" and made.prefix == "chat:"
    assert not made.started  # nothing connects before start()
    monkeypatch.setenv(ENV_VAR, "memory://")
    assert isinstance(backplane_from(), MemoryBackplane)
    assert isinstance(backplane_from("rediss://:pw@host:6379/0"), RedisBackplane)
    assert isinstance(from_url("unix:///run/redis.sock?db=1"), RedisBackplane)


def test_an_object_is_used_as_it_is() -> None:
    mine = MemoryBackplane(MemoryHub(), node_id="node-1")
    assert backplane_from(mine) is mine


def test_anything_else_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"unknown backplane URL 'http://x'.*redis://host:port/db"):
        backplane_from("http://x")
    with pytest.raises(ValueError, match=r"'\.\.\.@host:1'") as refused:
        backplane_from("amqp://user:secret@host:1")
    assert "secret" not in str(refused.value)
    with pytest.raises(TypeError, match="URL, a Backplane or None"):
        backplane_from(42)  # type: ignore[arg-type]
