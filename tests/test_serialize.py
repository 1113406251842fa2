"""The serialization layer: round trips, out-of-band buffers, clear errors."""

from __future__ import annotations

import dataclasses
import sys
import threading
import traceback

import numpy as np
import pytest

from dagrt import SerializationError
from dagrt.serialize import (
    Frame,
    dumps,
    dumps_frame,
    dumps_function,
    loads,
    loads_function,
    pack,
    unpack,
)


@dataclasses.dataclass
class Point:
    x: float
    y: list[int]


class Boom(Exception):
    pass


def test_nested_containers_and_dataclasses_round_trip() -> None:
    value = {"a": [1, (2.5, "x"), {None: b"bytes"}], "p": Point(1.0, [2, 3]), "s": {1, 2}}
    assert loads(dumps(value)) == value


def test_closures_and_lambdas_travel_by_value() -> None:
    offset = 10

    def add_offset(x: int) -> int:
        return x + offset

    assert loads(dumps(add_offset))(1) == 11
    assert loads(dumps(lambda x: x * 3))(2) == 6


def test_numpy_arrays_go_out_of_band() -> None:
    a = np.arange(1_000_000, dtype=np.float64).reshape(1000, 1000)
    frame = dumps(a)
    assert frame[:4] == b"DGB1"  # a framed pickle with a separate buffer
    assert len(frame) < a.nbytes + 512  # no second copy inside the frame
    b = loads(frame)
    assert np.array_equal(a, b)
    assert b.flags.writeable
    b[0, 0] = -1  # a private copy
    assert a[0, 0] == 0


def test_read_only_loads_share_the_frame() -> None:
    a = np.arange(100_000, dtype=np.int64)
    frame = dumps(a)
    view = loads(frame, writeable=False)
    assert not view.flags.writeable
    assert np.array_equal(a, view)
    assert np.shares_memory(view, np.frombuffer(frame, dtype=np.uint8))  # zero copy


def test_a_large_frame_left_in_pieces_copies_nothing() -> None:
    """``dumps_frame`` gives a large value's frame as pieces that point into the
    value's own buffers; joined, they are exactly what ``dumps`` writes."""
    a = np.arange(400_000, dtype=np.float64)
    b = np.ones((300, 301), dtype=np.int32)
    frame = dumps_frame({"a": a, "b": b, "n": 7}, by_value=False)
    assert isinstance(frame, Frame)
    assert len(frame) == len(bytes(frame))
    assert bytes(frame) == dumps({"a": a, "b": b, "n": 7})
    shared = [p for p in frame.parts if isinstance(p, memoryview)]
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), a) for p in shared)
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), b) for p in shared)
    out = loads(bytes(frame))
    assert np.array_equal(out["a"], a)
    assert np.array_equal(out["b"], b)
    assert out["n"] == 7


def test_small_values_and_plain_pickles_stay_one_bytes_frame() -> None:
    assert isinstance(dumps_frame(np.arange(1000)), bytes)  # out of band, but small
    assert isinstance(dumps_frame(list(range(500_000))), bytes)  # large, but no buffers
    assert loads(dumps_frame([1, "x"])) == [1, "x"]


def test_several_buffers_and_odd_sizes() -> None:
    parts = [np.arange(n, dtype=np.int8) for n in (1, 7, 63, 65, 1000)]
    out = loads(dumps({"parts": parts, "raw": bytearray(b"abc")}))
    for x, y in zip(parts, out["parts"], strict=True):
        assert np.array_equal(x, y)
    assert out["raw"] == bytearray(b"abc")


def test_exceptions_keep_their_type_and_args() -> None:
    try:
        raise Boom("bad", 3)
    except Boom as exc:
        text = "".join(traceback.format_exception(exc))
        again = loads(dumps(exc))
    assert type(again) is Boom
    assert again.args == ("bad", 3)
    assert "raise Boom" in text


def test_unserializable_values_name_what_failed() -> None:
    with pytest.raises(SerializationError, match=r"result of task load-1 \(lock\)"):
        dumps(threading.Lock(), what="result of task load-1")
    with pytest.raises(SerializationError, match="cannot deserialize input of x"):
        loads(b"not a pickle", what="input of x")


def test_functions_are_content_addressed_once() -> None:
    def f(x: int) -> int:
        return x

    digest, frame = dumps_function(f)
    assert dumps_function(f) == (digest, frame)
    assert len(digest) == 64  # (a full SHA-256)
    assert loads_function(frame)(5) == 5


def test_a_function_shipped_by_value_keeps_its_file_and_source_lines() -> None:
    def fails(x: int) -> float:
        return x / 0  # shipped by value

    fn = loads_function(dumps_function(fails)[1])
    assert fn is not fails
    assert fn.__code__.co_filename == __file__
    with pytest.raises(ZeroDivisionError) as info:
        fn(1)
    text = "".join(traceback.format_exception(info.value))
    assert "return x / 0  # shipped by value" in text
    assert "<dynamic-code>" not in text


def test_msgpack_records() -> None:
    record = {"f": "abc", "deps": ["a", "b"], "n": 3, "blob": b"\x00\x01", "none": None}
    assert unpack(pack(record)) == record
    with pytest.raises(SerializationError, match="cannot pack"):
        pack({"x": object()})
    with pytest.raises(SerializationError, match="cannot unpack task record"):
        unpack(b"\xc1", what="task record")


def test_deep_recursion_in_a_value_is_a_clear_error() -> None:
    deep: list = []
    for _ in range(sys.getrecursionlimit() * 10):
        deep = [deep]
    with pytest.raises(SerializationError, match="cannot serialize value"):
        dumps(deep)


def test_an_importable_function_travels_by_name_without_its_source() -> None:
    from dagrt.workflows.tree_reduction import add

    fn, source = loads(dumps_function(add)[1])
    assert fn is add
    assert source is None


_UNPICKLE_AT_ONCE = """
import sys, threading
from dagrt.serialize import loads
frames = [bytes.fromhex(h) for h in sys.argv[1:]]
errors, barrier = [], threading.Barrier(len(frames))
def load(frame):
    barrier.wait()
    try:
        loads(frame)
    except Exception as exc:
        errors.append(repr(exc.__cause__ or exc))
threads = [threading.Thread(target=load, args=(f,)) for f in frames]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_values_unpickled_at_once_in_a_fresh_process_import_numpy_once(attempt: int) -> None:
    """A fresh worker that gets several arrays at once unpickles them in several threads,
    each importing numpy for the first time: Python's import locks then fail one of them
    (a deadlock error, or numpy half initialized) unless the imports go one at a time."""
    import subprocess

    frames = [dumps(np.arange(10)), dumps(np.arange(4.0)), dumps(np.float64(3)), dumps(np.int32(2))]
    out = subprocess.run(
        [sys.executable, "-c", _UNPICKLE_AT_ONCE, *(f.hex() for f in frames)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout
