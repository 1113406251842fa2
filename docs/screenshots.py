"""Make the README's screenshots: the dashboard on a live run and on a replay of a
finished one, and the report of a run.

    python docs/screenshots.py            # docs/images/dashboard-{live,replay}.png, report.png
    python docs/screenshots.py report     # only docs/images/report.png

Needs Chromium (``/usr/bin/chromium``) and Playwright (the ``test`` extra).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dagrt
from dagrt import workflows
from dagrt.metrics import FlushPolicy
from dagrt.storage.server import free_port

OUT = Path(__file__).parent / "images"
PAINTED = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader"]


async def main() -> None:
    from playwright.async_api import async_playwright

    port = free_port()
    async with (
        dagrt.Client(n_workers=2, threads=1, flush=FlushPolicy(interval=0.2), dashboard=port) as c,
        async_playwright() as p,
    ):
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: print("console:", m.type, m.text))
        page.on("requestfailed", lambda r: print("failed:", r.url))
        await page.goto(f"{c.dashboard_url}#/")
        await page.wait_for_function("window.__dagrt && window.__dagrt.ready")

        fut = c.submit(workflows.get("gemm").build(n=2400, b=12))
        await page.wait_for_function(
            f"window.__dagrt.runs().some(r => r.run_id === '{fut.run_id}')"
        )
        await page.goto(f"{c.dashboard_url}#/run/{fut.run_id}")
        await page.wait_for_function(
            "window.__dagrt.ready && window.__dagrt.status === 'running'"
            " && window.__dagrt.counts.done > 0.4 * (window.__dagrt.counts.done"
            " + window.__dagrt.counts.waiting + window.__dagrt.counts.ready"
            " + window.__dagrt.counts.running)",
            timeout=60_000,
        )
        await page.evaluate(PAINTED)
        await page.screenshot(path=OUT / "dashboard-live.png", full_page=True)
        print("live:", await page.evaluate("window.__dagrt.counts"))
        await fut

        await page.wait_for_function("window.__dagrt.status === 'finished'", timeout=60_000)
        duration = await page.evaluate("window.__dagrt.duration")
        await page.goto(f"{c.dashboard_url}#/run/{fut.run_id}?t={duration / 2:.3f}")
        await page.reload()
        await page.wait_for_function(
            f"window.__dagrt.ready && Math.abs(window.__dagrt.replayTime - {duration / 2:.3f})"
            " < 1e-3"
        )
        await page.evaluate(
            "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )
        await page.screenshot(path=OUT / "dashboard-replay.png", full_page=True)
        await browser.close()
    print(f"wrote {OUT / 'dashboard-live.png'} and {OUT / 'dashboard-replay.png'}")


async def report() -> None:
    """GEMM on two workers, its report, and the report's first screen."""
    import tempfile

    from playwright.async_api import async_playwright

    from dagrt.metrics.report import write_report

    async with dagrt.Client(n_workers=2, threads=1, flush=FlushPolicy(interval=0.2)) as c:
        fut = c.submit(workflows.get("gemm").build(n=1800, b=6))
        await fut
        folder = tempfile.mkdtemp()
        path = await asyncio.to_thread(
            write_report, c._runtime.storage, fut.run_id, folder, wait=15
        )  # type: ignore[attr-defined]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = await browser.new_page(viewport={"width": 1250, "height": 900})
        await page.goto(path.resolve().as_uri())
        await page.evaluate(PAINTED)
        await page.screenshot(path=OUT / "report.png")
        await browser.close()
    print(f"wrote {OUT / 'report.png'}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["report"]:
        asyncio.run(main())
    asyncio.run(report())
