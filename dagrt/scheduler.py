"""Readiness in storage: the scheduler's Lua scripts and the commands that call them.

A run lives in storage under its own keys (:class:`dagrt.keys.RunKeys`): a
task table of records (:mod:`dagrt.records`), a hash of remaining-parent
counters, and a hash of completion decisions. Ready tasks are entries ``{r: run,
t: index}`` on the shared tasks stream, read by workers through a consumer
group. The client writes a run (:mod:`dagrt.submission`); from then on three Lua
scripts (``dagrt/lua/*.lua``) do every state change, atomically (each has a
Python twin with the same logic, so :class:`~dagrt.storage.InMemoryStorage` runs
them too):

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

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import keys as K
from .storage import commands as C
from .storage.base import NoScriptError, Script

if TYPE_CHECKING:
    from .storage import Storage
    from .storage.memory import InMemoryStorage

__all__ = [
    "COMPLETE",
    "FAIL",
    "SCRIPTS",
    "STOP",
    "Completion",
    "complete_cmd",
    "fail_cmd",
    "load_scripts_cmds",
    "send",
]


# --------------------------------------------------------------------------- scripts (Python twins)


def _ack(redis: InMemoryStorage, stream: str, group: Any, ids: Sequence[Any]) -> None:
    for entry in ids:
        redis.call("XACK", stream, group, entry)


def _complete_twin(redis: InMemoryStorage, keys: list[str], argv: list[Any]) -> Any:
    meta, deps, done, progress, events, stream = keys[:6]
    outputs = keys[6:]
    run_id, worker, group, n_tasks = argv[0], argv[1], argv[2], int(argv[3])
    status = redis.call("HGET", meta, "status")
    running = status == b"running"
    replies: list[Any] = []
    acks: list[Any] = []
    counted: list[str] = []
    pos = 4
    for j in range(n_tasks):
        index, mode, n_children = argv[pos], str(argv[pos + 1]), int(argv[pos + 2])
        children = argv[pos + 3 : pos + 3 + n_children]
        n_acks = int(argv[pos + 3 + n_children])
        entries = argv[pos + 4 + n_children : pos + 4 + n_children + n_acks]
        pos += 4 + n_children + n_acks
        output = outputs[j]
        if not running:
            redis.call("DEL", output)
            acks += entries
            replies.append([b"stop", status or b"gone"])
            continue
        previous = redis.call("HGET", done, index)
        if previous is not None:
            if previous == b"":
                acks += entries
            replies.append([b"dup", previous])
            continue
        if mode == "L":  # the output is in the worker's memory only
            child = children[0] if n_children == 1 else None
            if child is not None and int(redis.call("HGET", deps, child) or -1) == 1:
                redis.call("HSET", deps, child, 0)
                kept = f"{child}*".encode()
                redis.call("HSET", done, index, kept)
                counted.append(str(index))
                replies.append([b"ok", kept])
            else:
                replies.append([b"upload", b""])
            continue
        if redis.call("EXISTS", output) == 0:
            replies.append([b"missing", b""])
            continue
        kept = b""
        for child in children:
            if redis.call("HINCRBY", deps, child, -1) == 0:
                if kept == b"" and mode == "1":
                    kept = str(child).encode()
                else:
                    redis.call("XADD", stream, "*", "r", run_id, "t", child)
        redis.call("HSET", done, index, kept)
        counted.append(str(index))
        if kept == b"":
            acks += entries
        replies.append([b"ok", kept])
    if acks:
        redis.call("XACK", stream, group, *acks)
    if counted:
        redis.call("XADD", progress, "*", "t", ",".join(counted), "w", worker)
        if redis.call("HINCRBY", meta, "left", -len(counted)) == 0:
            redis.call("HSET", meta, "status", "finished")
            redis.call("XADD", events, "*", "e", "finished")
    return replies


def _fail_twin(redis: InMemoryStorage, keys: list[str], argv: list[Any]) -> Any:
    meta, events, error_key, stream = keys
    index, worker, record, group = argv[:4]
    _ack(redis, stream, group, argv[4:])
    if redis.call("HGET", meta, "status") != b"running":
        return b"stop"
    ttl = redis.call("PTTL", meta)
    if ttl > 0:
        redis.call("SET", error_key, record, "PX", ttl)
    else:
        redis.call("SET", error_key, record)
    redis.call("HSET", meta, "status", "failed", "failed_task", index)
    redis.call("XADD", events, "*", "e", "failed", "t", index, "w", worker, "err", record)
    return b"ok"


def _stop_twin(redis: InMemoryStorage, keys: list[str], argv: list[Any]) -> Any:
    meta, events = keys
    if redis.call("HGET", meta, "status") != b"running":
        return 0
    redis.call("HSET", meta, "status", argv[0])
    redis.call("XADD", events, "*", "e", argv[0])
    return 1


COMPLETE = Script.from_package("complete.lua", _complete_twin)
FAIL = Script.from_package("fail.lua", _fail_twin)
STOP = Script.from_package("stop.lua", _stop_twin)
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


async def send(storage: Storage, cmds: list[C.Cmd]) -> list[Any]:
    """A pipeline that may call the scripts: if the server forgot them (a restart),
    they are loaded and the whole pipeline is sent again (what the scripts do is
    idempotent, and so are the writes of outputs sent with them)."""
    try:
        return await storage.apipeline(cmds)
    except NoScriptError:
        await storage.apipeline(load_scripts_cmds())
        return await storage.apipeline(cmds)
