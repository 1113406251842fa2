"""Dask collections on dagrt (``dagrt.dask``): Dask's own conformance tests for a
scheduler's ``get``, in this process and on a local cluster, and collections computed
with it giving what Dask's synchronous scheduler gives."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
np = pytest.importorskip("numpy")

from dask import delayed  # noqa: E402
from dask.utils_test import GetFunctionTestMixin  # noqa: E402

import dagrt  # noqa: E402
import dagrt.dask  # noqa: E402


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[dagrt.Client]:
    """A client of a local cluster (two worker processes) whose loop runs in a thread of
    its own, as a notebook's does: Dask's ``compute`` is synchronous."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    client = dagrt.Client(n_workers=2)
    asyncio.run_coroutine_threadsafe(client.__aenter__(), loop).result(120)
    try:
        yield client
    finally:
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(60)
        # (transports finish closing on the loop: let it turn before it stops)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0.2), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        gc.collect()


class TestGetInProcess(GetFunctionTestMixin):  # type: ignore[misc]
    """Dask's tests of a foreign ``get``, on the in-process runtime."""

    get = staticmethod(dagrt.dask.get)


class TestGetOnALocalCluster(GetFunctionTestMixin):  # type: ignore[misc]
    """The same, on worker processes (``client.get``)."""

    @pytest.fixture(autouse=True)
    def _on_cluster(self, cluster_client: dagrt.Client) -> None:
        self.get = cluster_client.get


def inc(x: int) -> int:
    return x + 1


def collections() -> dict[str, Any]:
    x = da.arange(400, chunks=100).reshape(20, 20).rechunk(10)
    bag = db.from_sequence(range(100), npartitions=7)
    words = db.from_sequence(["a b", "b c", "c a b"] * 5, npartitions=3)
    parts = [delayed(inc)(i) for i in range(5)]
    return {
        "array": (x @ x.T).sum(axis=0),
        "bag": bag.map(inc).filter(lambda v: v % 3 == 0).sum(),
        "wordcount": words.str.split().flatten().frequencies(sort=True),
        "delayed": delayed(sum)(parts),
        "nested": {"a": delayed(inc)(1), "b": [delayed(inc)(2), 5]},
    }


@pytest.mark.parametrize("where", ["in-process", "cluster"])
@pytest.mark.parametrize("name", list(collections()))
def test_collections_give_what_the_synchronous_scheduler_gives(
    name: str, where: str, request: pytest.FixtureRequest
) -> None:
    x = collections()[name]
    expected = dask.compute(x, scheduler="sync")
    if where == "in-process":
        got = dask.compute(x, scheduler=dagrt.dask.get)
    else:
        client = request.getfixturevalue("cluster_client")
        got = dask.compute(x, scheduler=client.get)
    np.testing.assert_equal(got, expected)


def test_enable_routes_every_computation(cluster_client: dagrt.Client) -> None:
    x = da.ones((30, 30), chunks=10).sum()
    with dagrt.dask.enable(cluster_client):
        assert dask.config.get("scheduler") == cluster_client.get
        assert dask.config.get("dataframe.shuffle.method") == "tasks"
        assert x.compute() == 900
    assert dask.config.get("scheduler", None) != cluster_client.get


def fails(x: int) -> int:
    raise ZeroDivisionError(f"no {x}")


@pytest.mark.parametrize("where", ["in-process", "cluster"])
def test_a_failing_task_raises_its_own_exception(
    where: str, request: pytest.FixtureRequest
) -> None:
    """As Dask's schedulers do: the task's exception type, the remote traceback kept."""
    get = dagrt.dask.get if where == "in-process" else request.getfixturevalue("cluster_client").get
    x = delayed(fails)(delayed(inc)(1))
    with pytest.raises(ZeroDivisionError, match="no 2") as raised:
        dask.compute(x, scheduler=get)
    assert isinstance(raised.value.__cause__, dagrt.TaskError)
    assert "fails" in raised.value.__cause__.remote_traceback
    assert raised.value.__cause__.task == x.key  # (the Dask key)


