"""The crawl report on a large output: wall time and peak memory of `python -m scraper report`.

    python -m benchmarks.report [--records 1000000] [--dir DIR] [--keep] [--csv] [--shards N]

It first writes a synthetic crawl output (deterministic, from a seed): records
shaped like real ones (20 links each, a title and a description, about 2 KB a
line), over 3,000 hosts whose sizes follow a Zipf law (the busiest has tens of
thousands of pages), 6% failures of every kind, response times log-normal per
host, fetched_at spread over three hours, and a stats.json. Then it runs the
report command as a subprocess and reports its wall time (interpreter start-up
included) and peak RSS (the child's VmHWM, from `os.wait4`'s ru_maxrss), and the
report's size. Nothing touches the network.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_KINDS = (("http", 0.45), ("timeout", 0.15), ("connect", 0.1), ("dns", 0.08), ("robots", 0.08),
          ("too_large", 0.04), ("protocol", 0.04), ("tls", 0.03), ("blocked", 0.02), ("invalid_url", 0.01))
_TYPES = (("text/html", 0.9), ("application/pdf", 0.04), ("image/png", 0.03), ("application/json", 0.03))


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    x = rng.random() * sum(w for _, w in table)
    for value, w in table:
        x -= w
        if x <= 0:
            return value
    return table[-1][0]


def generate(out_dir: Path, records: int, *, fmt: str = "jsonl", shards: int = 1, seed: int = 7) -> int:
    """Write a synthetic crawl output of `records` records; returns its size in bytes."""
    rng = random.Random(seed)
    hosts = [f"www.site-{i:04d}.example" for i in range(3000)]
    weights = [1 / (i + 1) ** 1.1 for i in range(len(hosts))]
    base_ms = [math.exp(rng.uniform(3.5, 6.5)) for _ in hosts]  # each host's typical latency
    start = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    span = 3 * 3600
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        sys.path.insert(0, str(ROOT))
        from scraper.page import record_keys
        from scraper.sinks import _cell  # the sink's own cell encoding

        keys = record_keys()
    files = [open(out_dir / (f"pages-w{i}.{fmt}" if shards > 1 else f"pages.{fmt}"), "w", encoding="utf-8",  # noqa: SIM115
                  newline="") for i in range(shards)]
    if fmt == "csv":
        for f in files:
            csv.writer(f, lineterminator="\n").writerow(keys)
    ok = 0
    chosen = rng.choices(range(len(hosts)), weights=weights, k=records)
    for n, h in enumerate(chosen):
        host = hosts[h]
        url = f"https://{host}/section-{n % 97}/item-{n}.html"
        depth = min(5, int(rng.expovariate(0.8)))
        failed = rng.random() < 0.06
        kind = _pick(rng, _KINDS) if failed else None
        never = kind in ("robots", "blocked", "invalid_url", "dns")
        status = None if never or kind in ("timeout", "connect", "tls", "protocol") else 200
        if kind == "http":
            status = rng.choice((404, 404, 404, 500, 503, 403, 410))
        elapsed = 0 if never else int(base_ms[h] * math.exp(rng.gauss(0, 0.7)))
        if kind == "timeout":
            elapsed = 30_000
        ctype = _pick(rng, _TYPES) if status == 200 else None
        size = int(math.exp(rng.gauss(10.2, 1.0))) if status == 200 else 0
        when = start + timedelta(seconds=span * n / records + rng.random())
        record = {
            "url": url if kind != "invalid_url" else f"ftp://{host}/item-{n}",
            "final_url": None if never else url,
            "status": status,
            "ok": status == 200,
            "depth": depth,
            "referrer": None if depth == 0 else f"https://{host}/section-{n % 97}/",
            "fetched_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "elapsed_ms": elapsed,
            "attempts": 0 if never else (3 if kind in ("timeout", "connect") else 1),
            "content_type": ctype,
            "bytes": size,
            "title": f"Item {n} of section {n % 97} | {host}" if ctype == "text/html" else None,
            "description": "A description of moderate length, as a shop or a news site would write it."
            if ctype == "text/html" else None,
            "links": [f"https://{host}/section-{(n + k) % 97}/item-{n + k}.html" for k in range(20)]
            if ctype == "text/html" else [],
            "fields": {},
            "etag": None,
            "last_modified": None,
            "content_hash": ("sha256:" + f"{n:064x}") if status == 200 else None,
            "changed": None,
            "error": None if kind is None else {"kind": kind, "message": f"{kind} on {host} (record {n})"},
        }
        ok += record["ok"]
        f = files[n % shards]
        if fmt == "jsonl":
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            line = io.StringIO()
            csv.writer(line, lineterminator="\n").writerow([_cell(record.get(k)) for k in keys])
            f.write(line.getvalue())
    for f in files:
        f.close()
    stats = {"pages": records, "ok": ok, "failed": records - ok, "by_status": {}, "by_error": {}, "bytes": 0,
             "elapsed_s": float(span), "pages_per_s": records / span,
             "started_at": start.isoformat().replace("+00:00", "Z"),
             "finished_at": (start + timedelta(seconds=span)).isoformat().replace("+00:00", "Z"),
             "interrupted": False, "run_pages": records, "loop_lag_p99_ms": 3.0}
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return sum(p.stat().st_size for p in out_dir.iterdir())


def run_report(out_dir: Path) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, peak RSS MB and report size of `python -m scraper report out_dir`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    begin = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "scraper", "report", str(out_dir)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - begin
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the report exited {proc.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, (out_dir / "report.html").stat().st_size


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--dir", help="where to write the output (default: a temporary folder, removed after)")
    p.add_argument("--csv", action="store_true", help="write the output as CSV instead of JSONL")
    p.add_argument("--shards", type=int, default=1, help="write N shards, as N workers of a shared crawl")
    p.add_argument("--keep", action="store_true", help="keep the output and the report, and say where")
    p.add_argument("--reuse", action="store_true", help="--dir holds an output made before: only time the report")
    args = p.parse_args()
    if args.reuse and not args.dir:
        p.error("--reuse needs --dir")
    out_dir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="scraper-report-bench-"))
    try:
        if args.reuse:
            size = sum(q.stat().st_size for q in out_dir.glob("pages*"))
        else:
            begin = time.perf_counter()
            size = generate(out_dir, args.records, fmt="csv" if args.csv else "jsonl", shards=args.shards)
            print(f"generated {args.records:,} records ({size / 1e6:,.0f} MB) in {time.perf_counter() - begin:.0f} s",
                  file=sys.stderr)
        load = os.getloadavg()[0]
        wall, cpu, rss, html = run_report(out_dir)
        print(json.dumps({"records": args.records, "format": "csv" if args.csv else "jsonl", "shards": args.shards,
                          "output_mb": round(size / 1e6), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                          "peak_rss_mb": round(rss), "report_kb": round(html / 1e3), "load_at_start": round(load, 2)}))
        if args.keep:
            print(f"kept: {out_dir}", file=sys.stderr)
    finally:
        if not args.keep and not args.reuse:
            shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
