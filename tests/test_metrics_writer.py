"""The event log's writer: who owns its flusher, and what closing writes.

The flusher is a task of a task group: the caller's (``start(task_group)``), the
one ``async with`` opens, or one the writer holds until ``aclose()`` (plain
``start()``, which may be closed from another task). Closing writes what is left
in a shielded scope, whichever it was.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import pytest

from dagrt.metrics import FlushPolicy, MetadataStorage, RunSubmitted, read_run
from dagrt.metrics import recorder as rec
from dagrt.storage import InMemoryStorage

NEVER = FlushPolicy(interval=None, max_events=None)  # task events wait for close


def finished(run_id: str, task: int) -> tuple[Any, ...]:
    now = time.time()
    return rec.task_finished(run_id, "w1", task, f"t-{task}", "add", 1, now, now, 0.001)


def flusher_tasks() -> list[str]:
    """The writer's tasks: the flusher, and the task holding its group if it has one."""
    return sorted(t.get_name() for t in asyncio.all_tasks() if "dagrt metrics" in t.get_name())


async def test_the_flusher_runs_in_the_callers_task_group() -> None:
    storage = InMemoryStorage()
    metrics = MetadataStorage(storage, FlushPolicy(after_each_task=True))
    async with anyio.create_task_group() as group:
        await metrics.start(group)
        assert flusher_tasks() == ["dagrt metrics flusher"]  # a child of the group, alone
        metrics.emit(finished("r1", 0))  # (the flusher is called at once)
        await anyio.wait_all_tasks_blocked()  # it wrote, and waits again
        assert metrics.written == 1
        metrics.emit(finished("r1", 1))
        await metrics.aclose()  # the flusher stops: the group has nothing left to wait for
    assert metrics.written == 2
    assert not flusher_tasks()
    assert [e.task for e in read_run(storage, "r1")] == [0, 1]  # type: ignore[attr-defined]


async def test_a_cancelled_task_group_stops_the_flusher_and_close_still_writes() -> None:
    storage = InMemoryStorage()
    metrics = MetadataStorage(storage, NEVER)
    async with anyio.create_task_group() as group:
        await metrics.start(group)
        metrics.emit(finished("r1", 0))
        group.cancel_scope.cancel()
    metrics.emit(finished("r1", 1))
    with anyio.CancelScope() as scope:
        scope.cancel()  # closing is shielded: a cancelled caller still gets its events out
        await metrics.aclose()
    assert (metrics.written, metrics.lost) == (2, 0)
    assert [e.task for e in read_run(storage, "r1")] == [0, 1]  # type: ignore[attr-defined]


async def test_a_writer_started_alone_holds_its_group_until_closed_from_another_task() -> None:
    storage = InMemoryStorage()
    metrics = MetadataStorage(storage, NEVER)
    await metrics.start()
    held = ["dagrt metrics flusher", "dagrt metrics writer"]  # the flusher, and its group's
    assert flusher_tasks() == held
    await metrics.start()  # (started once)
    assert flusher_tasks() == held
    metrics.emit(finished("r1", 0))
    async with anyio.create_task_group() as group:
        group.start_soon(metrics.aclose)  # closed by another task than the one that started it
    assert not flusher_tasks()
    assert metrics.written == 1


async def test_what_the_block_raises_goes_on_as_it_was() -> None:
    storage = InMemoryStorage()
    with pytest.raises(KeyError):  # not wrapped in an exception group
        async with MetadataStorage(storage, NEVER) as metrics:
            metrics.emit(finished("r1", 0))
            raise KeyError("x")
    assert metrics.written == 1
    with anyio.move_on_after(0.05) as scope:  # nor is a cancellation from outside
        async with MetadataStorage(storage, NEVER) as metrics:
            metrics.emit_event(RunSubmitted(kind="run-submitted", ts=time.time(), n_tasks=1))
            await anyio.sleep(5)
    assert scope.cancelled_caught
    assert metrics.written == 1
    assert not flusher_tasks()
