"""Recorded channels on Redis: the two Lua scripts, their keys, and the recorded envelope.

One channel's history is two keys and its pub/sub channel, all under the
channel's hash tag (one Redis Cluster slot)::

    {prefix}hmeta:{{channel}}   hash: epoch, top (last offset); PEXPIRE idle_ttl at each publish and read
    {prefix}hist:{{channel}}    stream: one entry per message, id "<offset>-<ms>", fields o (origin), d (data);
                                PEXPIRE window at each publish

The entry id puts the offset first, so the message after ``since`` is one
``XRANGE`` away (the ids are strictly increasing because the offsets are),
and the millisecond (Redis' clock) second, which is what the window is
checked against.  The stream is trimmed approximately (whole listpack
nodes, cheap): by count at every ``XADD`` (``MAXLEN ~ max_messages``) and by
age every 64 publishes; a channel silent for ``window`` loses the whole
stream by expiry.  Serving does not rely on the trimming: a read refuses
with ``trimmed`` when more than ``max_messages`` came after ``since`` (the
rule ``MemoryHub`` applies), and with ``window`` when the message after
``since`` is gone or older than the window, so exactly what the in-process
backplane would serve is served.

The publish script does everything in one atomic step: the offset it
takes and the order of its ``PUBLISH`` (or ``SPUBLISH``) agree for every
subscriber.  It writes the stream before the offset, so a failing ``XADD``
leaves no hole.

A recorded message on the pub/sub channel cannot be confused with a plain
one, which starts with the origin's length (1 to 100)::

    \\x00 [len][offset, decimal] [len][epoch] [len][origin] payload
"""

from __future__ import annotations

import hashlib
from typing import Any

from .base import Message
from .history import Position, Recovery, Replay, new_epoch

__all__ = ["PUBLISH_SCRIPT", "PUBLISH_SHA", "HISTORY_SCRIPT", "history_keys", "publish_args", "history_args", "position", "replay", "parse_envelope"]

#: The first byte of a recorded envelope; a plain one starts with the origin's length, never 0.
MARKER = 0

_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(n) return string.format('%.0f', n) end
local function split(id)
  local offset, ms = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(offset), tonumber(ms)
end
-- The channel's epoch and last offset; a channel without one gets the candidate epoch (and no stale stream).
local function numbering(meta, stream, candidate, idle)
  local found = redis.call('HMGET', meta, 'epoch', 'top')
  local epoch, top = found[1], tonumber(found[2])
  if not epoch or not top then
    epoch, top = candidate, 0
    redis.call('HSET', meta, 'epoch', epoch, 'top', '0')
    redis.call('DEL', stream)
  end
  redis.call('PEXPIRE', meta, idle)
  return epoch, top
end
"""

#: KEYS: meta, stream, pub/sub channel.  ARGV: candidate epoch, origin, data, max_messages, window ms,
#: idle_ttl ms, publish command (PUBLISH or SPUBLISH).  -> {offset, epoch}
PUBLISH_SCRIPT = (
    _COMMON
    + """
local meta, stream = KEYS[1], KEYS[2]
local origin, data, window = ARGV[2], ARGV[3], tonumber(ARGV[5])
local epoch, top = numbering(meta, stream, ARGV[1], tonumber(ARGV[6]))
local offset = top + 1
local off = int(offset)
redis.call('XADD', stream, 'MAXLEN', '~', ARGV[4], off .. '-' .. int(now), 'o', origin, 'd', data)
redis.call('HSET', meta, 'top', off)
if offset % 64 == 0 then
  -- Age trimming, amortized: find the last expired offset (entries are in time order) and cut below it.
  local oldest = now - window
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  local lo, ms = split(first[1])
  if ms < oldest then
    local hi = offset  -- the entry just added is not expired
    while hi - lo > 1 do
      local mid = math.floor((lo + hi) / 2)
      local at, t = split(redis.call('XRANGE', stream, int(mid), '+', 'COUNT', 1)[1][1])
      if t < oldest then lo = at else hi = mid end
    end
    redis.call('XTRIM', stream, 'MAXLEN', '~', int(offset - lo))
  end
