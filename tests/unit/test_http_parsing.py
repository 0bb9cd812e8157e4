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
        (head(b"1.1", (b"Host", b"x"), (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"4")), 400),
        (head(b"1.1", (b"Host", b"x"), (b"Content-Length", b"4"), (b"Transfer-Encoding", b"chunked")), 400),
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


PARSERS = [parsing.H11Parser, parsing.HttptoolsParser]


def events_of(parser: parsing.RequestParser) -> list[object]:
    """Every event until the parser needs data, a request answered at each ``END``; an error as its status."""
    events: list[object] = []
    while True:
        try:
            event = parser.next_event()
        except parsing.ParseError as exc:
            events.append(exc.status)
            return events
        if event is parsing.NEED_DATA:
            return events
        events.append(event)
        if event is parsing.CLOSED:
            return events
        if event is parsing.END:
            parser.next_cycle()


@pytest.mark.parametrize("cls", PARSERS)
def test_pipelined_requests_before_a_partial_head_are_no_oversized_head(cls):
    """A read of many whole requests then part of one: only that part counts toward max_header_size."""
    one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    parser = cls(1024)
    parser.receive(one * 200 + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000 + b"GET / HTTP/1.1\r\nHo")
    events = events_of(parser)
    assert all(type(e) is not int for e in events), events[-1]
    assert sum(isinstance(e, parsing.Head) for e in events) == 201
    parser.receive(b"st: x\r\n\r\n")
    assert [type(e) for e in events_of(parser)] == [parsing.Head, type(parsing.END)]


@pytest.mark.parametrize("cls", PARSERS)
@pytest.mark.parametrize(
    "after_head",
    [
        b"1\r\nx\r\n0\r\nX-Trailer: ",  # a trailer section that never ends
        b"1;ext=",  # a chunk extension that never ends
    ],
)
def test_endless_non_body_bytes_after_a_head_are_refused(cls, after_head):
    parser = cls(1024)
    parser.receive(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + after_head)
    statuses: list[object] = []
    for _ in range(4):  # 4 KiB, in pieces
        parser.receive(b"a" * 1024)
        statuses += [e for e in events_of(parser) if type(e) is int]
        if statuses:
            break
    assert statuses in ([431], [400])
    assert parser.buffered() <= 2048  # (not kept)


@pytest.mark.parametrize("cls", PARSERS)
def test_many_chunks_are_no_oversized_trailer(cls):
    """Chunk framing counts per chunk, as h11 counts each incomplete event: a long chunked body is fine."""
    parser = cls(64)
    parser.receive(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    body = b""
    for _ in range(100):
        parser.receive(b"1;e=1\r\nx\r\n" * 10)
        body += b"".join(e for e in events_of(parser) if type(e) is bytes)
    parser.receive(b"0\r\n\r\n")
    assert events_of(parser)[-1] is parsing.END
    assert body == b"x" * 1000


def test_httptools_parses_one_pipelined_request_at_a_time():
    """A read of thousands of tiny requests queues one, keeps the rest raw (and counts it), not thousands of heads."""
    one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    data = one * 5000
    parser = parsing.HttptoolsParser(16384)
    parser.receive(memoryview(data))
    assert len(parser.events) == 2  # (a head and its END)
    assert parser.buffered() >= len(data) - len(one)
    heads = 0
    while (event := parser.next_event()) is not parsing.NEED_DATA:
        if isinstance(event, parsing.Head):
            heads += 1
            assert len(parser.events) <= 1
        elif event is parsing.END:
            parser.next_cycle()
    assert heads == 5000
    assert parser.buffered() == 0
    parser.receive(b"")
    assert parser.next_event() is parsing.CLOSED


@pytest.mark.parametrize("cls", PARSERS)
def test_the_end_of_input_waits_for_the_requests_before_it(cls):
    one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    parser = cls(16384)
    parser.receive(one * 3)
    parser.receive(b"")
    events = events_of(parser)
    assert [e for e in events if not isinstance(e, parsing.Head)] == [parsing.END] * 3 + [parsing.CLOSED]


@pytest.mark.parametrize("cls", PARSERS)
@pytest.mark.parametrize("step", [7, 1000, 1 << 20])
def test_bodies_holding_blank_lines_are_read_whole_in_any_pieces(cls, step):
    """A body is no head: CRLF CRLF inside it, across reads, before pipelined requests."""
    body = b"a\r\n\r\nGET / HTTP/1.1\r\n\r\n" * 2000
    post = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    data = post + b"GET /g HTTP/1.1\r\nHost: x\r\n\r\n" + post
    parser = cls(1024)
    events: list[object] = []
    for i in range(0, len(data), step):
        parser.receive(memoryview(bytearray(data[i : i + step])))
        events += events_of(parser)
    assert [e.target for e in events if isinstance(e, parsing.Head)] == [b"/p", b"/g", b"/p"]
    bodies = b"".join(e for e in events if type(e) is bytes)
    assert bodies == body * 2 and events[-1] is parsing.END
