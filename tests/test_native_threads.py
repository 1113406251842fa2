"""The native thread budget: every process dagrt runs tasks in holds native libraries
(BLAS, OpenMP) to the cores its task threads leave, the user's own setting wins, and a
task may ask for more.

Tasks read the limits that apply where they run through threadpoolctl, after
importing numpy (whose OpenBLAS sizes its pool when it loads).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from conftest import Pool, worker_env

import dagrt
from dagrt import native_threads

pytest.importorskip("threadpoolctl")
np = pytest.importorskip("numpy")


@dagrt.task
def limits(_: Any = None) -> dict[str, Any]:
    """What applies in the process that runs this task."""
    import numpy  # noqa: F401 - loads OpenBLAS, if it was not loaded yet
    from threadpoolctl import threadpool_info

    return {
        "blas": sorted({lib["num_threads"] for lib in threadpool_info()}),
        "env": native_threads.user_set(),
    }


@dagrt.task(threads=2)
def wide_limits(_: Any = None) -> dict[str, Any]:
    return limits.fn()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable of the user's: dagrt's budget applies."""
    for name in native_threads.VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_budget_shares_the_cores_out() -> None:
    assert native_threads.budget(threads=1, processes=2, on=2) == 1
    assert native_threads.budget(threads=1, processes=1, on=8) == 8
    assert native_threads.budget(threads=2, processes=2, on=16) == 4
    assert native_threads.budget(threads=4, processes=4, on=2) == 1  # never below one


async def test_a_local_cluster_gives_each_worker_its_share(clean_env: None) -> None:
    async with dagrt.Client(n_workers=2, threads=1) as client:
        assert client.cluster is not None
        share = native_threads.budget(threads=1, processes=2)
        assert client.cluster.native_threads == share
        seen = await client.compute([limits(i) for i in range(4)])
    expected = {name: str(share) for name in native_threads.VARIABLES}
    assert all(s == {"blas": [share], "env": expected} for s in seen)


def test_a_worker_applies_its_budget_and_a_users_setting_wins(
    pool_factory: Any, clean_env: None
) -> None:
    pool: Pool = pool_factory(0)
    alone = pool.spawn("--threads", "1")  # cores // 1
    first = dagrt.compute(limits(), address=pool.url)
    alone.terminate()
    alone.wait(15)
    cores = native_threads.cores()
    assert first["blas"] == [cores]
    assert first["env"]["OPENBLAS_NUM_THREADS"] == str(cores)

    told = pool.spawn("--threads", "1", "--native-threads", "1")
    second = dagrt.compute(limits(1), address=pool.url)
    told.terminate()
    told.wait(15)
    assert second["blas"] == [1]

    pool.spawn("--threads", "2", env=worker_env(OMP_NUM_THREADS="2"))  # budget 1, but...
    third = dagrt.compute(limits(2), address=pool.url)
    assert third["env"] == {"OMP_NUM_THREADS": "2"}  # dagrt set nothing
    assert third["blas"] == [min(2, cores)]


async def test_a_task_that_asks_for_threads_gets_them_for_its_call(
    pool_factory: Any, clean_env: None
) -> None:
    pool: Pool = pool_factory(0)
    pool.spawn("--threads", "2", "--native-threads", "1")
    async with dagrt.Client(pool.url) as client:
        wide = await client.compute(wide_limits())
        after = await client.compute(limits())
    assert wide["blas"] == [2]
    assert after["blas"] == [1]  # back to the budget once the call ended


def test_the_in_process_runtime_gives_the_callers_limits_back() -> None:
    """In a fresh process, numpy loaded first (one BLAS thread per core): a client that
    runs tasks in this process holds them to its budget while it is open, not after."""
    script = textwrap.dedent(
        """
        import asyncio, os, numpy, dagrt
        from threadpoolctl import threadpool_info

        def blas():
            return sorted({lib["num_threads"] for lib in threadpool_info()})

        @dagrt.task
        def inside():
            return blas(), os.environ.get("OPENBLAS_NUM_THREADS")

        @dagrt.task(threads=2)
        def wide():
            return blas()

        async def main():
            before = blas()
            async with dagrt.Client(processes=False, threads=2) as client:
                during = await client.compute(inside())
                widened = await client.compute(wide())
            print(before, during, widened, blas(), os.environ.get("OPENBLAS_NUM_THREADS"))

        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in native_threads.VARIABLES}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    cores = native_threads.cores()
    share = native_threads.budget(threads=2)
    assert out.stdout.split("\n")[0] == (
        f"[{cores}] ([{share}], '{share}') [{max(2, share)}] [{cores}] None"
    )
