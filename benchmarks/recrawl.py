"""What `--since` saves: a crawl, 10 % of the pages changed, the recrawl; and the index's memory.

    python -m benchmarks.recrawl [--pages 1000] [--changed 0.1] [--records 200000]

1. Generates the benchmark site (`site.py`) into a fresh folder and serves it on
   127.0.0.1 with aiohttp's static handler, which answers `If-None-Match` and
   `If-Modified-Since` with 304 as web servers do (nginx when installed: likewise).
2. Crawls it from `/index.html` with the CLI (`--depth 100`: every page).
3. Changes `--changed` of the pages (a paragraph added: new body, new ETag).
4. Crawls it again with `--since` the first output, and once more without, as the
   reference a nightly job would otherwise pay (each `--repeat` times, alternately;
   the median run is shown).
5. Indexes `--records` synthetic records (about 2 KB each, 30 links, an ETag and
   a Last-Modified, like a real crawl's) under tracemalloc: bytes per record.

Prints one table; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import tracemalloc
from hashlib import sha256
from pathlib import Path
from typing import Any

from benchmarks.run import measure
from benchmarks.servers import start_static
from benchmarks.site import generate, page_path

#: requests in flight to the one host: a loopback site takes more than the polite default of 4
PER_HOST = 16


def crawl(urls: Path, out: Path, *extra: str) -> dict[str, Any]:
    """One CLI crawl: its stats.json, the wall time of the whole command and the CPU time of its
    whole process tree, parse workers included (the driver's `measure`)."""
    args = [str(urls), "--output", str(out), "--depth", "100", "-q", "--per-host", str(PER_HOST), *extra]
    m = measure("scraper", args, workdir=out.with_name(out.name + "-run"), timeout=600)
    if m.returncode != 0:
        raise RuntimeError(f"python -m scraper {' '.join(args)} exited {m.returncode}: {m.stderr[-500:]}")
    stats = json.loads((out / "stats.json").read_text())
    stats["wall_s"], stats["cpu_s"] = round(m.wall_s, 2), round(m.cpu_s, 2)
    return stats


def change(root: Path, n_pages: int, share: float, seed: int = 1) -> int:
    """Add a paragraph to `share` of the pages (never the index); how many changed."""
    rng = random.Random(seed)
    chosen = rng.sample(range(1, n_pages), round(share * n_pages))
    for i in chosen:
        path = root / page_path(i)
        html = path.read_text(encoding="utf-8")
        path.write_text(html.replace("</body>", "<p>Updated since the last crawl.</p></body>", 1), encoding="utf-8")
    return len(chosen)


def index_memory(records: int, folder: Path) -> dict[str, float]:
    """Bytes per record of `EarlierCrawl` over `records` synthetic records, and seconds to read them."""
    from scraper.page import Page
    from scraper.since import EarlierCrawl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "pages.jsonl", "w", encoding="utf-8") as f:
        for i in range(records):
            url = f"https://example.org/section/{i % 97}/article-{i}.html"
            page = Page(
                url=url, final_url=url, status=200, ok=True, content_type="text/html", bytes=30_000,
                title=f"Article {i}", description="What the article is about, in a sentence or two.",
                links=[f"https://example.org/section/{j}/article-{i + j}.html" for j in range(30)],
                etag=f'"{i:x}-5f3e2a1b9c"', last_modified="Tue, 01 Dec 2026 02:46:06 GMT",
                content_hash="sha256:" + sha256(str(i).encode()).hexdigest(),
            )
            f.write(json.dumps(page.to_dict()) + "\n")
    size = (folder / "pages.jsonl").stat().st_size
    started = time.perf_counter()
    EarlierCrawl.read(folder)
    read_s = time.perf_counter() - started
    tracemalloc.start()
    index = EarlierCrawl.read(folder)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(index) == records
    return {
        "records": records,
        "file_bytes_per_record": round(size / records),
        "bytes_per_record": round(held / records, 1),
        "peak_bytes_per_record": round(peak / records, 1),
        "read_s": round(read_s, 2),
        "records_per_s": round(records / read_s),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.recrawl", description=__doc__.split("\n\n")[0])
    p.add_argument("--pages", type=int, default=1000)
    p.add_argument("--changed", type=float, default=0.1, help="share of the pages changed between the crawls")
    p.add_argument("--records", type=int, default=200_000, help="synthetic records for the index's memory")
    p.add_argument("--repeat", type=int, default=3, help="runs of each second crawl (the median is shown)")
    p.add_argument("--no-nginx", action="store_true", help="serve with aiohttp even when nginx is installed")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="scraper-bench-recrawl-") as tmp:
        work = Path(tmp)
        site = work / "site"
        generate(site, args.pages, seed=0)
        with start_static(site, use_nginx=not args.no_nginx) as server:
            urls = work / "urls.txt"
            urls.write_text(f"{server.base_url}/index.html\n")
            first = crawl(urls, work / "first")
            changed = change(site, args.pages, args.changed)
            runs: dict[str, list[dict[str, Any]]] = {"since": [], "full": []}
            for _ in range(args.repeat):  # alternately, so that a busy moment of the machine hits both
                runs["since"].append(crawl(urls, work / "since", "--overwrite", "--since", str(work / "first")))
                runs["full"].append(crawl(urls, work / "full", "--overwrite"))
            since, full = (sorted(runs[k], key=lambda s: s["wall_s"])[len(runs[k]) // 2] for k in ("since", "full"))
            kind = server.kind
        memory = index_memory(args.records, work / "index") if args.records else None

    print(f"site: {args.pages} pages served by {kind}, {changed} changed between the crawls; "
          f"second crawls: median of {args.repeat}")
    print(f"{'crawl':<26}{'pages':>7}{'304':>7}{'body bytes':>13}{'wall s':>9}{'cpu s':>8}"
          f"{'changed':>9}{'unchanged':>10}{'new':>6}")
    for name, s in (("first", first), ("second, --since first", since), ("second, full", full)):
        print(f"{name:<26}{s['pages']:>7}{s['by_status'].get('304', 0):>7}{s['bytes']:>13}"
              f"{s['wall_s']:>9}{s['cpu_s']:>8}"
              f"{s.get('changed', '-'):>9}{s.get('unchanged', '-'):>10}{s.get('new', '-'):>6}")
    print(f"--since: {since['bytes'] / full['bytes']:.1%} of the bytes, {since['wall_s'] / full['wall_s']:.0%} "
          "of the time of a full recrawl")
    if memory:
        print(f"index of the earlier crawl: {memory['bytes_per_record']} bytes per record held "
              f"(peak {memory['peak_bytes_per_record']}), {memory['records']} records of "
              f"{memory['file_bytes_per_record']} bytes read in {memory['read_s']} s "
              f"({memory['records_per_s']} records/s)")


if __name__ == "__main__":
    main()
