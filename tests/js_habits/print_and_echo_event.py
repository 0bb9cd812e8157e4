# JSH's one-argument listener, used as a Node user would: print(msg), send(msg) to echo it.
from ws import WebSocket, WebSocketServer

wss = WebSocketServer(port=0)
wss.on("connection", lambda sock, req: sock.on("message", lambda msg: sock.send(msg)))

ws = WebSocket(f"ws://127.0.0.1:{wss.address()['port']}/")
ws.on("open", lambda: (ws.send("hi there"), ws.send(b"\xff\x00")))
count = 0


def on_message(msg):
    global count
    count += 1
    print(msg)
    print(f"got {msg} ({'binary' if msg.is_binary else 'text'})")
    if count == 2:
        ws.close()


ws.on("message", on_message)
ws.on("close", lambda: wss.close())
