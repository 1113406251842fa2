"""The dashboard's server: REST, the live socket (resume, exactly once), many pages, shutdown.

The server runs as the ``dagrt dashboard`` process, against the compose-shaped
pool's server; runs come from real workers.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, ClassVar

import anyio
import pytest
import websockets
from conftest import Pool, worker_env
from helpers import add, collect, inc, wait_for_events
from websockets.exceptions import InvalidStatus

import dagrt
from dagrt import keys as K
from dagrt.metrics import FlushPolicy, TaskExecutionMetrics
from dagrt.serialize import unpack
from dagrt.storage import RedisStorage
from dagrt.storage.server import free_port


class Dashboard:
    """``dagrt dashboard`` as a process (by default this interpreter's ``-m dagrt``)."""

    def __init__(
        self,
        url: str,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        self.port = free_port()
        self.command = command or [sys.executable, "-m", "dagrt"]
        self.env = env
        self.args = args
        self.process: subprocess.Popen[str] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/live"

    #: Dashboards started and not yet stopped (a failed test's are stopped after it).
    started: ClassVar[list[Dashboard]] = []

    def start(self) -> Dashboard:
        Dashboard.started.append(self)
        self.process = subprocess.Popen(  # (the URL by environment: off the command line)
            [*self.command, "dashboard", "--port", str(self.port), *self.args],
            stdout=subprocess.PIPE,
            text=True,
            env={**(self.env or worker_env()), "DAGRT_METRICS_URL": self.url},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "dagrt dashboard: http://" in line, line
        return self

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Signal the process; seconds it took to exit."""
        assert self.process is not None
        t0 = time.monotonic()
        self.process.send_signal(sig)
        self.process.wait(15)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return time.monotonic() - t0

    def close(self) -> None:
        """Stop the process if it still runs (whatever the test got to)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(15)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.http + path, timeout=10) as reply:
            return json.loads(reply.read())


@pytest.fixture(autouse=True)
def no_dashboard_left_behind() -> Iterator[None]:
    """A test that fails half-way leaves no dashboard process to the next ones."""
    yield
    while Dashboard.started:
        Dashboard.started.pop().close()


def running_dashboard(url: str) -> Iterator[Dashboard]:
    """A dashboard on ``url`` for the length of a fixture."""
    board = Dashboard(url).start()
    yield board
    if board.process is not None and board.process.poll() is None:
        board.stop()


@pytest.fixture
def dashboard(pool: Pool) -> Iterator[Dashboard]:
    yield from running_dashboard(pool.url)


def log_ids(url: str, run_id: str) -> list[str]:
    """Every event position of a run in the log: "entry id/k"."""
    storage = RedisStorage(url)
    record = storage.hgetall(K.run_record(run_id))
    entries = storage.xrange(K.events(), record[b"first"].decode(), record[b"last"].decode())
    storage.close()
    out = []
    for entry_id, fields in entries:
        if fields[b"r"].decode() != run_id:
            continue
        n = 0
        for item in unpack(fields[b"d"]):
            from dagrt.metrics.wire import to_dicts

            n += len(to_dicts(item))
        out += [f"{entry_id.decode()}/{k}" for k in range(n)]
    return out


def positions(events: list[list[Any]]) -> list[str]:
    """The log positions ("entry id/k") wire events stand for (a batch: several)."""
    return [f"{eid}/{k + j}" for eid, k, e, *_ in events for j in range(e.get("n", 1))]


def finished_tasks(events: list[list[Any]]) -> dict[int, str]:
    """task index -> the worker that finished it, from wire events (batches expanded)."""
    out: dict[int, str] = {}
    for _, _, e, *_ in events:
        if e["kind"] == "task-finished":
            out[e["task"]] = e["worker_id"]
        elif e["kind"] == "tasks-finished":
            lanes = e["lane"] or [0] * e["n"]
            names = e["workers"] or [e["worker_id"]]
            out.update({t: names[j] for t, j in zip(e["task"], lanes, strict=True)})
    return out


async def run_and_wait(url: str, node: dagrt.Node) -> str:
    async with dagrt.Client(url, flush=FlushPolicy(interval=0.2)) as client:
        fut = client.submit(node)
        await fut
    n = len(dagrt.DAG(node))
    storage = RedisStorage(url)
    await wait_for_events(
        storage,
        fut.run_id,
        lambda es: (
            sum(isinstance(e, TaskExecutionMetrics) for e in es) >= n
            and any(e.kind == "run-finished" for e in es)
        ),
    )
    await storage.aclose()
    return fut.run_id


async def test_the_rest_api(pool: Pool, dashboard: Dashboard) -> None:
    node = collect(*[add(inc(i), inc(i + 1)) for i in range(10)])
    run_id = await run_and_wait(pool.url, node)
    runs = await anyio.to_thread.run_sync(dashboard.get, "/api/runs")
    mine = next(r for r in runs if r["run_id"] == run_id)
    assert (mine["status"], mine["n_tasks"], mine["done"]) == ("finished", 31, 31)
    detail = await anyio.to_thread.run_sync(dashboard.get, f"/api/runs/{run_id}")
    assert len(detail["graph"]["keys"]) == 31
    assert detail["graph"]["outputs"] == [30]
    events, after = [], None
    while True:
        page = await anyio.to_thread.run_sync(
            dashboard.get,
            f"/api/runs/{run_id}/events?count=2" + (f"&after={after}" if after else ""),
        )
        events += page["events"]
        after = page["last"]
        if page["done"]:
            break
    by_worker = finished_tasks(events)
    assert sorted(by_worker) == list(range(31))
    assert positions(events) == log_ids(pool.url, run_id)
    trace = await anyio.to_thread.run_sync(dashboard.get, f"/api/runs/{run_id}/trace.json")
    slices = [t for t in trace["traceEvents"] if t["ph"] == "X"]
    assert len(slices) == 31  # one per task attempt
    names = {t["pid"]: t["args"]["name"] for t in trace["traceEvents"] if t["ph"] == "M"}
    assert all(names[t["pid"]] == by_worker[t["args"]["task"]] for t in slices)


def test_bad_requests(dashboard: Dashboard) -> None:
    with pytest.raises(urllib.error.HTTPError) as missing:
        dashboard.get("/api/runs/no-such-run")
    assert missing.value.code == 404
    missing.value.close()
    with pytest.raises(urllib.error.HTTPError) as bad:
        dashboard.get("/api/runs/bad%20id")
    assert bad.value.code == 400
    bad.value.close()


async def collect_live(
    ws_url: str, run_id: str, last: str | None, until: Any, seen: list[str]
) -> str | None:
    """Apply batches of one run until ``until(seen)``; the last entry id applied."""
    async with websockets.connect(ws_url) as socket:
        await socket.send(json.dumps({"run": run_id, "from": last}))
        while not until(seen):
            message = json.loads(await socket.recv())
            if message["type"] != "batch":
                continue
            seen += positions(message["events"])
            last = message["last"]
    return last


async def test_a_restart_mid_run_applies_every_event_once(pool: Pool) -> None:
    board = Dashboard(pool.url).start()

    @dagrt.task
    def nap(x: int) -> int:
        time.sleep(0.02)
        return x

    node = collect(*[nap(i) for i in range(80)])
    async with dagrt.Client(pool.url, flush=FlushPolicy(interval=0.1)) as client:
        fut = client.submit(node)
        seen: list[str] = []
        with anyio.fail_after(60):
            last = await collect_live(board.ws, fut.run_id, None, lambda s: len(s) >= 20, seen)
            board.stop(signal.SIGKILL)  # the server dies mid-run
            board.start()  # the same port
            await fut

            def complete(s: list[str]) -> bool:
                # The index first, then the log: an entry landing in between is in
                # the ids (read after it counted the run finished), so it is waited for.
                finished = _has_finished(pool.url, fut.run_id, 81)
                return finished and len(s) >= len(log_ids(pool.url, fut.run_id))

            await collect_live(board.ws, fut.run_id, last, complete, seen)
    board.stop()
    assert len(seen) == len(set(seen))  # nothing twice
    assert seen == log_ids(pool.url, fut.run_id)  # nothing lost, in log order


def _has_finished(url: str, run_id: str, n: int) -> bool:
    storage = RedisStorage(url)
    record = storage.hgetall(K.run_record(run_id))
    storage.close()
    return int(record.get(b"done", 0)) >= n and record.get(b"status") == b"finished"


async def test_eight_pages_are_live_and_rest_still_answers(
    pool: Pool, dashboard: Dashboard
) -> None:
    async with dagrt.Client(pool.url, flush=FlushPolicy(interval=0.1)) as client:
        sockets = [await websockets.connect(dashboard.ws) for _ in range(8)]
        for s in sockets:
            await s.send(json.dumps({"run": None, "from": None}))
        fut = client.submit(add(inc(1), 2))
        await fut
        t0 = time.monotonic()
        await anyio.to_thread.run_sync(dashboard.get, "/api/runs")
        assert time.monotonic() - t0 < 1.0
        with anyio.fail_after(30):
            for s in sockets:
                while True:
                    message = json.loads(await s.recv())
                    events = message.get("events", [])
                    if any(
                        e["kind"] == "run-submitted" and e["run_id"] == fut.run_id
                        for _, _, e in events
                    ):
                        break
        for s in sockets:
            await s.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_with_pages_open_exits_promptly(pool: Pool, sig: signal.Signals) -> None:
    """Ctrl-C or SIGTERM (docker stop): every page is told the server shuts down (the
    dashboard's own close, 1001, not uvicorn's), then the process exits with 0."""
    board = Dashboard(pool.url).start()
    sockets = [await websockets.connect(board.ws) for _ in range(3)]
    for s in sockets:
        await s.send(json.dumps({"run": None, "from": None}))
        assert json.loads(await s.recv())["type"] == "live"  # subscribed
    seconds = await anyio.to_thread.run_sync(board.stop, sig)
    assert seconds < 3.0
    assert board.process is not None
    assert board.process.returncode == 0
    for s in sockets:
        with anyio.fail_after(5), pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await s.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "server shutting down")


async def test_uvicorns_exit_call_closes_the_pages_then_the_server(redis_url: str) -> None:
    """uvicorn calls ``handle_exit`` on SIGINT/SIGTERM while it serves: that is the path
    the dashboard's shutdown takes (pages first, then the server)."""
    import socket

    import uvicorn

    from dagrt.dashboard.server import DashboardServer, create_app

    app = create_app(redis_url)
    config = uvicorn.Config(app, log_level="warning", ws_ping_interval=None)
    server = DashboardServer(config, app.state.dashboard)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve, [sock])
                page = await websockets.connect(f"ws://127.0.0.1:{port}/api/live")
                await page.send(json.dumps({"run": None, "from": None}))
                assert json.loads(await page.recv())["type"] == "live"
                server.handle_exit(signal.SIGTERM, None)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await page.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert server.should_exit
    assert not server.force_exit


