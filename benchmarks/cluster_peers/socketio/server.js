// One Socket.IO node of the cluster comparison (benchmarks/cluster_peers/run.py):
// Socket.IO with @socket.io/redis-adapter, as its documentation sets it up.
//
//   node server.js PORT REDIS_URL
//
// Namespace "/": subscribers; a handshake query ?room=N joins room N.
// Namespace "/pub": publishers (never in the broadcast set):
//   "b" (payload)       -> io.emit("m", payload)            every node, through Redis
//   "r" (room, payload) -> io.to(room).emit("m", payload)   the room's members on every node
// WebSocket transport only (no long-polling), no compression, as the ws nodes.
// Prints READY once listening; stops on SIGTERM.
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

async function main() {
  const [port, url] = process.argv.slice(2);
  if (!port || !url) {
    console.error("usage: node server.js PORT REDIS_URL");
    process.exit(2);
  }
  const pubClient = createClient({ url });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) {
    client.on("error", (err) => console.error("redis:", err.message));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    adapter: createAdapter(pubClient, subClient),
  });
  io.on("connection", (socket) => {
    const room = socket.handshake.query.room;
    if (room) socket.join(room);
  });
  io.of("/pub").on("connection", (socket) => {
    socket.on("b", (payload) => io.emit("m", payload));
    socket.on("r", (room, payload) => io.to(room).emit("m", payload));
  });
  httpServer.listen(Number(port), "127.0.0.1", () => console.log("READY"));
  process.on("SIGTERM", () => {
    io.close(() => {
      Promise.allSettled([pubClient.quit(), subClient.quit()]).then(() => process.exit(0));
    });
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
