"""Crash tests' failpoints: a worker SIGKILLs itself at a named point of a named task.

Armed by ``DAGRT_FAILPOINTS="point:name,..."`` (points: ``before_run``,
``before_upload``, ``after_upload``, ``after_complete``, ``after_expand`` (a task
returned a graph: its sub-run is submitted, its entry not yet let go of),
``after_resume`` (the task completed with its sub-run's result, the sub-run not yet
deleted), and ``mid_send``: the data
endpoint, halfway through sending an object, named by its task's index); each fires
once per machine (a marker file in ``DAGRT_FAILPOINT_DIR`` says it fired). One more
kills nothing: ``stop_reading:<any name>`` leaves a worker alive (it beats, and
finishes what it has) that never reads the tasks stream again: a stuck read loop,
for the client's watchdog to find. With
failpoints armed the fast lane is off and an upload is sent apart from its
completion, so the gap between the two exists.
"""

from __future__ import annotations

import logging
import os
import signal

__all__ = ["Failpoints"]

log = logging.getLogger("dagrt.worker")


class Failpoints:
    def __init__(self, spec: str | None = None) -> None:
        if spec is None:
            spec = os.environ.get("DAGRT_FAILPOINTS", "")
        self._armed = {
            (point, name)
            for point, _, name in (item.partition(":") for item in spec.split(","))
            if name
        }

    def __bool__(self) -> bool:
        return bool(self._armed)

    def armed(self, point: str) -> bool:
        """Is ``point`` armed for any task?"""
        return any(p == point for p, _ in self._armed)

    def around_upload(self, name: str) -> bool:
        """Is a failpoint armed at the upload of task ``name`` (which must happen)?"""
        return ("before_upload", name) in self._armed or ("after_upload", name) in self._armed

    def hit(self, point: str, name: str, worker: str = "") -> None:
        """SIGKILL this process if ``point`` is armed for tasks named ``name``."""
        if (point, name) not in self._armed:
            return
        marker = os.path.join(
            os.environ.get("DAGRT_FAILPOINT_DIR", "/tmp"), f"dagrt-failpoint-{point}-{name}"
        )
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        log.warning("worker %s: failpoint %s:%s fires", worker, point, name)
        os.kill(os.getpid(), signal.SIGKILL)
