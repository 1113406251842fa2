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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from .cachekeys import task_keys
from .validated import options_of

if TYPE_CHECKING:
    from .graph import DAG
    from .storage import Storage

__all__ = [
    "DAY",
    "CacheOptions",
    "CachePlan",
    "cache_plan",
    "cache_storage",
    "nested_plan",
    "frontier",
    "needed",
]

DAY = 24 * 3600.0


class CacheOptions(BaseModel):
    """A client's cache policy (``Client(cache=...)``: this model, a dict of its fields,
    ``True`` for ``all_tasks=True`` or ``False`` for ``enabled=False``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

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

    def settle(self, dag: DAG, found: set[int]) -> None:
        """The cache had the values of ``found``: note those the run needs, and the
        tasks skipped (a task found that only found tasks needed is skipped too)."""
        need = needed(dag, found)
        self.found = found & need
        self.skipped = set(range(len(dag))) - need


async def cache_plan(dag: DAG, options: CacheOptions, resume: bool) -> CachePlan | None:
    """:meth:`CachePlan.of`, in a thread when it hashes (arguments may be large)."""
    if resume or options.all_tasks or any(f.cache for f in dag._distinct):
        return await anyio.to_thread.run_sync(CachePlan.of, dag, options, resume)
    return CachePlan.of(dag, options, resume)


async def nested_plan(options: CacheOptions | None, dag: DAG) -> CachePlan | None:
    """The plan of the graph a task returned, under its run's policy ``options``: its
    cached tasks read and write the cache as any run's; what it finished is not kept if
    it fails (its parent run keeps its own)."""
    if options is None:
        return None
    return await cache_plan(dag, options.model_copy(update={"keep_failed": False}), False)


_STORAGES: dict[str | None, Storage] = {}


def cache_storage(url: str | None) -> Storage:
    """Where in-process runs keep cache entries: the server at ``url``, or this
    process's memory (one store for all its clients: entries outlive a client, not the
    process)."""
    storage = _STORAGES.get(url)
    if storage is None:
        from .storage import InMemoryStorage, RedisStorage

        storage = _STORAGES[url] = RedisStorage(url) if url else InMemoryStorage()
    return storage


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
