"""What rendering costs: pages/s rendered and plain on one loopback site, and the browser's memory.

    python -m benchmarks.render [--pages 300] [--memory-pages 1000] [--render-pages 4]

(0 pages skips that part.)

1. Serves a site on 127.0.0.1 whose pages are script-built: each is a shell whose
   script fetches `/data/N.json` and builds the title, a paragraph and the links to
   the next pages from it (so a rendered crawl finds every page, a plain one only
   the seeds).
2. Crawls `--pages` of them, listed as seeds, once with `[render] mode = "never"`
   and once with `"always"`, in one process: pages/s of each and their ratio.
3. Crawls `--memory-pages` other pages with `"always"` (listed as seeds; `wait =
   "load"`: the tabs' work without the idle wait) while sampling, every 0.5 s, the
   memory of every Chromium process of the run: the sum of their RSS (shared pages counted in each process) and of
   their PSS (shared pages split between them: the real footprint). Prints the
   samples by tenths of the crawl, so a leak would show as a climb.

Nothing leaves the machine. The browsers' profile folders go under a temporary
folder of the run's own, which is how their processes are told from any other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from scraper import Config, Scraper
from scraper.config import CrawlConfig, FetchConfig, OutputConfig, ParseConfig, RenderConfig

SHELL = """<!doctype html><html><head><title>loading</title>
<script>
fetch('/data/{n}.json').then(r => r.json()).then(d => {{
  document.title = d.title;
  document.getElementById('app').innerHTML = '<h1>' + d.title + '</h1><p>' + d.text + '</p>' +
    d.links.map(l => '<a href="' + l + '">' + l + '</a>').join(' ');
}});
</script></head><body><div id="app"></div></body></html>"""


def data(n: int, total: int) -> dict[str, Any]:
    links = [f"/page/{(n * 7 + k) % total}" for k in range(1, 6)]
    return {"title": f"Page {n}", "text": "Some words of a page built by its script. " * 20, "links": links}


async def start_site(total: int) -> tuple[web.AppRunner, str]:
    async def page(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return web.Response(text=SHELL.format(n=n), content_type="text/html")

    async def json_data(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return web.Response(text=json.dumps(data(n, total)), content_type="application/json")

    app = web.Application()
    app.router.add_get("/page/{n}", page)
    app.router.add_get("/data/{n}.json", json_data)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def chromium_memory(marker: str) -> tuple[int, int, int]:
    """(processes, sum of RSS, sum of PSS) in bytes of the Chromium processes whose command line names `marker`."""
    count = rss = pss = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            if marker.encode() not in cmdline or b"chrom" not in cmdline:
                continue
            with open(f"/proc/{entry}/smaps_rollup") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        count += 1
        rss += int(fields.get("Rss", "0 kB").split()[0]) * 1024
        pss += int(fields.get("Pss", "0 kB").split()[0]) * 1024
    return count, rss, pss


def make_config(out: Path, mode: str, render_pages: int, wait: str = "networkidle") -> Config:
    # `wait = "load"` would read the DOM before the script's data came: wait for the network to settle
    return Config(
        fetch=FetchConfig(obey_robots=False, per_host=16, concurrency=32),
        parse=ParseConfig(workers=1),
        output=OutputConfig(dir=str(out)),
        crawl=CrawlConfig(),
        render=RenderConfig(mode=mode, pages=render_pages, wait=wait),
    )


async def crawl(config: Config, seeds: list[str]) -> tuple[int, int, float]:
    """(records, rendered records, seconds)."""
    started = time.monotonic()
    records = rendered = 0
    async with Scraper(config) as s:
        async for page in s.crawl(seeds):
            records += 1
            rendered += page.rendered
    return records, rendered, time.monotonic() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=300, help="pages crawled plain and rendered")
    parser.add_argument("--memory-pages", type=int, default=1000, help="pages of the rendered crawl sampled")
    parser.add_argument("--render-pages", type=int, default=4, help="[render] pages")
    args = parser.parse_args()

    marker = tempfile.mkdtemp(prefix="scraper-bench-render-", dir="/tmp")
    tempfile.tempdir = tempfile.gettempdir()  # this process keeps its own (the parse pool's files)...
    os.environ["TMPDIR"] = marker  # ...the browsers' profiles go here: how their processes are found
    total = args.pages + args.memory_pages
    runner, base = await start_site(total)
    out = Path(marker) / "out"
    try:
        seeds = [f"{base}/page/{n}" for n in range(args.pages)]
        if args.pages:
            await rate(seeds, out, args.render_pages)
        if args.memory_pages:
            await memory([f"{base}/page/{n}" for n in range(args.pages, total)], out, args.render_pages, marker)
    finally:
        await runner.cleanup()
        shutil.rmtree(marker, ignore_errors=True)


async def rate(seeds: list[str], out: Path, render_pages: int) -> None:
    """Pages/s of one site crawled plain and rendered."""
    plain_config = make_config(out, "never", render_pages)
    rendered_config = make_config(out, "always", render_pages)
    await crawl(plain_config, seeds[:20])  # warm up: the parse processes, the server
    n_plain, _, t_plain = await crawl(plain_config, seeds)
    n_rendered, n_did, t_rendered = await crawl(rendered_config, seeds)
    plain_rate, rendered_rate = n_plain / t_plain, n_rendered / t_rendered
    print(f"plain:    {n_plain} pages in {t_plain:.2f} s = {plain_rate:.1f} pages/s")
    print(f"rendered: {n_rendered} pages ({n_did} rendered, [render] pages = {render_pages}, "
          f"wait = networkidle) in {t_rendered:.2f} s = {rendered_rate:.2f} pages/s")
    print(f"ratio:    plain / rendered = {plain_rate / rendered_rate:.1f}", flush=True)


async def memory(seeds: list[str], out: Path, render_pages: int, marker: str) -> None:
    """The memory of the run's Chromium processes, sampled over a long rendered crawl."""
    config = make_config(out, "always", render_pages, wait="load")
    samples: list[tuple[int, int, int, int]] = []  # (pages done, processes, rss, pss)
    done = 0

    async def sample() -> None:
        while True:
            samples.append((done, *chromium_memory(marker)))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    async with Scraper(config) as s:
        async for page in s.crawl(seeds):
            done += 1
            assert page.rendered, page.error
    elapsed = time.monotonic() - started
    sampler.cancel()
    print(f"memory:   {done} pages rendered in {elapsed:.1f} s ({done / elapsed:.2f} pages/s), {len(samples)} samples")
    print("  pages done   processes   RSS sum (MB)   PSS sum (MB)   (median of the samples in each tenth)")
    step = max(1, len(seeds) // 10)
    for lo in range(0, len(seeds), step):
        part = [s for s in samples if lo <= s[0] < lo + step and s[1] > 0]
        if not part:
            continue
        procs, rss, pss = (statistics.median(s[i] for s in part) for i in (1, 2, 3))
        print(f"  {lo:5d}-{lo + step - 1:<5d} {procs:10.0f} {rss / 1e6:14.0f} {pss / 1e6:14.0f}")
    busy = [s for s in samples if s[1] > 0]
    if busy:
        peak_rss, peak_pss = max(s[2] for s in busy) / 1e6, max(s[3] for s in busy) / 1e6
        print(f"  peak: RSS sum {peak_rss:.0f} MB, PSS sum {peak_pss:.0f} MB, {max(s[1] for s in busy)} processes")
    print(f"  after the crawl: {chromium_memory(marker)[0]} Chromium processes left", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
