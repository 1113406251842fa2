"""Cache keys: what "the same task with the same inputs" means, as a hash.

A task's key is a Merkle hash: its function's content, its constant arguments and
the structure they sit in, and the keys of its parents (never their values: a parent
whose own inputs are the same has the same key, so a whole chain is recognised without
computing anything). Two tasks with the same key are taken to give the same value.

*The function's content* is its code, recursively: the bytecode and constants of its
code object and of the code objects inside it, its default arguments, the values its
closure captured, and the module-level functions and classes it names (followed the
same way) and the plain constants it names (numbers, strings, bytes, tuples of them).
What it does not cover: other global objects it reads (a list or a dict at module
level, an object from another module: named by their type only), and the code of
other packages it calls, and installed functions given as arguments (the standard
library's and site-packages' functions are named, not hashed: a new version of a
library is the same key). The Python
version is part of it (bytecode differs between versions).

*Constant arguments* are hashed by their pickled bytes (protocol 5, the buffers of
arrays included: their content, however large); a function or class among them by
its content, as above, and a bound method by its function and its object's state.
Values that pickle differently from one process to the next (a set of strings: its
order follows the process's hash seed) may miss the cache across processes; they never
hit wrongly.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import sys
import sysconfig
import types
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import cloudpickle

from .exceptions import SerializationError

if TYPE_CHECKING:
    from .graph import DAG
    from .tasks import TaskFunction

__all__ = ["function_key", "task_keys"]

_VERSION = b"dagrt-cache-1:" + sys.version.split()[0].encode()
_PLAIN = (int, float, complex, str, bytes, bool, type(None))
_MAX_DEPTH = 8  # functions named by functions named by ... followed this deep


def _plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    return isinstance(value, tuple | frozenset) and all(_plain(v) for v in value)


class _Hashing(pickle.Pickler):
    """A pickler for hashing: functions and classes inside a value stand for their
    content (pickle would name them only: an edited function would keep its key)."""

    def persistent_id(self, obj: Any) -> str | None:
        if isinstance(obj, types.FunctionType | types.MethodType | type | functools.partial):
            sub = hashlib.sha256()
            _feed_callable(sub, obj, set(), 0)
            return "callable:" + sub.hexdigest()
        return None


def _feed_value(h: Any, value: Any) -> None:
    """Feed ``value``'s pickled bytes (and its out-of-band buffers) to ``h``."""
    buffers: list[pickle.PickleBuffer] = []
    out = io.BytesIO()
    try:
        _Hashing(out, protocol=5, buffer_callback=buffers.append).dump(value)
        payload = out.getvalue()
    except Exception:
        buffers.clear()
        payload = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    h.update(len(payload).to_bytes(8, "little"))
    h.update(payload)
    for b in buffers:
        raw = b.raw()
        h.update(raw.nbytes.to_bytes(8, "little"))
        h.update(raw)


