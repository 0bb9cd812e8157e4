# Inside asyncio the program owns the loop and its exit status: an unhandled 'error' is printed at once,
# and the status stays the program's (0 here).
import asyncio
import socket

from ws import WebSocket


async def main():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    closed = asyncio.get_running_loop().create_future()
    ws = WebSocket(f"ws://127.0.0.1:{port}/")
    ws.on("close", lambda code, reason: closed.set_result(code))
    print("closed", await asyncio.wait_for(closed, 10))


asyncio.run(main())
