"""Completing tasks: store their outputs, call the ``complete`` script, read its reply.

Both lanes (:mod:`.fast_lane`, :mod:`.chain`) hand their results here as
:class:`Made` items and get a :class:`Decision` per task back. One round trip
carries every output that must be stored and one ``complete`` call for all of
them (plus whatever else the lane sends along: failures, acknowledgements).

Keep mode ``L`` (Wukong's delayed I/O, ``Client(locality={"keep_outputs": ...})``):
an output of ``LOCAL_MIN`` bytes or more whose one child is not an output of the
run is *not* stored; the script counts the task only if that child becomes ready
now, and then this worker keeps the child and pins the output in memory until the
child has read it (:class:`~.cache.ValueCache`). If the child is not ready, the
script answers ``upload``: the output is stored and the task completed again.

Large outputs (``DataPlane.min_bytes`` or more) go to the host's object store
instead of Redis when the worker has one (:mod:`dagrt.objects`): written there
first, then the ``complete`` call records their location in their key. Outputs
of the run (the client reads them) always go to Redis. A store without room
leaves the output to Redis; an output too large for the server that the store
does not take fails its task.

The failure of a task (``fail`` script) is built here too, with its events.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from .. import keys as K
from .. import sealing
from ..exceptions import StorageError, ValueTooLargeError
from ..locality import INLINE_BUDGET
from ..objects import DataPlane
from ..records import TaskRecord
from ..scheduler import Completion, complete_cmd, fail_cmd, send
from ..sealing import cache_place
from ..serialize import Frame, dumps_frame
from ..storage import Storage
from ..storage import commands as C
from .cache import ValueCache
from .executor import error_record
from .failpoints import Failpoints
from .runs import RunContext
from .settings import WorkerSettings
from .tasklog import TaskLog

__all__ = ["LOCAL_MIN", "Completer", "Decision", "Made", "traceback_of"]

# Outputs at least this large try to stay in memory (their one child running here);
# smaller ones are cheaper to upload at once than to risk a second round trip.
LOCAL_MIN = 64 * 1024
SEAL_IN_THREAD = 1 << 20  # outputs at least this large are sealed in a thread


@dataclass(slots=True)
class Made:
    """A task that ran: what completing it needs."""

    rec: TaskRecord
    acks: list[Any]  # stream entries acknowledged when no child is kept
    value: Any
    frame: bytes | Frame
    may_keep: bool  # this worker may keep a child that becomes ready
    local: bool  # try to keep the output in memory only (mode L)
    attempt: int = 1
    started_at: float | None = None  # when the attempt began, if no task-started says it
    location: bytes = b""  # where the host's store holds the output (encoded Location)
    fused: bool = False  # its one child already ran from its value (mode L): keep none
    cluster: int = 0  # fan-out clustering: children to keep or claim, at most (mode C)
    wait: bool = False  # delayed I/O: wait for the children not ready yet (mode W)


@dataclass(slots=True)
class Decision:
    """What the ``complete`` script decided for one task."""

    stop: bool  # the run is not running: nothing more of it here
    kept: int | None  # the child this worker runs next
    local: bool  # the output stayed in this worker's memory only (pinned)
    claimed: list[tuple[bytes, int]] = field(default_factory=list)  # (entry, child) claimed
    waiting: list[int] = field(default_factory=list)  # children this worker now waits for


class Completer:
    """Completes tasks for one worker (see the module's text)."""

    def __init__(
        self,
        storage: Storage,
        settings: WorkerSettings,
        worker_id: str,
        values: ValueCache,
        log: TaskLog,
        counts: dict[str, int],
        failpoints: Failpoints,
        plane: DataPlane | None = None,
    ) -> None:
        self.storage = storage
        self.plane = plane
        self.settings = settings
        self.worker = worker_id
        self.values = values
        self.log = log
        self.counts = counts
        self.failpoints = failpoints
        # Runs the children a completion claimed (fan-out clustering): the consumer's
        # ``adopt(ctx, parent, claimed, nbytes, only_here)``; none: no clustering on this
        # worker.
        self.adopt: Callable[[RunContext, int, list[tuple[bytes, int]], int, bool], None] | None = (
            None
        )
        # Waits for children of a large output (delayed I/O): the consumer's
        # ``hold(ctx, task, children, nbytes)``; none: this worker waits for none.
        self.hold: Callable[[RunContext, int, list[int], int], None] | None = None

    def made(
        self,
        ctx: RunContext,
        rec: TaskRecord,
        acks: list[Any],
        value: Any,
        frame: bytes | Frame,
        *,
        attempt: int = 1,
        started_at: float | None = None,
    ) -> Made:
        """A task's result as the lanes hand it over, its keep modes decided."""
        switches = ctx.switches(rec)
        may_keep = self.settings.keep_children and switches.keep_children and bool(rec.children)
        local = may_keep and len(frame) >= LOCAL_MIN and self._may_stay(ctx, rec)
        made = Made(rec, acks, value, frame, may_keep, local, attempt, started_at)
        large = len(frame) >= switches.cluster_min
        if (
            may_keep
            and switches.cluster > 1
            and len(rec.children) > 1
            and large
            and self.adopt is not None
        ):
            made.cluster = min(switches.cluster, len(rec.children))
            # every child is this output's alone and may be kept or claimed here: the
            # output need not be stored at all (mode L; given back, it is stored first)
            if (
                not local
                and made.cluster == len(rec.children)
                and self._may_stay(ctx, rec, every_child=True)
            ):
                made.local = True
        if may_keep and switches.wait > 0 and large and self.hold is not None:
            made.wait = True
        return made

    def _may_stay(self, ctx: RunContext, rec: TaskRecord, every_child: bool = False) -> bool:
        """May this task's output stay in memory here (keep mode "L")? Only for a task
        that is not an output of the run, with exactly one child (or, ``every_child``:
        fan-out clustering will keep or claim all its children here, each of which has
        no other parent), when its switches allow it (and no failpoint needs its
        upload)."""
        if every_child:
            alone = all(ctx.record(c).parents == [rec.index] for c in rec.children)
        else:
            alone = len(rec.children) == 1
        return (
            alone
            and ctx.switches(rec).keep_outputs
            and rec.index not in ctx.outputs
            and not self.failpoints.around_upload(rec.name)
        )

    async def store_late(self, ctx: RunContext, rec: TaskRecord) -> bool:
        """Store an output that was kept in this worker's memory only (mode L), as its
        completion would have (before a child of it goes to another worker). False if
        it is no longer here or cannot be stored (whoever runs a child then makes it
        again)."""
        found, value, _ = self.values.get(ctx.run_id, rec.index)
        if not found:
            return False
        frame = await anyio.to_thread.run_sync(
            functools.partial(dumps_frame, value, what=f"output of task {rec.key}")
        )
        m = Made(rec, [], value, frame, False, False)
        t0 = time.perf_counter()
        if self._may_store(m):
            await self._to_store(ctx, m)
        ttl = ctx.ttl_ms / 1000
        if m.location:
            cmd = C.set_(ctx.keys.output(rec.index), m.location, ex=ttl)
        else:
            sealed = await self._sealed(ctx, m)
            if len(sealed) > await self.storage.amax_value_size():
                return False
            cmd = C.set_(ctx.keys.output(rec.index), sealed, ex=ttl)
        await send(self.storage, [cmd])
        if self.log.on:  # (the log's proof: these bytes moved after all)
            how = "store" if m.location else "upload"
            moves = self.log.run_moves(ctx)()
            moves.add(len(frame), time.perf_counter() - t0, how, rec.index, None, False)
        self.values.unpin(ctx.run_id, rec.index)
        self.counts["stored_late"] = self.counts.get("stored_late", 0) + 1
        return True

    async def complete(
        self, ctx: RunContext, made: Sequence[Made], extra: Sequence[C.Cmd] = ()
    ) -> list[Decision | None]:
        """Store what must be stored and complete ``made``, in one round trip with
        ``extra``; a result too large for the server fails its task instead. The
        decisions, in order (``None`` for a task that failed)."""
        cmds = list(extra)
        limit = await self.storage.amax_value_size()
        items: list[Made] = []
        places: list[int] = []  # where each item is in ``made``
        pins: dict[int, str] = {}  # an item -> the persisted value written with it
        for place, m in enumerate(made):
            self.failpoints.hit("before_upload", m.rec.name, self.worker)
            sending, fits = await self._sending(ctx, m, limit)
            cmds += sending
            if not fits:
                continue
            if ctx.cache and m.rec.index in ctx.cache and len(m.frame) + ctx.seal_head <= limit:
                entry, ttl = ctx.cache[m.rec.index]  # kept for later runs too
                cmds.append(C.set_(entry, await self._sealed(ctx, m, entry), ex=ttl))
                if K.is_pin_entry(entry):
                    pins[len(items)] = entry
            items.append(m)
            places.append(place)
        if self.failpoints and items:  # crash tests need the gap between the two
            await send(self.storage, [c for c in cmds if c.args[0] == "SET"])
            for m in items:
                self.failpoints.hit("after_upload", m.rec.name, self.worker)
        if items:
            cmds.append(self._complete_cmd(ctx, items))
        decisions: list[Decision | None] = [None] * len(made)
        if not cmds:
            return decisions
        replies = await send(self.storage, cmds)
        if not items:
            return decisions
        answers = list(replies[-1])
        # Outputs kept in memory whose child was not ready after all: store them and
        # complete them again (the script changed nothing for them).
        again = [j for j, answer in enumerate(answers) if _text(answer[0]) == "upload"]
        too_large: set[int] = set()
        if again:
            second = []
            for j in again:
                items[j].local = False
                sending, fits = await self._sending(ctx, items[j], limit)
                second += sending
                if not fits:
                    too_large.add(j)
            again = [j for j in again if j not in too_large]
            if again:
                second.append(self._complete_cmd(ctx, [items[j] for j in again]))
            replies = await send(self.storage, second)
            for j, answer in zip(again, replies[-1] if again else [], strict=True):
                answers[j] = answer
        await self._drop_late_pins(ctx, pins, answers)
        if self.failpoints:  # a crash test: the output is recorded, its children released
            for m in items:
                self.failpoints.hit("after_complete", m.rec.name, self.worker)
        for j, (place, m, answer) in enumerate(zip(places, items, answers, strict=True)):
            if j not in too_large:  # (those failed: no decision)
                decisions[place] = self._decide(ctx, m, answer)
        return decisions

    async def _drop_late_pins(
        self, ctx: RunContext, pins: dict[int, str], answers: list[Any]
    ) -> None:
        """The run ended while these tasks ran (the script answered ``stop`` and deleted
        their outputs): the persisted values they wrote go too if it did not finish
        (failed, cancelled), or one would outlive its release until its time to live
        (:mod:`dagrt.persist`). Not when it finished: a late copy of a task taken over
        rewrote the value its client holds. A run already deleted (``gone``) is told by
        its end marker; without one, nothing is deleted. (``pins``: item -> the
        persisted value it wrote; a cache entry by cache key stays in any case, a right
        value for later runs.)"""
        late = {
            entry: _text(answers[j][1])
            for j, entry in pins.items()
            if _text(answers[j][0]) == "stop"
        }
        if not late:
            return
        if "gone" in late.values():
            try:
                end = await self.storage.aget(ctx.keys.end)
            except StorageError:  # (then it is not known how the run ended)
                end = None
            ended = end.decode(errors="replace") if end else "gone"
            late = {entry: ended if status == "gone" else status for entry, status in late.items()}
        drop = [entry for entry, status in late.items() if status not in ("finished", "gone")]
        if drop:
            await send(self.storage, [C.delete(drop)])

    async def _sending(self, ctx: RunContext, m: Made, limit: int) -> tuple[list[C.Cmd], bool]:
        """Put ``m``'s output in the host's store if it goes there; the commands that
        store the rest, and whether the task can be completed (False: its output is over
        the server's ``limit`` and in no store; the one command fails the task). An
        output kept in memory only (mode L) is sent nowhere: no limit applies to it."""
        if m.local:
            return [], True
        if self._may_store(m):
            await self._to_store(ctx, m)  # (small outputs: not even a coroutine)
        rk, ttl = ctx.keys, ctx.ttl_ms / 1000
        if not m.location:
            if len(m.frame) + ctx.seal_head > limit:
                return [self._too_large(ctx, m, limit)], False
            return [C.set_(rk.output(m.rec.index), await self._sealed(ctx, m), ex=ttl)], True
        if ctx.switches(m.rec).upload_all and len(m.frame) + ctx.seal_head <= limit:
            return [C.set_(rk.copy(m.rec.index), await self._sealed(ctx, m), ex=ttl)], True
        return [], True

    @staticmethod
    async def _sealed(ctx: RunContext, m: Made, entry: str | None = None) -> bytes | Frame:
        """``m``'s output as it is stored: sealed for its place, or for the cache entry
        ``entry`` (:mod:`dagrt.sealing`; the frame itself without a secret). A large
        one is sealed in a thread (0.6 s per GB)."""
        if ctx.secret is None:
            return m.frame
        if entry is None:
            seal = functools.partial(ctx.seal, m.rec.index, m.frame)
        else:
            seal = functools.partial(sealing.seal, ctx.secret, cache_place(entry), m.frame)
        if len(m.frame) < SEAL_IN_THREAD:
            return seal()
        return await anyio.to_thread.run_sync(seal)

    def _too_large(self, ctx: RunContext, m: Made, limit: int) -> C.Cmd:
        """Fail ``m``'s task: its output is over the server's limit, and not in a store."""
        exc = ValueTooLargeError(
            f"value for {ctx.keys.output(m.rec.index)!r} is {len(m.frame):,} bytes; the "
            f"server accepts at most {limit:,} (proto-max-bulk-len)"
            + (" and the host's object store has no room for it" if self.plane else "")
        )
        return self.fail(ctx, m.rec, exc, "", m.attempt, m.acks, m.started_at)

    def _may_store(self, m: Made) -> bool:
        """Is the output large enough for the host's store (on a worker with one)?"""
        return self.plane is not None and self.plane.wants(len(m.frame))

    async def _to_store(self, ctx: RunContext, m: Made) -> None:
        """Put an output that :meth:`_may_store` in the host's store (its location then
        goes with the completion), unless the store has no room, or it is an output of
        the run and the client cannot map it from this store (it reads it from the
        server)."""
        plane = self.plane
        assert plane is not None
        if m.rec.index in ctx.outputs and not plane.is_at(ctx.outputs_host, ctx.outputs_root):
            return
        where = await plane.put(ctx.run_id, m.rec.index, m.frame)
        if where is not None:
            m.location = bytes(ctx.seal(m.rec.index, where.encode()))
            self.counts["stored"] = self.counts.get("stored", 0) + 1

    def _complete_cmd(self, ctx: RunContext, items: Sequence[Made]) -> C.Cmd:
        s = self.settings
        batch = [
            Completion(
                m.rec.index,
                m.rec.children,
                m.acks,
                m.may_keep,
                m.local,
                m.location,
                m.cluster,
                m.wait,
                self._inline(ctx, m),
            )
            for m in items
        ]
        return complete_cmd(
            ctx.keys, batch, self.worker, stream=s.stream, group=s.group, finished=ctx.finished_tag
        )

    @staticmethod
    def _inline(ctx: RunContext, m: Made) -> bool:
        """Does ``m``'s output key's value (the output, or where it is) go inline into
        the entries of the children its completion dispatches? When it is at most the
        task's ``inline_max_bytes``, and the copies, one per child but the one kept, are
        at most ``INLINE_BUDGET`` bytes together."""
        limit = ctx.switches(m.rec).inline
        size = len(m.location) if m.location else len(m.frame) + ctx.seal_head
        copies = len(m.rec.children) - (1 if m.may_keep else 0)
        return 0 < size <= limit and copies > 0 and size * copies <= INLINE_BUDGET

    def _decide(self, ctx: RunContext, m: Made, answer: Any) -> Decision:
        """A completed task's decision; its value held for children that run here."""
        self.counts["done"] += 1
        self.counts["local"] += m.local
        self.counts["fused"] += m.fused
        if m.rec.children and not m.fused:
            self.values.put(ctx.run_id, m.rec.index, m.value, len(m.frame), pinned=m.local)
        decision = self._read(ctx, m.rec, answer, m.local)
        if decision.claimed and self.adopt is not None:
            self.counts["claimed"] = self.counts.get("claimed", 0) + len(decision.claimed)
            self.adopt(ctx, m.rec.index, decision.claimed, len(m.frame), decision.local)
        if decision.waiting and self.hold is not None:
            self.hold(ctx, m.rec.index, decision.waiting, len(m.frame))
        return decision

    def _read(self, ctx: RunContext, rec: TaskRecord, answer: Any, local: bool) -> Decision:
        """The script's answer for one task (``stop``: the run ended; kept: the child
        this worker runs next, ``*`` marking an input held in memory only)."""
        code, kept = _text(answer[0]), _text(answer[1])
        if code == "missing":  # pragma: no cover - the output was sent in the same pipeline
            raise StorageError(f"output of task {ctx.run_id}/{rec.index} vanished first")
        if code == "stop":
            ctx.stopped = True
            return Decision(True, None, False)
        if kept:
            self.counts["kept"] += 1
        claimed: list[tuple[bytes, int]] = []
        waiting: list[int] = []
        for i in range(2, len(answer) - 1, 2):  # (entry, child) claimed, ("", child) waited
            if answer[i]:
                claimed.append((answer[i], int(answer[i + 1])))
            else:
                waiting.append(int(answer[i + 1]))
        return Decision(False, int(kept.rstrip("*")) if kept else None, local, claimed, waiting)

    async def again(self, ctx: RunContext, rec: TaskRecord, acks: list[Any]) -> Decision:
        """Complete a task found done (its output stored, its worker died after): the
        decision the script remembered."""
        item = Made(rec, acks, None, b"", may_keep=False, local=False)
        [[answer]] = await send(self.storage, [self._complete_cmd(ctx, [item])])
        return self._read(ctx, rec, answer, False)

    def fail(
        self,
        ctx: RunContext,
        rec: TaskRecord,
        exc: BaseException,
        tb: str,
        attempt: int,
        acks: list[Any],
        started_at: float | None = None,
    ) -> C.Cmd:
        """The ``fail`` call for a task that failed for good, and its events (the
        attempt's start too when ``started_at`` says when it began, not logged yet)."""
        record = error_record(rec, exc, tb, worker=self.worker, attempt=attempt, run_id=ctx.run_id)
        failed = self.log.failed(
            ctx, rec, exc, tb, attempt, final=True, exc_type=record["exc_type"]
        )
        if started_at is not None:
            self.log.emit([self.log.started(ctx, rec, started_at, attempt), failed])
        else:
            self.log.emit([failed])
        ctx.stopped = True
        self.counts["failed"] += 1
        s = self.settings
        return fail_cmd(
            ctx.keys,
            rec.index,
            self.worker,
            record,
            secret=ctx.secret,
            acks=acks,
            stream=s.stream,
            group=s.group,
        )

    async def ack(self, ids: list[Any]) -> None:
        """Acknowledge and delete stream entries whose work is over without completion."""
        s = self.settings
        await self.storage.apipeline([C.xack(s.stream, s.group, ids), C.xdel(s.stream, ids)])

    async def fail_now(
        self,
        ctx: RunContext,
        rec: TaskRecord,
        exc: BaseException,
        tb: str,
        attempt: int,
        acks: list[Any],
    ) -> None:
        """Fail a task for good, now."""
        await send(self.storage, [self.fail(ctx, rec, exc, tb, attempt, acks)])


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def traceback_of(exc: BaseException) -> str:
    """The whole traceback of an error dagrt met (not one a task raised)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
