# A peer breaks the protocol on a server's socket that has no 'error' listener: reported at once,
# but the script's exit status stays 0 (the peer caused it; a server runs for long).
import base64
import os
import socket

from ws import WebSocketServer

wss = WebSocketServer(port=0)
wss.on("connection", lambda sock, req: sock.on("close", lambda code: (print("server socket closed", code), wss.close())))

peer = socket.create_connection(("127.0.0.1", wss.address()["port"]))
key = base64.b64encode(os.urandom(16)).decode()
peer.sendall(
    f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
)
response = b""
while b"\r\n\r\n" not in response:
    response += peer.recv(4096)
peer.sendall(b"\x81\x02hi")  # a client frame without a mask: a protocol error
peer.settimeout(10)
while peer.recv(4096):  # until the server closes the connection
    pass
peer.close()
