"""The JSON conventions of the application styles.

Incoming text that parses as JSON is handed over decoded, anything else as
it came (``str`` or ``bytes``); outgoing ``str`` and bytes-like values go
out as they are, everything else is JSON-encoded.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["decode", "encode"]


def decode(data: str | bytes) -> Any:
    """The JSON value of a text message, or the raw text/bytes when it is not JSON."""
    if not isinstance(data, str):
        return data
    try:
        return json.loads(data)
    except ValueError:
        return data


def encode(value: Any) -> str | bytes:
    """What to send for ``value``: text/bytes unchanged, anything else as JSON text."""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot send {type(value).__name__}: it is not str, bytes or JSON-serializable ({exc})") from None
