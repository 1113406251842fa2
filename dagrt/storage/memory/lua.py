"""Lua scripts in this process, run as Redis runs them.

``InMemoryStorage`` runs the very ``.lua`` source that the server runs, in
Lua 5.1 through ``lupa`` (Redis embeds Lua 5.1: ``unpack`` is a global). One
runtime serves the process; each script is compiled once and kept by its SHA.
The script sees ``KEYS``, ``ARGV`` and ``redis.call``, ``redis.pcall``,
``redis.status_reply``, ``redis.error_reply``; globals are read-only and an
unknown global is an error, as in Redis 7.

Conversions follow Redis (RESP2). A reply handed to Lua: bulk -> string, nil
bulk -> false, integer -> number, array -> table, status -> ``{ok = ...}``,
error -> raised by ``redis.call`` (a string, as Redis 7's ``pcall`` sees it),
returned as ``{err = ...}`` by ``redis.pcall``. A script's result handed back:
number -> integer (truncated; out of range: the least 64-bit integer, as the C
cast gives), string -> bulk, table -> array up to its first nil (a table with
a string ``err`` or ``ok`` field: an error or a status reply), false and nil
-> nil, true -> 1. A number given to ``redis.call`` as an argument becomes the
text Redis 7.2 and Valkey write for it (``0.1``, ``1e+21``, ``-nan``).

Redis's extra libraries (``cjson``, ``cmsgpack``, ``struct``, ``bit``) and
``redis.log``/``redis.sha1hex`` are not provided: dagrt's scripts use none.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from lupa import lua51

from ...exceptions import StorageError
from ..base import NoScriptError, registered_script
from .keyspace import COMMANDS as KEY_COMMANDS
from .keyspace import Command, Keyspace
from .streams import COMMANDS as STREAM_COMMANDS
from .values import Status

__all__ = ["LuaScripts", "ScriptError", "number_text", "scripts"]

# A command's reply that is a string, a number or nil comes back to Lua as it is.
# Any other (an array, a status, an error) comes in a second call as a flat run of
# values (one crossing for the whole reply instead of one per element): a string,
# a number or false (nil) stands for itself; ``true, n`` opens an array of the n
# values that follow; ``true, -1, text`` is a status reply, ``true, -2, text`` an
# error. A script's result goes back to Python flattened the same way.
_BOOT = r"""
local pycall, pending, STACK = ...
local error, pcall, rawset, select, type, unpack = error, pcall, rawset, select, type, unpack

local function decode(tokens, pos)
  local v = tokens[pos]
  if v ~= true then return v, pos + 1 end
  local n = tokens[pos + 1]
  if n == -1 then return {ok = tokens[pos + 2]}, pos + 3 end
  if n == -2 then return {err = tokens[pos + 2]}, pos + 3 end
  local t = {}
  pos = pos + 2
  for i = 1, n do t[i], pos = decode(tokens, pos) end
  return t, pos
end

local function complex(first, ...)  -- the reply pycall left (flat values, or a table of them)
  if first == true then return (decode({first, ...}, 1)) end
  return (decode(first, 1))
end

redis = {}
function redis.pcall(...)
  local r = pycall(...)
  if r == true then return complex(pending()) end
  return r
end
function redis.call(...)
  local r = pycall(...)
  if r == true then
    r = complex(pending())
    if type(r) == 'table' and type(r.err) == 'string' then error(r.err, 0) end
  end
  return r
end
function redis.status_reply(text) return {ok = text} end
function redis.error_reply(text) return {err = text} end

-- What Redis leaves out of a script's reach.
io, package, require, module, loadfile, dofile = nil, nil, nil, nil, nil, nil
os = {clock = os.clock}

local function flatten(v, out, n)
  local kind = type(v)
  if kind == 'string' or kind == 'number' then
    out[n + 1] = v
    return n + 1
  elseif kind == 'table' then
    if type(v.err) == 'string' then
      out[n + 1], out[n + 2], out[n + 3] = true, -2, v.err
      return n + 3
    elseif type(v.ok) == 'string' then
      out[n + 1], out[n + 2], out[n + 3] = true, -1, v.ok
      return n + 3
    end
    out[n + 1] = true
    local at = n + 2
    n = at
    local i = 1
    local item = v[1]
    while item ~= nil do  -- up to the first nil, as Redis reads an array
      n = flatten(item, out, n)
      i = i + 1
      item = v[i]
    end
    out[at] = i - 1
    return n
  elseif v == true then
    out[n + 1] = 1
    return n + 1
  end
  out[n + 1] = false  -- false, nil, and what has no reply (a function): nil
  return n + 1
end

local function main(fn)
  local out = {}
  return flatten(fn(), out, 0), out
end

local function compile(source)
  local fn, err = loadstring(source, '@user_script')
  return fn, err
end

