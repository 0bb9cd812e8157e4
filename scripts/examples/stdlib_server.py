"""WebSockets on the standard library's ThreadingHTTPServer.

    python scripts/examples/stdlib_server.py [PORT]    # serve until Ctrl-C
    python scripts/examples/stdlib_server.py --self-test

Your handler keeps every normal request; upgrades on /ws are taken over by
``WebSocketServer`` and run on ws's event loop.
"""

import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ws import WebSocket, WebSocketServer


class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"stdlib page"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


self_test = "--self-test" in sys.argv
port = 0 if self_test else int(sys.argv[1]) if len(sys.argv) > 1 else 8000
httpd = ThreadingHTTPServer(("127.0.0.1", port), Page)
wss = WebSocketServer(server=httpd, path="/ws")
wss.on("connection", lambda socket, request: socket.on("message", lambda evt: socket.send(evt.data)))
port = httpd.server_address[1]

if not self_test:
    print(f"http://127.0.0.1:{port}/ and ws://127.0.0.1:{port}/ws", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    wss.close()
    sys.exit(0)

threading.Thread(target=httpd.serve_forever, daemon=True).start()
with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
    print(f"GET /: {response.status} {response.read().decode()}")
with WebSocket(f"ws://127.0.0.1:{port}/ws") as socket:
    socket.send("hello stdlib")
    print("echo:", socket.recv(timeout=10).data)
httpd.shutdown()
wss.close()
