"""Chains: a task run apart, then each child its completion keeps, one after another.

Everything that is not a tiny task goes this way, each chain in an asyncio task of
its own: ``async def`` functions (on the loop), sync functions (in the executor's
threads), tasks with retries and backoff, entries taken over from a worker that
went silent. For each task: its inputs (:class:`~.inputs.Inputs`), the call with
its retries (:class:`~.executor.Executor`), then its completion
(:class:`~.completer.Completer`), whose reply may hand this worker a child (Wukong's
"become"): the chain goes on with it, in the fast lane if it is tiny. The chain's
stream entry is acknowledged (inside the ``complete`` script) only when the chain
ends.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..exceptions import (
    SerializationError,
    StorageConnectionError,
    StorageError,
    WorkerLostError,
)
from ..records import TaskRecord, load_spec
from ..resources import Capacity
from ..serialize import dumps_frame
from ..storage import Storage
from ..storage import commands as C
from ..tasks import retry_wait
from .completer import Completer, Decision, Made, traceback_of
from .executor import Executor, Outcome
from .failpoints import Failpoints
from .fast_lane import FastLane
from .inputs import Inputs, Loaded
from .runs import FunctionCache, RunContext
from .subruns import SubRunFailed, SubRuns
from .tasklog import TaskLog

__all__ = ["MAX_LOST", "Chains"]

MAX_LOST = 3  # deliveries of one task whose workers died before a task counts as lost


class Chains:
    """Runs chains for one worker (see the module's text)."""

    def __init__(
        self,
        storage: Storage,
        worker_id: str,
        executor: Executor,
        functions: FunctionCache,
        inputs: Inputs,
        completer: Completer,
        fast: FastLane,
        log: TaskLog,
        failpoints: Failpoints,
        running: dict[Any, str],
        forget: Callable[[str], None],
        subruns: SubRuns,
    ) -> None:
        self.storage = storage
        self.worker = worker_id
        self.executor = executor
        self.functions = functions
        self.inputs = inputs
        self.completer = completer
        self.fast = fast
        self.log = log
        self.failpoints = failpoints
        self.running = running  # entry id -> key of the task it runs now (heartbeats)
        self.forget = forget  # drops what the worker holds of a run that ended
        self.subruns = subruns  # graphs that tasks return (dagrt.expand)
        self.capacity: Capacity | None = None  # the worker's resources (dagrt.resources)

    async def run(
        self,
        ctx: RunContext,
        acks: list[Any],
        index: int,
        check_done: bool,
        attempt: int = 1,
        failed: int = 0,
        placed: str = "dispatched",
        graph: tuple[Any, float, float] | None = None,
        resume: bool = False,
    ) -> None:
        """Run a task, then each child the completion hands back, one at a time.

        ``check_done``: the entry was taken over from a worker that went silent: its
        chain's tasks that worker completed are found done (their decisions stand),
        and the first that is not done is the one it was running; the tasks after
        that one it never started, so they run as they are. ``attempt`` and
        ``failed``: the first task's attempt, and its failures so far; ``placed``: why
        the first task runs on this worker (the log says it; the others are kept).
        ``graph``: the first task was called already (in the fast lane) and returned a
        graph: the value, when the call began and how long it took; its sub-run is
        submitted (:mod:`dagrt.expand`). ``resume``: the first task's sub-run ended
        (the entry is its end's): the task completes with its result.
        """
        current: int | None = index
        if check_done:
            placed = "taken-over"
        if resume:
            current = await self._resume(ctx, ctx.record(index), acks)
            placed = "become"
        elif graph is not None:
            await self._expand(ctx, ctx.record(index), acks, graph, attempt)
            current = None
        while current is not None and not ctx.stopped:
            current, was_done = await self._run_task(
                ctx, current, acks, check_done, placed, attempt, failed
            )
            check_done = check_done and was_done
            placed = "become"
            attempt, failed = 1, 0
            if current is not None and not check_done and self.fast.eligible(ctx, current):
                handoffs = await self.fast.run(ctx, [(acks, current)], ran_kept={current})
                current = None
                if handoffs:
                    _, current, attempt, failed, placed, graph = handoffs[0]
                    if graph is not None:  # it returned a graph
                        await self._expand(ctx, ctx.record(current), acks, graph, attempt)
                        current = None
        if ctx.stopped:
            self.forget(ctx.run_id)

    async def _run_task(
        self,
        ctx: RunContext,
        index: int,
        acks: list[Any],
        check_done: bool,
        placed: str,
        attempt: int = 1,
        failed: int = 0,
    ) -> tuple[int | None, bool]:
        """Run one task and complete it; the child to run next, if the script kept one,
        and whether the task was found done (``check_done``) rather than run.

        ``attempt`` numbers its first attempt here and ``failed`` counts the failures
        it had before (each uses up one of its retries, and the backoff goes on).
        """
        rec = ctx.record(index)
        log = self.log
        self.running[acks[0]] = rec.key
        if check_done:
            # A reclaimed entry: the task may be done already (its worker died
            # later); then its output is stored and the remembered decision holds.
            rk = ctx.keys
            status, previous, lost, _ = await self.storage.apipeline(
                [
                    C.hget(rk.meta, "status"),
                    C.hget(rk.done, str(index)),
                    C.hincrby(rk.lost, str(index), 1),
                    C.expire(rk.lost, ctx.ttl_ms / 1000),
                ]
            )
            if status != b"running":
                # The run ended (cancelled, failed, cleaned up) since its worker went
                # silent, and this worker has not heard yet: run nothing of it; a count
                # of lost deliveries made for a run whose keys are gone goes too.
                ctx.stopped = True
                if status is None:
                    await self.storage.adelete(rk.lost)
                await self.completer.ack(acks)
                return None, True
            if previous is not None:
                return (await self.completer.again(ctx, rec, acks)).kept, True
            if int(lost) > MAX_LOST:
                exc = WorkerLostError(
                    f"the worker running task {rec.key} died {int(lost) - 1} times"
                )
                await self.completer.fail_now(ctx, rec, exc, "", int(lost), acks)
                return None, False
            # The attempt of the worker that went silent ended with it: say so (its
            # task-started may be in the log), and count this one as the next.
            attempt = int(lost) + 1
            lost_exc = WorkerLostError(
                "the worker running this attempt went silent; "
                f"worker {self.worker} took the task over"
            )
            log.emit([log.failed(ctx, rec, lost_exc, "", attempt - 1, final=False)])
        if failed:  # the first attempt failed in the fast lane: its retry waits first
            await anyio.sleep(retry_wait(rec.retry_delay, failed))
        started = time.time()
        log.emit([log.started(ctx, rec, started, attempt)])
        moves = log.moves()
        try:
            if rec.leaves is None and rec.spec_key is not None:
                frame = await self.storage.aget(rec.spec_key)
                if frame is None:
                    return await self._run_ended(ctx, rec, attempt, acks)
                load_spec(rec, frame)  # (checked against its digest, then unpickled)
            fn = await self.functions.get(rec.fn, ctx.python)
            [loaded] = await self.inputs.load(ctx, [rec], moves)
        except SerializationError as exc:
            cause = exc.__cause__ or exc
            await self.completer.fail_now(ctx, rec, cause, traceback_of(exc), attempt, acks)
            return None, False
        if loaded is None:  # the run's data is gone: it ended
            return await self._run_ended(ctx, rec, attempt, acks)
        if loaded.error is not None:  # an input that cannot be had: never retried
            error = loaded.error
            first = error.__cause__ if isinstance(error, SerializationError) else None
            await self.completer.fail_now(
                ctx, rec, first or error, traceback_of(error), attempt, acks
            )
            return None, False
        self.failpoints.hit("before_run", rec.name, self.worker)
        if rec.resources and self.capacity is not None:  # (held from admission, mostly)
            await self.capacity.acquire(acks[0], rec.resources)
        try:
            outcome = await self._call(ctx, rec, fn, loaded, attempt, failed)
        finally:
            if rec.resources and self.capacity is not None:
                self.capacity.release(acks[0])
        if outcome.stopped:  # the run ended while the task waited for a thread
            return await self._run_ended(ctx, rec, attempt, acks)
        if outcome.attempt != attempt:  # a retry: the task's span is its last attempt's
            started = outcome.attempt_started
        if not outcome.ok:
            assert outcome.error is not None
            await self.completer.fail_now(
                ctx, rec, outcome.error, outcome.traceback, outcome.attempt, acks
            )
            return None, False
        if outcome.frame is None:  # it returned a graph: it completes when that has run
            graph = (outcome.value, started, outcome.ended - outcome.started)
            await self._expand(ctx, rec, acks, graph, outcome.attempt)
            return None, False
        made = self.completer.made(
            ctx, rec, acks, outcome.value, outcome.frame, attempt=outcome.attempt
        )
        sent = time.time()
        decision = await self._complete(ctx, made)
        if decision is None:  # too large for the server, or refused: the task failed
            return None, False
        upload = 0.0
        if not decision.local:  # (an output that stayed here moved nowhere)
            upload = time.time() - sent
            if moves is not None:
                how = "store" if made.location and not ctx.switches(rec).upload_all else "upload"
                moves.add(len(outcome.frame), upload, how, index, None, False)
        log.finished(ctx, rec, outcome, started, loaded, moves, upload, placed)
        return decision.kept, False

    def _call(
        self,
        ctx: RunContext,
        rec: TaskRecord,
        fn: Any,
        loaded: Loaded,
        attempt: int,
        failed: int,
    ) -> Awaitable[Outcome]:
        """The task's call with its retries (:meth:`Executor.run`)."""
        log = self.log
        return self.executor.run(
            fn,
            rec,
            loaded.values,
            on_retry=lambda rec, exc, tb, n: log.emit(
                [log.failed(ctx, rec, exc, tb, n, final=False)]
            ),
            attempt=attempt,
            retries=max(0, rec.retries - failed),
            on_attempt=lambda n: log.emit([log.started(ctx, rec, time.time(), n)]),
            alive=lambda: not ctx.stopped,
        )

    async def _complete(self, ctx: RunContext, made: Made) -> Decision | None:
        """Complete one task; its decision, or None if it failed instead (its output
        over the server's limit, or refused by the server)."""
        try:
            [decision] = await self.completer.complete(ctx, [made])
        except StorageError as exc:
            if isinstance(exc, StorageConnectionError):
                raise  # (the entry stays pending: taken over once the server answers)
            tb = traceback_of(exc)
            await self.completer.fail_now(ctx, made.rec, exc, tb, made.attempt, made.acks)
            return None
        return decision

    async def _expand(
        self,
        ctx: RunContext,
        rec: TaskRecord,
        acks: list[Any],
        graph: tuple[Any, float, float],
        attempt: int,
    ) -> None:
        """Task ``rec`` returned a graph (``graph``: the value, when the call began, how
        long it took): submit it (its end resumes the task, on whichever worker reads
        that entry); the task's entry is let go of. A graph that cannot run fails the
        task."""
        value, started, elapsed = graph
        try:
            await self.subruns.submit(ctx, rec, value, acks, started, elapsed, attempt)
        except SubRunFailed as exc:
            await self.completer.fail_now(ctx, rec, exc.cause, exc.where, attempt, acks)

    async def _resume(self, ctx: RunContext, rec: TaskRecord, acks: list[Any]) -> int | None:
        """The sub-run of task ``rec`` ended (``acks``: the entry that says so): complete
        the task with its result, or fail it with its failure, then delete the sub-run;
        the child the completion kept, if any."""
        self.running[acks[0]] = rec.key
        rk = ctx.keys
        status, previous = await self.storage.apipeline(
            [C.hget(rk.meta, "status"), C.hget(rk.done, str(rec.index))]
        )
        if status != b"running":  # (the run's end deletes its sub-runs)
            await self.completer.ack(acks)
            return None
        if previous is not None:
            # Completed before, by a worker that died before it deleted the sub-run (and
            # ran the child it kept, if any): the remembered decision holds.
            remembered = await self.completer.again(ctx, rec, acks)
            await self.subruns.delete(ctx, rec)
            return remembered.kept
        log = self.log
        try:
            resumed = await self.subruns.resume(ctx, rec)
        except SubRunFailed as exc:
            await self.completer.fail_now(ctx, rec, exc.cause, exc.where, 1, acks)
            await self.subruns.delete(ctx, rec)
            return None
        except StorageConnectionError:
            raise  # (the entry stays pending: taken over once the server answers)
        except Exception as exc:  # an output gone, a value that does not load: never retried
            await self.completer.fail_now(ctx, rec, exc, traceback_of(exc), 1, acks)
            await self.subruns.delete(ctx, rec)
            return None
        if resumed is None:  # stopped with its parent run (or not ended: not ours)
            await self.completer.ack(acks)
            return None
        value = resumed.value
        try:
            frame = await anyio.to_thread.run_sync(
                lambda: dumps_frame(value, what=f"result of task {rec.key}", by_value=False)
            )
        except SerializationError as exc:
            await self.completer.fail_now(ctx, rec, exc, traceback_of(exc), resumed.attempt, acks)
            await self.subruns.delete(ctx, rec)
            return None
        made = self.completer.made(ctx, rec, acks, value, frame, attempt=resumed.attempt)
        # Stored, always: made again, the task would return its graph, not this value.
        made.local = False
        sent = time.time()
        decision = await self._complete(ctx, made)
        self.failpoints.hit("after_resume", rec.name, self.worker)
        await self.subruns.delete(ctx, rec)
        if decision is None:
            return None
        moves = log.moves()
        upload = time.time() - sent
        if moves is not None:
            moves.add(len(frame), upload, "upload", rec.index, None, False)
        outcome = Outcome(
            True,
            value,
            frame,
            attempt=resumed.attempt,
            started=resumed.started,
            ended=resumed.started + resumed.execution,
        )
        log.finished(ctx, rec, outcome, resumed.started, Loaded([]), moves, upload, "expanded")
        return decision.kept

    async def _run_ended(
        self, ctx: RunContext, rec: TaskRecord, attempt: int, acks: list[Any]
    ) -> tuple[None, bool]:
        """A task that did not run because its run ended (its data is gone, or the
        worker heard it ended while the task waited)."""
        ctx.stopped = True
        self.log.emit([self.log.ended(ctx, rec, attempt)])
        await self.completer.ack(acks)
        return None, False
