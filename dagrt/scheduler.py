"""Readiness in storage: the scheduler's records, Lua scripts and submission.

A run lives in storage under its own keys (:class:`dagrt.keys.RunKeys`): a
task table of compact msgpack records, a hash of remaining-parent counters,
and a hash of completion decisions. Ready tasks are entries ``{r: run, t:
index}`` on the shared tasks stream, read by workers through a consumer group.

Three Lua scripts do every state change, atomically (each has a Python twin
with the same logic, so :class:`~dagrt.storage.InMemoryStorage` runs them too):

* ``complete``: mark a task done (once: a repeat returns the remembered
  decision), decrement its children, append the ready ones to the tasks stream
  except one the worker keeps, append progress, acknowledge the worker's entries
  when no child is kept, and finish the run when the last task is done.
* ``fail``: store the error record, mark the run failed, tell the client.
* ``stop``: cancel a running run.

Invariants (see docs/architecture.md): a counter only counts a parent whose
output is stored; who runs a child is decided only by the reply of an atomic
call; an entry is acknowledged only when its output is stored and the child it
kept has completed; a completion's reply is remembered, so a re-run gets the
same decision.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import keys as K
from .exceptions import SerializationError, StorageError
from .graph import DAG, Node
from .serialize import Frame, dumps, dumps_frame, dumps_function, pack, unpack
from .storage import Storage
from .storage import commands as C
from .storage.base import Script

__all__ = [
    "COMPLETE",
    "FAIL",
    "STOP",
    "Completion",
    "RunSpec",
    "TaskRecord",
    "complete_cmd",
    "decode_record",
    "fail_cmd",
    "submit",
]

DEFAULT_TTL = 24 * 3600.0  # seconds a run's keys live if nobody cleans them up
TOMBSTONE_TTL = 3600.0  # seconds the end marker of a finished run stays
BIG_SPEC = 64 * 1024  # argument specs larger than this are stored apart, by content


# --------------------------------------------------------------------------- scripts (Python twins)


COMPLETE = Script.from_package("complete.lua")
FAIL = Script.from_package("fail.lua")
STOP = Script.from_package("stop.lua")
SCRIPTS = (COMPLETE, FAIL, STOP)


@dataclass(slots=True)
class Completion:
    """One task to complete: what the ``complete`` script needs to know about it.

    ``local``: the output was not stored (see the script's keep mode "L").
    """

    index: int
    children: Sequence[int]
    acks: Sequence[str | bytes]
    may_keep: bool = True
    local: bool = False


def complete_cmd(
    rk: K.RunKeys,
    items: Sequence[Completion],
    worker: str,
    *,
    stream: str,
    group: str = K.TASKS_GROUP,
) -> C.Cmd:
    """One EVALSHA of ``complete`` for tasks of one run (sent in a pipeline)."""
    keys = [rk.meta, rk.deps, rk.done, rk.progress, rk.events, stream]
    keys += [rk.output(item.index) for item in items]
    argv: list[Any] = [rk.run_id, worker, group, len(items)]
    for item in items:
        mode = "L" if item.local else ("1" if item.may_keep else "0")
        argv += [item.index, mode, len(item.children), *item.children]
        argv += [len(item.acks), *item.acks]
    return C.Cmd(("EVALSHA", COMPLETE.sha, len(keys), *keys, *argv))


def fail_cmd(
    rk: K.RunKeys,
    index: int,
    worker: str,
    record: dict[str, Any],
    *,
    acks: Sequence[str | bytes],
    stream: str,
    group: str = K.TASKS_GROUP,
) -> C.Cmd:
    keys = [rk.meta, rk.events, rk.error(index), stream]
    argv = [index, worker, json.dumps(record), group, *acks]
    return C.Cmd(("EVALSHA", FAIL.sha, len(keys), *keys, *argv))


def load_scripts_cmds() -> list[C.Cmd]:
    """SCRIPT LOAD of every scheduler script (so pipelines can use EVALSHA)."""
    return [C.Cmd(("SCRIPT", "LOAD", s.source)) for s in SCRIPTS]


# --------------------------------------------------------------------------- task records

_MSGPACK_LEAVES = frozenset({int, float, str, bytes, bool, type(None)})


@dataclass(slots=True)
class TaskRecord:
    """What a worker needs to run one task (decoded from its stored record)."""

    index: int
    key: str
    name: str
    fn: str  # digest of the pickled function
    parents: list[int]
    children: list[int]
    retries: int
    retry_delay: float
    leaves: list[Any] | None  # None until the spec is loaded (big specs live apart)
    treedef: Any  # True: the leaves are the positional arguments
    slots: list[int]  # flat (leaf index, parent position) pairs
    spec_key: str | None = None


_LEAVES, _PICKLED, _APART = 0, 1, 2  # how a record carries its arguments


def encode_record(
    node: Node, parents: Sequence[int], children: Sequence[int], fn_index: int
) -> tuple[list[Any], bytes | Frame | None]:
    """A node's record (a msgpack array), and its pickled arguments if too big to inline.

    ``[key, function, parents, children, slots, mode, arguments]``: ``function``
    indexes the run's function table; ``slots`` are flat (leaf, parent) pairs;
    ``arguments`` are the plain leaves (mode 0), a pickled ``(leaves, treedef)``
    (mode 1), or the digest of that pickle stored apart (mode 2, set by the caller).
    """
    leaves = node._leaves
    slots: list[int] = []
    if node._slots:
        leaves = list(leaves)
        for li, dj in node._slots:
            leaves[li] = None
            slots += (li, dj)
    if node._treedef is True and all(type(x) in _MSGPACK_LEAVES for x in leaves):
        return [node.key, fn_index, parents, children, slots, _LEAVES, leaves], None
    spec = dumps_frame((leaves, node._treedef), what=f"arguments of task {node.key}")
    if isinstance(spec, bytes) and len(spec) <= BIG_SPEC:
        return [node.key, fn_index, parents, children, slots, _PICKLED, spec], None
    return [node.key, fn_index, parents, children, slots, _APART, None], spec


def _digest(frame: bytes | Frame) -> str:
    """The content address of an argument spec stored apart."""
    h = hashlib.sha256()
    for part in frame.parts if isinstance(frame, Frame) else (frame,):
        h.update(part)
    return h.hexdigest()[:32]


def sign(payload: bytes, secret: bytes | None) -> bytes:
    """A stored record: ``U`` + payload, or ``S`` + HMAC-SHA256 tag + payload."""
    if secret is None:
        return b"U" + payload
    return b"S" + hmac.new(secret, payload, hashlib.sha256).digest() + payload


def verify(stored: bytes, secret: bytes | None) -> bytes:
    """The payload of a stored record; raises ``ValueError`` if it is forged or unsigned."""
    head = stored[:1]
    if head == b"S":
        tag, payload = stored[1:33], stored[33:]
        if secret is not None and not hmac.compare_digest(
            tag, hmac.new(secret, payload, hashlib.sha256).digest()
        ):
            raise ValueError("task record signature does not match (forged, or another secret)")
        return payload
    if head == b"U":
        if secret is not None:
            raise ValueError("task record is not signed, but this worker requires signatures")
        return stored[1:]
    raise ValueError("not a dagrt task record")


def decode_functions(stored: bytes, secret: bytes | None) -> list[tuple[str, str, int, float]]:
    """The run's function table: ``(digest, name, retries, retry_delay)`` per function."""
    return [tuple(f) for f in unpack(verify(stored, secret), what="function table")]


def decode_record(
    index: int,
    stored: bytes,
    secret: bytes | None,
    rk: K.RunKeys,
    functions: Sequence[tuple[str, str, int, float]],
) -> TaskRecord:
    key, fn_index, parents, children, slots, mode, arguments = unpack(
        verify(stored, secret), what=f"record of task {index}"
    )
    digest, name, retries, retry_delay = functions[fn_index]
    leaves: list[Any] | None = None
    treedef: Any = True
    spec_key = None
    if mode == _LEAVES:
        leaves = arguments
    elif mode == _PICKLED:
        leaves, treedef = _load_spec(arguments, key)
    else:
        spec_key = rk.spec(arguments)  # loaded on first use
    return TaskRecord(
        index=index,
        key=key,
        name=name,
        fn=digest,
        parents=parents,
        children=children,
        retries=retries,
        retry_delay=retry_delay,
        leaves=leaves,
        treedef=treedef,
        slots=slots,
        spec_key=spec_key,
    )


def _load_spec(frame: bytes, key: str) -> tuple[list[Any], Any]:
    from .serialize import loads

    leaves, treedef = loads(frame, what=f"arguments of task {key}")
    return leaves, treedef


def load_spec(record: TaskRecord, frame: bytes) -> None:
    record.leaves, record.treedef = _load_spec(frame, record.key)


# --------------------------------------------------------------------------- submission


@dataclass
class RunSpec:
    """What the client keeps about a submitted run."""

    run_id: str
    keys: K.RunKeys
    n_tasks: int
    outputs: tuple[int, ...]
    roots: int
    functions: int
    submit_seconds: float
    spec_keys: list[str]


async def submit(
    storage: Storage,
    dag: DAG,
    run_id: str,
    *,
    stream: str = K.tasks_stream(),
    secret: bytes | None = None,
    ttl: float = DEFAULT_TTL,
    known_functions: set[str] | None = None,
    client_id: str = "",
    keep_children: bool = True,
    keep_outputs: bool = True,
) -> RunSpec:
    """Write ``dag`` as run ``run_id`` and dispatch its roots, in pipelined chunks.

    Functions go to content-addressed keys once (``known_functions`` remembers
    which this client has stored). Everything of the run gets a TTL, so a run
    whose client vanished expires. ``keep_children`` (a worker runs a ready child
    whose input it holds) and ``keep_outputs`` (an output whose one child runs
    there too is never uploaded) are the run's locality switches.
    """
    t0 = time.perf_counter()
    rk = K.RunKeys(run_id)
    nodes = dag._nodes
    n = len(nodes)
    ttl_ms = int(ttl * 1000)
    cmds: list[C.Cmd] = []

    # functions, by content; the run's table names each once
    table: list[tuple[str, str, int, float]] = []
    positions: dict[int, int] = {}
    new_functions = 0
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
        table.append((digest, tf.name, tf.retries, tf.retry_delay))
        if known_functions is None or digest not in known_functions:
            cmds.append(C.set_(K.function(digest), frame, ex=30 * 24 * 3600.0))
            new_functions += 1
            if known_functions is not None:
                known_functions.add(digest)

    # task records and counters
    parents, children = dag._parents, dag._children
    spec_keys: list[str] = []
    fields: dict[str, bytes] = {}
    deps: dict[str, int] = {}
    for i, node in enumerate(nodes):
        record, big = encode_record(node, parents[i], children[i], positions[id(node.func)])
        if big is not None:
            digest = _digest(big)
            record[6] = digest
            spec_keys.append(rk.spec(digest))
            cmds.append(C.set_(spec_keys[-1], big, ex=ttl))
        try:
            packed = pack(record)
        except SerializationError:  # an int beyond 64 bits: pickle the arguments
            record[5:] = [_PICKLED, dumps((record[6], True), what=f"arguments of {node.key}")]
            packed = pack(record)
        fields[str(i)] = sign(packed, secret)
        if parents[i]:
            deps[str(i)] = len(parents[i])
    for chunk in C.chunks(list(fields.items()), 1000):
        cmds.append(C.hset(rk.tasks, dict(chunk)))
    for chunk in C.chunks(list(deps.items()), 5000):
        cmds.append(C.hset(rk.deps, dict(chunk)))
    outputs = dag._output_index
    cmds.append(
        C.hset(
            rk.meta,
            {
                "status": "running",
                "n": n,
                "left": n,
                "ttl_ms": ttl_ms,
                "created": time.time(),
                "outputs": ",".join(map(str, outputs)),
                "client": client_id,
                "signed": "1" if secret is not None else "0",
                "keep_children": "1" if keep_children else "0",
                "keep_outputs": "1" if keep_outputs else "0",
                "fns": sign(pack(table), secret),
            },
        )
    )
    cmds.append(C.hset(rk.done, {"-": "created"}))  # exists from the start, so it has a TTL
    cmds.append(C.xadd(rk.progress, {"t": -1}))
    cmds.append(C.xadd(rk.events, {"e": "submitted", "n": n}))
    for key in rk.fixed():
        cmds.append(C.expire(key, ttl))
    # roots last: a worker may start at once, and everything it needs is there
    roots = [i for i, ps in enumerate(parents) if not ps]
    cmds += [C.Cmd(("XADD", stream, "*", "r", run_id, "t", i)) for i in roots]
    await storage.apipeline(cmds)
    return RunSpec(
        run_id=run_id,
        keys=rk,
        n_tasks=n,
        outputs=outputs,
        roots=len(roots),
        functions=new_functions,
        submit_seconds=time.perf_counter() - t0,
        spec_keys=spec_keys,
    )


def _next_id(entry_id: bytes) -> str:
    ms, seq = entry_id.decode().split("-")
    return f"{ms}-{int(seq) + 1}"


async def trim_acked(storage: Storage, stream: str) -> int:
    """Delete the entries every consumer group has read and acknowledged.

    Completions only acknowledge (deleting each entry would cost the server
    more than the rest of the completion); this trims in bulk below the oldest
    entry still pending or not yet delivered, in any group. Safe without a
    lock: entries below that bound stay delivered and acknowledged.
    """
    try:
        groups = await storage.axinfo_groups(stream)
    except StorageError:  # no such stream yet
        return 0
    bounds: list[tuple[int, int]] = []
    for group in groups:
        name = group["name"].decode()
        summary = await storage.axpending(stream, name)
        bound = summary["min"] if summary["pending"] else _next_id(group["last-delivered-id"])
        ms, seq = (bound.decode() if isinstance(bound, bytes) else bound).split("-")
        bounds.append((int(ms), int(seq)))
    if not bounds:
        return 0
    ms, seq = min(bounds)
    return await storage.axtrim(stream, minid=f"{ms}-{seq}", approximate=False)


async def stop(storage: Storage, rk: K.RunKeys, status: str = "cancelled") -> bool:
    """Stop a running run; True if it was running."""
    return bool(await storage.arun_script(STOP, [rk.meta, rk.events], [status]))


async def cleanup(storage: Storage, spec: RunSpec, status: str) -> None:
    """Delete every key of a finished run and leave a short-lived end marker."""
    rk = spec.keys
    keys = rk.fixed() + spec.spec_keys
    keys += [rk.output(i) for i in range(spec.n_tasks)]
    keys += [rk.error(i) for i in range(spec.n_tasks)]
    cmds = [C.set_(rk.end, status, ex=TOMBSTONE_TTL)]
    cmds += [C.delete(chunk) for chunk in C.chunks(keys, 5000)]
    await storage.apipeline(cmds)
