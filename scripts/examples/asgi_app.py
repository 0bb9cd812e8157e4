"""A WebSocketServer as an ASGI app, next to a plain HTTP app.

    uvicorn asgi_app:app --app-dir scripts/examples --port 8000

ws://127.0.0.1:8000/ws?name=you greets, echoes, and answers 'close-me' and
'broadcast'; ?token=bad is refused with 403; every other request (plain
HTTP) goes to the fallback app.
"""

from ws import Reject, WebSocketServer
from ws.asgi import ASGIApp


def verify(info):
    if info.req.query("token") == "bad":
        raise Reject(403, "Forbidden: bad token")
    return True


def pick(offered, request):
    return "chat" if "chat" in offered else None


wss = WebSocketServer(no_server=True, path="/ws", verify_client=verify, handle_protocols=pick)


def on_connection(sock, request):
    sock.send(f"welcome {request.query('name') or 'anonymous'}")

    def on_message(evt):
        if evt.data == "close-me":
            sock.close(4002, "as asked")
        elif evt.data == "broadcast":
            wss.broadcast("to all")
        else:
            sock.send(evt.data)

    sock.on("message", on_message)
    sock.on("close", lambda code, reason: print("closed", code, reason, flush=True))


wss.on("connection", on_connection)


async def http_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"hello over http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


app = ASGIApp(wss, fallback=http_app)
