"""Every workflow on dagrt and on Dask, side by side, in one run.

Systems: dagrt in-process, dagrt ``Client()`` with 2 worker processes, Dask's
threaded scheduler, and Dask distributed ``LocalCluster(n_workers=2,
threads_per_worker=1)``. Each workflow runs on every system in turn
(alternating), several times; the table shows medians and ratios; the raw
figures go to a JSON file and a PNG chart. BLAS runs single-threaded
everywhere, so parallelism comes from the runtimes themselves.

    python benchmarks/run_all.py [--repeat 3] [--quick] [--only gemm,svd1]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

import dask_workflows  # noqa: E402
from _harness import Result, save_json, table  # noqa: E402

import dagrt  # noqa: E402
from dagrt import workflows  # noqa: E402
from dagrt.workflows.wordcount import generate as wordcount_text  # noqa: E402

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
    args = parser.parse_args()
    names = [n for n in workflows.NAMES if not args.only or n in args.only.split(",")]

    from distributed import Client as DaskClient
    from distributed import LocalCluster as DaskCluster

    loop = asyncio.new_event_loop()
    inprocess = dagrt.Client(processes=False, threads=2, metrics=False)
    cluster = dagrt.Client(n_workers=2, threads=1, metrics=False)
    loop.run_until_complete(inprocess.__aenter__())
    loop.run_until_complete(cluster.__aenter__())
    dask_cluster = DaskCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    dask_client = DaskClient(dask_cluster, set_as_default=False)

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
                "dagrt-inprocess": lambda: loop.run_until_complete(
                    inprocess.compute(flow.build(**params))
                ),
                "dagrt-cluster": lambda: loop.run_until_complete(
                    cluster.compute(flow.build(**params))
                ),
            }
            times: dict[str, list[float]] = {s: [] for s in SYSTEMS}
            print(f"{name} {params} ...", flush=True)
            for round_ in range(args.repeat + 1):  # round 0 warms up every system
                for system in SYSTEMS:
                    t0 = time.perf_counter()
                    value = runs[system]()
                    elapsed = time.perf_counter() - t0
                    if system.startswith("dagrt") and not flow.check(value, expected):
                        raise SystemExit(f"{system} gave a wrong result for {name}")
                    if round_:
                        times[system].append(elapsed)
            for system in SYSTEMS:
                results.append(Result(name, system, times[system], {"params": params}))
            row = {s: statistics.median(times[s]) for s in SYSTEMS}
            print("  " + "  ".join(f"{s} {row[s] * 1e3:.0f} ms" for s in SYSTEMS), flush=True)
    finally:
        dask_client.close()
        dask_cluster.close()
        loop.run_until_complete(inprocess.close())
        loop.run_until_complete(cluster.close())
        loop.close()

    print()
    print(table(results, baseline="dask-distributed"))
    print()
    print(table(results, baseline="dask-threads"))
    save_json(results, args.json, quick=args.quick, repeat=args.repeat)
    chart(results, args.png)
    print(f"\nraw figures: {args.json}  chart: {args.png}")


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
