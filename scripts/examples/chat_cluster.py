"""A chat with rooms on two worker processes, joined through Redis.

    redis-server --port 6379 &                             # any Redis 5 or later
    python scripts/examples/chat_cluster.py [port] [--workers N]     # port 8080, 2 workers by default
    # open http://127.0.0.1:8080/ in two browser tabs, or:
    ws connect 'ws://127.0.0.1:8080/chat/lobby?user=Ann'

``WS_BACKPLANE`` names the Redis (default ``redis://127.0.0.1:6379/0``).
The kernel spreads connections over the workers, so two users of one room
are often in different processes.  The handler is the one a single process
would run: the rooms style publishes each message on the room's Redis
channel, which only the workers with members in that room receive.

Protocol, on ``ws://HOST:PORT/chat/ROOM?user=NAME``:

* ``{"type": "welcome", "room", "user", "worker", "members"}`` once the
  room's messages from every worker reach this client (``members``: the
  room's members on every worker); the others get ``{"type": "joined"}`` then;
* the client sends text (or ``{"text": ...}``); every member of the room, on
  any worker, receives ``{"type": "message", "room", "user", "text",
  "worker"}`` once (``worker``: the sender's);
* ``{"type": "joined"|"left", "room", "member"}`` as users come and go.

HTTP: ``GET /`` is a small page; ``GET /rooms`` is ``{room: [members]}``
for the whole cluster.
"""

import os
import sys
import uuid

from ws import http
from ws.styles import rooms
from ws.styles.routes import route_ws

args = [a for a in sys.argv[1:] if not a.startswith("--")]
port = int(args[0]) if args else 8080
workers = int(sys.argv[sys.argv.index("--workers") + 1]) if "--workers" in sys.argv else 2
backplane = os.environ.get("WS_BACKPLANE", "redis://127.0.0.1:6379/0")

server = http.Server(f"127.0.0.1:{port}", backplane=backplane)


def worker_index():
    return server.worker.index if server.worker else 0


@route_ws(server, "/chat/:room")
async def chat(ctx):
    room = rooms.get(ctx.params["room"])
    user = ctx.query.get("user") or f"guest-{uuid.uuid4().hex[:6]}"
    unsubscribe = room.subscribe(ctx.send)
    room.join(user, announce=False)
    # members_async() waits until this worker's subscription and join have reached Redis:
    # from the welcome on, messages from every worker reach this client, so announce it only then.
    members = await room.members_async()
    ctx.send({"type": "welcome", "room": room.name, "user": user, "worker": worker_index(), "members": members})
    room.publish({"type": "joined", "room": room.name, "member": user})
    try:
        async for message in ctx.messages:
            text = message.get("text") if isinstance(message, dict) else message
            if isinstance(text, str) and text:
                room.publish({"type": "message", "room": room.name, "user": user, "text": text, "worker": worker_index()})
    finally:
        unsubscribe()
        room.leave(user)


@server.get("/rooms")
async def list_rooms(ctx):
    ctx.json(200, {name: await rooms.members_async(name) for name in await rooms.names_async()})


PAGE = """<!doctype html><meta charset="utf-8"><title>ws cluster chat</title>
<p>room <input id="room" value="lobby"> name <input id="user" value="guest"> <button id="join">join</button>
<pre id="log" style="height:20em;overflow:auto;border:1px solid #ccc"></pre>
<form id="say"><input id="text" size="60" autocomplete="off"> <button>send</button></form>
<script>
let sock = null;
const log = (line) => { const el = document.getElementById("log"); el.textContent += line + "\\n"; el.scrollTop = 1e9; };
document.getElementById("join").onclick = () => {
  if (sock) sock.close();
  const room = encodeURIComponent(document.getElementById("room").value);
  const user = encodeURIComponent(document.getElementById("user").value);
  sock = new WebSocket(`ws://${location.host}/chat/${room}?user=${user}`);
  sock.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome") log(`worker ${m.worker}: in ${m.room} with ${m.members.join(", ")}`);
    else if (m.type === "message") log(`${m.user} (worker ${m.worker}): ${m.text}`);
    else log(`${m.member} ${m.type}`);
  };
  sock.onclose = (e) => log(`closed (${e.code})`);
};
document.getElementById("say").onsubmit = (e) => {
  e.preventDefault();
  const box = document.getElementById("text");
  if (sock && box.value) sock.send(box.value);
  box.value = "";
};
</script>
"""


@server.get("/")
def page(ctx):
    ctx.html(200, PAGE)


def listening(address):
    print(f"worker {worker_index()} (pid {os.getpid()}) listening on http://{address}/", flush=True)


server.serve(listening, workers=workers)
