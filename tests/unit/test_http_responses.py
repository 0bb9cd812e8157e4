"""ws.http.responses without sockets: the one plain-text answer builder and the Date header."""

from __future__ import annotations

import email.utils

import h11
import pytest

from ws.http.responses import SERVER_NAME, http_date, phrase, plain_response


def parse(data: bytes) -> tuple[h11.Response, bytes]:
    """Read ``data`` as a client would (h11), so the framing itself is checked."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    head = client.next_event()
    assert isinstance(head, h11.Response)
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage), event
            return head, body


def test_a_plain_answer_is_complete_and_closes() -> None:
    head, body = parse(plain_response(400))
    headers = {name.decode(): value.decode() for name, value in head.headers}
    assert head.status_code == 400 and head.reason == b"Bad Request"
    assert body == b"400 Bad Request\n"
    assert headers["connection"] == "close" and headers["server"] == SERVER_NAME
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == str(len(body))
    assert email.utils.parsedate_to_datetime(headers["date"]) is not None


def test_text_and_extra_headers() -> None:
    head, body = parse(plain_response(503, "503 Service Unavailable: busy", [("Retry-After", "1")]))
    assert body == b"503 Service Unavailable: busy\n"
    assert (b"retry-after", b"1") in list(head.headers)


@pytest.mark.parametrize("status, expected", [(404, "Not Found"), (426, "Upgrade Required"), (799, "Error")])
def test_phrase(status: int, expected: str) -> None:
    assert phrase(status) == expected


def test_http_date_is_an_rfc_9110_date() -> None:
    text = http_date()
    assert text.endswith(" GMT") and email.utils.parsedate_to_datetime(text).tzinfo is not None
