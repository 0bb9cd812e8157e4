# Node's EventEmitter habits on a ws object.
from ws import WebSocketServer

wss = WebSocketServer(noServer=True)
calls = []


def tick(n):
    calls.append(("tick", n))


wss.on("tick", tick)
wss.on("tick", tick)  # added twice: called twice
wss.prependListener("tick", lambda n: calls.append(("first", n)))
wss.once("tick", lambda n: calls.append(("once", n)))
print("listenerCount:", wss.listenerCount("tick"), wss.listener_count("tick", tick))
wss.emit("tick", 1)
wss.removeListener("tick", tick)  # one registration goes
wss.emit("tick", 2)
wss.off("tick", tick)
wss.emit("tick", 3)
print("calls:", calls)
print("eventNames:", wss.eventNames())
print("maxListeners:", wss.getMaxListeners())
for i in range(11):
    wss.on("leak", lambda: None)  # the 11th prints Node's warning (once)
wss.on("leak", lambda: None)
wss.close()
