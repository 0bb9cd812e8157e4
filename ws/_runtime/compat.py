"""The JavaScript (Node ``ws`` / JSH) spellings, defined once, here.

``ws`` is Python first: snake_case attributes and keyword options.  Users
coming from JavaScript keep their muscle memory through the aliases below:
camelCase options are translated by :func:`normalize_options`, and
:func:`install` adds camelCase properties and methods to the public classes.
"""

from __future__ import annotations

from typing import Any

#: camelCase option -> snake_case option, for every public constructor.
OPTION_ALIASES: dict[str, str] = {
    "clientTracking": "client_tracking",
    "verifyClient": "verify_client",
    "handleProtocols": "handle_protocols",
    "maxPayload": "max_payload",
    "perMessageDeflate": "per_message_deflate",
    "noServer": "no_server",
    "handshakeTimeout": "handshake_timeout",
    "closeTimeout": "close_timeout",
    "pingInterval": "ping_interval",
    "pingTimeout": "ping_timeout",
    "maxFragments": "max_fragments",
    "maxBufferedAmount": "max_buffered_amount",
    "followRedirects": "follow_redirects",
    "maxRedirects": "max_redirects",
    "socketPath": "socket_path",
    "maxPendingHandshakes": "max_pending_handshakes",
    # ReconnectingWebSocket (ws.reconnect)
    "initialDelay": "initial_delay",
    "maxDelay": "max_delay",
    "maxRetries": "max_retries",
    "maxQueued": "max_queued",
}

#: class name -> {camelCase attribute: snake_case attribute}.
ATTRIBUTE_ALIASES: dict[str, dict[str, str]] = {
    # Every emitter (WebSocket, WebSocketServer, ...): Node's EventEmitter names.
    "EventEmitter": {
        "off": "remove_listener",
        "addListener": "add_listener",
        "removeListener": "remove_listener",
        "removeAllListeners": "remove_all_listeners",
        "listenerCount": "listener_count",
        "eventNames": "event_names",
    },
    "WebSocket": {
        "readyState": "ready_state",
        "bufferedAmount": "buffered_amount",
        "remoteAddress": "remote_address",
        "isPaused": "is_paused",
        "addListener": "add_listener",
        "removeListener": "remove_listener",
        "removeAllListeners": "remove_all_listeners",
        "addEventListener": "add_event_listener",
        "removeEventListener": "remove_event_listener",
        "listenerCount": "listener_count",
        "eventNames": "event_names",
    },
    "WebSocketServer": {
        "clientTracking": "client_tracking",
        "handleUpgrade": "handle_upgrade",
        "shouldHandle": "should_handle",
        "addListener": "add_listener",
        "removeListener": "remove_listener",
        "removeAllListeners": "remove_all_listeners",
        "listenerCount": "listener_count",
        "eventNames": "event_names",
    },
    "Request": {
        "rawHeaders": "raw_headers",
        "requestUri": "request_uri",
        "httpVersion": "http_version",
        "remoteAddress": "remote_address",
        "getHeader": "get_header",
        "hasHeader": "has_header",
        "queryAll": "query_all",
    },
    "RequestSocket": {
        "remoteAddress": "remote_address",
        "remotePort": "remote_port",
    },
    "ReconnectingWebSocket": {"readyState": "ready_state"},
    "MessageEvent": {"isBinary": "is_binary"},
    "CloseEvent": {"wasClean": "was_clean"},
    "HandlerContext": {
        "getMessage": "get_message",
        "getError": "get_error",
        "getMethod": "get_method",
        "getConnection": "get_connection",
        "isOnOpen": "is_on_open",
        "isOnMessage": "is_on_message",
        "isOnError": "is_on_error",
        "isOnClose": "is_on_close",
    },
    "ConnectionRequest": {"connectionId": "connection_id"},
}

#: Handler-module functions (``ws.handlers``): JSH name -> Python name.
HANDLER_ALIASES: dict[str, str] = {
    "onOpen": "on_open",
    "onMessage": "on_message",
    "onError": "on_error",
    "onClose": "on_close",
}

#: Module-level functions of ``ws``: JSH name -> Python name.
FUNCTION_ALIASES: dict[str, str] = {
    "createWebsocket": "create_websocket",
    "getClients": "get_clients",
    "getClient": "get_client",
    "getClientByHandler": "get_client_by_handler",
}


def export_functions(namespace: dict[str, Any]) -> None:
    """Add the camelCase names of ``FUNCTION_ALIASES`` to a module's namespace."""
    for js_name, py_name in FUNCTION_ALIASES.items():
        if py_name in namespace:
            namespace[js_name] = namespace[py_name]


def normalize_options(options: dict[str, Any]) -> dict[str, Any]:
    """Translate camelCase option names; a name given both ways is an error."""
    if not any(key in OPTION_ALIASES for key in options):
        return options
    result = dict(options)
    for js_name, py_name in OPTION_ALIASES.items():
        if js_name in result:
            if py_name in result:
                raise TypeError(f"option given twice: {js_name!r} and {py_name!r}")
            result[py_name] = result.pop(js_name)
    return result


def _alias(py_name: str) -> property:
    def get(self: Any) -> Any:
        return getattr(self, py_name)

    def set_(self: Any, value: Any) -> None:
        setattr(self, py_name, value)

    return property(get, set_, doc=f"Alias of ``{py_name}``.")


def install(*classes: type) -> None:
    """Give each class its camelCase aliases (idempotent)."""
    for cls in classes:
        for klass in cls.__mro__:
            table = ATTRIBUTE_ALIASES.get(klass.__name__)
            if not table:
                continue
            for js_name, py_name in table.items():
                if js_name in cls.__dict__:
                    continue
                setattr(cls, js_name, _alias(py_name))
