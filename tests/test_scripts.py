"""dagrt's Lua scripts answer the same on InMemoryStorage as on a real server.

``InMemoryStorage`` runs the very ``.lua`` source the server runs (through lupa),
but on its own emulation of the commands the scripts call, and with its own
conversions between Lua values and replies. These tests hold both to the server:
random runs driven through the scheduler's own command builders (``complete``,
``fail``, ``stop``), random event-log writes (``log_run``) and reads
(``read_entries``), each sent to a real server and to an ``InMemoryStorage``, must
get the same replies and leave the same keys: types, values, hash fields, list
items, sorted-set scores, stream entries in order, consumer groups with their
pending entries, and which keys have a time to live. Stream ids are made of the
clock, so entries are compared by their fields and position, never by id.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from dagrt import keys as K
from dagrt.exceptions import StorageError
from dagrt.keyring import Keyring
from dagrt.metrics.read import READ_ENTRIES
from dagrt.metrics.runs_index import LOG_RUN
from dagrt.objects import Location
from dagrt.outcomes import event_tag
from dagrt.scheduler import (
    STOP,
    Completion,
    complete_cmd,
    fail_cmd,
    load_scripts_cmds,
    requeue_cmd,
    take_cmd,
)
from dagrt.storage import InMemoryStorage, RedisStorage, Script, Storage
from dagrt.storage import commands as C
from dagrt.storage.base import NoScriptError
from dagrt.submission import OUTSTANDING

STREAM = K.tasks_stream()
SECRET = Keyring.of(b"the pool's secret")  # (events that end a run carry tags made with it)
GROUP = K.TASKS_GROUP
RUN = "run-1"
FINISHED_TAG = event_tag(SECRET, RUN, "finished")

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is deterministic
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def server(redis_url: str) -> Iterator[RedisStorage]:
    storage = RedisStorage(redis_url)
    yield storage
    storage.close()


class Both:
    """A real server and an InMemoryStorage, sent the same things."""

    def __init__(self, server: RedisStorage) -> None:
        server.flushdb()
        self.server = server
        self.memory = InMemoryStorage()

    @property
    def pair(self) -> tuple[Storage, Storage]:
        return self.server, self.memory

    def assert_same_keys(self) -> None:
        assert snapshot(self.memory) == snapshot(self.server)


# --------------------------------------------------------------------------- comparing keys


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def snapshot(storage: Storage) -> dict[str, Any]:
    """Every key: its type, whether it has a time to live, and its contents. Stream
    entries, and values that are ids of them (a run's first and last entry, its list
    of entries), are given as (stream, position), never as ids."""
    names = sorted(storage.scan_iter())
    kinds = {key: _text(storage.pipeline([C.Cmd(("TYPE", key))])[0]) for key in names}
    # Values name entries of the tasks stream only; two streams may hold the same id
    # (one millisecond), so the tasks stream's positions win.
    streams = sorted((k for k in names if kinds[k] == "stream"), key=lambda k: k == STREAM)
    ids = {eid: (key, i) for key in streams for i, (eid, _) in enumerate(storage.xrange(key))}

    def plain(value: Any) -> Any:
        return ids.get(value, value) if isinstance(value, bytes) else value

    out: dict[str, Any] = {}
    for key in names:
        kind = kinds[key]
        value: Any
        if kind == "string":
            value = plain(storage.get(key))
        elif kind == "hash":
            value = {f: plain(v) for f, v in storage.hgetall(key).items()}
        elif kind == "list":
            value = [plain(v) for v in storage.pipeline([C.lrange(key)])[0]]
        elif kind == "zset":
            value = storage.zrange(key, withscores=True)
        elif kind == "stream":
            value = stream_state(storage, key)  # (a note names an entry: as its position)
            value["entries"] = [{f: plain(v) for f, v in e.items()} for e in value["entries"]]
        else:
            raise AssertionError(f"{key}: unexpected type {kind}")
        out[key] = (kind, storage.ttl(key) is not None, value)
    return out


def positions(storage: Storage, stream: str) -> dict[bytes, int]:
    return {eid: i for i, (eid, _) in enumerate(storage.xrange(stream))}


def _where(at: dict[bytes, int], entry_id: Any) -> Any:
    if entry_id is None:
        return None
    entry_id = entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()
    return at.get(entry_id, "0-0" if entry_id == b"0-0" else "gone")


def stream_state(storage: Storage, stream: str) -> dict[str, Any]:
    entries = storage.xrange(stream)
    at = {eid: i for i, (eid, _) in enumerate(entries)}
    groups = {}
    for info in storage.xinfo_groups(stream):
        name = _text(info["name"])
        pending = storage.xpending(stream, name)
        groups[name] = {
            "consumers": int(info["consumers"]),
            "pending": int(info["pending"]),
            "last-delivered": _where(at, info["last-delivered-id"]),
            "oldest pending": _where(at, pending["min"]),
            "newest pending": _where(at, pending["max"]),
            "pending by consumer": pending["consumers"],
        }
    return {
        "length": storage.xlen(stream),
        "entries": [fields for _, fields in entries],
        "groups": groups,
    }


# --------------------------------------------------------------------------- runs


@st.composite
def run_scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A random DAG and a random sequence of what workers and the client do to its run."""
    n = draw(st.integers(1, 7))
    parents = [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 3)))) if i else []
        for i in range(n)
    ]
    task = st.integers(0, n - 1)
    worker = st.sampled_from(["w1", "w2"])
    # index, keep mode, acknowledge its entries, output stored first (as a worker does: 1),
    # not stored (0), or in a host's object store, its location given to the script (2)
    # (keep modes: "1" keep a child, "0" none, "L" output in memory, "C" claim up to 3,
    # "W" keep a child and wait for the others: delayed I/O)
    item = st.tuples(
        task, st.sampled_from("110LCW"), st.booleans(), st.sampled_from([1, 1, 1, 0, 2])
    )
    batch = st.lists(item, min_size=1, max_size=3, unique_by=lambda x: x[0])
    step = st.one_of(
        st.tuples(st.just("deliver"), worker),
        st.tuples(st.just("take"), worker, st.booleans()),
        st.tuples(st.just("complete"), batch, worker),
        st.tuples(st.just("complete"), batch, worker),
        st.tuples(st.just("complete"), batch, worker),
        st.tuples(st.just("complete"), batch, worker),
        st.tuples(st.just("replay"), st.integers(0, 20)),
        st.tuples(st.just("store"), task),
        st.tuples(st.just("fail"), task, st.booleans(), worker),
    )
    return {
        "parents": parents,
        "ttl": draw(st.booleans()),  # the run's meta hash has a time to live
        # tasks in a lane (dagrt.resources): their entries go to its stream
        "lanes": sorted(draw(st.sets(st.integers(0, n - 1), max_size=n))),
        "steps": draw(st.lists(step, min_size=1, max_size=16))
        + draw(st.lists(st.tuples(st.just("stop"), st.just("cancelled")), max_size=1))
        + draw(st.lists(step, max_size=3)),
    }


