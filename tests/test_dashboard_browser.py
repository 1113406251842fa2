"""The dashboard in a real headless Chromium (Playwright driving Debian's browser).

The page's ``window.__dagrt`` snapshot and ``data-testid``s (see
dagrt/dashboard/web/SPEC.md) let these tests check what the canvases show
against the event log, read independently in Python.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, REDIS_CONF, Pool
from helpers import add, collect, inc
from test_dashboard import (  # the autouse fixture applies here too
    Dashboard,
    log_ids,
    no_dashboard_left_behind,  # noqa: F401
    running_dashboard,
)

import dagrt
from dagrt import keys as K
from dagrt import workflows
from dagrt.metrics import FlushPolicy, read_graph, read_run
from dagrt.metrics.analysis import ON_THE_HOST, analyze
from dagrt.metrics.events import (
    RunSubmitted,
    TaskExecutionMetrics,
    TaskFailed,
    TaskStarted,
    Transfer,
)
from dagrt.storage import RedisServer, RedisStorage

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
]
STATE_COLOURS = {
    "done": (0x27, 0xAE, 0x60),
    "failed": (0xEB, 0x57, 0x57),
    "running": (0x2F, 0x80, 0xED),
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM) and not shutil.which("chromium"):
        pytest.skip("no Chromium: apt-get install chromium (./test.sh does, as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            args=ARGS,
        )
        yield browser
        browser.close()


class Page:
    """A page of the dashboard, with the console and failed requests watched."""

    def __init__(self, browser: Any, board: Dashboard) -> None:
        self.board = board
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url}"))

    def open(self, route: str = "#/") -> Page:
        self.page.goto(self.board.http + "/" + route)
        self.wait("window.__dagrt && window.__dagrt.ready")
        return self

    def wait(self, expression: str, timeout: float = 30) -> Any:
        return self.page.wait_for_function(expression, timeout=timeout * 1000).json_value()

    def eval(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def board(pool: Pool) -> Iterator[Dashboard]:
    yield from running_dashboard(pool.url)


@pytest.fixture
def pages(browser: Any, board: Dashboard) -> Iterator[Callable[[], Page]]:
    made: list[Page] = []

    def make() -> Page:
        made.append(Page(browser, board))
        return made[-1]

    yield make
    for page in made:
        page.close()


def in_thread(coro: Callable[[], Any]) -> concurrent.futures.Future[Any]:
    """Run async client work beside the (sync) browser."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(asyncio.run, coro())
    pool.shutdown(wait=False)
    return future


def submit(
    url: str,
    node: dagrt.Node,
    run_ids: concurrent.futures.Future[str] | None = None,
    priority: int = 0,
    **options: Any,
) -> concurrent.futures.Future[Any]:
    """Compute ``node`` on the pool in a thread (at ``priority``); ``run_ids`` gets the
    run id at once."""

    async def go() -> Any:
        async with dagrt.Client(url, flush=FlushPolicy(interval=0.2), **options) as client:
            fut = client.submit(node, priority=priority)
            if run_ids is not None:
                run_ids.set_result(fut.run_id)
            try:
                return fut.run_id, await fut
            except dagrt.TaskError as exc:
                return fut.run_id, exc

    return in_thread(go)


def logged(url: str, run_id: str, n_tasks: int, *, failed: bool = False) -> list[Any]:
    """The run's events once its workers have flushed them all (``failed``: up to the
    task-failed that ended the run)."""
    storage = RedisStorage(url)
    deadline = time.monotonic() + 30
    while True:
        events = read_run(storage, run_id)
        finished = {e.task for e in events if isinstance(e, TaskExecutionMetrics)}
        ended = any(e.kind == "run-finished" for e in events)
        final = any(e.kind == "task-failed" and e.final for e in events)
        if ended and (final if failed else len(finished) >= n_tasks):
            storage.close()
            return events
        if time.monotonic() > deadline:
            record = storage.hgetall(K.run_record(run_id))
            raise TimeoutError(
                f"events of {run_id} incomplete: {len(finished)} of {n_tasks} tasks finished, "
                f"run-finished {'seen' if ended else 'missing'}; runs index {record}"
            )
        time.sleep(0.2)  # workers flush on their own clock; this is a test's wait


