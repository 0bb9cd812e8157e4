"""The JavaScript (Node ``ws`` / JSH) spellings of keyword options.

``ws`` is Python first: snake_case attributes and keyword options.  Users
coming from JavaScript keep their muscle memory: every constructor passes its
options through :func:`normalize_options`, which translates the camelCase
names below.  The camelCase attributes and methods (``readyState``,
``addEventListener``, ...) are declared in the classes themselves, at the end
of each class body (Node's EventEmitter names once, in ``EventEmitter``), so
type checkers see them.
"""

from __future__ import annotations

from typing import Any

#: camelCase option -> snake_case option, for every public constructor.
OPTION_ALIASES: dict[str, str] = {
    "clientTracking": "client_tracking",
    "verifyClient": "verify_client",
    "verifyTimeout": "verify_timeout",
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
    "maxTotalBufferedAmount": "max_total_buffered_amount",
    "messageTimeout": "message_timeout",
    # WebSocketServer's connection limits
    "maxConnections": "max_connections",
    "maxConnectionsPerIp": "max_connections_per_ip",
    "perIpIpv6Prefix": "per_ip_ipv6_prefix",
    "retryAfter": "retry_after",
    "trustedProxies": "trusted_proxies",
    "rateLimit": "rate_limit",
    "byteRateLimit": "byte_rate_limit",
    "rateLimitAction": "rate_limit_action",
    "forwardedHeader": "forwarded_header",
    "followRedirects": "follow_redirects",
    "maxRedirects": "max_redirects",
    "socketPath": "socket_path",
    "maxPendingHandshakes": "max_pending_handshakes",
    "allowedOrigins": "allowed_origins",
    # ReconnectingWebSocket (ws.reconnect)
    "initialDelay": "initial_delay",
    "maxDelay": "max_delay",
    "maxRetries": "max_retries",
    "maxQueued": "max_queued",
}


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

