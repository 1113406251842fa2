"""``LocalCluster``: stopping its workers together, and what it owns."""

from __future__ import annotations

import time

import anyio
import pytest
from helpers import Signals, gate

import dagrt
from dagrt import DAG, submission
from dagrt.keyring import Keyring
from dagrt.keys import new_run_id
from dagrt.storage import RedisStorage


async def test_close_gives_all_stuck_workers_one_grace_period(signals: Signals) -> None:
    """Three workers busy with tasks that do not end: SIGTERM does not stop them (each
    waits for its task), so every one is killed, after one grace period for them all,
    not one each."""
    grace = 3.0
    cluster = dagrt.LocalCluster(3, concurrency=1, worker_options={"graceful-timeout": 60})
    async with cluster:
        storage = RedisStorage(cluster.url)
        gates = [gate(signals, f"stuck-{i}", i) for i in range(3)]
        await submission.submit(
            storage, DAG(*gates), new_run_id(), secret=Keyring.of(cluster.secret)
        )
        await storage.aclose()
        with anyio.fail_after(60):
            for i in range(3):  # one task in each worker (one entry in flight each)
                await signals.started(f"stuck-{i}")
        workers = list(cluster.processes)
        started = time.monotonic()
        await cluster.close(grace=grace)
        seconds = time.monotonic() - started
    for i in range(3):
        await signals.release(f"stuck-{i}")
    assert [w.returncode for w in workers] == [-9, -9, -9]  # they outlived SIGTERM
    assert seconds < 2 * grace  # one grace period in all (one after another: 3 x grace)
    assert cluster.processes == []
    assert cluster.server is None


@dagrt.task
def exit_the_worker(x: int) -> int:
    import os

    os._exit(1)


async def test_a_task_that_kills_its_workers_fails_and_the_cluster_goes_on() -> None:
    """Each worker that runs the task dies; the cluster replaces each, the task is taken
    over after the claim timeout, and after a few deliveries it fails with
    WorkerLostError instead of leaving the client waiting on a cluster with no worker.
    The cluster then runs the next run."""
    options = {"claim-timeout": 1, "heartbeat": 0.3}
    cluster = dagrt.LocalCluster(2, worker_options=options)
    async with cluster, dagrt.Client(cluster.url, secret=cluster.secret) as client:
        with anyio.fail_after(120), pytest.raises(dagrt.TaskError, match="WorkerLost"):
            await client.compute(exit_the_worker(1))
        assert cluster.restarts >= 3  # every delivery killed a worker (the last: replaced soon)
        assert len(cluster.processes) == 2
        with anyio.fail_after(60):
            assert await client.compute(dagrt.task(abs)(-3)) == 3
