"""Every workflow on dagrt and on Dask, side by side, in one run.

Systems: dagrt in-process, dagrt ``Client()`` with 2 worker processes, Dask's
threaded scheduler, and Dask distributed ``LocalCluster(n_workers=2,
threads_per_worker=1)``. Each workflow runs on every system in turn
(alternating), several times; the table shows medians and ratios; the raw
figures go to a JSON file and a PNG chart.

Each side runs with its own native thread policy, as a user gets it: nothing is set
by hand here. dagrt holds BLAS/OpenMP to the cores its task threads leave
(``dagrt.native_threads``); Dask's nanny sets its workers' to one thread, and its
threaded scheduler leaves them alone. The in-process client is opened around each
of its runs only, so that Dask's threaded scheduler, in this same process, keeps
its own limits. The limits each side ran with are printed first (threadpoolctl).

``--dask-collections`` adds ``dagrt-cluster-dask``: the Dask collections the two Dask
systems run (``dask_workflows``), computed on dagrt's workers (``dagrt.dask``), each
result checked against dask-threads' of the same round. ``--locality-off`` adds a fifth system, ``dagrt-cluster-off``: a second client on the
same workers with ``LocalityOptions(enabled=False)`` (every ready child dispatched,
every output with a consumer stored, no chain fused), to show what locality gives on
each workflow.

    python benchmarks/run_all.py [--repeat 3] [--quick] [--only gemm,svd1] [--locality-off]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import dask_workflows
from _harness import Result, save_json, table

import dagrt
import dagrt.dask
from dagrt import native_threads, workflows
from dagrt.workflows.wordcount import generate as wordcount_text

QUICK: dict[str, dict[str, Any]] = {
    "tree_reduction": {"n": 4096},
    "gemm": {"n": 800, "b": 4, "seed": 0},
    "wordcount": {"words": 300_000, "chunks": 16, "seed": 0, "path": None},
    "image_transform": {"height": 768, "width": 768, "tiles": 4, "seed": 0, "path": None},
    "svd1": {"m": 60_000, "n": 40, "blocks": 8, "seed": 0},
    "svd2": {"n": 1200, "k": 10, "blocks": 4, "power": 1, "seed": 0},
}
SYSTEMS = ("dask-threads", "dask-distributed", "dagrt-inprocess", "dagrt-cluster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", default="", help="comma-separated workflow names")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/workflows.json"))
    parser.add_argument("--png", type=Path, default=Path("benchmarks/results/workflows.png"))
    parser.add_argument(
        "--locality-off", action="store_true", help="also run dagrt-cluster with locality off"
    )
    parser.add_argument(
        "--dask-collections",
        action="store_true",
        help="also run the Dask versions of the workflows on dagrt-cluster (client.get)",
    )
    args = parser.parse_args()
    systems = SYSTEMS + (("dagrt-cluster-off",) if args.locality_off else ())
    systems += ("dagrt-cluster-dask",) if args.dask_collections else ()
    names = [n for n in workflows.NAMES if not args.only or n in args.only.split(",")]

    from distributed import Client as DaskClient
    from distributed import LocalCluster as DaskCluster

    loop = asyncio.new_event_loop()
    cluster = dagrt.Client(n_workers=2, threads=1, metrics=False)
    loop.run_until_complete(cluster.__aenter__())
    assert cluster.cluster is not None
    off = dagrt.Client(
        cluster.cluster.url,
        metrics=False,
        locality={"enabled": False},
        secret=cluster.cluster.secret,
    )
    loop.run_until_complete(off.__aenter__())
    before = {name: os.environ.get(name) for name in native_threads.VARIABLES}
    dask_cluster = DaskCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    dask_client = DaskClient(dask_cluster, set_as_default=False)
    # Dask's nanny sets its workers' variables (OMP_NUM_THREADS=1, ...) in this process
    # too, before it spawns them: put them back, so that the runs of this process (Dask's
    # threaded scheduler, dagrt in-process) see the environment a user's process has.
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def inprocess(compute: Callable[[dagrt.Client], Any]) -> Any:
        """Time ``compute`` on an in-process client opened (and closed) around it."""

        async def run() -> tuple[Any, float]:
            async with dagrt.Client(processes=False, threads=2, metrics=False) as client:
                t0 = time.perf_counter()
                value = await compute(client)
                return value, time.perf_counter() - t0

        return loop.run_until_complete(run())

    print("native thread pools (threadpoolctl: library num_threads):")
    native = {
        "dask-threads": [blas_threads()],
        "dask-distributed": sorted(dask_client.run(blas_threads).values()),
        "dagrt-inprocess": [inprocess(lambda c: c.compute(dagrt.task(blas_threads)()))[0]],
        "dagrt-cluster": sorted(
            set(
                loop.run_until_complete(
                    cluster.compute([dagrt.task(blas_threads)(i) for i in range(8)])
                )
            )
        ),
    }
    for system, pools in native.items():
        print(f"  {system:<18} {pools}")

    results: list[Result] = []
    try:
        for name in names:
            flow = workflows.get(name)
            params = dict(QUICK[name] if args.quick else flow.BENCH)
            if name == "wordcount" and params.get("path") is None:
                # The text is the workload's input, made once and read from a file by every
                # system (as a user's corpus would be), not generated again inside each
                # timed round: generating 2M words took 0.66 s of the 1.1-2.1 s rounds.
                text = Path(tempfile.mkdtemp()) / "words.txt"
                text.write_text(wordcount_text(params["words"], params["seed"]))
                params["path"] = str(text)
            expected = flow.reference(**params)
            dask_params = dict(params)
            runs = {
                "dask-threads": lambda: dask_workflows.compute(
                    dask_workflows.BUILDERS[name](**dask_params), scheduler="threads", num_workers=2
                ),
                "dask-distributed": lambda: dask_workflows.compute(
                    dask_workflows.BUILDERS[name](**dask_params), scheduler=dask_client.get
                ),
                "dagrt-inprocess": lambda: inprocess(lambda c: c.compute(flow.build(**params))),
                "dagrt-cluster": lambda: loop.run_until_complete(
                    cluster.compute(flow.build(**params))
                ),
                "dagrt-cluster-off": lambda: loop.run_until_complete(
                    off.compute(flow.build(**params))
                ),
                # the Dask collections of dask-threads and dask-distributed, on dagrt's
                # workers (dask.compute in a thread, submitting to the client's loop)
                "dagrt-cluster-dask": lambda: dask_workflows.finish(
                    loop.run_until_complete(
                        dagrt.dask.acompute(cluster, dask_workflows.BUILDERS[name](**dask_params))
                    )[0]
                ),
            }
            times: dict[str, list[float]] = {s: [] for s in systems}
            print(f"{name} {params} ...", flush=True)
            for round_ in range(args.repeat + 1):  # round 0 warms up every system
                for system in systems:
                    t0 = time.perf_counter()
                    value = runs[system]()
                    elapsed = time.perf_counter() - t0
                    if system == "dagrt-inprocess":  # (the client's start is not timed)
                        value, elapsed = value
                    if system == "dask-threads":
                        dask_value = value
                    if system == "dagrt-cluster-dask":  # (the same Dask graph as dask-threads)
                        if not dask_workflows.same(name, value, dask_value):
                            raise SystemExit(f"{system} gave a wrong result for {name}")
                    elif system.startswith("dagrt") and not flow.check(value, expected):
                        raise SystemExit(f"{system} gave a wrong result for {name}")
                    if round_:
                        times[system].append(elapsed)
            for system in systems:
                results.append(Result(name, system, times[system], {"params": params}))
            row = {s: statistics.median(times[s]) for s in systems}
            print("  " + "  ".join(f"{s} {row[s] * 1e3:.0f} ms" for s in systems), flush=True)
    finally:
        dask_client.close()
        dask_cluster.close()
        loop.run_until_complete(off.close())
        loop.run_until_complete(cluster.close())
        loop.close()

    print()
    print(table(results, baseline="dask-distributed"))
    print()
    print(table(results, baseline="dask-threads"))
    save_json(results, args.json, quick=args.quick, repeat=args.repeat, native=native)
    chart([r for r in results if r.system in SYSTEMS], args.png)
    print(f"\nraw figures: {args.json}  chart: {args.png}")


def blas_threads(_: Any = None) -> str:
    """The native thread pools of the calling process, numpy loaded, and the variables
    set in its environment: ``"openblas=1 (OMP_NUM_THREADS=1 ...)"``."""
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info

    pools = " ".join(f"{lib['internal_api']}={lib['num_threads']}" for lib in threadpool_info())
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.endswith("_NUM_THREADS"))
    return f"{pools} ({env or 'no variable set'})"


def chart(results: list[Result], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no chart: matplotlib is not installed)")
        return
    names = list(dict.fromkeys(r.workload for r in results))
    width = 0.2
    fig, ax = plt.subplots(figsize=(10, 4))
    for k, system in enumerate(SYSTEMS):
        medians = [
            next(r.median for r in results if r.workload == n and r.system == system) for n in names
        ]
        ax.bar([i + (k - 1.5) * width for i in range(len(names))], medians, width, label=system)
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("seconds (median, log scale)")
    ax.set_title("dagrt vs Dask: end-to-end time per workflow (lower is better)")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
