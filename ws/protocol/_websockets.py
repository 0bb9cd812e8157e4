"""The Sans-I/O protocol objects, from ``websockets``, with one correction.

``websockets`` does all framing, masking, close-code rules, extensions and
handshake checks.  We subclass rather than fork it for a single behaviour:
RFC 6455 lets a Close frame arrive in the middle of a fragmented message
(control frames may interleave), and the right answer is a normal closing
handshake that drops the partial message (Autobahn case 7.1.5, as Node's
``ws`` does), where ``websockets`` fails the connection with 1002.
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

__all__ = ["Client", "Server"]

_CLOSE = Opcode.CLOSE
_CLIENT_LOGGER = logging.getLogger("ws.client.protocol")


class _CloseMidMessage:
    current_size: int | None

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is _CLOSE and self.current_size is not None:
            self.current_size = None
        super().recv_frame(frame)  # type: ignore[misc]


class Client(_CloseMidMessage, ClientProtocol):
    """``websockets``' client protocol with the close-mid-message fix.

    It logs (frames, at DEBUG) to ``ws.client.protocol``, inside the ``ws``
    logger hierarchy, so ``ws.enable_debug()`` shows client frames too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("logger", _CLIENT_LOGGER)
        super().__init__(*args, **kwargs)


class Server(_CloseMidMessage, ServerProtocol):
    """``websockets``' server protocol with the close-mid-message fix.

    Our HTTP layer (h11) reads the upgrade request, so this object never
    parses one: after ``send_response`` accepted the handshake,
    :meth:`read_frames` points its parser at frames.
    """

    def read_frames(self) -> None:
        # ServerProtocol.parse() reads frames once the state is OPEN.
        self.parser = self.parse()
        next(self.parser)
