"""Streams and consumer groups: XADD, XRANGE, XREAD, XREADGROUP, XACK, XCLAIM,
XAUTOCLAIM, XPENDING, XINFO GROUPS, XDEL, XTRIM.

A stream keeps its ids in order (a list searched with ``bisect``) and each
entry's fields; a group keeps its last delivered id and its pending entries
(who has each, when it was last delivered, how many times). Readers that wait
are woken through :attr:`Keyspace.wake` when an entry is added.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from ...exceptions import StorageError
from .keyspace import Args, Command, Keyspace
from .values import OK, integer, key, text, to_bytes

__all__ = ["COMMANDS", "Group", "Stream"]

StreamId = tuple[int, int]
_MAX_SEQ = (1 << 64) - 1


def id_bytes(sid: StreamId) -> bytes:
    return f"{sid[0]}-{sid[1]}".encode()


def parse_id(value: Any, *, default_seq: int = 0) -> StreamId:
    s = text(value)
    try:
        if "-" in s:
            ms, seq = s.split("-", 1)
            return int(ms), int(seq)
        return int(s), default_seq
    except ValueError:
        raise StorageError("ERR Invalid stream ID specified as stream command argument") from None


class Group:
    __slots__ = ("consumers", "last", "pel")

    def __init__(self, last: StreamId) -> None:
        self.last = last
        # id -> [consumer, last delivery (monotonic ms), delivery count]
        self.pel: dict[StreamId, list[Any]] = {}
        self.consumers: set[str] = set()


class Stream:
    __slots__ = ("fields", "groups", "ids", "last")

    def __init__(self) -> None:
        self.ids: list[StreamId] = []
        self.fields: dict[StreamId, list[bytes]] = {}
        self.last: StreamId = (0, 0)
        self.groups: dict[str, Group] = {}

    def after(self, sid: StreamId, count: int | None) -> list[Any]:
        start = bisect.bisect_right(self.ids, sid)
        stop = len(self.ids) if count is None else min(len(self.ids), start + count)
        return [self.entry(i) for i in self.ids[start:stop]]

    def entry(self, sid: StreamId) -> list[Any]:
        return [id_bytes(sid), list(self.fields[sid])]

    def delete(self, sid: StreamId) -> bool:
        if sid not in self.fields:
            return False
        del self.fields[sid]
        del self.ids[bisect.bisect_left(self.ids, sid)]
        return True

    def trim(self, maxlen: int) -> int:
        excess = len(self.ids) - maxlen
        if excess <= 0:
            return 0
        for sid in self.ids[:excess]:
            del self.fields[sid]
        del self.ids[:excess]
        return excess


def _stream(db: Keyspace, name: str, create: bool = False) -> Stream | None:
    return db.typed(name, Stream, create)  # type: ignore[no-any-return]


def _group_of(db: Keyspace, name: str, group: str, command: str) -> tuple[Stream, Group]:
    s = _stream(db, name)
    g = s.groups.get(group) if s is not None else None
    if s is None or g is None:
        raise StorageError(
            f"NOGROUP No such key '{name}' or consumer group '{group}' in {command} with "
            "GROUP option"
        )
    return s, g


# --------------------------------------------------------------------------- writing and ranges


def xadd(db: Keyspace, a: Args) -> Any:
    name = key(a[0])
    i = 1
    maxlen = None
    if text(a[1]).upper() == "MAXLEN":
        maxlen = integer(a[3])
        i = 4
    id_text = text(a[i])
    fields = [to_bytes(x) for x in a[i + 1 :]]
    if not fields or len(fields) % 2:
        raise StorageError("ERR wrong number of arguments for 'xadd' command")
    s = _stream(db, name, create=True)
    assert s is not None
    if id_text == "*":
        now = int(time.time() * 1000)
        sid = (now, 0) if now > s.last[0] else (s.last[0], s.last[1] + 1)
    else:
        sid = parse_id(id_text)
        if sid <= s.last:
            raise StorageError(
                "ERR The ID specified in XADD is equal or smaller than the target stream top item"
            )
    s.ids.append(sid)
    s.fields[sid] = fields
    s.last = sid
    if maxlen is not None:
        s.trim(maxlen)
    db.wake()
    return id_bytes(sid)


def xlen(db: Keyspace, a: Args) -> Any:
    s = _stream(db, key(a[0]))
    return 0 if s is None else len(s.ids)


def _range_bounds(start: Any, end: Any) -> tuple[StreamId, StreamId, bool, bool]:
    st, en = text(start), text(end)
    lo_open = st.startswith("(")
    hi_open = en.startswith("(")
    lo = (0, 0) if st == "-" else parse_id(st.lstrip("("))
    hi = (1 << 64, 0) if en == "+" else parse_id(en.lstrip("("), default_seq=_MAX_SEQ)
    return lo, hi, lo_open, hi_open


def xrange(db: Keyspace, a: Args, reverse: bool = False) -> Any:
    s = _stream(db, key(a[0]))
    if s is None:
        return []
    if reverse:
        lo, hi, lo_open, hi_open = _range_bounds(a[2], a[1])
    else:
        lo, hi, lo_open, hi_open = _range_bounds(a[1], a[2])
    count = integer(a[4]) if len(a) > 4 else None
    i = (bisect.bisect_right if lo_open else bisect.bisect_left)(s.ids, lo)
    j = (bisect.bisect_left if hi_open else bisect.bisect_right)(s.ids, hi)
    ids = s.ids[i:j]
    if reverse:
        ids = ids[::-1]
    if count is not None:
        ids = ids[:count]
    return [s.entry(sid) for sid in ids]


def xrevrange(db: Keyspace, a: Args) -> Any:
    return xrange(db, a, reverse=True)


def xdel(db: Keyspace, a: Args) -> Any:
    s = _stream(db, key(a[0]))
    if s is None:
        return 0
    return sum(1 for x in a[1:] if s.delete(parse_id(x)))


def xtrim(db: Keyspace, a: Args) -> Any:
    s = _stream(db, key(a[0]))
    if s is None:
        return 0
    if text(a[1]).upper() == "MINID":
        bound = parse_id(a[3])
        keep = bisect.bisect_left(s.ids, bound)
        return s.trim(len(s.ids) - keep)
    return s.trim(integer(a[3]))


# --------------------------------------------------------------------------- reading


def _read_options(a: Args) -> tuple[int | None, bool, Args, Args]:
    count = None
    noack = False
    i = 0
    while True:
        word = text(a[i]).upper()
        if word == "COUNT":
            count = integer(a[i + 1])
            i += 2
        elif word == "BLOCK":
            i += 2
        elif word == "NOACK":
            noack = True
            i += 1
        elif word == "STREAMS":
            rest = a[i + 1 :]
            if not rest or len(rest) % 2:
                raise StorageError("ERR Unbalanced 'xread' list of streams")
            half = len(rest) // 2
            return count, noack, rest[:half], rest[half:]
        else:
            raise StorageError(f"ERR syntax error near {word!r}")


def xread(db: Keyspace, a: Args) -> Any:
    count, _, names, ids = _read_options(a)
    out = []
    for name, id_text in zip(names, ids, strict=True):
        s = _stream(db, key(name))
        if s is None:
            continue
        after = s.last if text(id_text) == "$" else parse_id(id_text)
        entries = s.after(after, count)
        if entries:
            out.append([to_bytes(name), entries])
    return out or None


# --------------------------------------------------------------------------- consumer groups


def xgroup(db: Keyspace, a: Args) -> Any:
    sub = text(a[0]).upper()
    if sub != "CREATE":
        raise StorageError(f"ERR unknown XGROUP subcommand {sub!r}")
    name, group, id_text = key(a[1]), text(a[2]), text(a[3])
    mkstream = any(text(x).upper() == "MKSTREAM" for x in a[4:])
    s = _stream(db, name, create=mkstream)
    if s is None:
        raise StorageError(
            "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you "
            "may want to use the MKSTREAM option to create an empty stream automatically."
        )
    if group in s.groups:
        raise StorageError("BUSYGROUP Consumer Group name already exists")
    s.groups[group] = Group(s.last if id_text == "$" else parse_id(id_text))
    return OK


def xreadgroup(db: Keyspace, a: Args) -> Any:
    if text(a[0]).upper() != "GROUP":
        raise StorageError("ERR syntax error")
    group, consumer = text(a[1]), text(a[2])
    count, noack, names, ids = _read_options(a[3:])
    now = time.monotonic() * 1000
    out = []
    # every stream and group is checked first: a missing one fails the read, which then
    # delivers nothing (as on the server)
    groups = [_group_of(db, key(name), group, "XREADGROUP") for name in names]
    for name, id_text, (s, g) in zip(names, ids, groups, strict=True):
        g.consumers.add(consumer)
        if text(id_text) == ">":
            entries = s.after(g.last, count)
            if entries:
                g.last = parse_id(entries[-1][0])
                if not noack:
                    for eid, _ in entries:
                        g.pel[parse_id(eid)] = [consumer, now, 1]
        else:  # this consumer's pending history
            after = parse_id(id_text)
            mine = sorted(sid for sid, p in g.pel.items() if p[0] == consumer and sid > after)
            if count is not None:
                mine = mine[:count]
            entries = [s.entry(sid) if sid in s.fields else [id_bytes(sid), None] for sid in mine]
        if entries or text(id_text) != ">":
            out.append([to_bytes(name), entries])
    return out or None


def xack(db: Keyspace, a: Args) -> Any:
    s = _stream(db, key(a[0]))
    g = s.groups.get(text(a[1])) if s is not None else None
    if g is None:
        return 0
    return sum(1 for x in a[2:] if g.pel.pop(parse_id(x), None) is not None)


def xautoclaim(db: Keyspace, a: Args) -> Any:
    name, group, consumer = key(a[0]), text(a[1]), text(a[2])
    min_idle, start = integer(a[3]), parse_id(a[4]) if text(a[4]) != "-" else (0, 0)
    count = integer(a[6]) if len(a) > 6 else 100
    s, g = _group_of(db, name, group, "XAUTOCLAIM")
    now = time.monotonic() * 1000
    claimed: list[Any] = []
    deleted: list[bytes] = []
    candidates = sorted(sid for sid in g.pel if sid >= start)
    next_id = b"0-0"
    for n, sid in enumerate(candidates):
        if len(claimed) + len(deleted) >= count:
            next_id = id_bytes(candidates[n])
            break
        pending = g.pel[sid]
        if now - pending[1] < min_idle:
            continue
        if sid not in s.fields:
            del g.pel[sid]
            deleted.append(id_bytes(sid))
            continue
        g.pel[sid] = [consumer, now, pending[2] + 1]
        g.consumers.add(consumer)
        claimed.append(s.entry(sid))
    return [next_id, claimed, deleted]


def xclaim(db: Keyspace, a: Args) -> Any:
    name, group, consumer, min_idle = key(a[0]), text(a[1]), text(a[2]), integer(a[3])
    rest = a[4:]
    flags = {text(x).upper() for x in rest} & {"JUSTID", "FORCE"}
    justid, force = "JUSTID" in flags, "FORCE" in flags
    ids = [x for x in rest if text(x).upper() not in flags]
    s, g = _group_of(db, name, group, "XCLAIM")
    now = time.monotonic() * 1000
    out: list[Any] = []
    for x in ids:
        sid = parse_id(x)
        pending = g.pel.get(sid)
        if pending is None and force and sid in s.fields:
            # FORCE: an entry not delivered yet becomes pending for this consumer
            pending = g.pel[sid] = [consumer, now, 1]
        if pending is None or now - pending[1] < min_idle:
            continue
        if sid not in s.fields:
            del g.pel[sid]
            continue
        g.pel[sid] = [consumer, now, pending[2] if justid else pending[2] + 1]
        g.consumers.add(consumer)
        out.append(id_bytes(sid) if justid else s.entry(sid))
    return out


def xpending(db: Keyspace, a: Args) -> Any:
    _, g = _group_of(db, key(a[0]), text(a[1]), "XPENDING")
    if len(a) > 2:
        return _pending_entries(g, a[2:])
    if not g.pel:
        return [0, None, None, None]
    ids = sorted(g.pel)
    per: dict[str, int] = {}
    for p in g.pel.values():
        per[p[0]] = per.get(p[0], 0) + 1
    return [
        len(ids),
        id_bytes(ids[0]),
        id_bytes(ids[-1]),
        [[c.encode(), str(n).encode()] for c, n in sorted(per.items())],
    ]


def _pending_entries(g: Group, a: Args) -> Any:
    """The extended form: ``[IDLE min-idle] start end count [consumer]``; each entry as
    ``[id, consumer, ms since its last delivery, deliveries]``, in id order."""
    min_idle = 0
    if text(a[0]).upper() == "IDLE":
        min_idle, a = integer(a[1]), a[2:]
    if len(a) not in (3, 4):
        raise StorageError("ERR syntax error")
    lo, hi, lo_open, hi_open = _range_bounds(a[0], a[1])
    count = integer(a[2])
    consumer = text(a[3]) if len(a) == 4 else None
    now = time.monotonic() * 1000
    out: list[Any] = []
    for sid in sorted(g.pel):
        if len(out) >= count:
            break
        if sid < lo or (lo_open and sid == lo) or sid > hi or (hi_open and sid == hi):
            continue
        who, at, n = g.pel[sid]
        idle = int(now - at)
        if (consumer is None or who == consumer) and idle >= min_idle:
            out.append([id_bytes(sid), who.encode(), idle, n])
    return out


def xinfo(db: Keyspace, a: Args) -> Any:
    if text(a[0]).upper() != "GROUPS":
        raise StorageError("ERR only XINFO GROUPS is supported by InMemoryStorage")
    s = _stream(db, key(a[1]))
    if s is None:
        raise StorageError("ERR no such key")
    return [
        [
            b"name",
            name.encode(),
            b"consumers",
            len(g.consumers),
            b"pending",
            len(g.pel),
            b"last-delivered-id",
            id_bytes(g.last),
        ]
        for name, g in s.groups.items()
    ]


COMMANDS: dict[str, Command] = {
    "XADD": xadd,
    "XLEN": xlen,
    "XRANGE": xrange,
    "XREVRANGE": xrevrange,
    "XREAD": xread,
    "XGROUP": xgroup,
    "XREADGROUP": xreadgroup,
    "XACK": xack,
    "XAUTOCLAIM": xautoclaim,
    "XPENDING": xpending,
    "XCLAIM": xclaim,
    "XINFO": xinfo,
    "XDEL": xdel,
    "XTRIM": xtrim,
}
