"""The one helper that walks argument trees.

A *tree* is any nesting of the container types below; everything else is a
*leaf*. :func:`flatten` returns the leaves in a fixed order and a *treedef*
that :func:`unflatten` uses to rebuild the same structure around new leaves.
Nodes inside task arguments, values inside results, and the outputs of
``compute()`` all go through these two functions, at any depth.

Containers: ``list``, ``tuple``, named tuples, ``dict`` (also ``OrderedDict``
and ``defaultdict``; keys are never walked), ``set`` and ``frozenset``. A
subclass of these other than the ones named is a leaf.

A treedef is ``None`` for a leaf, or ``(kind, meta, children)``: plain tuples,
so treedefs pickle and compare by value.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["TreeDef", "any_leaf", "flatten", "leaves", "tree_map", "unflatten"]

TreeDef = tuple[int, Any, tuple[Any, ...]] | None

_LIST, _TUPLE, _NAMEDTUPLE, _DICT, _ORDEREDDICT, _DEFAULTDICT, _SET, _FROZENSET = range(8)
_SIMPLE: dict[type, int] = {list: _LIST, tuple: _TUPLE, set: _SET, frozenset: _FROZENSET}
_MAPPINGS: dict[type, int] = {dict: _DICT, OrderedDict: _ORDEREDDICT, defaultdict: _DEFAULTDICT}


def _kind(obj: Any) -> int | None:
    t = type(obj)
    kind = _SIMPLE.get(t)
    if kind is not None:
        return kind
    kind = _MAPPINGS.get(t)
    if kind is not None:
        return kind
    if isinstance(obj, tuple) and hasattr(t, "_fields"):
        return _NAMEDTUPLE
    return None


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list[Any], TreeDef]:
    """Return ``(leaves, treedef)`` for ``tree``.

    ``is_leaf`` may stop the walk at objects that would otherwise be walked.
    The walk keeps its own stack, so deep nesting raises no RecursionError.
    """
    out: list[Any] = []
    top: list[TreeDef] = []
    # Frames of open containers: (kind, meta, remaining children, finished child defs).
    stack: list[tuple[int, Any, Iterator[Any], list[TreeDef]]] = [(-1, None, iter((tree,)), top)]
    while stack:
        kind, meta, items, built = stack[-1]
        for obj in items:
            k = None if (is_leaf is not None and is_leaf(obj)) else _kind(obj)
            if k is None:
                out.append(obj)
                built.append(None)
            else:
                stack.append((k, *_open(k, obj), []))
                break
        else:
            stack.pop()
            if stack:
                stack[-1][3].append((kind, meta, tuple(built)))
    return out, top[0]


def any_leaf(tree: Any, test: Callable[[Any], bool]) -> bool:
    """Does ``test`` hold for a leaf of ``tree`` (the walk stops at the first)? A leaf
    that is ``tree`` itself counts."""
    stack: list[Iterator[Any]] = [iter((tree,))]
    while stack:
        for obj in stack[-1]:
            k = _kind(obj)
            if k is None:
                if test(obj):
                    return True
            else:
                stack.append(_open(k, obj)[1])
                break
        else:
            stack.pop()
    return False


def _open(kind: int, obj: Any) -> tuple[Any, Iterator[Any]]:
    """``(meta, children)`` of a container."""
    if kind in (_DICT, _ORDEREDDICT):
        return tuple(obj.keys()), iter(obj.values())
    if kind == _DEFAULTDICT:
        return (obj.default_factory, tuple(obj.keys())), iter(obj.values())
    if kind == _NAMEDTUPLE:
        return type(obj), iter(obj)
    return None, iter(obj)


def unflatten(treedef: TreeDef, leaves: list[Any] | tuple[Any, ...]) -> Any:
    """Rebuild the structure described by ``treedef`` around ``leaves``."""
    if treedef is None:
        if len(leaves) != 1:
            raise ValueError(f"a leaf treedef takes 1 leaf, got {len(leaves)}")
        return leaves[0]
    it = iter(leaves)
    try:
        out = _unflatten(treedef, it)
    except StopIteration:
        raise ValueError("fewer leaves than the treedef holds") from None
    if next(it, _END) is not _END:
        raise ValueError("more leaves than the treedef holds")
    return out


_END: Any = object()


def _unflatten(treedef: tuple[int, Any, tuple[Any, ...]], it: Iterator[Any]) -> Any:
    kind, meta, children = treedef
    if all(c is None for c in children):  # the common case: one flat container
        return _make(kind, meta, [next(it) for _ in children])
    # Frames: (kind, meta, remaining child defs, values built so far); no recursion.
    stack: list[tuple[int, Any, Iterator[TreeDef], list[Any]]] = [(kind, meta, iter(children), [])]
    while True:
        kind, meta, defs, values = stack[-1]
        for td in defs:
            if td is None:
                values.append(next(it))
            else:
                stack.append((td[0], td[1], iter(td[2]), []))
                break
        else:
            stack.pop()
            obj = _make(kind, meta, values)
            if not stack:
                return obj
            stack[-1][3].append(obj)


def _make(kind: int, meta: Any, values: list[Any]) -> Any:
    if kind == _LIST:
        return values
    if kind == _TUPLE:
        return tuple(values)
    if kind == _DICT:
        return dict(zip(meta, values, strict=True))
    if kind == _NAMEDTUPLE:
        return meta(*values)
    if kind == _ORDEREDDICT:
        return OrderedDict(zip(meta, values, strict=True))
    if kind == _DEFAULTDICT:
        factory, keys = meta
        return defaultdict(factory, zip(keys, values, strict=True))
    if kind == _SET:
        return set(values)
    return frozenset(values)


def leaves(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> list[Any]:
    """The leaves of ``tree`` in flatten order."""
    return flatten(tree, is_leaf)[0]


def tree_map(
    fn: Callable[[Any], Any], tree: Any, is_leaf: Callable[[Any], bool] | None = None
) -> Any:
    """Apply ``fn`` to every leaf and rebuild the same structure."""
    flat, td = flatten(tree, is_leaf)
    return unflatten(td, [fn(x) for x in flat])
