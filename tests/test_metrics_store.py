"""The event log's writer: its bound, what it drops and says, closing, bad input.

Each test runs a real server where the behaviour depends on one (an outage is a
server killed or paused, not a mock).
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import anyio
import pytest

from dagrt import keys as K
from dagrt.metrics import (
    FlushPolicy,
    MetadataStorage,
    RunFinished,
    RunSubmitted,
    TaskExecutionMetrics,
    Transfer,
    read_log,
    read_run,
    run_summary,
)
from dagrt.metrics import recorder as rec
from dagrt.storage import InMemoryStorage, RedisStorage


def finished(run_id: str, task: int) -> tuple[Any, ...]:
    now = time.time()
    return rec.task_finished(run_id, "w1", task, f"t-{task}", "add", 1, now, now, 0.001)


def batch(run_id: str, tasks: range) -> tuple[Any, ...]:
    """A tasks-finished batch of ``len(tasks)`` rows, as a worker's fast lane logs it."""
    rows = rec.FinishedBatch()
    now = time.time()
    for t in tasks:
        rows.add(t, 1, now, now, 1e-6, 0, 8, 0.0, 0.0, False)
    return rows.wire(now, run_id, "w1")


def submitted(run_id: str, n_tasks: int) -> RunSubmitted:
    return RunSubmitted(kind="run-submitted", ts=time.time(), run_id=run_id, n_tasks=n_tasks)


def run_finished(run_id: str) -> RunFinished:
    return RunFinished(
        kind="run-finished", ts=time.time(), run_id=run_id, status="finished", makespan=0.1
    )


# --------------------------------------------------------------------------- the policy


def test_a_flush_policy_takes_only_what_it_means() -> None:
    assert FlushPolicy(interval=2).interval == 2.0  # an int is a number of seconds
    for bad in (
        {"interval": "2"},  # no strings for numbers or flags
        {"after_each_task": "yes"},
        {"max_events": True},
        {"interval": 1e-9},  # an idle flusher would spin
        {"interval": float("nan")},
        {"max_events": 0},
        {"max_buffer": 0},
        {"close_timeout": -1},
        {"max_events": 600_000},  # beyond the bound: events would drop before the flush
        {"every": 1},
    ):
        with pytest.raises(ValueError):
            FlushPolicy(**bad)
    only_at_close = FlushPolicy(interval=None, max_events=None, when_idle=False)
    assert not only_at_close.after_each_task


