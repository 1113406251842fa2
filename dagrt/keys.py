"""Every name dagrt gives to something in storage, and run ids.

All keys of one run carry the run id as a hash tag (``dagrt:{<run>}:...``) so
that in a Redis Cluster they land on one shard and a Lua script may touch any
of them. Keys shared by all runs (the task stream, the event log, the runs
index) have fixed names. Nothing else in dagrt builds a key by hand.
"""

from __future__ import annotations

import hashlib
import os
import re
import time

__all__ = [
    "PIN_HEAD",
    "PREFIX",
    "RUN_ID_GRAMMAR",
    "RunKeys",
    "check_run_id",
    "is_sub_run_of",
    "control",
    "dead_letter",
    "inbox",
    "entry_order",
    "events",
    "function",
    "graph",
    "log_writer",
    "run_entries",
    "run_record",
    "cache_entry",
    "cache_origin",
    "is_pin_entry",
    "new_pin",
    "new_run_id",
    "sub_run_id",
    "run_key",
    "runs_index",
    "tasks_stream",
    "valid_run_id",
    "TASKS_GROUP",
    "worker_alive",
    "workers",
]

PREFIX = "dagrt"

_MAX_RUN_ID = 128
#: A run id: words of letters, digits, ``_`` and ``-`` joined by single dots, the
#: first starting with a letter or digit, at most 128 characters. What
#: :func:`new_run_id` makes and its sub-runs (``<run>.t<index>``) are run ids; no run
#: id is ``.`` or ``..``, starts or ends with a dot, or holds a path or key separator
#: (``/``, ``\\``, ``:``, ``{``, ``}``): one names a folder and a key tag safely.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
RUN_ID_GRAMMAR = (
    "at most 128 letters, digits, '_' and '-', in words joined by single dots,"
    " starting with a letter or digit"
)


