"""Every name dagrt gives to something in storage, and run ids.

All keys of one run carry the run id as a hash tag (``dagrt:{<run>}:...``) so
that in a Redis Cluster they land on one shard and a Lua script may touch any
of them. Keys shared by all runs (the task stream, the event log, the runs
index) have fixed names. Nothing else in dagrt builds a key by hand.
"""

from __future__ import annotations

import os
import re
import time

__all__ = [
    "PREFIX",
    "dead_letter",
    "events",
    "function",
    "new_run_id",
    "run_key",
    "runs_index",
    "tasks_stream",
    "valid_run_id",
    "workers",
]

PREFIX = "dagrt"

_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def new_run_id() -> str:
    """A fresh run id: sortable by time of creation, unique by a random suffix."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{int(now * 1000) % 1000:03d}-{os.urandom(3).hex()}"


def valid_run_id(run_id: object) -> bool:
    return isinstance(run_id, str) and _RUN_ID.match(run_id) is not None


def run_key(run_id: str, *parts: str) -> str:
    """``dagrt:{<run_id>}:<part>:<part>...``: a key belonging to one run."""
    if not valid_run_id(run_id):
        raise ValueError(f"invalid run id {run_id!r}")
    return ":".join((PREFIX, "{" + run_id + "}", *parts))


def function(digest: str) -> str:
    """A content-addressed pickled function, shared by all runs."""
    return f"{PREFIX}:fn:{digest}"


def tasks_stream(shard: int = 0) -> str:
    """The stream of ready tasks that workers consume."""
    return f"{PREFIX}:tasks" if shard == 0 else f"{PREFIX}:tasks:{shard}"


def dead_letter() -> str:
    """Stream of task entries no worker could use (malformed, forged, unknown run)."""
    return f"{PREFIX}:dead"


def events() -> str:
    """The persistent event log of every run."""
    return f"{PREFIX}:events"


def runs_index() -> str:
    """Sorted set of run ids by submission time."""
    return f"{PREFIX}:runs"


def workers() -> str:
    """Hash of live workers' heartbeats."""
    return f"{PREFIX}:workers"