LANE = "gpu=1"


def start_run(
    storage: Storage, parents: list[list[int]], ttl: bool, lanes: Sequence[int] = ()
) -> K.RunKeys:
    """The keys ``submit`` writes that the scripts read, and the roots dispatched (those
    in ``lanes`` to the lane's stream)."""
    rk = K.RunKeys(RUN)
    n = len(parents)
    cmds = [
        C.hset(rk.meta, {"status": "running", "n": n, "left": n}),
        C.hset(rk.done, {"-": "created"}),
        C.xadd(rk.progress, {"t": -1}),
        C.xadd(rk.events, {"e": "submitted", "n": n}),
        C.xgroup_create(STREAM, GROUP, "0"),
    ]
    deps = {str(i): len(ps) for i, ps in enumerate(parents) if ps}
    if deps:
        cmds.append(C.hset(rk.deps, deps))
    if ttl:
        cmds.append(C.expire(rk.meta, 3600))
    if lanes:
        cmds.append(C.hset(rk.lanes, dict.fromkeys(map(str, lanes), LANE)))
        cmds.append(C.hset(rk.meta, {"lanes": K.lane_stream(STREAM, "")}))
        cmds.append(C.xgroup_create(K.lane_stream(STREAM, LANE), GROUP, "0"))
    cmds += [
        C.xadd(K.lane_stream(STREAM, LANE) if i in lanes else STREAM, {"r": RUN, "t": i})
        for i, ps in enumerate(parents)
        if not ps
    ]
    cmds.append(C.set_(K.worker_alive("w1"), b"alive"))  # (w2 is gone: no claim for it)
    storage.pipeline(cmds)
    return rk


class Run:
    """One backend's side of a scenario: the entries its workers were handed."""

    def __init__(
        self, storage: Storage, parents: list[list[int]], ttl: bool, lanes: Sequence[int] = ()
    ) -> None:
        self.storage = storage
        self.rk = start_run(storage, parents, ttl, lanes)
        self.children: list[list[int]] = [[] for _ in parents]
        for child, ps in enumerate(parents):
            for p in ps:
                self.children[p].append(child)
        self.delivered: dict[int, list[bytes]] = {}  # task -> its entries handed out
        self.sent: list[C.Cmd] = []

    def deliver(self, worker: str) -> list[dict[bytes, bytes]]:
        got = self.storage.xreadgroup(GROUP, worker, {STREAM: ">"}, count=100)
        entries = [e for _, es in got for e in es]
        for eid, fields in entries:
            self.delivered.setdefault(int(fields[b"t"]), []).append(eid)
        return [fields for _, fields in entries]

    def take(self, worker: str, reads_lane: bool) -> Any:
        """A worker's screened read (``take.lua``): the lane first if it reads it."""
        lanes = [(LANE, 2), ("", 2)] if reads_lane else []
        cmd = take_cmd(STREAM, GROUP, worker, 2, inbox=False, lanes=lanes)
        [taken] = self.storage.pipeline([cmd])
        at = positions(self.storage, STREAM)
        for eid, fields in taken.run:
            self.delivered.setdefault(int(fields[b"t"]), []).append(eid)
        ran = [(at.get(eid, eid), fields) for eid, fields in taken.run]
        if any(b"l" in fields for _, fields in taken.run):
            event("an entry of a lane was moved to the tasks stream and ran")
        return ran, taken.dropped, taken.claimed, len(taken.early), len(taken.odd)

    def acks(self, index: int, ack: bool) -> list[bytes]:
        return list(self.delivered.get(index, [])) if ack else []

    def complete(self, items: list[tuple[int, str, bool, int]], worker: str) -> Any:
        self.storage.mset({self.rk.output(index): b"output" for index, _, _, s in items if s == 1})
        completions = [
            Completion(
                index,
                self.children[index],
                self.acks(index, ack),
                may_keep=mode in "1CW",
                local=mode == "L",
                location=Location("host-a", 123, "127.0.0.1:1").encode() if s == 2 else b"",
                cluster=3 if mode == "C" else 0,
                wait=mode == "W",
                inline=index % 3 == 0,  # (its dispatched children's entries carry it)
            )
            for index, mode, ack, s in items
        ]
        cmd = complete_cmd(self.rk, completions, worker, stream=STREAM, finished=FINISHED_TAG)
        self.sent.append(cmd)
        return self.plain(self.storage.pipeline([cmd])[0])

    def plain(self, replies: list[Any]) -> list[Any]:
        """Replies with the ids of the entries of claimed children as their positions in
        the stream (ids are made of the clock)."""
        at = positions(self.storage, STREAM)
        return [
            [*reply[:2], *(at.get(x, x) if i % 2 == 0 else x for i, x in enumerate(reply[2:]))]
            for reply in replies
        ]

    def replay(self, k: int) -> Any:
        """A completion sent again, as after a lost reply: the decision remembered."""
        if not self.sent:
            return None
        return self.plain(self.storage.pipeline([self.sent[k % len(self.sent)]])[0])

    def fail(self, index: int, ack: bool, worker: str) -> Any:
        record = {"task": index, "error": "ValueError('boom')", "worker": worker}
        cmd = fail_cmd(
            self.rk, index, worker, record, secret=SECRET, acks=self.acks(index, ack), stream=STREAM
        )
        return self.storage.pipeline([cmd])[0]

    def stop(self, status: str) -> Any:
        tag = event_tag(SECRET, self.rk.run_id, status)
        return self.storage.run_script(STOP, [self.rk.meta, self.rk.events], [status, tag])

    def step(self, action: tuple[Any, ...]) -> Any:
        kind, *args = action
        if kind == "store":
            return self.storage.set(self.rk.output(args[0]), b"output")
        return getattr(self, kind)(*args)


