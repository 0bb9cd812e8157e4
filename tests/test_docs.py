"""The code blocks of README.md and docs/*.md: each one is run by a test or marked as a fragment.

How a block is marked is in tests/fixtures/doc_blocks.py: an HTML comment right before its fence,
``<!-- run: NAME -->``, ``<!-- example: scripts/examples/FILE.py -->`` or ``<!-- fragment -->``.
The first half of this file checks the marks (every block has one, fragments compile, every
``run:`` name is taken by a test, every ``example:`` is in its file and that file is run by a
test). The second half runs the README's blocks and the other pages' complete scripts, each as
``python script.py`` in its own process, as pasted; only the example's port is replaced by a
free one. docs/coming-from-node.md's blocks are run by tests/test_coming_from_node.py, the
browser JavaScript of docs/recovery.md and docs/coming-from-justscale.md by the browser tests.
"""

from __future__ import annotations

import ast
import json
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ws import MessageEvent, WebSocket, WebSocketServer, http

from .fixtures.doc_blocks import ROOT, Block, Script, all_blocks, block, handshake, with_port
from .fixtures.processes import free_port

T = 10.0
BLOCKS = all_blocks()
TESTS = {path: path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("*.py")}


# -- the marks -----------------------------------------------------------------------------------------------


def test_every_code_block_is_run_or_marked_as_a_fragment() -> None:
    unmarked = [f"{b.where} ```{b.lang} {b.marker or '(no marker)'}" for b in BLOCKS if b.lang and b.kind is None]
    assert not unmarked, (
        "blocks with neither <!-- fragment -->, <!-- run: NAME --> nor <!-- example: PATH --> on the line "
        "before the fence:\n" + "\n".join(unmarked)
    )
    assert len([b for b in BLOCKS if b.lang == "python"]) >= 30  # the walk found them


def test_run_names_are_unique_and_each_is_taken_by_a_test() -> None:
    names = [b.arg or "" for b in BLOCKS if b.kind == "run"]
    assert all(re.fullmatch(r"[a-z0-9-]+", name) for name in names), names  # lower case, digits, hyphens
    assert len(names) == len(set(names)), sorted(names)
    for name in names:
        users = [p.name for p, text in TESTS.items() if re.search(rf"[\"']{re.escape(name)}[\"']", text)]
        assert users, f"no test takes the block marked <!-- run: {name} --> (block({name!r}))"


def test_block_names_used_by_tests_exist() -> None:
    names = {b.arg for b in BLOCKS if b.kind == "run"}
    used = {m for text in TESTS.values() for m in re.findall(r"\bblock\(\s*[\"']([a-z0-9-]+)[\"']", text)}
    assert used <= names, used - names


def fragment_id(b: Block) -> str:
    return f"{b.where}-{b.lang}"


