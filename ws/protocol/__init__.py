"""Sans-I/O protocol pieces: bytes in, messages and bytes out; no asyncio, no sockets.

* ``reader.FrameReader`` - incoming bytes to messages (the lean path for common frames);
* ``writer.FrameWriter`` - outgoing messages to wire bytes, queued for one write per turn;
* ``assembler.Assembler`` - fragments to messages, incremental UTF-8, ``max_fragments``;
* ``_websockets`` - ``websockets``' protocol objects, the only module that knows their internals.

``ws.connection.websocket.WebSocket`` composes them and does the I/O.
"""