@settings(EXAMPLES, max_examples=40)
@given(run_scenarios())
def test_completions_failures_and_stops_answer_and_write_as_on_the_server(
    server: RedisStorage, scenario: dict[str, Any]
) -> None:
    both = Both(server)
    for storage in both.pair:  # as a worker does first (complete and fail go by EVALSHA)
        storage.pipeline(load_scripts_cmds())
    runs = [Run(s, scenario["parents"], scenario["ttl"], scenario["lanes"]) for s in both.pair]
    both.assert_same_keys()
    for action in scenario["steps"]:
        on_server, in_memory = (run.step(action) for run in runs)
        assert in_memory == on_server, action
        both.assert_same_keys()
        if action[0] in ("complete", "replay") and on_server:
            for code, kept, *claimed in on_server:
                kept_child = code in (b"ok", b"dup") and kept
                event(f"complete: {code.decode()}" + (", a child kept" if kept_child else ""))
                if any(claimed[0::2]):
                    event("complete: children claimed")
                if not all(claimed[0::2]):
                    event("complete: children waited for")
        elif action[0] in ("fail", "stop"):
            event(f"{action[0]}: {on_server!r}")
    event(f"the run ends {both.server.hget(runs[0].rk.meta, 'status')!r}")


# --------------------------------------------------------------------------- the event log: log_run


