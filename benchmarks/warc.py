"""What `[output] warc` costs, and how fast `reparse` is, on the benchmark site.

    python -m benchmarks.warc [--pages 5000] [--runs 1] [--results benchmarks/results-warc.json]

Against the static server of `benchmarks.run` (nginx when installed), on loopback:

- plain    our CLI on the site as a URL list (the `list` scenario's config)
- warc     the same with `[output] warc = true`
- reparse  `python -m scraper reparse` of the warc run's output, with the same config
- fields   the same reparse with `[parse.fields]` set (h1, every link's href): the
           usual reason to reparse, and the dearer parse (a BeautifulSoup tree)

plain and warc alternate (`--runs N` pairs), so a change in the machine's load
hits both. Figures: wall s and pages/s (records / wall, start-up included), CPU
ms/page (the whole process tree), warc/plain ratio of pages/s, and the archive's
size against the body bytes fetched (stats.json `bytes`: bodies after decoding;
the static site is not compressed on the wire).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import servers
from .run import LIST_CONCURRENCY, measure
from .site import ensure_site, write_urls

FIELDS = '\n[parse.fields]\nh1 = "h1"\nlinks = { selector = "a", attr = "href", all = true }\n'


def _config(warc: bool, fields: bool = False) -> str:
    text = (f"[fetch]\nconcurrency = {LIST_CONCURRENCY}\nper_host = {LIST_CONCURRENCY}\nobey_robots = false\n"
            "[retry]\nattempts = 1\n")
    if warc:
        text += "[output]\nwarc = true\n"
    return text + (FIELDS if fields else "")


def _run(name: str, args: list[str], workdir: Path, out: Path, timeout: float) -> dict[str, Any]:
    m = measure("scraper", args, workdir=workdir, timeout=timeout)
    stats = json.loads((out / "stats.json").read_text()) if (out / "stats.json").exists() else {}
    pages = stats.get("pages", 0)
    result = {
        "run": name,
        "exit": m.returncode,
        "wall_s": round(m.wall_s, 3),
        "pages": pages,
        "pages_per_s": round(pages / m.wall_s, 1) if m.wall_s else None,
        "cpu_ms_per_page": round(1000 * m.cpu_s / pages, 2) if pages else None,
        "body_bytes": stats.get("bytes"),
        "loop_lag_p99_ms": stats.get("loop_lag_p99_ms"),
    }
    archive = out / "pages.warc.gz"
    if archive.exists():
        result["archive_bytes"] = archive.stat().st_size
    print(f"{name:8} {result['wall_s']:7.2f} s  {result['pages_per_s'] or 0:7.1f} pages/s  "
          f"{result['cpu_ms_per_page'] or 0:6.2f} CPU ms/page", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.warc", description=__doc__.split("\n\n")[0])
    p.add_argument("--pages", type=int, default=5000)
    p.add_argument("--runs", type=int, default=1, help="plain/warc pairs (default 1)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--no-nginx", action="store_true")
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results-warc.json")
    args = p.parse_args(argv)

    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.2f} before the run; figures will be noisy", file=sys.stderr)
    site = ensure_site(Path(tempfile.gettempdir()) / "scraper-bench-sites" / f"n{args.pages}-s0", args.pages, 0)
    workdir = Path(tempfile.mkdtemp(prefix="scraper-bench-warc-"))
    runs: list[dict[str, Any]] = []
    try:
        with servers.start_static(site.root, use_nginx=not args.no_nginx) as static:
            urls = write_urls(workdir / "urls.txt", static.base_url, site.n_pages)
            for name, warc, fields in (("plain", False, False), ("warc", True, False), ("fields", True, True)):
                (workdir / f"{name}.toml").write_text(_config(warc, fields))
            for _ in range(args.runs):
                for name in ("plain", "warc"):
                    out = workdir / name / "out"
                    cmd = [str(urls), "--output", str(out), "--overwrite", "-q",
                           "--config", str(workdir / f"{name}.toml")]
                    runs.append(_run(name, cmd, workdir / name, out, args.timeout))
        # the site is down from here on: reparse needs only the archive
        src = workdir / "warc" / "out"
        for name, config in (("reparse", "warc"), ("fields", "fields")):
            out = workdir / name / "out"
            cmd = ["reparse", str(src), "--output", str(out), "--overwrite", "-q",
                   "--config", str(workdir / f"{config}.toml")]
            runs.append(_run(name, cmd, workdir / name, out, args.timeout))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["run"] == name)

    warc = [r for r in runs if r["run"] == "warc"][-1]
    summary = {
        "pages": site.n_pages,
        "load_average_at_start": round(load, 2),
        "warc_over_plain_pages_per_s": round(median("warc", "pages_per_s") / median("plain", "pages_per_s"), 3),
        "archive_bytes": warc["archive_bytes"],
        "body_bytes": warc["body_bytes"],
        "archive_over_body_bytes": round(warc["archive_bytes"] / warc["body_bytes"], 3),
        "reparse_pages_per_s": median("reparse", "pages_per_s"),
        "reparse_fields_pages_per_s": median("fields", "pages_per_s"),
    }
    print(json.dumps(summary, indent=2))
    args.results.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
