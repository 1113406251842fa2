"""Outputs a worker holds in memory for children that run on it too.

Two kinds of value live here:

* **cached**: an output made (or downloaded) here whose children may run here;
  it is also in storage, so the cache may drop it whenever its byte budget
  needs room (oldest first) and a child then reads it from storage;
* **pinned**: an output that was *not* uploaded (keep mode ``L``: its one child
  was kept by this worker). Nothing else holds it, so it is never evicted and
  the budget does not refuse it, however large: it stays until that child has
  read it (or the run ends). Dropping it would make the child recompute it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["ValueCache"]

Key = tuple[str, int]  # (run id, task index)


class ValueCache:
    """Outputs by (run, task): cached within ``max_bytes`` (oldest out first), or pinned."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0  # held by cached values (pinned ones are counted apart)
        self.pinned_bytes = 0
        self._items: OrderedDict[Key, tuple[Any, int]] = OrderedDict()
        self._pinned: dict[Key, tuple[Any, int]] = {}
        self._uses: dict[Key, int] = {}

    def put(self, run_id: str, index: int, value: Any, size: int, *, pinned: bool = False) -> None:
        """Hold a value; ``pinned``: nowhere else holds it (see the module's text)."""
        key = (run_id, index)
        if not pinned and size > self.max_bytes:
            return
        uses = self._uses.get(key)
        self._forget(key)
        if uses is not None:  # children that read it already still count
            self._uses[key] = uses
        if pinned:
            self._pinned[key] = (value, size)
            self.pinned_bytes += size
            return
        self._items[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            oldest, (_, dropped) = self._items.popitem(last=False)
            self._uses.pop(oldest, None)
            self.bytes -= dropped

    def get(self, run_id: str, index: int) -> tuple[bool, Any, int]:
        """``(found, value, size in bytes)``."""
        key = (run_id, index)
        item = self._items.get(key) or self._pinned.get(key)
        if item is None:
            return False, None, 0
        return True, item[0], item[1]

    def holds(self, run_id: str, index: int) -> bool:
        """Is the value here (cached or pinned)?"""
        key = (run_id, index)
        return key in self._items or key in self._pinned

    def used(self, run_id: str, index: int, uses: int) -> None:
        """A child here consumed the value; drop it once ``uses`` children have."""
        key = (run_id, index)
        if key not in self._items and key not in self._pinned:
            return
        left = self._uses.get(key, uses) - 1
        if left <= 0:
            self._forget(key)
        else:
            self._uses[key] = left

    def unpin(self, run_id: str, index: int) -> None:
        """A pinned value is stored now: it is cached like any other from here on."""
        item = self._pinned.get((run_id, index))
        if item is not None:
            self.put(run_id, index, item[0], item[1])

    def drop_run(self, run_id: str) -> None:
        """Forget every value of a run that ended."""
        for key in [k for k in self._items if k[0] == run_id]:
            self._forget(key)
        for key in [k for k in self._pinned if k[0] == run_id]:
            self._forget(key)

    def _forget(self, key: Key) -> None:
        self._uses.pop(key, None)
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= item[1]
        item = self._pinned.pop(key, None)
        if item is not None:
            self.pinned_bytes -= item[1]
