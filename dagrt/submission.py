"""The client's side of a run in storage: submit it, keep it alive, stop it, clean it up.

:func:`submit` writes a DAG as a run (functions by content, the signed task
table, counters, the run's meta) and dispatches its roots, in pipelined chunks.
:func:`renew` keeps the keys of a run that outlives their TTL. :func:`stop`
ends a running run (cancelled, or failed on the client's side), and
:func:`cleanup` deletes every key of an ended run; both tell the workers on the
control stream, so that no task of the run starts after it ended.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import keys as K
from . import lanes
from .caching import CachePlan
from .exceptions import SerializationError
from .graph import DAG
from .keyring import Keyring
from .locality import LocalityOptions
from .objects.location import MAGIC as LOCATION_MAGIC
from .outcomes import event_tag
from .records import (
    PICKLED,
    TABLE,
    FunctionEntry,
    cache_table_tag,
    encode_record,
    sign,
    spec_digest,
    table_tag,
    verify,
)
from .resources import check_priority, task_lanes
from .scheduler import STOP
from .sealing import HEAD as SEAL_HEAD
from .sealing import KIND as SEAL_KIND
from .sealing import (
    cache_place,
    found_table,
    open_found_table,
    open_origin_note,
    origin_note,
    output_place,
)
from .serialize import PYTHON, dumps, dumps_function, pack
from .storage import Script, Storage
from .storage import commands as C

__all__ = [
    "DEFAULT_TTL",
    "Parent",
    "FUNCTION_TTL",
    "TOMBSTONE_TTL",
    "RunSpec",
    "cleanup",
    "joined",
    "keep_finished",
    "spec_of",
    "outstanding",
    "renew",
    "stop",
    "submit",
]

DEFAULT_TTL = 24 * 3600.0  # seconds a run's keys live if nobody renews or cleans them up
TOMBSTONE_TTL = 3600.0  # seconds the end marker of a finished run stays
FUNCTION_TTL = 30 * 24 * 3600.0  # seconds a stored function lives after its last submission
CONTROL_MAXLEN = lanes.CONTROL_MAXLEN  # run ends kept on the control stream
OUTSTANDING = Script.from_package("outstanding.lua")
KEEP = Script.from_package("keep.lua")
OUTSTANDING_CAP = 200_000  # stream entries the watchdog looks at in one call, at most


@dataclass
class Parent:
    """What a sub-run keeps of the task whose returned graph it is (:mod:`dagrt.expand`):
    its run and index, when its attempt began, how long its call took, which attempt,
    and the signed shape of the value it returned (where the graph's values go)."""

    run_id: str
    index: int
    started: float
    execution: float
    attempt: int
    shape: bytes


@dataclass
class RunSpec:
    """What the client keeps about a submitted run."""

    run_id: str
    keys: K.RunKeys
    n_tasks: int
    outputs: tuple[int, ...]
    roots: int
    functions: int  # functions stored by this submission (new, or gone from storage)
    submit_seconds: float
    spec_keys: list[str]
    ttl: float = DEFAULT_TTL
    upload_all: bool = False  # outputs in a host's store have a copy on the server
    outputs_store: tuple[str, str] | None = None  # (host, root): the client maps from it
    found: bytes | None = None  # the signed found table (dagrt.sealing), if tasks were found

    def places(self, secret: Keyring | None) -> dict[int, list[bytes]]:
        """Tasks found in the cache -> the places their values may be sealed for (the
        run's found table, checked; ``ValueError`` if it does not verify)."""
        if secret is None or self.found is None:
            return {}
        return open_found_table(verify(self.found, secret, self.run_id, "found"))

    def output_keys(self) -> list[str]:
        """Every key an output of the run may be in."""
        keys = [self.keys.output(i) for i in range(self.n_tasks)]
        if self.upload_all:
            keys += [self.keys.copy(i) for i in range(self.n_tasks)]
        return keys


async def submit(
    storage: Storage,
    dag: DAG,
    run_id: str,
    *,
    stream: str = K.tasks_stream(),
    secret: Keyring | None = None,
    ttl: float = DEFAULT_TTL,
    known_functions: set[str] | None = None,
    client_id: str = "",
    locality: LocalityOptions | None = None,
    outputs_store: tuple[str, str] | None = None,
    task_timeout: float | None = None,
    parent: Parent | None = None,
    cache: CachePlan | None = None,
    priority: int = 0,
) -> RunSpec:
    """Write ``dag`` as run ``run_id`` and dispatch its roots, in pipelined chunks.

    Functions go to content-addressed keys. ``known_functions`` remembers which
    this client has stored: those are checked (and their TTL renewed) in one
    round trip first, and stored again if they are gone (expired, or the server
    was flushed), so that workers never meet a run whose function is missing.
    Everything of the run gets a TTL, so a run whose client vanished expires.
    ``locality``: the run's :class:`~dagrt.LocalityOptions` (default: all on but
    ``upload_all``), written to its meta for the workers; a task function's own
    (``@task(locality=...)``) goes with it in the function table, as the switches
    that differ from the run's. ``task_timeout``: the seconds a call of a task may take,
    for functions that do not say (``@task(timeout=...)``). ``outputs_store``: the host id and
    root of a store this client can map from (it runs on that host): outputs of
    the run that workers of that store keep there are not sent through the server.
    ``parent``: the run is the graph a task returned (a sub-run): its meta says whose,
    the parent run lists it, and its end puts an entry on the stream that completes
    that task (``complete.lua``, ``fail.lua``). ``cache``: the run's
    :class:`~dagrt.caching.CachePlan`: the entries found are copied into the run's
    output keys first (one round trip), those tasks count as done and the tasks they
    stand for are left out (``cache.found``, ``cache.skipped``); the entries to write
    go in the run's ``cache`` hash, for the workers. ``priority``: the run's, added to
    each task's (:mod:`dagrt.resources`); a task that needs resources or has a priority
    other than 0 goes to its lane (:func:`dagrt.lanes.prepare` checks first that a live
    worker can hold it).
    """
    t0 = time.perf_counter()
    rk = K.RunKeys(run_id)
    task_lanes, join_lanes = await _lanes(storage, stream, dag, run_id, priority)
    found, found_places = await _found_in_cache(storage, rk, dag, cache, ttl, secret)
    found_signed = (
        sign(found_table(found_places), secret, run_id, "found") if found_places else None
    )
    skipped = cache.skipped if cache is not None else set()
    chosen = locality or LocalityOptions()
    locality = chosen.effective()
    run_meta = locality.meta()
    upload_all = locality.upload_all
    nodes = dag._nodes
    n = len(nodes)
    cmds: list[C.Cmd] = []

    # functions, by content; the run's table names each once
    table: list[FunctionEntry] = []
    positions: dict[int, int] = {}
    frames: dict[str, bytes] = {}
    for node in nodes:
        tf = node.func
        if id(tf) in positions:
            continue
        try:
            # The task function itself: by reference when its module is importable
            # (workers then show real source lines in tracebacks), else by value.
            digest, frame = dumps_function(tf)
        except SerializationError as exc:
            raise SerializationError(f"function of task {node.key} ({node.name}): {exc}") from exc
        positions[id(tf)] = len(table)
        entry: FunctionEntry = (digest, tf.name, tf.retries, tf.retry_delay, tf.threads)
        options: dict[str, Any] = {}
        if tf.locality is not None:  # the task's switches that differ from the run's
            mine = tf.locality.under(chosen).effective()
            upload_all = upload_all or mine.upload_all
            differ = {k: v for k, v in mine.meta().items() if run_meta[k] != v}
            if differ:
                options["locality"] = differ
        timeout = tf.timeout if tf.timeout is not None else task_timeout
        if timeout is not None:
            options["timeout"] = timeout
        if tf.resources:
            options["resources"] = tf.resources
        if options:
            entry = (*entry, options)
        table.append(entry)
        frames[digest] = frame
    missing = await _functions_to_store(storage, list(frames), known_functions)
    for digest in missing:
        cmds.append(C.set_(K.function(digest), frames[digest], ex=FUNCTION_TTL))
        if known_functions is not None:
            known_functions.add(digest)

    # task records and counters
    parents, children = dag._parents, dag._children
    spec_keys: list[str] = []
    fields: dict[str, bytes] = {}
    payloads: list[bytes] = []  # (signed as one table: records.table_tag)
    deps: dict[str, int] = {}
    for i, node in enumerate(nodes):
        record, big = encode_record(node, parents[i], children[i], positions[id(node.func)])
        if big is not None:
            digest = spec_digest(big)
            record[6] = digest
            spec_keys.append(rk.spec(digest))
            cmds.append(C.set_(spec_keys[-1], big, ex=ttl))
        try:
            packed = pack(record)
        except SerializationError:  # an int beyond 64 bits: pickle the arguments
            record[5:] = [PICKLED, dumps((record[6], True), what=f"arguments of {node.key}")]
            packed = pack(record)
        fields[str(i)] = (TABLE if secret is not None else b"U") + packed
        payloads.append(packed)
        if (found and i in found) or (skipped and i in skipped):
            continue  # (done; or the run needs nothing of it: found ones stand for it)
        waits = len(parents[i]) if not found else sum(p not in found for p in parents[i])
        if waits:
            deps[str(i)] = waits
    for chunk in C.chunks(list(fields.items()), 1000):
        cmds.append(C.hset(rk.tasks, dict(chunk)))
    for chunk in C.chunks(list(deps.items()), 5000):
        cmds.append(C.hset(rk.deps, dict(chunk)))
    for chunk in C.chunks(list(task_lanes.items()), 5000):
        cmds.append(C.hset(rk.lanes, dict(chunk)))
    outputs = dag._output_index
    left = n - len(found) - len(skipped)
    cmds.append(
        C.hset(
            rk.meta,
            {
                "status": "running" if left else "finished",
                "n": n,
                "left": left,
                "ttl_ms": int(ttl * 1000),
                "created": time.time(),
                "outputs": ",".join(map(str, outputs)),
                # (a worker reads a sub-run's outputs by these: signed, in this order)
                **(
                    {
                        "outputs_sig": sign(
                            ",".join(map(str, outputs)).encode(), secret, run_id, "outputs"
                        )
                    }
                    if secret is not None
                    else {}
                ),
                "client": client_id,
                "python": PYTHON,  # (functions by value need the same on the workers)
                "signed": "1" if secret is not None else "0",
                **({"records_tag": table_tag(secret, run_id, payloads)} if secret else {}),
                **(
                    {"end_tag": event_tag(secret, run_id, "finished")}
                    if secret is not None and not left
                    else {}
                ),
                **run_meta,
                # what a worker that joins the run needs (a sub-run: dagrt.expand)
                "task_timeout": "" if task_timeout is None else repr(task_timeout),
                "copies": "1" if upload_all else "0",
                "specs": ",".join(spec_keys),
                # the cache policy, for the graphs its tasks return (dagrt.caching)
                "cache": cache.options.model_dump_json(exclude={"url"})
                if cache is not None and cache.options is not None
                else "",
                "outputs_host": outputs_store[0] if outputs_store else "",
                "outputs_root": outputs_store[1] if outputs_store else "",
                "fns": sign(pack(table), secret, run_id, "fns"),
                # where the values of tasks found in the cache may be sealed for
                **({"found": found_signed} if found_signed is not None else {}),
                "priority": priority,
                # tasks in lanes: complete.lua sends their entries to the lanes' streams
                **({"lanes": K.lane_stream(stream, "")} if task_lanes else {}),
                **_parent_fields(parent),
            },
        )
    )
    cmds += join_lanes  # (after the meta: a run in a lane's set whose meta is gone ended)
    if parent is not None:
        prk = K.RunKeys(parent.run_id)
        cmds += [C.Cmd(("SADD", prk.subs, run_id)), C.expire(prk.subs, ttl)]
        # (a claim mark "@<worker>" left from fan-out clustering would send the entry
        # that resumes the task to that worker: the task is no one's now)
        cmds.append(C.hset(prk.deps, {str(parent.index): 0}))
    # (exists from the start, so it has a TTL; tasks found in the cache are done)
    cmds.append(C.hset(rk.done, {"-": "created", **{str(i): "" for i in found}}))
    spared = len(found) + len(skipped)  # (done already: progress starts there)
    cmds.append(C.xadd(rk.progress, {"t": -1, "s": spared} if spared else {"t": -1}))
    cmds.append(C.xadd(rk.events, {"e": "submitted", "n": n}))
    if not left:  # every output was found: nothing to run
        cmds.append(C.xadd(rk.events, outcome_event(secret, run_id, "finished")))
        if parent is not None:  # (as complete.lua does at a sub-run's end)
            cmds.append(C.xadd(stream, {"r": parent.run_id, "t": parent.index, "x": "1"}))
    writes = {
        str(i): f"{key}:{ttl_s!r}"
        for i, (key, ttl_s) in (cache.write.items() if cache is not None else ())
        if i not in found and i not in skipped
    }
    if writes:
        cmds.append(C.hset(rk.cache, writes))
        if secret is not None:  # (before the roots: the meta is written first)
            cmds.append(C.hset(rk.meta, {"cache_tag": cache_table_tag(secret, run_id, writes)}))
    for key in rk.fixed():
        cmds.append(C.expire(key, ttl))
    # roots last: a worker may start at once, and everything it needs is there
    if found:  # (tasks whose parents were all found are roots now)
        roots = [i for i in range(n) if i not in found and i not in skipped and str(i) not in deps]
    else:
        roots = [i for i, ps in enumerate(parents) if not ps]
    cmds += [
        C.Cmd(("XADD", _stream_of(stream, task_lanes.get(i)), "*", "r", run_id, "t", i))
        for i in roots
    ]
    await storage.apipeline(cmds)
    return RunSpec(
        run_id=run_id,
        keys=rk,
        n_tasks=n,
        outputs=outputs,
        roots=len(roots),
        functions=len(missing),
        submit_seconds=time.perf_counter() - t0,
        spec_keys=spec_keys,
        ttl=ttl,
        upload_all=upload_all,
        outputs_store=outputs_store,
        found=found_signed,
    )


def _parent_fields(parent: Parent | None) -> dict[str, Any]:
    if parent is None:
        return {}
    return {
        "then_run": parent.run_id,
        "then_task": parent.index,
        "then_started": repr(parent.started),
        "then_exec": repr(parent.execution),
        "then_attempt": parent.attempt,
        "shape": parent.shape,
    }


async def joined(storage: Storage, run_id: str) -> RunSpec | None:
    """The spec of run ``run_id`` as its meta says, for another follower than the client
    that submitted it (a worker that took over a task waiting for its sub-run); None if
    the run is not on the server."""
    return spec_of(run_id, await storage.ahgetall(K.RunKeys(run_id).meta))


async def _lanes(
    storage: Storage, stream: str, dag: DAG, run_id: str, priority: int
) -> tuple[dict[int, str], list[C.Cmd]]:
    """The lane of each task that has one (checked: :func:`lanes.prepare`), and the
    commands that register them (after the run's meta)."""
    for f in dag._distinct:
        check_priority(f.priority + priority, f"the priority of {f.name} plus the run's")
    by_task = task_lanes(dag, priority)
    if not by_task:
        return {}, []
    nodes = dag._nodes
    firsts = {lane: nodes[i].key for i, lane in sorted(by_task.items(), reverse=True)}
    return by_task, await lanes.prepare(storage, stream, firsts, run_id=run_id)


async def _lanes_of(storage: Storage, rk: K.RunKeys) -> set[str]:
    """The lanes a run's tasks use (none for most runs: one HGET tells)."""
    if not await storage.ahget(rk.meta, "lanes"):
        return set()
    return {v.decode() for v in (await storage.ahgetall(rk.lanes)).values()}


def _stream_of(stream: str, lane: str | None) -> str:
    return K.lane_stream(stream, lane) if lane else stream


def spec_of(run_id: str, meta: dict[bytes, bytes]) -> RunSpec | None:
    """:func:`joined` from the run's meta, read already; None if it is not whole (or
    not as dagrt writes it: a third party's)."""
    if b"fns" not in meta:  # none, or being written
        return None
    try:
        return _spec_of(run_id, meta)
    except (KeyError, ValueError):  # (UnicodeDecodeError is a ValueError)
        return None


def _spec_of(run_id: str, meta: dict[bytes, bytes]) -> RunSpec:
    host = meta.get(b"outputs_host", b"").decode()
    return RunSpec(
        run_id=run_id,
        keys=K.RunKeys(run_id),
        n_tasks=int(meta[b"n"]),
        outputs=tuple(int(x) for x in meta.get(b"outputs", b"").split(b",") if x),
        roots=0,
        functions=0,
        submit_seconds=0.0,
        spec_keys=[k for k in meta.get(b"specs", b"").decode().split(",") if k],
        ttl=int(meta.get(b"ttl_ms", b"0")) / 1000 or DEFAULT_TTL,
        upload_all=meta.get(b"copies", b"0") == b"1",
        outputs_store=(host, meta[b"outputs_root"].decode()) if host else None,
        found=meta.get(b"found"),
    )


async def _found_in_cache(
    storage: Storage,
    rk: K.RunKeys,
    dag: DAG,
    cache: CachePlan | None,
    ttl: float,
    secret: Keyring | None = None,
) -> tuple[set[int], dict[int, list[bytes]]]:
    """Copy the cache's entries of the tasks ``cache`` reads into the run's output keys
    (one round trip; an entry that expired meanwhile is simply not found); the tasks
    found, and (with a secret) the places each one's value may be sealed for: its
    entry's, and the output a failed run kept there if a genuine origin note says so
    (:mod:`dagrt.sealing`). ``cache`` is settled (what was found, what is skipped)."""
    if cache is None or not cache.read:
        return set(), {}
    order = sorted(cache.read)
    cmds = []
    for i in order:  # (the copy lives as long as the run's keys, from the start)
        entry = K.cache_entry(cache.read[i])
        cmds.append(C.Cmd(("COPY", entry, rk.output(i))))
        cmds.append(C.expire(rk.output(i), ttl))
        cmds.append(C.get(K.cache_origin(entry)))
    replies = await storage.apipeline(cmds)
    copied, notes = replies[0::3], replies[2::3]
    cache.settle(dag, {i for i, ok in zip(order, copied, strict=True) if ok})
    extra = [i for i, ok in zip(order, copied, strict=True) if ok and i not in cache.found]
    if extra:  # found, but only for tasks found too: not needed
        await storage.apipeline([C.delete([rk.output(i) for i in extra])])
    places: dict[int, list[bytes]] = {}
    if secret is not None:
        for i, note in zip(order, notes, strict=True):
            if i in cache.found:
                entry = K.cache_entry(cache.read[i])
                origin = open_origin_note(secret, entry, note)
                places[i] = [cache_place(entry)] + ([origin] if origin else [])
    return cache.found, places


async def _functions_to_store(
    storage: Storage, digests: list[str], known: set[str] | None
) -> list[str]:
    """The functions this submission must store: the new ones, and the known ones
    that are gone from storage (their TTL is renewed in passing)."""
    if known is None:
        return digests
    seen = [d for d in digests if d in known]
    if not seen:
        return digests
    renewed = await storage.apipeline([C.expire(K.function(d), FUNCTION_TTL) for d in seen])
    gone = {d for d, ok in zip(seen, renewed, strict=True) if not ok}
    known.difference_update(gone)
    return [d for d in digests if d not in known]


async def renew(storage: Storage, spec: RunSpec) -> bool:
    """Give every key of a running run its full TTL again (a run may outlive it), and
    those of its sub-runs; False if the run's keys are gone (expired, deleted, or the
    server was flushed)."""
    rk = spec.keys
    keys = rk.fixed() + spec.spec_keys + spec.output_keys()
    replies = await storage.apipeline(
        [C.expire(key, spec.ttl) for key in keys] + [C.Cmd(("SMEMBERS", rk.subs))]
    )
    for sub in _run_ids(replies[-1], rk.run_id):  # the graphs its tasks returned, going on
        sub_spec = await joined(storage, sub)
        if sub_spec is not None:
            await renew(storage, sub_spec)
    return bool(replies[0])  # the meta's


async def outstanding(
    storage: Storage, rk: K.RunKeys, stream: str, *, sub: bool = False
) -> int | str | None:
    """Whether a running run has work in the tasks stream: 1 when an entry of it is
    pending, else the id of its first entry not delivered yet (followed by a space and
    the lane if it waits in a lane's stream: :mod:`dagrt.resources`), else 0; None when the
    run is not running or has no task left, or when the stream is too long to tell
    (see ``outstanding.lua``). A run with no entry of its own whose tasks wait for
    the graphs they returned has the work of those sub-runs (asked the same way,
    ``sub``: one that is not running, or whose keys are gone, has none: its end's
    entry is its parent's)."""
    reply = await storage.arun_script(
        OUTSTANDING, [stream, rk.meta], [K.TASKS_GROUP, rk.run_id, OUTSTANDING_CAP]
    )
    if isinstance(reply, bytes | str):
        return reply.decode() if isinstance(reply, bytes) else reply
    if sub and int(reply) == 2:
        return 0
    found = int(reply) if int(reply) in (0, 1) else None
    if found == 0:  # its work may be in its lanes' streams (dagrt.resources)
        for lane in await _lanes_of(storage, rk):
            reply = await storage.arun_script(
                OUTSTANDING,
                [K.lane_stream(stream, lane), rk.meta],
                [K.TASKS_GROUP, rk.run_id, OUTSTANDING_CAP],
            )
            if isinstance(reply, bytes | str):
                entry = reply.decode() if isinstance(reply, bytes) else reply
                return f"{entry} {lane}"  # (undelivered in that lane)
            if int(reply) != 0:
                return int(reply) if int(reply) == 1 else None
    if found == 0:  # its work may be in its sub-runs (graphs its tasks returned)
        [subs] = await storage.apipeline([C.Cmd(("SMEMBERS", rk.subs))])
        for one in _run_ids(subs, rk.run_id):
            deeper = await outstanding(storage, K.RunKeys(one), stream, sub=True)
            if deeper != 0:
                return deeper
    return found


async def keep_finished(
    storage: Storage,
    spec: RunSpec,
    dag: DAG,
    cache: CachePlan,
    secret: Keyring | None = None,
) -> int:
    """Keep what a run that did not finish finished, for a resumed run: the outputs a
    task not finished would read, and the run's outputs (:func:`dagrt.caching.frontier`),
    under their cache keys, for ``cache.keep_failed`` seconds; how many were kept (an
    output in a host's store, or kept in a worker's memory only, is not)."""
    assert cache.keep_failed is not None
    raw = await storage.ahgetall(spec.keys.done)
    kept = await cache.to_keep(dag, {int(k) for k in raw if k != b"-"})
    pairs = [k for i, key in kept.items() for k in (spec.keys.output(i), K.cache_entry(key))]
    if secret is not None:  # each entry will hold an output sealed for its run and task
        ttl = cache.keep_failed
        await storage.apipeline(
            [
                C.set_(
                    K.cache_origin(entry),
                    origin_note(secret, entry, output_place(spec.run_id, i)),
                    ex=ttl,
                )
                for i, entry in ((i, K.cache_entry(key)) for i, key in kept.items())
            ]
        )
    copied = 0
    for chunk in C.chunks(pairs, 200):  # (one script holds the server: copies of 100)
        reply = await storage.arun_script(
            KEEP, chunk, [int(cache.keep_failed * 1000), LOCATION_MAGIC, SEAL_KIND, SEAL_HEAD]
        )
        copied += int(reply)
    return copied


async def stop(
    storage: Storage, rk: K.RunKeys, status: str = "cancelled", secret: Keyring | None = None
) -> bool:
    """Stop a running run (no completion dispatches anything more of it) and tell
    the workers (no task of it starts any more); True if it was running. Its
    sub-runs going on are stopped too (cancelled), theirs as well. Its event is
    tagged with the pool's ``secret`` (:mod:`dagrt.outcomes`)."""
    tag = event_tag(secret, rk.run_id, status) if secret is not None else ""
    stopped = await storage.arun_script(STOP, [rk.meta, rk.events], [status, tag])
    _, subs = await storage.apipeline([_ended(rk.run_id, status), C.Cmd(("SMEMBERS", rk.subs))])
    for sub in _run_ids(subs, rk.run_id):
        await stop(storage, K.RunKeys(sub), "cancelled", secret)
    return bool(stopped)


def outcome_event(secret: Keyring | None, run_id: str, kind: str) -> dict[str, str]:
    """The fields of event ``kind`` of a run that ends, tagged if there is a secret."""
    if secret is None:
        return {"e": kind}
    return {"e": kind, "m": event_tag(secret, run_id, kind)}


def _run_ids(members: Iterable[bytes] | None, parent: str) -> list[str]:
    """The sub-runs of run ``parent`` in its ``subs`` set as read from the server (what
    is not the id of a sub-run of it, a third party wrote: it is not the parent's to
    stop or delete, and names no keys)."""
    ids = [m.decode(errors="replace") for m in members or ()]
    return [r for r in ids if K.is_sub_run_of(r, parent)]


async def cleanup(storage: Storage, spec: RunSpec, status: str) -> None:
    """Delete every key of an ended run, leave a short-lived end marker, and tell
    the workers (they drop what they hold of it). Sub-runs still listed (the run
    ended before they did) are deleted too."""
    rk = spec.keys
    keys = rk.fixed() + spec.spec_keys
    keys += spec.output_keys()
    keys += [rk.error(i) for i in range(spec.n_tasks)]
    cmds = [
        C.Cmd(("SMEMBERS", rk.subs)),
        C.hget(rk.meta, "lanes"),
        C.set_(rk.end, status, ex=TOMBSTONE_TTL),
    ]
    cmds += [C.delete(chunk) for chunk in C.chunks(keys, 5000)]
    cmds.append(_ended(spec.run_id, status))
    subs, head = (await storage.apipeline(cmds))[:2]
    if head:  # it used lanes: those no other run uses are unregistered
        await lanes.collect(storage, K.stream_of_lanes(head.decode()), spec.run_id)
    for sub in _run_ids(subs, spec.run_id):
        sub_spec = await joined(storage, sub)
        if sub_spec is not None:
            await cleanup(storage, sub_spec, "cancelled")


def _ended(run_id: str, status: str) -> C.Cmd:
    """The control stream's entry for a run that ended."""
    return C.xadd(K.control(), {"r": run_id, "s": status}, maxlen=CONTROL_MAXLEN)