@st.composite
def log_calls(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Writes to the event log by several writers, some sent again (same sequence
    number) or out of order, as ``metrics.runs_index.log_run_call`` shapes them."""
    calls = []
    last: dict[str, int] = {}
    for _ in range(draw(st.integers(1, 10))):
        writer = draw(st.sampled_from(["client", "w1", "w2"]))
        seq = draw(
            st.sampled_from(
                [last.get(writer, 0) + 1, last.get(writer, 0) + 1, last.get(writer, 0) + 3]
                + ([last[writer], max(1, last[writer] - 1)] if writer in last else [])
            )
        )
        last[writer] = max(last.get(writer, 0), seq)
        run = draw(st.sampled_from(["r1", "r2", ""]))
        entries = draw(
            st.lists(st.tuples(st.integers(1, 64), st.binary(min_size=1, max_size=12)), max_size=4)
        )
        name = st.sampled_from(["done", "failed", "events", "tasks"])
        counters = draw(st.dictionaries(name, st.integers(-3, 50), max_size=3)) if run else {}
        fields = (
            draw(
                st.dictionaries(
                    st.sampled_from(["status", "client", "n"]),
                    st.text("abc:1", min_size=0, max_size=5),
                    max_size=2,
                )
            )
            if run
            else {}
        )
        how = draw(st.sampled_from(["S", "N", ""])) if run else ""
        score = repr(draw(st.floats(0, 2e9, allow_nan=False))) if how else ""
        calls.append(
            {
                "writer": writer,
                "seq": seq,
                "run": run,
                "entries": entries,
                "counters": counters,
                "fields": fields,
                "index": (score, how),
            }
        )
    return calls


def log_run(storage: Storage, call: dict[str, Any]) -> Any:
    run = call["run"]
    keys = [
        K.events(),
        K.run_record(run) if run else K.events(),  # (no run: as the log's writer sends it)
        K.run_entries(run) if run else K.events(),
        K.runs_index(),
        K.log_writer(call["writer"]),
    ]
    argv: list[Any] = [run, call["seq"], len(call["entries"])]
    for n, data in call["entries"]:
        argv += [n, data]
    argv.append(len(call["counters"]))
    for name, amount in call["counters"].items():
        argv += [name, amount]
    argv.append(len(call["fields"]))
    for name, value in call["fields"].items():
        argv += [name, value]
    argv += list(call["index"])
    return storage.run_script(LOG_RUN, keys, argv)


@EXAMPLES
@given(log_calls())
def test_event_log_writes_apply_once_and_index_as_on_the_server(
    server: RedisStorage, calls: list[dict[str, Any]]
) -> None:
    both = Both(server)
    for call in calls:
        replies = [log_run(storage, call) for storage in both.pair]
        # the ids written: as many, and the same entries of the log
        on_server, in_memory = (
            [positions(storage, K.events()).get(eid) for eid in reply]
            for storage, reply in zip(both.pair, replies, strict=True)
        )
        assert in_memory == on_server, call
        assert None not in in_memory
        both.assert_same_keys()
        event("a write applied" if on_server or not call["entries"] else "a write sent again")


# --------------------------------------------------------------------------- reading entries by id


@EXAMPLES
@given(
    st.lists(
        st.dictionaries(st.sampled_from([b"r", b"n", b"d"]), st.binary(max_size=6), min_size=1),
        max_size=10,
    ),
    st.sets(st.integers(0, 9)),
    st.lists(st.integers(-2, 11), max_size=12),
)
def test_reading_entries_by_id_answers_as_on_the_server(
    server: RedisStorage, entries: list[dict[bytes, bytes]], deleted: set[int], wanted: list[int]
) -> None:
    """Entries read by id, in the order asked: those deleted since, and ids before
    the first entry or after the last, read as empty."""
    both = Both(server)
    replies = []
    for storage in both.pair:
        ids = storage.xadd_many(K.events(), entries) if entries else []
        storage.xdel(K.events(), *[ids[i] for i in deleted if i < len(ids)])
        asked = ["0-1" if i < 0 else ids[i] if i < len(ids) else "99999999999999-0" for i in wanted]
        reply = storage.run_script(READ_ENTRIES, [K.events()], asked)
        at = {eid: i for i, eid in enumerate(ids)}
        replies.append([[(at[eid], fields) for eid, fields in found] for found in reply])
    assert replies[1] == replies[0]
    both.assert_same_keys()


def test_children_claimed_by_a_large_output_stay_with_their_worker(server: RedisStorage) -> None:
    """Fan-out clustering: a completion in keep mode "C3" keeps one ready child and
    claims two more (their entries pending for that worker at once); a fourth is
    dispatched. Another worker that reads a claimed entry hands it back while the
    claimant lives and runs it once the claimant is gone; giving a claimed entry back
    clears the claim, so that whoever reads the new entry runs it."""
    both = Both(server)
    for storage in both.pair:
        storage.pipeline(load_scripts_cmds())
        rk = start_run(storage, [[], [0], [0], [0], [0]], ttl=False)
        storage.set(rk.output(0), b"big")
        storage.set(K.worker_alive("w1"), b"1")
        entry = storage.xreadgroup(GROUP, "w1", {STREAM: ">"}, count=1)[0][1][0][0]
        done = Completion(0, [1, 2, 3, 4], [entry], may_keep=True, cluster=3)
        [reply] = storage.pipeline([complete_cmd(rk, [done], "w1", stream=STREAM)])[0]
        assert reply[:2] == [b"ok", b"1"]
        claimed = dict(zip(reply[3::2], reply[2::2], strict=True))
        assert sorted(claimed) == [b"2", b"3"]
        for child in (b"2", b"3"):
            assert storage.hget(rk.deps, child.decode()) == b"@w1"
        assert storage.hget(rk.deps, "4") == b"0"
        # pending for w1 at once; the dispatched child is not delivered yet
        assert storage.xpending(STREAM, GROUP)["consumers"] == {"w1": 3}
        # a replay (a lost reply) claims nothing more and dispatches nothing more
        [again] = storage.pipeline([complete_cmd(rk, [done], "w1", stream=STREAM)])[0]
        assert again == [b"dup", b"1"]
        assert storage.xlen(STREAM) == 4
        # w2 reads on: a claimed entry goes back to w1 while w1 lives
        taken = storage.pipeline([take_cmd(STREAM, GROUP, "w2", 1)])[0]
        assert (taken.run, taken.claimed) == ([], 1)
        assert storage.xpending(STREAM, GROUP)["consumers"] == {"w1": 3}
        # w1 is gone (its live key expired): w2 runs the next claimed entry it reads
        storage.delete(K.worker_alive("w1"))
        taken = storage.pipeline([take_cmd(STREAM, GROUP, "w2", 10)])[0]
        assert [f[b"t"] for _, f in taken.run] == [b"3", b"4"]
        assert storage.xpending(STREAM, GROUP)["consumers"] == {"w1": 2, "w2": 2}
        # a claimed entry given back: the claim is cleared, whoever reads it runs it
        [back] = storage.pipeline([requeue_cmd([(claimed[b"2"], RUN, 2)], stream=STREAM)])
        assert back == 1
        assert storage.hget(rk.deps, "2") == b"0"
        storage.set(K.worker_alive("w1"), b"1")
        taken = storage.pipeline([take_cmd(STREAM, GROUP, "w2", 10)])[0]
        assert [f[b"t"] for _, f in taken.run] == [b"2"]
    both.assert_same_keys()


def test_a_small_output_travels_inline_in_the_entries_it_dispatches(
    server: RedisStorage,
) -> None:
    """Mode "V": each child the completion dispatches gets the output key's value in
    its entry (the child kept gets no entry); ``take`` hands it to the worker that
    reads the entry, as the blocking read does; a replay writes nothing more."""
    both = Both(server)
    for storage in both.pair:
        storage.pipeline(load_scripts_cmds())
        rk = start_run(storage, [[], [0], [0], [0, 4], []], ttl=False)
        storage.set(rk.output(0), b"small")
        entry = storage.xreadgroup(GROUP, "w1", {STREAM: ">"}, count=1)[0][1][0][0]
        done = Completion(0, [1, 2, 3], [entry], may_keep=True, inline=True)
        cmd = complete_cmd(rk, [done], "w1", stream=STREAM)
        [reply] = storage.pipeline([cmd])[0]
        assert reply[:2] == [b"ok", b"1"]  # child 1 kept; 2 dispatched; 3 waits for 4
        assert storage.pipeline([cmd])[0] == [[b"dup", b"1"]]
        [(_, fields)] = storage.xrange(STREAM)[-1:]
        assert fields == {b"r": rk.run_id.encode(), b"t": b"2", b"i": b"0", b"v": b"small"}
        taken = storage.pipeline([take_cmd(STREAM, GROUP, "w2", 5)])[0]
        root = {b"r": rk.run_id.encode(), b"t": b"4"}  # (the other root: nothing inline)
        assert [f for _, f in taken.run] == [root, fields]
    both.assert_same_keys()


def test_an_entry_given_back_after_a_blocking_read_delivered_it_does_not_run(
    server: RedisStorage,
) -> None:
    """A blocking read delivers a claimed entry; before the worker screens it, the
    claimant gives it back (its claim cleared, a new entry made): the delivered one is
    "gone" and does not run; the new one does (else the task ran twice: seen with
    claimed children given back at once)."""
    both = Both(server)
    for storage in both.pair:
        storage.pipeline(load_scripts_cmds())
        rk = start_run(storage, [[], [0], [0]], ttl=False)
        storage.set(rk.output(0), b"big")
        entry = storage.xreadgroup(GROUP, "w1", {STREAM: ">"}, count=1)[0][1][0][0]
        done = Completion(0, [1, 2], [entry], may_keep=True, cluster=2)
        [reply] = storage.pipeline([complete_cmd(rk, [done], "w1", stream=STREAM)])[0]
        claimed = reply[2]
        delivered = storage.xreadgroup(GROUP, "w2", {STREAM: ">"}, count=10)[0][1]
        assert [eid for eid, _ in delivered] == [claimed]
        storage.pipeline([requeue_cmd([(claimed, RUN, 2)], stream=STREAM)])
        taken = storage.pipeline([take_cmd(STREAM, GROUP, "w2", 0, delivered)])[0]
        assert (taken.run, taken.dropped) == ([], 1)
        taken = storage.pipeline([take_cmd(STREAM, GROUP, "w2", 10)])[0]
        assert [f[b"t"] for _, f in taken.run] == [b"2"]
    both.assert_same_keys()


def race_cmds(run: str) -> tuple[list[C.Cmd], C.Cmd, C.Cmd]:
    """A run whose child C has a large parent A (worker w1, which may wait) and a small
    one B (w2): the commands that write it, and A's and B's completions."""
    rk = K.RunKeys(run)
    setup = [
        C.hset(rk.meta, {"status": "running", "n": 3, "left": 3}),
        C.hset(rk.deps, {"2": 2}),
        C.set_(rk.output(0), b"A"),
        C.set_(rk.output(1), b"B"),
    ]
    a = complete_cmd(rk, [Completion(0, [2], [], wait=True)], "w1", stream=STREAM)
    b = complete_cmd(rk, [Completion(1, [2], [])], "w2", stream=STREAM)
    return setup, a, b


def race(storage: Storage, run: str, a_first: bool) -> tuple[list[Any], list[Any]]:
    """A and B of :func:`race_cmds` complete in the order given: their replies."""
    setup, a, b = race_cmds(run)
    storage.pipeline(setup)
    first, second = (a, b) if a_first else (b, a)
    one, two = storage.pipeline([first]), storage.pipeline([second])
    return (one[0][0], two[0][0]) if a_first else (two[0][0], one[0][0])


@pytest.mark.parametrize("backend_kind", ["memory", "redis"])
def test_no_wake_up_is_lost_whichever_parent_completes_first(
    server: RedisStorage, backend_kind: str
) -> None:
    """Delayed I/O's race, in both orders, a thousand times each: the child of a large
    parent (whose worker may wait) and a small one always ends up with the large
    parent's worker (kept by it, or claimed for it with a note in its inbox), never in
    the open stream, never twice."""
    storage: Storage = InMemoryStorage() if backend_kind == "memory" else server
    storage.flushdb()
    storage.pipeline(load_scripts_cmds())
    storage.xgroup_create(STREAM, GROUP, "0")
    storage.set(K.worker_alive("w1"), b"1")
    storage.xgroup_create(K.inbox("w1"), GROUP, "0")
    for i in range(2000):
        a_first = i % 2 == 0
        a, b = race(storage, f"race-{i}", a_first)
        if a_first:  # A waits for C; B makes C ready: claimed for w1, and a note
            assert (a, b) == ([b"ok", b"", b"", b"2"], [b"ok", b""])
        else:  # B first: A's completion makes C ready and w1 keeps it ("become")
            assert (a, b) == ([b"ok", b"2"], [b"ok", b""])
    notes = storage.xrange(K.inbox("w1"))
    assert len(notes) == 1000
    assert all(f[b"t"] == b"2" for _, f in notes)
    entries = storage.xrange(STREAM)
    assert len(entries) == 1000  # one entry for each claim, none for the kept ones
    pending = storage.pipeline([C.Cmd(("XPENDING", STREAM, GROUP, "-", "+", 2000))])[0]
    assert {p[1] for p in pending} == {b"w1"}
    assert len(pending) == 1000
    assert {f[b"e"] for _, f in notes} == {eid for eid, _ in entries}


async def test_no_wake_up_is_lost_when_both_parents_complete_at_once(redis_url: str) -> None:
    """The same race with the two completions sent at the same moment on two
    connections: whichever the server runs first, the child ends up with w1."""
    one, two = RedisStorage(redis_url), RedisStorage(redis_url)
    try:
        await one.aflushdb()
        await one.apipeline(load_scripts_cmds())
        await one.axgroup_create(STREAM, GROUP, "0")
        await one.aset(K.worker_alive("w1"), b"1")
        await one.axgroup_create(K.inbox("w1"), GROUP, "0")
        waited = 0
        for i in range(500):
            setup, a, b = race_cmds(f"at-once-{i}")
            await one.apipeline(setup)
            [ra], [rb] = await asyncio.gather(one.apipeline([a]), two.apipeline([b]))
            assert rb[0] == [b"ok", b""]
            assert ra[0] in ([b"ok", b"", b"", b"2"], [b"ok", b"2"])
            waited += ra[0][1] == b""
        notes = await one.axrange(K.inbox("w1"))
        entries = await one.axrange(STREAM)
        # every wait ended in a claim with its note; every other run's child was kept
        assert len(notes) == len(entries) == waited
        assert {f[b"e"] for _, f in notes} == {eid for eid, _ in entries}
    finally:
        await one.aclose()
        await two.aclose()


@EXAMPLES
@given(st.integers(1, 8), st.integers(0, 3), st.lists(st.integers(0, 7), max_size=8))
def test_entries_given_back_answer_and_write_as_on_the_server(
    server: RedisStorage, read: int, more: int, back: list[int]
) -> None:
    """A worker reads entries and gives some back: they are acknowledged, deleted, and
    appended anew with the same run and task; the others stay pending."""
    both = Both(server)
    stream = K.tasks_stream()
    replies = []
    for storage in both.pair:
        storage.pipeline(load_scripts_cmds())
        storage.xgroup_create(stream, K.TASKS_GROUP, "0")
        for t in range(read + more):
            storage.xadd(stream, {"r": "run", "t": t})
        taken = storage.xreadgroup(K.TASKS_GROUP, "w1", {stream: ">"}, count=read)[0][1]
        given = sorted({i for i in back if i < len(taken)})
        cmd = requeue_cmd([(taken[i][0], "run", i) for i in given], stream=stream)
        replies.append(storage.pipeline([cmd]))
    assert replies[1] == replies[0]
    both.assert_same_keys()


ENTRY_FIELDS = st.one_of(
    st.builds(
        lambda r, t: {"r": r, "t": t},
        st.sampled_from(["running"] * 4 + ["finished", "gone", "not}a:run", ""]),
        st.one_of(st.integers(0, 5).map(str), st.sampled_from(["-1", "x", ""])),
    ),
    st.just({"x": "no run, no task"}),
)


EVERY_VERDICT = [
    {"r": "running", "t": "0"},  # done before
    {"r": "running", "t": "1"},  # early: 2 parents left
    {"r": "running", "t": "2"},  # run
    {"r": "running", "t": "2"},  # run (not done yet: the completion answers "dup")
    {"r": "finished", "t": "0"},  # ended
    {"r": "gone", "t": "1"},  # unknown: for the worker to judge
    {"r": "not}a:run", "t": "1"},  # not a run id: for the worker to judge
    {"x": "no run, no task"},
    {"r": "running", "t": "3"},  # run
]


@EXAMPLES
@given(
    st.lists(ENTRY_FIELDS, min_size=1, max_size=10),
    st.sets(st.integers(0, 5), min_size=1, max_size=3),
    st.dictionaries(st.integers(0, 5), st.integers(0, 2), min_size=2, max_size=4),
    st.integers(1, 12),
    st.booleans(),
)
@example(EVERY_VERDICT, {0}, {1: 2, 2: 0}, 12, False)
@example(EVERY_VERDICT, {0}, {1: 2, 2: 0}, 12, True)
def test_entries_taken_are_screened_as_on_the_server(
    server: RedisStorage,
    entries: list[dict[str, str]],
    done: set[int],
    deps: dict[int, int],
    count: int,
    blocking: bool,
) -> None:
    """A worker takes entries (read by the script, or delivered by a blocking read):
    entries of tasks done before and of ended runs are acknowledged; tasks with
    parents left are "early"; entries with other fields are
    "odd" (the worker reads them whole); the rest are the worker's."""
    both = Both(server)
    replies = []
    for storage in both.pair:
        storage.pipeline(load_scripts_cmds())
        storage.xgroup_create(STREAM, GROUP, "0")
        running, finished = K.RunKeys("running"), K.RunKeys("finished")
        storage.hset(running.meta, {"status": "running"})
        storage.hset(finished.meta, {"status": "finished"})
        if done:
            storage.hset(running.done, {str(i): "" for i in done})
        if deps:
            storage.hset(running.deps, {str(i): n for i, n in deps.items()})
        ids = [storage.xadd(STREAM, fields) for fields in entries]
        if blocking:
            delivered = storage.xreadgroup(GROUP, "w1", {STREAM: ">"}, count=count)
            taken = storage.pipeline(
                [take_cmd(STREAM, GROUP, "w1", 0, delivered[0][1] if delivered else [])]
            )[0]
        else:
            taken = storage.pipeline([take_cmd(STREAM, GROUP, "w1", count)])[0]
        at = {eid: i for i, eid in enumerate(ids)}
        replies.append(
            (
                [(at[eid], fields) for eid, fields in taken.run],
                taken.dropped,
                [(at[eid], fields) for eid, fields in taken.early],
                [at[eid] for eid in taken.odd],
            )
        )
        for eid, fields in taken.run + taken.early:  # the fields as they were written
            assert fields == {k.encode(): v.encode() for k, v in entries[at[eid]].items()}
        pending = storage.xpending(STREAM, GROUP)["pending"]
        assert pending == len(taken.run) + len(taken.early) + len(taken.odd)
    assert replies[1] == replies[0]
    for i, _ in replies[0][0]:  # what the worker runs: never a done, ended or early task
        fields = entries[i]
        if fields.get("r") in ("running", "finished") and fields["t"].isdigit():
            t = int(fields["t"])
            assert fields["r"] == "running"
            assert t not in done
            assert not deps.get(t)
    if entries is EVERY_VERDICT:  # an odd entry is read whole by the worker, or was
        ran = [2, 3, 5, 6, 7, 8] if blocking else [2, 3, 5, 6, 8]
        assert [i for i, _ in replies[0][0]] == ran
        assert replies[0][3] == ([] if blocking else [7])
        assert replies[0][1] == 2
        assert [i for i, _ in replies[0][2]] == [1]
    event(f"run {len(replies[0][0])}, dropped {replies[0][1]}, early {len(replies[0][2])}")
    both.assert_same_keys()


@EXAMPLES
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["mine", "other"]), st.sampled_from(["new", "read", "acked", "gone"])
        ),
        max_size=12,
    ),
    st.sampled_from(["running", "finished"]),
    st.integers(0, 2),
    st.booleans(),
)
def test_outstanding_work_is_found_as_on_the_server(
    server: RedisStorage, entries: list[tuple[str, str]], status: str, left: int, group: bool
) -> None:
    """The watchdog's question: has a running run with tasks left an entry that is
    pending or not delivered yet? Entries acknowledged or deleted are not work."""
    both = Both(server)
    replies = []
    rk = K.RunKeys("mine")
    for storage in both.pair:
        storage.pipeline(load_scripts_cmds())
        storage.hset(rk.meta, {"status": status, "left": left})
        if group:
            storage.xgroup_create(STREAM, GROUP, "0")
        ids = [storage.xadd(STREAM, {"r": run, "t": i}) for i, (run, _) in enumerate(entries)]
        if group:  # read up to the last entry not left new; ack and delete as drawn
            read = max((i for i, (_, how) in enumerate(entries) if how != "new"), default=-1)
            if read >= 0:
                storage.xreadgroup(GROUP, "w1", {STREAM: ">"}, count=read + 1)
            for i, (_, how) in enumerate(entries):
                if how in ("acked", "gone") and i <= read:
                    storage.xack(STREAM, GROUP, ids[i])
                if how == "gone":
                    storage.xdel(STREAM, ids[i])
        reply = storage.run_script(OUTSTANDING, [STREAM, rk.meta], [GROUP, "mine", 100])
        # pending (read, not acked): 1; else new (never read): the first such entry's id
        mine = [
            (i, how if group else "new") for i, (run, how) in enumerate(entries) if run == "mine"
        ]
        if status != "running" or not left:
            expected: Any = 2
        elif any(how == "read" for _, how in mine):
            expected = 1
        else:
            expected = next((ids[i] for i, how in mine if how == "new"), 0)
        assert reply == expected
        replies.append(reply)
    event(f"reply {replies[0] if isinstance(replies[0], int) else 'an id'}")
    both.assert_same_keys()