def test_conversion_keeps_one_task_per_dask_task_and_resolves_aliases() -> None:
    from dask._task_spec import Alias, DataNode, List, Task, TaskRef

    graph = {
        "data": DataNode("data", 10),
        "a": Task("a", inc, TaskRef("data")),
        "b": Alias("b", "a"),
        "c": Alias("c", "b"),
        "d": Task("d", sum, List(TaskRef("c"), TaskRef("b"), TaskRef("data"))),
        "unused": Task("unused", inc, 1),
    }
    nodes, _ = dagrt.dask.convert(graph, [["d"], "c", "data"])
    dag = dagrt.DAG(*nodes)
    names = sorted(dag._nodes[i].name for i in range(len(dag)))
    assert names == ["a", "d", "dask-data"]  # (b and c resolved; unused culled)
    keys = {dag._nodes[i].key for i in range(len(dag)) if dag._nodes[i].name != "dask-data"}
    assert keys == {"a", "d"}  # (Dask's keys, in the log and in errors)
    assert dagrt.dask.get(graph, [["d"], "c", "data"]) == ((32,), 11, 10)
    with pytest.raises(KeyError):
        dagrt.dask.get(graph, "nope")
    with pytest.raises(ValueError, match="cycle"):
        dagrt.dask.get({"x": Alias("x", "y"), "y": Alias("y", "x")}, "x")


def test_large_data_is_one_task_read_by_each_consumer() -> None:
    """A large ``DataNode`` (an array chunk, a partition) is not copied into the record
    of every task that reads it: it is a task of its own, stored once."""
    from dask._task_spec import DataNode, Task, TaskRef

    big, small = np.arange(100_000.0), np.array(2.0)
    graph = {
        "big": DataNode("big", big),
        "small": DataNode("small", small),
        **{
            f"use-{i}": Task(f"use-{i}", np.add, TaskRef("big"), TaskRef("small")) for i in range(3)
        },
    }
    wanted = [f"use-{i}" for i in range(3)]
    nodes, _ = dagrt.dask.convert(graph, wanted)
    dag = dagrt.DAG(*nodes)
    assert sorted(dag._nodes[i].key for i in range(len(dag))) == ["big", *wanted]
    for i in range(3):  # (each consumer has the small one inline, the big one as a parent)
        assert [p.key for p in nodes[i].dependencies] == ["big"]
    got = dagrt.dask.get(graph, wanted)
    for value in got:
        np.testing.assert_array_equal(value, big + small)


@pytest.mark.timeout(900)
def test_dasks_own_tests_pass_on_dagrt() -> None:
    """Dask's delayed, core, bag, array (slicing, rechunk, overlap, reductions) and
    dataframe (reshape, shuffle) test modules (shipped in its wheel), every computation
    routed to ``dagrt.dask.get`` (``tests/dask_conformance/plugin.py``; persist too);
    the tests that cannot pass are listed with their reasons in ``DEVIATIONS.txt``."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent / "dask_conformance"
    groups: dict[str, list[str]] = {}
    deviations = []
    for line in (here / "DEVIATIONS.txt").read_text().splitlines():
        if line.startswith("module:"):
            group, module = line.split(":", 1)[1].split()
            groups.setdefault(group, []).append(module)
        elif line.strip() and not line.startswith("#"):
            name, reason = (part.strip() for part in line.split("|", 1))
            assert reason, name
            deviations.append(name)
    runs = []
    for modules in groups.values():  # (side by side: one process per group)
        args = [sys.executable, "-m", "pytest", "-p", "plugin", "-q", "-p", "no:cacheprovider"]
        args += ["-W", "ignore", "-o", "addopts=", "--timeout", "120", "--pyargs", *modules]
        if deviations:
            args += ["-k", " and ".join(f"not {name}" for name in deviations)]
        runs.append(
            subprocess.Popen(
                args,
                cwd=here,
                env={**os.environ, "PYTHONPATH": str(here)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for run in runs:
        out, _ = run.communicate(timeout=900)
        tail = out[-3000:]
        assert run.returncode == 0, tail
        routed = int(tail.split("dagrt-routed computations: ")[1].split()[0])
        assert routed > 100, tail
        assert " passed" in tail


async def test_a_client_computes_dask_collections_from_its_own_loop() -> None:
    """``await dagrt.dask.acompute(client, ...)``: no blocking of the client's loop (a
    synchronous ``client.get`` there says to use a thread)."""
    x = da.arange(100, chunks=10).sum()
    async with dagrt.Client(processes=False) as client:
        assert await dagrt.dask.acompute(client, x, db.from_sequence([1, 2]).sum()) == (4950, 3)
        with pytest.raises(RuntimeError, match="another thread"):
            client.get(x.__dask_graph__(), x.__dask_keys__())


def counted(path: str, x: Any) -> Any:
    with open(path, "a") as f:
        f.write("x\n")
    return x


@pytest.mark.parametrize("where", ["in-process", "cluster"])
def test_persisted_collections_keep_their_chunks_in_the_pool(
    where: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """``dask.persist`` on dagrt: the chunks are computed once, later computations read
    them where they are kept, and results equal Dask's synchronous scheduler."""
    log = tmp_path / "ran"
    if where == "in-process":
        get, client = dagrt.dask.get, dagrt.dask._background()
    else:
        client = request.getfixturevalue("cluster_client")
        get = client.get
    x = da.arange(64, chunks=16).map_blocks(lambda b: counted(str(log), b) * 2)
    expected = (x + 1).sum().compute(scheduler="sync"), x.compute(scheduler="sync")
    log.unlink()
    (xp,) = dask.persist(x, scheduler=get)
    dagrt.dask.wait(xp)
    assert all(isinstance(v, dagrt.dask.Persisted) for v in dict(xp.__dask_graph__()).values())
    assert len(log.read_text().split()) == 4  # (four chunks, computed once)
    assert (xp + 1).sum().compute(scheduler=get) == expected[0]
    np.testing.assert_equal(xp.compute(scheduler=get), expected[1])
    assert len(log.read_text().split()) == 4  # (read where they are kept, not made again)
    bag = db.from_sequence(range(20), npartitions=4).map(inc)
    bp, dp = dagrt.dask.persist(bag, delayed(sum)([1, 2]), client=client)
    assert bp.sum().compute(scheduler=get) == 210
    assert dp.compute(scheduler=get) == 3
    live = len(client._pins.live)
    assert live >= 4 + 4 + 1
    del xp, bp, dp
    gc.collect()
    for _ in range(100):  # (the client's loop deletes what the collector released)
        if len(client._pins.live) <= live - 9:
            break
        threading.Event().wait(0.02)
    assert len(client._pins.live) <= live - 9


