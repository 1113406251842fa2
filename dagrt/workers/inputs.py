"""A task's inputs: from this worker's memory, else from storage, else made again.

:meth:`Inputs.load` gives each task its parents' values: those held here
(:class:`~.cache.ValueCache`) at once, the rest with one ``MGET`` for a whole
batch of tasks. An output with several children is kept once downloaded (other
children may run here), and a download already under way for another task here
is waited for, not repeated. An output that is in neither place was kept in the
memory of a worker that died (keep mode ``L``): :meth:`Inputs.restore` recomputes
it, and the chain of such outputs above it, top down, into this worker's memory.

An output whose key records a location (:mod:`dagrt.objects`) is mapped from this
host's object store, or fetched from the host that holds it (and kept in this
host's store); one that cannot be had (its host gone, its object lost or
corrupt) is computed again here (:meth:`Inputs.rerun`), the error logged.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import anyio

from ..exceptions import IntegrityError, SerializationError
from ..metrics.recorder import DIRECT, DOWNLOAD, LOCAL, MAP, RECOMPUTE, TransferBatch
from ..objects import DataPlane, Location, StoreError, fetch, is_location
from ..records import TaskRecord
from ..sealing import open_value
from ..serialize import loads
from ..storage import Storage
from ..storage import commands as C
from .cache import ValueCache
from .executor import Executor
from .runs import FunctionCache, RunContext
from .tasklog import TaskLog

__all__ = ["MISSING", "Inputs", "Loaded", "ReadRate"]

log = logging.getLogger("dagrt.worker")

BIG_FRAME = 1 << 20  # frames larger than this are deserialized in a thread
GIVEN_BYTES = 64 << 20  # inputs come inline in entries and not used yet, kept at most
MISSING: Any = object()  # an output that is gone (its run ended)

Moves = TransferBatch | Callable[[], TransferBatch] | None


class Loaded:
    """A task's inputs, with what loading them took; ``error`` if one of them cannot be
    had (its seal does not hold, or it does not unpickle): the task fails with it."""

    __slots__ = ("error", "nbytes", "seconds", "values")

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self.nbytes = 0
        self.seconds = 0.0
        self.error: BaseException | None = None


class CannotRecompute(Exception):
    """An output made again (:meth:`Inputs.rerun`) could not be: its call failed, or an
    input of it cannot be had. ``error`` is what the task that needed it fails with."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Broken:
    """An input read that cannot be used: the error its readers fail with."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ReadRate:
    """How fast this worker reads values it did not make (bytes per second): an average
    of its reads of ``MIN_BYTES`` or more that weighs the recent ones most (a map of
    this host's store, a transfer from another host, a download from the server).
    Fan-out clustering waits for a thread no longer than such a read would take."""

    MIN_BYTES = 1 << 20
    WEIGHT = 0.3  # of the newest read

    def __init__(self, initial: float = 1e9) -> None:
        self.value = initial
        self.reads = 0

    def add(self, nbytes: int, seconds: float) -> None:
        if nbytes < self.MIN_BYTES or seconds <= 0:
            return
        rate = nbytes / seconds
        self.value = rate if not self.reads else self.value + self.WEIGHT * (rate - self.value)
        self.reads += 1

    def seconds(self, nbytes: int) -> float:
        """How long reading ``nbytes`` takes, by this measure."""
        return nbytes / self.value


class Inputs:
    """Loads tasks' inputs for one worker (see the module's text)."""

    def __init__(
        self,
        storage: Storage,
        executor: Executor,
        functions: FunctionCache,
        values: ValueCache,
        log: TaskLog,
        counts: dict[str, int],
        plane: DataPlane | None = None,
    ) -> None:
        self.storage = storage
        self.plane = plane
        self.executor = executor
        self.functions = functions
        self.values = values
        self.log = log
        self.counts = counts
        # (run, task) -> set once the download of that output by another task here ended
        self._fetching: dict[tuple[str, int], anyio.Event] = {}
        self.rate = ReadRate()
        # (run, task) -> its output key's value, come inline in a child's entry (taken
        # instead of reading the key); the oldest go beyond GIVEN_BYTES
        self._given: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._given_bytes = 0

    def give(self, ctx: RunContext, rec: TaskRecord, fields: dict[bytes, bytes]) -> None:
        """Keep the input that came inline in ``rec``'s entry (fields ``i``: the parent,
        ``v``: its output key's value) for the read of that parent's output."""
        try:
            parent = int(fields[b"i"])
        except (KeyError, ValueError):
            return
        frame = fields.get(b"v")
        if parent not in rec.parents or not isinstance(frame, bytes):
            return  # (not an entry dagrt wrote: the input is read as usual)
        key = (ctx.run_id, parent)
        old = self._given.pop(key, None)
        self._given_bytes += len(frame) - (len(old) if old is not None else 0)
        self._given[key] = frame
        while self._given_bytes > GIVEN_BYTES and self._given:
            self._given_bytes -= len(self._given.popitem(last=False)[1])

    def _take_given(self, run_id: str, p: int) -> bytes | None:
        frame = self._given.pop((run_id, p), None)
        if frame is not None:
            self._given_bytes -= len(frame)
        return frame

    def drop_run(self, run_id: str) -> None:
        """Forget what came inline for a run that ended."""
        for key in [k for k in self._given if k[0] == run_id]:
            self._given_bytes -= len(self._given.pop(key))

    async def load(
        self, ctx: RunContext, recs: list[TaskRecord], moves: Moves
    ) -> list[Loaded | None]:
        """Parent values of each task: from memory, else one MGET for all of them.

        ``None`` for a task whose parent's output is gone (the run ended). Notes a
        transfer per input in ``moves`` (or the batch ``moves()`` gives, asked again
        after the download): ``local`` when it was in memory here.
        """
        run_id = ctx.run_id
        values = self.values
        out: list[Loaded | None] = []
        wanted: dict[int, None] = {}
        move = _rows_of(moves)  # the rows TransferBatch.add appends, extended inline
        for rec in recs:
            loaded = Loaded([])
            for p in rec.parents:
                found, value, size = values.get(run_id, p)
                if found:
                    values.used(run_id, p, len(ctx.record(p).children))
                    loaded.values.append(value)
                    loaded.nbytes += size
                    if move is not None:
                        move((size, 0.0, LOCAL, p, rec.index, True))
                else:
                    loaded.values.append(MISSING)
                    wanted[p] = None
            out.append(loaded)
        if not wanted:
            return out
        fetched = await self.fetch(ctx, list(wanted))
        move = _rows_of(moves)
        for j, rec in enumerate(recs):
            partial = out[j]
            assert partial is not None
            for k, p in enumerate(rec.parents):
                if partial.values[k] is not MISSING:
                    continue
                value, size, share, how = fetched[p]
                if value is MISSING:  # a parent's output is gone: the run ended
                    out[j] = None
                    break
                if isinstance(value, _Broken):
                    partial.error = value.error
                    break
                values.used(run_id, p, len(ctx.record(p).children))
                partial.values[k] = value
                partial.nbytes += size
                partial.seconds += share
                if move is not None:
                    move((size, share, how, p, rec.index, how == LOCAL))
        return out

    async def fetch(
        self, ctx: RunContext, keys: list[int]
    ) -> dict[int, tuple[Any, int, float, int]]:
        """Outputs of ``keys`` from storage (one MGET): ``{task: (value, bytes, seconds,
        how)}``, ``MISSING`` for an output that is gone; ``how`` the transfer's
        direction code: ``DOWNLOAD`` (from Redis), ``MAP`` (this host's store),
        ``DIRECT`` (from another host), ``RECOMPUTE``, or ``LOCAL`` (this worker's
        memory after all: another task here had just read it).

        An output with several children is kept in memory once read (other
        children may run here; the cache's budget bounds it), and a read of it
        already under way for another task here is waited for, not repeated: a
        72 MB matrix read by 4 tasks of one worker crossed the network 4 times.
        """
        run_id = ctx.run_id
        mine: list[int] = []
        theirs: list[tuple[int, anyio.Event]] = []
        shared: set[int] = set()
        for p in keys:
            if len(ctx.record(p).children) > 1:
                shared.add(p)
                other = self._fetching.get((run_id, p))
                if other is not None:
                    theirs.append((p, other))
                    continue
                self._fetching[(run_id, p)] = anyio.Event()
            mine.append(p)
        fetched: dict[int, tuple[Any, int, float, int]] = {}
        try:
            t0 = time.perf_counter()
            # what came inline in entries, then one MGET for the rest
            frames: list[bytes | None] = [None] * len(mine)
            if self._given:
                frames = [self._take_given(run_id, p) for p in mine]
            read = [p for p, f in zip(mine, frames, strict=True) if f is None]
            if len(read) < len(mine):
                self.counts["inline"] = self.counts.get("inline", 0) + len(mine) - len(read)
            if read:
                got = iter(await self.storage.amget([ctx.keys.output(p) for p in read]))
                frames = [f if f is not None else next(got) for f in frames]
            seconds = time.perf_counter() - t0
            total = sum(len(f) for f in frames if f is not None) or 1
            located: list[tuple[int, Location]] = []
            for p, frame in zip(mine, frames, strict=True):
                if frame is None:
                    # Kept in memory by a worker that died? Then compute it again here.
                    try:
                        restored = await self.restore(ctx, p)
                    except CannotRecompute as exc:
                        self._broken(ctx, p, exc.error, fetched)
                        continue
                    found, value, size = (
                        self.values.get(run_id, p) if restored else (False, None, 0)
                    )
                    fetched[p] = (value, size, 0.0, LOCAL) if found else (MISSING, 0, 0.0, LOCAL)
                    continue
                what = f"output of task {p} of run {run_id} ({ctx.keys.output(p)!r})"
                try:
                    if len(frame) > BIG_FRAME:  # (not a location: those are small)
                        value = await anyio.to_thread.run_sync(
                            _open, ctx, p, frame, what, limiter=self.executor.limiter
                        )
                    else:
                        payload = ctx.unseal(p, frame, what)
                        if is_location(payload):
                            located.append((p, Location.decode(payload)))
                            continue
                        value = loads(payload, what=what)
                except (IntegrityError, SerializationError) as exc:
                    self._broken(ctx, p, exc, fetched)
                    continue
                fetched[p] = (value, len(frame), seconds * len(frame) / total, DOWNLOAD)
                self.rate.add(len(frame), fetched[p][2])
                if p in shared:
                    self.values.put(run_id, p, value, len(frame))
            if located:
                async with anyio.create_task_group() as tg:
                    for p, where in located:
                        tg.start_soon(self._located, ctx, p, where, p in shared, fetched)
        finally:
            for p in mine:
                if p in shared:
                    self._fetching.pop((run_id, p)).set()
        for p, done in theirs:
            await done.wait()
            found, value, size = self.values.get(run_id, p)
            if found:
                fetched[p] = (value, size, 0.0, LOCAL)
            else:  # that read failed, or the cache had no room: read it again
                fetched.update(await self.fetch(ctx, [p]))
        return fetched

    async def _located(
        self,
        ctx: RunContext,
        p: int,
        where: Location,
        shared: bool,
        fetched: dict[int, tuple[Any, int, float, int]],
    ) -> None:
        """An output held by a host's store: mapped or fetched, else computed again."""
        run_id = ctx.run_id
        what = f"output of task {p}"
        plane = self.plane
        t0 = time.perf_counter()

        def read() -> tuple[Any, str]:
            if plane is not None:
                view, how = plane.get_sync(run_id, p, where)
            else:  # no store here: straight into memory (checked: it left its host)
                view = fetch(where.address, run_id, p, where.size, None, keyring=ctx.secret)
                how = "direct"
            return loads(view, what=what), how

        try:
            value, how = await anyio.to_thread.run_sync(read, limiter=self.executor.limiter)
        except (IntegrityError, SerializationError) as exc:
            self._broken(ctx, p, exc, fetched)
            return
        except StoreError as exc:
            if ctx.switches(ctx.record(p)).upload_all:  # the server has a copy
                frame = await self.storage.aget(ctx.keys.copy(p))
                if frame is not None:
                    log.warning("%s of run %s: %s; read from the server", what, run_id, exc)
                    copy = f"{what} ({ctx.keys.copy(p)!r})"
                    try:
                        value = await anyio.to_thread.run_sync(
                            _open, ctx, p, frame, copy, limiter=self.executor.limiter
                        )
                    except (IntegrityError, SerializationError) as error:
                        self._broken(ctx, p, error, fetched)
                        return
                    fetched[p] = (value, len(frame), time.perf_counter() - t0, DOWNLOAD)
                    if shared:
                        self.values.put(run_id, p, value, len(frame))
                    return
            log.warning("%s of run %s: %s; computing it again here", what, run_id, exc)
            self.counts["recomputed"] = self.counts.get("recomputed", 0) + 1
            try:
                rerun = await self.rerun(ctx, p)
            except CannotRecompute as error:
                self._broken(ctx, p, error.error, fetched)
                return
            if rerun:
                found, value, size = self.values.get(run_id, p)
                if found:
                    fetched[p] = (value, size, time.perf_counter() - t0, RECOMPUTE)
                    return
            fetched[p] = (MISSING, 0, 0.0, RECOMPUTE)
            return
        fetched[p] = (value, where.size, time.perf_counter() - t0, MAP if how == "map" else DIRECT)
        self.rate.add(where.size, fetched[p][2])
        if shared:
            self.values.put(run_id, p, value, where.size)

    def _broken(
        self,
        ctx: RunContext,
        p: int,
        exc: BaseException,
        fetched: dict[int, tuple[Any, int, float, int]],
    ) -> None:
        """Output ``p`` was read and cannot be used: the tasks that need it fail with
        ``exc`` (never retried: the same bytes would be read again)."""
        if isinstance(exc, IntegrityError):
            log.error("run %s: %s", ctx.run_id, exc)
            self.counts["refused_values"] = self.counts.get("refused_values", 0) + 1
        fetched[p] = (_Broken(exc), 0, 0.0, DOWNLOAD)

    async def restore(self, ctx: RunContext, index: int) -> bool:
        """Recompute task ``index`` whose output was kept in memory only, by a worker
        that died before its child finished (its done mark ends with ``*``).

        Such outputs form a chain upwards (each was the last parent of the next), so
        the chain is found first and recomputed top down into this worker's memory
        (pinned: nowhere else holds it); no recursion, however long. False if the
        output is gone for another reason (the run ended).
        """
        rk = ctx.keys
        chain = [index]
        while True:
            rec = ctx.record(chain[-1])
            here = [q for q in rec.parents if not self.values.get(ctx.run_id, q)[0]]
            replies = await self.storage.apipeline(
                [C.exists([rk.output(q)]) for q in here]
                + [C.hmget(rk.done, [str(q) for q in chain[-1:] + here])]
            )
            marks = replies[-1]
            if not (marks[0] or b"").endswith(b"*"):
                return False  # not kept in memory: truly gone
            local = [
                q
                for q, stored, mark in zip(here, replies[:-1], marks[1:], strict=True)
                if not stored and (mark or b"").endswith(b"*")
            ]
            if not local:
                break
            chain.append(local[0])
        for q in reversed(chain):
            if not await self.rerun(ctx, q):
                return False
        return True

    async def rerun(self, ctx: RunContext, q: int) -> bool:
        """Compute task ``q`` again here, its output pinned in this worker's memory
        (its children here read it from there); False if its run ended.
        :class:`CannotRecompute` if its call fails (the failure is logged) or an input
        of it cannot be had: the task that needs it fails with that error."""
        rk = ctx.keys
        log = self.log
        rec = ctx.record(q)
        fn = await self.functions.get(rec.fn, ctx.python)
        # Logged as the task's next attempt, here (its output is made again).
        [lost, _] = await self.storage.apipeline(
            [C.hincrby(rk.lost, str(q), 1), C.expire(rk.lost, ctx.ttl_ms / 1000)]
        )
        attempt = int(lost) + 1
        started = time.time()
        log.emit([log.started(ctx, rec, started, attempt)])
        moves = log.moves()
        [loaded] = await self.load(ctx, [rec], moves)
        if loaded is None:
            log.emit([log.ended(ctx, rec, attempt)])
            return False
        if loaded.error is not None:  # an input of it cannot be had: nor can it
            log.emit([log.ended(ctx, rec, attempt)])
            raise CannotRecompute(loaded.error)
        outcome = await self.executor.run(fn, rec, loaded.values, attempt=attempt)
        if outcome.ok and outcome.frame is None:  # it returned a graph: run apart only
            outcome.ok, outcome.traceback = False, ""
            outcome.error = RuntimeError(
                f"task {rec.key} returned a graph: its output cannot be made again here"
            )
        if not outcome.ok:
            assert outcome.error is not None
            log.emit(
                [
                    log.failed(
                        ctx, rec, outcome.error, outcome.traceback, outcome.attempt, final=True
                    )
                ]
            )
            # (the task that needs it fails with its error: the run ends, not stalls)
            raise CannotRecompute(outcome.error)
        self.values.put(ctx.run_id, q, outcome.value, len(outcome.frame or b""), pinned=True)
        self.counts["restored"] = self.counts.get("restored", 0) + 1
        log.finished(ctx, rec, outcome, started, loaded, moves, 0.0, "recomputed")
        return True


def _open(ctx: RunContext, p: int, frame: bytes, what: str) -> Any:
    """The value of output ``p`` read as ``frame``: its seal checked, then unpickled."""
    return open_value(ctx.secret, ctx.places(p), frame, what=what)


def _rows_of(moves: Moves) -> Any:
    """The ``extend`` of a transfer batch's rows (``None`` without metrics)."""
    if moves is None:
        return None
    return (moves() if callable(moves) else moves).rows.extend
