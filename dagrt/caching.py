"""Cached and resumable runs: which tasks' outputs are kept, found, and skipped.

A task marked ``@task(cache=...)`` (or every task, under ``Client(cache=
CacheOptions(all_tasks=True))``) keeps its output under ``dagrt:cache:<key>``, the key
made of its function's content and its inputs (:mod:`dagrt.cachekeys`), for a time.
A later run, from any client, after any restart, that has a task with the same key
takes its value from there instead of running it; the tasks that only fed tasks so
found do not run either (they are *skipped*: the run needs nothing of them).

A run that fails (or is cancelled) keeps what it finished for a day
(``keep_failed``): the outputs of its finished tasks that a task not finished would
read, and its outputs, under the same keys. Running the same graph again with
``resume=True`` (or ``client.retry(future)``) reads every task's key: it runs only
what did not finish, and what depends on it. A task whose inputs changed has another
key: it runs again, and so does everything downstream of it.

:class:`CachePlan` is what one run does with the cache; both runtimes carry it out
(workers: ``submission.submit`` copies the entries found into the run's output keys
on the server, in one round trip, and workers write the entries of the tasks they
run; in-process: the values are read before the run and written after it).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from . import keys as K
from .cachekeys import task_keys
from .exceptions import SerializationError, StorageError
from .keyring import Keyring
from .persist import pinned_reads
from .sealing import cache_place, is_sealed, open_origin_note, open_value, seal
from .serialize import dumps
from .storage import InMemoryStorage, RedisStorage
from .storage import commands as C
from .storage.redis import RedactsURLs
from .validated import options_of

if TYPE_CHECKING:
    from .graph import DAG
    from .storage import Storage

#: seconds a run that did not finish may spend keeping what it finished; past them its
#: outcome is reported and nothing is kept (a warning says so)
KEEP_BUDGET = 60.0

log = logging.getLogger("dagrt.client")

__all__ = [
    "DAY",
    "CacheOptions",
    "CachePlan",
    "cache_plan",
    "cache_storage",
    "nested_plan",
    "read_values",
    "write_values",
    "frontier",
    "needed",
]

DAY = 24 * 3600.0


class CacheOptions(RedactsURLs, BaseModel):
    """A client's cache policy (``Client(cache=...)``: this model, a dict of its fields,
    ``True`` for ``all_tasks=True`` or ``False`` for ``enabled=False``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, hide_input_in_errors=True)

    enabled: bool = Field(
        True, description="False: no task reads or writes the cache, no failed run keeps"
    )
    all_tasks: bool = Field(
        False, description="cache every task that does not say @task(cache=False)"
    )
    ttl: float = Field(
        7 * DAY, gt=0, description="seconds an entry lives (a task's cache=<seconds> wins)"
    )
    read: bool = Field(
        True, description="False: run cached tasks all the same, and write their entries anew"
    )
    keep_failed: bool = Field(
        True, description="a run that fails or is cancelled keeps what it finished, to resume"
    )
    keep_failed_ttl: float = Field(DAY, gt=0, description="seconds a failed run's outputs live")
    url: str | None = Field(
        None,
        description="where in-process runs keep entries: a redis:// URL (default: this"
        " process's memory, shared by its clients); runs on workers use the pool's server",
    )

    @classmethod
    def of(cls, value: CacheOptions | dict[str, Any] | bool | None) -> CacheOptions:
        return options_of(
            cls, value, name="cache", true={"all_tasks": True}, false={"enabled": False}
        )


