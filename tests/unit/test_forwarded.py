"""The client's address behind proxies (``ws.forwarded``) and the connection counts (``ws.protocol.limits``), without sockets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from ws.forwarded import (
    FORWARDED_HEADERS, TrustedProxies, client_ip, forwarded_header, ip_group, normalize_ip, parse_forwarded,
    parse_x_forwarded_for,
)
from ws.protocol.handshake import Refused
from ws.protocol.limits import UNLIMITED, ConnectionLimits, Slot
from ws.request import Request

PROXIES = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])


def resolve(
    peer: str | None, proxies: TrustedProxies | None = PROXIES, header: str = "X-Forwarded-For", **headers: str
) -> str | None:
    return client_ip(peer, {name.replace("_", "-"): value for name, value in headers.items()}, proxies, header)


# -- addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped IPv6 is the IPv4 client
        ("2001:DB8:0:0::1", "2001:db8::1"),  # canonical text, so one client is one key
        ("203.0.113.256", None),
        ("example.com", None),
        ("", None),
        ("unknown", None),
    ],
)
def test_normalize_ip(text: str, expected: str | None) -> None:
    assert normalize_ip(text) == expected


def test_ip_group_is_the_address_or_its_ipv6_network() -> None:
    assert ip_group("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2:3:4:5:6"
    assert ip_group("2001:db8:1:2:3:4:5:6", 64) == ip_group("2001:db8:1:2:ffff::1", 64) == "2001:db8:1:2::/64"
    assert ip_group("2001:db8:1:3::1", 64) != ip_group("2001:db8:1:2::1", 64)
    assert ip_group("203.0.113.7", 64) == "203.0.113.7"  # IPv4 is always per address


def test_trusted_proxies_entries() -> None:
    proxies = TrustedProxies(["127.0.0.1", " 10.0.0.0/8", "::ffff:192.168.0.0/112", "::1", "unix"])
    assert "127.0.0.1" in proxies and "10.200.3.4" in proxies and "192.168.7.7" in proxies and "::1" in proxies
    assert "127.0.0.2" not in proxies and "11.0.0.1" not in proxies and "garbage" not in proxies and None not in proxies
    assert proxies.trusts_peer(None)  # 'unix': a peer without an IP address
    assert not TrustedProxies("127.0.0.1").trusts_peer(None)  # one string is one entry
    assert TrustedProxies("127.0.0.1").trusts_peer("127.0.0.1")
    with pytest.raises(ValueError, match="'10.0.0.0/33' is not an IP address"):
        TrustedProxies(["10.0.0.0/33"])
    with pytest.raises(ValueError, match="localhost"):
        TrustedProxies(["localhost"])
    with pytest.raises(TypeError):
        TrustedProxies([None])  # type: ignore[list-item]


# -- parsing the headers ----------------------------------------------------------------


def test_x_forwarded_for_hops() -> None:
    assert parse_x_forwarded_for("203.0.113.7, 10.0.0.1") == ["203.0.113.7", "10.0.0.1"]
    assert parse_x_forwarded_for("203.0.113.7:4711,[2001:db8::1]:80 , [::ffff:10.0.0.1]") == [
        "203.0.113.7", "2001:db8::1", "10.0.0.1",
    ]
    assert parse_x_forwarded_for("2001:db8::1") == ["2001:db8::1"]  # unbracketed IPv6 is unambiguous
    assert parse_x_forwarded_for("unknown, , 1.2.3.4:x, [1.2.3.4], [::1, ::1]:99999999") == [None] * 6


def test_forwarded_elements() -> None:
    # RFC 7239 section 4's examples.
    assert parse_forwarded('for="_gazonk"') == [None]
    assert parse_forwarded('For="[2001:db8:cafe::17]:4711"') == ["2001:db8:cafe::17"]
    assert parse_forwarded("for=192.0.2.60;proto=http;by=203.0.113.43") == ["192.0.2.60"]
    assert parse_forwarded("for=192.0.2.43, for=198.51.100.17") == ["192.0.2.43", "198.51.100.17"]
    assert parse_forwarded('for = "192.0.2.43" ;proto=https,for=unknown') == ["192.0.2.43", None]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("proto=https", [None]),  # no for=
        ("for=1.1.1.1;for=2.2.2.2", [None]),  # for= twice in one element
        ("for=1.1.1.1 junk", [None]),
        ("for=", [None]),
        ("", [None]),
        ("for=1.1.1.1,", ["1.1.1.1", None]),
        ('for="1.1.1.1, for=2.2.2.2', [None, "2.2.2.2"]),  # an unterminated quote spoils its element only
        # Split from the right: an unterminated quote on the left cannot swallow what a proxy appended.
        ('for="1.1.1.1, for=2.2.2.2;proto="https"', [None, "2.2.2.2"]),
        ('for="x, for="[2001:db8::1]:4711"', [None, "2001:db8::1"]),
        ('for="x\\", for="[2001:db8::1]"', [None, "2001:db8::1"]),  # an escaped quote does not close it
        ('for="a\\"b", for=3.3.3.3', [None, "3.3.3.3"]),
    ],
)
def test_forwarded_malformed_elements_are_none(value: str, expected: list[str | None]) -> None:
    assert parse_forwarded(value) == expected


@given(st.text(max_size=80))
def test_parsers_never_raise(value: str) -> None:
    assert all(hop is None or normalize_ip(hop) == hop for hop in parse_forwarded(value))
    assert all(hop is None or normalize_ip(hop) == hop for hop in parse_x_forwarded_for(value))
    resolve("127.0.0.1", x_forwarded_for=value, forwarded=value)
    resolve("127.0.0.1", header="Forwarded", x_forwarded_for=value, forwarded=value)


# What a proxy appends: its own addresses, in each header's syntax (IPv6 quoted in Forwarded, as RFC 7239 wants).
PROXY_HOPS = st.lists(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(lambda address: normalize_ip(str(address)) or ""),
    min_size=1, max_size=4,
)


def as_forwarded(hop: str) -> str:
    return f'for="[{hop}]:4711"' if ":" in hop else f"for={hop}"


@given(st.text(max_size=60), PROXY_HOPS)
def test_what_the_client_wrote_on_the_left_never_changes_the_proxies_hops(client: str, hops: list[str]) -> None:
    """The client writes the start of the header; its proxies append. Their hops read the same whatever it wrote."""
    assert parse_x_forwarded_for(client + ", " + ", ".join(hops))[-len(hops):] == hops
    assert parse_forwarded(client + ", " + ", ".join(map(as_forwarded, hops)))[-len(hops):] == hops


@given(st.text(max_size=60), st.text(max_size=60), st.ip_addresses(v=4).map(str).filter(lambda ip: ip not in PROXIES))
def test_a_client_behind_a_trusted_proxy_never_resolves_to_the_proxy(own: str, other: str, client: str) -> None:
    """nginx appends the address it saw to the client's X-Forwarded-For and passes its Forwarded on."""
    assert resolve("127.0.0.1", x_forwarded_for=f"{own}, {client}", forwarded=other) == client
    # An RFC 7239 proxy: the same with the headers' roles swapped.
    assert resolve("127.0.0.1", header="forwarded", forwarded=f"{own}, for={client}", x_forwarded_for=other) == client