def test_outstanding_work_is_found_past_a_page_and_gives_up_past_the_cap(
    server: RedisStorage,
) -> None:
    """2,100 pending entries of another run (three pages), then one new entry of the
    run: found (its id: not delivered yet); the same beyond the cap: "cannot tell"
    (-1), never "no work"."""
    both = Both(server)
    rk = K.RunKeys("mine")
    for storage in both.pair:
        storage.pipeline(load_scripts_cmds())
        storage.hset(rk.meta, {"status": "running", "left": 1})
        storage.xgroup_create(STREAM, GROUP, "0")
        storage.xadd_many(STREAM, [{"r": "other", "t": i} for i in range(2100)])
        storage.xreadgroup(GROUP, "w1", {STREAM: ">"}, count=2100)
        assert storage.run_script(OUTSTANDING, [STREAM, rk.meta], [GROUP, "mine", 10_000]) == 0
        new = storage.xadd(STREAM, {"r": "mine", "t": 0})
        found = storage.run_script(OUTSTANDING, [STREAM, rk.meta], [GROUP, "mine", 10_000])
        assert found == new
        assert storage.run_script(OUTSTANDING, [STREAM, rk.meta], [GROUP, "mine", 1500]) == -1
    both.assert_same_keys()


# --------------------------------------------------------------------------- conversions

