"""Resources and priorities: what a task needs, what a worker has, and lanes.

``@task(resources={"gpu": 1, "memory": "4GB"})`` says what one call holds while it
runs; ``dagrt worker --resources gpu=2,memory=32GB`` (``WorkerSettings.resources``)
says what a worker has. Amounts are numbers > 0, or sizes ("4GB" is 4e9 bytes,
"4GiB" 4 * 2**30). A worker runs a task only if it has every resource the task
names, at least as much of each, and runs at once no more tasks than its amounts
allow (:class:`Capacity`). ``@task(priority=...)`` and ``compute(..., priority=)``
(added to each task's) order ready work: higher first.

A task that needs a resource or has a priority other than 0 has a *lane*: one
stream per distinct (resources, priority), ``<tasks stream>:lane:<lane>``
(:func:`lane_of` names it: ``gpu=1,memory=4000000000|p=2``). Its entries go there
instead of the tasks stream, and only workers that can hold its resources read
it: unconstrained tasks of priority 0 keep the one stream, and a worker with no
lane to read reads nothing else. A worker reads its lanes in priority order (see
:class:`LaneOrder`); an entry it reads from a lane becomes a pending entry of the
tasks stream for it (``take.lua``), so acknowledging, renewing and taking over work
as for any other. Lanes in use are listed in a registry hash (``keys.lanes``).
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from .graph import DAG

__all__ = [
    "MAX_LANES",
    "Capacity",
    "LaneOrder",
    "Resources",
    "SharedCapacity",
    "can_hold",
    "check_priority",
    "check_resources",
    "describe",
    "lane_of",
    "needs_of",
    "parse_resources",
    "task_lanes",
]

Resources = dict[str, float]  # resource name -> amount

MAX_LANES = 64  # distinct (resources, priority) lanes a stream may have in use
AGING = 8  # every AGING-th read of a worker takes its lanes lowest priority first
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*")
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
MAX_PRIORITY = 10**6


def _amount(what: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(
            f"{what}: {name!r}: the amount must be a number > 0 or a size such as '4GB',"
            f" got {value!r}"
        )
    if isinstance(value, str):
        m = _SIZE.fullmatch(value)
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(
                f"{what}: {name!r}: {value!r} is not an amount (a number, or a size such as"
                " '4GB' or '512MiB')"
            )
        value = float(m.group(1)) * _UNITS[unit]
    amount = float(value)
    if not math.isfinite(amount) or amount <= 0:
        raise ValueError(f"{what}: {name!r}: the amount must be > 0 and finite, got {value!r}")
    return amount


def check_resources(value: object, what: str = "resources") -> Resources | None:
    """``value`` as resources (name -> amount > 0), None if empty or None; else a
    ValueError naming what is wrong."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a dict of name -> amount, got {value!r}")
    out: Resources = {}
    for name, amount in value.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"{what}: {name!r} is not a resource name (letters, digits, '_', '.', '-';"
                " a letter or '_' first)"
            )
        out[name] = _amount(what, name, amount)
    return dict(sorted(out.items())) or None


def parse_resources(text: str) -> Resources:
    """``"gpu=2,memory=32GB"`` as resources (``dagrt worker --resources``)."""
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, amount = part.partition("=")
        if not sep:
            raise ValueError(f"resources: {part!r} is not name=amount (as in gpu=2,memory=32GB)")
        pairs[name.strip()] = amount.strip()
    return check_resources(pairs) or {}


