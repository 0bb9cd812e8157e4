"""The lean accept (``handshake.lean_request``) against ``websockets``' own check, on generated requests.

``accept`` checks the common upgrade request itself and hands every other
to ``websockets``.  For any request, valid, borderline or invalid, the
decision with the lean path must be the one ``websockets`` alone makes:
accept or refuse, the status, reason and headers of a refusal, the 101's
header lines, the subprotocol, and the protocol object's settings.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from websockets.datastructures import Headers

from ws.protocol import _websockets, handshake
from ws.protocol.handshake import Accepted, Policy, Refused, accept, lean_request
from ws.request import Request

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT_KEY = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455, section 1.3

_TOKEN_CHARS = "-!#$%&'*+.^_`|~0123456789abcXYZ"


def request(headers: list[tuple[str, str]], method: str = "GET", http_version: str = "1.1") -> Request:
    return Request(method, "/ws", headers, http_version=http_version, peername=("127.0.0.1", 5000))


def browser_request(*extra: tuple[str, str]) -> Request:
    return request([
        ("Host", "example.test"), ("Connection", "Upgrade"), ("Pragma", "no-cache"), ("Upgrade", "websocket"),
        ("Origin", "https://example.test"), ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"), *extra,
    ])


# -- the common requests take the lean path ---------------------------------------------


def test_a_browsers_request_is_accepted_without_websockets() -> None:
    checked = lean_request(browser_request(("Sec-WebSocket-Protocol", "chat, superchat")), Policy())
    assert checked == (ACCEPT_KEY, ["chat", "superchat"])


def test_token_lists_and_case_as_clients_write_them() -> None:
    req = request([
        ("upgrade", "WebSocket"), ("CONNECTION", "keep-alive, Upgrade"), ("sec-websocket-key", KEY),
        ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b ,\tc"),
    ])
    assert lean_request(req, Policy()) == (ACCEPT_KEY, ["a", "b", "c"])


def test_what_the_lean_path_leaves_to_websockets() -> None:
    policy = Policy()
    assert lean_request(browser_request(), Policy(per_message_deflate=True)) is None  # extensions to negotiate
    assert lean_request(browser_request(("Origin", "https://other.test")), policy) is None  # two Origins: a 400
    assert lean_request(request([("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", KEY),
                                 ("Sec-WebSocket-Version", "13")], method="POST"), policy) is None
    non_canonical = KEY[:21] + "R=="  # decodes to 16 bytes too; websockets takes it
    assert lean_request(request([("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                 ("Sec-WebSocket-Key", non_canonical), ("Sec-WebSocket-Version", "13")]), policy) is None
    assert isinstance(accept(request([("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                      ("Sec-WebSocket-Key", non_canonical), ("Sec-WebSocket-Version", "13")]),
                             policy), Accepted)


def test_accept_uses_the_lean_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common request builds no ``websockets`` check at all."""

    def unused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("websockets' check ran for a common request")

    monkeypatch.setattr(handshake, "_checked_by_websockets", unused)
    result = accept(browser_request(("Sec-WebSocket-Protocol", "chat")), Policy(), date="D")
    assert isinstance(result, Accepted)
    assert result.headers == (
        ("Date", "D"), ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT_KEY),
        ("Sec-WebSocket-Protocol", "chat"),
    )
    assert result.protocol is not None and result.protocol.subprotocol == "chat"


# -- generated requests: the lean decision is websockets' decision ---------------------------

_keys = st.one_of(
    st.binary(min_size=16, max_size=16).map(lambda raw: base64.b64encode(raw).decode()),
    st.binary(min_size=0, max_size=20).map(lambda raw: base64.b64encode(raw).decode()),
    st.sampled_from([KEY, KEY[:21] + "R==", KEY[:-2], KEY + "=", KEY.replace("d", "*"), " " + KEY, KEY.lower(), ""]),
    st.text(max_size=26),
)
_tokens = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=6)
_separators = st.sampled_from([",", ", ", " ,", ",\t", ",,", " , ", ", ,", ";", " "])


@st.composite
def _token_lists(draw: Any, words: st.SearchStrategy[str]) -> str:
    items = draw(st.lists(words, min_size=0, max_size=4))
    text = ""
    for index, item in enumerate(items):
        if index:
            text += draw(_separators)
        text += item
    if draw(st.booleans()):
        text = draw(st.sampled_from(["", ",", " ", ", "])) + text + draw(st.sampled_from(["", ",", " ", "\t"]))
    return text


