"""The wire form: one batch decoder, and every reader shape built from it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dagrt.metrics import events as ev
from dagrt.metrics import recorder as rec
from dagrt.metrics import wire as wf
from dagrt.metrics.run_graph import RunGraph


def in_process_batch(now: float) -> tuple[Any, ...]:
    """A tasks-finished batch as the in-process runtime writes it: starts after its
    clock, no end, constant columns empty, two lanes."""
    return (
        ev.TasksFinished.code,
        now,
        "r",
        "w",
        wf.column([0, 1, 2], "q"),
        b"",
        wf.column([0.5, 1.0, 1.5], "d"),
        b"",
        wf.column([0.25, 0.25, 0.5], "d"),
        b"",
        b"",
        b"",
        b"",
        b"",
        [],
        [],
        wf.column([0, 1, 0], "q"),
        ["w/a", "w/b"],
        now,
    )


def test_one_decoding_of_a_batch_gives_every_reader_shape() -> None:
    now = time.time()
    item = in_process_batch(now)
    decoded = wf.decode_batch(item)
    assert decoded["clock"] == 0.0
    assert decoded["start"] == pytest.approx([now + 0.5, now + 1.0, now + 1.5])
    assert decoded["end"] == pytest.approx([now + 0.75, now + 1.25, now + 2.0])
    assert (decoded["attempt"], decoded["kept"]) == ([1, 1, 1], [False, False, False])
    assert wf.decode_batch(item, int)["kept"] == [0, 0, 0]  # the page's flags

    graph = RunGraph(["k0", "k1", "k2"], ["f", "g", "f"], [[], [0], [1]], [2])
    events = wf.expand(wf.from_wire(item), graph)
    assert [e.model_dump() for e in events] == wf.to_dicts(item, graph)
    assert [e.worker_id for e in events] == ["w/a", "w/b", "w/a"]
    columns, n = wf.to_columns(item)
    assert n == 3
    assert columns["start"] == decoded["start"]
    assert "key" not in columns
    assert "clock" not in columns


def test_expanded_events_are_models_of_their_own() -> None:
    now = time.time()
    done = rec.FinishedBatch()
    done.add(3, 1, now, now + 1, 0.5, 10, 20, 0.1, 0.2, True)
    done.add(4, 2, now, now + 2, 1.5, 0, 7, 0.0, 0.3, False)
    one, two = wf.expand(wf.from_wire(done.wire(now + 2, "r", "w")))
    assert one is not two
    row = wf.to_dicts(done.wire(now + 2, "r", "w"))[1]
    assert two == ev.TaskExecutionMetrics.model_construct(**row)
    assert two.model_fields_set == set(ev.TaskExecutionMetrics.model_fields)
    assert (one.task, two.task, two.attempt, two.kept) == (3, 4, 2, False)
    assert wf.expand(wf.from_wire(rec.FinishedBatch().wire(now, "r", "w"))) == []


def test_a_batch_left_short_takes_its_defaults_as_lists_of_its_own() -> None:
    now = time.time()
    moves = rec.TransferBatch()
    moves.add(20, 0.2, "upload", 3, None, False)
    first, second = (wf.from_wire(moves.wire(now, "r", "w")) for _ in range(2))
    assert isinstance(first, ev.Transfers)
    assert isinstance(second, ev.Transfers)
    assert first.key == []  # (a trailing field left out)
    assert first.key is not second.key
    assert wf.event_count(moves.wire(now, "r", "w")) == 1
    assert wf.event_count(rec.task_started(now, "r", "w", 1, "k", "f", 1)) == 1
