"""ws.http.routing without sockets: the one path-pattern compiler and the HTTP route table."""

from __future__ import annotations

import pytest

from ws.http.routing import PathPattern, Router
from ws.styles.routes import compile_path


def test_colon_and_brace_parameters_match_one_segment_each() -> None:
    pattern = PathPattern("/a/{x}/b/:y")
    assert pattern.names == ("x", "y") and not pattern.literal
    assert pattern.match("/a/1/b/2") == {"x": "1", "y": "2"}
    assert pattern.match("/a/1/b/2/more") is None
    assert pattern.match("/a//b/2") is None  # a parameter is never empty


def test_values_are_percent_decoded_once() -> None:
    assert PathPattern("/u/:name").match("/u/ann%20b%252F") == {"name": "ann b%2F"}


def test_text_around_parameters_is_literal() -> None:
    assert PathPattern("/files/:name.json").match("/files/report.json") == {"name": "report"}
    assert PathPattern("/files/:name.json").match("/files/reportXjson") is None
    assert PathPattern("/flights/:from-:to").match("/flights/LHR-JFK") == {"from": "LHR", "to": "JFK"}
    assert PathPattern("/plain.path").match("/plainXpath") is None


def test_a_literal_path_matches_only_itself() -> None:
    pattern = PathPattern("/health")
    assert pattern.literal and pattern.match("/health") == {} and pattern.match("/health/") is None


@pytest.mark.parametrize("bad", ["a/:x", "", None, 3])
def test_a_path_must_start_with_a_slash(bad: object) -> None:
    with pytest.raises(ValueError, match="starting with '/'"):
        PathPattern(bad)  # type: ignore[arg-type]


def test_a_parameter_named_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        PathPattern("/a/:x/{x}")


def test_the_styles_compile_paths_with_the_same_compiler() -> None:
    assert compile_path("/chat/room/:room_id").pattern == PathPattern("/chat/room/:room_id").regex.pattern
    assert compile_path("/a/{x}").match("/a/1").groupdict() == {"x": "1"}  # type: ignore[union-attr]


def test_router_precedence_exact_then_patterns_in_order() -> None:
    router = Router()

    def exact(ctx: object) -> None: ...
    def first(ctx: object) -> None: ...
    def second(ctx: object) -> None: ...

    router.add("GET", "/users/me", exact)
    router.add("GET", "/users/:id", first)
    router.add("GET", "/users/{name}", second)
    assert router.resolve("GET", "/users/me") == (exact, {}, ["GET", "HEAD"])
    assert router.resolve("GET", "/users/42") == (first, {"id": "42"}, ["GET", "HEAD"])


def test_router_methods_head_falls_back_to_get_and_405_lists_allowed() -> None:
    router = Router()

    def get(ctx: object) -> None: ...
    def post(ctx: object) -> None: ...

    router.add("GET", "/items/:id", get)
    router.add("POST", "/items/:id", post)  # same pattern: one entry, two methods
    assert router.resolve("HEAD", "/items/1") == (get, {"id": "1"}, ["GET", "HEAD", "POST"])
    assert router.resolve("DELETE", "/items/1") == (None, {"id": "1"}, ["GET", "HEAD", "POST"])
    assert router.resolve("GET", "/nothing") == (None, {}, [])