def test_dashboard_needs_no_node_to_serve_its_page(dashboard: Dashboard) -> None:
    from pathlib import Path

    static = Path(dagrt.__file__).parent / "dashboard" / "static"
    if not (static / "index.html").exists():
        pytest.skip("the dashboard's assets are not built yet")
    with urllib.request.urlopen(dashboard.http + "/", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/html")
        page = reply.read().decode()
    import re

    for asset in re.findall(r'(?:src|href)="(/assets/[^"]+)"', page):
        with urllib.request.urlopen(dashboard.http + asset, timeout=10) as reply:
            assert reply.status == 200


async def test_a_client_can_serve_the_dashboard(
    pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    async with dagrt.Client(pool.url, dashboard=port) as client:
        assert client.dashboard_url == f"http://127.0.0.1:{port}/"
        assert f"dagrt dashboard: http://127.0.0.1:{port}/" in capsys.readouterr().out
        await client.compute(add(1, 2))
        with urllib.request.urlopen(client.dashboard_url + "api/runs", timeout=10) as reply:
            assert reply.status == 200
    with pytest.raises(urllib.error.URLError):  # stopped with the client
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=2)
    with pytest.raises(ValueError, match="metrics='redis://"):
        dagrt.Client(processes=False, dashboard=True)


async def test_a_client_whose_dashboard_port_is_taken_says_so(pool: Pool) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        client = dagrt.Client(pool.url, dashboard=port)
        with pytest.raises(RuntimeError, match=f"did not start on port {port}"):
            await client.__aenter__()
    with pytest.raises(dagrt.ClientClosedError):  # closed on the way out, nothing left running
        await client.__aenter__()


async def test_a_page_too_slow_for_its_queue_is_told_to_resume(
    redis_storage: RedisStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a page's queue is full it is unsubscribed and its socket is ended (the page
    reconnects and resumes from its last id); the end mark must get through even
    though the queue is full."""
    from dagrt.dashboard import server

    monkeypatch.setattr(server, "QUEUE_BATCHES", 3)
    app = server.DashboardApp(redis_storage)
    sub = server.Subscriber(None)
    app.subscribers.add(sub)
    entries = [(b"1-0", {b"d": b"\x90"})]  # an entry with no events
    for _ in range(4):
        await app._fan_out(entries)
    assert sub not in app.subscribers
    assert sub.queue.qsize() == 1
    assert sub.queue.get_nowait() is None


# --------------------------------------------------------------------------- who may look


async def test_a_page_of_another_site_cannot_open_the_live_socket(pool: Pool) -> None:
    """Cross-site WebSocket hijacking: a page of another origin is refused before the
    socket opens; the dashboard's own pages, listed origins and clients that are no
    browser page (no Origin) are let in."""
    board = Dashboard(pool.url, args=("--allow-origin", "https://ops.example:8443")).start()
    own = f"http://127.0.0.1:{board.port}"
    for origin in ("http://evil.example", "http://127.0.0.1:1", "null"):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(board.ws, origin=origin):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403, origin
    for origin in (own, "https://ops.example:8443", None):
        async with websockets.connect(board.ws, origin=origin) as socket:  # type: ignore[arg-type]
            await socket.send(json.dumps({"run": None}))
    board.stop()


async def test_with_a_password_every_request_needs_it(pool: Pool) -> None:
    board = Dashboard(pool.url, env=worker_env(DAGRT_DASHBOARD_PASSWORD="look-here-1")).start()
    with pytest.raises(urllib.error.HTTPError) as refused:
        await anyio.to_thread.run_sync(board.get, "/api/runs")
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"].startswith("Basic")
    refused.value.close()
    for password, ok in (("wrong", False), ("look-here-1", True)):
        token = base64.b64encode(f"anyone:{password}".encode()).decode()
        request = urllib.request.Request(
            board.http + "/api/runs", headers={"Authorization": f"Basic {token}"}
        )
        if ok:
            with urllib.request.urlopen(request, timeout=10) as reply:
                assert reply.status == 200
            async with websockets.connect(
                board.ws, additional_headers={"Authorization": f"Basic {token}"}
            ) as socket:
                await socket.send(json.dumps({"run": None}))
        else:
            with pytest.raises(urllib.error.HTTPError) as wrong:
                urllib.request.urlopen(request, timeout=10)
            assert wrong.value.code == 401
            wrong.value.close()
    with pytest.raises(InvalidStatus):
        async with websockets.connect(board.ws):
            pass
    board.stop()
