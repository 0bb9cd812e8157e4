# send() while not OPEN, with no 'error' listener: said on stderr, once per socket.
import socket
import threading

from ws import WebSocket, WebSocketServer

# A server that takes TCP connections and never answers the upgrade: the client stays CONNECTING.
silent = socket.socket()
silent.bind(("127.0.0.1", 0))
silent.listen()
ws = WebSocket(f"ws://127.0.0.1:{silent.getsockname()[1]}/")
ws.send("too early")
ws.send("too early again")
try:
    ws.wait_open(timeout=0.5)
except TimeoutError:
    print("still connecting")
done = threading.Event()
ws.on("error", lambda err: print("error:", err))
ws.on("close", lambda: done.set())
ws.terminate()
done.wait(10)
ws.send("after close")  # an 'error' listener now: it gets this one

# A server-side socket that sends after its 'close'.
wss = WebSocketServer(port=0)
wss.on("connection", lambda sock, req: sock.on("close", lambda: (sock.send("too late"), sock.send("again"), wss.close())))
client = WebSocket(f"ws://127.0.0.1:{wss.address()['port']}/")
client.on("open", lambda: client.close())