_connections = st.one_of(
    st.sampled_from(["Upgrade", "upgrade", "UPGRADE", "keep-alive, Upgrade", "Upgrade, keep-alive", "keep-alive",
                     "", "Upgrade,", ",Upgrade", "Up grade", "Upgrade;", "close, upgrade, keep-alive"]),
    _token_lists(st.one_of(_tokens, st.sampled_from(["Upgrade", "upgrade", "Upgradé"]))),
)
_upgrades = st.one_of(
    st.sampled_from(["websocket", "WebSocket", "WEBSOCKET", "websocket, h2c", "h2c", "", "websocket/13",
                     "web socket", "websockets", " websocket"]),
    st.text(max_size=12),
)
_versions = st.sampled_from(["13", "8", "13, 8", "", " 13", "013", "13 "])
_protocols = st.one_of(
    _token_lists(st.one_of(_tokens, st.sampled_from(["chat", "superchat", "mqtt"]))),
    st.text(max_size=10),
)
_extensions = st.sampled_from([
    "permessage-deflate; client_max_window_bits", "permessage-deflate", "x-webkit-deflate-frame",
    "permessage-deflate; server_max_window_bits=10, permessage-deflate", "garbage;;=", "",
])
_values = st.one_of(st.text(max_size=12), st.sampled_from(["\x00", "a\nb", "é", "\u20ac", "\t", "x\x7f"]))
_names = st.sampled_from(["Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                          "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Origin", "X-Other"])


_valid = {
    "Upgrade": st.sampled_from(["websocket", "WebSocket"]),
    "Connection": st.sampled_from(["Upgrade", "upgrade", "keep-alive, Upgrade", "Upgrade,keep-alive"]),
    "Sec-WebSocket-Key": st.binary(min_size=16, max_size=16).map(lambda raw: base64.b64encode(raw).decode()),
    "Sec-WebSocket-Version": st.just("13"),
}


@st.composite
def upgrade_requests(draw: Any) -> Request:
    headers: list[tuple[str, str]] = [("Host", "example.test")]
    parts = [
        ("Upgrade", _upgrades), ("Connection", _connections), ("Sec-WebSocket-Key", _keys),
        ("Sec-WebSocket-Version", _versions),
    ]
    for name, values in parts:  # usually once and as clients write it; sometimes missing, twice or odd
        mutated = draw(st.integers(0, 7)) == 0
        count = draw(st.sampled_from([1, 1, 0, 2])) if mutated else 1
        for _ in range(count):
            value = draw(values) if mutated else draw(_valid[name])
            headers.append((draw(st.sampled_from([name, name.lower(), name.upper()])), value))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        headers.append(("Sec-WebSocket-Protocol", draw(_protocols)))
    for _ in range(draw(st.sampled_from([0, 0, 1]))):
        headers.append(("Sec-WebSocket-Extensions", draw(_extensions)))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        headers.append(("Origin", draw(st.sampled_from(["https://example.test", "null", "http://a.test:8080"]))))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        headers.append((draw(_names), draw(_values)))
    headers = draw(st.permutations(headers))
    method = draw(st.sampled_from(["GET"] * 8 + ["POST", "get", "HEAD"]))
    version = draw(st.sampled_from(["1.1"] * 8 + ["1.0", "2"]))
    return request(list(headers), method, version)


_policies = st.builds(
    Policy,
    per_message_deflate=st.sampled_from([False, True, {"server_max_window_bits": 10}]),
    protocols=st.sampled_from([None, ["chat"], ["mqtt", "chat"]]),
    max_payload=st.sampled_from([None, 1 << 20, 100 << 20]),
)


def _reference(req: Request, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(handshake, "lean_request", lambda _request, _policy: None)
        return accept(req, policy, date="Mon, 07 Dec 2026 22:00:00 GMT")


def _summary(result: Any) -> tuple[Any, ...]:
    if isinstance(result, Refused):
        return ("refused", result.status, result.reason, result.headers)
    assert isinstance(result, Accepted), result
    proto = result.protocol
    assert proto is not None
    return (
        "accepted", result.subprotocol, result.extensions, result.header_lines(), proto.subprotocol,
        proto.message_limit(), bool(proto.extensions), proto.debug,
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=upgrade_requests(), policy=_policies)
def test_lean_and_websockets_decide_alike(req: Request, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    event(f"lean path: {lean_request(req, policy) is not None}")
    lean = accept(req, policy, date="Mon, 07 Dec 2026 22:00:00 GMT")
    assert _summary(lean) == _summary(_reference(req, policy, monkeypatch))


@settings(max_examples=600, deadline=None)
@given(req=upgrade_requests(), policy=_policies)
def test_what_the_lean_check_takes_websockets_takes(req: Request, policy: Policy) -> None:
    """The lean check alone, against ``websockets``' ``process_request``: same key, same subprotocols offered."""
    checked = lean_request(req, policy)
    if checked is None:
        return
    offered: list[str] = []
    proto = _websockets.Server(
        extensions=policy.extension_factories(), select_subprotocol=lambda _p, subs: offered.extend(subs),
    )
    accept_key, extensions = proto.check_request(req.method, req.url, Headers(req.raw_headers), req.http_version)
    assert (accept_key, offered) == checked
    assert extensions is None
