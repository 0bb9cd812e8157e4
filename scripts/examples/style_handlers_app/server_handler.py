"""Server-side handler of the my-endpoint descriptor: greets, then answers in upper case."""

import ws


def on_open(connection):
    connection.send("welcome to " + connection.endpoint)


def on_message(message, connection):
    print("server:", ws.context.get_method(), repr(ws.context.get_message()), flush=True)
    connection.send(message.upper())