def states_at(events: list[Any], parents: list[list[int]], t: float) -> list[str]:
    """A reference reducer in Python: each task's state ``t`` seconds after submission."""
    t0 = next(e.ts for e in events if isinstance(e, RunSubmitted))
    n = len(parents)
    started = [False] * n
    end: list[float | None] = [None] * n
    failed = [False] * n
    for e in events:
        when = (e.start if isinstance(e, TaskExecutionMetrics) else e.ts) - t0
        if when > t:
            continue
        if isinstance(e, TaskStarted):
            started[e.task] = True
        elif isinstance(e, TaskExecutionMetrics):
            end[e.task] = e.end - t0
        elif isinstance(e, TaskFailed) and e.final:
            failed[e.task] = True
    out: list[str] = []
    for i in range(n):
        ended = end[i]
        if failed[i]:
            out.append("failed")
        elif ended is not None:
            out.append("done" if ended <= t else "running")
        elif started[i]:
            out.append("running")
        else:
            ready = all(out[p] == "done" for p in parents[i])
            out.append("ready" if ready else "waiting")
    return out


def counts_of(states: list[str]) -> dict[str, int]:
    return {s: states.count(s) for s in ("waiting", "ready", "running", "done", "failed")}


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def pixel(page: Page, index: int) -> tuple[int, int, int]:
    """The colour at a node's centre on the DAG canvas (from a screenshot)."""
    from PIL import Image

    centre = page.eval(f"window.__dagrt.nodeCenter({index})")
    assert centre is not None
    box = page.page.get_by_test_id("dag-canvas").bounding_box()
    shot = page.page.screenshot(
        clip={
            "x": box["x"] + centre["x"] - 1,
            "y": box["y"] + centre["y"] - 1,
            "width": 3,
            "height": 3,
        }
    )
    import io

    return Image.open(io.BytesIO(shot)).convert("RGB").getpixel((1, 1))  # type: ignore[return-value]


# --------------------------------------------------------------------------- install and live


def test_the_page_loads_clean(pages: Callable[[], Page]) -> None:
    page = pages().open()
    assert page.eval("window.__dagrt.view") == "runs"
    assert page.page.get_by_test_id("runs-list").is_visible()
    assert page.errors == []


def test_a_live_run_matches_the_log(pool: Pool, pages: Callable[[], Page]) -> None:
    page = pages().open("#/")  # open before the run is submitted
    run_ids: concurrent.futures.Future[str] = concurrent.futures.Future()
    node = workflows.get("tree_reduction").build(n=2048)
    done = submit(pool.url, node, run_ids)
    run_id = run_ids.result(30)
    page.wait(
        f"window.__dagrt.runs().some(r => r.run_id === '{run_id}' && r.n_tasks === 2047)", timeout=5
    )
    page.page.goto(page.board.http + f"/#/run/{run_id}")
    page.wait(f"window.__dagrt.ready && window.__dagrt.runId === '{run_id}'")
    done.result(60)
    events = logged(pool.url, run_id, 2047)
    page.wait("window.__dagrt.status === 'finished' && window.__dagrt.counts.done === 2047")
    assert page.eval("window.__dagrt.counts") == {
        "waiting": 0,
        "ready": 0,
        "running": 0,
        "done": 2047,
        "failed": 0,
    }
    assert page.page.get_by_test_id("run-status").inner_text() == "finished"
    finished = {e.task: e for e in events if isinstance(e, TaskExecutionMetrics)}
    for i in random.Random(1).sample(range(2047), 20):
        assert page.eval(f"window.__dagrt.node({i}).worker") == finished[i].worker_id
    workers = {e.worker_id for e in finished.values()}
    legend = page.page.locator("[data-testid^='worker-legend-']")
    assert {
        x.get_attribute("data-testid")[len("worker-legend-") :] for x in legend.all()
    } == workers
    lanes = page.eval("window.__dagrt.lanes()")
    per_worker: dict[str, int] = {}
    for lane in lanes:
        per_worker[lane["worker"]] = per_worker.get(lane["worker"], 0) + lane["bars"]
    assert per_worker == {w: sum(1 for e in finished.values() if e.worker_id == w) for w in workers}
    moves = [e for e in events if isinstance(e, Transfer)]
    shown = page.eval("window.__dagrt.transfers()")
    assert shown["network"] == sum(m.bytes for m in moves if not m.local)
    assert shown["local"] == sum(m.bytes for m in moves if m.local)
    for w in workers:
        assert shown["perWorker"].get(w, 0) == sum(m.bytes for m in moves if m.worker_id == w)
    downloaded = {(m.producer, m.consumer) for m in moves if m.direction == "download"}
    local_edges = {(e["producer"], e["consumer"]) for e in shown["edges"] if e["local"]}
    graph = read_graph(RedisStorage(pool.url), run_id)
    edges = {(p, c) for c, ps in enumerate(graph.parents) for p in ps}
    assert local_edges == edges - downloaded
    assert page.errors == []


