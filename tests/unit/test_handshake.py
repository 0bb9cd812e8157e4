"""The handshake decision without sockets: ``ws.protocol.handshake.accept``/``admit``."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.protocol import State

from ws.exceptions import Reject, WebSocketError
from ws.protocol import _websockets
from ws.protocol.handshake import Accepted, Policy, Refused, VerifyInfo, accept, admit
from ws.request import Request

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT_KEY = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455, section 1.3


def upgrade(
    *,
    method: str = "GET",
    path: str = "/ws",
    version: str | None = "13",
    key: str | None = KEY,
    upgrade: str | None = "websocket",
    connection: str | None = "Upgrade",
    http_version: str = "1.1",
    extra: tuple[tuple[str, str], ...] = (),
) -> Request:
    headers = [("Host", "example.test")]
    for name, value in (
        ("Upgrade", upgrade),
        ("Connection", connection),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", version),
    ):
        if value is not None:
            headers.append((name, value))
    return Request(method, path, [*headers, *extra], http_version=http_version, peername=("127.0.0.1", 5000))


def accepted(result: Accepted | Refused) -> Accepted:
    assert isinstance(result, Accepted), result
    return result


def refused(result: Accepted | Refused) -> Refused:
    assert isinstance(result, Refused), result
    return result


def header(result: Accepted, name: str) -> str | None:
    values = [value for key, value in result.headers if key.lower() == name.lower()]
    assert len(values) <= 1
    return values[0] if values else None


# -- accepting --------------------------------------------------------------------------


def test_accept_without_subprotocol() -> None:
    result = accepted(accept(upgrade(), Policy(), date="Mon, 07 Dec 2026 10:00:00 GMT"))
    assert result.subprotocol is None and result.extensions is None
    assert result.headers == (
        ("Date", "Mon, 07 Dec 2026 10:00:00 GMT"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ACCEPT_KEY),
    )
    assert result.response() == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Date: Mon, 07 Dec 2026 10:00:00 GMT\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ACCEPT_KEY.encode() + b"\r\n\r\n"
    )
    proto = result.protocol
    assert proto is not None
    assert proto.data_to_send() == []  # the decision wrote nothing


def test_the_protocol_object_of_websockets_check_waits_for_the_101() -> None:
    """Off the lean path (here a key websockets takes, not canonical), ``websockets``' object, CONNECTING."""
    proto = accepted(accept(upgrade(key=KEY[:21] + "R=="), Policy())).protocol
    assert proto is not None
    assert proto.state is State.CONNECTING  # the host marks it open once the 101 is written
    assert proto.data_to_send() == []


def test_accept_without_date_has_no_date_header() -> None:
    result = accepted(accept(upgrade(), Policy()))
    assert header(result, "Date") is None and header(result, "Sec-WebSocket-Accept") == ACCEPT_KEY


def test_accept_configures_the_protocol_limit() -> None:
    proto = accepted(accept(upgrade(), Policy(max_payload=1234))).protocol
    assert proto is not None
    assert proto.message_limit() == 1234
    # websockets' own attribute (max_message_size in 17, max_size before), once built
    real = proto.real() if isinstance(proto, _websockets.LazyServer) else proto
    assert getattr(real, "max_message_size", getattr(real, "max_size", None)) == 1234


def test_first_offered_subprotocol_without_rules() -> None:
    result = accepted(accept(upgrade(extra=(("Sec-WebSocket-Protocol", "a, b"),)), Policy()))
    assert result.subprotocol == "a" and header(result, "Sec-WebSocket-Protocol") == "a"
    assert result.protocol is not None and result.protocol.subprotocol == "a"


@pytest.mark.parametrize("protocols, expected", [(["b", "z"], "b"), (["z"], None), ([], None)])
def test_protocols_list_picks_the_first_known(protocols: list[str], expected: str | None) -> None:
    result = accepted(accept(upgrade(extra=(("Sec-WebSocket-Protocol", "a, b"),)), Policy(protocols=protocols)))
    assert result.subprotocol == expected
    assert header(result, "Sec-WebSocket-Protocol") == expected


def test_no_offer_no_subprotocol_and_handle_protocols_not_called() -> None:
    calls: list[Any] = []

    def choose(offered: list[str], request: Request) -> str:
        calls.append(offered)
        return "x"

    policy = Policy(handle_protocols=choose)
    result = accepted(accept(upgrade(), policy))
    assert result.subprotocol is None and calls == []


# -- verify_client --------------------------------------------------------------------------


def test_verify_client_receives_origin_request_and_secure() -> None:
    seen: list[VerifyInfo] = []

    def verify(info: VerifyInfo) -> bool:
        seen.append(info)
        return True

    request = upgrade(extra=(("Origin", "http://o.test"),))
    accepted(accept(request, Policy(verify_client=verify)))
    (info,) = seen
    assert info.origin == "http://o.test" and info["req"] is request and info.secure is False


@pytest.mark.parametrize("verdict", [True, (True,), (1, 403, "ignored"), "yes"])
def test_verify_client_accepting_verdicts(verdict: Any) -> None:
    accepted(accept(upgrade(), Policy(verify_client=lambda info: verdict)))