# -- the trusted-proxy walk ----------------------------------------------------------------


def test_an_untrusted_peer_is_the_client_whatever_it_sends() -> None:
    assert resolve("203.0.113.9", x_forwarded_for="1.2.3.4") == "203.0.113.9"
    assert resolve("203.0.113.9", forwarded="for=1.2.3.4") == "203.0.113.9"
    assert resolve("127.0.0.1", None, x_forwarded_for="1.2.3.4") == "127.0.0.1"  # no trusted_proxies: ignored


def test_the_rightmost_untrusted_hop_is_the_client() -> None:
    assert resolve("127.0.0.1", x_forwarded_for="203.0.113.7") == "203.0.113.7"
    # The client wrote "6.6.6.6" itself; nginx appended the address it saw.
    assert resolve("127.0.0.1", x_forwarded_for="6.6.6.6, 203.0.113.7") == "203.0.113.7"
    # Two proxies of ours: skip them.
    assert resolve("127.0.0.1", x_forwarded_for="6.6.6.6, 203.0.113.7, 10.1.1.1, 10.2.2.2") == "203.0.113.7"
    assert resolve("10.9.9.9", header="Forwarded", forwarded='for=6.6.6.6, for="[2001:db8::7]:1234", for=10.1.1.1') == "2001:db8::7"
    # Every hop is a proxy of ours: the furthest one is the client.
    assert resolve("127.0.0.1", x_forwarded_for="10.1.1.1, 10.2.2.2") == "10.1.1.1"
    assert resolve("127.0.0.1", x_forwarded_for="::ffff:203.0.113.7") == "203.0.113.7"
    assert resolve("fd00::1", x_forwarded_for="2001:db8::9") == "2001:db8::9"


