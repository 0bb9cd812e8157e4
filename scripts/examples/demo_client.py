"""The demo's Python client: joins the chat, says a few things, prints what comes back."""

import sys

from ws import WebSocket

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/chat"
lines = ["hello from Python", "this is ws.on('message') in a plain script", "bye"]
received = []

ws = WebSocket(url)


def on_open():
    print(f"connected to {ws.url}")
    for line in lines:
        ws.send(line)


def on_message(evt):
    print("  <", evt.data)
    received.append(evt.data)
    if len(received) == len(lines):
        ws.close(1000, "demo done")


ws.on("open", on_open)
ws.on("message", on_message)
ws.on("error", lambda err: print("error:", err))
ws.on("close", lambda code, reason: print(f"closed {code} {reason}"))
