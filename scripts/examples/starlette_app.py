"""A WebSocketServer mounted in a Starlette application (FastAPI works the same way).

    uvicorn starlette_app:app --app-dir scripts/examples --port 8000

GET / is a Starlette route; ws://127.0.0.1:8000/chat is ws's broadcast chat.
"""

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from ws import WebSocketServer
from ws.asgi import ASGIApp

chat = WebSocketServer(no_server=True)
chat.on("connection", lambda sock, request: sock.on("message", lambda evt: chat.broadcast(evt.data)))


async def homepage(request):
    return PlainTextResponse(f"starlette here, {len(chat.clients)} in the chat")


app = Starlette(routes=[Route("/", homepage), WebSocketRoute("/chat", ASGIApp(chat))])
