"""The fast lane: tiny tasks of one run, run as a batch on the event loop.

A sync function this worker has measured tiny (:meth:`Executor.inline`) is called
right on the loop: a hop to a thread would cost more than the task. Tiny tasks
read together run as one batch: one ``MGET`` for every input not in memory, the
calls one after another, then one round trip with every output and one
``complete`` call for all (:class:`~.completer.Completer`); the children the
script kept form the next batch. This is what makes 16k tiny tasks take about a
second on two workers.

What the lane cannot finish goes back to its caller to run apart (a chain): a kept
child that is not tiny, and a task with retries whose first attempt failed (the
next attempt waits for its backoff).

In the log, the batch's span (from loading its inputs to its completion's reply)
is shared out among its tasks in the order they ran: each gets its call, its share
of the download and of the upload, and an equal share of the rest, so their spans
tile the batch's. Their finished rows and transfers go to the run's batches
(:class:`~dagrt.metrics.recorder.BatchRows`), not to an event each.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, NamedTuple

from ..exceptions import SerializationError, user_traceback
from ..locality import MAX_CHAIN_LENGTH
from ..metrics.events import NEAR_PLACEMENTS
from ..metrics.recorder import LOCAL, PLACED, STORE, UPLOAD
from ..records import TaskRecord
from ..serialize import Frame
from ..storage import commands as C
from .completer import Completer, Made
from .executor import Executor, permanent
from .failpoints import Failpoints
from .inputs import Inputs, Loaded
from .runs import FunctionCache, RunContext
from .settings import WorkerSettings
from .tasklog import TaskLog

__all__ = ["FastLane", "Handoff"]

BECOME, CHAIN = PLACED["become"], PLACED["chain"]  # placement codes of a row
NEAR = frozenset(PLACED[name] for name in NEAR_PLACEMENTS)  # (logged as kept)


class Handoff(NamedTuple):
    """A task to go on with outside the lane: its entries, index, the attempt it runs
    as, its failures so far, and why it runs on this worker (``PLACEMENTS``); for a
    task whose call returned a graph, the value holding it (:mod:`dagrt.expand`) and
    when the call began and how long it took."""

    acks: list[Any]
    task: int
    attempt: int
    failed: int
    placed: str = "dispatched"
    graph: tuple[Any, float, float] | None = None


class FastLane:
    def __init__(
        self,
        settings: WorkerSettings,
        executor: Executor,
        functions: FunctionCache,
        inputs: Inputs,
        completer: Completer,
        log: TaskLog,
        failpoints: Failpoints,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.functions = functions
        self.inputs = inputs
        self.completer = completer
        self.log = log
        self.failpoints = failpoints

    def eligible(self, ctx: RunContext, index: int) -> bool:
        """Is the task's function measured tiny (and everything it needs at hand)?"""
        if self.failpoints:
            return False
        rec = ctx.record(index)
        if rec.leaves is None or rec.threads is not None or rec.timeout is not None:
            return False  # (a call on the loop cannot be stopped at its timeout)
        fn = self.functions.cached(rec.fn)
        return fn is not None and self.executor.inline(fn)

    async def run(
        self,
        ctx: RunContext,
        work: list[tuple[list[Any], int]],
        ran_kept: set[int] | None = None,
        placed: dict[int, str] | None = None,
    ) -> list[Handoff]:
        """Run ``work`` (``(entries, task)`` pairs of one run) and the children their
        completions keep, batch after batch; what must go on apart. ``ran_kept``:
        tasks of ``work`` this worker kept (they run after their parent); ``placed``:
        why tasks of ``work`` run here, if not "dispatched" (the log says it)."""
        placed = placed or {}
        handoffs: list[Handoff] = []
        kept_now: set[int] = set(ran_kept or ())
        ran: set[int] = set()  # children run right after their parent (chain fusion)
        log = self.log
        while work and not ctx.stopped:
            batch_start = time.time()
            recs = [ctx.record(index) for _, index in work]
            moves = log.run_moves(ctx) if log.on else None
            inputs = await self.inputs.load(ctx, recs, moves)
            extra: list[C.Cmd] = []
            made: list[Made] = []
            timings: list[tuple[float, Loaded]] = []
            for (acks, _), rec, loaded in zip(work, recs, inputs, strict=True):
                if loaded is None:  # the run's data is gone: it ended
                    ctx.stopped = True
                    extra.append(C.xack(self.settings.stream, self.settings.group, acks))
                    continue
                began = time.time()
                if loaded.error is not None:  # an input that cannot be had: never retried
                    error = loaded.error
                    tb = "".join(traceback.format_exception(error))
                    first = error.__cause__ if isinstance(error, SerializationError) else None
                    extra.append(self.completer.fail(ctx, rec, first or error, tb, 1, acks, began))
                    continue
                called = self._call(
                    ctx, rec, loaded, acks, began, extra, handoffs, placed.get(rec.index)
                )
                if called is None:
                    continue
                value, frame, elapsed = called
                m = self.completer.made(ctx, rec, acks, value, frame, started_at=began)
                made.append(m)
                timings.append((elapsed, loaded))
                self._fuse(ctx, m, made, timings, extra, handoffs, ran, kept_now)
            if not made and not extra:
                break
            sent = time.time()
            decisions = await self.completer.complete(ctx, made, extra)
            ended = time.time()
            done = [
                (m, decision, timing)
                for m, decision, timing in zip(made, decisions, timings, strict=True)
                if decision is not None
            ]
            upload_share = (ended - sent) / max(1, len(done))
            if log.on:
                self._log_rows(ctx, done, batch_start, ended, upload_share, kept_now, ran, placed)
            nxt: list[tuple[list[Any], int]] = []
            for m, decision, _ in done:
                if decision.kept is None or decision.kept in ran:  # (fused: it ran)
                    continue
                kept_now.add(decision.kept)
                if self.eligible(ctx, decision.kept):
                    nxt.append((list(m.acks), decision.kept))
                else:
                    handoffs.append(Handoff(list(m.acks), decision.kept, 1, 0, "become"))
            log.tasks_added()
            work = nxt
        return handoffs

    def _call(
        self,
        ctx: RunContext,
        rec: TaskRecord,
        loaded: Loaded,
        acks: list[Any],
        began: float,
        extra: list[C.Cmd],
        handoffs: list[Handoff],
        placed: str | None = None,
    ) -> tuple[Any, bytes | Frame, float] | None:
        """Call a task of the batch: its value, frame and call time; ``None`` if it
        raised (a retry is handed off, ``placed`` as the task was: the next attempts
        wait for their delay, not in a batch; a final failure goes with the batch's
        completion, in ``extra``) or returned a graph (handed off with it: its graph
        is submitted apart)."""
        fn = self.functions.cached(rec.fn)
        assert fn is not None  # eligible for the fast lane: loaded
        try:
            t0 = time.perf_counter()
            value, frame = self.executor.call_inline(fn, rec, loaded.values)
            elapsed = time.perf_counter() - t0
            if frame is None:
                graph = (value, began, elapsed)
                handoffs.append(Handoff(acks, rec.index, 1, 0, placed or "dispatched", graph))
                return None
            return value, frame, elapsed
        except Exception as exc:
            tb = user_traceback(exc)
            if rec.retries and not permanent(exc):
                log = self.log
                log.emit(
                    [
                        log.started(ctx, rec, began, 1),
                        log.failed(ctx, rec, exc, tb, 1, final=False),
                    ]
                )
                handoffs.append(Handoff(acks, rec.index, 2, 1, placed or "dispatched"))
            else:
                extra.append(self.completer.fail(ctx, rec, exc, tb, 1, acks, began))
            return None

    def _fusible(self, ctx: RunContext, m: Made) -> int | None:
        """The child to run right after ``m``'s task, from its value: the task's one
        child, whose one parent it is, tiny too, when the run lets outputs stay in
        memory (keep mode L) and the task is not an output of the run."""
        rec = m.rec
        switches = ctx.switches(rec)
        if not (
            m.may_keep and switches.fuse_chains and switches.keep_outputs and len(rec.children) == 1
        ):
            return None
        child = rec.children[0]
        if rec.index in ctx.outputs or not self.eligible(ctx, child):
            return None
        crec = ctx.record(child)
        return child if crec.parents == [rec.index] else None

    def _fuse(
        self,
        ctx: RunContext,
        m: Made,
        made: list[Made],
        timings: list[tuple[float, Loaded]],
        extra: list[C.Cmd],
        handoffs: list[Handoff],
        ran: set[int],
        kept_now: set[int],
    ) -> None:
        """Chain fusion: run the links of a chain that starts at ``m`` one after another,
        each from its parent's value, as many as the run allows (``max_chain``, never
        more than ``MAX_CHAIN_LENGTH``); every link but the
        last completes in keep mode L (its output is never stored), all in the batch's
        one ``complete`` call, which counts them in order (all or nothing: a worker
        that dies first leaves the entry to be taken over, and the chain runs again)."""
        for _ in range(min(MAX_CHAIN_LENGTH, ctx.switches(m.rec).max_chain) - 1):
            child = self._fusible(ctx, m)
            if child is None:
                return
            rec = ctx.record(child)
            m.local = True  # the parent's output stays here: its child is ready now
            ran.add(child)
            kept_now.add(child)
            loaded = Loaded([m.value])
            loaded.nbytes = len(m.frame)
            began = time.time()
            called = self._call(ctx, rec, loaded, list(m.acks), began, extra, handoffs, "chain")
            if called is None:
                # The parent completes as usual (kept in memory for this child, which
                # the completion keeps): the child's failure took its usual path.
                return
            value, frame, elapsed = called
            m.fused = True
            m = self.completer.made(ctx, rec, list(m.acks), value, frame, started_at=began)
            made.append(m)
            timings.append((elapsed, loaded))

    def _log_rows(
        self,
        ctx: RunContext,
        done: list[Any],
        batch_start: float,
        ended: float,
        upload_share: float,
        kept_now: set[int],
        ran: set[int],
        placed: dict[int, str],
    ) -> None:
        """The batch's finished rows and upload transfers (the numbers
        ``FinishedBatch.add`` and ``TransferBatch.add`` append, inline: a call per
        row costs here)."""
        finished, moves = self.log.rows.of(ctx.run_id)
        finish, move = finished.rows.extend, moves.rows.extend
        spans = _shares(
            batch_start,
            ended,
            [
                elapsed + loaded.seconds + (0.0 if decision.local else upload_share)
                for _, decision, (elapsed, loaded) in done
            ],
        )
        for (m, decision, (elapsed, loaded)), (start, end) in zip(done, spans, strict=True):
            index, size = m.rec.index, len(m.frame)
            upload = 0.0 if decision.local else upload_share
            if index in ran:
                why = CHAIN
            elif index in kept_now:
                why = BECOME
            else:
                why = PLACED[placed.get(index, "dispatched")]
            finish(
                (
                    index,
                    1,
                    start,
                    end,
                    elapsed,
                    loaded.nbytes,
                    size,
                    loaded.seconds,
                    upload,
                    why in NEAR,
                    why,
                )
            )
            if not decision.local:  # into the host's store, or to the server
                how = STORE if m.location and not ctx.switches(m.rec).upload_all else UPLOAD
                move((size, upload_share, how, index, -1, False))
            elif m.fused:  # its child ran from its value, in this worker's memory
                move((size, 0.0, LOCAL, index, m.rec.children[0], True))


def _shares(start: float, end: float, parts: list[float]) -> list[tuple[float, float]]:
    """``[start, end]`` cut into consecutive spans, one per part, each at least its part
    (plus an equal share of what the parts leave; scaled down if they exceed it)."""
    if not parts:
        return []
    total = end - start
    used = sum(parts)
    if used > total > 0:
        parts = [p * total / used for p in parts]
        used = total
    rest = max(0.0, total - used) / len(parts)
    out = []
    at = start
    for part in parts:
        out.append((at, at + part + rest))
        at += part + rest
    return out
