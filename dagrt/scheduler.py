"""Readiness in storage: the scheduler's Lua scripts and the commands that call them.

A run lives in storage under its own keys (:class:`dagrt.keys.RunKeys`): a
task table of records (:mod:`dagrt.records`), a hash of remaining-parent
counters, and a hash of completion decisions. Ready tasks are entries ``{r: run,
t: index}`` on the shared tasks stream, read by workers through a consumer
group. The client writes a run (:mod:`dagrt.submission`); from then on three Lua
scripts (``dagrt/lua/*.lua``) do every state change, atomically (the same files
run on a Redis-compatible server and, through lupa, in
:class:`~dagrt.storage.InMemoryStorage`):

* ``complete``: mark a task done (once: a repeat returns the remembered
  decision), record where its output is when a host's store holds it,
  decrement its children, append the ready ones to the tasks stream except one
  the worker keeps, append progress, acknowledge the worker's entries
  when no child is kept, and finish the run when the last task is done.
* ``fail``: store the error record, mark the run failed, tell the client.
* ``stop``: cancel a running run.
* ``requeue``: put entries a worker read but should not run at the end of the stream.
* ``take``: read entries for a worker, screened: an entry of a task completed
  before or of a run that ended is acknowledged without running anything.
* ``unwait``: a worker stops waiting for children of a large output (delayed I/O).

Invariants (see docs/architecture.md): a counter only counts a parent whose
output is stored; who runs a child is decided only by the reply of an atomic
call; an entry is acknowledged only when its output is stored and the child it
kept has completed; a completion's reply is remembered, so a re-run gets the
same decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import keys as K
from .outcomes import seal_error
from .storage import commands as C
from .storage.base import NoScriptError, Script

if TYPE_CHECKING:
    from .keyring import Keyring
    from .storage import Storage

__all__ = [
    "COMPLETE",
    "FAIL",
    "SCRIPTS",
    "STOP",
    "REQUEUE",
    "TAKE",
    "UNWAIT",
    "Completion",
    "Taken",
    "complete_cmd",
    "fail_cmd",
    "load_scripts_cmds",
    "requeue_cmd",
    "send",
    "take_cmd",
    "unwait_cmd",
]


COMPLETE = Script.from_package("complete.lua")
FAIL = Script.from_package("fail.lua")
STOP = Script.from_package("stop.lua")
REQUEUE = Script.from_package("requeue.lua")
TAKE = Script.from_package("take.lua")
UNWAIT = Script.from_package("unwait.lua")
SCRIPTS = (COMPLETE, FAIL, STOP, REQUEUE, TAKE, UNWAIT)


@dataclass(slots=True)
class Completion:
    """One task to complete: what the ``complete`` script needs to know about it.

    ``local``: the output was not stored (see the script's keep mode "L");
    ``location``: it is in a host's object store, and this (an encoded
    :class:`~dagrt.objects.Location`) is what its key records; ``cluster``: fan-out
    clustering (keep mode "C"), how many of the children that become ready the worker
    may keep or claim (2 or more; 0 or 1: keep one at most, as ``may_keep`` says);
    ``wait``: delayed I/O (keep mode "W"), the worker waits for the children that are
    not ready yet, to run them where this large output is; ``inline``: the output key's
    value (a small output, or a location) goes into the entries of the children this
    completion dispatches (mode "V").
    """

    index: int
    children: Sequence[int]
    acks: Sequence[str | bytes]
    may_keep: bool = True
    local: bool = False
    location: bytes = b""
    cluster: int = 0
    wait: bool = False
    inline: bool = False


def complete_cmd(
    rk: K.RunKeys,
    items: Sequence[Completion],
    worker: str,
    *,
    stream: str,
    group: str = K.TASKS_GROUP,
    finished: str = "",
) -> C.Cmd:
    """One EVALSHA of ``complete`` for tasks of one run (sent in a pipeline);
    ``finished``: the tag of the run's ``finished`` event, if the pool has a secret
    (:func:`dagrt.outcomes.event_tag`)."""
    keys = [rk.meta, rk.deps, rk.done, rk.progress, rk.events, stream, rk.wait, rk.lanes]
    keys += [rk.output(item.index) for item in items]
    argv: list[Any] = [rk.run_id, worker, group, len(items), _ALIVE_HEAD, _INBOX_HEAD, finished]
    for item in items:
        if item.local:
            mode = "L"
        elif item.may_keep and item.cluster > 1:
            mode = f"C{item.cluster}"
        else:
            mode = "1" if item.may_keep else "0"
        if item.wait and not item.local:
            mode += "W"
        if item.inline and not item.local:
            mode += "V"
        if item.location:  # (most outputs have none: no argument for it)
            argv += [item.index, mode + "@", item.location]
        else:
            argv += [item.index, mode]
        argv += [len(item.children), *item.children]
        argv += [len(item.acks), *item.acks]
    return C.Cmd(("EVALSHA", COMPLETE.sha, len(keys), *keys, *argv))


def fail_cmd(
    rk: K.RunKeys,
    index: int,
    worker: str,
    record: dict[str, Any],
    *,
    secret: Keyring | None,
    acks: Sequence[str | bytes],
    stream: str,
    group: str = K.TASKS_GROUP,
) -> C.Cmd:
    """The ``fail`` call of a task that failed for good: its error ``record`` sealed
    with the pool's ``secret`` (:func:`dagrt.outcomes.seal_error`)."""
    keys = [rk.meta, rk.events, rk.error(index), stream]
    argv = [index, worker, seal_error(secret, rk.run_id, record), group, *acks]
    return C.Cmd(("EVALSHA", FAIL.sha, len(keys), *keys, *argv))


