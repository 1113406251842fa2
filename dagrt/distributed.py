"""The client side of the distributed runtime.

``DistributedRuntime.run`` writes a DAG to storage (:func:`dagrt.submission.submit`),
blocks on the run's event stream until it finishes or fails (``XREAD BLOCK``,
no polling), keeping the run's keys alive meanwhile (:func:`~dagrt.submission.renew`),
fetches the outputs, and deletes the run's keys, whatever happened (a cancelled
run is stopped first, so workers start nothing more of it).

The runtime talks to a server that exists: a worker pool's, or the server of a
:class:`~dagrt.LocalCluster` that its starter (the client) runs and stops.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from . import keys as K
from . import lanes, submission
from .caching import KEEP_BUDGET, CachePlan
from .exceptions import (
    IntegrityError,
    ResourceError,
    RunNotFoundError,
    RunStalledError,
    SignatureError,
    StorageError,
    TaskError,
)
from .graph import DAG
from .keyring import Keyring
from .locality import LocalityOptions
from .objects import (
    HostStore,
    Location,
    StoreError,
    default_root,
    is_location,
    namespace_of,
    this_host,
)
from .outcomes import OUTCOMES, check_event, exception_of, open_error
from .resources import describe
from .sealing import open_value, output_place, unseal
from .secret import check_authenticated, shared_keyring, unauthenticated_allowed
from .serialize import loads
from .storage import RedisStorage, Storage
from .tasks import check_timeout

__all__ = ["DistributedRuntime"]

log = logging.getLogger("dagrt.client")

_BLOCK = 5.0  # seconds per blocking read of a run's events
_BIG = 1 << 20
_NO_WORKERS = 60.0  # seconds of a quiet run before checking that workers live
DEFAULT_STALL_TIMEOUT = 30.0  # seconds without progress before the watchdog looks


class DistributedRuntime:
    """Runs DAGs on worker processes through a Redis-compatible server.

    ``address`` is the server's URL, or give ``storage`` (which the runtime does not
    close). ``ttl``: seconds a run's keys live unless renewed; the runtime renews
    them while it waits, so only the runs of a client that vanished expire.
    ``stall_timeout``: seconds a run may go without a task completing before the
    watchdog checks that it still has work queued, running or waiting for a retry;
    a run with tasks left and none of that is stopped with
    :class:`~dagrt.RunStalledError` (a long task is never one: its entry is pending).
    ``secret``: the pool's (a :class:`~dagrt.keyring.Keyring`, or its text; default
    ``DAGRT_SECRET``/``DAGRT_SECRET_FILE``); without one, a server that is not on this
    machine's loopback is refused unless ``unauthenticated`` (or
    ``DAGRT_UNAUTHENTICATED=1``) says the pool is knowingly without one.
    A :class:`~dagrt.runtime.Runtime`.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        storage: Storage | None = None,
        secret: Keyring | bytes | str | None = None,
        ttl: float = submission.DEFAULT_TTL,
        stream: str = K.tasks_stream(),
        locality: LocalityOptions | dict[str, Any] | None = None,
        client_id: str = "",
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        task_timeout: float | None = None,
        unauthenticated: bool | None = None,
    ) -> None:
        if address is None and storage is None:
            raise ValueError("DistributedRuntime needs a server: an address or a storage")
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        check_stall_timeout(stall_timeout)
        self.stall_timeout = float(stall_timeout)
        self.task_timeout = check_timeout(task_timeout, "task_timeout")
        self.address = address
        self.locality = LocalityOptions.of(locality)
        self.secret = Keyring.of(secret) if secret is not None else shared_keyring()
        # a server not on loopback needs a secret, unless told (DAGRT_UNAUTHENTICATED=1)
        self.unauthenticated = (
            unauthenticated if unauthenticated is not None else unauthenticated_allowed()
        )
        self.ttl = ttl
        self.stream = stream
        self.storage = storage
        self.client_id = client_id
        self._known_functions: set[str] = set()
        self._waits: dict[str, anyio.CancelScope] = {}  # run id -> its wait, for cancel()
        self._own_storage = storage is None

    async def __aenter__(self) -> DistributedRuntime:
        check_authenticated(
            self.secret, self.url, "a dagrt client", unauthenticated=self.unauthenticated
        )
        if self.storage is None:
            assert self.address is not None
            self.storage = RedisStorage(self.address)
        try:
            await self.storage.aping()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            if self.storage is not None and self._own_storage:
                await self.storage.aclose()

    @property
    def threads(self) -> None:
        """None: tasks run in the worker processes."""
        return None

    @property
    def url(self) -> str | None:
        if self.address is not None:
            return self.address
        return self.storage.config.url if isinstance(self.storage, RedisStorage) else None

    @property
    def event_storage(self) -> Storage | None:
        """The server's storage: workers log there too."""
        return self.storage

    async def release(self, pins: list[str]) -> None:
        """Delete the entries of persisted values (:mod:`dagrt.persist`)."""
        storage = self.storage
        if storage is None:
            return
        for start in range(0, len(pins), 1000):
            await storage.adelete(*(K.cache_entry(p) for p in pins[start : start + 1000]))

    def cancel(self, run_id: str) -> None:
        """End the wait of ``run_id`` now: ``run()`` then stops the run on the server
        (no task of it starts any more) and deletes it."""
        wait = self._waits.get(run_id)
        if wait is not None:
            wait.cancel()

    async def run(
        self,
        dag: DAG,
        run_id: str,
        recorder: Any = None,
        on_submitted: Callable[[float], None] | None = None,
        cache: CachePlan | None = None,
        priority: int = 0,
    ) -> list[Any]:
        """Run ``dag`` on the workers (their events are their own: ``recorder`` is unused);
        ``on_submitted`` hears the seconds the submission took, once it is done;
        ``cache``: what the run reads from and writes to the cache, and whether it keeps
        what it finished if it does not finish (:mod:`dagrt.caching`)."""
        storage = self.storage
        assert storage is not None, "DistributedRuntime is not started (use `async with`)"
        wait = self._waits[run_id] = anyio.CancelScope()
        try:
            # Whole or not at all: a submission cut short would leave a run that workers
            # may have begun, with nobody to stop it or clean it up.
            with anyio.CancelScope(shield=True):
                spec = await submission.submit(
                    storage,
                    dag,
                    run_id,
                    stream=self.stream,
                    secret=self.secret,
                    ttl=self.ttl,
                    known_functions=self._known_functions,
                    client_id=self.client_id,
                    locality=self.locality,
                    outputs_store=self._outputs_store(),
                    task_timeout=self.task_timeout,
                    cache=cache,
                    priority=priority,
                )
            if on_submitted is not None:
                on_submitted(spec.submit_seconds)
            keep = None
            if cache is not None and cache.keep_failed is not None:
                keep = functools.partial(
                    submission.keep_finished, storage, spec, dag, cache, self.secret
                )
            stay = cache.stay if cache is not None else set()
            return await self._follow(storage, spec, wait, keep, stay)
        finally:
            del self._waits[run_id]

    async def outputs(self, spec: submission.RunSpec) -> list[Any]:
        """The outputs of a run that finished, in order (a worker completing the task
        whose returned graph the run was)."""
        storage = self.storage
        assert storage is not None, "DistributedRuntime is not started (use `async with`)"
        return await self._outputs(storage, spec)

    async def _follow(
        self,
        storage: Storage,
        spec: submission.RunSpec,
        wait: anyio.CancelScope,
        keep: Callable[[], Awaitable[int]] | None = None,
        stay: set[int] | frozenset[int] = frozenset(),
    ) -> list[Any]:
        """Wait for the run's end and fetch its outputs (but those that ``stay``:
        persisted, None here); stop it unless it ended by itself; ``keep`` what it
        finished if it did not finish; delete its keys whatever happened."""
        status = "failed"
        try:
            with wait:
                await self._wait(storage, spec)
                values = await self._outputs(storage, spec, stay)
            if wait.cancelled_caught:  # cancel()
                raise asyncio.CancelledError(f"run {spec.run_id} was cancelled")
            status = "finished"
            return values
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class() | KeyboardInterrupt):
                status = "cancelled"
            if not isinstance(exc, TaskError):  # (a failed run stopped itself)
                # Workers start nothing more of a run that is not running.
                with anyio.CancelScope(shield=True):
                    try:
                        await submission.stop(storage, spec.keys, status, self.secret)
                    except StorageError:
                        pass
            raise
        finally:
            with anyio.CancelScope(shield=True):
                if keep is not None and status != "finished":
                    try:
                        with anyio.fail_after(KEEP_BUDGET):
                            await keep()
                    except Exception as exc:  # (never in place of the run's own outcome)
                        log.warning("run %s: could not keep its outputs: %r", spec.run_id, exc)
                try:
                    await submission.cleanup(storage, spec, status)
                except StorageError as exc:  # the keys expire by their TTL anyway
                    log.warning("could not clean up run %s: %s", spec.run_id, exc)

    async def _wait(self, storage: Storage, spec: submission.RunSpec) -> None:
        """Block on the run's events until it finishes; raise its failure.

        The run's keys get their TTL again every third of it (a run may outlive its
        TTL); each quiet wake-up checks that they are still there. Keys that are gone
        (expired, deleted, the server flushed) raise :class:`RunNotFoundError`. A run
        that went ``stall_timeout`` without progress is checked for work in the tasks
        stream (:meth:`_stalled`).
        """
        rk = spec.keys
        last: str | bytes = "0-0"
        every = spec.ttl / 3
        renewed = time.monotonic() - spec.submit_seconds  # the first keys' TTL began then
        quiet_since = time.monotonic()
        watch = _Watch(time.monotonic())
        block = min(_BLOCK, every, self.stall_timeout / 2)
        while True:
            reply = await storage.axread({rk.events: last}, count=100, block=block)
            now = time.monotonic()
            if now - renewed >= every:
                if not await submission.renew(storage, spec):
                    raise _gone(spec)
                renewed = now
            elif not reply and not await storage.aexists(rk.meta):
                raise _gone(spec)
            if not reply:
                if watch.forged:
                    await self._unverified_end(storage, spec, watch, last)
                if now - quiet_since > _NO_WORKERS:
                    await self._warn_if_no_workers(storage)
                    quiet_since = now
                await self._stalled(storage, spec, watch, now)
                continue
            for entry_id, fields in reply[0][1]:
                last = entry_id
                kind = fields.get(b"e", b"")
                if kind not in OUTCOMES:
                    continue
                if not check_event(self.secret, spec.run_id, fields):  # (logged)
                    watch.forged += 1
                    if kind == b"failed":
                        watch.unverified = fields.get(b"err", b"")
                    continue
                if kind == b"finished":
                    return
                if kind == b"failed" and b"err" in fields:
                    err = task_error(fields[b"err"], spec.run_id, self.secret)
                    if err is not None:
                        raise err
                    continue
                # cancelled, or stopped as failed by its own client's watchdog
                raise asyncio.CancelledError(f"run {spec.run_id} was cancelled")

    async def _unverified_end(
        self, storage: Storage, spec: submission.RunSpec, watch: _Watch, last: str | bytes
    ) -> None:
        """At a quiet wake-up after events that failed their check: if the run is not
        running any more and no event came after ``last`` (the script that ends a run
        writes its event in the same step: an authentic one would be there), raise
        :class:`SignatureError`. (A worker with another secret than this client's that
        failed the run; or a third party that stopped it: a run that is not running
        dispatches nothing more.) What an unverified error record says is quoted, as
        text only."""
        status = await storage.ahget(spec.keys.meta, "status")
        if status is None:
            raise _gone(spec)
        if status == b"running":
            return
        if await storage.axread({spec.keys.events: last}, count=1):
            return  # (it ended since the last read: its event is read next, checked)
        said = ""
        if watch.unverified:
            record = open_error(None, spec.run_id, watch.unverified)  # (text only)
            if record is not None:
                said = (
                    f" Its error record, unverified, says: {str(record.get('exc_type'))[:100]}:"
                    f" {str(record.get('message'))[:500]}"
                )
        raise SignatureError(
            f"run {spec.run_id} was stopped (status {status.decode(errors='replace')[:40]!r}),"
            f" and the {watch.forged} event(s) that said how failed their check against this"
            " client's secret: written by a worker with another secret (DAGRT_SECRET), or"
            f" forged by a third party with access to the server.{said}"
        )

    async def _stalled(
        self, storage: Storage, spec: submission.RunSpec, watch: _Watch, now: float
    ) -> None:
        """The watchdog, at a quiet wake-up: when no task completed for
        ``stall_timeout``, raise :class:`RunStalledError` if the run has tasks left and
        no entry in the tasks stream (pending: running, waiting for a retry, holding a
        kept child; or not delivered yet), or if its entries wait undelivered while a
        live worker of the stream reads nothing with nothing to do (:meth:`_stuck`).
        Its progress is the last entry of its progress stream (one read a wake-up)."""
        if self.stall_timeout == float("inf"):
            return
        rk = spec.keys
        head = await storage.axrevrange(rk.progress, count=1)
        newest = head[0][0] if head else None
        if newest != watch.newest:
            watch.newest, watch.since = newest, now
            return
        if now - watch.since < self.stall_timeout or now - watch.checked < self.stall_timeout:
            return
        watch.checked = now
        found = await submission.outstanding(storage, rk, self.stream)
        if isinstance(found, str):  # only entries not delivered yet: look again soon
            watch.checked = now - self.stall_timeout + min(self.stall_timeout, 10.0) / 2
            entry, _, lane = found.partition(" ")
            if lane:  # in a lane: does a live worker hold its resources?
                await self._unheld(storage, spec, entry, lane, now - watch.since)
            else:
                await self._stuck(storage, spec, watch, entry, now)
            return
        watch.undelivered = None
        if found != 0:
            return
        left = await storage.ahget(rk.meta, "left")
        raise RunStalledError(
            f"run {spec.run_id} stalled: {int(left or 0)} of its {spec.n_tasks} tasks are"
            f" left, and none is queued, running or waiting for a retry (no entry of the"
            f" run is pending or undelivered in the tasks stream {self.stream!r}); no task"
            f" completed for {now - watch.since:.0f} s. An entry was lost or removed from"
            f" the stream; the run was stopped.{_forged(watch)}"
        )

    async def _stuck(
        self, storage: Storage, spec: submission.RunSpec, watch: _Watch, entry: str, now: float
    ) -> None:
        """The run's entry ``entry`` waits undelivered and nothing of the run is pending:
        raise :class:`RunStalledError` if it is the same entry as at an earlier look and
        a live worker of this stream, idle since a look at which the entry waited
        already, has beaten twice more with nothing in flight and no entry read. (Such
        a worker reads at once what waits: one that reads nothing for two heartbeats is
        stuck. Busy workers, none at all, or a stream without workers: the run waits.)
        Each idle worker's state is its baseline until it reads or takes work."""
        states = await self._stream_workers(storage)
        if watch.undelivered != entry:
            watch.undelivered = entry
            watch.idle = {}
        stuck = []
        for w, state in states.items():
            beats, reads, in_flight = state
            base = watch.idle.get(w)
            if in_flight:
                watch.idle.pop(w, None)
            elif base is None or base[1] != reads:
                watch.idle[w] = state  # idle from this look on
            elif beats >= base[0] + 2:
                stuck.append(w)
        for gone in set(watch.idle) - set(states):
            del watch.idle[gone]
        if not stuck:
            return
        left = await storage.ahget(spec.keys.meta, "left")
        raise RunStalledError(
            f"run {spec.run_id} stalled: {int(left or 0)} of its {spec.n_tasks} tasks are"
            f" left; its entry {entry} waits undelivered in the tasks stream"
            f" {self.stream!r}, and worker(s) {', '.join(sorted(stuck))} beat with nothing"
            f" in flight yet read no entry: their read loop is stuck (a fault in dagrt;"
            f" their log may say more). No task completed for {now - watch.since:.0f} s;"
            f" the run was stopped.{_forged(watch)}"
        )

    async def _unheld(
        self, storage: Storage, spec: submission.RunSpec, entry: str, lane: str, quiet: float
    ) -> None:
        """The run's entry ``entry`` waits undelivered in ``lane``: raise
        :class:`ResourceError` if live workers read the stream and none of them can hold
        the lane's resources (the workers that could have gone; with none at all, the run
        waits for one, as any). Workers that can hold it and do not read it (their last
        heartbeat says) are rung: they read the registry of lanes again."""
        workers = await lanes.live_workers(storage, self.stream)
        missing = lanes.unheld([lane], workers)
        if not workers:
            return
        if not missing:  # some can hold it: if none reads it yet, they are told to
            if not any(lane in (info.get("lanes") or ()) for info in workers.values()):
                await storage.apipeline([lanes.ring(self.stream)])
            return
        left = await storage.ahget(spec.keys.meta, "left")
        raise ResourceError(
            f"run {spec.run_id}: {int(left or 0)} of its {spec.n_tasks} tasks are left; its"
            f" entry {entry} waits in lane {lane!r}, which needs {describe(missing[lane])},"
            f" and none of the {len(workers)} live worker(s) of stream {self.stream!r} has"
            f" it (those that had it are gone); no task completed for {quiet:.0f} s. The run"
            " was stopped."
        )

    async def _stream_workers(self, storage: Storage) -> dict[str, tuple[int, int, int]]:
        """The live workers of this client's stream: id -> (beats, entries read, entries
        in flight), as their last heartbeat says."""
        states: dict[str, tuple[int, int, int]] = {}
        for w, info in (await lanes.live_workers(storage, self.stream)).items():
            try:
                states[w] = (int(info["beats"]), int(info["reads"]), int(info["in_flight"]))
            except (KeyError, TypeError, ValueError):
                continue  # (a worker of an older dagrt)
        return states

    async def progress(self, run_id: str, total: int) -> AsyncIterator[int]:
        """Tasks done so far, each time workers complete some (blocks on the run's
        progress stream); ends when all are done or the run's keys are gone."""
        storage = self.storage
        assert storage is not None
        rk = K.RunKeys(run_id)
        last: str | bytes = "0-0"
        done = 0
        while done < total:
            reply = await storage.axread({rk.progress: last}, count=1000, block=_BLOCK)
            if not reply:
                if not await storage.aexists(rk.meta):
                    return
                continue
            for entry_id, fields in reply[0][1]:
                last = entry_id
                tasks = fields.get(b"t", b"")
                if tasks and tasks != b"-1":
                    done += tasks.count(b",") + 1
                done += int(fields.get(b"s", 0))  # tasks the cache spared, at the start
            yield done

    async def _warn_if_no_workers(self, storage: Storage) -> None:
        if not await self._stream_workers(storage):
            log.warning(
                "no live dagrt worker reads the tasks stream %r on %s: the run waits for one",
                self.stream,
                storage,
            )

    def _outputs_store(self) -> tuple[str, str] | None:
        """The store of this host for the server's pool, if there is one here: the
        workers that keep their outputs there (``--store auto`` on this machine, as a
        LocalCluster's do) leave the run's outputs in it, and this client maps them."""
        url = self.url
        if url is None:
            return None
        root = default_root(namespace_of(url))
        return (this_host(), str(root)) if root.is_dir() else None

    async def _outputs(
        self,
        storage: Storage,
        spec: submission.RunSpec,
        stay: set[int] | frozenset[int] = frozenset(),
    ) -> list[Any]:
        wanted = sorted(set(spec.outputs) - stay)
        frames = await storage.amget([spec.keys.output(i) for i in wanted])
        secret = self.secret
        try:
            found = spec.places(secret)
        except ValueError as exc:
            raise IntegrityError(f"the found table of run {spec.run_id}: {exc}") from exc
        values: dict[int, Any] = {}
        for i, frame in zip(wanted, frames, strict=True):
            if frame is None:
                raise RunNotFoundError(f"output {i} of run {spec.run_id} is missing")
            places = found.get(i) or [output_place(spec.run_id, i)]
            what = f"output {i} of run {spec.run_id} ({spec.keys.output(i)!r})"
            load = functools.partial(open_value, secret, places, what=what)
            if len(frame) > _BIG:
                values[i] = await anyio.to_thread.run_sync(load, frame)
                continue
            payload = unseal(secret, places, frame, what=what)
            if not is_location(payload):
                values[i] = loads(payload, what=what)
                continue
            mapped = await self._stored_output(storage, spec, i, Location.decode(payload))
            if mapped is not None:  # (this host's store: its objects are not sealed)
                values[i] = await anyio.to_thread.run_sync(
                    functools.partial(loads, mapped, what=what)
                )
            else:  # the server's copy
                values[i] = await anyio.to_thread.run_sync(load, await self._copy(storage, spec, i))
        return [values.get(i) for i in spec.outputs]

    async def _copy(self, storage: Storage, spec: submission.RunSpec, index: int) -> bytes:
        """The server's copy of an output kept in a host's store (``upload_all``)."""
        copy = await storage.aget(spec.keys.copy(index))
        if copy is None:
            raise RunNotFoundError(f"output {index} of run {spec.run_id} is missing")
        return copy

    async def _stored_output(
        self, storage: Storage, spec: submission.RunSpec, index: int, where: Location
    ) -> memoryview | None:
        """An output a worker kept in this host's store (see :meth:`_outputs_store`):
        mapped from there, else the server's copy (``upload_all``). (Workers keep a
        run's outputs only in the store the client names: its data endpoints serve
        the same files, so they have nothing to add when the mapping fails.)"""
        assert spec.outputs_store is not None, "only workers of this host's store keep outputs"
        store = HostStore(spec.outputs_store[1])
        try:
            return await anyio.to_thread.run_sync(store.map, spec.run_id, index, where.size)
        except StoreError as exc:
            if spec.upload_all and await storage.aexists(spec.keys.copy(index)):
                return None  # (read from the server's copy)
            raise StoreError(
                f"output {index} of run {spec.run_id} was kept in the store {store.root} of"
                f" host {where.host} and cannot be read: {exc}"
            ) from exc


