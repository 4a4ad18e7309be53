"""What `[parse] markdown = true` costs a crawl: the same real site, markdown off and on.

    python -m benchmarks.markdown_crawl [--docs DIR] [--rounds N] [--no-nginx]

Serves the Python 3.11 documentation (Debian's python3.11-doc) on 127.0.0.1 and
crawls it from /index.html with the CLI (`--depth 1000`, concurrency 64, robots
off), alternating off and on for N rounds (default 3) in one run of this script,
each run measured as `benchmarks.run` measures ours (whole process tree: wall,
CPU of the parse workers included). Prints each run and the medians, and the
ratio on/off of pages/s (the target: on keeps at least half of off's pages/s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from .run import measure
from .servers import start_static

DOCS = Path("/usr/share/doc/python3.11/html")
CONFIG = """[fetch]
concurrency = 64
per_host = 64
obey_robots = false
[retry]
attempts = 1
[parse]
markdown = {markdown}
"""


def crawl(base: str, work: Path, markdown: bool, timeout: float) -> dict[str, float]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "urls.txt").write_text(base + "/index.html\n")
    (work / "config.toml").write_text(CONFIG.format(markdown=str(markdown).lower()))
    m = measure(
        "scraper",
        ["urls.txt", "--config", "config.toml", "--output", "out", "--overwrite", "-q", "--depth", "1000"],
        workdir=work,
        timeout=timeout,
    )
    if m.returncode != 0 or m.timed_out:
        raise SystemExit(f"the crawl failed ({m.returncode}, timed out: {m.timed_out}): {m.stderr[-2000:]}")
    lines = (work / "out" / "pages.jsonl").read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    md_chars = sum(len(r.get("markdown") or "") for r in records)
    return {
        "pages": len(records),
        "ok": sum(r["ok"] for r in records),
        "wall_s": m.wall_s,
        "pages_per_s": len(records) / m.wall_s,
        "cpu_ms_per_page": 1000 * m.cpu_s / len(records),
        "markdown_mb": md_chars / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=Path, default=DOCS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--no-nginx", action="store_true")
    args = ap.parse_args(argv)
    if not (args.docs / "index.html").is_file():
        print(f"no {args.docs}/index.html (apt-get install python3.11-doc)", file=sys.stderr)
        return 2
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    with start_static(args.docs, use_nginx=not args.no_nginx) as server, tempfile.TemporaryDirectory() as tmp:
        print(f"server: {server.kind} at {server.base_url}, serving {args.docs}")
        for i in range(args.rounds):
            for markdown in (False, True):
                r = crawl(server.base_url, Path(tmp) / f"{i}-{markdown}", markdown, args.timeout)
                runs[markdown].append(r)
                print(f"round {i + 1} markdown={'on ' if markdown else 'off'} {r['pages']} pages ({r['ok']} ok) "
                      f"{r['wall_s']:.2f} s  {r['pages_per_s']:.0f} pages/s  {r['cpu_ms_per_page']:.1f} CPU ms/page  "
                      f"{r['markdown_mb']:.1f} MB of Markdown", flush=True)
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("pages_per_s", "cpu_ms_per_page", "wall_s")}
           for k, v in runs.items()}
    print("\n| markdown | pages/s (median) | wall s | CPU ms/page |\n|---|---|---|---|")
    for k in (False, True):
        print(f"| {'on' if k else 'off'} | {med[k]['pages_per_s']:.0f} | {med[k]['wall_s']:.2f} "
              f"| {med[k]['cpu_ms_per_page']:.1f} |")
    ratio = med[True]["pages_per_s"] / med[False]["pages_per_s"]
    print(f"\non/off pages/s: {ratio:.2f} (cost {1 / ratio:.2f}x; target at most 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