local function run_tables(fn, keys, argv)
  rawset(_G, 'KEYS', keys)
  rawset(_G, 'ARGV', argv)
  local ok, n, out = pcall(main, fn)
  if not ok then return false, n end
  if n <= STACK then return true, n, unpack(out, 1, n) end
  return true, n, out
end

local function run(fn, nkeys, ...)  -- KEYS then ARGV as arguments (a few of them)
  local keys, argv = {...}, {}
  for i = nkeys + 1, select('#', ...) do
    argv[i - nkeys] = keys[i]
    keys[i] = nil
  end
  return run_tables(fn, keys, argv)
end

setmetatable(_G, {
  __index = function(_, name)
    error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
  end,
  __newindex = function()
    error('Attempt to modify a readonly table', 2)
  end,
})
return compile, run, run_tables, unpack
"""

_STACK = 4000  # values that cross at once (Lua 5.1 holds at most 8000 on its C stack)
_BAD_ARGUMENT = "ERR Lua redis lib command arguments must be strings or integers"
_NO_ARGUMENT = "ERR Please specify at least one argument for this redis lib call"
_UNKNOWN = "ERR Unknown Redis command called from script"
_INT64_MIN = -(1 << 63)
_EXACT = 1 << 53  # integers up to this are exact in a Lua number


def _script_commands() -> dict[bytes, Command]:
    """The commands a script may call, by the bytes a script names them with."""
    table: dict[bytes, Command] = {}
    for name, command in {**KEY_COMMANDS, **STREAM_COMMANDS}.items():
        table[name.encode()] = table[name.lower().encode()] = command
    return table


_COMMANDS = _script_commands()


class ScriptError(StorageError):
    """A script failed: a Lua error, or an error reply it raised or returned."""


def number_text(x: int | float) -> bytes:
    """A Lua number as Redis 7.2 / Valkey write it as a command argument: the
    shortest digits that read back the same, in JavaScript's layout."""
    if type(x) is int and -_EXACT <= x <= _EXACT:
        return str(x).encode()
    f = float(x)
    if math.isnan(f):
        return b"-nan" if math.copysign(1.0, f) < 0 else b"nan"
    if math.isinf(f):
        return b"inf" if f > 0 else b"-inf"
    if f == 0:
        return b"0"
    sign, digits, exponent = Decimal(repr(f)).normalize().as_tuple()
    assert isinstance(exponent, int)
    s = "".join(map(str, digits))
    k = len(s)
    n = exponent + k  # the value is 0.<s> * 10**n
    if k <= n <= 21:
        out = s + "0" * (n - k)
    elif 0 < n <= 21:
        out = f"{s[:n]}.{s[n:]}"
    elif -6 < n <= 0:
        out = "0." + "0" * -n + s
    else:
        e = n - 1
        mantissa = s if k == 1 else f"{s[0]}.{s[1:]}"
        out = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return (("-" if sign else "") + out).encode()


