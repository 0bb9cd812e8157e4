# A listener that raises, no 'error' listener: the traceback is printed, the connection goes on, status 1.
from ws import WebSocket, WebSocketServer

wss = WebSocketServer(port=0)
wss.on("connection", lambda sock, req: sock.on("message", lambda msg: sock.send(msg)))

ws = WebSocket(f"ws://127.0.0.1:{wss.address()['port']}/")
ws.on("open", lambda: (ws.send("boom"), ws.send("after")))


def on_message(data, is_binary):
    if data == "boom":
        raise ValueError("a bug in my listener")
    print("still running:", data)
    ws.close()


ws.on("message", on_message)
ws.on("close", lambda: wss.close())
