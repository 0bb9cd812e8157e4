"""Client-side handler, JSH spelling: onOpen/onMessage/onError/onClose with ws.context."""

import ws

received = []


def onOpen():
    print("client: opened,", ws.context.get_method(), flush=True)
    # Until it closes, the client is in the registry.
    print("registry:", [(c["uri"].rsplit("/", 1)[-1], c["handler"]) for c in ws.get_clients()], flush=True)


def onMessage(message):
    print("client:", ws.context.getMethod(), repr(message), flush=True)
    received.append(message)
    connection = ws.context.get_connection()
    if len(received) == 1:
        connection.send("hello")
    else:
        connection.close()


def onError(error):
    print("client: error", ws.context.get_error(), flush=True)


def onClose():
    print("client:", ws.context.get_method(), flush=True)