end
redis.call('PEXPIRE', stream, window)
redis.call(ARGV[7], KEYS[3], '\\0' .. string.char(#off) .. off .. string.char(#epoch) .. epoch
  .. string.char(#origin) .. origin .. data)
return {offset, epoch}
"""
)

PUBLISH_SHA = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()

#: KEYS: meta, stream.  ARGV: candidate epoch, since offset ('' for none), since epoch, max_messages,
#: window ms, idle_ttl ms.  -> {top, epoch, reason ('' when recovered), entries}
HISTORY_SCRIPT = (
    _COMMON
    + """
local meta, stream = KEYS[1], KEYS[2]
local epoch, top = numbering(meta, stream, ARGV[1], tonumber(ARGV[6]))
if ARGV[2] == '' then return {top, epoch, '', {}} end
local since = tonumber(ARGV[2])
if ARGV[3] ~= epoch then return {top, epoch, 'epoch', {}} end
if since == top then return {top, epoch, '', {}} end
if since > top then return {top, epoch, 'ahead', {}} end
if top - since > tonumber(ARGV[4]) then return {top, epoch, 'trimmed', {}} end
local entries = redis.call('XRANGE', stream, int(since + 1), '+', 'COUNT', top - since)
-- Offsets are distinct and at most top: as many entries as offsets means each one of them.
if #entries ~= top - since then return {top, epoch, 'window', {}} end
local first, ms = split(entries[1][1])
if ms < now - tonumber(ARGV[5]) then return {top, epoch, 'window', {}} end
return {top, epoch, '', entries}
"""
)


def history_keys(prefix: str, tag: str) -> list[str]:
    """The meta hash and the stream of the channel whose hash tag is ``tag``."""
    return [f"{prefix}hmeta:{tag}", f"{prefix}hist:{tag}"]


def publish_args(keys: list[str], channel_key: bytes, origin: bytes, data: bytes, recovery: Recovery, command: str) -> tuple[Any, ...]:
    """The ``EVALSHA`` arguments (after the command name) of one recorded publish."""
    argv = (new_epoch(), origin, data, recovery.max_messages, recovery.window_ms, recovery.idle_ttl_ms, command)
    return (PUBLISH_SHA, 3, keys[0], keys[1], channel_key, *argv)


def history_args(since: Position | None, recovery: Recovery) -> list[Any]:
    if since is None:
        return [new_epoch(), "", "", recovery.max_messages, recovery.window_ms, recovery.idle_ttl_ms]
    offset, epoch = since
    if isinstance(offset, bool) or not isinstance(offset, int) or not isinstance(epoch, str):
        raise TypeError(f"since must be a Position(offset: int, epoch: str) or None, got {since!r}")
    return [new_epoch(), offset, epoch, recovery.max_messages, recovery.window_ms, recovery.idle_ttl_ms]


def position(reply: Any) -> Position:
    """The publish script's reply."""
    return Position(int(reply[0]), bytes(reply[1]).decode("ascii"))


def replay(channel: str, reply: Any) -> Replay:
    """The history script's reply as a ``Replay`` of ``channel``."""
    top, epoch, reason, entries = reply
    name = bytes(epoch).decode("ascii")
    last = Position(int(top), name)
    if reason:
        return Replay(False, last, [], bytes(reason).decode("ascii"))
    messages = []
    for entry_id, fields in entries:
        values = dict(zip(fields[::2], fields[1::2]))
        offset = int(bytes(entry_id).partition(b"-")[0])
        messages.append(Message(channel, bytes(values[b"d"]), bytes(values[b"o"]).decode("ascii", "replace"), Position(offset, name)))
    return Replay(True, last, messages)


def parse_envelope(envelope: bytes) -> tuple[str, bytes, Position] | None:
    """``(origin, payload, position)`` of a recorded envelope; ``None`` if it is malformed."""
    try:
        at, fields = 1, []
        for _ in range(3):
            end = at + 1 + envelope[at]
            if end > len(envelope):
                return None
            fields.append(envelope[at + 1 : end])
            at = end
        offset, epoch, origin = fields
        return origin.decode("ascii", "replace"), envelope[at:], Position(int(offset), epoch.decode("ascii"))
    except (IndexError, ValueError):
        return None