@pytest.mark.parametrize(
    "verdict, status, reason, headers",
    [
        (False, 401, "Unauthorized", ()),
        (None, 401, "Unauthorized", ()),
        ((), 401, "Unauthorized", ()),
        ((False,), 401, "Unauthorized", ()),
        ((False, 400), 400, "Bad Request", ()),
        ((False, 403, "Go away", {"X-Why": "banned"}), 403, "Go away", (("X-Why", "banned"),)),
        ((False, 429, "Slow down", [("Retry-After", 7)]), 429, "Slow down", (("Retry-After", "7"),)),
    ],
)
def test_verify_client_refusing_verdicts(verdict: Any, status: int, reason: str, headers: tuple[tuple[str, str], ...]) -> None:
    result = refused(accept(upgrade(), Policy(verify_client=lambda info: verdict)))
    assert (result.status, result.reason, result.headers) == (status, reason, headers)
    assert result.error is None  # a refusal, not a server error


def test_verify_client_raising_reject() -> None:
    def verify(info: VerifyInfo) -> bool:
        raise Reject(418, "No coffee", {"X-Teapot": "yes"})

    result = refused(accept(upgrade(), Policy(verify_client=verify)))
    assert (result.status, result.reason, result.headers, result.error) == (418, "No coffee", (("X-Teapot", "yes"),), None)


def test_verify_client_raising_is_a_500_carrying_the_error() -> None:
    bug = RuntimeError("verify bug")

    def verify(info: VerifyInfo) -> bool:
        raise bug

    result = refused(accept(upgrade(), Policy(verify_client=verify)))
    assert (result.status, result.reason, result.headers) == (500, "Internal Server Error", ())
    assert result.error is bug and "verify_client" in result.problem


def test_verify_client_runs_before_handle_protocols() -> None:
    calls: list[str] = []

    def choose(offered: list[str], request: Request) -> str:
        calls.append("choose")
        return offered[0]

    def verify(info: VerifyInfo) -> bool:
        calls.append("verify")
        return False

    policy = Policy(verify_client=verify, handle_protocols=choose)
    refused(accept(upgrade(extra=(("Sec-WebSocket-Protocol", "a"),)), policy))
    assert calls == ["verify"]


# -- handle_protocols --------------------------------------------------------------------------


def test_handle_protocols_chooses() -> None:
    offered: list[Any] = []

    def choose(protocols: list[str], request: Request) -> str:
        offered.append((protocols, request.path))
        return "b"

    result = accepted(accept(upgrade(extra=(("Sec-WebSocket-Protocol", "a, b, c"),)), Policy(handle_protocols=choose)))
    assert result.subprotocol == "b" and header(result, "Sec-WebSocket-Protocol") == "b"
    assert offered == [(["a", "b", "c"], "/ws")]


@pytest.mark.parametrize("answer", [None, False, ""])
def test_handle_protocols_choosing_none(answer: Any) -> None:
    policy = Policy(handle_protocols=lambda offered, req: answer)
    result = accepted(accept(upgrade(extra=(("Sec-WebSocket-Protocol", "a"),)), policy))
    assert result.subprotocol is None and header(result, "Sec-WebSocket-Protocol") is None


def test_handle_protocols_raising_is_a_500_carrying_the_error() -> None:
    bug = RuntimeError("choose bug")

    def choose(offered: list[str], request: Request) -> str:
        raise bug

    result = refused(accept(upgrade(extra=(("Sec-WebSocket-Protocol", "a"),)), Policy(handle_protocols=choose)))
    assert (result.status, result.error) == (500, bug) and "handle_protocols" in result.problem


def test_handle_protocols_choosing_what_was_not_offered_is_a_500() -> None:
    result = refused(accept(upgrade(extra=(("Sec-WebSocket-Protocol", "a"),)), Policy(handle_protocols=lambda o, r: "zzz")))
    assert result.status == 500 and isinstance(result.error, WebSocketError)
    assert "'zzz'" in str(result.error) and result.problem == str(result.error)


# -- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_, status, text, headers",
    [
        (upgrade(key=None), 400, "Sec-WebSocket-Key", ()),
        (upgrade(key="short"), 400, "Sec-WebSocket-Key", ()),
        (upgrade(upgrade="h2c"), 400, "Upgrade", ()),
        (upgrade(upgrade=None), 400, "Upgrade", ()),
        (upgrade(connection="keep-alive"), 400, "Connection", ()),
        (upgrade(version=None), 400, "Sec-WebSocket-Version", ()),
        (upgrade(version="8"), 426, "Unsupported WebSocket version: 8", (("Sec-WebSocket-Version", "13"),)),
        (upgrade(method="POST"), 405, "GET", (("Allow", "GET"),)),
        (upgrade(http_version="1.0"), 505, "HTTP/1.1", ()),
    ],
    ids=["no-key", "bad-key", "wrong-upgrade", "no-upgrade", "no-connection-upgrade", "no-version", "version-8",
         "post", "http-1.0"],
)
def test_bad_requests_are_refused_with_their_status(request_: Request, status: int, text: str, headers: tuple[tuple[str, str], ...]) -> None:
    hooks: list[str] = []

    def verify(info: VerifyInfo) -> bool:
        hooks.append("verify")
        return True

    policy = Policy(verify_client=verify)
    result = refused(accept(request_, policy))
    assert result.status == status and text in result.reason, result
    assert result.headers == headers and result.error is None
    assert hooks == []  # the user's hooks never see a malformed request