@dataclass(slots=True)
class _Watch:
    """What the watchdog knows of a run: the newest progress entry seen, since when,
    when it last looked for the run's work, and what it saw of entries that wait."""

    since: float
    newest: bytes | None = None
    checked: float = float("-inf")
    undelivered: str | None = None  # the run's first entry not delivered, at the last look
    forged: int = 0  # events of the run that said it ended and failed their check
    unverified: bytes = b""  # the error record of the last of them that said it failed
    idle: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # workers then idle


def _forged(watch: _Watch) -> str:
    """What a stalled run's message says of the forged events it ignored, if any."""
    if not watch.forged:
        return ""
    return (
        f" {watch.forged} event(s) of the run that said it ended failed their check and"
        " were ignored: forged, or written by a worker with another secret than this"
        " client's (DAGRT_SECRET)."
    )


def check_stall_timeout(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"stall_timeout must be a number of seconds > 0, got {value!r}")


def _gone(spec: submission.RunSpec) -> RunNotFoundError:
    return RunNotFoundError(
        f"run {spec.run_id} is gone from the server: its keys expired (ttl {spec.ttl:g} s),"
        " were deleted, or the server was flushed"
    )


def task_error(stored: bytes, run_id: str, secret: Keyring | None) -> TaskError | None:
    """The :class:`~dagrt.TaskError` of a failed task of run ``run_id`` from its stored
    error record (a ``failed`` event's ``err``, or the run's error key); None if the
    record is forged (:func:`dagrt.outcomes.open_error`, logged). Its exception is
    unpickled only if the record's tag was checked; else rebuilt from plain parts, or
    left out (the error has its type's name, text and traceback)."""
    record = open_error(secret, run_id, stored)
    if record is None:
        return None
    exception = exception_of(record, verified=secret is not None)
    record.pop("exception", None)
    record.pop("plain", None)
    try:
        err = TaskError.from_record(record, exception)
    except (KeyError, TypeError, ValueError) as exc:  # (a record of another shape)
        log.warning("run %s: an error record that does not read: %s", run_id, exc)
        return None
    if exception is not None:
        err.__cause__ = exception
    return err