@pytest.mark.parametrize("b", [b for b in BLOCKS if b.kind == "fragment" and b.lang in ("python", "json")], ids=fragment_id)
def test_fragments_compile(b: Block) -> None:
    if b.lang == "json":
        json.loads(b.code)
    else:
        compile(b.code, b.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


@pytest.mark.parametrize("b", [b for b in BLOCKS if b.kind == "run" and b.lang == "python"], ids=fragment_id)
def test_blocks_to_run_compile(b: Block) -> None:
    """Whole scripts: no top-level await (python script.py would refuse it)."""
    compile(b.code, b.where, "exec", dont_inherit=True)


def contains(lines: list[str], wanted: list[str]) -> bool:
    """Whether ``wanted`` are consecutive lines of ``lines``, all indented alike (blank lines match blank)."""
    for start in range(len(lines) - len(wanted) + 1):
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        if all(lines[start + i] == indent + line if line else not lines[start + i].strip() for i, line in enumerate(wanted)):
            return True
    return False


@pytest.mark.parametrize("b", [b for b in BLOCKS if b.kind == "example"], ids=fragment_id)
def test_example_blocks_are_lines_of_an_example_a_test_runs(b: Block) -> None:
    path = ROOT / (b.arg or "")
    assert path.parent == ROOT / "scripts" / "examples" and path.is_file(), f"{b.where}: {b.arg} is not a file of scripts/examples/"
    assert contains(path.read_text(encoding="utf-8").split("\n"), b.code.rstrip("\n").split("\n")), (
        f"{b.where}: the block is not in {b.arg} (as consecutive lines, at one indentation)"
    )
    assert any(path.name in text for p, text in TESTS.items() if p.name != "test_docs.py"), f"no test runs {b.arg}"


def test_the_name_table_says_same_only_where_the_javascript_spelling_is_there() -> None:
    """docs/api.md's JavaScript names: a row saying "same" names attributes that exist under that name."""
    table = (ROOT / "docs" / "api.md").read_text(encoding="utf-8").split("## JavaScript names", 1)[1]
    owners = {"ws": WebSocket, "wss": WebSocketServer, "WebSocket": WebSocket, "evt": MessageEvent, "server": http.Server}
    same = 0
    for left, right in re.findall(r"^\| (.+?) \| (.+?) \|$", table, re.M):
        if not right.startswith("same"):
            continue
        same += 1
        owner: Any = None
        for token in re.findall(r"`([^`]+)`", left):
            name = token.split("(")[0]
            if "." in name:
                prefix, name = name.split(".", 1)
                owner = owners[prefix]
            assert owner is not None and hasattr(owner, name), f"the row {left!r} says 'same', but {token} is not there"
    assert same >= 6


# -- the README ----------------------------------------------------------------------------------------------


def test_readme_server_and_client_run_together_as_pasted(tmp_path: Path) -> None:
    port = free_port()
    with Script(with_port(block("readme-server").code, 8080, port), tmp_path, "server.py") as server:
        assert server.expect("listening on") == f"listening on 127.0.0.1:{port}"
        with Script(with_port(block("readme-client").code, 8080, port), tmp_path, "client.py") as client:
            assert client.wait() == 0, client.report()
            assert (client.stdout, client.stderr) == ("echo: hello\nclosed 1000\n", "")
        assert server.expect("connected") == "connected /ws 127.0.0.1 chat"
        assert get(f"http://127.0.0.1:{port}/health") == (200, "ok")
        # The server refuses a client without the token, as its verify_client says.
        assert handshake(f"ws://127.0.0.1:{port}/ws") == (401, None)
        assert server.stop(signal.SIGTERM) == 0, server.report()
        assert server.stderr == ""


# -- the other pages' scripts ---------------------------------------------------------------------------------


def get(url: str, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=T) as response:
        return response.status, response.read().decode()


@pytest.mark.parametrize("name", ["api-imports", "logging-config", "debug-mode"])
def test_scripts_that_end_by_themselves(tmp_path: Path, name: str) -> None:
    with Script(block(name).code, tmp_path) as script:
        assert script.wait() == 0, script.report()
        assert (script.stdout, script.stderr) == ("", "")


def test_http_server_page_example(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "hello.txt").write_text("static hello")
    port = free_port()
    with Script(with_port(block("http-server").code, 8080, port), tmp_path) as script:
        assert script.expect("listening on") == f"listening on 127.0.0.1:{port}"
        base = f"http://127.0.0.1:{port}"
        assert get(f"{base}/hello?name=ann") == (200, "hi ann")
        assert get(f"{base}/items", b'{"name": "pen"}') == (201, '{"id":1,"name":"pen"}')
        assert get(f"{base}/static/hello.txt") == (200, "static hello")
        assert handshake(f"ws://127.0.0.1:{port}/chat") == (None, "welcome")
        assert script.stop() == 0 and script.stderr == "", script.report()


def test_http_create_server_and_listen(tmp_path: Path) -> None:
    port = free_port()
    with Script(with_port(block("http-listen").code, 8080, port), tmp_path) as script:
        assert script.expect("listening on") == f"listening on {port}"
        assert handshake(f"ws://127.0.0.1:{port}/") == (None, "welcome")
        assert script.stop() == 0 and script.stderr == "", script.report()


def test_stdlib_server(tmp_path: Path) -> None:
    port = free_port()
    with Script(with_port(block("stdlib-server").code, 8000, port), tmp_path) as script:
        script.wait_port(port)
        assert get(f"http://127.0.0.1:{port}/") == (200, "hello")
        with WebSocket(f"ws://127.0.0.1:{port}/ws") as sock:
            sock.send("over stdlib")
            assert sock.recv(timeout=T).data == "over stdlib"
        # Ctrl-C: httpd.serve_forever() ends with KeyboardInterrupt, as without ws.
        script.stop(signal.SIGINT)
        assert "KeyboardInterrupt" in script.stderr, script.report()


def test_joystick_endpoints(tmp_path: Path) -> None:
    port = free_port()
    with Script(with_port(block("joystick-endpoints").code, 2600, port), tmp_path) as script:
        script.wait_port(port)
        with WebSocket(f"ws://127.0.0.1:{port}/api/_websockets/example_endpoint") as sock:
            hello = json.loads(sock.recv(timeout=T).data)
            sock.send(json.dumps({"n": 1}))
            assert json.loads(sock.recv(timeout=T).data) == {"echo": {"n": 1}}
        assert list(hello) == ["hello"] and hello["hello"]
        assert script.expect("closed") == "closed 1000 "
        assert script.stop() == 0 and script.stderr == "", script.report()


def test_recovery_server_and_client(tmp_path: Path) -> None:
    port = free_port()
    with Script(with_port(block("recovery-server").code, 8080, port), tmp_path, "feed.py") as server:
        server.wait_port(port)
        with Script(with_port(block("recovery-client").code, 8080, port), tmp_path, "client.py") as client:
            # A first connection: no position to recover from, so the status says "new".
            assert client.expect("new") == "False new"
            # SIGTERM: it goes away with 1001 and reconnects no more (it did, and took 5 s to exit with 143).
            assert client.stop() == 0 and client.stderr == "", client.report()
            assert client.lines == ["False new"]
        assert server.stop() == 0 and server.stderr == "", server.report()
