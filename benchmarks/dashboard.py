"""What watching costs, and how fast the page is: the dashboard benchmark.

In one run, on a local cluster of 2 workers:

* makespan of the 16,383-task tree reduction with no dashboard, and with the
  dashboard process serving a headless Chromium page open on the run (the page
  goes to the run as soon as it is listed and follows it live), alternating,
  several repetitions; the ratio of the medians. The page is measured twice:
  with the browser in the idle scheduling class (standing in for a browser on the
  user's own machine, which is where it runs against a worker pool) and at normal priority
  on the same two cores as the workers (a local cluster watched from its own
  host: the browser's CPU then comes out of the workers' share);
* the page: time to render a finished 16,383-task run (navigation to counts
  and canvas drawn), a scrub to half the makespan (input to the next painted
  frame), and loading a 100,000-task run (aggregated view).

    python benchmarks/dashboard.py [--repeat 5]

Needs Chromium (``/usr/bin/chromium``) and the ``test`` extra (Playwright).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dagrt
from dagrt import workflows
from dagrt.cluster import LocalCluster
from dagrt.metrics import FlushPolicy
from dagrt.storage.server import free_port
from dagrt.workflows import pairwise

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Result, save_json

# processes whose CPU time a verbose round reports
WATCHED = ("dagrt dashboard", "chromium", "dagrt worker", "-server")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader"]


def add(x: int, y: int) -> int:
    return x + y


def reduction(leaves: int) -> dagrt.Node:
    return pairwise(dagrt.task(add), range(leaves))


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(match: str) -> float:
    """CPU seconds (user + system) used so far by the processes whose command line
    contains ``match`` (read from ``/proc``; 0 where there is none)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if match not in command.decode(errors="replace"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


class Board:
    """A ``dagrt dashboard`` process."""

    def __init__(self, url: str) -> None:
        self.port = free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dagrt", "dashboard", "--redis", url, "--port", str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "dagrt dashboard:" not in line:
            raise RuntimeError(f"the dashboard did not start: {line!r}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)
        assert self.process.stdout is not None
        self.process.stdout.close()


class Viewer(threading.Thread):
    """Chromium driven from its own thread (Playwright's sync API, its own loop).

    ``call(fn)`` runs ``fn(browser)`` on that thread and returns its result, so
    the client's event loop never waits on the browser.
    """

    def __init__(self, idle: bool = False) -> None:
        super().__init__(daemon=True, name="viewer")
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.idle = idle
        self.start()

    def run(self) -> None:
        import tempfile

        from playwright.sync_api import sync_playwright

        executable = CHROMIUM
        if self.idle:  # the browser at a lower priority: as if it ran on another machine
            # The idle scheduling class (it runs when no other process wants the CPU), in
            # a session of its own whose scheduling group gets nice 19: with autogroups on
            # (Linux's default) `nice` alone only ranks the browser against its own
            # session's processes, and a browser in a session of its own would still
            # take an equal share of the cores from the workers.
            wrapper = Path(tempfile.mkdtemp()) / "chromium"
            wrapper.write_text(
                "#!/bin/sh\n"
                "exec setsid -w sh -c 'echo 19 > /proc/self/autogroup 2>/dev/null;"
                f' exec chrt --idle 0 "$0" "$@"\' {CHROMIUM} "$@"\n'
            )
            wrapper.chmod(0o755)
            executable = str(wrapper)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=ARGS)
            while (job := self.jobs.get()) is not None:
                fn, done = job
                try:
                    done.set_result(fn(browser))
                except BaseException as exc:  # handed to the caller
                    done.set_exception(exc)
            browser.close()

    def call(self, fn: Any) -> Any:
        import concurrent.futures

        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.jobs.put((fn, done))
        return done

    def close(self) -> None:
        self.jobs.put(None)
        self.join(30)


class Watch:
    """A page open on the dashboard's runs list before a run is submitted (as a user
    watching would have it), which goes to the run once it is listed and follows it
    live until all its tasks show done."""

    def __init__(self, viewer: Viewer, board: Board) -> None:
        self.viewer = viewer
        self.board = board
        self.page: Any = None

    def open(self) -> Any:
        def go(browser: Any) -> None:
            self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
            self.page.goto(self.board.http + "/#/")
            self.page.wait_for_function("window.__dagrt && window.__dagrt.runs", timeout=60_000)

        return self.viewer.call(go)

    def follow(self, run_id: str, n_tasks: int) -> Any:
        def go(browser: Any) -> None:
            page = self.page
            # polled 5 times a second, not at every frame: polling at each frame made the
            # page draw 60 frames a second and JIT-compile the checks (CPU that is not
            # the dashboard's, taken from the workers)
            page.wait_for_function(
                f"window.__dagrt.runs().some(r => r.run_id === '{run_id}')",
                timeout=60_000,
                polling=POLL_MS,
            )
            page.evaluate(f"location.hash = '#/run/{run_id}'")  # as a click on the run does
            try:
                page.wait_for_function(
                    f"window.__dagrt.ready && window.__dagrt.counts.done === {n_tasks}",
                    timeout=120_000,
                    polling=POLL_MS,
                )
            except Exception as exc:  # say what the page showed instead
                state = page.evaluate(
                    "({ready: window.__dagrt.ready, counts: window.__dagrt.counts,"
                    " connection: window.__dagrt.connection,"
                    " applied: window.__dagrt.appliedCount,"
                    " last: window.__dagrt.lastAppliedId, status: window.__dagrt.status})"
                )
                raise RuntimeError(f"the page did not show run {run_id} done: {state}") from exc
            page.close()

        return self.viewer.call(go)


POLL_MS = 200

PAINTED = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def render_time(board: Board, run_id: str, n_tasks: int) -> Any:
    """Seconds from opening the run's address in a new page to the run drawn, all done."""

    def go(browser: Any) -> float:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        page.goto(board.http + f"/#/run/{run_id}")
        page.wait_for_function(
            f"window.__dagrt && window.__dagrt.ready && window.__dagrt.counts.done === {n_tasks}"
            " && (window.__dagrt.visibleNodes > 0 || window.__dagrt.aggregated)",
            timeout=120_000,
            polling="raf",
        )
        page.evaluate(PAINTED)
        took = time.perf_counter() - t0
        page.close()
        return took

    return go


def scrub_times(board: Board, run_id: str, n: int = 5) -> Any:
    """Seconds from a scrub input to the next painted frame, for ``n`` positions."""

    def go(browser: Any) -> list[float]:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(board.http + f"/#/run/{run_id}")
        page.wait_for_function("window.__dagrt && window.__dagrt.ready", timeout=120_000)
        duration = page.evaluate("window.__dagrt.duration")
        times = []
        for k in range(n):
            at = duration * (0.5 + 0.08 * (k - n // 2))
            took = page.evaluate(
                """async (at) => {
                  const input = document.querySelector('[data-testid="scrub"]');
                  const t0 = performance.now();
                  input.value = String(at);
                  input.dispatchEvent(new Event('input', {bubbles: true}));
                  while (Math.abs(window.__dagrt.replayTime - Number(input.value)) > 1e-6)
                    await new Promise(r => requestAnimationFrame(r));
                  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
                  return (performance.now() - t0) / 1000;
                }""",
                at,
            )
            times.append(took)
        page.close()
        return times

    return go


async def main_async(args: argparse.Namespace) -> None:
    n_tasks = args.leaves - 1
    expected = sum(range(args.leaves))
    viewer = Viewer()
    remote = Viewer(idle=True)
    results: list[Result] = []
    async with (
        LocalCluster(n_workers=2, threads=1) as cluster,
        dagrt.Client(cluster.url, flush=FlushPolicy(interval=0.5), secret=cluster.secret) as client,
    ):
        viewers = {
            "no dashboard": None,
            "page, browser idle": remote,
            "page, browser here": viewer,
        }
        times: dict[str, list[float]] = {mode: [] for mode in viewers}
        for round_ in range(args.repeat + 1):
            for mode, watcher in viewers.items():
                board = Board(cluster.url) if watcher is not None else None
                watch = Watch(watcher, board) if watcher is not None and board else None
                try:
                    if watch is not None:
                        await asyncio.wrap_future(watch.open())
                    node = reduction(args.leaves)
                    cpu0 = {m: cpu_seconds(m) for m in WATCHED}
                    cpu0["client"] = time.process_time()
                    cpu0["machine"] = machine_busy()
                    t0 = time.perf_counter()
                    fut = client.submit(node)
                    watching = watch.follow(fut.run_id, n_tasks) if watch is not None else None
                    assert await fut == expected
                    took = time.perf_counter() - t0
                    cpu = {m: cpu_seconds(m) - cpu0[m] for m in WATCHED}
                    cpu["client"] = time.process_time() - cpu0["client"]
                    cpu["machine"] = machine_busy() - cpu0["machine"]
                    if watching is not None:
                        await asyncio.wrap_future(watching)
                finally:  # also when the page fails: no dashboard process left behind
                    if board is not None:
                        board.stop()
                if round_:  # the first round warms up
                    times[mode].append(took)
                if args.verbose:
                    used = "  ".join(f"{m.split()[-1]} {c * 1e3:.0f}" for m, c in cpu.items())
                    print(
                        f"    round {round_} {mode}: {took * 1e3:.0f} ms (CPU ms: {used})",
                        flush=True,
                    )
        base = statistics.median(times["no dashboard"])
        print(
            f"tree reduction of {n_tasks} tasks on 2 workers, median of {args.repeat}"
            " (and 'paired': the median over rounds of the ratio to no dashboard in the"
            " same round, which cancels the machine's drift)"
        )
        for mode, ts in times.items():
            median = statistics.median(ts)
            paired = statistics.median(
                t / off for t, off in zip(ts, times["no dashboard"], strict=True)
            )
            print(
                f"  {mode:<20} {median * 1e3:8.1f} ms  {(median / base - 1) * 100:+6.1f}%"
                f"   paired {(paired - 1) * 100:+6.1f}%"
            )
            results.append(Result(f"tr[{n_tasks}]", mode, ts))

        board = Board(cluster.url)
        try:
            run16 = client.submit(reduction(args.leaves))
            await run16
            renders = [  # the first waits for the last events to reach the log
                await asyncio.wrap_future(viewer.call(render_time(board, run16.run_id, n_tasks)))
                for _ in range(4)
            ][1:]
            scrubs = await asyncio.wrap_future(viewer.call(scrub_times(board, run16.run_id)))
            print(f"page: render {n_tasks} tasks  median {statistics.median(renders):.2f} s")
            print(f"page: scrub to a moment       median {statistics.median(scrubs) * 1e3:.0f} ms")
            results.append(Result(f"page[{n_tasks}]", "render", renders))
            results.append(Result(f"page[{n_tasks}]", "scrub", scrubs))
            if args.big:
                big = client.submit(workflows.get("tree_reduction").build(n=args.big))
                await big
                loads = [
                    await asyncio.wrap_future(
                        viewer.call(render_time(board, big.run_id, args.big - 1))
                    )
                    for _ in range(3)
                ][1:]
                print(f"page: load {args.big - 1} tasks   median {statistics.median(loads):.2f} s")
                results.append(Result(f"page[{args.big - 1}]", "load", loads))
        finally:
            board.stop()
    viewer.close()
    remote.close()
    save_json(results, args.json)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=16_384)
    parser.add_argument(
        "--big", type=int, default=100_001, help="leaves of the large run (0: skip it)"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--verbose", action="store_true", help="print every round")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/dashboard.json"))
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
