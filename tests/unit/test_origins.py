"""``allowed_origins`` without sockets: the entries (ws.protocol.origins) and the handshake's 403 (ws.protocol.handshake)."""

from __future__ import annotations

from typing import Any

import pytest

from ws.protocol.handshake import Accepted, Policy, Refused, accept, admit, check_origin
from ws.protocol.origins import AllowedOrigins, Origin, page_origins, parse_origin

from .test_handshake import upgrade

ALLOWED = AllowedOrigins([
    "https://app.example.com",
    "http://127.0.0.1:8080",
    "https://*.example.org",
    "http://[::1]:9000",
    "https://bücher.example",
    "chrome-extension://abcdefgh",
])


# -- matching ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "https://APP.Example.COM",  # hosts and schemes compare without regard to case
        "HTTPS://app.example.com",
        "https://app.example.com:443",  # the default port is no port
        "http://127.0.0.1:8080",
        "https://a.example.org",  # a subdomain of the pattern's domain
        "https://a.b.example.org",  # at any depth
        "https://A.EXAMPLE.ORG:443",
        "http://[::1]:9000",
        "http://[0:0:0:0:0:0:0:1]:9000",  # the same IPv6 address, spelled out
        "https://xn--bcher-kva.example",  # what a browser sends for bücher.example
        "chrome-extension://abcdefgh",
    ],
)
def test_allowed(origin: str) -> None:
    assert ALLOWED.allows(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "http://app.example.com",  # another scheme
        "https://app.example.com:8443",  # another port
        "https://app.example.com.evil.test",  # a suffix is not the origin
        "https://evilapp.example.com",
        "https://example.org",  # the pattern's domain itself is not one of its subdomains
        "https://evilexample.org",  # ends with the domain, but is not a subdomain
        "http://a.example.org",  # the pattern's scheme must match
        "https://a.example.org:8443",  # and its port
        "http://127.0.0.1",  # port 80 is not 8080
        "http://localhost:8080",  # another name for the same machine is another origin
        "http://127.0.0.1:8080/",  # not an origin (a path)
        "https://evil.test/https://app.example.com",
        "null",  # not listed literally
        "",
        "app.example.com",
        "https://user@app.example.com",
    ],
)
def test_refused(origin: str) -> None:
    assert not ALLOWED.allows(origin)


def test_none_is_for_clients_that_send_no_origin() -> None:
    assert not ALLOWED.allows(None)
    with_none = AllowedOrigins(["https://app.example.com", None])
    assert with_none.allows(None) and with_none.allows("https://app.example.com")
    assert not with_none.allows("null") and not with_none.allows("")  # an empty Origin is not an absent one


def test_null_only_when_listed_literally() -> None:
    assert AllowedOrigins(["null"]).allows("null")
    assert not AllowedOrigins(["null"]).allows(None)
    assert not AllowedOrigins(["null"]).allows("https://null")
    assert not AllowedOrigins([None]).allows("null")


def test_an_empty_list_refuses_everyone() -> None:
    nobody = AllowedOrigins([])
    assert not nobody.allows(None) and not nobody.allows("https://app.example.com")


def test_entries_are_kept_as_given_and_of_takes_every_shape() -> None:
    entries = ["https://App.Example.com:443", None, "https://*.example.org"]
    assert AllowedOrigins(entries).entries == tuple(entries)
    assert AllowedOrigins.of(None) is None
    assert AllowedOrigins.of("https://x.test").entries == ("https://x.test",)  # one origin, not its letters
    compiled = AllowedOrigins(["https://x.test"])
    assert AllowedOrigins.of(compiled) is compiled
    assert AllowedOrigins.of(iter(["https://x.test", None])).entries == ("https://x.test", None)
    with pytest.raises(TypeError, match="not one string"):
        AllowedOrigins("https://x.test")  # type: ignore[arg-type]


def test_parse_origin() -> None:
    assert parse_origin("https://App.Example.com") == Origin("https", "app.example.com", 443)
    assert parse_origin("http://127.0.0.1:8080") == Origin("http", "127.0.0.1", 8080)
    assert parse_origin("http://[0::1]") == Origin("http", "[::1]", 80)
    assert str(parse_origin("https://x.test:443")) == "https://x.test"
    assert str(parse_origin("https://x.test:8443")) == "https://x.test:8443"
    for text in ("null", "", "x.test", "https://x.test/", "https://*.x.test", "https://x.test:0", "https://x.test:65536"):
        assert parse_origin(text) is None, text


# -- malformed entries: a ValueError naming the fix, when the list is built --------------------------