@dagrt.task
def array(n: int) -> Any:
    import numpy as np

    return np.ones(n)


@dagrt.task
def total_of(*parts: Any) -> float:
    import numpy as np

    return float(sum(np.sum(p) for p in parts))


def test_bytes_by_path_match_the_report(
    pool_factory: Callable[..., Pool], browser: Any, tmp_path: Path
) -> None:
    """Workers of two simulated hosts with stores: inputs mapped on a host, fetched
    from the other; the page's bytes by path are the report's, figure for figure."""
    pool = pool_factory(0)
    for host in ("h1", "h2"):
        pool.spawn(*FAST, "--host-id", host, "--store", str(tmp_path / host))
    big = [array(1 << 17) for _ in range(6)]  # 1 MB each: kept in the stores
    node = total_of(*[total_of(b, big[(i + 1) % 6]) for i, b in enumerate(big)])
    run_id, value = submit(pool.url, node).result(60)
    assert value == 12 * (1 << 17)
    events = logged(pool.url, run_id, 13)
    expected = analyze(events).bytes_by_path
    assert expected.get("map", 0) + expected.get("direct", 0) > 0
    with contextlib.contextmanager(running_dashboard)(pool.url) as board:
        page = Page(browser, board).open(f"#/run/{run_id}")
        try:
            page.wait("window.__dagrt.status === 'finished'")
            shown = page.eval("window.__dagrt.transfers()")
            assert shown["byPath"] == {k: v for k, v in expected.items() if v}
            host = sum(v for k, v in expected.items() if k in ON_THE_HOST)
            assert shown["local"] == host
            assert shown["network"] == sum(expected.values()) - host
            for path in shown["byPath"]:  # the panel redraws at most every 500 ms
                page.page.get_by_test_id(f"transfers-path-{path}").wait_for(
                    state="visible", timeout=10_000
                )
            assert page.errors == []
        finally:
            page.close()


@dagrt.task
def slice_sum(a: Any, i: int) -> float:
    import numpy as np

    return float(np.sum(a[i::4]))


def test_why_tasks_ran_where_they_did_and_what_it_saved(
    pool: Pool, browser: Any, pages: Callable[[], Page]
) -> None:
    """Fan-out clustering at a low threshold: the children of a 1 MB array run on the
    worker that made it; the page says why each task ran there ("cluster" for the
    claimed ones) and the bytes kept from moving by reason, as the report does."""
    big = array(1 << 17)
    node = total_of(*[slice_sum(big, i) for i in range(4)])
    locality = {"cluster_min_bytes": 64 * 1024, "spill_after_s": 30}
    run_id, value = submit(pool.url, node, locality=locality).result(60)
    assert value == float(1 << 17)
    events = logged(pool.url, run_id, 6)
    a = analyze(events)
    assert a.placements.get("cluster", 0) == 3
    page = pages().open(f"#/run/{run_id}")
    page.wait("window.__dagrt.status === 'finished'")
    shown = page.eval("window.__dagrt.transfers()")
    assert shown["avoidedBy"] == a.bytes_avoided_by
    assert shown["avoidedBy"]["cluster"] >= 3 * 8 * (1 << 17)
    page.page.get_by_test_id("transfers-avoided-cluster").wait_for(state="visible", timeout=10_000)
    placed = [page.eval(f"window.__dagrt.node({i})")["placed"] for i in range(6)]
    assert sorted(placed) == sorted(e.placed for e in events if e.kind == "task-finished")
    assert placed.count("cluster") == 3
    assert page.errors == []


