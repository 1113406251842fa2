"""Lanes in storage: the workers that hold them, the registry, the client's checks.

A run whose tasks need resources or have priorities other than 0 puts their
entries in lanes (:mod:`dagrt.resources`). Before it is written, :func:`prepare`
checks that some live worker of the stream can hold each lane's resources (else
:class:`~dagrt.ResourceError`, and nothing is written: a run that no worker can
finish never starts); with the run it registers the lanes (``keys.lanes``, and the
run in each lane's set of runs) and, when a lane is new or a live worker that can
hold it does not read it yet, tells the workers (:func:`ring`, on the control stream
every worker follows, busy or not), so that they read it at once instead of at their
next heartbeat. A lane stays registered while a running run uses it or its stream holds
entries: :func:`collect` unregisters the others (a run's cleanup, a worker's
heartbeat), so workers stop reading it. :func:`live_workers` is what the live
workers of a stream last said of themselves (the client's watchdog asks it too).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from . import keys as K
from .exceptions import ResourceError, SerializationError
from .resources import MAX_LANES, Resources, can_hold, describe, most, needs_of
from .serialize import unpack
from .storage import Script, Storage
from .storage import commands as C

__all__ = ["CONTROL_MAXLEN", "LANES_GC", "collect", "live_workers", "prepare", "ring", "unheld"]

CONTROL_MAXLEN = 10_000  # entries kept on the control stream (as submission's run ends)

LANES_GC = Script.from_package("lanes_gc.lua")


async def live_workers(storage: Storage, stream: str) -> dict[str, dict[str, Any]]:
    """The live workers of ``stream``: id -> their last heartbeat's record."""
    records = await storage.ahgetall(K.workers())
    ids = [w.decode() for w in records]
    alive = await storage.apipeline([C.exists([K.worker_alive(w)]) for w in ids])
    out: dict[str, dict[str, Any]] = {}
    for w, raw, live in zip(ids, records.values(), alive, strict=True):
        try:
            info = unpack(raw, what="a worker's record")
        except SerializationError:
            continue
        if live and isinstance(info, dict) and info.get("stream") == stream:
            out[w] = info
    return out


def _has(info: Mapping[str, Any]) -> Resources:
    have = info.get("resources")
    return dict(have) if isinstance(have, dict) else {}


def unheld(lanes: Iterable[str], workers: Mapping[str, Mapping[str, Any]]) -> dict[str, Resources]:
    """The lanes of ``lanes`` whose resources none of ``workers`` can hold."""
    out = {}
    for lane in lanes:
        needs, _ = needs_of(lane)
        if needs and not any(can_hold(_has(info), needs) for info in workers.values()):
            out[lane] = needs
    return out


async def prepare(
    storage: Storage, stream: str, lanes: Mapping[str, str], *, run_id: str
) -> list[C.Cmd]:
    """Check the lanes a run is about to use (``lanes``: lane -> the key of a task in
    it, for the error's message); the commands that register them, for the submission's
    pipeline after the run's meta (see ``lanes_gc.lua``), and the ring that tells the
    workers, if one should read a lane it does not read yet. Raises
    :class:`~dagrt.ResourceError` if live workers read ``stream`` and none can hold a
    lane's resources (with no live worker at all, the run waits for one, as any), or
    if the stream has too many lanes in use."""
    workers = await live_workers(storage, stream)
    if workers:
        missing = unheld(lanes, workers)
        if missing:
            lane, needs = next(iter(missing.items()))
            have = "; ".join(f"{w} has {describe(_has(i))}" for w, i in sorted(workers.items()))
            best = describe(most(map(_has, workers.values())))
            raise ResourceError(
                f"run {run_id}: task {lanes[lane]} needs {describe(needs)}, and no live worker"
                f" of stream {stream!r} can hold it (at most {best} on one worker: {have});"
                f" start a worker with --resources {describe(needs)}. Nothing of the run was"
                " submitted."
            )
    registry = K.lanes(stream)
    known = await storage.ahgetall(registry)
    new = [lane for lane in lanes if lane.encode() not in known]
    if new and len(known) + len(new) > MAX_LANES:
        await collect(storage, stream)
        known = await storage.ahgetall(registry)
        if len(known) + len(new) > MAX_LANES:
            raise ResourceError(
                f"run {run_id}: stream {stream!r} has {len(known)} lanes in use, and this run"
                f" needs {len(new)} more (at most {MAX_LANES}: each distinct set of resources"
                " and priority is a lane every worker that can hold it reads; use fewer"
                " priority levels)"
            )
    cmds = [C.Cmd(("SADD", K.lane_runs(stream, lane), run_id)) for lane in lanes]
    cmds.append(C.hset(registry, dict.fromkeys(lanes, repr(time.time()))))
    late = any(  # a live worker that can hold a lane does not read it yet
        lane not in set(info.get("lanes") or ()) and can_hold(_has(info), needs_of(lane)[0])
        for info in workers.values()
        for lane in lanes
    )
    if new or late:
        cmds.append(ring(stream))
    return cmds


def ring(stream: str) -> C.Cmd:
    """Tell every worker (on the control stream, which each follows, busy or not) that
    runs use new lanes of ``stream``: those of its workers read the registry again."""
    return C.xadd(K.control(), {"l": stream}, maxlen=CONTROL_MAXLEN)


async def collect(storage: Storage, stream: str, ended: str = "") -> int:
    """Unregister the lanes of ``stream`` that no running run uses (``ended``: a run
    that ended leaves its lanes first); how many (``lanes_gc.lua``)."""
    return int(
        await storage.arun_script(
            LANES_GC,
            [K.lanes(stream)],
            [
                K.lane_stream(stream, ""),
                K.lane_runs(stream, ""),
                *_RUN_META,
                ended,
            ],
        )
    )


def _run_meta() -> list[str]:
    """A run's meta key around its id: the text before it and after it."""
    sentinel = "RUN-ID"
    before, _, after = K.RunKeys(sentinel).meta.partition(sentinel)
    return [before, after]


_RUN_META = _run_meta()
