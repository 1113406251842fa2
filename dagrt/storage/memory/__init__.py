"""``InMemoryStorage``: the ``Storage`` interface inside this process.

It answers the same commands as Redis with the same reply shapes (the subset
dagrt uses: strings, hashes, lists, sorted sets, streams with consumer groups,
expiry, SCAN, and Lua scripts: the very source the server runs), so every
``Storage`` method and parser is shared with ``RedisStorage`` and one contract
test suite runs on both.

* :mod:`.storage`: the ``InMemoryStorage`` class: the seams, the lock, blocking
  reads and their wake-ups, command dispatch and scripts.
* :mod:`.keyspace`: keys and expiry; strings, hashes, lists, sorted sets.
* :mod:`.streams`: streams and consumer groups.
* :mod:`.lua`: Lua scripts through lupa, with Redis's conversion rules.
* :mod:`.values`: how values are stored and replies shaped.
"""

from __future__ import annotations

from .storage import InMemoryStorage as InMemoryStorage

__all__ = ["InMemoryStorage"]
