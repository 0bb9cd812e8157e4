"""The dependency rule of ``ws``, enforced: layers, forbidden imports, no cycles.

The contracts live in ``setup.cfg`` (``[importlinter]``) so that ``lint-imports``
on the command line and this test check the same thing.  Function-level imports
count; imports under ``if TYPE_CHECKING:`` do not (they are annotations).
"""

from __future__ import annotations

import subprocess
import sys

import grimp  # installed with import-linter, a test dependency
import importlinter  # noqa: F401  (the contracts' runner)

from .conftest import ROOT

LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_import_contracts_are_kept() -> None:
    """``lint-imports``: every contract of setup.cfg is kept; the report names the offending import lines."""
    done = subprocess.run(
        [sys.executable, "-c", LINT, "--config", str(ROOT / "setup.cfg"), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"import contracts broken:\n{done.stdout}\n{done.stderr}"


def import_cycles(graph: "grimp.ImportGraph", modules: set[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself), sorted.

    Tarjan's algorithm, iterative so that a deep chain cannot hit the recursion limit.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    successors = {m: sorted(graph.find_modules_directly_imported_by(m) & modules) for m in modules}
    counter = 0
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            for i in range(position, len(successors[node])):
                nxt = successors[node][i]
                if nxt not in index:
                    work.append((node, i + 1))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in successors[node]:
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(cycles)


def cycle_report(graph: "grimp.ImportGraph", component: list[str]) -> str:
    """One component, with the import lines that bind it."""
    members = set(component)
    lines = [" <-> ".join(component)]
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            details = graph.get_import_details(importer=importer, imported=imported)
            where = ", ".join(f"l.{d['line_number']}" for d in details)
            lines.append(f"    {importer} -> {imported} ({where})")
    return "\n".join(lines)


def test_the_cycle_finder_finds_cycles() -> None:
    """The checker itself: a cycle of three and a self-import are found, a chain is not."""
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c", "p.d", "p.e"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    graph.add_import(importer="p.c", imported="p.d")
    graph.add_import(importer="p.e", imported="p.e")
    assert import_cycles(graph, set(graph.modules)) == [["p.a", "p.b", "p.c"], ["p.e"]]


def test_no_import_cycles_in_ws() -> None:
    """No module of ``ws`` imports, directly or through others, a module that imports it back."""
    graph = grimp.build_graph("ws", exclude_type_checking_imports=True, cache_dir=None)
    modules = {m for m in graph.modules if m == "ws" or m.startswith("ws.")}
    cycles = import_cycles(graph, modules)
    assert not cycles, "import cycles in ws/:\n" + "\n".join(cycle_report(graph, c) for c in cycles)


def test_importing_ws_http_loads_nothing_above_it() -> None:
    """``import ws.http`` at run time (what the static graph cannot see: the package ``__init__`` files)."""
    probe = "import sys, ws.http; print(' '.join(sorted(m for m in sys.modules if m.startswith('ws.'))))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    above = ("ws.server", "ws.styles", "ws.asgi", "ws.reconnect", "ws.cli", "ws.connection")
    loaded = [m for m in done.stdout.split() if m.startswith(above)]
    assert loaded == [], f"import ws.http loaded modules above it: {loaded}"