def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr((code.co_names, code.co_varnames, code.co_freevars, code.co_argcount)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        elif isinstance(const, frozenset):  # (its order follows the hash seed)
            h.update(repr(sorted(map(repr, const))).encode())
        else:
            h.update(repr(const).encode())


def _names(code: types.CodeType) -> Iterable[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


_LIBRARY_ROOTS = tuple(
    {
        os.path.realpath(path) + os.sep
        for name, path in sysconfig.get_paths().items()
        if name in ("stdlib", "platstdlib", "purelib", "platlib")
    }
)


_LIBRARIES: dict[str, bool] = {}  # module name -> _library (of loaded modules only)


def _library(module: str) -> bool:
    """Whether ``module`` is installed code (the standard library, site-packages): its
    functions are named, not hashed (a new version of a library is the same key; and
    following pandas' or Dask's functions by content would walk half of the library
    for each task: minutes for a graph of a few hundred Dask tasks)."""
    known = _LIBRARIES.get(module)
    if known is not None:
        return known
    loaded = sys.modules.get(module)
    if loaded is None:  # (a function that came by value: by content, and not remembered)
        return False
    file = getattr(loaded, "__file__", None)
    known = _LIBRARIES[module] = file is None or os.path.realpath(file).startswith(_LIBRARY_ROOTS)
    return known


def _feed_callable(h: Any, fn: Any, seen: set[int], depth: int) -> None:
    """Feed what ``fn`` computes (see the module's text) to ``h``."""
    if id(fn) in seen or depth > _MAX_DEPTH:
        h.update(b"<seen>")
        return
    seen.add(id(fn))
    if isinstance(fn, types.MethodType):  # a bound method: its object's state counts
        _feed_value_or_name(h, fn.__self__, seen, depth)
        fn = fn.__func__
    while isinstance(fn, functools.partial):
        _feed_value_or_name(h, (fn.args, fn.keywords), seen, depth)
        fn = fn.func
    module = getattr(fn, "__module__", None) or ""
    h.update(f"{module}:{getattr(fn, '__qualname__', type(fn).__qualname__)}".encode())
    if module and _library(module):
        return  # (its name says it)
    if isinstance(fn, type):
        for name, member in sorted(vars(fn).items()):
            if isinstance(member, types.FunctionType | staticmethod | classmethod):
                h.update(name.encode())
                _feed_callable(h, getattr(member, "__func__", member), seen, depth + 1)
        return
    code = getattr(fn, "__code__", None)
    if code is None:
        call = getattr(type(fn), "__call__", None)  # noqa: B004 (a callable object)
        if isinstance(call, types.FunctionType):
            _feed_callable(h, call, seen, depth + 1)
            _feed_value_or_name(h, getattr(fn, "__dict__", None), seen, depth)
        return  # (a builtin: its name says it)
    _feed_code(h, code)
    _feed_value_or_name(h, (fn.__defaults__, fn.__kwdefaults__), seen, depth)
    for cell in fn.__closure__ or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # (empty)
            h.update(b"<empty>")
            continue
        _feed_value_or_name(h, contents, seen, depth)
    globals_ = getattr(fn, "__globals__", {})
    for name in sorted(set(_names(code))):
        if name not in globals_:
            continue
        value = globals_[name]
        h.update(name.encode())
        if isinstance(value, types.ModuleType):
            h.update(value.__name__.encode())
        elif _plain(value):
            h.update(repr(value).encode())
        elif isinstance(value, types.FunctionType | type) or hasattr(value, "fn"):
            target = getattr(value, "fn", value)  # (a TaskFunction: its function)
            if getattr(target, "__module__", None) == module or isinstance(
                target, types.FunctionType
            ):
                _feed_callable(h, target, seen, depth + 1)
            else:
                h.update(repr(type(value)).encode())
        else:
            h.update(repr(type(value)).encode())


def _feed_value_or_name(h: Any, value: Any, seen: set[int], depth: int) -> None:
    """A value a function carries (defaults, closure): functions by content, the rest
    by their pickled bytes (by type, if they do not pickle)."""
    if isinstance(value, types.FunctionType):
        _feed_callable(h, value, seen, depth + 1)
        return
    try:
        _feed_value(h, value)
    except Exception:
        h.update(repr(type(value)).encode())


def function_key(tf: TaskFunction[..., Any]) -> str:
    """The hash of a task function's content, as it is now (made again each time: a
    helper or a constant it names may have been redefined since, in a notebook)."""
    h = hashlib.sha256(_VERSION)
    _feed_callable(h, tf.fn, set(), 0)
    return h.hexdigest()


def task_keys(dag: DAG, wanted: Iterable[int]) -> dict[int, str]:
    """The cache keys of the tasks ``wanted`` (indexes into ``dag``) and of their
    ancestors, which theirs are made of."""
    nodes, parents = dag._nodes, dag._parents
    need: set[int] = set()
    stack = list(wanted)
    while stack:
        i = stack.pop()
        if i not in need:
            need.add(i)
            stack.extend(parents[i])
    keys: dict[int, str] = {}
    functions: dict[int, str] = {}  # id(task function) -> its key, for this call only
    for i in sorted(need):  # (parents come before their children: topological order)
        node = nodes[i]
        h = hashlib.sha256(_VERSION)
        fkey = functions.get(id(node.func))
        if fkey is None:
            fkey = functions[id(node.func)] = function_key(node.func)
        h.update(fkey.encode())
        slots = dict(node._slots)
        _feed_value(h, node._treedef)
        ps = parents[i]
        for j, leaf in enumerate(node._leaves):
            if j in slots:
                h.update(b"P" + keys[ps[slots[j]]].encode())
                continue
            h.update(b"C")
            try:
                _feed_value(h, leaf)
            except Exception as exc:
                raise SerializationError(
                    f"the cache key of task {node.key} ({node.name}) cannot be made: its"
                    f" argument {type(leaf).__name__} does not pickle ({exc}); give the task"
                    " cache=False, or arguments that pickle"
                ) from exc
        keys[i] = h.hexdigest()
    return keys
