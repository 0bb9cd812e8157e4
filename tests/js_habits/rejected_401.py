# A server that refuses the handshake (verifyClient returns false): the client says why.
from ws import WebSocket, WebSocketServer

wss = WebSocketServer(port=0, verifyClient=lambda info: False)
ws = WebSocket(f"ws://127.0.0.1:{wss.address()['port']}/")
ws.on("close", lambda code: (print("closed", code), wss.close()))
