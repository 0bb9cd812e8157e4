"""ws.http.lean: the lean path's parser against the full parsers (h11, httptools).

Whatever ``upgrade_head`` accepts, both full parsers must accept too and
build the same request from (target, raw header list in order, the bytes
after the head); what it refuses goes to them anyway, so refusing more is
allowed, accepting differently is not.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ws.http import lean, parsing
from ws.http.lean import upgrade_head
from ws.request import Request

SIZE, COUNT = 8192, 100

BROWSER = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com:8080\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://example.com:8080\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: a=1; b=2\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)
FRAME = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # a masked "Hello"


def full_parse(cls: type, data: bytes) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """What a full parser makes of ``data`` as a complete upgrade request without body; ``None`` if not that."""
    parser = cls(SIZE)
    parser.receive(data)
    try:
        head = parser.next_event()
        if not isinstance(head, parsing.Head) or parser.next_event() is not parsing.END:
            return None
        parsing.check_head(head)
    except parsing.ParseError:
        return None
    if head.method != b"GET" or len(head.headers) > COUNT:
        return None
    return (
        head.target.decode("utf-8"),
        [(n.decode("latin-1"), v.decode("latin-1")) for n, v in head.headers],
        parser.after_head(),
    )


PARSERS = [parsing.H11Parser, parsing.HttptoolsParser]


def test_a_browser_handshake_is_taken_as_the_full_parsers_read_it():
    for after in (b"", FRAME, FRAME[:1]):
        lean = upgrade_head(BROWSER + after, SIZE, COUNT)
        assert lean is not None
        assert lean.upgrade == b"websocket" and lean.end == len(BROWSER)
        for cls in PARSERS:
            assert full_parse(cls, BROWSER + after) == (lean.target, lean.headers, after)


def test_whitespace_around_values_is_dropped_as_the_full_parsers_do():
    data = BROWSER.replace(b"Pragma: no-cache", b"Pragma:\t no-cache \t")
    lean = upgrade_head(data, SIZE, COUNT)
    assert lean is not None and ("Pragma", "no-cache") in lean.headers
    for cls in PARSERS:
        assert full_parse(cls, data) == (lean.target, lean.headers, b"")


@pytest.mark.parametrize(
    "connection", [b"Upgrade", b"upgrade", b"UPGRADE", b"keep-alive, Upgrade", b"Upgrade ,keep-alive", b"x,  upgrade"]
)
def test_connection_naming_upgrade_in_any_form_is_taken(connection):
    data = BROWSER.replace(b"Connection: Upgrade\r\n", b"Connection: " + connection + b"\r\n")
    lean = upgrade_head(data, SIZE, COUNT)
    assert lean is not None
    for cls in PARSERS:
        assert full_parse(cls, data) == (lean.target, lean.headers, b"")


@pytest.mark.parametrize(
    "change",
    [
        (b"GET /chat?room=1 HTTP/1.1", b"POST /chat HTTP/1.1"),  # not GET
        (b"GET /chat?room=1 HTTP/1.1", b"GET http://h/chat HTTP/1.1"),  # not origin-form
        (b"GET /chat?room=1 HTTP/1.1", b"GET chat HTTP/1.1"),
        (b"HTTP/1.1\r\n", b"HTTP/1.0\r\n"),  # not 1.1
        (b"Pragma: no-cache\r\n", b"Pragma: no-cache\r\n  folded\r\n"),  # obs-fold
        (b"Pragma: no-cache", b"Pragma: no\x01cache"),  # control byte
        (b"Pragma: no-cache", b"Pragma: n\xe9"),  # non-ASCII
        (b"Pragma: no-cache", b"Pra gma: no-cache"),  # not a token
        (b"Pragma: no-cache", b"Pragma:"),  # empty value
        (b"Pragma: no-cache", b"Pragma: \t "),  # only whitespace (checked after the pattern, which takes it)
        (b"Pragma: no-cache", b"Pragma:\t"),
        (b"Connection: Upgrade\r\n", b"Connection: Upgraded\r\n"),  # not the token
        (b"Connection: Upgrade\r\n", b"Connection: keep-alive, upgrades\r\n"),
        (b"Pragma: no-cache\r\n", b"Pragma: no-cache\n"),  # bare LF
        (b"Pragma: no-cache\r\n", b"Host: other\r\n"),  # duplicate Host
        (b"Host: example.com:8080\r\n", b""),  # no Host
        (b"Upgrade: websocket\r\n", b""),  # not an upgrade
        (b"Connection: Upgrade\r\n", b"Connection: keep-alive\r\n"),  # no Connection: upgrade
        (b"Upgrade: websocket\r\n", b"Upgrade: websocket\r\nUpgrade: websocket\r\n"),
        (b"Pragma: no-cache\r\n", b"Content-Length: 5\r\n"),  # a body
        (b"Pragma: no-cache\r\n", b"Content-Length: 0\r\nContent-Length: 0\r\n"),  # (h11 merges them)
        (b"Pragma: no-cache\r\n", b"Transfer-Encoding: chunked\r\n"),
        (b"Pragma: no-cache\r\n", b"Expect: 100-continue\r\n"),
        (b"\r\n\r\n", b"\r\n"),  # incomplete
    ],
)
def test_anything_unusual_goes_to_the_full_parser(change):
    old, new = change
    assert old in BROWSER
    assert upgrade_head(BROWSER.replace(old, new, 1), SIZE, COUNT) is None


def test_limits_and_what_follows_the_head():
    assert upgrade_head(BROWSER, SIZE, COUNT) is not None
    assert upgrade_head(BROWSER, SIZE, 13) is not None and upgrade_head(BROWSER, SIZE, 12) is None  # 13 headers
    size = upgrade_head(BROWSER, SIZE, COUNT).end  # type: ignore[union-attr]
    assert upgrade_head(BROWSER, 300, COUNT) is None and upgrade_head(BROWSER, size, COUNT) is not None
    assert upgrade_head(BROWSER + b"GET / HTTP/1.1\r\n\r\n", SIZE, COUNT) is None  # a pipelined request
    assert upgrade_head(BROWSER + b"\x81\x05Hello", SIZE, COUNT) is None  # unmasked: no client's frame
    assert upgrade_head(BROWSER + b"\xc1\x85", SIZE, COUNT) is not None  # (RSV1: deflate's, decided later)
    assert upgrade_head(BROWSER + b"\x83\x85", SIZE, COUNT) is None  # opcode 3


class RecordingPattern:
    """Stands in for the lean regex: records how many bytes each match is asked to scan."""

    def __init__(self, pattern, sizes: list[int]) -> None:
        self.pattern = pattern
        self.sizes = sizes

    def match(self, data):
        self.sizes.append(len(data))
        return self.pattern.match(data)


@pytest.mark.parametrize(
    "data",
    [
        BROWSER + FRAME * 2000,  # a head and many frames: the full parser's
        b"GET / HTTP/1.1\r\n" + b"X: a b\r\n" * (1 << 17) + b"\x01",  # 1 MiB of header lines, then a bad byte
        b"GET / HTTP/1.1\r\nX: a" + b" " * (1 << 20),  # 1 MiB of whitespace in a value
    ],
)
def test_a_large_first_read_is_not_scanned(monkeypatch, data):
    """The regex's cost is linear in what it scans; what it scans is bounded, so a failed attempt is cheap."""
    sizes: list[int] = []
    monkeypatch.setattr(lean, "_HEAD", RecordingPattern(lean._HEAD, sizes))
    assert upgrade_head(data, SIZE, COUNT) is None
    assert sizes == []
    bounded = data[: SIZE + lean.SLACK]
    upgrade_head(bounded, SIZE, COUNT)  # (within the bound: scanned)
    assert sizes == [len(bounded)]
    assert upgrade_head(BROWSER + FRAME * 2, SIZE, COUNT) is not None  # a frame or two after the head is fine