@dataclass
class CachePlan:
    """What one run does with the cache: the keys of the tasks it reads (``read``) and
    of those it writes, with their time to live (``write``); what it keeps if it fails.
    Filled in by the runtime: ``found`` (tasks whose value the cache had) and
    ``skipped`` (tasks the run needs nothing of, then)."""

    read: dict[int, str]
    write: dict[int, tuple[str, float]]
    keep_failed: float | None  # seconds a failed run's outputs live; None: not kept
    options: CacheOptions | None = None  # the policy it was made under (for sub-runs)
    found: set[int] = field(default_factory=set)
    skipped: set[int] = field(default_factory=set)
    #: persisted values the run reads (index -> pin; in ``read`` too: :mod:`dagrt.persist`)
    pinned: dict[int, str] = field(default_factory=dict)
    #: outputs the run persists (in ``write`` under their pins): not read back
    stay: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, dag: DAG, options: CacheOptions, resume: bool = False) -> CachePlan | None:
        """The plan of ``dag`` under ``options`` (``resume``: read every task's key);
        None when the run has nothing to do with the cache (it then costs nothing)."""
        if not options.enabled:
            return None
        funcs = dag._funcs
        cached = {
            f: _ttl(f.cache, options)
            for f in dag._distinct
            if f.cache is not False and (f.cache or options.all_tasks)
        }
        if not cached and not resume:
            if not options.keep_failed:
                return None
            return cls({}, {}, options.keep_failed_ttl, options)
        writes = [i for i, f in enumerate(funcs) if f in cached]
        reads: list[int] | range = writes if options.read else []
        if resume:  # every task's, but those that say their output is not to reuse
            reads = [i for i, f in enumerate(funcs) if f.cache is not False]
        keys = task_keys(dag, [*writes, *reads])
        return cls(
            read={i: keys[i] for i in reads},
            write={i: (keys[i], cached[funcs[i]]) for i in writes},
            keep_failed=options.keep_failed_ttl if options.keep_failed else None,
            options=options,
        )

    async def to_keep(self, dag: DAG, done: set[int]) -> dict[int, str]:
        """The tasks of a run that did not finish whose outputs it keeps, with their keys
        (made in a thread): its :func:`frontier` among ``done`` (those found too), but
        what the cache had or the run wrote there already (those entries stay as they
        are, with their own time to live) and tasks marked ``cache=False``."""
        keep = sorted(
            i
            for i in frontier(dag, done) - self.found - set(self.write)
            if dag._funcs[i].cache is not False  # (its output is not to be reused)
        )
        if not keep:
            return {}
        # (hashing only: a run's end that stops waiting for it leaves the thread behind)
        keys = await anyio.to_thread.run_sync(task_keys, dag, keep, abandon_on_cancel=True)
        return {i: keys[i] for i in keep}

    def settle(self, dag: DAG, found: set[int]) -> None:
        """The cache had the values of ``found``: note those the run needs, and the
        tasks skipped (a task found that only found tasks needed is skipped too)."""
        need = needed(dag, found)
        self.found = found & need
        self.skipped = set(range(len(dag))) - need


async def cache_plan(
    dag: DAG,
    options: CacheOptions,
    resume: bool,
    pins: dict[int, tuple[str, float]] | None = None,
) -> CachePlan | None:
    """:meth:`CachePlan.of`, in a thread when it hashes (arguments may be large), with
    the persisted values ``dag`` reads (its stand-ins) and the outputs it persists
    (``pins``: index -> (pin, seconds); they always run: :mod:`dagrt.persist`)."""
    if resume or options.all_tasks or any(f.cache for f in dag._distinct):
        plan = await anyio.to_thread.run_sync(CachePlan.of, dag, options, resume)
    else:
        plan = CachePlan.of(dag, options, resume)
    pinned = pinned_reads(dag)
    if not pinned and not pins:
        return plan
    if plan is None:
        plan = CachePlan({}, {}, None, options)
    plan.pinned = pinned
    plan.read.update(pinned)
    for i, write in (pins or {}).items():
        plan.read.pop(i, None)
        plan.write[i] = write
        plan.stay.add(i)
    return plan


async def nested_plan(options: CacheOptions | None, dag: DAG) -> CachePlan | None:
    """The plan of the graph a task returned, under its run's policy ``options``: its
    cached tasks read and write the cache as any run's, its stand-ins read what they
    stand for; what it finished is not kept if it fails (its parent run keeps its own)."""
    if options is None:  # (no policy: only the persisted values it reads, if any)
        options = CacheOptions(enabled=False)
    return await cache_plan(dag, options.model_copy(update={"keep_failed": False}), False)


_STORAGES: dict[str | None, Storage] = {}


def cache_storage(url: str | None) -> Storage:
    """Where in-process runs keep cache entries: the server at ``url``, or this
    process's memory (one store for all its clients: entries outlive a client, not the
    process)."""
    storage = _STORAGES.get(url)
    if storage is None:
        storage = _STORAGES[url] = RedisStorage(url) if url else InMemoryStorage()
    return storage


