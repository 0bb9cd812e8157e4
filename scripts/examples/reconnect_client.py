"""A client that survives server restarts: ReconnectingWebSocket.

    python scripts/examples/reconnect_client.py ws://127.0.0.1:8080/ [COUNT]

Sends "tick 0", "tick 1", ... one after the other's echo (COUNT of them,
default 10), printing every event.  Kill and restart the server meanwhile:
the client reconnects with backoff, ticks sent while it is down wait in the
queue, and the one lost with the connection is sent again.
"""

import sys
import threading

from ws.reconnect import ReconnectingWebSocket

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
ws = ReconnectingWebSocket(url, initial_delay=0.2, max_delay=2.0)
state = {"next": 0, "pending": None}


def send_next():
    state["pending"] = f"tick {state['next']}"
    ws.send(state["pending"])


def on_message(evt):
    print("echo", evt.data, flush=True)
    if evt.data != state["pending"]:
        return
    state["pending"] = None
    state["next"] += 1
    if state["next"] == count:
        ws.close()
    else:
        threading.Timer(0.2, send_next).start()  # send() is thread-safe


def on_open():
    print("open", flush=True)
    if state["next"] == 0 and state["pending"] is None:
        send_next()


def on_close(code, reason):
    print("close", code, flush=True)
    # A tick that went out on the lost connection never got its echo: send it
    # again (it waits in the queue until the next 'open').
    if state["pending"] is not None and ws.queued == 0 and ws.ready_state != ws.CLOSED:
        ws.send(state["pending"])


ws.on("open", on_open)
ws.on("message", on_message)
ws.on("close", on_close)
ws.on("reconnect", lambda attempt, delay: print(f"reconnect {attempt} in {delay:.2f}s", flush=True))
ws.on("error", lambda exc: print("error", exc, flush=True))
