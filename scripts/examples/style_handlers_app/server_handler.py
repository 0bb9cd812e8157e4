"""Server-side handler of the my-endpoint descriptor: greets, then answers in upper case."""

from ws.styles import handlers


def on_open(connection):
    connection.send("welcome to " + connection.endpoint)


def on_message(message, connection):
    print("server:", handlers.context.get_method(), repr(handlers.context.get_message()), flush=True)
    connection.send(message.upper())
