"""What one Lua script call costs InMemoryStorage, in this process.

Times the scripts the in-process runtime runs, through ``InMemoryStorage``'s
pipeline seam as the runtime sends them: ``complete`` for a batch of 1 and of 32
tasks (each task counts itself, keeps one ready child, dispatches another when it
becomes ready, acknowledges one entry), ``log_run`` with 1 and with 50 entries of
200 bytes (two counters, one field, index mode "N"), ``read_entries`` of 200 ids,
and ``stop`` on a run that is no longer running. It uses only names that have not
changed since the scripts ran as Python twins, so the same file times either
implementation: run it with ``PYTHONPATH`` pointing at each checkout.

    python benchmarks/scripts_inmemory.py [--repeat 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagrt import keys as K
from dagrt.metrics.read import READ_ENTRIES
from dagrt.metrics.runs_index import LOG_RUN
from dagrt.scheduler import STOP, Completion, complete_cmd
from dagrt.storage import InMemoryStorage
from dagrt.storage import commands as C

STREAM = K.tasks_stream()


def _run(storage: InMemoryStorage, run_id: str, n_tasks: int) -> K.RunKeys:
    """A running run of ``n_tasks`` tasks whose outputs are stored: task i has
    children 2i+1 (ready once i completes) and 2i+2 (waits for two parents)."""
    rk = K.RunKeys(run_id)
    storage.hset(rk.meta, {"status": "running", "left": 10 * n_tasks})
    deps: dict[str, int] = {}
    for i in range(n_tasks):
        deps[str(n_tasks + 2 * i)] = 1
        deps[str(n_tasks + 2 * i + 1)] = 2
    storage.hset(rk.deps, deps)
    storage.mset({rk.output(i): b"x" for i in range(n_tasks)})
    storage.xgroup_create(STREAM, K.TASKS_GROUP, "0")
    return rk


def complete_case(batch: int, calls: int) -> Callable[[], Any]:
    """``calls`` completions of ``batch`` tasks each, every task counted now."""
    storage = InMemoryStorage()
    n = batch * calls
    rk = _run(storage, "bench-complete", n)
    ids = storage.xadd_many(STREAM, [{"r": "bench", "t": i} for i in range(n)])
    storage.xreadgroup(K.TASKS_GROUP, "w", {STREAM: ">"})
    cmds = []
    for c in range(calls):
        items = [
            Completion(i, [n + 2 * i, n + 2 * i + 1], [ids[i]], may_keep=True)
            for i in range(c * batch, (c + 1) * batch)
        ]
        cmds.append(complete_cmd(rk, items, "w1", stream=STREAM))

    def go() -> None:
        for cmd in cmds:
            storage.pipeline([cmd])

    return go


def log_run_case(entries: int, calls: int) -> Callable[[], Any]:
    storage = InMemoryStorage()
    run_id = "bench-log"
    keys = (
        K.events(),
        K.run_record(run_id),
        K.run_entries(run_id),
        K.runs_index(),
        K.log_writer("w1"),
    )
    cmds = []
    for seq in range(1, calls + 1):
        argv: list[Any] = [run_id, seq, entries]
        for _ in range(entries):
            argv += [8, b"e" * 200]
        argv += [2, "done", 1, "events", 8 * entries, 1, "status", "running", repr(1.5), "N"]
        cmds.append(C.Cmd(("EVALSHA", LOG_RUN.sha, len(keys), *keys, *argv)))

    def go() -> None:
        for cmd in cmds:
            storage.pipeline([cmd])

    return go


def read_entries_case(ids: int, calls: int) -> Callable[[], Any]:
    storage = InMemoryStorage()
    written = storage.xadd_many(K.events(), [{"r": "x", "n": 8, "d": b"e" * 200}] * ids)

    def go() -> None:
        for _ in range(calls):
            storage.run_script(READ_ENTRIES, [K.events()], written)

    return go


def stop_case(calls: int) -> Callable[[], Any]:
    storage = InMemoryStorage()
    rk = K.RunKeys("bench-stop")
    storage.hset(rk.meta, {"status": "finished"})

    def go() -> None:
        for _ in range(calls):
            storage.run_script(STOP, [rk.meta, rk.events], ["cancelled"])

    return go


CASES: dict[str, tuple[Callable[[int], Callable[[], Any]], int]] = {
    # name: (factory of calls, calls per timed round)
    "complete, batch of 1": (lambda calls: complete_case(1, calls), 2000),
    "complete, batch of 32": (lambda calls: complete_case(32, calls), 200),
    "log_run, 1 entry": (lambda calls: log_run_case(1, calls), 2000),
    "log_run, 50 entries": (lambda calls: log_run_case(50, calls), 200),
    "read_entries, 200 ids": (lambda calls: read_entries_case(200, calls), 200),
    "stop (not running)": (stop_case, 5000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import dagrt

    print(f"dagrt from {Path(dagrt.__file__).parent}")
    print(f"{'case':<26}{'µs per call':>14}{'spread':>18}")
    out: dict[str, list[float]] = {}
    for name, (factory, calls) in CASES.items():
        factory(10)()  # warm up: scripts compiled, caches filled
        per_call: list[float] = []
        for _ in range(args.repeat):
            go = factory(calls)  # fresh state each round: every call takes the same path
            gc.collect()
            t0 = time.perf_counter()
            go()
            per_call.append((time.perf_counter() - t0) / calls * 1e6)
        out[name] = per_call
        print(
            f"{name:<26}{statistics.median(per_call):>14.1f}"
            f"{f'{min(per_call):.1f}-{max(per_call):.1f}':>18}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"python": sys.version, "us_per_call": out}, indent=1))


if __name__ == "__main__":
    main()
