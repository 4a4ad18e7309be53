"""Frontier memory: main-process bytes per discovered URL, from a real crawl.

A loopback aiohttp server (a subprocess) serves pages of `--links` new links
each; the crawl follows them with `max_pages` = `--pages` + 1, so it fetches
that many pages and holds every other discovered URL in its frontier. The
peak RSS (VmHWM) of the main process, less that of a one-page crawl of the
same site, divided by the URLs discovered, is what the frontier costs per URL.

    python -m benchmarks.frontier                 # 200 pages x 5,000 links: 1,000,000 URLs
    python -m benchmarks.frontier --pages 20      # a quick look
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .run import REPO, measure

_SERVER = """
import sys
from aiohttp import web
links = int(sys.argv[2])
served = 0
async def page(request):
    global served
    served += 1  # every page links to `links` pages no other page links to
    body = "".join(f'<a href="/l/{served}/{j}/article-{j * 7}.html?ref=home">{j}</a>\\n' for j in range(links))
    return web.Response(text=f"<html><head><title>{served}</title></head><body>{body}</body></html>",
                        content_type="text/html")
app = web.Application()
app.router.add_get("/{tail:.*}", page)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _crawl(base: str, max_pages: int, workdir: Path) -> tuple[float, int]:
    workdir.mkdir(parents=True, exist_ok=True)
    urls = workdir / "urls.txt"
    urls.write_text(f"{base}/p/0\n")
    config = workdir / "config.toml"
    config.write_text("[fetch]\nobey_robots = false\nconcurrency = 8\n[parse]\nworkers = 1\n")
    out = workdir / "out"
    m = measure("scraper", [str(urls), "--config", str(config), "--output", str(out), "--overwrite", "-q",
                            "--depth", "1000", "--max-pages", str(max_pages)], workdir=workdir, timeout=600)
    if m.returncode != 0 or m.rss_peak_mb is None:
        raise SystemExit(f"the crawl failed ({m.returncode}): {m.stderr[-500:]}")
    records = sum(1 for _ in (out / "pages.jsonl").open())
    return m.rss_peak_mb, records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.frontier", description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=200, help="pages fetched with links (default 200)")
    p.add_argument("--links", type=int, default=5_000, help="new links on each page (default 5000)")
    args = p.parse_args(argv)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), str(args.links)])
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        with tempfile.TemporaryDirectory(prefix="scraper-frontier-") as tmp:
            one, _ = _crawl(base, 1, Path(tmp) / "one")
            peak, records = _crawl(base, args.pages + 1, Path(tmp) / "many")
    finally:
        server.terminate()
        server.wait()
    discovered = (args.pages + 1) * args.links
    per_url = (peak - one) * 1024 * 1024 / discovered
    result = {"pages": args.pages + 1, "records": records, "urls_discovered": discovered,
              "rss_one_page_mb": round(one, 1), "rss_peak_mb": round(peak, 1), "bytes_per_url": round(per_url, 1),
              "repo": str(REPO)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
