"""The dashboard's server: REST for the runs index, graphs and pages of events; a
WebSocket for live batches. It reads only the event log, never talks to workers.

One reader task per process blocks on ``dagrt:events`` (``XREAD BLOCK`` on a
connection of its own) and fans each read out, as one message, to the pages
subscribed to that run (bounded queues: a page that falls behind is
disconnected and resumes from its last id). A page that (re)connects sends the
last entry id it applied; it gets the backlog after it first, then the live
batches, each event exactly once (entries are ordered, so anything at or below
the last id sent is skipped).

Events travel as JSON objects (``kind``, ``ts``, ``run_id``, ``worker_id`` and
the kind's fields), each with its position ``[entry id, index in the entry]``;
a batch of task-finished or transfer events stays one object of columns
(``n`` long) standing for the positions from its index on (see
:func:`dagrt.metrics.wire.to_columns`): building, sending and parsing one dict
per event cost the server 0.28 s and the page as much again for a 16k-task run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import anyio.abc
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import keys as K
from ..exceptions import RunNotFoundError, StorageError
from ..metrics.read import alist_runs, aread_graph, entries_page_flow
from ..metrics.run_graph import RunGraph
from ..metrics.wire import to_columns
from ..serialize import unpack
from ..storage import RedisStorage, Storage
from .access import Guard
from .trace import chrome_trace

__all__ = ["DashboardApp", "DashboardServer", "create_app", "serve"]

log = logging.getLogger("dagrt.dashboard")

STATIC = Path(__file__).parent / "static"
READ_COUNT = 2000  # entries per XREAD
PAGE_COUNT = 2000  # entries per REST page
QUEUE_BATCHES = 512  # batches a slow page may have waiting before it is dropped
PING_SECONDS = 15.0


class Subscriber:
    """One page's live subscription: which run (or all runs' summaries), and its queue."""

    def __init__(self, run: str | None) -> None:
        self.run = run
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_BATCHES)
        self.delivered: tuple[int, int] = (0, 0)  # the last entry sent to the page

    def end(self) -> None:
        """Close this page's socket after what it was sent: batches still queued are
        dropped (a page that was too slow gets them again when it resumes from its
        last id) so that the end mark always fits in the queue."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class DashboardApp:
    """State of one dashboard process: the storage, graphs, subscribers, the reader."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.subscribers: set[Subscriber] = set()
        self.graphs: OrderedDict[str, RunGraph | None] = OrderedDict()
        self.last_id = "0-0"  # the reader's position in the log
        self.stopping = asyncio.Event()
        self._reader: anyio.CancelScope | None = None  # the log reader's, once started
        self.reader_storage: RedisStorage | None = None

    # -- graphs ------------------------------------------------------------------------

    async def graph(self, run_id: str) -> RunGraph | None:
        if run_id in self.graphs and self.graphs[run_id] is not None:
            self.graphs.move_to_end(run_id)
            return self.graphs[run_id]
        try:
            graph: RunGraph | None = await aread_graph(self.storage, run_id)
        except RunNotFoundError:
            graph = None  # not written yet: asked again next time
        self.graphs[run_id] = graph
        while len(self.graphs) > 64:
            self.graphs.popitem(last=False)
        return graph

    def entries_to_events(
        self, entries: list[tuple[bytes, dict[bytes, bytes]]], run: str | None
    ) -> list[list[Any]]:
        """``[entry id, k, event]`` for the entries of ``run`` (``None``: run-level
        and worker events of every run); a batch is one event of columns standing
        for the positions ``k`` to ``k + n - 1`` of its entry (see :func:`to_columns`)."""
        out: list[list[Any]] = []
        for entry_id, fields in entries:
            owner = fields.get(b"r", b"").decode()
            if run is not None and owner != run:
                continue
            items = unpack(fields[b"d"])
            if run is None and owner:
                items = [i for i in items if i[0] in (1, 2)]  # run submitted / finished
                if not items:
                    continue
            eid = entry_id.decode()
            k = 0
            for item in items:
                event, n = to_columns(item)
                out.append([eid, k, event])
                k += n
        return out

    # -- the reader ----------------------------------------------------------------------

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Read the log from its current end, in a task of ``task_group``."""
        reply = await self.storage.axrevrange(K.events(), count=1)
        self.last_id = reply[0][0].decode() if reply else "0-0"
        self._reader = anyio.CancelScope()
        task_group.start_soon(self._run_reader, self._reader, name="dagrt dashboard reader")

    async def _run_reader(self, scope: anyio.CancelScope) -> None:
        with scope:
            await self._read()

    async def stop(self) -> None:
        self.stopping.set()
        for sub in list(self.subscribers):
            sub.end()
        if self._reader is not None:
            self._reader.cancel()

    async def _read(self) -> None:
        while not self.stopping.is_set():
            try:
                reply = await self.storage.axread(
                    {K.events(): self.last_id}, count=READ_COUNT, block=1.0
                )
            except StorageError as exc:
                log.warning("dashboard: reading the event log failed: %s", exc)
                with anyio.move_on_after(1.0):
                    await self.stopping.wait()
                continue
            if not reply:
                continue
            entries = reply[0][1]
            self.last_id = entries[-1][0].decode()
            await self._fan_out(entries)

    async def _fan_out(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        by_run: dict[str | None, list[list[Any]]] = {}
        last = entries[-1][0].decode()
        for sub in list(self.subscribers):
            if sub.run not in by_run:
                by_run[sub.run] = self.entries_to_events(entries, sub.run)
            message = {"type": "batch", "last": last, "events": by_run[sub.run]}
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:  # too slow: drop it; the page resumes from its id
                # (the end mark used to be put into the full queue, failed quietly, and the
                # page stayed connected, no longer subscribed, missing every later event)
                self.subscribers.discard(sub)
                sub.end()

    async def backlog(self, run: str | None, after: str) -> AsyncIterator[dict[str, Any]]:
        """Batches of the log after ``after`` up to the reader's position: for one run,
        its own entries (the runs index lists them), not the whole log's."""
        start = after
        end = self.last_id
        if K.entry_order(start) >= K.entry_order(end):
            return
        if run is not None:
            async for batch in self._run_backlog(run, start, end):
                yield batch
            return
        while True:
            page = await self.storage.axrange(K.events(), "(" + start, end, PAGE_COUNT)
            if not page:
                return
            start = page[-1][0].decode()
            events = self.entries_to_events(page, run)
            yield {"type": "batch", "last": start, "events": events}
            if len(page) < PAGE_COUNT or start == end:
                return

    async def _run_backlog(self, run: str, start: str, end: str) -> AsyncIterator[dict[str, Any]]:
        stop = K.entry_order(end)  # later entries reach the page live
        while True:
            try:
                page, done = await self.storage._adrive(entries_page_flow(run, start, PAGE_COUNT))
            except RunNotFoundError:  # nothing logged yet: it all comes live
                return
            page = [entry for entry in page if K.entry_order(entry[0]) <= stop]
            if not page:
                return
            start = page[-1][0].decode()
            yield {"type": "batch", "last": start, "events": self.entries_to_events(page, run)}
            if done or K.entry_order(start) >= stop:
                return


# --------------------------------------------------------------------------- handlers


# orjson (a dependency of dagrt) is several times faster than json on large pages of events


def dumps(data: Any) -> str:
    return orjson.dumps(data).decode()


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def index(request: Request) -> Response:
    page = STATIC / "index.html"
    if not page.exists():
        return Response("the dashboard's assets are not built", status_code=500)
    return FileResponse(page, media_type="text/html")


async def runs(request: Request) -> Response:
    app: DashboardApp = request.app.state.dashboard
    try:
        limit = int(request.query_params.get("limit", 100))
    except ValueError:
        return _json({"error": "limit must be a whole number"}, 400)
    summaries = await alist_runs(app.storage, max(1, min(limit, 1000)))
    return _json([{**s.__dict__, "complete": s.complete} for s in summaries])


def _bad_run_id(request: Request) -> Response | None:
    """A 400 reply if the URL's run id is not one (:func:`dagrt.keys.valid_run_id`)."""
    run_id = request.path_params["run_id"]
    if K.valid_run_id(run_id):
        return None
    return _json({"error": f"invalid run id {run_id[:200]!r} ({K.RUN_ID_GRAMMAR})"}, 400)


async def run_detail(request: Request) -> Response:
    app: DashboardApp = request.app.state.dashboard
    run_id = request.path_params["run_id"]
    if (bad := _bad_run_id(request)) is not None:
        return bad
    record = await app.storage.ahgetall(K.run_record(run_id))
    if not record:
        return _json({"error": f"no run {run_id!r} in the event log"}, 404)
    from ..metrics.read import RunSummary

    summary = RunSummary.from_hash(run_id, record).__dict__
    summary["first"] = record.get(b"first", b"").decode()
    summary["last"] = record.get(b"last", b"").decode()
    graph = await app.graph(run_id)
    body: dict[str, Any] = {"summary": summary, "graph": None}
    if graph is not None:
        body["graph"] = {
            "keys": graph.keys,
            "names": graph.names,
            "parents": graph.parents,
            "outputs": graph.outputs,
        }
    return _json(body)


async def run_events(request: Request) -> Response:
    """A page of the run's events after ``after`` (an entry id), ``count`` entries at most."""
    app: DashboardApp = request.app.state.dashboard
    run_id = request.path_params["run_id"]
    if (bad := _bad_run_id(request)) is not None:
        return bad
    after = request.query_params.get("after") or None
    try:
        count = max(1, min(int(request.query_params.get("count", PAGE_COUNT)), 20_000))
    except ValueError:
        return _json({"error": "count must be a whole number"}, 400)
    try:  # the run's own entries, whatever else the log holds
        page, done = await app.storage._adrive(entries_page_flow(run_id, after, count))
    except RunNotFoundError:
        return _json({"error": f"no events of run {run_id!r}"}, 404)
    events = app.entries_to_events(page, run_id)
    end = page[-1][0].decode() if page else (after or "")
    return _json({"events": events, "last": end, "done": done})


async def trace(request: Request) -> Response:
    app: DashboardApp = request.app.state.dashboard
    run_id = request.path_params["run_id"]
    if (bad := _bad_run_id(request)) is not None:
        return bad
    try:
        from ..metrics.read import aread_run

        events = await aread_run(app.storage, run_id)
    except RunNotFoundError as exc:
        return _json({"error": str(exc)}, 404)
    return _json(chrome_trace(events))


async def workers(request: Request) -> Response:
    app: DashboardApp = request.app.state.dashboard
    raw = await app.storage.ahgetall(K.workers())
    now = time.time()
    out = []
    for worker_id, packed in raw.items():
        info = unpack(packed)
        info["age"] = now - float(info.get("ts", 0))
        info["alive"] = bool(await app.storage.aexists(K.worker_alive(worker_id.decode())))
        out.append(info)
    return _json(sorted(out, key=lambda w: w["id"]))


async def live(websocket: WebSocket) -> None:
    """``{"run": id | null, "from": last entry id | null}`` in; batches out."""
    app: DashboardApp = websocket.app.state.dashboard
    await websocket.accept()
    try:
        hello = json.loads(await websocket.receive_text())
    except (WebSocketDisconnect, ValueError):
        return
    run = hello.get("run")
    if run is not None and not K.valid_run_id(run):
        await websocket.close(code=1008, reason="invalid run id")
        return
    after = hello.get("from") or ("0-0" if run else app.last_id)
    sub = Subscriber(run)
    sub.delivered = K.entry_order(after)
    app.subscribers.add(sub)  # first: live batches queue up while the backlog goes out
    try:
        async for message in app.backlog(run, after):
            await websocket.send_text(dumps(message))
            sub.delivered = max(sub.delivered, K.entry_order(message["last"]))
        await websocket.send_text(dumps({"type": "live", "last": app.last_id}))
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump, websocket, sub, tg.cancel_scope)
            tg.start_soon(_listen, websocket, tg.cancel_scope)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        app.subscribers.discard(sub)
        if app.stopping.is_set():
            with contextlib.suppress(Exception):
                await websocket.close(code=1001, reason="server shutting down")