CONVERSIONS = {
    "a number is truncated to an integer": "return {3.99, -3.99, 2^53, 0.5}",
    "an array stops at its first nil": "return {1, 'x', {3, nil, 5}, nil, 9}",
    "true is 1 and false is nil": "return {true, false, 'after'}",
    "a status table is a status reply": "return redis.status_reply('FINE')",
    "a status inside an array": "return {redis.status_reply('FINE'), 'x'}",
    "an ok table that is not a string is an array": "return {ok = 5}",
    "a reply of nil is nil": "return nil",
    "a nil bulk is false in Lua": "return type(redis.call('GET', KEYS[1]))",
    "a status reply is an ok table in Lua": (
        "local r = redis.call('SET', KEYS[1], 'v'); return {type(r), r.ok}"
    ),
    "an integer reply is a number in Lua": "return redis.call('INCRBY', KEYS[1], 5) + 0.5",
    "an array reply is a table in Lua": (
        "redis.call('RPUSH', KEYS[1], 'a', 'b'); local t = redis.call('LRANGE', KEYS[1], 0, -1);"
        " return {#t, t[2]}"
    ),
    "an empty array reply is an empty table": (
        "return {#redis.call('XRANGE', KEYS[1], '-', '+'), 'next'}"
    ),
    "redis.pcall returns an error as an err table": (
        "redis.call('SET', KEYS[1], 'x'); local r = redis.pcall('HGET', KEYS[1], 'f');"
        " return {type(r), r.err}"
    ),
    "redis.call's error is caught by pcall as a string": (
        "redis.call('SET', KEYS[1], 'x');"
        " local ok, e = pcall(redis.call, 'HGET', KEYS[1], 'f'); return {tostring(ok), type(e)}"
    ),
    "numbers given to commands are written as Redis writes them": (
        "local out = {}; for i, x in ipairs({0.1, 1/3, -0.5, 1e21, 1e-7, 123456789012, 2^63,"
        " 1e16, 100, 0.000001}) do redis.call('SET', KEYS[1], x);"
        " out[i] = redis.call('GET', KEYS[1]) end; return out"
    ),
    "KEYS and ARGV are tables of strings": "return {#KEYS, #ARGV, ARGV[1], type(ARGV[2])}",
    "unpack is a global": "return {unpack({1, 2, 3})}",
    "long replies cross in parts, both ways": (
        "local t = {}; for i = 1, 4500 do t[i] = i end;"
        " redis.call('RPUSH', KEYS[1], unpack(t));"
        " local r = redis.call('LRANGE', KEYS[1], 0, -1); return {#r, r[4500], r}"
    ),
    "hash replies keep their order": (
        "redis.call('HSET', KEYS[1], 'b', 1, 'a', 2); return redis.call('HGETALL', KEYS[1])"
    ),
}

