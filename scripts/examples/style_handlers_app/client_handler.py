"""Client-side handler, JSH spelling: onOpen/onMessage/onError/onClose with handlers.context (from ws.styles import handlers)."""

from ws.styles import handlers

received = []


def onOpen():
    print("client: opened,", handlers.context.get_method(), flush=True)
    # Until it closes, the client is in the registry.
    print("registry:", [(c["uri"].rsplit("/", 1)[-1], c["handler"]) for c in handlers.get_clients()], flush=True)


def onMessage(message):
    print("client:", handlers.context.getMethod(), repr(message), flush=True)
    received.append(message)
    connection = handlers.context.get_connection()
    if len(received) == 1:
        connection.send("hello")
    else:
        connection.close()


def onError(error):
    print("client: error", handlers.context.get_error(), flush=True)


def onClose():
    print("client:", handlers.context.get_method(), flush=True)
