"""Consuming the tasks stream: the read window, admission, dead letters, dispatch.

The consumer reads entries ``{r: run, t: task}`` through the consumer group, as
many as it has free slots (``concurrency``), but while chains that run in threads
are in flight at most ``threads + 1`` of them, so heavy tasks spread over the
pool's workers instead of piling up on the one that read first. A read that does
not wait goes through the shared pipelined connection; only when the stream is
empty does it block (on a connection of its own).

Admission turns an entry into a run and a task: malformed entries and entries of
unknown runs are acknowledged and written to the dead-letter stream with the
reason; entries of a run that ended are acknowledged quietly; a record or
function table that fails its signature is dead-lettered and fails its run. An
admitted task goes to the fast lane (tiny, read together: one batch) or to a
chain of its own; an entry ``{r, t, x}`` (the graph its task returned ended) resumes
that task (:meth:`~.chain.Chains.run`). What the worker waits for under delayed I/O is
in :mod:`.holds`; the children a completion here claimed (fan-out clustering) are
adopted here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import anyio

from .. import keys as K
from .. import lanes
from ..exceptions import SerializationError, StorageConnectionError, StorageError
from ..records import MalformedRecord
from ..resources import Capacity, LaneOrder, can_hold, needs_of
from ..scheduler import Taken, fail_cmd, requeue_cmd, send, take_cmd
from ..storage import Storage
from ..storage import commands as C
from .chain import Chains
from .completer import Completer
from .fast_lane import FastLane, Handoff
from .holds import Holds
from .runs import RunContext, RunTable
from .settings import WorkerSettings
from .tasklog import TaskLog

__all__ = ["Consumer"]

log = logging.getLogger("dagrt.worker")

IDLE_FLUSH = 0.5  # seconds a worker with buffered events waits idle before writing them

Entry = tuple[bytes, dict[bytes, bytes]]


class Consumer:
    """Reads and admits entries for one worker, and runs them (see the module's text)."""

    def __init__(
        self,
        storage: Storage,
        settings: WorkerSettings,
        worker_id: str,
        runs: RunTable,
        fast: FastLane,
        chains: Chains,
        completer: Completer,
        log: TaskLog,
        counts: dict[str, int],
        running: dict[bytes, str],
        forget: Callable[[str], None],
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.worker = worker_id
        self.runs = runs
        self.fast = fast
        self.chains = chains
        self.completer = completer
        self.log = log
        self.counts = counts
        self.running = running  # entry id -> key of the task it runs now
        self.forget = forget  # drops what the worker holds of a run that ended
        self.in_flight: dict[bytes, float] = {}  # entry id -> time taken
        self.reads = 0  # entries read (see _read)
        self.slots = anyio.Semaphore(settings.concurrency)
        self.stopping = anyio.Event()
        self._threads = settings.thread_count
        self._slow = 0  # chains in flight outside the fast lane
        self._queued = 0  # claimed children waiting here for a thread (fan-out clustering)
        self._fast_seen = False  # the last entry admitted was a tiny task: read wide
        self._stream_empty = False  # the last read found no entry at all
        self._slow_freed = anyio.Event()
        self._owned: dict[bytes, bool] = {}  # entries whose chain runs in a task of its own
        self._idle: anyio.Event | None = None
        self._read_scope: anyio.CancelScope | None = None
        self._grace: anyio.CancelScope | None = None  # the wait for tasks in flight at stop
        self._hurried = False  # a second signal: no waiting for tasks in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._task_group: asyncio.TaskGroup | None = None
        self._wakeups: set[anyio.Event] = set()  # clusters waiting for a chain to end
        self.inbox = K.inbox(worker_id)  # notes: a task this worker waited for is ready
        # resources and priorities (dagrt.resources): what this worker has and holds,
        # and the lanes it reads, in order
        self.capacity = Capacity(settings.resources or {})
        self.capacity.on_free.append(self._resources_freed)
        chains.capacity = self.capacity
        self.lanes = LaneOrder()
        self._blocked = False  # a blocking read is under way
        self._freed = False  # resources were given back since the last plan
        self._lanes_new = False  # ... or the worker reads more lanes since
        self._lane_full = False  # ... and left out a lane whose resources were all held
        # delayed I/O: the children this worker waits for, and the notes that they came
        self.holds = Holds(storage, worker_id, completer, log, counts, self._spawn_if_serving)
        completer.hold = self.holds.hold
        completer.adopt = self.adopt

    # -- serving ------------------------------------------------------------------------

    async def serve(self) -> None:
        """Consume until stopped (in burst mode: until the stream is drained and nothing
        is in flight), then give tasks in flight ``graceful_timeout`` and cancel them
        (their entries stay pending, for another worker to take over)."""
        # One task per stream entry, in asyncio's own task group: it costs a tenth
        # of anyio's per spawn, which counts at 10k tasks/s.
        async with asyncio.TaskGroup() as tasks:
            self._task_group = tasks
            try:
                await self._consume()
                with anyio.move_on_after(self.settings.graceful_timeout) as grace:
                    self._grace = grace
                    if not self._hurried:
                        await self._drained()
                self._grace = None
                for task in list(self._tasks):
                    task.cancel()
            finally:
                self._task_group = None

    def stop(self) -> None:
        """No new entries; tasks in flight get ``graceful_timeout`` (loop thread only)."""
        self.stopping.set()
        if self._read_scope is not None:
            self._read_scope.cancel()  # a blocked read drops its connection

    def hurry(self) -> None:
        """Stop waiting for tasks in flight (a second signal)."""
        self._hurried = True
        if self._grace is not None:
            self._grace.cancel()

    async def _drained(self) -> None:
        if self.in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def _consume(self) -> None:
        s = self.settings
        # stop() cancels this scope: waiting for a slot, or a read the server does not
        # answer (entries read and not yet admitted stay pending, for reclaim). One
        # scope for the loop: entering one per read cost ~5 us a read.
        with anyio.CancelScope() as scope:
            self._read_scope = scope
            if self.completer.failpoints.armed("stop_reading"):
                await self.stopping.wait()  # (a crash test's stuck read loop)
            while not self.stopping.is_set():
                entries = await self._read(s)
                if entries:
                    for entry_id, _ in entries:
                        try:  # a free slot is taken without a turn of the loop
                            self.slots.acquire_nowait()
                        except anyio.WouldBlock:
                            await self.slots.acquire()
                        self.in_flight[entry_id] = time.monotonic()
                    self._spawn(self._process(entries))
                if s.burst and self._stream_empty and not self.in_flight:
                    return
        self._read_scope = None

    async def _read(self, s: WorkerSettings) -> list[Entry]:
        """The next entries to work on (after waiting for room for them), or none.

        Entries are screened as they are read (``take.lua``): one of a task completed
        before or of a run that ended is acknowledged there and never reaches the
        worker; one of a task whose parents are not all done is dead-lettered."""
        # Wait for a free slot without holding it while the read blocks (the
        # reclaimer takes free slots too).
        if not self.slots.value:
            await self.slots.acquire()
            self.slots.release()
        count = max(1, self.slots.value)
        if self._slow or not self._fast_seen:
            # Heavy work in flight, or tasks of unknown cost: take one more entry
            # than threads can run, so that other workers get their share.
            room = self._threads + 1 - self._slow - self._queued
            if room <= 0:
                self._slow_freed = anyio.Event()
                await self._slow_freed.wait()
                return []
            count = min(count, room)
        block = min(s.block, 0.2) if s.burst else s.block
        metrics = self.log.metrics
        try:
            watch = self.holds.waiting  # (no note can come for this worker without one)
            self._freed = self._lanes_new = False
            plan = self.lanes.plan(count, self.capacity)
            taken = await self._take(
                take_cmd(s.stream, s.group, self.worker, count, inbox=watch, lanes=plan)
            )
            full = any(lane and not n for lane, n in plan)
            if taken.empty and (self._lanes_new or (full and self._freed)):
                # (read again, with the lanes as they are now, before waiting)
                self._stream_empty = False
                return []
            if taken.empty:
                # Idle with events buffered (a run just ended, most likely): wait a
                # moment only, then write them, so the log is complete soon after.
                idle = (
                    metrics is not None
                    and s.flush.when_idle
                    and not self.in_flight
                    and metrics.buffered > 0
                )
                # (the inbox too, always: a hold registered while this read waits
                # must not wait for its timeout; a read that blocks costs nothing)
                streams = {s.stream: ">", self.inbox: ">"}
                by_stream = {K.lane_stream(s.stream, lane): lane for lane, n in plan if lane and n}
                streams.update(dict.fromkeys(by_stream, ">"))
                self._lane_full = full
                self._blocked = True
                try:
                    reply = await self.storage.axreadgroup(
                        s.group,
                        self.worker,
                        streams,
                        count=count,
                        block=min(block, IDLE_FLUSH) if idle else block,
                    )
                finally:
                    self._blocked = False
                if idle and not reply and metrics is not None:
                    metrics.flush_soon()
                delivered = [e for name, es in reply if name == s.stream for e in es]
                notes = [e for name, es in reply if name == self.inbox for e in es]
                moved = self._may_take(plan, reply, by_stream, count - len(delivered))
                if delivered or notes or moved:  # screened as the script screens what it reads
                    taken = await self._take(
                        take_cmd(
                            s.stream,
                            s.group,
                            self.worker,
                            0,
                            delivered,
                            notes,
                            lanes=plan,
                            from_lanes=moved,
                        )
                    )
            for entry_id in taken.odd:  # fields dagrt does not write: admission dead-letters
                eid = entry_id.decode()
                whole = await self.storage.axrange(s.stream, eid, eid)
                taken.run += whole or [(entry_id, {})]
        except StorageConnectionError as exc:
            log.warning("worker %s: reading the stream failed: %s", self.worker, exc)
            with anyio.move_on_after(1.0):
                await self.stopping.wait()
            return []
        except StorageError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or group vanished (flushed, or a server without
            # persistence restarted): make them again and go on.
            log.warning("worker %s: %s; creating the group again", self.worker, exc)
            await self.make_groups()
            return []
        self._stream_empty = taken.empty
        # entries read, screened ones too (the heartbeat says: a watchdog sees reads stop)
        self.reads += len(taken.run) + taken.dropped + taken.claimed + len(taken.early)
        if taken.woken:
            self.holds.woken |= taken.woken
        if taken.dropped:
            self.counts["screened"] += taken.dropped
        for entry_id, fields in taken.early:
            await self._dead_letter(
                entry_id, fields, "the task's parents are not all done (dagrt wrote no such entry)"
            )
        return taken.run

    @staticmethod
    def _may_take(
        plan: list[tuple[str, int]],
        reply: list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]],
        lanes: dict[str, str],
        room: int,
    ) -> list[tuple[str, bytes, bool]]:
        """The entries a blocking read delivered from lanes: (lane, id, whether to take
        it). A read takes up to its count from every stream: in the plan's order, a lane
        gives no more than its share, and all of them no more than ``room``; the others
        go back to the end of their lane."""
        got: dict[str, list[bytes]] = {}
        for name, entries in reply:
            if name in lanes:
                got[lanes[name]] = [entry_id for entry_id, _ in entries]
        out = []
        for lane, n in plan:
            ids = got.get(lane, [])
            keep = max(0, min(n, room, len(ids)))
            room -= keep
            out += [(lane, entry_id, i < keep) for i, entry_id in enumerate(ids)]
        return out

    async def make_groups(self) -> None:
        """The consumer group on the tasks stream and on this worker's inbox (both
        made with their stream if need be; one that exists is left as it is); the
        lanes this worker reads."""
        s = self.settings
        await self.storage.axgroup_create(s.stream, s.group, "0")
        await self.storage.axgroup_create(self.inbox, s.group, "0")
        await self.refresh_lanes()

    async def refresh_lanes(self, collect: bool = False) -> None:
        """Read the registry of lanes in use again: this worker reads those whose
        resources it can hold (at start, at each heartbeat, and when a client says on
        the control stream that runs use new lanes: :meth:`lanes_rung`).
        ``collect``: first unregister those no running run uses (``lanes.collect``)."""
        s = self.settings
        known = await self.storage.ahgetall(K.lanes(s.stream))
        if collect and known and await lanes.collect(self.storage, s.stream):
            known = await self.storage.ahgetall(K.lanes(s.stream))
        mine = {}
        for raw in known:
            try:
                lane = raw.decode()
                needs, priority = needs_of(lane)
            except ValueError:
                continue  # (not a lane dagrt names)
            if can_hold(self.capacity.have, needs):
                mine[lane] = (needs, priority)
        if mine.keys() != self.lanes.lanes.keys():
            for lane in mine.keys() - self.lanes.lanes.keys():
                await self.storage.axgroup_create(K.lane_stream(s.stream, lane), s.group, "0")
            self.lanes.set(mine)

    async def lanes_rung(self, stream: str) -> None:
        """A client said on the control stream that runs use new lanes of ``stream``:
        read the registry again, and if this worker now reads a lane more while a
        blocking read waits without it, end that read (a note on the inbox)."""
        if stream != self.settings.stream:
            return
        before = set(self.lanes.lanes)
        await self.refresh_lanes()
        if set(self.lanes.lanes) - before:
            self._lanes_new = True  # (a read about to block reads again first)
            if self._blocked:
                await self._wake_read()

    def _resources_freed(self) -> None:
        """A task gave its resources back: a blocking read that left out a lane whose
        resources were all held must read it now (a note on the inbox ends the wait; a
        read about to block reads again first)."""
        self._freed = True
        if self._blocked and self._lane_full:
            self._lane_full = False
            self._spawn_if_serving(self._wake_read())

    async def _wake_read(self) -> None:
        """End this worker's blocking read: a note on its own inbox, which it reads."""
        try:
            await self.storage.apipeline([C.xadd(self.inbox, {"w": "1"}, maxlen=1000)])
        except StorageError as exc:  # (the read ends at its timeout instead)
            log.warning("worker %s: waking its read failed: %s", self.worker, exc)

    async def _take(self, cmd: C.Cmd) -> Taken:
        return (await send(self.storage, [cmd]))[0]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._task_group is not None
        task = self._task_group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_if_serving(self, coro: Coroutine[Any, Any, None]) -> bool:
        """Spawn ``coro`` if the worker serves (else close it: False)."""
        if self._task_group is None:
            coro.close()
            return False
        self._spawn(coro)
        return True

    def start_reclaimed(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        """Run an entry taken over from a worker that went silent (its slot is taken)."""
        self.in_flight[entry_id] = time.monotonic()
        self._spawn(self._process([(entry_id, fields)], reclaimed=True))

    def _finish(self, entry_id: bytes) -> None:
        """An entry's work is over (done, failed, or left for reclaim): free its slot."""
        self.running.pop(entry_id, None)
        if self.capacity.held:
            self.capacity.release(entry_id)
        if self.in_flight.pop(entry_id, None) is not None:
            self.slots.release()
            if not self.in_flight and self._idle is not None:
                self._idle.set()

    # -- dispatch -------------------------------------------------------------------------

    async def _process(self, entries: list[Entry], reclaimed: bool = False) -> None:
        """Admit entries read together; cheap tasks go through the fast lane as one
        batch, the others each get a chain of their own."""
        fast: dict[str, tuple[RunContext, list[tuple[list[bytes], int]]]] = {}
        woken: dict[int, str] = {}  # tasks this worker waited for (delayed I/O)
        surplus: list[tuple[bytes, str, int, str]] = []  # heavy tasks beyond what it should hold
        try:
            for entry_id, fields in entries:
                try:
                    admitted = await self._admit(entry_id, fields)
                except StorageError as exc:
                    log.warning(
                        "worker %s: entry %s left for reclaim: %s", self.worker, entry_id, exc
                    )
                    admitted = None
                if admitted is None:
                    self._finish(entry_id)
                    continue
                ctx, index = admitted
                self.running[entry_id] = ctx.record(index).key
                if b"x" in fields:  # the graph the task returned ran: it completes now
                    self._chain_apart(ctx, [entry_id], index, check_done=reclaimed, resume=True)
                    continue
                placed = "dispatched"
                if self.holds.woken and entry_id in self.holds.woken:
                    self.holds.woke(ctx, entry_id, index)
                    placed = woken[index] = "delayed"
                needs = ctx.record(index).resources
                if needs:  # held from now (a chain taken over waits for them)
                    if not self.capacity.try_acquire(entry_id, needs) and not reclaimed:
                        surplus.append((entry_id, ctx.run_id, index, _lane(fields)))
                        continue  # (read beyond what fits: back to its lane)
                    self._chain_apart(ctx, [entry_id], index, check_done=reclaimed, placed=placed)
                elif not reclaimed and self.fast.eligible(ctx, index):
                    fast.setdefault(ctx.run_id, (ctx, []))[1].append(([entry_id], index))
                    self._fast_seen = True
                elif not reclaimed and placed != "delayed" and self._slow >= self._threads + 1:
                    # A wide read (the last tasks were tiny) brought heavy ones: run no
                    # more of them than threads + 1 here; the others go back to the
                    # stream, for workers with room (or this one, later). (Not a task
                    # this worker waited for: its large input is here.)
                    surplus.append((entry_id, ctx.run_id, index, _lane(fields)))
                else:
                    self._fast_seen = False
                    self._chain_apart(ctx, [entry_id], index, check_done=reclaimed, placed=placed)
            if surplus:
                self._fast_seen = False
                await self._give_back(surplus)
            for ctx, work in fast.values():
                handoffs = await self._guarded(
                    self.fast.run(ctx, work, placed=woken), [w[0][0] for w in work]
                )
                if ctx.stopped:
                    self.forget(ctx.run_id)
                self._hand_off(ctx, handoffs)
        except Exception:  # never let one batch take the worker down; entries await reclaim
            log.exception("worker %s: internal error on a batch", self.worker)
        finally:
            self._finish_unowned(entry_id for entry_id, _ in entries)

    def _finish_unowned(self, entry_ids: Iterable[bytes]) -> None:
        """Free the slots of entries whose work is over here: those still in flight
        that no chain of their own took over (a chain frees its entry when it ends)."""
        for entry_id in entry_ids:
            if entry_id in self.in_flight and not self._owned.get(entry_id):
                self._finish(entry_id)

    def _hand_off(self, ctx: RunContext, handoffs: list[Handoff] | None) -> None:
        """What the fast lane could not finish: each goes on as a chain."""
        for acks, index, attempt, failed, placed, graph in handoffs or []:
            self._chain_apart(
                ctx, acks, index, attempt=attempt, failed=failed, placed=placed, graph=graph
            )

    async def _give_back(
        self, surplus: list[tuple[bytes, str, int]] | list[tuple[bytes, str, int, str]]
    ) -> None:
        """Put entries at the end of the stream for other workers (atomically: see
        ``requeue.lua``); on a storage error they stay pending here, for reclaim."""
        s = self.settings
        try:
            await send(self.storage, [requeue_cmd(surplus, stream=s.stream, group=s.group)])
        except StorageError as exc:
            log.warning("worker %s: entries left for reclaim: %s", self.worker, exc)
            return
        for entry_id, *_ in surplus:
            self.running.pop(entry_id, None)
        self.counts["requeued"] = self.counts.get("requeued", 0) + len(surplus)

    async def _guarded(self, coro: Coroutine[Any, Any, Any], entry_ids: list[bytes]) -> Any:
        try:
            return await coro
        except StorageError as exc:
            # The entries stay pending; a worker takes them over after claim_timeout.
            log.warning("worker %s: entries %s left for reclaim: %s", self.worker, entry_ids, exc)
        except Exception:
            log.exception("worker %s: internal error on entries %s", self.worker, entry_ids)

    def _chain_apart(
        self,
        ctx: RunContext,
        acks: list[bytes],
        index: int,
        *,
        check_done: bool = False,
        attempt: int = 1,
        failed: int = 0,
        placed: str = "dispatched",
        graph: tuple[Any, float, float] | None = None,
        resume: bool = False,
    ) -> None:
        """Run a chain starting at ``index`` in a task of its own (it owns the entry);
        ``attempt`` and ``failed``: the first task's attempt, and its failures so far;
        ``placed``: why it runs on this worker; ``graph``: the first task was called
        and returned a graph (see :meth:`Chains.run`); ``resume``: its graph ran."""
        entry_id = acks[0]
        self._owned[entry_id] = True
        self._slow += 1

        async def chain() -> None:
            try:
                await self._guarded(
                    self.chains.run(
                        ctx, acks, index, check_done, attempt, failed, placed, graph, resume
                    ),
                    [entry_id],
                )
            finally:
                self._owned.pop(entry_id, None)
                self._slow -= 1
                self._slow_freed.set()
                for wake in self._wakeups:
                    wake.set()
                self._finish(entry_id)

        self._spawn(chain())

    # -- fan-out clustering -------------------------------------------------------------

    def adopt(
        self,
        ctx: RunContext,
        parent: int,
        claimed: list[tuple[bytes, int]],
        nbytes: int,
        only_here: bool = False,
    ) -> None:
        """Run children that a completion here claimed (their entries are pending for
        this worker already): their large input is in this worker's memory. Tiny ones
        run at once, as a batch; the others each as a chain when a thread is free.
        Those that have not started ``spill_after`` seconds from now (the parent's
        ``spill_after_s``, or the time this worker takes to read ``nbytes``) go back to
        the stream for the other workers, and so do those beyond this worker's slots.
        ``only_here``: the parent's output is in this worker's memory only (mode L): it
        is stored before any child goes back (if it cannot be, the worker that runs such
        a child computes it again, as after a crash)."""
        if self._task_group is None or self.stopping.is_set():
            return  # (stopping: their entries stay pending, for another worker)
        now = time.monotonic()
        mine: list[tuple[bytes, int]] = []
        back: list[tuple[bytes, str, int]] = []
        for entry_id, child in claimed:
            try:
                self.slots.acquire_nowait()
            except anyio.WouldBlock:
                back.append((entry_id, ctx.run_id, child))
                continue
            self.in_flight[entry_id] = now
            self.running[entry_id] = ctx.record(child).key
            mine.append((entry_id, child))
        wait = ctx.switches(ctx.record(parent)).spill_after
        if wait is None:
            wait = self.chains.inputs.rate.seconds(nbytes)
        self._spawn(self._cluster(ctx, mine, back, wait, parent if only_here else None))

    async def _cluster(
        self,
        ctx: RunContext,
        mine: list[tuple[bytes, int]],
        back: list[tuple[bytes, str, int]],
        wait: float,
        unstored: int | None = None,
    ) -> None:
        """Run the children :meth:`adopt` took (see there); ``unstored``: their parent,
        if its output is in this worker's memory only."""
        heavy: deque[tuple[bytes, int]] = deque()
        queued = False  # the children in ``heavy`` count in ``_queued``
        try:
            if back and unstored is not None:
                # (stored, the others read it; else whoever runs them makes it again)
                await self.completer.store_late(ctx, ctx.record(unstored))
                unstored = None
            if back:
                self.counts["spilled"] = self.counts.get("spilled", 0) + len(back)
                await self._give_back(back)
            fast: list[tuple[list[bytes], int]] = []
            for entry_id, child in mine:
                if self.fast.eligible(ctx, child):
                    fast.append(([entry_id], child))
                else:
                    heavy.append((entry_id, child))
            if fast:
                handoffs = await self._guarded(
                    self.fast.run(ctx, fast, placed={c: "cluster" for _, c in fast}),
                    [e for (e,), _ in fast],
                )
                self._hand_off(ctx, handoffs)
            self._queued += len(heavy)
            queued = True
            deadline = anyio.current_time() + wait
            while heavy and not ctx.stopped:
                if self._slow < self._threads:  # a thread is free: start the next child
                    entry_id, child = heavy.popleft()
                    self._queued -= 1  # (and a chain more: the read window stays as it was)
                    self._chain_apart(ctx, [entry_id], child, placed="cluster")
                    continue
                wake = anyio.Event()
                self._wakeups.add(wake)
                try:
                    with anyio.move_on_after(deadline - anyio.current_time()):
                        await wake.wait()
                finally:
                    self._wakeups.discard(wake)
                if anyio.current_time() >= deadline:
                    break
            if heavy and not ctx.stopped and unstored is not None:
                # (stored, the others read it; else whoever runs them makes it again)
                await self.completer.store_late(ctx, ctx.record(unstored))
            if heavy and not ctx.stopped:
                # Waiting longer costs more than moving their input: spill them.
                self.counts["spilled"] = self.counts.get("spilled", 0) + len(heavy)
                await self._give_back([(e, ctx.run_id, c) for e, c in heavy])
            elif heavy:  # the run ended: nothing of it runs here
                await self.completer.ack([e for e, _ in heavy])
        except Exception:
            log.exception("worker %s: internal error on claimed children", self.worker)
        finally:
            if queued:
                self._queued -= len(heavy)
                # The read window counted them: a read that waits for room must hear
                # that there is room again (none may come from a chain ending: a run
                # hung so, its spilled children in the stream, both workers waiting).
                self._slow_freed.set()
            self._finish_unowned(entry_id for entry_id, _ in mine)

    # -- admission --------------------------------------------------------------------------

    async def _admit(
        self, entry_id: bytes, fields: dict[bytes, bytes]
    ) -> tuple[RunContext, int] | None:
        """The run and task an entry names, or ``None`` after acking or dead-lettering it."""
        try:
            run_id = fields[b"r"].decode()
            index = int(fields[b"t"])
            if not K.valid_run_id(run_id) or index < 0:
                raise ValueError("bad run id or task index")
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            await self._dead_letter(entry_id, fields, f"malformed entry: {exc}")
            return None
        try:
            ctx = await self.runs.get(run_id)
            if ctx is not None:
                ctx.record(index)
        except KeyError:
            if await self.storage.aexists(K.RunKeys(run_id).end):
                # The run ended while its table was loading (an empty table): no bad entry.
                self.runs.forget(run_id)
                await self.completer.ack([entry_id])
            else:
                await self._dead_letter(entry_id, fields, f"run {run_id} has no task {index}")
            return None
        except (ValueError, SerializationError) as exc:
            await self._reject(run_id, index, entry_id, fields, exc)
            return None
        if ctx is None:
            if await self.storage.aexists(K.RunKeys(run_id).end):
                await self.completer.ack([entry_id])  # a run that just ended: nothing to do
            else:
                await self._dead_letter(entry_id, fields, f"unknown run {run_id}")
            return None
        if ctx.stopped:  # the run ended (cancelled, failed): none of its tasks starts
            await self.completer.ack([entry_id])
            return None
        lane = _lane(fields)
        if lane and lane not in self.lanes.lanes:
            # (taken over from a worker that died: this one cannot hold it)
            await self._to_lane(entry_id, run_id, index, lane)
            return None
        if b"v" in fields:  # an input came inline in the entry
            self.chains.inputs.give(ctx, ctx.record(index), fields)
        return ctx, index

    async def _to_lane(self, entry_id: bytes, run_id: str, index: int, lane: str) -> None:
        """Put an entry of a lane this worker does not read back in its lane (atomically;
        its claim, the dead worker's, is cleared: ``requeue.lua``)."""
        s = self.settings
        await send(
            self.storage,
            [requeue_cmd([(entry_id, run_id, index, lane)], stream=s.stream, group=s.group)],
        )

    async def _reject(
        self, run_id: str, index: int, entry_id: bytes, fields: dict[bytes, bytes], exc: Exception
    ) -> None:
        """A record or function table that fails its signature, or does not have the
        shape dagrt writes: never run it, and fail the run so that its client hears
        why at once."""
        await self._dead_letter(entry_id, fields, f"rejected task record: {exc}")
        record = {
            "task": f"{run_id}#{index}",
            "index": index,
            "name": "?",
            "exc_type": (
                "dagrt.MalformedRecord"
                if isinstance(exc, MalformedRecord | SerializationError)
                else "dagrt.SignatureError"
            ),
            "message": f"worker {self.worker} rejected the task record: {exc}",
            "traceback": "",
            "worker": self.worker,
            "attempt": 1,
            "run_id": run_id,
        }
        s = self.settings
        cmd = fail_cmd(
            K.RunKeys(run_id),
            index,
            self.worker,
            record,
            secret=s.keyring,
            acks=[],
            stream=s.stream,
            group=s.group,
        )
        await send(self.storage, [cmd])

    async def _dead_letter(self, entry_id: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        log.warning("worker %s: dead-lettering entry %s: %s", self.worker, entry_id, reason)
        record: dict[str | bytes, Any] = {
            "reason": reason,
            "worker": self.worker,
            "entry": entry_id,
            "stream": self.settings.stream,
            "at": time.time(),
        }
        for k, v in fields.items():
            record[b"field:" + k] = v
        s = self.settings
        await self.storage.apipeline(
            [
                C.xadd(K.dead_letter(), record, maxlen=100_000),
                C.xack(s.stream, s.group, [entry_id]),
                C.xdel(s.stream, [entry_id]),
            ]
        )
        self.counts["dead"] += 1


def _lane(fields: dict[bytes, bytes]) -> str:
    """The lane of an entry moved from one (:mod:`dagrt.resources`), else ""."""
    lane = fields.get(b"l")
    return lane.decode(errors="replace") if lane else ""