def check_priority(value: object, what: str = "priority") -> int | None:
    """``value`` as a priority (an int; higher runs first), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PRIORITY:
        raise ValueError(f"{what} must be an int between -10**6 and 10**6, got {value!r}")
    return value


def _number(amount: float) -> str:
    return str(int(amount)) if amount.is_integer() else repr(amount)


def describe(resources: Mapping[str, float] | None) -> str:
    """``gpu=1,memory=4000000000`` (``none`` for no resources)."""
    if not resources:
        return "none"
    return ",".join(f"{k}={_number(v)}" for k, v in sorted(resources.items()))


def lane_of(resources: Mapping[str, float] | None, priority: int) -> str:
    """The lane of tasks that need ``resources`` at ``priority``: "" (the tasks stream
    itself) for none at 0, else ``<name=amount,...>[|p=<priority>]`` (``|`` is in no
    resource's name)."""
    lane = describe(resources) if resources else ""
    return f"{lane}|p={priority}" if priority else lane


def task_lanes(dag: DAG, priority: int) -> dict[int, str]:
    """The lane of each task of ``dag`` that has one, in a run of ``priority`` (empty for
    most runs: one look at each distinct function tells)."""
    by_fn = {id(f): lane_of(f.resources, f.priority + priority) for f in dag._distinct}
    if not any(by_fn.values()):
        return {}
    return {i: lane for i, n in enumerate(dag._nodes) if (lane := by_fn[id(n.func)])}


def needs_of(lane: str) -> tuple[Resources, int]:
    """What :func:`lane_of` made ``lane`` of: (resources, priority); a ValueError if
    ``lane`` is not a lane's name."""
    head, sep, tail = lane.partition("|")
    priority = 0
    if sep:
        if not tail.startswith("p="):
            raise ValueError(f"not a lane: {lane!r}")
        priority = int(tail[2:])
        if not priority:
            raise ValueError(f"not a lane: {lane!r}")
    return (parse_resources(head) if head else {}), priority


def can_hold(have: Mapping[str, float] | None, needs: Mapping[str, float] | None) -> bool:
    """Does a worker with ``have`` hold a task that needs ``needs``?"""
    have = have or {}
    return all(have.get(k, 0.0) >= v for k, v in (needs or {}).items())


@dataclass
class LaneOrder:
    """The lanes one worker reads, in the order it reads them, and how many entries
    of each it may take now.

    ``lanes``: lane -> (resources, priority) of those the worker can hold. The tasks
    stream is the lane "" at priority 0; among lanes of one priority, those that need
    resources come first (a worker that has a resource serves the tasks that need it
    first). Every :data:`AGING`-th read goes lowest priority first, so low-priority
    work is never starved by a steady flow of higher: it gets at least that share of
    a busy worker's reads.
    """

    lanes: dict[str, tuple[Resources, int]] = field(default_factory=dict)
    reads: int = 0
    _order: list[str] = field(default_factory=list)

    def set(self, lanes: Mapping[str, tuple[Resources, int]]) -> None:
        self.lanes = dict(lanes)
        self._order = sorted(
            ["", *self.lanes],
            key=lambda lane: (-self.priority(lane), not self.lanes.get(lane, ({}, 0))[0], lane),
        )

    def priority(self, lane: str) -> int:
        return self.lanes[lane][1] if lane else 0

    def plan(self, count: int, capacity: Capacity | None) -> list[tuple[str, int]]:
        """(lane, entries to take at most) in reading order; [] when the worker reads
        the tasks stream only. A lane whose resources are all in use now gets 0."""
        if not self.lanes:
            return []
        self.reads += 1
        order = self._order if self.reads % AGING else self._order[::-1]
        out = []
        for lane in order:
            needs = self.lanes[lane][0] if lane else None
            n = count if not needs or capacity is None else min(count, capacity.fits(needs))
            out.append((lane, n))
        return out


class Capacity:
    """What one worker (or an in-process runtime) has, and what its tasks hold now.

    Amounts are held by key (a stream entry, a task): :meth:`acquire` waits until the
    task fits (never more than the worker has, in total), :meth:`release` gives them
    back and wakes the waiters. ``on_free`` is called after each release (a worker's
    read loop may wait for a lane whose resources were all in use). Loop thread only.
    """

    def __init__(self, have: Mapping[str, float]) -> None:
        self.have = dict(have)
        self.used: dict[str, float] = dict.fromkeys(self.have, 0.0)
        self.held: dict[object, Resources] = {}
        self._freed = anyio.Event()
        self.on_free: list[Callable[[], None]] = []

    def fits(self, needs: Mapping[str, float]) -> int:
        """How many more tasks that need ``needs`` fit now."""
        n = math.inf
        for k, v in needs.items():
            left = self.have.get(k, 0.0) - self.used.get(k, 0.0)
            n = min(n, math.floor(left / v + 1e-9))
        return max(0, int(n)) if n != math.inf else 1 << 30

    def try_acquire(self, key: object, needs: Mapping[str, float]) -> bool:
        if key in self.held:
            return True
        if not self.fits(needs):
            return False
        for k, v in needs.items():
            self.used[k] += v
        self.held[key] = dict(needs)
        return True

    async def acquire(self, key: object, needs: Mapping[str, float]) -> float:
        """Hold ``needs`` for ``key``; the seconds it waited for them."""
        if not can_hold(self.have, needs):
            raise ValueError(f"needs {describe(needs)}; this worker has {describe(self.have)}")
        t0 = anyio.current_time()
        while not self.try_acquire(key, needs):
            if self._freed.is_set():
                self._freed = anyio.Event()
            await self._freed.wait()
        return anyio.current_time() - t0

    def release(self, key: object) -> None:
        needs = self.held.pop(key, None)
        if needs is None:
            return
        for k, v in needs.items():
            self.used[k] = max(0.0, self.used[k] - v)
        self._freed.set()
        for callback in list(self.on_free):
            callback()

    def in_use(self) -> Resources:
        return {k: v for k, v in self.used.items() if v}


def most(haves: Iterable[Mapping[str, float]]) -> Resources:
    """The most of each resource any one of ``haves`` has (for error messages)."""
    out: Resources = {}
    for have in haves:
        for k, v in have.items():
            out[k] = max(out.get(k, 0.0), v)
    return out


class SharedCapacity:
    """:class:`Capacity` for the in-process runtime, whose tasks start from threads: a
    task that does not fit now waits in a queue (no thread waits), and whoever gives
    resources back hands them on to the waiters that fit now, in the order they came.
    Amounts are held by (run, task) from when the task is ready until its call ends
    (:meth:`give`); a run that ends gives back all its tasks hold (:meth:`leave`: a sync
    call still running in a thread gives its amounts back then, as one past its
    timeout does)."""

    def __init__(self, have: Mapping[str, float]) -> None:
        self.have = dict(have)
        self.used: dict[str, float] = dict.fromkeys(self.have, 0.0)
        self._lock = threading.Lock()
        self._waiting: deque[tuple[object, int, Resources]] = deque()
        self._held: dict[tuple[object, int], Resources] = {}

    def _fits(self, needs: Mapping[str, float]) -> bool:
        used, have = self.used, self.have
        return all(used.get(k, 0.0) + v <= have.get(k, 0.0) + 1e-9 for k, v in needs.items())

    def _hold(self, owner: object, index: int, needs: Resources) -> None:
        for k, v in needs.items():
            self.used[k] += v
        self._held[owner, index] = needs

    def _unhold(self, key: tuple[object, int]) -> None:
        needs = self._held.pop(key)
        for k, v in needs.items():
            self.used[k] = max(0.0, self.used[k] - v)

    def _start_waiters(self) -> list[tuple[object, int]]:
        started = []
        waiting = self._waiting
        for _ in range(len(waiting)):
            owner, index, wanted = waiting.popleft()
            if self._fits(wanted):
                self._hold(owner, index, wanted)
                started.append((owner, index))
            else:
                waiting.append((owner, index, wanted))
        return started

    def take(self, owner: object, index: int, needs: Resources) -> bool:
        """Hold ``needs`` for task ``index`` of ``owner`` now (True), or queue it (False:
        :meth:`give` hands them on later)."""
        with self._lock:
            if self._fits(needs):
                self._hold(owner, index, needs)
                return True
            self._waiting.append((owner, index, needs))
            return False

    def give(self, owner: object, index: int) -> list[tuple[object, int]]:
        """The task's call returned: its amounts go back; the queued tasks that hold
        theirs now, to start."""
        with self._lock:
            if (owner, index) not in self._held:
                return []
            self._unhold((owner, index))
            return self._start_waiters()

    def leave(self, owner: object) -> list[tuple[object, int]]:
        """``owner`` (a run) ended: its queued tasks are forgotten and what its tasks hold
        goes back; the queued tasks of others to start."""
        with self._lock:
            self._waiting = deque(w for w in self._waiting if w[0] is not owner)
            for key in [k for k in self._held if k[0] is owner]:
                self._unhold(key)
            return self._start_waiters()
