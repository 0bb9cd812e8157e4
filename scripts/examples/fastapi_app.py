"""A WebSocketServer mounted in a FastAPI application, beside a FastAPI route.

    uvicorn fastapi_app:app --app-dir scripts/examples --port 8000
    (or: cd scripts/examples && hypercorn fastapi_app:app -b 127.0.0.1:8000)

GET / is a FastAPI route (JSON); ws://127.0.0.1:8000/chat is ws's broadcast chat.
"""

from fastapi import FastAPI

from ws import WebSocketServer
from ws.asgi import ASGIApp

chat = WebSocketServer(no_server=True)
chat.on("connection", lambda sock, request: sock.on("message", lambda evt: chat.broadcast(evt.data)))

app = FastAPI()


@app.get("/")
async def status():
    return {"server": "fastapi", "in_chat": len(chat.clients)}


# FastAPI's own @app.websocket wants a function of a Starlette WebSocket; an
# ASGI application (ours) goes on the router as a plain WebSocket route.
app.router.add_websocket_route("/chat", ASGIApp(chat))