def new_run_id() -> str:
    """A fresh run id: sortable by time of creation, unique by a random suffix."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{int(now * 1000) % 1000:03d}-{os.urandom(3).hex()}"


def sub_run_id(run_id: str, index: int) -> str:
    """The id of the run of the graph that task ``index`` of run ``run_id`` returned
    (``<run>.t<index>``, hashed past 128 characters): the same for every attempt, so a
    task taken over finds the sub-run its first attempt submitted."""
    sub = f"{run_id}.t{index}"
    if len(sub) <= _MAX_RUN_ID:
        return sub
    digest = hashlib.sha256(sub.encode()).hexdigest()[:32]
    return f"{run_id[: _MAX_RUN_ID - 36].rstrip('.')}.t.{digest}"


_SUB_TASK = re.compile(r"\.t(?:[0-9]+|\.[0-9a-f]{32})")


def is_sub_run_of(sub: str, run_id: str) -> bool:
    """Is ``sub`` the id :func:`sub_run_id` gives a task of run ``run_id``? (A run's set
    of sub-runs is read from the server: only its own children are its to stop.)"""
    for head in (run_id, run_id[: _MAX_RUN_ID - 36].rstrip(".")):
        if sub.startswith(head) and _SUB_TASK.fullmatch(sub, len(head)):
            return valid_run_id(sub)
    return False


def valid_run_id(run_id: object) -> bool:
    """Is ``run_id`` a run id (see :data:`RUN_ID_GRAMMAR`)? Every run id that comes from
    outside (a caller, the command line, a URL, a stream entry, the event log) is
    checked before it names a key or a path."""
    return (
        isinstance(run_id, str)
        and len(run_id) <= _MAX_RUN_ID
        and _RUN_ID.fullmatch(run_id) is not None
    )


def check_run_id(run_id: object) -> str:
    """``run_id`` if it is a run id; else ``TypeError`` (not a string) or ``ValueError``
    saying what a run id is."""
    if not isinstance(run_id, str):
        raise TypeError(f"run_id must be a string, got {type(run_id).__name__}")
    if not valid_run_id(run_id):
        raise ValueError(f"{run_id[:200]!r} is not a run id ({RUN_ID_GRAMMAR})")
    return run_id


def entry_order(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry id (``"<ms>-<seq>"``) as a pair that sorts as the stream does."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def run_key(run_id: str, *parts: str) -> str:
    """``dagrt:{<run_id>}:<part>:<part>...``: a key belonging to one run."""
    check_run_id(run_id)
    return ":".join((PREFIX, "{" + run_id + "}", *parts))


class RunKeys:
    """The keys of one run (all tagged ``{<run_id>}``).

    ``meta`` hash (status, counts, options), ``tasks`` hash (task index ->
    record), ``deps`` hash (task index -> parents not yet done), ``done`` hash
    (task index -> the completion's decision, remembered), ``progress`` stream
    (one entry per finished task), ``events`` stream (run-level: finished,
    failed, cancelled), ``wait`` hash (task index -> the worker waiting to run it
    where its large input is: delayed I/O), ``output(i)`` and ``error(i)`` strings,
    and ``end``, a short-lived tombstone left after the run's keys are deleted. A run
    whose tasks returned graphs (:mod:`dagrt.expand`) has a ``subs`` set (the ids of
    its sub-runs going on); a sub-run has a ``claim`` string (the worker that
    submitted it: one submission, however many attempts of its task). A run with
    cached tasks has a ``cache`` hash: the entries their workers write
    (:mod:`dagrt.caching`). A run with tasks in lanes (resources, priorities) has a
    ``lanes`` hash: each such task's lane (:mod:`dagrt.resources`).
    """

    __slots__ = (
        "_prefix",
        "cache",
        "claim",
        "deps",
        "done",
        "end",
        "events",
        "lanes",
        "lost",
        "meta",
        "progress",
        "run_id",
        "subs",
        "tasks",
        "wait",
    )

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._prefix = run_key(run_id, "")  # validates the id once
        self.meta = run_key(run_id, "meta")
        self.tasks = run_key(run_id, "tasks")
        self.deps = run_key(run_id, "deps")
        self.done = run_key(run_id, "done")
        self.progress = run_key(run_id, "progress")
        self.events = run_key(run_id, "events")
        self.end = run_key(run_id, "end")
        self.lost = run_key(run_id, "lost")  # task index -> deliveries taken over
        self.wait = run_key(run_id, "wait")  # task index -> the worker that waits for it
        self.subs = run_key(run_id, "subs")  # ids of the run's sub-runs going on
        self.claim = run_key(run_id, "claim")  # a sub-run's: the worker that submitted it
        self.cache = run_key(run_id, "cache")  # task index -> "<cache key>:<ttl>" to write
        self.lanes = run_key(run_id, "lanes")  # task index -> its lane (dagrt.resources)

    def output(self, index: int | str) -> str:
        return f"{self._prefix}o:{index}"

    def copy(self, index: int | str) -> str:
        """The server's copy of an output kept in a host's store (``upload_all`` runs)."""
        return f"{self._prefix}oc:{index}"

    def error(self, index: int | str) -> str:
        return f"{self._prefix}err:{index}"

    def spec(self, digest: str) -> str:
        """A large argument spec, stored apart from the task table by content."""
        return f"{self._prefix}spec:{digest}"

    def fixed(self) -> list[str]:
        """Every key of the run except outputs and error records."""
        return [
            self.meta,
            self.tasks,
            self.deps,
            self.done,
            self.progress,
            self.events,
            self.lost,
            self.wait,
            self.subs,
            self.claim,
            self.cache,
            self.lanes,
        ]


def cache_entry(key: str) -> str:
    """A task's output kept for later runs, by its cache key (:mod:`dagrt.cachekeys`)."""
    return f"{PREFIX}:cache:{key}"


#: how a persisted value's key begins, which no cache key (a hex digest) can
PIN_HEAD = "persisted-"


def new_pin() -> str:
    """The key of a new persisted value (:mod:`dagrt.persist`), kept where cache entries
    are: ``persisted-<hex>``."""
    return f"{PIN_HEAD}{os.urandom(16).hex()}"


def is_pin_entry(entry: str) -> bool:
    """Is the cache entry ``entry`` a persisted value's (not a task's by its cache key)?"""
    return entry.startswith(cache_entry(PIN_HEAD))


def cache_origin(entry: str) -> str:
    """Beside a cache entry that holds a failed run's output: where it came from, signed
    (:func:`dagrt.sealing.origin_note`)."""
    return f"{entry}:origin"


def function(digest: str) -> str:
    """A content-addressed pickled function, shared by all runs."""
    return f"{PREFIX}:fn:{digest}"


def tasks_stream(shard: int = 0) -> str:
    """The stream of ready tasks that workers consume."""
    return f"{PREFIX}:tasks" if shard == 0 else f"{PREFIX}:tasks:{shard}"


def lane_stream(stream: str, lane: str) -> str:
    """The stream of the ready tasks of one lane (:mod:`dagrt.resources`): those that
    need ``lane``'s resources, or have its priority."""
    return f"{stream}:lane:{lane}"


def lanes(stream: str) -> str:
    """Hash of the lanes of ``stream`` in use: lane -> when a run last used it."""
    return f"{stream}:lanes"


def lane_runs(stream: str, lane: str) -> str:
    """Set of the runs that use ``lane`` of ``stream`` (its registration lasts as long)."""
    return f"{stream}:lane-runs:{lane}"


def stream_of_lanes(head: str) -> str:
    """The tasks stream whose lanes' names begin with ``head`` (``lane_stream(s, "")``)."""
    return head.removesuffix(lane_stream("", ""))


def control() -> str:
    """Stream on which clients say that a run ended (cancelled, failed, finished):
    every worker follows it, so that no task of an ended run starts."""
    return f"{PREFIX}:control"


def inbox(worker_id: str) -> str:
    """A worker's doorbell: a stream of notes ``{r: run, t: task, e: entry}``, each
    telling it that an entry of the tasks stream is pending for it now (a task it
    waited for became ready: delayed I/O)."""
    return f"{PREFIX}:inbox:{worker_id}"


def dead_letter() -> str:
    """Stream of task entries no worker could use (malformed, forged, unknown run)."""
    return f"{PREFIX}:dead"


def events() -> str:
    """The persistent event log of every run."""
    return f"{PREFIX}:events"


def runs_index() -> str:
    """Sorted set of run ids by submission time (in the metrics store)."""
    return f"{PREFIX}:runs"


def run_record(run_id: str) -> str:
    """A run's entry in the runs index: first/last event ids, status, counts (persistent)."""
    return f"{PREFIX}:run:{check_run_id(run_id)}"


def run_entries(run_id: str) -> str:
    """The ids of a run's entries in the event log, in the order they were indexed
    (persistent): reading a run reads these entries and no others."""
    return f"{PREFIX}:run:{check_run_id(run_id)}:entries"


def log_writer(writer_id: str) -> str:
    """The last sequence number of the event log's writer ``writer_id`` applied (its
    writes are applied once each, also when sent again); it expires a day after."""
    return f"{PREFIX}:writer:{writer_id}"


def graph(run_id: str) -> str:
    """A run's graph (task keys, function names, edges), kept as long as the event log."""
    return f"{PREFIX}:graph:{check_run_id(run_id)}"


def workers() -> str:
    """Hash of workers' last heartbeats (worker id -> record)."""
    return f"{PREFIX}:workers"


def worker_alive(worker_id: str) -> str:
    """A key that exists while the worker is alive (its TTL is renewed by heartbeats)."""
    return f"{PREFIX}:worker:{worker_id}"


TASKS_GROUP = "workers"  # the consumer group of the tasks stream
