"""Liveness: heartbeats, taking over a silent worker's entries, trimming the stream.

A heartbeat every ``heartbeat`` seconds writes the worker's record
(``dagrt:workers``) and a TTL'd ``dagrt:worker:<id>`` key, touches
``heartbeat_file`` (container health checks), logs a worker-heartbeat event
naming the tasks in flight, and renews (``XCLAIM ... JUSTID``) the worker's own
pending entries, so a long task is never taken over. Every few seconds the
reclaimer ``XAUTOCLAIM``s entries idle for ``claim_timeout`` seconds (their worker
died) and runs them as taken over, then trims what every group has acknowledged.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import anyio

from .. import keys as K
from ..exceptions import StorageError
from ..scheduler import send, take_cmd
from ..serialize import pack
from ..storage import Storage
from ..storage import commands as C
from .consume import Consumer
from .settings import WorkerSettings
from .tasklog import TaskLog

__all__ = ["Liveness", "trim_acked"]

log = logging.getLogger("dagrt.worker")


class Liveness:
    """One worker's heartbeats and reclaims (see the module's text)."""

    def __init__(
        self,
        storage: Storage,
        settings: WorkerSettings,
        worker_id: str,
        consumer: Consumer,
        tasklog: TaskLog,
        counts: dict[str, int],
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.worker = worker_id
        self.consumer = consumer
        self.log = tasklog
        self.counts = counts
        self._beats = 0

    async def beat(self, status: str = "alive") -> None:
        """One heartbeat (``started``, ``alive``, or ``stopped``: the record stays,
        the liveness key goes)."""
        s = self.settings
        in_flight = self.consumer.in_flight
        self._beats += 1
        info = {
            "id": self.worker,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "status": status,
            "ts": time.time(),
            "in_flight": len(in_flight),
            # what the client's watchdog compares from beat to beat (a worker alive,
            # with nothing in flight, that reads nothing while entries wait: stuck)
            "stream": s.stream,
            "reads": self.consumer.reads,
            "beats": self._beats,
            # what it has, holds now, and which lanes it reads (dagrt.resources)
            "resources": s.resources or {},
            "in_use": self.consumer.capacity.in_use(),
            "lanes": sorted(self.consumer.lanes.lanes),
            **self.counts,
        }
        cmds = [
            C.hset(K.workers(), {self.worker: pack(info)}),
            C.set_(K.worker_alive(self.worker), status, ex=3 * s.heartbeat)
            if status != "stopped"
            else C.delete([K.worker_alive(self.worker), K.inbox(self.worker)]),
        ]
        if status == "alive":
            running = list(self.consumer.running.values())[:20]
            self.log.heartbeat(running, self.counts["done"], self.counts["failed"])
            if in_flight:
                # Renew our own pending entries so that a long task is not taken over.
                cmds.append(
                    C.Cmd(("XCLAIM", s.stream, s.group, self.worker, 0, *in_flight, "JUSTID"))
                )
        await self.storage.apipeline(cmds)
        if s.heartbeat_file and status != "stopped":
            await anyio.Path(s.heartbeat_file).touch()

    async def heartbeats(self) -> None:
        """Beat every ``heartbeat`` seconds until cancelled."""
        while True:
            await anyio.sleep(self.settings.heartbeat)
            try:
                await self.beat()
                await self.consumer.refresh_lanes(collect=True)
            except StorageError as exc:
                log.warning("worker %s: heartbeat failed: %s", self.worker, exc)

    async def reclaimer(self) -> None:
        """Take over entries whose worker went silent for ``claim_timeout`` seconds,
        and trim the stream, every few seconds until the worker stops."""
        s = self.settings
        stopping = self.consumer.stopping
        interval = max(0.5, min(s.claim_timeout / 2, 10.0))
        while not stopping.is_set():
            try:
                await self.reclaim_once()
                await trim_acked(self.storage, s.stream)
            except StorageError as exc:
                log.warning("worker %s: reclaim failed: %s", self.worker, exc)
            with anyio.move_on_after(interval):
                await stopping.wait()

    async def reclaim_once(self) -> int:
        """Take over idle entries while slots are free; how many were taken."""
        s = self.settings
        consumer = self.consumer
        start: bytes | str = "0-0"
        taken = 0
        while True:
            free = consumer.slots.value
            if free == 0:
                return taken
            following, entries, _deleted = await self.storage.axautoclaim(
                s.stream, s.group, self.worker, s.claim_timeout, start=start, count=free
            )
            for entry_id, fields in entries:
                if entry_id in consumer.in_flight:
                    continue
                await consumer.slots.acquire()
                self.counts["claimed"] += 1
                taken += 1
                consumer.start_reclaimed(entry_id, fields)
            if following in (b"0-0", "0-0"):
                return taken + await self._reclaim_lanes()
            start = following

    async def _reclaim_lanes(self) -> int:
        """Entries of lanes a blocking read delivered to a worker that died before it
        moved them (``take.lua``): moved for this one now, and run."""
        s = self.settings
        consumer = self.consumer
        taken = 0
        for lane in list(consumer.lanes.lanes):
            free = consumer.slots.value
            if free == 0:
                break
            stream = K.lane_stream(s.stream, lane)
            _, entries, _ = await self.storage.axautoclaim(
                stream, s.group, self.worker, s.claim_timeout, start="0-0", count=free
            )
            if not entries:
                continue
            ids = [(lane, entry_id, True) for entry_id, _ in entries]
            cmd = take_cmd(s.stream, s.group, self.worker, 0, from_lanes=ids, lanes=[(lane, 0)])
            [moved] = await send(self.storage, [cmd])
            for entry_id, fields in moved.run:
                await consumer.slots.acquire()
                self.counts["claimed"] += 1
                taken += 1
                consumer.start_reclaimed(entry_id, fields)
        return taken


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