class LuaScripts:
    """The process's Lua runtime, its compiled scripts, and the bridge to commands."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one script at a time in this runtime
        self._runtime = lua51.LuaRuntime(
            encoding=None, register_eval=False, unpack_returned_tuples=True
        )
        self._table = self._runtime.table_from
        self._compile, self._run, self._run_tables, self._unpack = self._runtime.execute(
            _BOOT, self._pycall, self._pending, _STACK
        )
        self._left: Sequence[Any] = ()  # the last reply not a string, number or nil
        self._compiled: dict[str, Any] = {}
        self._db: Keyspace | None = None  # the keyspace of the script running now
        self._failure: BaseException | None = None  # raised in a command, not a reply

    # -- loading ---------------------------------------------------------------------

    def load(self, source: bytes) -> str:
        """SCRIPT LOAD: compile ``source`` (an error if it does not compile); its SHA."""
        sha = hashlib.sha1(source).hexdigest()
        with self._lock:
            if sha not in self._compiled:
                self._compiled[sha] = self._compile_source(source)
        return sha

    def _compile_source(self, source: bytes) -> Any:
        fn, error = self._compile(source)
        if fn is None:
            raise ScriptError(f"ERR Error compiling script (new function): {_text(error)}")
        return fn

    def _function(self, sha: str) -> Any:
        """The compiled script: loaded here before, or a ``Script`` made in this process."""
        fn = self._compiled.get(sha)
        if fn is None:
            script = registered_script(sha)
            if script is None:
                raise NoScriptError("NOSCRIPT No matching script. Please use EVAL.")
            fn = self._compiled[sha] = self._compile_source(script.source.encode())
        return fn

    # -- running ---------------------------------------------------------------------

    def run(self, sha: str, keys: Sequence[bytes], argv: Sequence[bytes], db: Keyspace) -> Any:
        """EVALSHA: run the script on ``db`` (the caller holds its storage's lock, so
        the script is atomic); its reply as the server would give it."""
        with self._lock:
            fn = self._function(sha)
            self._db, self._failure = db, None
            try:
                if len(keys) + len(argv) < _STACK:
                    result = self._run(fn, len(keys), *keys, *argv)
                else:
                    result = self._run_tables(fn, self._table(keys), self._table(argv))
            finally:
                self._db = None
            failure, self._failure = self._failure, None
        if failure is not None:  # not an error reply: a fault, raised as it is
            raise failure
        if not result[0]:
            raise ScriptError(_error_text(result[1], sha))
        n = result[1]
        if len(result) == n + 2:
            tokens: Sequence[Any] = result[2:]
        else:  # a long reply: taken in parts
            flat, tokens = result[2], []
            for start in range(1, n + 1, _STACK):
                part = self._unpack(flat, start, min(start + _STACK - 1, n))
                tokens += part if type(part) is tuple else [part]
        value = _decode(iter(tokens))
        if type(value) is ScriptError:
            raise value
        return value

    def _pycall(self, *args: Any) -> Any:
        """``redis.pcall``, called from Lua: one command on the running script's
        keyspace. Its reply if a string, a number or nil; else ``True``, and the reply
        waits for :meth:`_pending` (see ``_BOOT``)."""
        for arg in args:
            if type(arg) is not bytes:
                try:
                    args = tuple(_word(a) for a in args)
                except TypeError:
                    return self._error(_BAD_ARGUMENT)
                break
        if not args:
            return self._error(_NO_ARGUMENT)
        command = _COMMANDS.get(args[0]) or _COMMANDS.get(args[0].upper())
        if command is None:
            return self._error(_UNKNOWN)
        try:
            reply = command(self._db, args[1:])  # type: ignore[arg-type]
        except StorageError as exc:
            return self._error(str(exc))
        except Exception as exc:  # a fault, not a reply: the script stops, it is raised
            self._failure = exc
            return self._error(f"ERR {type(exc).__name__}: {exc}")
        kind = type(reply)
        if kind is bytes or kind is int:
            return reply
        if reply is None:
            return False
        tokens: list[Any] = []
        _encode(reply, tokens)
        self._left = tokens
        return True

    def _error(self, text: str) -> bool:
        self._left = (True, -2, text.encode())
        return True

    def _pending(self) -> Any:
        """The reply :meth:`_pycall` left, as flat values (a table of them if long)."""
        tokens, self._left = self._left, ()
        if len(tokens) > _STACK:  # too many values to cross at once: as a table
            return self._table(tokens)
        return tuple(tokens)


def _word(arg: Any) -> bytes:
    """An argument a script gave to ``redis.call``, as the command's word."""
    kind = type(arg)
    if kind is bytes:
        return arg  # type: ignore[no-any-return]
    if kind is int or kind is float:
        return number_text(arg)
    raise TypeError(kind.__name__)


def _encode(reply: Any, out: list[Any]) -> None:
    """A command's reply as flat values for Lua (see ``_BOOT``)."""
    kind = type(reply)
    if kind is bytes or kind is int:
        out.append(reply)
    elif reply is None:
        out.append(False)
    elif kind is list:
        out += (True, len(reply))
        for item in reply:
            _encode(item, out)
    elif kind is Status:
        out += (True, -1, bytes(reply))
    elif kind is str:
        out.append(reply.encode())
    else:
        raise StorageError(f"InMemoryStorage cannot hand a {kind.__name__} reply to Lua")


def _decode(tokens: Any) -> Any:
    """A script's result, from the flat values Lua made of it, as Redis replies."""
    v = next(tokens)
    kind = type(v)
    if kind is bytes:
        return v
    if v is True:
        n = next(tokens)
        if n >= 0:
            return [_decode(tokens) for _ in range(n)]
        text = next(tokens)
        return Status(text) if n == -1 else ScriptError(_text(text))
    if v is False:
        return None
    if kind is int:
        return v if _INT64_MIN <= v < -_INT64_MIN else _INT64_MIN
    # a number with a fraction: truncated, as the C cast to long long does
    return int(v) if math.isfinite(v) and abs(v) < 2**63 else _INT64_MIN


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _error_text(error: Any, sha: str) -> str:
    """The error a failed script answers with, worded as Redis 7 words it."""
    if lua51.lua_type(error) == "table":  # error({err = ...})
        err = error[b"err"]
        message = _text(err) if err is not None else "ERR unknown error"
    else:
        message = _text(error)
    where = "@user_script"
    if message.startswith("user_script:"):  # a Lua error, with its line
        where += ":" + message.split(":", 2)[1]
        message = "ERR " + message
    return f"{message} script: {sha}, on {where}."


_SCRIPTS: LuaScripts | None = None
_SCRIPTS_LOCK = threading.Lock()


def scripts() -> LuaScripts:
    """The process's Lua runtime (made on first use)."""
    global _SCRIPTS
    if _SCRIPTS is None:
        with _SCRIPTS_LOCK:
            if _SCRIPTS is None:
                _SCRIPTS = LuaScripts()
    return _SCRIPTS