def requeue_cmd(
    entries: Sequence[tuple[str | bytes, str, int] | tuple[str | bytes, str, int, str]],
    *,
    stream: str,
    group: str = K.TASKS_GROUP,
) -> C.Cmd:
    """One EVALSHA of ``requeue``: ``(entry id, run id, task[, lane])`` of each entry to
    give back (a claim on the task is cleared; an entry of a lane goes to its lane)."""
    argv: list[Any] = [group, _RUN_KEY_PARTS[0], _RUN_KEY_PARTS[3], K.lane_stream(stream, "")]
    for entry_id, run_id, index, *lane in entries:
        argv += [entry_id, run_id, index, lane[0] if lane else ""]
    return C.Cmd(("EVALSHA", REQUEUE.sha, 1, stream, *argv))


@dataclass(slots=True)
class Taken:
    """What ``take`` answered: the entries to admit, and those it screened out.

    ``run``: entries to admit (including ones the script cannot judge: unknown runs,
    malformed fields); ``dropped``: acknowledged by the script (a task completed
    before, a run that ended); ``early``: entries of
    tasks whose parents are not all done (never written by dagrt: dead-letter them);
    ``odd``: ids of entries with fields other than a run and a task (read them whole);
    ``claimed``: entries of tasks another worker (or this one) claimed, left to it;
    ``woken``: ids of entries in ``run`` that notes of the inbox brought (tasks this
    worker waited for: delayed I/O). An entry moved from a lane has its lane as
    field ``l`` (:mod:`dagrt.resources`).
    """

    run: list[tuple[bytes, dict[bytes, bytes]]]
    dropped: int
    early: list[tuple[bytes, dict[bytes, bytes]]]
    odd: list[bytes]
    claimed: int = 0
    woken: set[bytes] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        """Nothing was read (or given) at all."""
        return not (self.run or self.dropped or self.early or self.odd or self.claimed)


_DROPPED = (b"ended", b"done", b"gone")


