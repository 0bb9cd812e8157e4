# The browser's way: handler properties, and addEventListener.
from ws import WebSocket, WebSocketServer

wss = WebSocketServer(port=0)
wss.on("connection", lambda sock, req: sock.on("message", lambda data, is_binary: sock.send(data.upper())))

ws = WebSocket(f"ws://127.0.0.1:{wss.address()['port']}/")


def first_handler(event):
    print("replaced handler ran")  # never: onmessage was assigned again below


def on_message(event):
    print("onmessage:", event.data, event.type)
    ws.close(1000, "bye")


ws.onmessage = first_handler
ws.onmessage = on_message
ws.addEventListener("message", lambda event: print("listener:", event.data))
ws.onerror = lambda event: print("onerror:", event.message)
ws.onclose = lambda event: (print("onclose:", event.code, event.reason, event.was_clean), wss.close())
print("handler is on_message:", ws.onmessage is on_message)
# Last: the script's lines run while the reactor connects, and the reply must find every handler set.
ws.onopen = lambda: ws.send("hello")