async def _pump(websocket: WebSocket, sub: Subscriber, scope: anyio.CancelScope) -> None:
    while True:
        with anyio.move_on_after(PING_SECONDS) as timer:
            message = await sub.queue.get()
        if timer.cancelled_caught:
            try:
                await websocket.send_text('{"type":"ping"}')
            except WebSocketDisconnect:
                scope.cancel()
                return
            continue
        if message is None:  # shutting down, or dropped for being slow
            scope.cancel()
            return
        if K.entry_order(message["last"]) <= sub.delivered:
            continue  # the backlog covered it
        events = [e for e in message["events"] if K.entry_order(e[0]) > sub.delivered]
        try:
            await websocket.send_text(
                dumps({"type": "batch", "last": message["last"], "events": events})
            )
        except WebSocketDisconnect:  # the page went away (it resumes if it comes back)
            scope.cancel()
            return
        sub.delivered = K.entry_order(message["last"])


async def _listen(websocket: WebSocket, scope: anyio.CancelScope) -> None:
    """Notice the page going away (its messages are ignored)."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()
    scope.cancel()


def create_app(storage: Storage | str) -> Starlette:
    """The dashboard as an ASGI app reading the event log behind ``storage``."""
    if isinstance(storage, str):
        storage = RedisStorage(storage)
    dashboard = DashboardApp(storage)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as task_group:  # owns the log reader
            await dashboard.start(task_group)
            try:
                yield
            finally:
                await dashboard.stop()
                await dashboard.storage.aclose()

    routes = [
        Route("/", index),
        Route("/api/runs", runs),
        Route("/api/runs/{run_id}", run_detail),
        Route("/api/runs/{run_id}/events", run_events),
        Route("/api/runs/{run_id}/trace.json", trace),
        Route("/api/workers", workers),
        WebSocketRoute("/api/live", live),
    ]
    if (STATIC / "assets").exists():
        routes.append(Mount("/assets", StaticFiles(directory=STATIC / "assets"), name="assets"))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    return app


class DashboardServer(uvicorn.Server):
    """uvicorn's server, shut down the dashboard's way.

    While it serves, uvicorn takes SIGINT and SIGTERM and calls :meth:`handle_exit`.
    Here that asks the dashboard to stop first (its pages get a close, 1001, and
    resume elsewhere or later), then uvicorn to stop serving; a second Ctrl-C forces
    the exit, as in uvicorn. ``ready`` is printed once the server accepts pages.
    """

    def __init__(self, config: uvicorn.Config, dashboard: DashboardApp, ready: str = "") -> None:
        super().__init__(config)
        self.dashboard = dashboard
        self.ready = ready
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit = asyncio.Event()
        self._exit_asked = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler (this runs between two bytecodes of the main thread)."""
        if self._exit_asked:
            if sig == signal.SIGINT:  # Ctrl-C again: do not wait for anything
                self.force_exit = True
                self.should_exit = True
            return
        self._exit_asked = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._exit.set)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as task_group:  # owns the stopper
            task_group.start_soon(self._stop_when_asked, name="dagrt dashboard stop")
            await super().serve(sockets)
            task_group.cancel_scope.cancel()

    async def _stop_when_asked(self) -> None:
        await self._exit.wait()
        await self.dashboard.stop()  # the pages' sockets close now (1001)
        self.should_exit = True  # then uvicorn stops serving

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.ready and not self.should_exit:
            print(self.ready, flush=True)


def serve(
    url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    password: str | None = None,
    allowed_origins: Sequence[str] = (),
) -> None:
    """Run the dashboard until SIGINT/SIGTERM (pages get a close, then the process ends);
    WebSockets of other origins than its own (and ``allowed_origins``) are refused, and
    with a ``password`` every request needs it (:class:`~dagrt.dashboard.access.Guard`)."""
    app = create_app(url)
    config = uvicorn.Config(
        Guard(app, password=password, allowed_origins=allowed_origins),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,
        ws_ping_interval=None,
    )
    server = DashboardServer(
        config, app.state.dashboard, ready=f"dagrt dashboard: http://{host}:{port}/"
    )
    # Bound before the server says it serves: a page that connects at once waits in the backlog.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    asyncio.run(server.serve(sockets=[sock]))
