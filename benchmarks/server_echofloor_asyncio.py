"""The floor of a small echo on asyncio: its transport and a ``BufferedProtocol``, no WebSocket code.

Speaks the raw ceilings' protocol of the shared harness (a 4-byte length,
then the payload) and answers a read that is one whole message with one
``transport.write``: what a WebSocket server on the default loop cannot
avoid per round trip (the loop turn, ``recv_into``, the write), reading
into one reused buffer as ``ws`` does.  ``benchmarks/pingpong.py --raw``
measures it beside ``server_ws.py``; the difference is ours.  (The
harness's ``server_raw_asyncio.py`` reads with ``data_received``: asyncio
then allocates 256 KiB per read, which costs more than the whole of ``ws``.)
"""

import asyncio

import _common as c

args = c.server_args()
BUFFER = memoryview(bytearray(256 * 1024))


class Echo(asyncio.BufferedProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return BUFFER

    def buffer_updated(self, nbytes):
        data = BUFFER[:nbytes]
        if nbytes >= 4 and int.from_bytes(data[:4], "big") + 4 == nbytes:
            self.transport.write(bytes(data))


async def main():
    server = await asyncio.get_running_loop().create_server(Echo, args.host, args.port)
    c.ready()
    async with server:
        await c.forever()


c.run(main, args.loop)