def test_a_failing_task_is_red_with_its_error(pool: Pool, pages: Callable[[], Page]) -> None:
    @dagrt.task
    def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    bad = boom(inc(1))
    node = collect(bad, *[inc(i) for i in range(5)])
    run_id, error = submit(pool.url, node).result(60)
    assert isinstance(error, dagrt.TaskError)
    logged(pool.url, run_id, 0, failed=True)
    page = pages().open(f"#/run/{run_id}")
    page.wait("window.__dagrt.status === 'failed' && window.__dagrt.counts.failed === 1")
    index = dagrt.DAG(node).keys.index(bad.key)
    record = page.eval(f"window.__dagrt.node({index})")
    assert record["state"] == "failed"
    # The canvas repaints at most a few times a second: wait for the paint, then look at it.
    page.wait(f"window.__dagrt.nodeColor({index}) === '{hex_colour(STATE_COLOURS['failed'])}'")
    assert pixel(page, index) == STATE_COLOURS["failed"]
    assert page.page.get_by_test_id("error-type").first.inner_text() == "ValueError"
    assert page.page.get_by_test_id("error-message").first.inner_text() == "boom 2"
    assert "raise ValueError" in page.page.get_by_test_id("error-traceback").first.inner_text()
    assert page.page.get_by_test_id("run-status").inner_text() == "failed"


@dagrt.task
def fan_of(n: int) -> Any:
    return collect(*[inc(i) for i in range(n)])


@dagrt.task(cache=True)
def kept_once(token: str) -> int:
    return len(token)


def test_the_runs_list_shows_returned_graphs_what_the_cache_spared_and_priorities(
    pool: Pool, pages: Callable[[], Page]
) -> None:
    """A task that returned a graph: its sub-run is listed as the graph of that task,
    linked to its run. A run whose cached task was found: the list says so. A run of
    priority 7: so does the list."""
    urgent, _ = submit(pool.url, inc(41), priority=7).result(60)
    run_id, _ = submit(pool.url, fan_of(3)).result(60)
    sub = K.sub_run_id(run_id, 0)
    token = os.urandom(4).hex()
    submit(pool.url, inc(kept_once(token))).result(60)
    again, value = submit(pool.url, inc(kept_once(token))).result(60)
    assert value == 9
    logged(pool.url, again, 1)
    page = pages().open("#/")
    parent = page.page.get_by_test_id(f"run-parent-{sub}")
    parent.wait_for(timeout=30_000)
    assert run_id in parent.inner_text()
    assert page.page.get_by_test_id(f"run-priority-{urgent}").inner_text() == "priority 7"
    assert page.page.get_by_test_id(f"run-lanes-{urgent}").inner_text() == "1 in |p=7"
    assert page.page.get_by_test_id(f"run-priority-{run_id}").count() == 0
    row = page.page.get_by_test_id(f"run-row-{again}")
    row.wait_for(timeout=30_000)
    page.wait(
        f"document.querySelector('[data-testid=\"run-row-{again}\"]')"
        ".children[5].textContent === '1'"
    )
    assert page.errors == []


# --------------------------------------------------------------------------- robustness


