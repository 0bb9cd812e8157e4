# ReconnectingWebSocket with Node's message signature and the browser's onmessage.
from ws import ReconnectingWebSocket, WebSocketServer

wss = WebSocketServer(port=0)
wss.on("connection", lambda sock, req: sock.on("message", lambda msg: sock.send(msg)))

rws = ReconnectingWebSocket(f"ws://127.0.0.1:{wss.address()['port']}/")
rws.onmessage = lambda event: print("onmessage:", event.data)


def on_message(data, is_binary):
    print("node listener:", data, is_binary)
    rws.close()


rws.on("message", on_message)
rws.on("close", lambda code, reason: wss.close())
rws.onopen = lambda event: rws.send("via onopen")  # last: the echo must find both listeners