def test_a_persisted_chunk_that_failed_raises_its_own_exception(
    cluster_client: dagrt.Client,
) -> None:
    x = delayed(fails)(1)
    (xp,) = dagrt.dask.persist(x, client=cluster_client)
    raised = []
    for _ in range(2):  # (each reader raises an exception object of its own)
        with pytest.raises(ZeroDivisionError, match="no 1") as waited:
            dagrt.dask.wait(xp)
        with pytest.raises(ZeroDivisionError, match="no 1") as read:
            delayed(inc)(xp).compute(scheduler=cluster_client.get)
        raised += [waited.value, read.value]
    assert len({id(exc) for exc in raised}) == 4
    assert all(isinstance(exc.__cause__, dagrt.TaskError) for exc in raised)


def held_pins(collection: Any) -> dict[Any, Any]:
    """The pins of a persisted collection's chunks, by key."""
    graph = dict(collection.__dask_graph__())
    return {k: v.pin for k, v in graph.items() if isinstance(v, dagrt.dask.Persisted)}


def test_a_persisted_collection_persisted_again_keeps_its_chunks(
    cluster_client: dagrt.Client, tmp_path: Any
) -> None:
    log = tmp_path / "ran"
    x = da.arange(64, chunks=16).map_blocks(lambda b: counted(str(log), b))
    log.unlink()  # (Dask called it on a sample to learn its type)
    (xp,) = dagrt.dask.persist(x, client=cluster_client)
    (again,) = dagrt.dask.persist(xp, client=cluster_client)
    (more,) = dask.persist(xp + 1, scheduler=cluster_client.get)
    assert len(held_pins(xp)) == 4
    assert held_pins(again) == held_pins(xp)  # (the very pins: Pin compares by identity)
    np.testing.assert_equal(again.compute(scheduler=cluster_client.get), np.arange(64))
    np.testing.assert_equal(more.compute(scheduler=cluster_client.get), np.arange(64) + 1)
    del xp
    gc.collect()  # (the chunks are held by ``again`` too)
    np.testing.assert_equal(again.compute(scheduler=cluster_client.get), np.arange(64))
    assert len(log.read_text().split()) == 4  # (each chunk computed once)


