"""The pytree helper: one walk for every argument and result tree."""

from __future__ import annotations

from collections import OrderedDict, defaultdict, namedtuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dagrt.pytree import flatten, leaves, tree_map, unflatten

Point = namedtuple("Point", "x y")


def test_leaves_come_out_in_order_and_structure_comes_back() -> None:
    tree = {
        "a": [1, (2, 3), {"b": Point(4, [5])}],
        "c": OrderedDict(d=6),
        "e": defaultdict(list, {"f": 7}),
        "g": frozenset({8}),
        "h": [],
        "i": (),
    }
    flat, treedef = flatten(tree)
    assert flat == [1, 2, 3, 4, 5, 6, 7, 8]
    rebuilt = unflatten(treedef, flat)
    assert rebuilt == tree
    assert type(rebuilt["a"][2]["b"]) is Point
    assert type(rebuilt["c"]) is OrderedDict
    assert rebuilt["e"].default_factory is list


def test_a_bare_leaf_is_its_own_tree() -> None:
    flat, treedef = flatten(42)
    assert flat == [42]
    assert treedef is None
    assert unflatten(treedef, [7]) == 7


def test_dict_keys_are_not_walked_and_subclasses_are_leaves() -> None:
    class MyList(list):  # type: ignore[type-arg]
        pass

    odd = MyList([1, 2])
    flat, _ = flatten({(1, 2): odd})
    assert flat == [odd]


def test_deep_nesting_has_no_recursion_limit() -> None:
    tree: list = [0]
    for _ in range(50_000):
        tree = [tree]
    flat, treedef = flatten(tree)
    assert flat == [0]
    out = unflatten(treedef, ["x"])
    depth = 0
    while isinstance(out, list):
        out, depth = out[0], depth + 1
    assert (depth, out) == (50_001, "x")


def test_tree_map_and_is_leaf() -> None:
    assert tree_map(lambda v: v * 10, {"a": [1, 2], "b": (3,)}) == {"a": [10, 20], "b": (30,)}
    assert leaves([[1, 2], [3]], is_leaf=lambda x: x == [1, 2]) == [
        [1, 2],
        3,
    ]


def test_unflatten_with_too_few_leaves_fails_loudly() -> None:
    _, treedef = flatten([1, 2, 3])
    with pytest.raises(ValueError, match="fewer leaves"):
        unflatten(treedef, [1])
    with pytest.raises(ValueError, match="more leaves"):
        unflatten(treedef, [1, 2, 3, 4])


json_like = st.recursive(
    st.integers() | st.text(max_size=3) | st.none(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=30,
)


@given(json_like)
def test_round_trip_of_random_trees(tree: object) -> None:
    flat, treedef = flatten(tree)
    assert unflatten(treedef, flat) == tree
    assert tree_map(lambda x: x, tree) == tree