FAILURES = {
    "an error reply returned": "return redis.error_reply('boom')",
    "an err table returned": "return {err = 'boom two'}",
    "an error raised by redis.call": (
        "redis.call('SET', KEYS[1], 'x'); redis.call('HGET', KEYS[1], 'f')"
    ),
    "an unknown global": "return nosuchthing",
    "a new global": "x = 1",
    "a Lua error": "error('plain')",
    "an error table raised": "error({err = 'TABLE raised'})",
    "an unknown command": "return redis.call('NOSUCHCOMMAND')",
    "a table given as an argument": "return redis.call('SET', KEYS[1], {})",
    "no command at all": "return redis.call()",
    "arithmetic on nil": "return ARGV[9] + 1",
}


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_script_values_convert_as_on_the_server(server: RedisStorage, name: str) -> None:
    both = Both(server)
    script = Script(f"conversion {name}", CONVERSIONS[name])
    on_server, in_memory = (s.run_script(script, ["k"], ["a1", 7]) for s in both.pair)
    assert in_memory == on_server
    both.assert_same_keys()


@pytest.mark.parametrize("name", list(FAILURES))
def test_script_failures_raise_storage_errors_as_on_the_server(
    server: RedisStorage, name: str
) -> None:
    both = Both(server)
    script = Script(f"failure {name}", FAILURES[name])
    messages = []
    for storage in both.pair:
        with pytest.raises(StorageError) as caught:
            storage.run_script(script, ["k"], ["a1"])
        messages.append(str(caught.value))
    on_server, in_memory = messages
    for word in ("boom", "boom two", "WRONGTYPE", "nosuchthing", "plain", "TABLE raised"):
        assert (word in in_memory) == (word in on_server), (in_memory, on_server)
    both.assert_same_keys()