def test_garbage_on_the_walk_ends_it_at_the_last_address_reached() -> None:
    # Written by the proxy itself: nothing better than the proxy is known.
    assert resolve("127.0.0.1", x_forwarded_for="203.0.113.7, bogus") == "127.0.0.1"
    assert resolve("127.0.0.1", x_forwarded_for="") == "127.0.0.1"
    assert resolve("127.0.0.1", header="Forwarded", forwarded="for=unknown") == "127.0.0.1"
    assert resolve("127.0.0.1", header="Forwarded", forwarded='for="_hidden"') == "127.0.0.1"
    # Left of a trusted hop: that hop is the client (not the peer, which the garbage's writer is not).
    assert resolve("127.0.0.1", x_forwarded_for="203.0.113.7, bogus, 10.1.1.1") == "10.1.1.1"
    assert resolve("127.0.0.1", header="Forwarded", forwarded="for=unknown, for=10.1.1.1") == "10.1.1.1"
    # Garbage left of the client is never read.
    assert resolve("127.0.0.1", x_forwarded_for="bogus, 203.0.113.7") == "203.0.113.7"
    assert resolve("127.0.0.1", header="Forwarded", forwarded='for="x, for=203.0.113.7') == "203.0.113.7"
    assert resolve("127.0.0.1", header="Forwarded", forwarded='for="x, for="[2001:db8::7]"') == "2001:db8::7"


def test_only_the_chosen_header_is_read() -> None:
    # nginx writes X-Forwarded-For and passes the client's own Forwarded on: it changes nothing.
    assert resolve("127.0.0.1", x_forwarded_for="203.0.113.7", forwarded="for=6.6.6.6") == "203.0.113.7"
    assert resolve("127.0.0.1", x_forwarded_for="203.0.113.7", forwarded="for=127.0.0.1") == "203.0.113.7"
    assert resolve("127.0.0.1", forwarded="for=203.0.113.7") == "127.0.0.1"  # no X-Forwarded-For: the peer
    # An RFC 7239 proxy: the other way round.
    assert resolve("127.0.0.1", header="Forwarded", forwarded="for=203.0.113.7", x_forwarded_for="6.6.6.6") == "203.0.113.7"
    assert resolve("127.0.0.1", header="Forwarded", x_forwarded_for="203.0.113.7") == "127.0.0.1"
    assert resolve("127.0.0.1", header="FORWARDED", forwarded="for=203.0.113.7") == "203.0.113.7"  # any case


def test_forwarded_header_names() -> None:
    assert FORWARDED_HEADERS == ("X-Forwarded-For", "Forwarded")
    assert forwarded_header("x-forwarded-for") == forwarded_header(" X-FORWARDED-FOR") == "X-Forwarded-For"
    assert forwarded_header("forwarded") == "Forwarded"
    for wrong in ("X-Real-IP", "", "X-Forwarded-For, Forwarded"):
        with pytest.raises(ValueError, match="forwarded_header must be 'X-Forwarded-For' .* or 'Forwarded'"):
            forwarded_header(wrong)
    with pytest.raises(TypeError, match="forwarded_header must be a header name"):
        forwarded_header(None)
    with pytest.raises(ValueError):
        resolve("127.0.0.1", header="X-Real-IP", x_real_ip="203.0.113.7")


def test_a_unix_socket_peer() -> None:
    assert resolve(None, TrustedProxies(["unix"]), x_forwarded_for="203.0.113.7") == "203.0.113.7"
    assert resolve(None, x_forwarded_for="203.0.113.7") is None  # 'unix' not trusted: headers ignored
    assert resolve(None, TrustedProxies(["unix"]), x_forwarded_for="bogus") is None


def test_request_client_ip() -> None:
    headers = [("X-Forwarded-For", "6.6.6.6, 203.0.113.7")]
    request = Request("GET", "/ws", headers, peername=("127.0.0.1", 5000))
    assert request.client_ip == request.clientIp == "127.0.0.1" == request.remote_address
    assert request.resolve_client_ip(["127.0.0.1"]) == "203.0.113.7" == request.client_ip
    assert request.remote_address == "127.0.0.1"  # still the TCP peer
    assert request.resolve_client_ip(PROXIES) == "203.0.113.7"
    assert request.resolveClientIp(["10.0.0.1"]) == "127.0.0.1"  # from the peer again, not from the last answer
    assert Request("GET", "/", [], peername=("::ffff:127.0.0.1", 1, 0, 0)).client_ip == "127.0.0.1"
    assert Request("GET", "/", [], peername=("::1", 1, 0, 0)).client_ip == "::1"
    assert Request("GET", "/", [], peername="").client_ip is None
    assert Request("GET", "/", [], peername="/run/ws.sock").client_ip is None


