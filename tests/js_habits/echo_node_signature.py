# Node: ws.on('message', (data, isBinary) => ws.send(data))
from ws import WebSocket, WebSocketServer

wss = WebSocketServer(port=0)


def on_connection(ws, req):
    ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))


wss.on("connection", on_connection)

ws = WebSocket(f"ws://127.0.0.1:{wss.address()['port']}/")
ws.on("open", lambda: (ws.send("hello"), ws.send(b"\x00\x01")))
received = []


def on_message(data, is_binary):
    print("received:", repr(data), is_binary)
    received.append(data)
    if len(received) == 2:
        ws.close()


ws.on("message", on_message)
ws.on("close", lambda code, reason: (print("closed", code), wss.close()))
