"""Sub-runs: the graph a task returned runs as a run of its own (:mod:`dagrt.expand`).

Nobody waits for a sub-run. The worker that ran the task submits the graph as run
``<run>.t<index>`` on the tasks stream it reads (signed with its secret, with the
run's locality options and task timeout; its meta names the task and keeps the
signed shape of the value returned), lists it in the parent run's ``subs`` set, and
acknowledges the task's entry: the task holds no thread, no slot and no connection
while its graph runs. The sub-run's end, in the script that finishes or fails it,
adds an entry ``{r: run, t: index, x: 1}`` to the tasks stream; whichever worker
reads it *resumes* the task: it completes the task with the graph's result (its
children become ready as after any completion) or fails it with the graph's
failure, then deletes the sub-run.

Crashes: the submission is claimed once per sub-run (``claim``, ``SET NX``), so a
task taken over from a worker that died calls its function again and finds its
sub-run claimed (or already going): it only lets go of its entry. A resume entry is
an ordinary stream entry, taken over like any other. A parent run that ends stops
and deletes its sub-runs (:func:`~dagrt.submission.stop`, ``cleanup``), and the
client's watchdog looks for a run's work in its sub-runs too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio

from .. import keys as K
from .. import submission
from ..caching import CacheOptions, nested_plan
from ..clientlog import log_finished, log_submitted
from ..distributed import DistributedRuntime, task_error
from ..exceptions import RunNotFoundError, SerializationError, StorageError
from ..expand import nested_failure, returned_graph
from ..keys import sub_run_id
from ..locality import LocalityOptions
from ..outcomes import tag_matches
from ..records import TaskRecord, sign, verify
from ..serialize import dumps, loads
from ..storage import RedisStorage, Storage
from ..storage import commands as C
from ..storage.redis import redact
from .completer import Completer
from .runs import RunContext
from .settings import WorkerSettings
from .tasklog import TaskLog

__all__ = ["Resumed", "SubRunFailed", "SubRuns"]

log = logging.getLogger("dagrt.worker")


def _policy(ctx: RunContext) -> CacheOptions | None:
    """The cache policy of the run (its meta's ``cache``; none if it has none)."""
    raw = ctx.meta.get(b"cache")
    if not raw:
        return None
    try:
        return CacheOptions.model_validate_json(raw)
    except ValueError:  # (damaged, or from another dagrt: the graph runs uncached)
        return None


class SubRunFailed(Exception):
    """The graph a task returned failed (or cannot run): ``cause`` and ``where`` (a
    traceback text naming the task of the graph that raised) are what the task fails
    with."""

    def __init__(self, cause: BaseException, where: str) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.where = where


@dataclass
class Resumed:
    """A task whose graph ran: its value, its attempt, and when it began and how long
    its call took (on the worker that ran it)."""

    value: Any
    attempt: int
    started: float
    execution: float


class SubRuns:
    """Submits the graphs tasks return and resumes their tasks, for one worker."""

    def __init__(
        self,
        storage: Storage,
        settings: WorkerSettings,
        worker_id: str,
        completer: Completer,
        log: TaskLog,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.worker = worker_id
        self.completer = completer
        self.log = log
        self._reader = DistributedRuntime(  # reads a sub-run's outputs as a client would
            storage=storage, secret=settings.keyring, stream=settings.stream, client_id=worker_id
        )
        self._known_functions: set[str] = set()

    async def submit(
        self,
        ctx: RunContext,
        rec: TaskRecord,
        value: Any,
        acks: list[Any],
        started: float,
        execution: float,
        attempt: int,
    ) -> str:
        """Task ``rec`` returned the graph ``value``: submit it as the task's sub-run
        (unless an earlier attempt did), then acknowledge the task's entry; the sub-run's
        id. A value whose nodes cannot run raises :class:`SubRunFailed`."""
        try:
            dag, shape = returned_graph(value, rec.key)
            frame = dumps(shape, what=f"the shape of the graph task {rec.key} returned")
        except (TypeError, SerializationError) as exc:
            raise SubRunFailed(exc, "") from exc
        sub = sub_run_id(ctx.run_id, rec.index)
        storage = self.storage
        ttl = ctx.ttl_ms / 1000
        with anyio.CancelScope(shield=True):  # whole or not at all (as a client's)
            if not ctx.stopped and await self._claim(sub, ttl):
                try:
                    plan = await nested_plan(_policy(ctx), dag)
                    submitted = time.time()
                    spec = await submission.submit(
                        storage,
                        dag,
                        sub,
                        stream=self.settings.stream,
                        secret=self.settings.keyring,
                        ttl=ttl,
                        known_functions=self._known_functions,
                        client_id=self.worker,
                        locality=LocalityOptions.from_meta(ctx.meta),
                        task_timeout=ctx.task_timeout,
                        cache=plan,
                        priority=_int_or_zero(ctx.meta.get(b"priority")),
                        parent=submission.Parent(
                            ctx.run_id,
                            rec.index,
                            started,
                            execution,
                            attempt,
                            sign(frame, self.settings.keyring, sub, "shape"),
                        ),
                    )
                except StorageError:
                    raise  # (the entry stays pending: taken over, the claim is found)
                except Exception as exc:  # a function or argument of the graph, say
                    await storage.adelete(K.RunKeys(sub).claim)
                    raise SubRunFailed(exc, "") from exc
                self._log_submitted(ctx, rec, dag, sub, submitted)
                # The parent run may have ended meanwhile, its sub-runs stopped before
                # this one was listed: then stop this one too (nothing else would).
                if await storage.ahget(ctx.keys.meta, "status") != b"running":
                    await submission.stop(storage, spec.keys, "cancelled", self.settings.keyring)
                    await submission.cleanup(storage, spec, "cancelled")
            # (else an earlier attempt submitted it: its end resumes the task)
            self.completer.failpoints.hit("after_expand", rec.name, self.worker)
            await self.completer.ack(acks)
        return sub

    async def _claim(self, sub: str, ttl: float) -> bool:
        """Is this worker to submit sub-run ``sub``? Yes if nobody claimed it, or if its
        claimant died before the sub-run was written (else an earlier attempt of the
        task submitted it, or its live worker is writing it now)."""
        rk = K.RunKeys(sub)
        set_claim = C.set_(rk.claim, self.worker, ex=ttl, nx=True)
        [first] = await self.storage.apipeline([set_claim])
        if first:
            return True
        owner, written = await self.storage.apipeline(
            [C.get(rk.claim), C.Cmd(("HEXISTS", rk.meta, "fns"))]
        )
        if written:
            return False
        other = owner.decode() if owner is not None and owner.decode() != self.worker else None
        if other is not None and await self.storage.aexists(K.worker_alive(other)):
            return False
        await self.storage.apipeline([C.set_(rk.claim, self.worker, ex=ttl)])
        return True

    async def resume(self, ctx: RunContext, rec: TaskRecord) -> Resumed | None:
        """The sub-run of task ``rec`` ended: the task's value; None if it did not end
        by itself (it was stopped: so was its parent run), or if what says it failed is
        forged (:mod:`dagrt.outcomes`). A failed graph raises :class:`SubRunFailed`; so
        does one whose keys are gone."""
        sub = sub_run_id(ctx.run_id, rec.index)
        meta = await self.storage.ahgetall(K.RunKeys(sub).meta)
        spec = submission.spec_of(sub, meta)
        if spec is None:
            gone = RunNotFoundError(
                f"the graph task {rec.key} returned ran as run {sub}, whose keys are gone"
                " (expired, deleted, or the server was flushed)"
            )
            raise SubRunFailed(gone, "")
        status = meta.get(b"status", b"").decode(errors="replace")
        secret = self.settings.keyring
        if status == "failed":
            failed = meta.get(b"failed_task", b"").decode(errors="replace")
            stored = await self.storage.aget(spec.keys.error(failed))
            if stored is None:
                if secret is not None:  # (nothing says it failed but its meta: unchecked)
                    log.warning("run %s says it failed, with no error record: ignored", sub)
                    return None
                raise SubRunFailed(RunNotFoundError(f"run {sub} failed; its error is gone"), "")
            err = task_error(stored, sub, secret)
            if err is None:  # forged (logged): not its end; the real one puts an entry too
                return None
            self._log_finished(sub, "failed", meta, err.task)
            raise SubRunFailed(*nested_failure(err, sub))
        if status != "finished":
            return None
        if secret is not None and not tag_matches(
            secret, meta.get(b"end_tag", b""), sub, "finished"
        ):  # its meta says finished, and the tag its end writes there is not
            log.warning("run %s says it finished, without the tag of its end: ignored", sub)
            return None
        try:
            shape = loads(
                verify(meta[b"shape"], self.settings.keyring, sub, "shape"), what="a graph's shape"
            )
            if secret is not None:  # (which outputs fill the shape, in which order)
                signed = verify(meta[b"outputs_sig"], secret, sub, "outputs")
                if signed != meta.get(b"outputs"):
                    raise ValueError(f"the outputs of run {sub} are not the ones signed")
        except (KeyError, ValueError, SerializationError) as exc:
            raise SubRunFailed(exc, "") from exc
        values = await self._reader.outputs(spec)
        self._log_finished(sub, "finished", meta, None)
        return Resumed(
            shape.fill(values),
            attempt=int(meta.get(b"then_attempt", b"1")),
            started=float(meta.get(b"then_started", b"0")),
            execution=float(meta.get(b"then_exec", b"0")),
        )

    async def delete(self, ctx: RunContext, rec: TaskRecord) -> None:
        """Delete the sub-run of task ``rec`` (its task completed or failed)."""
        sub = sub_run_id(ctx.run_id, rec.index)
        with anyio.CancelScope(shield=True):
            spec = await submission.joined(self.storage, sub)
            if spec is not None:
                await submission.cleanup(self.storage, spec, "finished")
            await self.storage.apipeline([C.Cmd(("SREM", ctx.keys.subs, sub))])

    def _log_submitted(
        self, ctx: RunContext, rec: TaskRecord, dag: Any, sub: str, submitted: float
    ) -> None:
        metrics = self.log.metrics
        if metrics is not None:
            storage = self.storage
            url = redact(storage.config.url) if isinstance(storage, RedisStorage) else ""
            log_submitted(
                metrics,
                sub,
                dag,
                submitted,
                self.worker,
                url,
                (ctx.run_id, rec.key),
                priority=_int_or_zero(ctx.meta.get(b"priority")),
            )

    def _log_finished(
        self, sub: str, status: Any, meta: dict[bytes, bytes], failed: str | None
    ) -> None:
        metrics = self.log.metrics
        if metrics is not None:
            log_finished(
                metrics,
                sub,
                status,
                submitted=float(meta.get(b"created", b"0")) or time.time(),
                submit_seconds=0.0,
                failed_task=failed,
                recorder=None,
            )


def _int_or_zero(raw: bytes | None) -> int:
    """The run's priority from its meta (0 if it has none): its sub-runs inherit it."""
    try:
        return int(raw or 0)
    except ValueError:
        return 0
