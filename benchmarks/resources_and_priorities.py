"""Resources and priorities: what a lane costs per task, and how soon urgent work runs.

Part 1, the cost of a lane: ``--tasks`` independent tiny tasks on two workers, plain,
with a priority (every task in a priority lane), and needing a resource every worker
has plenty of (``slot=1``, workers with ``slot=1000``: a resource lane). Dask
distributed on the same two processes: plain, ``priority=``, and ``resources=`` with
workers that declare the same amount. A lane's entries are moved to the tasks stream
by the worker that reads them (one script call, as any read), so the difference to
plain is the cost of that move and of holding the amounts.

Part 2, priorities under load: a queue of ``--backlog`` tasks of 20 ms each is
submitted first, then one urgent task (``priority=10``); the time from submitting the
urgent task to having its result. Without priorities it waits behind the backlog
(Dask and dagrt both order by submission then); with them it runs next.

    python benchmarks/resources_and_priorities.py [--repeat 5] [--tasks 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import dagrt

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Result, measure, save_json, table


def tiny(i: int) -> int:
    return i + 1


def work(seconds: float, i: int) -> int:
    time.sleep(seconds)
    return i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--backlog", type=int, default=100)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/lanes.json"))
    args = parser.parse_args()

    from distributed import Client as DaskClient
    from distributed import LocalCluster as DaskCluster

    n = args.tasks
    expected = sum(range(1, n + 1))
    plain = dagrt.task(tiny)
    urgent_prio = dagrt.task(tiny, priority=5)
    slotted = dagrt.task(tiny, resources={"slot": 1})

    loop = asyncio.new_event_loop()
    client = dagrt.Client(n_workers=2, threads=1, resources={"slot": 1000})
    loop.run_until_complete(client.__aenter__())
    cluster = DaskCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        resources={"slot": 1000},
    )
    dask_client = DaskClient(cluster)

    def run(xs: Any, priority: int = 0) -> Any:
        return sum(loop.run_until_complete(client.compute(xs, priority=priority)))

    def dask_run(**options: Any) -> int:
        futures = dask_client.map(tiny, range(n), pure=False, **options)
        return sum(dask_client.gather(futures))

    def check(name: str, value: Any) -> None:
        assert value == expected, (name, value, expected)

    results: list[Result] = []
    results += measure(
        f"independent[{n}]",
        {
            "dagrt-plain": lambda: run([plain(i) for i in range(n)]),
            "dagrt-priority": lambda: run([urgent_prio(i) for i in range(n)]),
            "dagrt-resource": lambda: run([slotted(i) for i in range(n)]),
            "dask-plain": lambda: dask_run(),
            "dask-priority": lambda: dask_run(priority=5),
            "dask-resource": lambda: dask_run(resources={"slot": 1}),
        },
        repeat=args.repeat,
        check=check,
    ).values()

    # Part 2: one urgent task behind a backlog.
    slow = dagrt.task(work)
    backlog_n = args.backlog

    def dagrt_urgent(priority: int) -> float:
        async def go() -> float:
            backlog = client.submit([slow(0.02, i) for i in range(backlog_n)])
            await asyncio.sleep(0.05)  # (the backlog is queued)
            t0 = time.perf_counter()
            await client.compute(slow(0.0, -1), priority=priority)
            waited = time.perf_counter() - t0
            await backlog
            return waited

        return loop.run_until_complete(go())

    def dask_urgent(priority: int) -> float:
        backlog = dask_client.map(work, [0.02] * backlog_n, range(backlog_n), pure=False)
        time.sleep(0.05)
        t0 = time.perf_counter()
        dask_client.submit(work, 0.0, -1, pure=False, priority=priority).result()
        waited = time.perf_counter() - t0
        dask_client.gather(backlog)
        return waited

    waits: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for name, fn in {
            "dagrt-no-priority": lambda: dagrt_urgent(0),
            "dagrt-priority-10": lambda: dagrt_urgent(10),
            "dask-no-priority": lambda: dask_urgent(0),
            "dask-priority-10": lambda: dask_urgent(10),
        }.items():
            waits.setdefault(name, []).append(fn())
    workload = f"urgent-behind[{backlog_n}x20ms]"
    results += [Result(workload, name, seconds) for name, seconds in waits.items()]

    dask_client.close()
    cluster.close()
    loop.run_until_complete(client.__aexit__(None, None, None))
    loop.close()
    print(table([r for r in results if r.workload.startswith("independent")], "dagrt-plain"))
    print("time from submitting the urgent task to its result:")
    print(table([r for r in results if r.workload.startswith("urgent")], "dagrt-priority-10"))
    save_json(results, args.json, tasks=n, backlog=backlog_n)


if __name__ == "__main__":
    main()
