"""Lanes in storage: the workers that hold them, the registry, the client's checks.

A run whose tasks need resources or have priorities other than 0 puts their
entries in lanes (:mod:`dagrt.resources`). Before it is written, :func:`prepare`
checks that some live worker of the stream can hold each lane's resources (else
:class:`~dagrt.ResourceError`, and nothing is written: a run that no worker can
finish never starts), registers the lanes (``keys.lanes``) and rings the inbox of
each live worker that should read a lane it does not read yet, so that it reads it
at once instead of at its next heartbeat. :func:`live_workers` is what the live
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
from .storage import Storage
from .storage import commands as C

__all__ = ["LANE_IDLE", "live_workers", "prepare", "unheld"]

LANE_IDLE = 3600.0  # seconds a lane unused by any run stays registered (if its stream is empty)


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


async def prepare(storage: Storage, stream: str, lanes: Mapping[str, str], *, run_id: str) -> None:
    """Check, register and announce the lanes a run is about to use (``lanes``: lane
    -> the key of a task in it, for the error's message). Raises
    :class:`~dagrt.ResourceError` if live workers read ``stream`` and none can hold a
    lane's resources (with no live worker at all, the run waits for one, as any)."""
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
    now = time.time()
    known = await storage.ahgetall(registry)
    new = [lane for lane in lanes if lane.encode() not in known]
    if new and len(known) + len(new) > MAX_LANES:
        await _prune(storage, stream, known, now)
        known = await storage.ahgetall(registry)
        if len(known) + len(new) > MAX_LANES:
            raise ResourceError(
                f"run {run_id}: stream {stream!r} has {len(known)} lanes in use, and this run"
                f" needs {len(new)} more (at most {MAX_LANES}: each distinct set of resources"
                " and priority is a lane every worker that can hold it reads; use fewer"
                " priority levels)"
            )
    cmds = [C.hset(registry, dict.fromkeys(lanes, repr(now)))]
    for w, info in workers.items():  # ring those that should read a lane they do not
        reads = set(info.get("lanes") or ())
        if any(lane not in reads and can_hold(_has(info), needs_of(lane)[0]) for lane in lanes):
            cmds.append(C.xadd(K.inbox(w), {"l": "1"}, maxlen=1000))
    await storage.apipeline(cmds)


async def _prune(storage: Storage, stream: str, known: dict[bytes, bytes], now: float) -> None:
    """Unregister lanes no run used for :data:`LANE_IDLE` whose streams are empty."""
    old = [lane.decode() for lane, at in known.items() if now - float(at) > LANE_IDLE]
    if not old:
        return
    sizes = await storage.apipeline([C.Cmd(("XLEN", K.lane_stream(stream, o))) for o in old])
    gone = [o for o, n in zip(old, sizes, strict=True) if not n]
    if gone:
        await storage.apipeline([C.Cmd(("HDEL", K.lanes(stream), *gone))])
