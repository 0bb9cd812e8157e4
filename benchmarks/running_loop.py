"""What ``send``'s "am I on the loop?" check costs on this Python, in ns (timeit, best of 15 x 1e6).

    for v in 3.10 3.11 3.12 3.13; do ~/.pyenv/versions/$v.*/bin/python benchmarks/running_loop.py; done

asyncio's ``_get_running_loop()`` inside a running loop (before 3.12 it calls
``getpid()``), outside one, and the two ways ``WebSocket.send`` asks
(``ws.connection.websocket._IDS_FIRST``): thread ids first, then asyncio;
or asyncio alone.  "listener": inside our read callback (the thread id
matches); "coroutine": on the loop but outside it (asyncio decides).  The
``branch`` rows add the version test as ``send`` runs it.  Results:
docs/performance-log.md, "Python versions".
"""

from __future__ import annotations

import asyncio
import sys
import threading
import timeit

N = 1_000_000
REPEAT = 15
BRANCH = """
if ids_first:
    on_loop = dispatching == get_ident() or running() is loop
else:
    on_loop = running() is loop
"""


def best(statement: str, env: dict[str, object]) -> float:
    return min(timeit.repeat(statement, globals=env, number=N, repeat=REPEAT)) / N * 1e9


async def measure() -> dict[str, float]:
    loop = asyncio.get_running_loop()
    env: dict[str, object] = {"running": asyncio._get_running_loop, "get_ident": threading.get_ident, "loop": loop}
    out = {"_get_running_loop() in a loop": best("running()", env)}
    for where, dispatching in (("listener", threading.get_ident()), ("coroutine", None)):
        env["dispatching"] = dispatching
        out[f"ids first, {where}"] = best("dispatching == get_ident() or running() is loop", env)
        out[f"asyncio only, {where}"] = best("running() is loop", env)
        for ids_first in (True, False):
            env["ids_first"] = ids_first
            out[f"branch ids_first={ids_first}, {where}"] = best(BRANCH, env)
    return out


def main() -> None:
    results = asyncio.run(measure())
    results["_get_running_loop() outside a loop"] = best("running()", {"running": asyncio._get_running_loop})
    print(f"Python {sys.version.split()[0]}")
    for name, ns in results.items():
        print(f"  {name:40} {ns:6.1f} ns")


if __name__ == "__main__":
    main()