def test_persisted_chunks_are_found_in_the_collection_not_by_key_alone(
    cluster_client: dagrt.Client,
) -> None:
    """Two persisted values under one key (named by the user) each read their own; a
    collection persisted by another client is read where that client keeps it (in its
    process, here: so it is gone for this one, and says so)."""
    first = delayed(inc)(1, dask_key_name="named")
    second = delayed(inc)(10, dask_key_name="named")
    (first_p,) = dagrt.dask.persist(first, client=cluster_client)
    (second_p,) = dagrt.dask.persist(second, client=cluster_client)
    assert first_p.compute(scheduler=cluster_client.get) == 2
    assert second_p.compute(scheduler=cluster_client.get) == 11
    assert delayed(inc)(first_p).compute(scheduler=cluster_client.get) == 3
    elsewhere = dagrt.dask._background()  # (an in-process client)
    (here_p,) = dagrt.dask.persist(delayed(inc)(5), client=elsewhere)
    assert here_p.compute(scheduler=elsewhere.get) == 6
    with pytest.raises(dagrt.PersistedLostError):
        delayed(inc)(here_p).compute(scheduler=cluster_client.get)


def test_persist_takes_collections_or_nodes_not_both(cluster_client: dagrt.Client) -> None:
    @dagrt.task
    def one() -> int:
        return 1

    with pytest.raises(TypeError, match="not both"):
        cluster_client.persist([delayed(inc)(1), one()])


def test_waiting_for_chunks_whose_run_was_cancelled_says_they_are_lost(
    cluster_client: dagrt.Client,
) -> None:
    (xp,) = dagrt.dask.persist(delayed(time.sleep)(5), client=cluster_client)
    (future,) = dict(xp.__dask_graph__()).values()
    assert future.pin.made is not None
    future.pin.made.cancel()
    with pytest.raises(dagrt.PersistedLostError, match="cancelled"):
        dagrt.dask.wait(xp)


def test_a_key_neither_in_the_graph_nor_persisted_is_a_key_error() -> None:
    from dask._task_spec import Task, TaskRef

    with pytest.raises(KeyError, match="elsewhere"):
        dagrt.dask.get({"a": Task("a", inc, TaskRef("elsewhere"))}, "a")


@pytest.mark.parametrize("where", ["in-process", "cluster"])
def test_a_failing_dataframe_computation_fails_at_once(
    where: str, request: pytest.FixtureRequest
) -> None:
    """The run that fails keeps what it finished under cache keys; the keys of tasks
    that carry pandas' and Dask's functions name them (installed code) instead of
    hashing them, which walked the libraries for minutes."""
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    get = dagrt.dask.get if where == "in-process" else request.getfixturevalue("cluster_client").get
    a = dd.from_pandas(pd.DataFrame({"a": [1, 5, 10], "v": ["a", "b", "c"]}), npartitions=2)
    b = dd.from_pandas(pd.DataFrame({"a": [2, 1, 3, 6, 7], "w": [1, 2, 3, 6, 7]}), npartitions=2)
    with pytest.raises(ValueError, match="right keys must be sorted"):
        dd.merge_asof(a, b, on="a").compute(scheduler=get)


@pytest.mark.parametrize("where", ["in-process", "cluster"])
def test_dataframes_give_what_the_synchronous_scheduler_gives(
    where: str, request: pytest.FixtureRequest
) -> None:
    """A groupby-aggregate and a shuffle-join (task-based, as ``enable`` sets it)."""
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    client = None if where == "in-process" else request.getfixturevalue("cluster_client")
    rng = np.random.default_rng(0)
    left = pd.DataFrame({"k": rng.integers(0, 50, 2000), "x": rng.random(2000)})
    right = pd.DataFrame({"k": np.arange(50), "w": np.arange(50) % 7})
    ddl, ddr = dd.from_pandas(left, npartitions=6), dd.from_pandas(right, npartitions=3)
    work = {
        "groupby": ddl.groupby("k").x.agg(["sum", "mean", "count"]),
        "join": dd.merge(ddl, ddr, on="k", broadcast=False).groupby("w").x.sum(),
    }
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        expected = dask.compute(work, scheduler="sync")[0]
    with dagrt.dask.enable(client):
        got = dask.compute(work)[0]
    for name in work:
        pd.testing.assert_frame_equal(
            pd.DataFrame(got[name]).sort_index(), pd.DataFrame(expected[name]).sort_index()
        )


def uses(x: Any) -> int:
    return 1


def test_a_graph_that_cannot_be_pickled_names_the_key(cluster_client: dagrt.Client) -> None:
    """Worker processes need each task pickled: one that holds a lock is refused before
    anything runs, naming its Dask key."""
    x = delayed(uses)(threading.Lock(), dask_key_name="holds-a-lock")
    with pytest.raises(dagrt.SerializationError, match="holds-a-lock"):
        dask.compute(x, scheduler=cluster_client.get)
    assert dask.compute(x, scheduler=dagrt.dask.get) == (1,)  # (in process: no pickling)
