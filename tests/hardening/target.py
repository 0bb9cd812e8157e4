"""The server under attack: written the way the README shows, run in its own process.

Its own process, so that the RSS, file descriptors, CPU and log volume a test
measures are the server's alone.  Options come as JSON in ``WS_TARGET`` (keys:
``ws`` for ``WebSocketServer``, ``http`` for ``ws.http.Server``); the script
prints ``port N`` once it listens.

Endpoints: ``/echo`` echoes, ``/chat`` broadcasts every message to all,
``/json`` parses every message with ``json.loads`` (a raising listener),
``/sink`` takes every message and answers nothing,
``/big`` answers 8 MB, ``/files/big.bin`` is a 30 MB static file.
The key ``nofile`` (``[soft, hard]``, ``null`` keeps that one) sets the
process's open-file limit first, as a system with a low ``ulimit -n`` would;
``log`` (a level name) sends log records to stderr, as ``logging.basicConfig``
in an application does.
"""

import json
import logging
import os
import sys
import tempfile

from ws import WebSocketServer, http

options = json.loads(os.environ.get("WS_TARGET", "{}"))
if options.get("log"):
    logging.basicConfig(level=options["log"])
if options.get("nofile"):
    import resource

    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, tuple(new if new is not None else old for new, old in zip(options["nofile"], limits)))
server = http.Server(address="127.0.0.1:0", **options.get("http", {}))

echo = WebSocketServer(server=server, path="/echo", **options.get("ws", {}))
echo.on("connection", lambda sock, req: sock.on("message", lambda evt: sock.send(evt.data)))

chat = WebSocketServer(server=server, path="/chat", **options.get("ws", {}))
chat.on("connection", lambda sock, req: sock.on("message", lambda evt: chat.broadcast(evt.data)))

parse = WebSocketServer(server=server, path="/json", **options.get("ws", {}))
parse.on("connection", lambda sock, req: sock.on("message", lambda evt: sock.send(json.dumps(json.loads(evt.data)))))

sink = WebSocketServer(server=server, path="/sink", **options.get("ws", {}))
sink.on("connection", lambda sock, req: sock.on("message", lambda evt: None))

BIG = b"x" * 8_000_000
server.get("/big", lambda ctx: ctx.bytes(200, BIG))
server.get("/ok", lambda ctx: ctx.text(200, "ok"))

files = tempfile.mkdtemp(prefix="ws-target-")
with open(os.path.join(files, "big.bin"), "wb") as f:
    f.truncate(30_000_000)
server.static("/files", files)

server.serve(lambda address: print("port", server.port, flush=True))