def test_request_client_ip_reads_the_one_header_and_every_line_of_it_in_order() -> None:
    # The client's own lines come first, a proxy adding a line of its own (HAProxy) puts it last.
    lines = [("X-Forwarded-For", "127.0.0.1"), ("Forwarded", "for=6.6.6.6"), ("x-forwarded-for", "203.0.113.7")]
    request = Request("GET", "/ws", lines, peername=("127.0.0.1", 5000))
    assert request.resolve_client_ip(["127.0.0.1"]) == "203.0.113.7"
    assert request.resolve_client_ip(["127.0.0.1"], "Forwarded") == "6.6.6.6"
    assert request.resolve_client_ip(PROXIES, forwarded_header="forwarded") == "6.6.6.6"
    with pytest.raises(ValueError, match="forwarded_header"):
        request.resolve_client_ip(["127.0.0.1"], "X-Real-IP")


# -- counting --------------------------------------------------------------------------------


def peer(ip: str) -> Request:
    return Request("GET", "/ws", [], peername=(ip, 5000))


def refusal(result: Any) -> Refused:
    assert isinstance(result, Refused), result
    return result


def slot(result: Any) -> Slot:
    assert isinstance(result, Slot), result
    return result


def test_max_connections_counts_and_refuses_with_503() -> None:
    limits = ConnectionLimits(max_connections=2)
    a, b = slot(limits.admit(peer("1.1.1.1"))), slot(limits.admit(peer("1.1.1.2")))
    refused = refusal(limits.admit(peer("1.1.1.3")))
    assert refused.status == 503 and refused.headers == (("Retry-After", "5"),) and refused.error is None
    assert limits.held == 2
    a.release()
    a.release()  # once only
    assert limits.held == 1
    c = slot(limits.admit(peer("1.1.1.3")))
    assert refusal(limits.admit(peer("1.1.1.4"))).status == 503
    b.release(), c.release()
    assert limits.held == 0


def test_per_ip_counts_and_refuses_with_429() -> None:
    limits = ConnectionLimits(max_connections_per_ip=2, retry_after=3)
    held = [slot(limits.admit(peer("1.1.1.1"))) for _ in range(2)]
    refused = refusal(limits.admit(peer("1.1.1.1")))
    assert refused.status == 429 and refused.headers == (("Retry-After", "3"),)
    assert limits.held_by("1.1.1.1") == 2 and limits.held == 2
    slot(limits.admit(peer("1.1.1.2")))
    slot(limits.admit(peer("::ffff:1.1.1.2")))  # the same client, another spelling
    assert refusal(limits.admit(peer("1.1.1.2"))).status == 429
    held[0].release()
    slot(limits.admit(peer("1.1.1.1")))
    # No address (a unix socket): only max_connections would apply.
    for _ in range(5):
        slot(limits.admit(Request("GET", "/", [], peername="")))


def test_ipv6_per_address_or_per_prefix() -> None:
    per_address = ConnectionLimits(max_connections_per_ip=1)
    slot(per_address.admit(peer("2001:db8::1")))
    slot(per_address.admit(peer("2001:db8::2")))
    per_64 = ConnectionLimits(max_connections_per_ip=1, per_ip_ipv6_prefix=64)
    slot(per_64.admit(peer("2001:db8::1")))
    assert refusal(per_64.admit(peer("2001:db8::2"))).status == 429
    slot(per_64.admit(peer("2001:db8:0:1::1")))
    assert per_64.held_by("2001:db8::ffff") == 1


def test_without_limits_nothing_is_counted() -> None:
    limits = ConnectionLimits()
    assert not limits.active
    assert limits.admit(peer("1.1.1.1")) is UNLIMITED and not UNLIMITED.counted
    assert limits.held == 0


def test_retry_after_none_sends_no_header() -> None:
    limits = ConnectionLimits(max_connections=1, retry_after=None)
    slot(limits.admit(peer("1.1.1.1")))
    assert refusal(limits.admit(peer("1.1.1.1"))).headers == ()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_connections": 0}, "max_connections must be a positive integer"),
        ({"max_connections": 1.5}, "max_connections must be a positive integer"),
        ({"max_connections_per_ip": True}, "max_connections_per_ip must be a positive integer"),
        ({"retry_after": -1}, "retry_after must be a whole number"),
        ({"retry_after": 2.5}, "retry_after must be a whole number"),
        ({"per_ip_ipv6_prefix": 0}, "per_ip_ipv6_prefix must be an integer from 1 to 128"),
        ({"per_ip_ipv6_prefix": 129}, "per_ip_ipv6_prefix must be an integer from 1 to 128"),
    ],
)
def test_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConnectionLimits(**options)