def test_many_keys_and_arguments_reach_the_script(server: RedisStorage) -> None:
    both = Both(server)
    script = Script("count", "return {#KEYS, #ARGV, KEYS[#KEYS], ARGV[#ARGV]}")
    keys, args = [f"k{i}" for i in range(3000)], list(range(6000))
    on_server, in_memory = (s.run_script(script, keys, args) for s in both.pair)
    assert in_memory == on_server == [3000, 6000, b"k2999", b"5999"]


def test_any_loaded_script_runs_by_its_sha_and_an_unknown_sha_is_noscript(
    server: RedisStorage,
) -> None:
    source = "return {'loaded', ARGV[1]}"
    both = Both(server)
    for storage in both.pair:
        [sha] = storage.pipeline([C.Cmd(("SCRIPT", "LOAD", source))])
        assert sha == hashlib.sha1(source.encode()).hexdigest().encode()
        assert storage.pipeline([C.Cmd(("EVALSHA", sha, 0, "x"))]) == [[b"loaded", b"x"]]
        with pytest.raises(NoScriptError):
            storage.pipeline([C.Cmd(("EVALSHA", "0" * 40, 0))])
        with pytest.raises(StorageError, match="compiling"):
            storage.pipeline([C.Cmd(("SCRIPT", "LOAD", "return {"))])
