"""ws.http.parsing: choosing the request parser (WS_HTTP), and the checks both parsers share."""

from __future__ import annotations

import warnings

import pytest

from ws.http import parsing


@pytest.fixture
def fresh_choice(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(parsing, "_chosen", {})
    return monkeypatch


def test_httptools_is_the_default_when_installed_and_h11_can_be_forced(fresh_choice):
    fresh_choice.delenv("WS_HTTP", raising=False)
    assert parsing.parser_name() == "httptools" and parsing.parser_factory() is parsing.HttptoolsParser
    fresh_choice.setenv("WS_HTTP", "h11")
    assert parsing.parser_name() == "h11" and parsing.parser_factory() is parsing.H11Parser
    fresh_choice.setenv("WS_HTTP", "httptools")
    assert parsing.parser_name() == "httptools"


def test_asking_for_httptools_without_it_warns_once_and_uses_h11(fresh_choice):
    fresh_choice.setattr(parsing, "_httptools", None)
    fresh_choice.setenv("WS_HTTP", "httptools")
    with pytest.warns(RuntimeWarning, match="httptools is not installed"):
        assert parsing.parser_name() == "h11"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parsing.parser_factory() is parsing.H11Parser  # (once: no second warning)
    fresh_choice.delenv("WS_HTTP")
    assert parsing.parser_name() == "h11"  # the default without it: no warning either


def test_an_unknown_setting_warns_and_uses_the_default(fresh_choice):
    fresh_choice.setenv("WS_HTTP", "llhttp")
    with pytest.warns(RuntimeWarning, match="not one of"):
        assert parsing.parser_name() == "httptools"


def head(version: bytes = b"1.1", *headers: tuple[bytes, bytes]) -> parsing.Head:
    return parsing.Head(b"GET", b"/", version, list(headers))


@pytest.mark.parametrize(
    ("the_head", "status"),
    [
        (head(b"1.1", (b"Host", b"x")), None),
        (head(b"1.0"), None),  # (no Host needed)
        (head(b"1.1"), 400),
        (head(b"1.1", (b"Host", b"x"), (b"host", b"y")), 400),
        (head(b"1.2", (b"Host", b"x")), 505),
        (head(b"2.0", (b"Host", b"x")), 505),
        (head(b"0.9"), 400),
        (head(b"1.1", (b"Host", b"x"), (b"X", b"a\x01b")), 400),
        (head(b"1.1", (b"Host", b"x"), (b"X", b"a\tb")), None),
        (head(b"1.1", (b"Host", b"x"), (b"Content-Length", b"12x")), 400),
        (head(b"1.1", (b"Host", b"x"), (b"Content-Length", b"1" * 21)), 400),
        (head(b"1.1", (b"Host", b"x"), (b"Transfer-Encoding", b"gzip")), 501),
        (head(b"1.1", (b"Host", b"x"), (b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")), 501),
    ],
)
def test_check_head(the_head, status):
    if status is None:
        parsing.check_head(the_head)
    else:
        with pytest.raises(parsing.ParseError) as info:
            parsing.check_head(the_head)
        assert info.value.status == status


def test_check_head_gives_the_content_length():
    assert parsing.check_head(head(b"1.1", (b"Host", b"x"), (b"content-length", b"42"))) == 42
    assert parsing.check_head(head(b"1.1", (b"Host", b"x"))) is None


@pytest.mark.parametrize("cls", [parsing.H11Parser, parsing.HttptoolsParser])
def test_both_parsers_give_the_same_events_for_pipelined_chunked_requests(cls):
    data = (
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    parser = cls(4096)
    events: list[object] = []
    for i in range(0, len(data), 7):  # in pieces
        parser.receive(data[i : i + 7])
        while (event := parser.next_event()) is not parsing.NEED_DATA:
            events.append((event.target, event.headers) if isinstance(event, parsing.Head) else event)
            if event is parsing.END:
                parser.next_cycle()
    body = b"".join(e for e in events if isinstance(e, bytes))
    shape = [e for e in events if not isinstance(e, bytes)]
    assert body == b"abcde"
    assert shape == [
        (b"/a", [(b"Host", b"x"), (b"Transfer-Encoding", b"chunked")]), parsing.END,
        (b"/b", [(b"Host", b"x")]), parsing.END,
    ]
    parser.receive(b"")
    assert parser.next_event() is parsing.CLOSED
