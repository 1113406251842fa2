"""The ``dagrt`` command. Each subcommand parses options and calls one library function."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .options import add_log_options, add_worker_options, flush_policy, usage_error
from .options import number as _number
from .options import url as _url
from .secret import SecretError
from .secret import env_value as _env_value

if TYPE_CHECKING:
    from .metrics import RunSummary

__all__ = ["main"]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _age(text: str) -> float:
    """A duration with its unit: 90s, 15m, 12h, 7d (seconds)."""
    number, unit = text[:-1], text[-1:].lower()
    try:
        value = float(number) * _UNITS[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (a number and a unit: 90s, 15m, 12h, 7d)"
        ) from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return value


def _worker(args: argparse.Namespace) -> int:
    from .options import worker_settings
    from .workers import Worker

    if not args.release_memory:
        from .malloc import retain_freed_memory

        retain_freed_memory()  # before any thread allocates

    from .secret import checked_keyring, shared_secret

    secret = shared_secret()
    checked_keyring(secret)  # (a secret that is not one stops here, with its message)
    settings = worker_settings(args, secret=secret)
    Worker(args.redis, settings).run(watch_stdin=args.watch_stdin)
    return 0


def _cluster(args: argparse.Namespace) -> int:
    import anyio

    from .cluster import LocalCluster
    from .keyring import new_secret
    from .options import log_args
    from .secret import checked_keyring, shared_secret
    from .storage.redis import redact

    options, env = log_args(metrics=args.metrics, url=args.metrics_url, flush=args.flush)
    secret = shared_secret() or new_secret().encode()
    checked_keyring(secret)

    async def serve() -> None:
        async with LocalCluster(
            args.workers,
            threads=args.threads,
            worker_options=options,
            worker_env=env,
            secret=secret,
        ) as cluster:
            # The URL (its password) and the secret go to files only this user reads,
            # never to the terminal or a command line.
            with tempfile.TemporaryDirectory(prefix="dagrt-cluster-") as folder:
                url_file, secret_file = Path(folder, "url"), Path(folder, "secret")
                for path, text in ((url_file, cluster.url), (secret_file, secret.decode())):
                    path.touch(mode=0o600)
                    path.write_text(text)
                print(
                    f"dagrt cluster: {len(cluster.processes)} workers on {redact(cluster.url)}",
                    flush=True,
                )
                print(
                    "its URL and secret, for clients and more workers (by environment, or"
                    " read those files):\n"
                    f"  export DAGRT_REDIS_URL_FILE={url_file} DAGRT_SECRET_FILE={secret_file}",
                    flush=True,
                )
                print("Ctrl-C stops the server and the workers.", flush=True)
                await anyio.sleep_forever()

    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        pass
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dagrt", description="asyncio-native DAG runtime")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("worker", help="run one worker process")
    w.add_argument(
        "--redis",
        type=_url,
        default=_env_url("DAGRT_REDIS_URL"),
        help="server URL (default: $DAGRT_REDIS_URL, or the file $DAGRT_REDIS_URL_FILE"
        " names, or redis://localhost:6379/0; a password is safer in either than here:"
        " every local user can read a command line)",
    )
    add_worker_options(w)
    w.add_argument(
        "--watch-stdin", action="store_true", help="stop when stdin closes (used by LocalCluster)"
    )
    w.add_argument(
        "--release-memory",
        action="store_true",
        help="give freed memory back to the OS at once (lower resident memory; each large "
        "value then lands on fresh pages, slow to fault in on many VMs)",
    )
    add_log_options(w)
    w.set_defaults(func=_worker)

    c = sub.add_parser("cluster", help="a private server and workers, in the foreground")
    c.add_argument(
        "--workers", type=_number(int, 0), default=None, help="worker processes (default: cores)"
    )
    c.add_argument("--threads", type=_number(int, 1), default=None, help="threads per worker")
    add_log_options(c)
    c.set_defaults(func=_cluster)

    r = sub.add_parser("report", help="write the HTML report of a run (needs only the event log)")
    r.add_argument("run_id")
    r.add_argument("--redis", type=_url, default=_default_url(), help="server of the event log")
    r.add_argument("--out", default="reports", help="directory (a folder per run inside)")
    r.add_argument(
        "--wait",
        type=_number(float, 0),
        default=10.0,
        help="seconds to wait for the run's log to be complete (workers write on their"
        " own schedule); 0: report what is there",
    )
    r.set_defaults(func=_report)

    from .workflows import NAMES

    m = sub.add_parser("demo", help="run a workflow on a local cluster, with a progress bar")
    m.add_argument("workflow", nargs="?", default="wordcount", choices=NAMES)
    m.add_argument(
        "--workers", type=_number(int, 1), default=None, help="worker processes (default: cores)"
    )
    m.add_argument("--file", default=None, help="a text (wordcount) or image (image_transform)")
    m.add_argument("--dashboard", action="store_true", help="serve the live dashboard too")
    m.add_argument("--port", type=int, default=8787, help="the dashboard's port")
    m.add_argument("--out", default="reports", help="where the report is written")
    m.set_defaults(func=_demo)

    d = sub.add_parser("dashboard", help="the web dashboard (reads only the event log)")
    d.add_argument("--redis", type=_url, default=_default_url(), help="server of the event log")
    d.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to serve on (default: loopback only; elsewhere, set"
        " DAGRT_DASHBOARD_PASSWORD or DAGRT_DASHBOARD_PASSWORD_FILE: pages then need it)",
    )
    d.add_argument("--port", type=int, default=8787)
    d.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a page origin (https://host:port) allowed to open the live WebSocket besides"
        " the dashboard's own (repeatable)",
    )
    d.add_argument(
        "--nice",
        type=int,
        default=10,
        help="lower this process's CPU priority by this much (default 10), so on a "
        "machine shared with workers they come first; 0 keeps it",
    )
    d.set_defaults(func=_dashboard)

    pr = sub.add_parser("prune", help="delete runs (and worker events) older than a cutoff")
    pr.add_argument("--redis", type=_url, default=_default_url(), help="server of the event log")
    pr.add_argument(
        "--older-than",
        type=_age,
        required=True,
        help="delete what ended longer ago than this: 90s, 15m, 12h, 7d",
    )
    pr.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    pr.set_defaults(func=_prune)

    sc = sub.add_parser(
        "secret",
        help="print a new random secret for a pool (DAGRT_SECRET or the file DAGRT_SECRET_FILE"
        " names, the same for its clients and workers)",
    )
    sc.set_defaults(func=_secret)

    ac = sub.add_parser(
        "acl",
        help="print the server's ACL file: a user for each of admin, client, worker and"
        " dashboard whose password is set (DAGRT_ACL_<ROLE>_PASSWORD or its _FILE),"
        " the default user off",
    )
    ac.set_defaults(func=_acl)

    ls = sub.add_parser("runs", help="list recent runs from the event log")
    ls.add_argument("--redis", type=_url, default=_default_url(), help="server of the event log")
    ls.add_argument("--limit", type=_number(int, 1), default=20, help="runs to list")
    ls.set_defaults(func=_runs)
    return parser


def _default_url() -> str:
    """The event log's server: ``DAGRT_METRICS_URL``, else ``DAGRT_REDIS_URL``."""
    return _env_url("DAGRT_METRICS_URL", "DAGRT_REDIS_URL")