@pytest.mark.parametrize(
    "entry, words",
    [
        ("app.example.com", ["has no scheme", "write 'https://app.example.com'"]),
        ("*.example.com", ["has no scheme", "write 'https://*.example.com'"]),
        ("https://app.example.com/", ["has a path", "write 'https://app.example.com'"]),
        ("https://app.example.com/chat", ["has a path", "write 'https://app.example.com'"]),
        ("https://app.example.com?x=1", ["query", "write 'https://app.example.com'"]),
        ("*", ["every page", "leave allowed_origins unset"]),
        ("https://*", ["every page"]),
        ("*://app.example.com", ["every page"]),
        ("https://app.*.com", ["wildcard", "'https://*.example.com'"]),
        ("https://*example.com", ["wildcard", "whole first label"]),
        ("https://a.*.example.com", ["wildcard"]),
        ("https://*.com", ["top-level domain"]),
        ("https://*.10.0.0.1", ["IP address"]),
        ("https://*.[::1]", ["IPv6"]),
        ("https://app.example.com:*", ["port"]),
        ("https://app.example.com:0", ["port"]),
        ("https://app.example.com:65536", ["port"]),
        ("https://app.example.com:", ["port"]),
        ("wss://app.example.com", ["WebSocket URL", "write 'https://app.example.com'"]),
        ("ws://127.0.0.1:8080", ["WebSocket URL", "write 'http://127.0.0.1:8080'"]),
        ("https://user@app.example.com", ["user", "write 'https://app.example.com'"]),
        ("https://[::1", ["IPv6"]),
        ("https://[nope]", ["IPv6"]),
        ("https://999.1.1.1", ["IPv4"]),
        ("https://exa mple.com", ["host name"]),
        ("https://", ["no host"]),
        (" https://app.example.com", ["spaces", "write 'https://app.example.com'"]),
    ],
)
def test_malformed_entries(entry: str, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        AllowedOrigins(["https://fine.example.com", entry])
    message = str(info.value)
    assert message.startswith(f"allowed_origins: {entry!r}"), message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("entry", [5, b"https://x.test", ("https", "x.test")])
def test_entries_that_are_not_strings(entry: Any) -> None:
    with pytest.raises(TypeError, match="strings or None"):
        AllowedOrigins([entry])


# -- the origins of a server's own pages ---------------------------------------------------------------


@pytest.mark.parametrize(
    "host, expected",
    [
        ("127.0.0.1", ["http://127.0.0.1:8080", "http://localhost:8080"]),
        ("0.0.0.0", ["http://0.0.0.0:8080", "http://127.0.0.1:8080", "http://localhost:8080"]),
        ("::", ["http://[::]:8080", "http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"]),
        ("localhost", ["http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"]),
        ("::1", ["http://[::1]:8080", "http://localhost:8080"]),
        ("[::1]", ["http://[::1]:8080", "http://localhost:8080"]),
        ("Example.COM", ["http://example.com:8080"]),
        ("192.168.1.5", ["http://192.168.1.5:8080"]),
        ("fe80::1", ["http://[fe80::1]:8080"]),
    ],
)
def test_page_origins(host: str, expected: list[str]) -> None:
    assert page_origins(host, 8080) == expected
    assert AllowedOrigins(expected)  # each one a valid entry


def test_page_origins_leave_the_default_port_out() -> None:
    assert page_origins("127.0.0.1", 443, secure=True) == ["https://127.0.0.1", "https://localhost"]
    assert page_origins("example.com", 80) == ["http://example.com"]
    assert page_origins("example.com", 443) == ["http://example.com:443"]


# -- the handshake decision ----------------------------------------------------------------------------


def origin_header(*values: str) -> tuple[tuple[str, str], ...]:
    return tuple(("Origin", value) for value in values)


def test_no_allowed_origins_is_no_check() -> None:
    result = accept(upgrade(extra=origin_header("https://evil.test")), Policy())
    assert isinstance(result, Accepted)


def test_an_allowed_origin_goes_on_to_verify_client() -> None:
    seen: list[str | None] = []
    policy = Policy(allowed_origins=ALLOWED, verify_client=lambda info: seen.append(info.origin) or True)
    assert isinstance(accept(upgrade(extra=origin_header("https://a.example.org")), policy), Accepted)
    assert seen == ["https://a.example.org"]


def test_a_foreign_origin_is_a_403_before_verify_client() -> None:
    seen: list[Any] = []
    policy = Policy(allowed_origins=ALLOWED, verify_client=lambda info: seen.append(info) or True)
    result = accept(upgrade(extra=origin_header("https://evil.test")), policy)
    assert result == Refused(403, "Forbidden: origin 'https://evil.test' is not allowed")
    assert seen == []  # verify_client never ran
    assert admit(upgrade(extra=origin_header("https://evil.test")), policy, []) == result  # ASGI's half too
    assert seen == []


def test_the_refusal_for_a_missing_origin_and_for_two() -> None:
    policy = Policy(allowed_origins=ALLOWED)
    assert accept(upgrade(), policy) == Refused(403, "Forbidden: a handshake without an Origin header is not allowed here")
    two = upgrade(extra=origin_header("https://app.example.com", "https://evil.test"))
    assert check_origin(two, policy) == Refused(403, "Forbidden: more than one Origin header")
    assert admit(two, policy, []) == Refused(403, "Forbidden: more than one Origin header")  # ASGI
    assert accept(two, policy) == Refused(400, "Bad Request: invalid Origin header: multiple values")  # websockets first
    # Even when both are allowed: the server would have to choose one.
    assert check_origin(upgrade(extra=origin_header("https://app.example.com") * 2), policy) is not None


def test_the_refusal_shows_a_long_or_strange_origin_safely() -> None:
    policy = Policy(allowed_origins=ALLOWED)
    long = "https://" + "a" * 300 + ".test"
    result = accept(upgrade(extra=origin_header(long)), policy)
    assert isinstance(result, Refused) and result.status == 403
    assert len(result.reason) < 150 and "..." in result.reason
    odd = check_origin(upgrade(extra=origin_header("https://é.test")), policy)
    assert odd is not None and odd.reason == "Forbidden: origin 'https://\\xe9.test' is not allowed"


def test_a_malformed_request_is_still_a_400_first() -> None:
    result = accept(upgrade(version=None, extra=origin_header("https://evil.test")), Policy(allowed_origins=ALLOWED))
    assert isinstance(result, Refused) and result.status in (400, 426)


def test_absent_origin_accepted_with_none() -> None:
    policy = Policy(allowed_origins=AllowedOrigins([None]))
    assert isinstance(accept(upgrade(), policy), Accepted)
    assert isinstance(accept(upgrade(extra=origin_header("https://app.example.com")), policy), Refused)
