"""Handler modules: endpoints from .websocket descriptor files, a client driven by a handler module.

    python scripts/examples/style_handlers.py [port]

The descriptors and handler modules are in style_handlers_app/; a broken
descriptor there shows how a bad file is reported while the others load.
"""

import sys
import time
from pathlib import Path

from ws.styles import handlers
from ws import http
from ws.styles.handlers import load_websockets

port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
here = Path(__file__).resolve().parent

server = http.Server(f"127.0.0.1:{port}")
loaded = load_websockets(server, here / "style_handlers_app", prefix="/websockets/v4/service")
print("endpoints:", sorted(loaded.endpoints), flush=True)
for file, error in loaded.errors.items():
    print("bad descriptor:", Path(file).name, "-", error, flush=True)
server.serve()
address = server.address

# The client's events go to the handler module given by its import path.
client = handlers.create_websocket(f"ws://{address}/websockets/v4/service/my-endpoint", "style_handlers_app.client_handler")

# Plain scripts may wait: the client lives on the background loop.
deadline = time.monotonic() + 10
while handlers.get_client(client.id) is not None and time.monotonic() < deadline:
    time.sleep(0.05)
print("client left the registry:", handlers.get_client_by_handler("style_handlers_app.client_handler") is None, flush=True)
server.close()