async def read_values(
    storage: Storage,
    dag: DAG,
    cache: CachePlan | None,
    secret: Keyring | None = None,
    held: dict[int, Any] | None = None,
) -> dict[int, Any]:
    """For a run in this process: the values the cache has of the tasks ``cache`` reads
    that the run needs (one ``MGET``; ``cache`` is settled: found, skipped); ``held``:
    values of some of them at hand (persisted in this process), not read. With a
    ``secret``, each entry's seal is checked first (:mod:`dagrt.sealing`; an entry a
    failed run kept may be sealed for the output it was, as its origin note says):
    :class:`~dagrt.exceptions.IntegrityError` names an entry that fails."""
    if cache is None or not cache.read:
        return {}
    held = held or {}
    order = sorted(i for i in cache.read if i not in held)
    entries = [K.cache_entry(cache.read[i]) for i in order]
    frames = await storage.amget(entries)
    there = {i: frame for i, frame in zip(order, frames, strict=True) if frame is not None}
    cache.settle(dag, set(there) | set(held))
    found = {i: held[i] for i in cache.found if i in held}
    for i in sorted(cache.found - set(found)):  # (only those the run needs are loaded)
        entry = K.cache_entry(cache.read[i])
        what = f"the cache's value of {dag._nodes[i].key} ({entry!r})"
        places = [cache_place(entry)]
        if secret is not None and is_sealed(there[i]):
            note = await storage.aget(K.cache_origin(entry))
            origin = open_origin_note(secret, entry, note)
            places += [origin] if origin else []
        found[i] = await anyio.to_thread.run_sync(
            functools.partial(open_value, secret, places, there[i], what=what)
        )
    return found


async def write_values(
    storage: Storage,
    dag: DAG,
    cache: CachePlan,
    *,
    done: list[bool],
    values: list[Any],
    held: set[int],
    failed: bool,
    secret: Keyring | None = None,
) -> None:
    """After a run in this process: write the entries of the cached tasks it ran and,
    if it ``failed`` (or was cancelled), keep what it finished that a resumed run needs
    (``cache.keep_failed``). ``done``: which tasks finished (those found too);
    ``values``: their values (None once dropped, unless ``held``)."""
    if len(cache.write) == len(cache.stay) and not (failed and cache.keep_failed is not None):
        return  # (the common case: nothing to write)
    ran = {i for i, d in enumerate(done) if d} - cache.found
    entries: list[tuple[str, int, float]] = [
        (key, i, ttl)
        for i, (key, ttl) in cache.write.items()
        if i in ran and i not in cache.stay  # (persisted: the runtime holds them)
    ]
    if failed and cache.keep_failed is not None:
        kept = await cache.to_keep(dag, ran | cache.found)
        entries += [(key, i, cache.keep_failed) for i, key in kept.items()]
    # (a value dropped once its children had it is not needed by a resumed run)
    entries = [e for e in entries if values[e[1]] is not None or e[1] in held]

    def frames() -> list[C.Cmd]:
        cmds = []
        for key, i, ttl in entries:
            try:
                frame = dumps(values[i], what=f"the value of {dag._nodes[i].key}")
            except SerializationError as exc:
                log.warning("not cached: %s", exc)
                continue
            entry = K.cache_entry(key)
            cmds.append(C.set_(entry, seal(secret, cache_place(entry), frame), ex=ttl))
        return cmds

    cmds = await anyio.to_thread.run_sync(frames)
    if isinstance(storage, InMemoryStorage):  # (this process's: drop what expired)
        storage.sweep()
    if cmds:
        try:
            await storage.apipeline(cmds)
        except StorageError as exc:
            log.warning("could not write %d cache entries: %s", len(cmds), exc)


def _ttl(cache: bool | float | None, options: CacheOptions) -> float:
    return float(cache) if isinstance(cache, float) else options.ttl


def needed(dag: DAG, found: set[int]) -> set[int]:
    """The tasks a run of ``dag`` needs when the values of ``found`` are at hand: those
    found, and the ancestors of its outputs that no found task stands for."""
    parents = dag._parents
    need: set[int] = set()
    stack = list(dag._output_index)
    while stack:
        i = stack.pop()
        if i in need:
            continue
        need.add(i)
        if i not in found:
            stack.extend(parents[i])
    return need


def frontier(dag: DAG, done: set[int]) -> set[int]:
    """Of the tasks ``done`` in a run that did not finish, those whose values a resumed
    run needs: a child not done reads them, or they are outputs (the others stand
    behind these: a resumed run skips them)."""
    children = dag._children
    outputs = set(dag._output_index)
    return {i for i in done if i in outputs or any(c not in done for c in children[i])}