def test_the_writer_checks_what_it_is_given() -> None:
    with pytest.raises(TypeError, match="Storage"):
        MetadataStorage(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="FlushPolicy"):
        MetadataStorage(InMemoryStorage(), {"interval": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stream"):
        MetadataStorage(InMemoryStorage(), stream="")
    with pytest.raises(ValueError, match="scheme"):
        MetadataStorage("http://localhost:6379")


async def test_a_url_makes_a_writer_that_owns_its_connections(redis_url: str) -> None:
    async with MetadataStorage(redis_url) as metrics:
        metrics.emit_event(submitted("by-url", 0))
    assert [e.kind for e in read_run(redis_url, "by-url")] == ["run-submitted"]


# --------------------------------------------------------------------------- written at once


async def test_run_and_worker_events_are_written_at_once_whatever_the_policy(
    redis_storage: RedisStorage,
) -> None:
    """Task events wait for the policy; a run's submission and end, and worker events,
    go out at once (readers wait for them), even when the policy is only 'at size'."""
    policy = FlushPolicy(interval=None, max_events=1000)
    async with MetadataStorage(redis_storage, policy) as metrics:
        metrics.emit(finished("r", 0))
        await anyio.lowlevel.checkpoint()
        assert redis_storage.xlen(K.events()) == 0  # a task event waits
        metrics.emit_event(run_finished("r"))
        with anyio.fail_after(10):
            reply = await redis_storage.axread({K.events(): "0-0"}, block=10)
        assert reply  # the run-finished took the task event with it
        assert [e.kind for e in read_log(redis_storage)] == ["task-finished", "run-finished"]


# --------------------------------------------------------------------------- the bound


async def a_write_that_fails(metrics: MetadataStorage, run_id: str, n: int) -> None:
    """Emit ``n`` events of ``run_id`` and flush them into a store that is away: the
    writer now knows it (the bound applies) and holds them to send again."""
    for i in range(n):
        metrics.emit(finished(run_id, i))
    assert await metrics.flush() == 0


async def test_a_full_buffer_counts_batch_rows_and_says_so_per_run(
    server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """While the store is away the bound holds: it counts events, a batch as the rows
    it holds, and the write waiting to be sent again; what a full buffer drops is
    counted per run and logged as that run's events-dropped, naming the writer."""
    server = server_factory()
    storage = RedisStorage(server.url, socket_connect_timeout=0.5, retries=0)
    policy = FlushPolicy(interval=None, max_events=None, max_buffer=100)
    metrics = MetadataStorage(storage, policy, source="worker-7")
    await metrics.start()
    server.kill()
    await a_write_that_fails(metrics, "z", 10)
    metrics.emit(batch("a", range(60)))
    metrics.emit(batch("a", range(60, 120)))  # 10 + 60 + 60 > 100: dropped whole
    for i in range(50):
        metrics.emit(finished("b", i))  # 30 fit
    assert (metrics.buffered, metrics.dropped, metrics.lost) == (100, 80, 80)
    assert "dropping events" in caplog.text
    server.restart()
    await metrics.aclose()
    notes = {e.run_id: e for e in read_log(storage) if e.kind == "events-dropped"}
    assert {run: e.count for run, e in notes.items()} == {"a": 60, "b": 20}  # type: ignore[attr-defined]
    assert {e.worker_id for e in notes.values()} == {"worker-7"}
    assert [e.kind for e in read_run(storage, "z")].count("task-finished") == 10
    assert [e.kind for e in read_run(storage, "a")].count("task-finished") == 60
    assert [e.kind for e in read_run(storage, "b")][-1] == "events-dropped"
    assert run_summary(storage, "b").dropped == 20
    await storage.aclose()


async def test_a_healthy_store_takes_more_than_the_bound(redis_storage: RedisStorage) -> None:
    """The bound is for a store that is away: with one that takes events, a batch of
    any size goes whole (an in-process run's recorder hands over many at once)."""
    policy = FlushPolicy(interval=None, max_events=None, max_buffer=100)
    async with MetadataStorage(redis_storage, policy) as metrics:
        metrics.emit(batch("big", range(5_000)))
        assert metrics.dropped == 0
    assert len(read_run(redis_storage, "big")) == 5_000


def test_a_workers_rows_go_as_one_pair_of_batches_per_run_and_flush() -> None:
    """Rows added batch after batch leave as one tasks-finished and one transfers event
    per run, stamped with the last task's end (not the flush's time), and are gone."""
    from dagrt.metrics.wire import expand, from_wire

    rows = rec.BatchRows("w1")
    for batch_no in range(3):
        for run in ("a", "b"):
            done, moves = rows.of(run)
            for t in range(batch_no * 10, batch_no * 10 + 10):
                done.add(t, 1, 100.0 + t, 100.5 + t, 0.5, 8, 8, 0.0, 0.0, False)
                moves.add(8, 0.0, "local", t, t + 1, True)
    assert len(rows) == 2 * 2 * 30
    items = rows.collect()
    assert (len(rows), rows.collect()) == (0, [])
    events = [from_wire(item) for item in items]
    assert [(e.kind, e.run_id) for e in events] == [
        ("tasks-finished", "a"),
        ("transfers", "a"),
        ("tasks-finished", "b"),
        ("transfers", "b"),
    ]
    assert {e.ts for e in events} == {100.5 + 29}
    finished = expand(events[0])
    assert [x.task for x in finished] == list(range(30))


async def test_what_sources_hold_is_bounded_too_while_the_store_is_away(
    server_factory: Any,
) -> None:
    """The rows a worker's fast lane holds per run wait for a flush; while the store is
    away each flush moves them into the buffer, where the bound holds (they do not
    pile up in the source for the length of the outage)."""
    server = server_factory()
    storage = RedisStorage(server.url, socket_connect_timeout=0.5, retries=0)
    policy = FlushPolicy(interval=None, max_events=None, max_buffer=100)
    metrics = MetadataStorage(storage, policy, source="w1")
    rows = rec.BatchRows("w1")
    metrics.add_source(rows)
    await metrics.start()
    metrics.emit(finished("y", 0))
    assert await metrics.flush() == 1  # (the writer knows the server's limits now)
    server.kill()
    await a_write_that_fails(metrics, "z", 10)
    for flush in range(5):
        done, moves = rows.of("a")
        for t in range(flush * 40, flush * 40 + 40):
            done.add(t, 1, 1.0, 1.0, 1e-6, 0, 8, 0.0, 0.0, False)
            moves.add(8, 0.0, "upload", t, None, False)
        assert metrics.buffered == 10 + min(flush, 1) * 80 + 80  # a row is an event
        assert await metrics.flush() == 0
        assert len(rows) == 0
        assert metrics.buffered <= 100
    assert metrics.dropped == 4 * 80  # the first flush's 80 fit; the others did not
    server.restart()
    await metrics.aclose()
    events = read_run(storage, "a")
    assert sum(isinstance(e, TaskExecutionMetrics) for e in events) == 40
    assert sum(isinstance(e, Transfer) for e in events) == 40
    assert run_summary(storage, "a").dropped == 4 * 80
    await storage.aclose()


async def test_run_lifecycle_events_are_never_dropped(server_factory: Any) -> None:
    """However full the buffer, a run's submission and end are kept (a few per run):
    the runs index must not show a run that never ends, or miss one."""
    server = server_factory()
    storage = RedisStorage(server.url, socket_connect_timeout=0.5, retries=0)
    policy = FlushPolicy(interval=None, max_events=None, max_buffer=5)
    metrics = MetadataStorage(storage, policy)
    await metrics.start()
    server.kill()
    await a_write_that_fails(metrics, "z", 1)
    metrics.emit_event(submitted("r1", 10))
    for i in range(10):
        metrics.emit(finished("r1", i))  # 3 fit beside the held write and the submission
    metrics.emit_event(run_finished("r1"))
    metrics.emit_event(submitted("r2", 0))
    metrics.emit_event(run_finished("r2"))
    server.restart()
    await metrics.aclose()
    for run in ("r1", "r2"):
        kinds = [e.kind for e in read_run(storage, run)]
        assert kinds[0] == "run-submitted"
        assert "run-finished" in kinds
        assert run_summary(storage, run).status == "finished"
    dropped = [e for e in read_run(storage, "r1") if e.kind == "events-dropped"]
    finished_tasks = [e for e in read_run(storage, "r1") if e.kind == "task-finished"]
    assert len(finished_tasks) == 3
    assert dropped[0].count == 7  # type: ignore[attr-defined]
    await storage.aclose()


async def test_a_write_whose_reply_never_came_is_applied_once(server_factory: Any) -> None:
    """The store is paused past the reply timeout with a write on its way: the write
    may have been applied (it was, once the store resumes) or not; the writer cannot
    tell, so it sends it again, and the log applies it once."""
    server = server_factory()
    storage = RedisStorage(server.url, socket_timeout=1, retries=0)
    metrics = MetadataStorage(storage, FlushPolicy(interval=None, max_events=None))
    await metrics.start()
    metrics.emit_event(submitted("r", 10))
    await metrics.flush()  # connected, scripts known
    for i in range(10):
        metrics.emit(finished("r", i))
    server.process.send_signal(signal.SIGSTOP)
    try:
        assert await metrics.flush() == 0  # no reply within 1 s
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert await metrics.flush() == 10  # sent again
    await metrics.aclose()
    assert [e.kind for e in read_run(storage, "r")].count("task-finished") == 10
    assert run_summary(storage, "r").done == 10
    await storage.aclose()


async def test_an_event_too_large_for_the_server_is_cut_short(
    server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A task failed with a 2 MB message into a log whose server takes 1 MB values: the
    event goes with its texts cut short; the others of the write go as they are."""
    server = server_factory(options={"proto-max-bulk-len": "1mb"})
    storage = RedisStorage(server.url)
    now = time.time()
    async with MetadataStorage(storage, FlushPolicy(interval=None, max_events=None)) as metrics:
        metrics.emit(rec.task_failed(now, "r", "w", 0, "k", "f", 1, "E", "x" * 2_000_000, "", True))
        for i in range(1, 5):
            metrics.emit(finished("r", i))
        assert await metrics.flush() == 5
    events = read_run(storage, "r")
    [failed] = [e for e in events if e.kind == "task-failed"]
    assert failed.message.startswith("x" * 1000)  # type: ignore[attr-defined]
    assert failed.message.endswith("characters cut)")  # type: ignore[attr-defined]
    assert [e.task for e in events if e.kind == "task-finished"] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    await storage.aclose()


async def test_graph_records_wait_for_the_store_as_bytes(server_factory: Any) -> None:
    """A record whose store is away is built once and kept as its bytes: what it was
    built from (a DAG holding large arguments) is let go."""
    server = server_factory()
    storage = RedisStorage(server.url, socket_connect_timeout=0.5, retries=0)
    metrics = MetadataStorage(storage, FlushPolicy(interval=None, max_events=None))
    await metrics.start()
    server.kill()
    builds = []

    def build() -> bytes:
        builds.append(1)
        return b'{"keys": []}'

    metrics.add_record(K.graph("r1"), build)
    metrics.emit_event(submitted("r1", 0))
    await metrics.flush()
    await metrics.flush()
    assert builds == [1]
    assert all(isinstance(value, bytes) for _, value in metrics._records)
    server.restart()
    await metrics.aclose()
    assert storage.get(K.graph("r1")) == b'{"keys": []}'
    await storage.aclose()


# --------------------------------------------------------------------------- closing


async def test_closing_while_the_store_does_not_answer_is_bounded_and_says_what_is_lost(
    server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that accepts connections but no longer answers (paused): closing gives
    the last write ``close_timeout`` seconds, then says how many events are lost."""
    server = server_factory()
    storage = RedisStorage(server.url, retries=0)
    policy = FlushPolicy(interval=None, max_events=None, close_timeout=0.5)
    metrics = MetadataStorage(storage, policy)
    await metrics.start()
    metrics.emit_event(submitted("r1", 3))
    await metrics.flush()
    for i in range(3):
        metrics.emit(finished("r1", i))
    server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="dagrt.metrics"):
            await metrics.aclose()
        assert time.monotonic() - started < 5
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert metrics.lost == 3
    assert "closing with 3 events" in caplog.text
    assert "they are lost" in caplog.text
    await storage.aclose()


async def test_a_sync_flush_keeps_what_it_cannot_write(server_factory: Any) -> None:
    server = server_factory()
    storage = RedisStorage(server.url, socket_connect_timeout=0.5, retries=0)
    metrics = MetadataStorage(storage, FlushPolicy(interval=None, max_events=None))
    for i in range(3):
        metrics.emit(finished("r1", i))
    server.kill()
    assert metrics.flush_sync() == 0
    assert (metrics.buffered, metrics.lost) == (3, 0)
    server.restart()
    assert metrics.flush_sync() == 3
    assert [e.task for e in read_run(storage, "r1")] == [0, 1, 2]  # type: ignore[attr-defined]
    storage.close()


async def test_events_that_cannot_be_encoded_are_dropped_and_the_log_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = InMemoryStorage()
    async with MetadataStorage(storage, FlushPolicy(interval=None, max_events=None)) as metrics:
        metrics.emit((4, time.time(), "r1", "w", object()))  # msgpack cannot pack this
        assert await metrics.flush() == 0
        assert metrics.lost == 1
        metrics.emit(finished("r1", 0))
        assert await metrics.flush() == 1
    assert "cannot be encoded" in caplog.text