def _env_url(*names: str) -> str:
    """The first of these settings that is set (each also from a file, ``*_FILE``:
    :mod:`dagrt.secret`), else the local default server."""
    for name in names:
        if value := _env_value(name):
            return value
    return "redis://localhost:6379/0"


def _demo(args: argparse.Namespace) -> int:
    import anyio

    from .demo import run_demo

    try:
        anyio.run(
            lambda: run_demo(
                args.workflow,
                n_workers=args.workers,
                path=args.file,
                dashboard=args.dashboard,
                dashboard_port=args.port,
                out=args.out,
            )
        )
    except KeyboardInterrupt:
        pass
    except (ImportError, ValueError) as exc:  # a missing extra, a bad argument
        print(f"dagrt demo: {exc}", file=sys.stderr)
        return 2
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    try:
        from .dashboard.server import serve
    except ImportError as exc:
        print(
            f"dagrt dashboard needs its extra: pip install 'dagrt[dashboard]' ({exc})",
            file=sys.stderr,
        )
        return 2
    from .secret import loopback_host
    from .storage import RedisStorage

    password = _env_value("DAGRT_DASHBOARD_PASSWORD")
    with RedisStorage(args.redis) as storage:  # say so now if the server is not there
        storage.ping()
    if not password and not loopback_host(args.host):
        print(
            f"dagrt dashboard: serving {args.host} without a password: anyone who reaches"
            " it sees every run's tasks, errors and tracebacks (set"
            " DAGRT_DASHBOARD_PASSWORD or DAGRT_DASHBOARD_PASSWORD_FILE)",
            file=sys.stderr,
        )
    if args.nice:
        os.nice(args.nice)
    serve(
        args.redis,
        host=args.host,
        port=args.port,
        password=password,
        allowed_origins=args.allow_origin,
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from . import keys as K
    from .exceptions import DagrtError
    from .metrics.report import write_report
    from .storage import RedisStorage

    if not K.valid_run_id(args.run_id):
        print(
            f"dagrt report: {args.run_id[:200]!r} is not a run id ({K.RUN_ID_GRAMMAR};"
            " see dagrt runs)",
            file=sys.stderr,
        )
        return 2
    with RedisStorage(args.redis) as storage:
        try:
            path = write_report(storage, args.run_id, args.out, wait=args.wait)
        except DagrtError:
            raise
        except (OSError, ValueError) as exc:  # the folder cannot be made, written, or
            # is a link out of --out
            print(f"dagrt report: cannot write the report under {args.out}: {exc}", file=sys.stderr)
            return 1
    print(f"report: {path}")
    return 0


def _acl(args: argparse.Namespace) -> int:
    from .acl import ROLES, render

    passwords = {
        role: value
        for role in ROLES
        if (value := _env_value(f"DAGRT_ACL_{role.upper()}_PASSWORD")) is not None
    }
    if not passwords:
        print(
            "dagrt acl: no role has a password: set DAGRT_ACL_ADMIN_PASSWORD, ..._CLIENT_,"
            " ..._WORKER_, ..._DASHBOARD_ (or each one's _FILE)",
            file=sys.stderr,
        )
        return 2
    try:
        text = render(passwords)
    except ValueError as exc:
        print(f"dagrt acl: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _secret(args: argparse.Namespace) -> int:
    from .keyring import new_secret

    print(new_secret())
    return 0


def _prune(args: argparse.Namespace) -> int:
    from .metrics import prune
    from .storage import RedisStorage

    with RedisStorage(args.redis) as storage:
        done = prune(storage, before=time.time() - args.older_than, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(done.runs)} runs and {done.entries} log entries")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from .metrics import list_runs
    from .storage import RedisStorage

    with RedisStorage(args.redis) as storage:
        runs = list_runs(storage, args.limit)
    if not runs:
        print("no runs in the event log")
        return 0
    print(
        f"{'run':<28} {'status':<10} {'tasks':>7} {'done':>7} {'failed':>6} {'makespan':>10}"
        f" {'workers':>7}  log"
    )
    now = time.time()
    for r in runs:
        makespan = f"{r.makespan:.3f} s" if r.makespan is not None else "-"
        print(
            f"{r.run_id:<28} {r.status:<10} {r.n_tasks:>7} {r.done:>7} {r.failed:>6}"
            f" {makespan:>10} {len(r.workers):>7}  {_log_state(r, now)}"
        )
    return 0


QUIET_RUN = 60.0  # seconds without an entry after which a running run is said quiet


def _log_state(run: RunSummary, now: float) -> str:
    """The runs list's log column: complete, still filling, or for a run without its
    end, how long nothing came (its client may have died: the log cannot tell)."""
    if run.complete:
        return "complete"
    if run.status != "running":
        return "filling"
    quiet = run.quiet(now)
    if quiet < QUIET_RUN:
        return "-"
    minutes = quiet / 60
    said = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.0f} h"
    return f"quiet {said}"


def main(argv: Sequence[str] | None = None) -> None:
    try:
        parser = _parser()  # (defaults read from the environment and its *_FILE files)
    except SecretError as exc:
        print(f"dagrt: {exc}", file=sys.stderr)
        sys.exit(2)
    args = parser.parse_args(argv)
    if hasattr(args, "flush_interval"):  # the event log's options of a worker
        from pydantic import ValidationError

        from .options import FLUSH_FLAGS

        try:
            args.flush = flush_policy(args)
        except ValidationError as exc:
            parser.error(usage_error(exc, FLUSH_FLAGS))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    from .exceptions import DagrtError

    try:
        code = args.func(args)
    except SecretError as exc:  # a *_FILE setting that does not read
        print(f"dagrt {args.command}: {exc}", file=sys.stderr)
        code = 2
    except BrokenPipeError:  # `dagrt runs | head`: the reader went away, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except (DagrtError, BaseExceptionGroup) as exc:
        # A dead server, an unknown run, ...: one line, no traceback (also from inside
        # a task group); anything else is a bug and keeps its traceback.
        errors = _leaves(exc)
        if not errors or not all(isinstance(e, DagrtError) for e in errors):
            raise
        print(f"dagrt {args.command}: {errors[0]}", file=sys.stderr)
        code = 1
    sys.exit(code)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    out: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(reversed(e.exceptions))
        else:
            out.append(e)
    return out
