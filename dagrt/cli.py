"""The ``dagrt`` command. Each subcommand parses options and calls one library function."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _worker(args: argparse.Namespace) -> int:
    from .workers import Worker, WorkerSettings

    settings = WorkerSettings(
        concurrency=args.concurrency,
        threads=args.threads,
        name=args.name,
        claim_timeout=args.claim_timeout,
        heartbeat=args.heartbeat,
        burst=args.burst,
        keep_children=not args.no_keep,
        secret=os.environ["DAGRT_SECRET"].encode() if os.environ.get("DAGRT_SECRET") else None,
        graceful_timeout=args.graceful_timeout,
        heartbeat_file=args.heartbeat_file,
    )
    Worker(args.redis, settings).run(watch_stdin=args.watch_stdin)
    return 0


def _cluster(args: argparse.Namespace) -> int:
    import anyio

    from .cluster import LocalCluster

    async def serve() -> None:
        async with LocalCluster(args.workers, threads=args.threads) as cluster:
            print(f"dagrt cluster: {len(cluster.processes)} workers on {cluster.url}", flush=True)
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
        default=os.environ.get("DAGRT_REDIS_URL", "redis://localhost:6379/0"),
        help="server URL (default: $DAGRT_REDIS_URL or redis://localhost:6379/0)",
    )
    w.add_argument(
        "--concurrency",
        type=int,
        default=128,
        help="stream entries in flight (tiny tasks run in batches; threaded ones are held "
        "to threads + 1)",
    )
    w.add_argument("--threads", type=int, default=None, help="threads for sync task functions")
    w.add_argument("--name", default=None, help="worker id (default: host-pid-random)")
    w.add_argument(
        "--claim-timeout",
        type=float,
        default=30.0,
        help="seconds before a silent worker's tasks are taken over",
    )
    w.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeats")
    w.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        help="seconds in-flight tasks get on SIGTERM",
    )
    w.add_argument("--burst", action="store_true", help="exit once the stream is drained")
    w.add_argument(
        "--no-keep", action="store_true", help="dispatch every ready child (no Wukong 'become')"
    )
    w.add_argument(
        "--heartbeat-file",
        default=None,
        help="touch this file on every heartbeat (for container health checks)",
    )
    w.add_argument(
        "--watch-stdin", action="store_true", help="stop when stdin closes (used by LocalCluster)"
    )
    w.set_defaults(func=_worker)

    c = sub.add_parser("cluster", help="a private server and workers, in the foreground")
    c.add_argument("--workers", type=int, default=None, help="worker processes (default: cores)")
    c.add_argument("--threads", type=int, default=None, help="threads per worker")
    c.set_defaults(func=_cluster)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    sys.exit(args.func(args))
