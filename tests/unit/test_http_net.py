"""ws._runtime.net without sockets: the one host:port formatter and the address parser."""

from __future__ import annotations

import pytest

from ws._runtime.net import format_host_port, parse_address


def test_ipv6_hosts_are_bracketed() -> None:
    assert format_host_port("127.0.0.1", 80) == "127.0.0.1:80"
    assert format_host_port("::1", 8080) == "[::1]:8080"
    assert format_host_port("example.com", 443) == "example.com:443"


def test_address_forms() -> None:
    assert parse_address("tcp", "127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_address("tcp", "[::1]:8080") == ("::1", 8080)
    assert parse_address("tcp", ":3000") == (None, 3000)
    assert parse_address("tcp", 3000) == (None, 3000)
    assert parse_address("tcp", "3000") == (None, 3000)
    assert parse_address("unix", "/tmp/x.sock") == "/tmp/x.sock"


@pytest.mark.parametrize("bad", ["nohost", "1.2.3.4:99999", "[::1]8080", "h:x"])
def test_bad_addresses_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_address("tcp", bad)


def test_bad_types_and_networks() -> None:
    with pytest.raises(TypeError):
        parse_address("tcp", True)
    with pytest.raises(TypeError):
        parse_address("tcp", 1.5)
    with pytest.raises(ValueError, match="network"):
        parse_address("udp", "1.2.3.4:5")
    with pytest.raises(ValueError, match="socket path"):
        parse_address("unix", "")