def test_a_server_restart_mid_run_loses_and_repeats_nothing(pool: Pool, browser: Any) -> None:
    board = Dashboard(pool.url).start()
    page = Page(browser, board).open()

    @dagrt.task
    def nap(x: int) -> int:
        time.sleep(0.03)
        return x

    run_ids: concurrent.futures.Future[str] = concurrent.futures.Future()
    done = submit(pool.url, collect(*[nap(i) for i in range(60)]), run_ids)
    run_id = run_ids.result(30)
    page.page.goto(board.http + f"/#/run/{run_id}")
    page.wait("window.__dagrt.ready && window.__dagrt.appliedCount > 10")
    board.stop(signal.SIGKILL)
    page.wait("window.__dagrt.connection === 'disconnected'")
    board.start()
    done.result(60)
    expected = log_ids(pool.url, logged(pool.url, run_id, 61)[0].run_id)
    page.wait(f"window.__dagrt.appliedIds().length >= {len(expected)}")
    assert page.eval("window.__dagrt.appliedIds()") == expected
    page.close()
    board.stop()


def test_eight_tabs_live_and_sigint_with_pages_open(pool: Pool, browser: Any) -> None:
    board = Dashboard(pool.url).start()
    context = browser.new_context()
    tabs = []
    for _ in range(8):
        tab = Page.__new__(Page)
        tab.board, tab.errors = board, []
        tab.page = context.new_page()
        tabs.append(tab.open())
    run_id, _ = submit(pool.url, add(inc(1), 2)).result(60)
    for tab in tabs:
        tab.wait(f"window.__dagrt.runs().some(r => r.run_id === '{run_id}')", timeout=10)
    # the eighth page of one browser still gets answers (six SSE streams would block it)
    assert tabs[7].eval("fetch('/api/runs').then(r => r.status)") == 200
    for tab in tabs[3:]:
        tab.page.close()
    assert board.stop(signal.SIGINT) < 3.0  # three pages still open
    for tab in tabs[:3]:
        tab.wait("window.__dagrt.connection === 'disconnected'")
    board.start()  # same port: the pages reconnect
    for tab in tabs[:3]:
        tab.wait("window.__dagrt.connection === 'live'", timeout=15)
    context.close()
    board.stop()


# --------------------------------------------------------------------------- replay


@pytest.fixture
def persistent_pool(tmp_path: Path) -> Iterator[Pool]:
    """A pool whose server keeps the log on disk (AOF), as the shipped config does."""
    server = RedisServer(
        config_file=REDIS_CONF, directory=tmp_path, password="replay", die_with_parent=True
    )
    made = Pool(server.start())
    for _ in range(2):
        made.spawn("--claim-timeout", "2", "--heartbeat", "0.5", "--flush-interval", "0.2")
    yield made
    made.stop()


