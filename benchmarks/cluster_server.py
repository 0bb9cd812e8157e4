"""One node of the cluster benchmark (``benchmarks/cluster.py``): the public API as users write it.

    python benchmarks/cluster_server.py --port P [--backplane redis://...]

``/broadcast``: subscribers (they only listen).  ``/publish``: every
message received there is broadcast, as it is, to the ``/broadcast``
clients: with ``--backplane``, those of every node.  A second path keeps
the publisher out of the broadcast set without ``exclude=``, so the
single-process and the cluster runs do the same work per message.  Prints
``READY`` once listening; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from ws import WebSocketServer, http


async def main(port: int, backplane: str | None) -> None:
    server = http.Server(f"127.0.0.1:{port}", backplane=backplane)
    fanout = WebSocketServer(server=server, path="/broadcast", per_message_deflate=False)
    publish = WebSocketServer(server=server, path="/publish", per_message_deflate=False)
    publish.on("connection", lambda socket, request: socket.on("message", lambda event: fanout.broadcast(event.data)))
    await server.serve_async()
    print("READY", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for wss in (fanout, publish):
        wss.close()
    await server.close_async()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backplane", default=None)
    options = parser.parse_args()
    asyncio.run(main(options.port, options.backplane))
