"""A run's outcome, authenticated: the events that end a run and a failed task's error.

Three events of a run's events stream decide how it ends for whoever follows it:
``finished``, ``failed`` (with the failed task's error record, ``err``) and
``cancelled`` (or another status a run was stopped with). A third party that can
write to the server could append one: end a healthy run early, or fail it with an
error record whose pickled exception runs code where it is unpickled. So, when the
pool has a shared secret, each carries a tag:

* ``finished`` / ``cancelled``: field ``m``, ``HMAC(k, run id | event)``;
* ``failed``: its error record is *sealed*: the tag of ``run id | failed | record``
  (64 hex digits) before the record's JSON, in the event and in the run's error key.

``k`` is the key the pool's :class:`~dagrt.keyring.Keyring` derives for this purpose
alone (a tag made here is never valid as a task record's signature, or the other way
round); tags are made with its signing secret and checked against each of its secrets
(rotation). A follower that holds the secret checks the tag (:func:`check_event`,
:func:`open_error`) before it trusts an event or unpickles anything in it: an event
that fails is ignored and logged as forged (it never ends a run), a record that fails is
never unpickled.

Without a secret nothing can be checked: an event is taken as written, and a task's
exception reaches the caller rebuilt from its type's name and plain arguments
(:func:`exception_of`), never unpickled. (A writer to such a server can still end
runs and forge their outputs: a pool without a secret trusts everyone who can reach
its server; see the README's security section.)
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .keyring import Keyring

__all__ = [
    "OUTCOMES",
    "check_event",
    "event_tag",
    "exception_of",
    "open_error",
    "plain_exception",
    "seal_error",
    "tag_matches",
]

log = logging.getLogger("dagrt.outcomes")

#: the events that end a run for its followers
OUTCOMES = frozenset({b"finished", b"failed", b"cancelled"})
_PURPOSE = "run-outcome"
_TAG_HEX = 64  # an HMAC-SHA256 tag in hex


def _message(run_id: str, kind: str, payload: bytes) -> tuple[bytes, ...]:
    # (a run id and an event name hold no NUL: the message parses one way only)
    return (run_id.encode(), b"\0", kind.encode(), b"\0", payload)


def event_tag(secret: Keyring, run_id: str, kind: str, payload: bytes = b"") -> str:
    """The tag of event ``kind`` of run ``run_id`` carrying ``payload`` (hex), made with
    the keyring's signing secret."""
    return secret.sign(_PURPOSE, *_message(run_id, kind, payload)).hex()


def tag_matches(
    secret: Keyring, tag: bytes | str, run_id: str, kind: str, payload: bytes = b""
) -> bool:
    """Is ``tag`` (hex) that of the event under one of the keyring's secrets?"""
    try:
        raw = bytes.fromhex(tag.decode() if isinstance(tag, bytes) else tag)
    except ValueError:
        return False
    return len(raw) == 32 and secret.check(_PURPOSE, raw, *_message(run_id, kind, payload))


def seal_error(secret: Keyring | None, run_id: str, record: dict[str, Any]) -> str:
    """A failed task's error record as stored: its JSON, after its tag if there is a
    secret."""
    text = json.dumps(record)
    if secret is None:
        return text
    return event_tag(secret, run_id, "failed", text.encode()) + text


def open_error(secret: Keyring | None, run_id: str, stored: bytes | str) -> dict[str, Any] | None:
    """The error record of a failed task of run ``run_id`` (as :func:`seal_error` made
    it); None if it is forged or damaged (logged: it is never trusted, nothing in it is
    unpickled). Without a secret, any record is taken (a tag, if any, is skipped)."""
    raw = stored.encode() if isinstance(stored, str) else bytes(stored)
    tagged = len(raw) > _TAG_HEX and raw[:1] != b"{"
    body = raw[_TAG_HEX:] if tagged else raw
    if secret is not None and not (
        tagged and tag_matches(secret, raw[:_TAG_HEX], run_id, "failed", body)
    ):
        log.warning(
            "run %s: a failed task's error record is forged (%s): ignored",
            run_id,
            "its tag does not match" if tagged else "it has no tag",
        )
        return None
    try:
        record = json.loads(body)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("task"), str):
        log.warning("run %s: a failed task's error record is not one: %.200r", run_id, body)
        return None
    return record


def check_event(secret: Keyring | None, run_id: str, fields: dict[bytes, bytes]) -> bool:
    """Is this outcome event of run ``run_id`` authentic? (Always, without a secret.)
    A forged one is logged."""
    if secret is None:
        return True
    kind = fields.get(b"e", b"")
    if kind == b"failed" and b"err" in fields:
        return open_error(secret, run_id, fields[b"err"]) is not None
    tag = fields.get(b"m", b"")
    if tag_matches(secret, tag, run_id, kind.decode(errors="replace")):
        return True
    log.warning(
        "run %s: a forged %r event in its events stream (%s): ignored",
        run_id,
        kind.decode(errors="replace")[:40],
        "its tag does not match" if tag else "it has no tag",
    )
    return False


# --------------------------------------------------------------------------- exceptions


_PLAIN_ARGS = (str, int, float, bool, type(None))


def plain_exception(exc: BaseException) -> list[Any] | None:
    """``[module, qualified name, args]`` of ``exc`` if it can be rebuilt from them alone
    (its arguments are strings, numbers, booleans or None), else None."""
    if not all(isinstance(a, _PLAIN_ARGS) for a in exc.args):
        return None
    kind = type(exc)
    return [kind.__module__, kind.__qualname__, list(exc.args)]


def exception_of(record: dict[str, Any], verified: bool) -> BaseException | None:
    """The exception a task raised, from its error record: unpickled only from a
    ``verified`` record (its tag checked with the pool's secret); otherwise rebuilt
    from its type's name and plain arguments (``plain``) when that type is an exception
    class of a module already imported here (nothing is imported or unpickled on the
    word of an unchecked record). None if neither works: the caller has the text."""
    from .serialize import loads

    pickled = record.get("exception")
    if verified and isinstance(pickled, str) and pickled:
        try:
            exc = loads(base64.b64decode(pickled), what="task exception")
        except Exception:  # the type may not exist here; the record still has its text
            exc = None
        if isinstance(exc, BaseException):
            return exc
    plain = record.get("plain")
    if not (isinstance(plain, list) and len(plain) == 3 and isinstance(plain[2], list)):
        return None
    module_name, qualname, args = plain
    module = builtins if module_name == "builtins" else sys.modules.get(str(module_name))
    kind: Any = module
    for part in str(qualname).split("."):  # (vars: no module __getattr__ runs, no import)
        kind = vars(kind).get(part) if hasattr(kind, "__dict__") else None
    if not (isinstance(kind, type) and issubclass(kind, Exception)):
        return None
    if not all(isinstance(a, _PLAIN_ARGS) for a in args):
        return None
    try:
        return kind(*args)  # type: ignore[no-any-return]
    except Exception:
        return None
