"""What the event log costs, in instructions: the tree reduction counted by valgrind
(callgrind), metrics off and with the periodic policy.

Wall-clock ratios on a shared VM move by several percent from one minute to the next
(see metrics_overhead.py); an instruction count moves far less (what varies is how
work falls into batches and collections). ``--runtime in-process``: each configuration
runs twice under callgrind, with 2 warm-up runs and then 0 and then ``--runs``
measured ones; the difference, divided by ``--runs``, is one run's instructions
(start-up, imports and warm-up cancel out). ``--runtime worker``: one ``dagrt worker``
process under callgrind per configuration runs every task (its counters are zeroed
after a warm-up run and dumped after ``--runs`` runs and the idle write that follows);
the client and the server are not counted. Neither sees cache misses or waiting, so
it is a floor for the time the log adds. Needs ``valgrind``; 2-4 minutes each.

    python benchmarks/metrics_instructions.py [--runtime in-process|worker] [--runs 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio

import dagrt
from dagrt.metrics import FlushPolicy
from dagrt.workflows import pairwise


def add(x: int, y: int) -> int:
    return x + y


def child(mode: str, leaves: int, runs: int) -> None:
    """Runs under valgrind: 2 warm-up runs, then ``runs`` more."""
    task = dagrt.task(add)

    async def go() -> None:
        if mode == "off":
            client = dagrt.Client(processes=False, metrics=False)
        else:
            client = dagrt.Client(processes=False, flush=FlushPolicy(interval=1.0, max_events=None))
        async with client:
            for _ in range(2 + runs):
                assert await client.compute(pairwise(task, range(leaves))) == sum(range(leaves))
                if client.metrics is not None:
                    await client.metrics.flush()

    asyncio.run(go())


async def worker_count(mode: str, runs: int, leaves: int, folder: Path) -> int:
    """Instructions of one worker process over ``runs`` runs (after a warm-up one)."""
    from dagrt.storage import RedisServer

    task = dagrt.task(add)
    out = folder / f"worker-{mode}.out"
    flags = ["--no-metrics"] if mode == "off" else ["--flush-interval", "1.0"]
    here = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    command += ["-m", "dagrt", "worker", "--threads", "1", "--connect-timeout", "120", *flags]
    with RedisServer() as server:
        async with await anyio.open_process(
            [*command, "--redis", server.url], env=env, stdout=None, stderr=subprocess.DEVNULL
        ) as worker:
            try:
                async with dagrt.Client(server.url, metrics=False) as client:
                    await client.compute(pairwise(task, range(leaves)))
                    await anyio.sleep(3)  # (the warm-up run's write, when idle, lands)
                    await anyio.run_process(["callgrind_control", "-z", str(worker.pid)])
                    for _ in range(runs):
                        result = await client.compute(pairwise(task, range(leaves)))
                        assert result == sum(range(leaves))
                    await anyio.sleep(3)  # the last run's write, when idle, is counted
                    await anyio.run_process(["callgrind_control", "-d", str(worker.pid)])
            finally:
                worker.terminate()
                await worker.wait()
    dumps = sorted(await anyio.to_thread.run_sync(lambda: list(folder.glob(out.name + ".*"))))
    if not dumps:
        raise RuntimeError("callgrind wrote no dump of the worker")
    text = await anyio.Path(dumps[-1]).read_text()
    found = re.search(r"^summary: (\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction count in {dumps[-1]}")
    return int(found.group(1))


def count(mode: str, runs: int, leaves: int, folder: Path) -> int:
    """Instructions of one child process (the server it starts is not traced)."""
    out = folder / f"{mode}-{runs}.out"
    here = [__file__, "--child", mode, "--leaves", str(leaves), "--runs", str(runs)]
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, *here],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=16_384)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--runtime", choices=("in-process", "worker"), default="in-process")
    parser.add_argument("--child", choices=("off", "periodic"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.leaves, args.runs)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    modes = ("off", "periodic")
    with tempfile.TemporaryDirectory() as folder:
        if args.runtime == "worker":

            async def both() -> list[int]:
                made = (worker_count(m, args.runs, args.leaves, Path(folder)) for m in modes)
                return list(await asyncio.gather(*made))

            per_run = {m: n / args.runs for m, n in zip(modes, asyncio.run(both()), strict=True)}
        else:
            jobs = [(mode, runs) for mode in modes for runs in (0, args.runs)]
            with ThreadPoolExecutor(2) as pool:
                found = pool.map(lambda j: count(*j, args.leaves, Path(folder)), jobs)
                counts = dict(zip(jobs, found, strict=True))
            per_run = {m: (counts[m, args.runs] - counts[m, 0]) / args.runs for m in modes}
    tasks = args.leaves - 1
    where = "in-process" if args.runtime == "in-process" else "one worker's"
    print(f"{where} tree reduction of {tasks} tasks, instructions per run (callgrind)")
    for mode, n in per_run.items():
        added = n / per_run["off"] - 1
        print(
            f"  metrics {mode:<9} {n / 1e6:8.1f} M  {added * 100:+5.1f}%"
            f"  {(n - per_run['off']) / tasks:+6.0f} per task"
        )


if __name__ == "__main__":
    main()