@dagrt.task
def sleep_task(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


def test_replay_of_a_finished_run_after_a_restart(persistent_pool: Pool, browser: Any) -> None:
    leaves = [sleep_task(i, 0.12) for i in range(30)]
    node = collect(*[add(leaves[i], leaves[i + 1]) for i in range(0, 30, 2)])
    run_id, _ = submit(persistent_pool.url, node).result(120)
    events = logged(persistent_pool.url, run_id, 46)
    for worker in persistent_pool.workers:  # only the server stays, and it restarts
        worker.terminate()
        worker.wait(15)
    persistent_pool.server.restart()
    board = Dashboard(persistent_pool.url).start()
    page = Page(browser, board).open(f"#/run/{run_id}")
    page.wait("window.__dagrt.counts.done === 46 && window.__dagrt.status === 'finished'")
    graph = read_graph(RedisStorage(persistent_pool.url), run_id)
    t0 = next(e.ts for e in events if isinstance(e, RunSubmitted))
    last = max(e.end if isinstance(e, TaskExecutionMetrics) else e.ts for e in events)
    assert page.eval("window.__dagrt.duration") == pytest.approx(last - t0, abs=1e-3)

    half = (last - t0) / 2
    page.page.goto(board.http + f"/#/run/{run_id}?t={half}")
    page.page.reload()
    page.wait("window.__dagrt.ready")
    page.wait(f"Math.abs(window.__dagrt.replayTime - {half}) < 1e-6")
    expected = states_at(events, graph.parents, half)
    assert page.eval("window.__dagrt.counts") == counts_of(expected)
    for i in random.Random(2).sample(range(46), 30):
        assert page.eval(f"window.__dagrt.node({i}).state") == expected[i], i
    assert page.eval("window.__dagrt.live") is False

    before = page.eval("window.__dagrt.appliedCount")
    page.page.get_by_test_id("step-forward").click()
    page.wait(f"window.__dagrt.appliedCount === {before + 1}")

    page.page.get_by_test_id("scrub").fill("0")
    page.page.get_by_test_id("speed-10").click()
    # Timed in the page, from the click to the frame that reaches the end (no round
    # trips to the test in between). A busy machine can only make it slower, so the
    # lower bound is exact; the upper one still tells 10x from 1x (10 times longer).
    duration = last - t0
    took = page.eval(
        """new Promise((resolve) => {
            const start = performance.now();
            document.querySelector('[data-testid="play"]').click();
            const check = () => window.__dagrt.replayTime >= %r
                ? resolve((performance.now() - start) / 1000)
                : requestAnimationFrame(check);
            requestAnimationFrame(check);
        })"""
        % (duration - 1e-6)
    )
    assert duration / 10 * 0.8 <= took <= duration / 10 * 3 + 0.5
    board.stop()


# --------------------------------------------------------------------------- scale


@pytest.mark.slow
def test_sixteen_thousand_and_a_hundred_thousand_tasks(
    pool: Pool, browser: Any, board: Dashboard
) -> None:
    flow = workflows.get("tree_reduction")
    run16, _ = submit(pool.url, flow.build(n=16_384)).result(120)
    logged(pool.url, run16, 16_383)
    page = Page(browser, board).open(f"#/run/{run16}")
    page.wait("window.__dagrt.counts.done === 16383", timeout=60)
    assert page.errors == []
    page.close()

    run100, _ = submit(pool.url, flow.build(n=100_001)).result(300)
    logged(pool.url, run100, 100_000)
    page = Page(browser, board).open(f"#/run/{run100}")
    page.wait("window.__dagrt.counts.done === 100000", timeout=120)
    assert page.eval("window.__dagrt.aggregated") is True
    shown = page.page.get_by_test_id("node-count").inner_text()
    assert "".join(ch for ch in shown if ch.isdigit()) == "100000"
    canvas = page.page.get_by_test_id("dag-canvas")
    box = canvas.bounding_box()
    for _ in range(3):  # zoom into a region until nodes are drawn one by one
        canvas.dblclick(position={"x": box["width"] / 2, "y": box["height"] / 2})
    page.wait("window.__dagrt.visibleNodes > 0 && !window.__dagrt.aggregated", timeout=20)
    heap = page.eval("performance.memory ? performance.memory.usedJSHeapSize : 0")
    assert heap < 500 * 2**20
    page.close()


# --------------------------------------------------------------------------- install


@pytest.mark.slow
def test_a_wheel_installed_without_node_serves_a_clean_page(
    pool: Pool, browser: Any, tmp_path: Path
) -> None:
    """Build the wheel, install it with the ``dashboard`` extra into a fresh venv
    with no Node on its PATH, run its ``dagrt dashboard`` and open the page."""
    root = Path(__file__).resolve().parent.parent
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(root)],
        check=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("dagrt-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = str(env_dir / "bin")  # no Node, no npm
    subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[dashboard]"],
        check=True,
        timeout=900,
        env=env,
    )
    assert shutil.which("node", path=env["PATH"]) is None
    board = Dashboard(pool.url, command=[str(env_dir / "bin" / "dagrt")], env=env).start()
    try:
        page = Page(browser, board)
        requested: list[str] = []
        page.page.on("requestfinished", lambda r: requested.append(r.url))
        page.open()
        run_id, _ = submit(pool.url, add(inc(1), 2)).result(60)
        page.wait(f"window.__dagrt.runs().some(r => r.run_id === '{run_id}')")
        page.open(f"#/run/{run_id}")
        page.wait("window.__dagrt.counts.done === 2")
        assets = {u for u in requested if "/assets/" in u}
        shipped = root / "dagrt" / "dashboard" / "static" / "assets"
        assert {u.rsplit("/", 1)[1] for u in assets} >= {
            p.name for p in shipped.iterdir() if p.suffix in (".js", ".css")
        }
        assert page.errors == []
        page.close()
    finally:
        board.stop()