# -- permessage-deflate ------------------------------------------------------------------


DEFLATE_OFFER = (("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),)


def test_deflate_off_ignores_the_offer() -> None:
    result = accepted(accept(upgrade(extra=DEFLATE_OFFER), Policy()))
    assert result.extensions is None and header(result, "Sec-WebSocket-Extensions") is None
    assert result.protocol is not None and result.protocol.extensions == []


def test_deflate_on_negotiates_the_recommended_settings() -> None:
    result = accepted(accept(upgrade(extra=DEFLATE_OFFER), Policy(per_message_deflate=True)))
    assert result.extensions is not None and result.extensions.startswith("permessage-deflate")
    assert "server_max_window_bits=12" in result.extensions  # websockets' recommended 4 KiB window
    assert header(result, "Sec-WebSocket-Extensions") == result.extensions
    assert result.protocol is not None and [e.name for e in result.protocol.extensions] == ["permessage-deflate"]


def test_deflate_settings_as_a_dict() -> None:
    policy = Policy(per_message_deflate={"server_no_context_takeover": True})
    result = accepted(accept(upgrade(extra=DEFLATE_OFFER), policy))
    assert result.extensions is not None and "server_no_context_takeover" in result.extensions


def test_deflate_on_without_an_offer() -> None:
    result = accepted(accept(upgrade(), Policy(per_message_deflate=True)))
    assert result.extensions is None


# -- the 'headers' edit ------------------------------------------------------------------


def test_header_lines_and_their_edit() -> None:
    result = accepted(accept(upgrade(extra=(("Sec-WebSocket-Protocol", "chat"),)), Policy(), date="D"))
    lines = result.header_lines()
    assert lines == [
        "HTTP/1.1 101 Switching Protocols",
        "Date: D",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {ACCEPT_KEY}",
        "Sec-WebSocket-Protocol: chat",
    ]
    lines.append("Set-Cookie: session=abc")
    lines.append(("X-Served-By", "ws"))
    lines.remove("Date: D")
    edited = result.edited(lines)
    assert edited.headers[-2:] == (("Set-Cookie", "session=abc"), ("X-Served-By", "ws"))
    assert header(edited, "Date") is None
    assert (edited.subprotocol, edited.extensions, edited.protocol) == (result.subprotocol, None, result.protocol)
    assert edited.response().startswith(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
    assert edited.response().endswith(b"Set-Cookie: session=abc\r\nX-Served-By: ws\r\n\r\n")
    assert result.headers != edited.headers  # the original answer is unchanged


def test_an_edit_cannot_change_the_status_line() -> None:
    result = accepted(accept(upgrade(), Policy()))
    edited = result.edited(["HTTP/1.1 200 OK", "X-A:  spaced  "])
    assert edited.headers == (("X-A", "spaced"),)
    assert edited.response() == b"HTTP/1.1 101 Switching Protocols\r\nX-A: spaced\r\n\r\n"


# -- admit: hooks only (ASGI) ------------------------------------------------------------------


def test_admit_chooses_among_the_hosts_offer() -> None:
    result = accepted(admit(upgrade(key=None), Policy(protocols=["two"]), ["one", "two"]))
    assert result.subprotocol == "two" and result.protocol is None
    assert result.headers == (("Sec-WebSocket-Protocol", "two"),)
    assert result.header_lines() == ["HTTP/1.1 101 Switching Protocols", "Sec-WebSocket-Protocol: two"]


def test_admit_without_offer() -> None:
    result = accepted(admit(upgrade(), Policy(), []))
    assert (result.subprotocol, result.headers) == (None, ())


def test_admit_runs_verify_client() -> None:
    result = refused(admit(upgrade(), Policy(verify_client=lambda info: (False, 403, "Nope")), ["a"]))
    assert (result.status, result.reason) == (403, "Nope")


def test_admit_reports_a_broken_handle_protocols() -> None:
    result = refused(admit(upgrade(), Policy(handle_protocols=lambda o, r: "zzz"), ["a"]))
    assert result.status == 500 and isinstance(result.error, WebSocketError)


def test_the_101_is_the_status_line_then_one_line_per_header() -> None:
    status = b"HTTP/1.1 101 Switching Protocols\r\n"
    assert Accepted(None).response() == status + b"\r\n"
    pairs = (("Upgrade", "websocket"), ("X-A", "caf\xe9"), ("X-B", ""))
    assert Accepted(None, headers=pairs).response() == status + b"Upgrade: websocket\r\nX-A: caf\xe9\r\nX-B: \r\n\r\n"
    odd: Any = (("X-Count", 3), ("X-Name", "n"))  # (a value that is no str: written as formatted)
    assert Accepted(None, headers=odd).response() == status + b"X-Count: 3\r\nX-Name: n\r\n\r\n"