def _run_key_parts() -> list[str]:
    """A run's key names around its id, as ``take`` builds them: the text before the
    id, then the text after it of the run's meta, done and deps hashes."""
    sentinel = "RUN-ID"
    rk = K.RunKeys(sentinel)
    head = rk.meta.partition(sentinel)[0]
    return [head, *(getattr(rk, name)[len(head) + len(sentinel) :] for name in _TAKE_KEYS)]


_TAKE_KEYS = ("meta", "done", "deps")
_RUN_KEY_PARTS = _run_key_parts()
_ALIVE_HEAD = K.worker_alive("WORKER-ID").removesuffix("WORKER-ID")
_INBOX_HEAD = K.inbox("WORKER-ID").removesuffix("WORKER-ID")


def take_cmd(
    stream: str,
    group: str,
    consumer: str,
    count: int,
    delivered: Sequence[tuple[bytes, dict[bytes, bytes]]] = (),
    notes: Sequence[tuple[bytes, dict[bytes, bytes]]] = (),
    *,
    inbox: bool = True,
    lanes: Sequence[tuple[str, int]] = (),
    from_lanes: Sequence[tuple[str, bytes, bool]] = (),
) -> C.Cmd:
    """One EVALSHA of ``take``: read up to ``count`` entries for ``consumer`` (and, with
    ``inbox``, as many notes of its inbox) and screen them; with ``count`` 0, screen the
    entries and the inbox notes a blocking read ``delivered``, and the entries it
    delivered from lanes (``from_lanes``: lane, entry id, and whether to take it or
    put it back at the end of its lane). ``lanes``: the lanes the
    worker reads, in order, with how many entries of each to take at most (see
    :class:`dagrt.resources.LaneOrder`); none: the tasks stream only."""
    box = K.inbox(consumer) if inbox or notes else ""
    argv: list[Any] = [group, consumer, count, *_RUN_KEY_PARTS, _ALIVE_HEAD, box]
    argv += [len(lanes), K.lane_stream(stream, "")]
    for lane, n in lanes:
        argv += [lane, n]
    given = dict(delivered)
    for entry_id, fields in delivered:
        argv += [entry_id, fields.get(b"r", b""), fields.get(b"t", b""), b""]
    for lane, entry_id, take in from_lanes:
        argv += [entry_id, b"", b"", ("@" if take else "!") + lane]
    for note_id, fields in notes:
        # (a note without an entry, a wake-up, is acknowledged and deleted as read)
        argv += [fields.get(b"e", b""), fields.get(b"r", b""), fields.get(b"t", b""), note_id]
    return C.Cmd(("EVALSHA", TAKE.sha, 1, stream, *argv), lambda reply: _taken(reply, given))


def _taken(reply: Sequence[Any], given: dict[bytes, dict[bytes, bytes]]) -> Taken:
    out = Taken([], 0, [], [])
    for i in range(0, len(reply), 6):
        entry_id, verdict, run, task, parent, value = reply[i : i + 6]
        if verdict in _DROPPED:
            out.dropped += 1
            continue
        if verdict == b"odd":
            out.odd.append(entry_id)
            continue
        if verdict == b"claimed":
            out.claimed += 1
            continue
        if verdict == b"woken":
            out.woken.add(entry_id)
        if verdict == b"lane":
            fields = {b"r": run, b"t": task, b"l": parent}
        else:
            fields = given.get(entry_id) or (
                {b"r": run, b"t": task, b"i": parent, b"v": value}
                if value is not None
                else {b"r": run, b"t": task}
            )
        if verdict == b"early":
            out.early.append((entry_id, fields))
        else:
            out.run.append((entry_id, fields))
    return out


def unwait_cmd(rk: K.RunKeys, worker: str, children: Sequence[int]) -> C.Cmd:
    """One EVALSHA of ``unwait``: ``worker`` waits no more for ``children``."""
    return C.Cmd(("EVALSHA", UNWAIT.sha, 1, rk.wait, worker, *children))


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