# -- the differential property ----------------------------------------------------------

_LINES = BROWSER.split(b"\r\n")[:-2]


@st.composite
def upgrade_requests(draw: st.DrawFn) -> bytes:
    """A browser's upgrade request, damaged a little, maybe followed by a frame or a request."""
    lines = list(_LINES)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["drop", "dup", "value", "insert", "space", "name", "target"]))
        if kind == "drop" and len(lines) > 1:
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "value" and b":" in lines[i]:
            lines[i] = lines[i].split(b":", 1)[0] + b":" + draw(st.binary(max_size=20))
        elif kind == "insert":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.sampled_from([b" ", b"\t", b":", b"\r", b"\n", b"\x00", b"\x7f", b"\xff", b",", b"a"])) + lines[i][at:]
        elif kind == "space":
            lines.insert(i + 1, draw(st.sampled_from([b" x", b"\tx", b"", b"X-A:", b"X-B: \t", b"Content-Length: 0"])))
        elif kind == "name" and b":" in lines[i]:
            lines[i] = draw(st.sampled_from([b"host", b"HOST", b"upgrade", b"connection", b"x-y", b"X_Y"])) + b":" + lines[i].split(b":", 1)[1]
        elif kind == "target":
            lines[0] = b"GET " + draw(st.sampled_from([b"/", b"/a?b=%20", b"*", b"http://h/x", b"/\xc3\xa9", b"/%ff", b"y", b"/a#b"])) + b" HTTP/1.1"
    after = draw(st.sampled_from([b"", FRAME, FRAME[:1], b"\x88\x80abcd", b"GET / HTTP/1.1\r\n\r\n", b"\x00"]))
    return b"\r\n".join(lines) + b"\r\n\r\n" + after


@settings(max_examples=400, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(data=upgrade_requests())
def test_what_the_lean_path_accepts_the_full_parsers_read_the_same(data: bytes) -> None:
    lean = upgrade_head(data, SIZE, COUNT)
    if lean is None:
        return  # the full parser decides
    expected = (lean.target, lean.headers, data[lean.end :])
    for cls in PARSERS:
        assert full_parse(cls, data) == expected, cls
    # The headers it hands to ``Request`` are the ones ``Request`` would build from the list.
    built = Request("GET", lean.target, lean.headers).headers
    assert lean.fields is None or lean.fields == built
    assert Request("GET", lean.target, lean.headers, _fields=lean.fields).headers == built
