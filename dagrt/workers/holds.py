"""Delayed I/O on a worker: the children of its large outputs that it waits for.

A completion in mode ``W`` (:mod:`dagrt.workers.completer`) makes this worker the
waiter of the children of a large output it holds in memory that are not ready yet:
the completion of each one's last parent, on any worker, claims the child's entry for
this worker and puts a note on its inbox (``complete.lua``). :class:`Holds` keeps what
the worker waits for: the consumer reads the inbox while there is any (``waiting``),
the entries the notes bring are ``woken`` (run here, placed "delayed"), and each wait
ends on a timer, the run's ``delayed_io_max_wait_s``, for the children that did not
come (``unwait.lua``). Each wait's end is logged (``hold-ended``: hit, miss, timeout).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..exceptions import StorageError
from ..scheduler import send, unwait_cmd
from ..storage import Storage
from .completer import Completer
from .runs import RunContext
from .tasklog import TaskLog

__all__ = ["Holds"]

log = logging.getLogger("dagrt.worker")


@dataclass(slots=True)
class _Hold:
    """Children of one large output that this worker waits for (delayed I/O)."""

    task: int
    waiting: set[int]
    nbytes: int
    since: float
    over: anyio.Event = field(default_factory=anyio.Event)  # every child came


class Holds:
    """What one worker waits for (see the module's text). ``spawn`` runs a wait's timer
    in the worker's task group (False: the worker does not serve)."""

    def __init__(
        self,
        storage: Storage,
        worker_id: str,
        completer: Completer,
        tasklog: TaskLog,
        counts: dict[str, int],
        spawn: Callable[[Coroutine[Any, Any, None]], bool],
    ) -> None:
        self.storage = storage
        self.worker = worker_id
        self.completer = completer
        self.log = tasklog
        self.counts = counts
        self._spawn = spawn
        self.woken: set[bytes] = set()  # entries read from notes, not admitted yet
        self._holds: dict[tuple[str, int], _Hold] = {}  # (run, child) -> what waits for it

    @property
    def waiting(self) -> bool:
        """Does this worker wait for any child (then it reads its inbox)?"""
        return bool(self._holds)

    def hold(self, ctx: RunContext, task: int, children: list[int], nbytes: int) -> None:
        """This worker is now the waiter of ``children`` of ``task`` (whose large output
        it holds in memory): the completion of the last parent of each hands it here,
        through a note of the inbox. After the run's ``delayed_io_max_wait_s`` it waits
        no more for those that did not come (``unwait``)."""
        held = _Hold(task, set(children), nbytes, time.monotonic())
        if not self._spawn(self._wait(ctx, held)):
            return  # (the registrations lapse: completions pass over a dead waiter)
        for child in children:
            self._holds[(ctx.run_id, child)] = held
        self.counts["held"] = self.counts.get("held", 0) + len(children)

    def woke(self, ctx: RunContext, entry_id: bytes, index: int) -> None:
        """A task this worker waited for came (its entry, from a note)."""
        self.woken.discard(entry_id)
        self.counts["woken"] = self.counts.get("woken", 0) + 1
        held = self._holds.pop((ctx.run_id, index), None)
        if held is not None:
            held.waiting.discard(index)
            if not held.waiting:
                held.over.set()
            # a hit, unless the held output left the cache meanwhile (its byte budget)
            found = self.completer.values.holds(ctx.run_id, held.task)
            self.log.hold_ended(
                ctx,
                held.task,
                index,
                held.nbytes,
                "hit" if found else "miss",
                time.monotonic() - held.since,
            )

    async def _wait(self, ctx: RunContext, held: _Hold) -> None:
        """The wait's timer: after the task's wait (its switches), end it for the children
        that did not come (a child already handed here keeps its place until its note is
        read, or as long again at most: while this worker holds anything, it reads its
        inbox)."""
        wait = ctx.switches(ctx.record(held.task)).wait
        try:
            with anyio.move_on_after(wait):
                await held.over.wait()
            late = sorted(held.waiting)
            if not late or ctx.stopped:
                return
            try:
                [gone] = await send(self.storage, [unwait_cmd(ctx.keys, self.worker, late)])
            except StorageError as exc:  # (the registrations stay: harmless, see unwait.lua)
                log.warning("worker %s: could not stop waiting: %s", self.worker, exc)
                return
            waited = time.monotonic() - held.since
            for child in map(int, gone):
                held.waiting.discard(child)
                self._holds.pop((ctx.run_id, child), None)
                self.log.hold_ended(ctx, held.task, child, held.nbytes, "timeout", waited)
            self.counts["hold_timeout"] = self.counts.get("hold_timeout", 0) + len(gone)
            if held.waiting:
                held.over = anyio.Event()
                with anyio.move_on_after(wait):
                    await held.over.wait()
        finally:
            for child in held.waiting:
                self._holds.pop((ctx.run_id, child), None)
