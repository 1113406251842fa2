"""Least privilege on the server: a Redis ACL file with a user for each role.

``dagrt acl`` writes it (:func:`render`) from the roles' passwords: each from
``DAGRT_ACL_<ROLE>_PASSWORD`` or the file ``DAGRT_ACL_<ROLE>_PASSWORD_FILE`` names
(:mod:`dagrt.secret`); the file holds their SHA-256 only. Load it with the server's
``aclfile`` setting (``storage/redis.conf``). The roles:

* ``default``: off: a connection without a user name gets nothing (its permissions are
  all, for the server's own replay of the AOF at a restart, never for a connection).
* ``admin``: everything (creating users, rotating passwords; never used by runs).
* ``client``: what a client does: submit runs (scripts), follow their events, read
  outputs, clean up, write the event log and its index, prune it. It cannot read the
  tasks stream as a worker (``XREADGROUP``), touch keys outside ``dagrt:``, or run
  admin commands.
* ``worker``: what a worker does: read and acknowledge the tasks streams, complete
  tasks (scripts), store outputs, heartbeats, the event log. Outside ``dagrt:``
  nothing, no admin command.
* ``dashboard``: reads only (``%R~dagrt:*``): no command that writes is granted, and a
  script it runs cannot write either (the server checks the commands inside a script
  against the user that runs it).

Commands a role lacks are refused by the server with ``NOPERM``; tests run a workload
with each user and check each role's refusals (``tests/test_acl.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

__all__ = ["ROLES", "render"]

# Every connection: say hello, name itself, authenticate, choose its database.
_CONNECTION = "+ping +hello +auth +client|setname +select"  # (no client|setinfo: 7.0 lacks it)
# Scripts: run by SHA, loaded again after a server restart (redis-py's NOSCRIPT path).
_SCRIPTS = "+evalsha +evalsha_ro +script|load"
_READ_SCRIPTS = "+evalsha_ro +script|load"  # (a script run so cannot write)
_READ = (
    "+get +mget +exists +strlen +getrange +pttl +ttl +type"
    " +hget +hmget +hgetall +hlen +hexists +hkeys"
    " +smembers +scard +sismember"
    " +lrange +llen"
    " +zrange +zcard +zscore"
    " +xread +xrange +xrevrange +xlen +xinfo|stream +xinfo|groups +xinfo|consumers"
    " +scan"
)
_WRITE = (
    "+set +del +unlink +expire +pexpire +copy +incrby"
    " +hset +hsetnx +hdel +hincrby"
    " +sadd +srem +rpush +zadd +zrem"
    " +xadd +xdel +xtrim +xack +xpending +xclaim +xgroup|create +xgroup|createconsumer"
)

#: each role's rules, after ``on``, its password and ``resetkeys resetchannels -@all``
ROLES: dict[str, str] = {
    "admin": "~* &* +@all",
    "client": f"{_CONNECTION} {_SCRIPTS} {_READ} {_WRITE} ~dagrt:*",
    "worker": f"{_CONNECTION} {_SCRIPTS} {_READ} {_WRITE} +xreadgroup +xautoclaim ~dagrt:*",
    "dashboard": f"{_CONNECTION} {_READ_SCRIPTS} {_READ} %R~dagrt:*",
}


def render(passwords: Mapping[str, str]) -> str:
    """The ACL file of the roles in ``passwords`` (role -> password; each role of
    :data:`ROLES`), with ``default`` off. Passwords are written as their SHA-256."""
    unknown = set(passwords) - set(ROLES)
    if unknown:
        raise ValueError(f"no such role: {', '.join(sorted(unknown))} (roles: {', '.join(ROLES)})")
    # ``default`` is off (nobody logs in as it: a connection without a user name gets
    # NOAUTH) with every permission: on Redis 7.0 and valkey the server replays a
    # script's writes from the AOF as a transaction whose commands it checks against
    # the default user, and with none allowed a restart dropped them all (the log).
    lines = ["user default off resetpass ~* &* +@all"]
    for role, rules in ROLES.items():
        password = passwords.get(role)
        if password is None:
            continue
        if len(password) < 16:
            raise ValueError(f"the {role} password must have 16 characters at least")
        digest = hashlib.sha256(password.encode()).hexdigest()
        lines.append(f"user {role} on #{digest} resetkeys resetchannels -@all {rules}")
    return "\n".join(lines) + "\n"
