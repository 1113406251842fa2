"""Metrics as events: models, flush policies, persistence, outages, reading, the report."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from conftest import REDIS_CONF, Pool
from helpers import add, collect, inc, wait_for_events

import dagrt
from dagrt import keys as K
from dagrt.metrics import (
    FlushPolicy,
    MetadataStorage,
    RunFinished,
    RunSubmitted,
    TaskExecutionMetrics,
    TaskFailed,
    Transfer,
    aread_run,
    list_runs,
    read_graph,
    read_log,
    read_run,
)
from dagrt.metrics import events as ev
from dagrt.metrics import recorder as rec
from dagrt.metrics import wire as wf
from dagrt.metrics.analysis import analyze
from dagrt.metrics.report import write_report
from dagrt.metrics.run_graph import RunGraph, graph_record
from dagrt.serialize import pack
from dagrt.storage import InMemoryStorage, RedisServer, RedisStorage
from dagrt.storage import commands as C
from dagrt.workflows import pairwise


def finished_event(run_id: str = "r1", task: int = 0) -> tuple[Any, ...]:
    now = time.time()
    return rec.task_finished(run_id, "w1", task, f"t-{task}", "add", 1, now, now, 0.001)


async def entries_after(storage: RedisStorage, last: str, block: float) -> list[Any]:
    """Stream entries of the event log after ``last``, waiting up to ``block`` seconds."""
    reply = await storage.axread({K.events(): last}, block=block)
    return reply[0][1] if reply else []


# --------------------------------------------------------------------------- models


def test_every_event_round_trips_through_its_wire_form() -> None:
    now = time.time()
    samples = [
        ev.RunSubmitted(kind="run-submitted", ts=now, run_id="r", n_tasks=3, client_id="c"),
        ev.RunFinished(
            kind="run-finished", ts=now, run_id="r", status="failed", makespan=1.5, failed_task="t"
        ),
        ev.TaskStarted(
            kind="task-started", ts=now, run_id="r", worker_id="w", task=1, key="k", name="f"
        ),
        ev.TaskExecutionMetrics(
            kind="task-finished",
            ts=now,
            run_id="r",
            worker_id="w",
            task=1,
            key="k",
            name="f",
            start=now,
            end=now + 1,
            execution_time=0.5,
            input_bytes=10,
            output_bytes=20,
            download_time=0.1,
            upload_time=0.2,
            kept=True,
        ),
        ev.TaskFailed(
            kind="task-failed",
            ts=now,
            run_id="r",
            worker_id="w",
            task=1,
            key="k",
            name="f",
            exc_type="ValueError",
            message="m",
            traceback="tb",
        ),
        ev.Transfer(
            kind="transfer",
            ts=now,
            run_id="r",
            worker_id="w",
            key="o",
            bytes=5,
            seconds=0.1,
            direction="download",
            producer=0,
            consumer=1,
        ),
        ev.WorkerStarted(kind="worker-started", ts=now, worker_id="w", host="h", pid=1),
        ev.WorkerHeartbeat(kind="worker-heartbeat", ts=now, worker_id="w", running=["k"]),
        ev.WorkerStopped(kind="worker-stopped", ts=now, worker_id="w", done=3),
        ev.EventsDropped(kind="events-dropped", ts=now, count=7),
        ev.TasksFinished(
            kind="tasks-finished",
            ts=now,
            run_id="r",
            worker_id="w",
            task=[1, 2],
            key=["a", "b"],
            name=["f", "g"],
            attempt=[1, 1],
            start=[now, now],
            end=[now + 1, now + 2],
            execution_time=[1.0, 2.0],
            input_bytes=[0, 5],
            output_bytes=[3, 4],
            download_time=[0.0, 0.1],
            upload_time=[0.1, 0.1],
            kept=[False, True],
            placed=[1, 3],
        ),
        ev.HoldEnded(
            kind="hold-ended",
            ts=now,
            run_id="r",
            worker_id="w",
            task=0,
            child=2,
            bytes=8,
            outcome="timeout",
            waited=5.0,
        ),
        ev.Transfers(
            kind="transfers",
            ts=now,
            run_id="r",
            worker_id="w",
            key=["o:1"],
            bytes=[5],
            seconds=[0.1],
            direction=[0],
            producer=[1],
            consumer=[-1],
            local=[False],
        ),
    ]
    for event in samples:
        assert wf.from_wire(wf.wire(event)) == event
    assert {type(e).model_fields["kind"].default for e in samples} == set(ev.KINDS)


def test_batches_expand_into_single_events() -> None:
    now = time.time()
    done = rec.FinishedBatch()
    done.add(3, 1, now, now + 1, 0.5, 10, 20, 0.1, 0.2, True)
    done.add(4, 2, now, now + 2, 1.5, 0, 7, 0.0, 0.3, False)
    moves = rec.TransferBatch()
    moves.add(20, 0.2, "upload", 3, None, False)
    moves.add(9, 0.0, "local", 1, 3, True)

    graph = RunGraph(["k0", "k1", "k2", "k3", "k4"], ["a", "b", "c", "f", "g"], [[]] * 5, [4])
    one, two = wf.expand(wf.from_wire(done.wire(now + 2, "r", "w")), graph)
    assert one == wf.from_wire(
        rec.task_finished("r", "w", 3, "k3", "f", 1, now, now + 1, 0.5, 10, 20, 0.1, 0.2, True)
    )
    assert (two.task, two.attempt, two.end, two.kept) == (4, 2, now + 2, False)
    up, local = wf.expand(wf.from_wire(moves.wire(now, "r", "w")))
    assert up == wf.from_wire(
        rec.transfer(now, "r", "w", "dagrt:{r}:o:3", 20, 0.2, "upload", 3, None, False)
    )
    assert (local.direction, local.consumer, local.local) == ("local", 3, True)


def sample_batches(now: float) -> list[list[Any]]:
    """A tasks-finished batch of 3 and a transfers batch of 2, in wire form."""
    done = rec.FinishedBatch()
    for i in range(3):
        done.add(i, 1, now, now + i, 0.5, i, 2 * i, 0.1, 0.2, bool(i % 2), i)
    moves = rec.TransferBatch()
    moves.add(20, 0.2, "upload", 3, None, False)
    moves.add(9, 0.0, "local", 1, 2, True)
    return [done.wire(now, "r", "w"), moves.wire(now, "r", "w")]


def test_plain_dicts_say_what_the_models_say() -> None:
    """The dashboard's fast path (dicts from the wire) equals the models' dumps."""

    now = time.time()
    graph = RunGraph(["k0", "k1", "k2", "k3"], ["a", "b", "c", "d"], [[], [], [], []], [3])
    items = [
        *sample_batches(now),
        rec.task_started(now, "r", "w", 1, "k1", "b", 1),
        wf.wire(
            RunFinished(kind="run-finished", ts=now, run_id="r", status="finished", makespan=1.0)
        ),
    ]
    for item in items:
        expected = [e.model_dump() for e in wf.expand(wf.from_wire(item), graph)]
        assert wf.to_dicts(item, graph) == expected


def test_a_batch_as_columns_says_what_its_events_say() -> None:
    """The dashboard's wire keeps a batch as one dict of columns: row j of it is
    event j of the batch (keys and names are the graph's, left out)."""
    now = time.time()
    relative = wf.wire(  # the in-process form: start after `clock`, no end
        ev.TasksFinished(
            kind="tasks-finished", ts=now, run_id="r", worker_id="w", task=[0, 1],
            attempt=[1, 1], start=[0.5, 1.5], end=[], execution_time=[0.25, 0.5],
            input_bytes=[0, 0], output_bytes=[8, 8], download_time=[0, 0], upload_time=[0, 0],
            kept=[False, False], lane=[1, 0], workers=["a", "b"], clock=now,
        )
    )  # fmt: skip
    for item in (*sample_batches(now), relative):
        columns, n = wf.to_columns(item)
        rows = wf.to_dicts(item)
        assert columns["n"] == n == len(rows)
        for j, row in enumerate(rows):
            for name, value in row.items():
                if name in ("kind", "key", "name", "ts", "worker_id", "run_id"):
                    continue
                got = columns[name][j]
                if name == "direction":
                    got = ev.DIRECTIONS[got]
                elif name == "placed":
                    got = ev.PLACEMENTS[got]
                elif name == "consumer":
                    got = None if got < 0 else got
                elif name in ("kept", "local"):
                    assert got in (0, 1)
                    got = bool(got)
                assert got == pytest.approx(value), (name, j)
            if columns["kind"] == "tasks-finished" and columns["lane"]:
                assert columns["workers"][columns["lane"][j]] == row["worker_id"]
    single = wf.to_columns(rec.task_started(now, "r", "w", 1, "k1", "b", 1))
    assert single == (wf.to_dicts(rec.task_started(now, "r", "w", 1, "k1", "b", 1))[0], 1)


def test_hot_path_builders_agree_with_the_models() -> None:
    now = time.time()
    built = wf.from_wire(
        rec.task_finished("r", "w", 3, "k", "f", 2, now, now + 1, 0.5, 10, 20, 0.1, 0.2, True)
    )
    assert built == TaskExecutionMetrics(
        kind="task-finished",
        ts=now + 1,
        run_id="r",
        worker_id="w",
        task=3,
        key="k",
        name="f",
        attempt=2,
        start=now,
        end=now + 1,
        execution_time=0.5,
        input_bytes=10,
        output_bytes=20,
        download_time=0.1,
        upload_time=0.2,
        kept=True,
    )
    assert wf.from_wire(rec.task_started(now, "r", "w", 3, "k", "f", 1)).kind == "task-started"
    failed = wf.from_wire(rec.task_failed(now, "r", "w", 3, "k", "f", 1, "E", "m", "tb", False))
    assert isinstance(failed, TaskFailed)
    assert failed.final is False
    moved = wf.from_wire(rec.transfer(now, "r", "w", "key", 9, 0.1, "local", 1, 2, True))
    assert isinstance(moved, Transfer)
    assert (moved.producer, moved.consumer, moved.local) == (1, 2, True)


# --------------------------------------------------------------------------- flush policies


async def test_flush_after_each_task(redis_storage: RedisStorage) -> None:
    policy = FlushPolicy(after_each_task=True, interval=None, max_events=None)
    async with MetadataStorage(redis_storage, policy) as metrics:
        metrics.emit(finished_event())
        with anyio.fail_after(10):
            entries = await entries_after(redis_storage, "0-0", block=10)
        assert len(entries) == 1


async def test_flush_periodically(redis_storage: RedisStorage) -> None:
    policy = FlushPolicy(interval=0.2, max_events=None)
    async with MetadataStorage(redis_storage, policy) as metrics:
        metrics.emit(rec.task_started(time.time(), "r1", "w", 0, "k", "f", 1))
        with anyio.fail_after(10):
            entries = await entries_after(redis_storage, "0-0", block=10)
        assert len(entries) == 1  # a task-started alone: written by the clock


async def test_flush_at_the_size_threshold(redis_storage: RedisStorage) -> None:
    policy = FlushPolicy(interval=None, max_events=5)
    async with MetadataStorage(redis_storage, policy) as metrics:
        for i in range(4):
            metrics.emit(finished_event(task=i))
        await anyio.lowlevel.checkpoint()
        assert redis_storage.xlen(K.events()) == 0  # below the threshold: buffered
        metrics.emit(finished_event(task=4))
        with anyio.fail_after(10):
            [entry] = await entries_after(redis_storage, "0-0", block=10)
        assert int(entry[1][b"n"]) == 5


async def test_flush_at_close_and_combined_policies(redis_storage: RedisStorage) -> None:
    metrics = MetadataStorage(redis_storage, FlushPolicy(interval=None, max_events=None))
    await metrics.start()
    metrics.emit(finished_event())
    assert redis_storage.xlen(K.events()) == 0
    await metrics.aclose()
    assert redis_storage.xlen(K.events()) == 1

    combined = FlushPolicy(after_each_task=True, interval=0.2, max_events=3)
    async with MetadataStorage(redis_storage, combined) as metrics:
        metrics.emit(rec.task_started(time.time(), "r1", "w", 0, "k", "f", 1))
        with anyio.fail_after(10):
            assert await entries_after(redis_storage, "0-0", block=10)


def test_a_worker_flushes_on_sigterm(pool_factory: Any) -> None:
    pool: Pool = pool_factory(
        1, "--flush-interval", "0", "--flush-size", "0", "--no-flush-when-idle"
    )
    storage = RedisStorage(pool.url)
    assert dagrt.compute(add(inc(1), 2), address=pool.url, metrics=False) == 4
    # the worker holds its task events (its worker-started went at once)
    assert [e.kind for e in _all_events(storage)] == ["worker-started"]
    worker = pool.workers[0]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    kinds = [e.kind for e in _all_events(storage)]
    assert kinds.count("task-finished") == 2
    assert "worker-stopped" in kinds
    storage.close()


def _all_events(storage: RedisStorage) -> list[Any]:
    from dagrt.serialize import unpack

    out = []
    for _, fields in storage.xrange(K.events()):
        out += [wf.from_wire(item) for item in unpack(fields[b"d"])]
    return out


# --------------------------------------------------------------------------- reading


async def test_an_in_process_run_logs_everything_read_run_needs() -> None:
    async with dagrt.Client(processes=False) as client:
        fut = client.submit(collect(add(inc(1), 2), inc(5)))
        assert await fut == [4, 6]
        await client.metrics.flush()
        events = read_run(client.metrics.storage, fut.run_id)
        graph = read_graph(client.metrics.storage, fut.run_id)
        summary = list_runs(client.metrics.storage)[0]
    assert isinstance(events[0], RunSubmitted)
    assert isinstance(events[-1], RunFinished)
    assert events[-1].status == "finished"
    finished = [e for e in events if isinstance(e, TaskExecutionMetrics)]
    assert sorted(e.task for e in finished) == list(range(4))
    assert len(graph) == 4
    assert sorted(graph.names) == ["add", "collect", "inc", "inc"]
    assert graph.outputs == [3]
    assert summary.run_id == fut.run_id
    assert (summary.status, summary.n_tasks, summary.done) == ("finished", 4, 4)


async def test_a_run_graph_keeps_every_key_and_name_as_given() -> None:
    """A name holding a newline, several functions, constants: all as given."""

    def f(x: int) -> int:
        return x + 1

    odd = dagrt.task(f, name="two\nlines")
    node = collect(odd(1), inc(odd(2)), 3)
    dag = dagrt.DAG(node)
    async with dagrt.Client(processes=False) as client:
        fut = client.submit(node)
        assert await fut == [2, 4, 3]
        await client.metrics.flush()
        graph = read_graph(client.metrics.storage, fut.run_id)
    assert graph.keys == list(dag.keys)
    assert graph.names == [n.name for n in dag]
    assert "two\nlines" in graph.names
    assert graph.parents == [[dag.keys.index(p.key) for p in dag.parents(n)] for n in dag]


def _graph_of(dag: dagrt.DAG) -> RunGraph:
    storage = InMemoryStorage()
    storage.pipeline([C.set_(K.graph("r"), graph_record(dag))])
    return read_graph(storage, "r")


@pytest.mark.parametrize("shape", ["one function throughout", "functions interleaved"])
def test_a_graph_record_gives_back_the_dag(shape: str) -> None:
    """Functions are stored by runs of consecutive nodes when that is shorter, else
    node by node; either way the graph reads back as the DAG."""
    if shape == "one function throughout":
        node = pairwise(add, range(64))
    else:  # topological order alternates inc, add, inc, add, ...
        node = inc(0)
        for i in range(40):
            node = add(node, inc(i))
    dag = dagrt.DAG(node)
    graph = _graph_of(dag)
    assert graph.keys == list(dag.keys)
    assert graph.names == [n.name for n in dag]
    assert graph.parents == [[dag.keys.index(p.key) for p in dag.parents(n)] for n in dag]
    assert graph.outputs == [len(dag) - 1]


def test_a_graph_in_the_earlier_msgpack_form_still_reads() -> None:
    """Logs written before the JSON form (msgpack, keys joined by newlines) stay readable."""
    storage = InMemoryStorage()
    old = pack({"keys": "a\nb", "names": ["f"], "fn": [0, 0], "parents": [[], [0]], "outputs": [1]})
    storage.pipeline([C.set_(K.graph("old"), old)])
    graph = read_graph(storage, "old")
    assert (graph.keys, graph.names, graph.parents, graph.outputs) == (
        ["a", "b"],
        ["f", "f"],
        [[], [0]],
        [1],
    )


def test_a_batch_may_leave_its_constant_columns_empty() -> None:
    """The in-process form leaves out what is the same for every task (attempt 1, no
    bytes moved, nothing kept): every reader fills it in."""
    now = time.time()
    item = wf.wire(
        ev.TasksFinished(
            kind="tasks-finished", ts=now, run_id="r", worker_id="w", task=[0, 1],
            attempt=[], start=[0.5, 1.5], end=[], execution_time=[0.25, 0.5],
            input_bytes=[], output_bytes=[], download_time=[], upload_time=[], kept=[],
            clock=now,
        )
    )  # fmt: skip
    one, two = wf.expand(wf.from_wire(item))
    assert (one.attempt, one.kept, one.end) == (1, False, pytest.approx(now + 0.75))
    assert (two.task, two.attempt, two.input_bytes, two.output_bytes) == (1, 1, 0, 0)
    assert (two.download_time, two.upload_time, two.kept) == (0.0, 0.0, False)
    assert two.end == pytest.approx(now + 2.0)
    columns, n = wf.to_columns(item)
    assert n == 2
    assert columns["attempt"] == [1, 1]
    assert columns["kept"] == [0, 0]
    assert columns["input_bytes"] == columns["upload_time"] == [0, 0]
    assert [d["attempt"] for d in wf.to_dicts(item)] == [1, 1]
    # a worker's batch leaves out the columns that turn out constant, and only those
    done = rec.FinishedBatch()
    done.add(3, 1, now, now + 1, 0.5, 0, 20, 0.0, 0.2, False)
    done.add(4, 1, now, now + 2, 1.5, 0, 7, 0.0, 0.3, False)
    item = done.wire(now + 2, "r", "w")
    fields = dict(zip(wf.FIELDS[ev.TasksFinished.code], item[1:], strict=False))
    empty = {name for name, value in fields.items() if value == b""}
    assert empty == {"attempt", "input_bytes", "download_time", "kept"}
    one, two = wf.expand(wf.from_wire(item))
    assert (one.task, one.attempt, one.output_bytes, one.upload_time, one.kept) == (
        3,
        1,
        20,
        0.2,
        False,
    )
    assert (two.input_bytes, two.download_time, two.end) == (0, 0.0, now + 2)


async def test_an_in_process_retry_is_logged_with_its_attempt() -> None:
    """The in-process recorder leaves the attempt column out until a task fails: the
    task that failed once finishes as attempt 2, the others as attempt 1."""
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return x

    retried = dagrt.task(flaky, retries=1)
    async with dagrt.Client(processes=False) as client:
        fut = client.submit(add(retried(1), inc(2)))
        assert await fut == 4
        await client.metrics.flush()
        events = read_run(client.metrics.storage, fut.run_id)
    finished = {e.name: e for e in events if isinstance(e, TaskExecutionMetrics)}
    assert {name: e.attempt for name, e in finished.items()} == {"flaky": 2, "inc": 1, "add": 1}
    failed = [e for e in events if isinstance(e, TaskFailed)]
    assert [(e.name, e.attempt, e.final) for e in failed] == [("flaky", 1, False)]


async def test_in_process_only_tasks_that_may_take_long_log_their_start() -> None:
    """A task of unknown or non-trivial cost logs task-started (from the thread that
    runs it) before its finish; tiny tasks of a function known to be quick log only
    their finish, which carries the start."""

    def nap(x: int) -> int:
        time.sleep(0.02)
        return x

    slow = dagrt.task(nap)
    node = inc(inc(inc(inc(slow(slow(1))))))
    async with dagrt.Client(processes=False, threads=1) as client:
        fut = client.submit(node)
        assert await fut == 5
        await client.metrics.flush()
        events = read_run(client.metrics.storage, fut.run_id)
    started = [e for e in events if isinstance(e, ev.TaskStarted)]
    finished = {e.task: e for e in events if isinstance(e, TaskExecutionMetrics)}
    assert len(finished) == 6
    names = [e.name for e in started]
    assert names[:3] == ["nap", "nap", "inc"]  # the first inc: its cost is not known yet
    assert names.count("inc") < 4  # then known to be quick (unless the machine stalls)
    for e in started:
        assert e.worker_id == finished[e.task].worker_id
        assert e.ts <= finished[e.task].start + 0.01
        assert events.index(e) < events.index(finished[e.task])


async def test_a_record_that_cannot_be_built_does_not_stop_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A graph record whose builder fails is logged and left out; the events of the
    same flush and of later ones are written all the same."""
    storage = InMemoryStorage()

    def broken() -> bytes:
        raise ValueError("cannot encode this graph")

    async with MetadataStorage(storage, FlushPolicy(interval=None)) as metrics:
        metrics.add_record(K.graph("r1"), broken)
        metrics.add_record(K.graph("r2"), lambda: b"{}")
        metrics.emit(finished_event("r1", 0))
        await metrics.flush()  # (the flusher, woken by the records, may write some)
        metrics.emit(finished_event("r1", 1))
        await metrics.flush()
        assert metrics.written == 2
    assert [e.task for e in read_run(storage, "r1")] == [0, 1]  # type: ignore[attr-defined]
    assert storage.pipeline([C.get(K.graph("r1")), C.get(K.graph("r2"))]) == [None, b"{}"]
    assert "cannot build the record" in caplog.text


async def test_reading_a_run_reads_only_its_own_entries(redis_storage: RedisStorage) -> None:
    """Runs logged at the same time interleave in the log; the runs index lists each
    run's own entries, so reading one run reads those and no others."""
    async with MetadataStorage(redis_storage, FlushPolicy(interval=None)) as metrics:
        for i in range(50):
            metrics.emit(finished_event("before", i))
        await metrics.flush()
        metrics.emit_event(
            RunSubmitted(kind="run-submitted", ts=time.time(), run_id="mine", n_tasks=20)
        )
        for i in range(20):  # each flush writes an entry of each run, in turn
            metrics.emit(finished_event("mine", i))
            for j in range(30):
                metrics.emit(finished_event("other", 30 * i + j))
            await metrics.flush()
        for i in range(50):
            metrics.emit(finished_event("after", i))
    events = read_run(redis_storage, "mine")
    assert [e.kind for e in events] == ["run-submitted"] + ["task-finished"] * 20
    assert [e.task for e in events[1:]] == list(range(20))  # type: ignore[attr-defined]
    [listed] = redis_storage.pipeline([C.lrange(K.run_entries("mine"))])
    own = [eid for eid, fields in redis_storage.xrange(K.events()) if fields[b"r"] == b"mine"]
    assert listed == own  # what read_run reads: 20 entries, of the log's 72
    record = redis_storage.hgetall(K.run_record("mine"))
    assert (record[b"first"], record[b"last"]) == (own[0], own[-1])
    with pytest.raises(dagrt.RunNotFoundError):
        read_run(redis_storage, "no-such-run")


async def test_a_cluster_run_logs_workers_transfers_and_failures(pool: Pool) -> None:
    async with dagrt.Client(pool.url, flush=FlushPolicy(interval=0.2)) as client:
        fut = client.submit(collect(*[add(inc(i), inc(i + 1)) for i in range(10)]))
        await fut
        bad = client.submit(add(inc(1), collect(1)))
        with pytest.raises(dagrt.TaskError):
            await bad
    storage = RedisStorage(pool.url)
    events = await wait_for_events(
        storage, fut.run_id, lambda es: sum(e.kind == "task-finished" for e in es) >= 31
    )
    finished = [e for e in events if isinstance(e, TaskExecutionMetrics)]
    assert sorted(e.task for e in finished) == list(range(31))
    assert {e.worker_id for e in finished} <= set(client_ids := _worker_ids(storage))
    assert client_ids
    moves = [e for e in events if isinstance(e, Transfer)]
    uploads = [m for m in moves if m.direction == "upload"]
    assert sorted(m.producer for m in uploads) == list(range(31))
    consumed = {(m.producer, m.consumer) for m in moves if m.direction != "upload"}
    graph = read_graph(storage, fut.run_id)
    edges = {(p, c) for c, ps in enumerate(graph.parents) for p in ps}
    assert consumed == edges  # every edge: downloaded once, or handed over in memory
    failed_events = await wait_for_events(
        storage, bad.run_id, lambda es: any(isinstance(e, TaskFailed) for e in es)
    )
    failures = [e for e in failed_events if isinstance(e, TaskFailed)]
    assert failures[0].exc_type == "TypeError"
    assert "Traceback" in failures[0].traceback
    await storage.aclose()


@dagrt.task
def nap(seconds: float, i: int) -> int:
    time.sleep(seconds)
    return i


async def test_execution_time_leaves_out_waiting_for_a_thread(pool_factory: Any) -> None:
    """Three naps on a worker with one thread and room for four tasks at once: they
    take turns in the thread; each one's execution time is its own nap, not the wait
    for the naps before it (that shows as start-to-end time instead)."""
    pool = pool_factory(1, "--threads", "1", "--concurrency", "4")
    async with dagrt.Client(pool.url, flush=FlushPolicy(interval=0.2)) as client:
        fut = client.submit(collect(*[nap(0.4, i) for i in range(3)]))
        assert await fut == [0, 1, 2]
    storage = RedisStorage(pool.url)
    events = await wait_for_events(
        storage, fut.run_id, lambda es: sum(e.kind == "task-finished" for e in es) >= 4
    )
    naps = [e for e in events if isinstance(e, TaskExecutionMetrics) and e.name == "nap"]
    assert len(naps) == 3
    assert all(0.4 <= e.execution_time < 0.75 for e in naps), [e.execution_time for e in naps]
    assert max(e.end - e.start for e in naps) >= 0.8  # the last one waited for two naps
    await storage.aclose()


def _worker_ids(storage: RedisStorage) -> list[str]:
    return [k.decode() for k in storage.hgetall(K.workers())]


# --------------------------------------------------------------------------- persistence, outages


async def test_events_survive_a_restart_with_the_shipped_config(tmp_path: Path) -> None:
    with RedisServer(config_file=REDIS_CONF, directory=tmp_path, password="pw") as server:
        async with dagrt.Client(processes=False, metrics=server.url) as client:
            fut = client.submit(add(inc(1), 1))
            await fut
        server.restart()
        storage = RedisStorage(server.url)
        kinds = [e.kind for e in read_run(storage, fut.run_id)]
        assert kinds[0] == "run-submitted"
        assert kinds[-1] == "run-finished"
        assert kinds.count("task-finished") == 2
        assert len(read_graph(storage, fut.run_id)) == 2
        await storage.aclose()


async def test_the_metrics_store_down_during_a_run(server_factory: Any) -> None:
    server = server_factory()
    async with dagrt.Client(
        processes=False, metrics=server.url, flush=FlushPolicy(interval=0.1)
    ) as client:
        server.kill()
        fut = client.submit(collect(*[inc(i) for i in range(20)]))
        assert await fut == list(range(1, 21))  # the run does not care
        await client.metrics.flush()  # fails quietly: the events stay buffered
        assert client.metrics.written == 0
        server.restart()
        await client.metrics.flush()
        storage = RedisStorage(server.url)
        kinds = [e.kind for e in read_run(storage, fut.run_id)]
        assert kinds.count("task-finished") == 21
        await storage.aclose()


# --------------------------------------------------------------------------- the report


async def test_the_report_of_a_run_on_several_workers(pool: Pool, tmp_path: Path) -> None:
    async with dagrt.Client(pool.url, flush=FlushPolicy(interval=0.2)) as client:
        fut = client.submit(collect(*[add(inc(i), inc(2 * i)) for i in range(40)]))
        await fut
    storage = RedisStorage(pool.url)
    await wait_for_events(
        storage, fut.run_id, lambda es: sum(e.kind == "task-finished" for e in es) >= 121
    )
    path = write_report(storage, fut.run_id, tmp_path)
    series = json.loads((path.parent / "report.json").read_text())
    page = path.read_text()
    assert 'id="gantt"' in page
    assert page.count("data:image/png;base64,") == 3
    tasks = [bar["task"] for bar in series["gantt"]]
    assert sorted(tasks) == list(range(121))  # every task once
    lanes = {bar["worker"] for bar in series["gantt"]}
    logged = {e.worker_id for e in read_run(storage, fut.run_id) if e.kind == "task-finished"}
    assert lanes == logged == set(series["workers"])
    assert set(series["breakdown"]) == lanes
    assert series["critical_path"][-1] == 120  # ends at the collecting task
    assert series["bytes_network"] > 0
    await storage.aclose()


def test_the_report_and_runs_commands(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import anyio as _anyio

    from dagrt.cli import main

    async def one_run() -> str:
        async with dagrt.Client(processes=False, metrics=redis_url) as client:
            fut = client.submit(add(inc(1), 2))
            await fut
            return fut.run_id

    run_id = _anyio.run(one_run)
    with pytest.raises(SystemExit) as code:
        main(["runs", "--redis", redis_url])
    assert code.value.code == 0
    assert run_id in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["report", run_id, "--redis", redis_url, "--out", str(tmp_path)])
    assert (tmp_path / run_id / "report.html").exists()


def test_analysis_of_events_alone() -> None:
    storage = InMemoryStorage()
    now = time.time()
    events = [
        RunSubmitted(kind="run-submitted", ts=now, run_id="r", n_tasks=2),
        wf.from_wire(rec.task_finished("r", "w1", 0, "a", "f", 1, now, now + 1, 1.0)),
        wf.from_wire(rec.task_finished("r", "w2", 1, "b", "g", 1, now + 1, now + 3, 2.0)),
        RunFinished(kind="run-finished", ts=now + 3, run_id="r", status="finished", makespan=3),
    ]

    a = analyze(events, RunGraph(["a", "b"], ["f", "g"], [[], [0]], [1]))
    assert a.critical_path == [0, 1]
    assert a.critical_seconds == pytest.approx(3.0)
    assert a.workers == ["w1", "w2"]
    assert a.breakdown["w2"]["execute"] == 2.0
    del storage


def test_the_in_process_recorder_loses_no_task_while_threads_record() -> None:
    """Drain threads record while the flusher collects: each task lands in one batch,
    with its own lane and its times turned into wall-clock seconds."""
    import threading

    dag = dagrt.DAG(collect(*[inc(i) for i in range(4_000)]))
    store = MetadataStorage(InMemoryStorage())
    recorder = rec.RunRecorder(store, "run-1", dag, worker="local")
    per_thread = len(dag) // 4
    seen: list[ev.TaskExecutionMetrics] = []

    def record(first: int) -> None:
        for i in range(first, first + per_thread):
            recorder.task_finished(i, 1, i * 1e-6, 5e-7, f"t{first}")

    threads = [threading.Thread(target=record, args=(k * per_thread,)) for k in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) or recorder.rows:
        for item in recorder.collect():
            seen += wf.expand(wf.from_wire(item))  # type: ignore[arg-type]
    for t in threads:
        t.join()
    assert sorted(e.task for e in seen) == list(range(4 * per_thread))
    for e in seen:
        first = e.task - e.task % per_thread
        assert e.worker_id == f"local/t{first}"
        assert e.start == pytest.approx(recorder.clock + e.task * 1e-6, abs=1e-7)
        assert e.end == pytest.approx(e.start + 5e-7, abs=1e-7)
        assert e.execution_time == pytest.approx(5e-7)


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_writers_of_one_run_interleaving_lose_no_event(
    backend: str, redis_storage: RedisStorage
) -> None:
    """A client and workers log one run at once. Each write appends its entries and
    indexes them in one atomic call, so however the writers interleave, the run's
    record and list name every entry, and read_run returns every event."""
    from dagrt.metrics.read import aread_run

    storage = redis_storage if backend == "redis" else InMemoryStorage()
    run = "20261125-000000-000-abcdef"
    writers = [MetadataStorage(storage, FlushPolicy(interval=None)) for _ in range(3)]
    for w in writers:
        await w.start()

    async def write(w: MetadataStorage, who: int) -> None:
        for i in range(20):
            w.emit(rec.task_started(time.time(), run, f"w{who}", who * 100 + i, "k", "f", 1))
            await w.flush()

    async with anyio.create_task_group() as tg:
        for who, w in enumerate(writers):
            tg.start_soon(write, w, who)
    started = [e.task for e in await aread_run(storage, run) if e.kind == "task-started"]
    assert sorted(started) == sorted(who * 100 + i for who in range(3) for i in range(20))
    listed = await storage.apipeline([C.lrange(K.run_entries(run))])
    record = await storage.ahgetall(K.run_record(run))
    ordered = sorted(listed[0], key=K.entry_order)
    assert (record[b"first"], record[b"last"]) == (ordered[0], ordered[-1])
    assert int(record[b"started"]) == 60
    for w in writers:
        await w.aclose()


# --------------------------------------------------------------------------- where events go


async def test_a_local_cluster_logs_where_the_client_says(server_factory: Any) -> None:
    """``Client(metrics=url)`` on a local cluster: the workers log there too (not to
    the cluster's private server, which goes away with it)."""
    log_server = server_factory()
    async with dagrt.Client(n_workers=2, metrics=log_server.url) as client:
        fut = client.submit(collect(*[add(inc(i), i) for i in range(20)]))
        await fut
    storage = RedisStorage(log_server.url)
    events = await aread_run(storage, fut.run_id, wait=15)
    finished = [e for e in events if isinstance(e, TaskExecutionMetrics)]
    assert {e.task for e in finished} == set(range(41))
    assert all(e.worker_id and not e.worker_id.startswith("local-") for e in finished)
    await storage.aclose()


def test_the_log_must_be_reachable_by_whoever_writes_it() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        dagrt.Client(metrics=InMemoryStorage())  # a local cluster's workers cannot reach it
    with pytest.raises(ValueError, match="scheme"):
        dagrt.Client(metrics="localhost:6379")  # said at once, before anything starts
    dagrt.Client(processes=False, metrics=InMemoryStorage())  # in this process: fine


async def test_the_in_process_runtime_logs_itself_as_a_worker() -> None:
    async with dagrt.Client(processes=False) as client:
        await client.compute(collect(*[inc(i) for i in range(10)]))
        storage = client.metrics.storage  # type: ignore[union-attr]
    events = read_log(storage)
    started = [e for e in events if e.kind == "worker-started"]
    stopped = [e for e in events if e.kind == "worker-stopped"]
    assert len(started) == len(stopped) == 1
    assert started[0].worker_id == stopped[0].worker_id == f"local-{os.getpid()}"
    assert (stopped[0].done, stopped[0].failed) == (11, 0)  # type: ignore[attr-defined]
    [run_id] = [e.run_id for e in events if e.kind == "run-submitted"]
    lanes = {e.worker_id for e in read_run(storage, run_id) if e.kind == "task-finished"}
    assert all(lane.startswith(started[0].worker_id) for lane in lanes)


def test_event_models_check_what_they_are_given_and_readers_take_the_log_as_written() -> None:
    now = time.time()
    base = {"kind": "task-finished", "ts": now, "task": 3, "key": "k", "name": "f"}
    good = {**base, "start": now, "end": now, "execution_time": 0.1}
    TaskExecutionMetrics(**good)
    for bad in (
        {"task": "3"},  # no strings for numbers
        {"kept": "yes"},
        {"output_bytes": True},
        {"attempt": 0},  # attempts count from 1
        {"input_bytes": -1},
        {"execution_time": -0.5},
    ):
        with pytest.raises(ValueError):
            TaskExecutionMetrics(**{**good, **bad})
    # a worker's tuple with a clock that stepped back reads all the same
    odd = rec.task_finished("r", "w", 3, "k", "f", 1, now, now - 0.01, -0.01)
    assert wf.from_wire(odd).execution_time == pytest.approx(-0.01)  # type: ignore[attr-defined]
