"""The benchmark driver: our CLI against a bare aiohttp loop and Scrapy, on loopback.

    python -m benchmarks.run [--pages 5000] [--quick] [--only list,crawl,...] [--no-scrapy]

Scenarios (all against servers on 127.0.0.1, see `servers`):

- list     the generated site as a URL list, concurrency 64
- crawl    the same site crawled from /index.html with a large depth
- latency  URLs on a server that answers each after 200 ms, concurrency 100:
           the server-observed span and the whole wall time against the ideal n*D/C
- fields   `list` with `[parse.fields]` set (CSS selectors: a text and an attribute list)
- bigfile  a 2,000,000-line urls.txt with `--max-pages 1000`: wall time and memory
- docs     the Python 3.11 documentation (Debian's python3.11-doc, real pages) crawled from
           /index.html: ours against Scrapy (no bare loop: the pages are not known beforehand)

Every tool runs as a subprocess of this driver, started the same way: a few
lines of bootstrap (`_BOOT`) run the module exactly as `python -m` would
(`runpy.run_module(..., alter_sys=True)`) and, at exit, write the process's
VmHWM (peak resident memory) to a file. The driver reaps the child with
`os.wait4`, whose rusage is the CPU time of the child and every descendant it
waited for. The driver is also a child subreaper (Linux prctl), so processes
that outlive the child in its process group (a multiprocessing forkserver and
the parse workers it forked) are reaped by the driver and their CPU counted.

Figures for each run:
- wall s        from spawn to exit, interpreter start-up included
- pages/s       records written / wall
- CPU ms/page   (user + sys of the whole process tree, parse workers included) / records
- peak RSS MB   VmHWM of the main process, read by itself at exit (or, when it
                exits without running atexit, the last value polled every 50 ms)
- tree RSS MB   wait4's ru_maxrss: the largest peak of any one process in the tree
- loop lag p99  ours: `loop_lag_p99_ms` from DIR/stats.json when present;
                bare and Scrapy: a 50 ms timer's lateness, sampled in-process
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import servers
from .site import SiteInfo, ensure_site, write_urls

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
SCENARIOS = ("list", "crawl", "latency", "fields", "bigfile", "docs")
TOOLS = ("ours", "bare", "scrapy")

LIST_CONCURRENCY = 64
LATENCY_CONCURRENCY = 100
LATENCY_DELAY_MS = 200
CRAWL_DEPTH = 1000  # "large": the site's real depth is much smaller
BIGFILE_LINES = 2_000_000
BIGFILE_MAX_PAGES = 1000
DOCS = Path("/usr/share/doc/python3.11/html")  # Debian's python3.11-doc

# Runs `python -m MODULE ARGS...` in this very process, and records VmHWM at exit.
_BOOT = """\
import atexit, os, runpy, sys
_hwm_path, _module, _pid = sys.argv[1], sys.argv[2], os.getpid()
def _record_hwm():
    if os.getpid() != _pid:  # a forked child that ran atexit
        return
    try:
        with open("/proc/self/status") as f:
            kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
        with open(_hwm_path, "w") as f:
            f.write(kb)
    except (OSError, StopIteration):
        pass
atexit.register(_record_hwm)
sys.argv = [_module, *sys.argv[3:]]
runpy.run_module(_module, run_name="__main__", alter_sys=True)
"""


# --- measuring one subprocess ------------------------------------------------------


@dataclass
class Measured:
    """How one subprocess ran."""

    returncode: int
    wall_s: float
    cpu_s: float
    rss_peak_mb: float | None
    rss_source: str  # "exit" (read by the process at exit), "polled", or "none"
    rss_tree_max_mb: float
    timed_out: bool
    stdout: str
    stderr: str


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def measure(module: str, args: Sequence[str], *, workdir: Path, timeout: float) -> Measured:
    """Run `python -m module args...` in `workdir` and measure it (see the module doc)."""
    workdir.mkdir(parents=True, exist_ok=True)
    _become_subreaper()
    hwm_file = workdir / "vmhwm.kb"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    cmd = [sys.executable, "-c", _BOOT, str(hwm_file), module, *args]
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    polled: list[int] = []
    timed_out = threading.Event()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        # Its own session: a timeout or Ctrl-C kills its whole group (the parse pool too).
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.05):
            kb = _vm_hwm_kb(proc.pid)
            if kb is not None:
                polled.append(kb)

    def kill() -> None:
        timed_out.set()
        _kill_group(proc.pid)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)  # blocking: the wall time is exact
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
        done.set()
        cpu = usage.ru_utime + usage.ru_stime
        tree_max_kb = usage.ru_maxrss  # kilobytes on Linux
        # What outlived the main process (a forkserver and its parse workers) is
        # ours to reap, as subreaper: its CPU time belongs to the run too.
        for rest in _reap_group(proc.pid, grace=10.0):
            cpu += rest.ru_utime + rest.ru_stime
            tree_max_kb = max(tree_max_kb, rest.ru_maxrss)
    except BaseException:
        _kill_group(proc.pid)
        _reap_group(proc.pid, grace=0.0)
        raise
    finally:
        timer.cancel()
        done.set()
    poller.join()

    rss_source, rss_kb = "none", None
    if hwm_file.exists() and hwm_file.read_text().strip():
        rss_source, rss_kb = "exit", int(hwm_file.read_text())
    elif polled:
        rss_source, rss_kb = "polled", max(polled)
    return Measured(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=cpu,
        rss_peak_mb=rss_kb / 1024 if rss_kb is not None else None,
        rss_source=rss_source,
        rss_tree_max_mb=tree_max_kb / 1024,
        timed_out=timed_out.is_set(),
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Adopt our children's orphans (Linux), so their rusage reaches us when we reap them.

    A multiprocessing forkserver is started by the scraper but never waited
    for: it exits after the scraper, and its CPU time (its parse workers')
    would otherwise go to init.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _group_members(pgid: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of every process in process group `pgid`, zombies included."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ...
            members.append((int(entry), int(fields[1])))
    return members


def _reap_group(pgid: int, grace: float) -> list[resource.struct_rusage]:
    """Wait for what is left of a run's process group; kill it after `grace` seconds.

    Only processes of that group whose parent is this driver are reaped: the
    servers, in sessions of their own, are never touched.
    """
    usages: list[resource.struct_rusage] = []
    me = os.getpid()
    deadline = time.monotonic() + grace
    killed_at: float | None = None
    while members := _group_members(pgid):
        for pid, ppid in members:
            if ppid == me:
                try:
                    reaped, _, usage = os.wait4(pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if reaped:
                    usages.append(usage)
        now = time.monotonic()
        if killed_at is None and now >= deadline:
            _kill_group(pgid)
            killed_at = now
        elif killed_at is not None and now - killed_at > 10:
            break  # unkillable or not ours to reap: give up rather than hang
        time.sleep(0.01)
    return usages


# --- results -----------------------------------------------------------------------


@dataclass
class Run:
    """One tool on one scenario: the figures the table and results.json show."""

    tool: str
    status: str  # "ok", "failed", "timeout", "skipped"
    note: str = ""
    records: int | None = None
    ok_pages: int | None = None
    wall_s: float | None = None
    pages_per_s: float | None = None
    cpu_s: float | None = None
    cpu_ms_per_page: float | None = None
    rss_peak_mb: float | None = None
    rss_source: str | None = None
    rss_tree_max_mb: float | None = None
    loop_lag_p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)

    @classmethod
    def skipped(cls, tool: str, why: str) -> Run:
        return cls(tool, "skipped", why)

    @classmethod
    def from_measured(cls, tool: str, m: Measured, records: int, ok_pages: int, command: list[str]) -> Run:
        status = "timeout" if m.timed_out else "ok" if m.returncode == 0 else "failed"
        note = ""
        if status != "ok":
            note = f"exit status {m.returncode}: " + _tail(m.stderr or m.stdout)
        return cls(
            tool,
            status,
            note,
            records=records,
            ok_pages=ok_pages,
            wall_s=m.wall_s,
            pages_per_s=records / m.wall_s if m.wall_s > 0 else None,
            cpu_s=m.cpu_s,
            cpu_ms_per_page=m.cpu_s * 1000 / records if records else None,
            rss_peak_mb=m.rss_peak_mb,
            rss_source=m.rss_source,
            rss_tree_max_mb=m.rss_tree_max_mb,
            command=command,
        )


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


#: Figures compared across tools: (key, label, format).
FIGURES: list[tuple[str, str, str]] = [
    ("records", "records", "{:.0f}"),
    ("ok_pages", "ok pages", "{:.0f}"),
    ("wall_s", "wall s", "{:.2f}"),
    ("pages_per_s", "pages/s", "{:.0f}"),
    ("cpu_ms_per_page", "CPU ms/page", "{:.3f}"),
    ("rss_peak_mb", "peak RSS MB (main)", "{:.1f}"),
    ("rss_tree_max_mb", "peak RSS MB (any proc)", "{:.1f}"),
    ("loop_lag_p99_ms", "loop lag p99 ms", "{:.1f}"),
]
LATENCY_FIGURES: list[tuple[str, str, str]] = [
    ("span_s", "server span s", "{:.2f}"),
    ("span_over_ideal", "span / ideal", "{:.3f}"),
    ("wall_over_ideal", "wall / ideal", "{:.3f}"),
    ("max_in_flight", "max in flight (server)", "{:.0f}"),
    ("requests", "requests (server)", "{:.0f}"),
]
RATIO_KEYS = (
    "wall_s",
    "pages_per_s",
    "cpu_ms_per_page",
    "rss_peak_mb",
    "loop_lag_p99_ms",
    "span_over_ideal",
    "wall_over_ideal",
)


def _value(run: Run, key: str) -> float | None:
    value = getattr(run, key, None) if hasattr(run, key) else run.extra.get(key)
    return float(value) if isinstance(value, int | float) and run.status != "skipped" else None


def ratios(runs: dict[str, Run]) -> dict[str, dict[str, float | None]]:
    """ours / bare and ours / scrapy for every figure both sides have."""
    out: dict[str, dict[str, float | None]] = {}
    ours = runs.get("ours")
    for other in ("bare", "scrapy"):
        theirs = runs.get(other)
        row: dict[str, float | None] = {}
        for key in RATIO_KEYS:
            a = _value(ours, key) if ours else None
            b = _value(theirs, key) if theirs else None
            row[key] = a / b if a is not None and b else None
        out[f"ours/{other}"] = row
    return out


# --- the tools ---------------------------------------------------------------------


@dataclass
class Job:
    """What one scenario asks every tool to do."""

    scenario: str
    urls_file: Path
    concurrency: int
    expected: int | None  # records a correct run writes (None: not known beforehand)
    crawl: bool = False
    fields: bool = False
    max_pages: int = 0
    bare_urls_file: Path | None = None  # for a crawl: the same pages as a list
    tools: tuple[str, ...] = TOOLS  # those that run; the others are reported as skipped


@dataclass
class Context:
    workdir: Path
    timeout: float
    ours_ready: bool
    ours_why: str
    scrapy_ready: bool
    scrapy_why: str


def _count_jsonl(path: Path) -> tuple[int, int]:
    """(records, records with ok true) of a JSON-lines file; a torn line counts as a record."""
    records = ok = 0
    try:
        with path.open("rb") as f:
            for line in f:
                if not line.strip():
                    continue
                records += 1
                try:
                    ok += json.loads(line).get("ok") is True
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return records, ok


def _config_toml(job: Job) -> str:
    lines = [
        "# written by benchmarks/run.py",
        "[fetch]",
        f"concurrency = {job.concurrency}",
        f"per_host = {job.concurrency}  # one host: the global limit is the only one",
        "obey_robots = false",
        "",
        "[retry]",
        "attempts = 1",
    ]
    if job.fields:
        lines += [
            "",
            "[parse.fields]",
            'h1 = "h1"',
            'links = { selector = "a", attr = "href", all = true }',
        ]
    return "\n".join(lines) + "\n"


def run_ours(job: Job, ctx: Context) -> Run:
    if not ctx.ours_ready:
        return Run.skipped("ours", ctx.ours_why)
    workdir = ctx.workdir / job.scenario / "ours"
    out = workdir / "out"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.toml"
    config.write_text(_config_toml(job))
    args = [str(job.urls_file), "--output", str(out), "--overwrite", "-q", "--config", str(config)]
    if job.crawl:
        args += ["--depth", str(CRAWL_DEPTH)]
    if job.max_pages:
        args += ["--max-pages", str(job.max_pages)]
    m = measure("scraper", args, workdir=workdir, timeout=ctx.timeout)
    records, ok = _count_jsonl(out / "pages.jsonl")
    run = Run.from_measured("ours", m, records, ok, ["python", "-m", "scraper", *args])
    try:
        stats = json.loads((out / "stats.json").read_text())
        lag = stats.get("loop_lag_p99_ms")
        run.loop_lag_p99_ms = float(lag) if isinstance(lag, int | float) else None
        run.extra["stats_pages_per_s"] = stats.get("pages_per_s")
    except (OSError, ValueError, AttributeError):
        if run.status == "ok":
            run.note = "no readable stats.json"
    return run


def run_bare(job: Job, ctx: Context) -> Run:
    workdir = ctx.workdir / job.scenario / "bare"
    urls = job.bare_urls_file or job.urls_file
    args = [str(urls), "--concurrency", str(job.concurrency)]
    if job.max_pages:
        args += ["--limit", str(job.max_pages)]
    m = measure("benchmarks.bare", args, workdir=workdir, timeout=ctx.timeout)
    try:
        result = json.loads(m.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = {}
    run = Run.from_measured(
        "bare",
        m,
        int(result.get("pages", 0)),
        int(result.get("ok", 0)),
        ["python", "-m", "benchmarks.bare", *args],
    )
    run.loop_lag_p99_ms = result.get("loop_lag_p99_ms")
    run.extra["inner_pages_per_s"] = result.get("pages_per_s")
    if job.bare_urls_file:
        run.note = "fetches the crawl's pages as a list (no parsing, no link following)"
    return run


def run_scrapy(job: Job, ctx: Context) -> Run:
    if not ctx.scrapy_ready:
        return Run.skipped("scrapy", ctx.scrapy_why)
    workdir = ctx.workdir / job.scenario / "scrapy"
    workdir.mkdir(parents=True, exist_ok=True)
    out, lag_file = workdir / "items.jsonl", workdir / "lag.json"
    settings = {
        "CONCURRENT_REQUESTS": job.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": job.concurrency,  # as our per_host
        "ROBOTSTXT_OBEY": False,
        "AUTOTHROTTLE_ENABLED": False,
        "RETRY_ENABLED": False,  # as [retry] attempts = 1
        "COOKIES_ENABLED": False,  # our runs keep no cookies that matter; also no PSL lookups
        "TELNETCONSOLE_ENABLED": False,
        "DOWNLOAD_TIMEOUT": 30,
        "LOG_LEVEL": "WARNING",
    }
    if job.crawl:
        settings["DEPTH_LIMIT"] = CRAWL_DEPTH
    if job.max_pages:
        settings["CLOSESPIDER_PAGECOUNT"] = job.max_pages
    args = [
        "runspider",
        str(BENCH_DIR / "scrapy_spider.py"),
        "-a",
        f"urls={job.urls_file}",
        "-a",
        f"mode={'crawl' if job.crawl else 'list'}",
        "-a",
        f"fields={int(job.fields)}",
        "-a",
        f"lag_file={lag_file}",
        "-O",
        str(out),
    ]
    for key, value in settings.items():
        args += ["-s", f"{key}={value}"]
    m = measure("scrapy", args, workdir=workdir, timeout=ctx.timeout)
    records, ok = _count_jsonl(out)
    run = Run.from_measured("scrapy", m, records, ok, ["python", "-m", "scrapy", *args])
    try:
        run.loop_lag_p99_ms = json.loads(lag_file.read_text()).get("loop_lag_p99_ms")
    except (OSError, ValueError):
        pass
    if job.max_pages:
        run.note = "CLOSESPIDER_PAGECOUNT stops after the requests in flight finish"
    return run


RUNNERS: dict[str, Callable[[Job, Context], Run]] = {
    "ours": run_ours,
    "bare": run_bare,
    "scrapy": run_scrapy,
}


def run_job(
    job: Job, ctx: Context, before: Callable[[], None] | None = None, after: Callable[[Run], None] | None = None
) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    for tool in TOOLS:
        if before:
            before()
        print(f"  {job.scenario}: {tool} ...", end="", flush=True, file=sys.stderr)
        run = RUNNERS[tool](job, ctx) if tool in job.tools else Run.skipped(tool, "not run in this scenario")
        if after and run.status != "skipped":
            after(run)
        if job.expected is not None and run.status in ("ok", "skipped") and run.records not in (None, job.expected):
            run.note = (run.note + "; " if run.note else "") + (f"{run.records} records, expected {job.expected}")
        wall = f" {run.wall_s:.2f} s" if run.wall_s is not None else ""
        print(f" {run.status}{wall}", file=sys.stderr)
        runs[tool] = run
    return runs


# --- scenarios ---------------------------------------------------------------------


@dataclass
class Plan:
    pages: int
    latency_urls: int
    seed: int
    only: tuple[str, ...]


def run_scenarios(plan: Plan, site: SiteInfo, ctx: Context, use_nginx: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"scenarios": {}}
    with ExitStack() as stack:
        static = stack.enter_context(servers.start_static(site.root, use_nginx=use_nginx))
        results["server"] = {"static": static.kind, **static.info}
        print(f"static server: {static.kind} at {static.base_url}", file=sys.stderr)
        files = ctx.workdir / "urls"
        files.mkdir(parents=True, exist_ok=True)
        site_urls = write_urls(files / "site.txt", static.base_url, site.n_pages)

        def add(name: str, description: str, job: Job, runs: dict[str, Run], params: dict[str, Any]) -> None:
            results["scenarios"][name] = {
                "description": description,
                "params": {"concurrency": job.concurrency, "expected_records": job.expected, **params},
                "runs": {tool: asdict(run) for tool, run in runs.items()},
                "ratios": ratios(runs),
            }

        if "list" in plan.only:
            job = Job("list", site_urls, LIST_CONCURRENCY, site.n_pages)
            add("list", f"{site.n_pages} pages as a URL list", job, run_job(job, ctx), {"pages": site.n_pages})

        if "crawl" in plan.only:
            seed_file = files / "seed.txt"
            seed_file.write_text(f"{static.base_url}/index.html\n")
            job = Job("crawl", seed_file, LIST_CONCURRENCY, site.n_pages, crawl=True, bare_urls_file=site_urls)
            add(
                "crawl",
                f"crawl of {site.n_pages} pages from /index.html",
                job,
                run_job(job, ctx),
                {"pages": site.n_pages, "depth": CRAWL_DEPTH, "site_depth": site.max_depth},
            )

        if "latency" in plan.only:
            latency = stack.enter_context(servers.start_latency(LATENCY_DELAY_MS))
            results["server"]["latency"] = latency.kind
            n, d, c = plan.latency_urls, LATENCY_DELAY_MS / 1000, LATENCY_CONCURRENCY
            ideal = n * d / c
            lat_urls = files / "latency.txt"
            lat_urls.write_text("".join(f"{latency.base_url}/l/{i}.html\n" for i in range(n)))

            def observe(run: Run) -> None:
                stats = servers.latency_stats(latency.base_url)
                run.extra.update(
                    span_s=stats["span_s"],
                    span_over_ideal=stats["span_s"] / ideal if stats["span_s"] else None,
                    wall_over_ideal=run.wall_s / ideal if run.wall_s else None,
                    max_in_flight=stats["max_in_flight"],
                    requests=stats["requests"],
                )

            job = Job("latency", lat_urls, c, n)
            runs = run_job(job, ctx, before=lambda: servers.reset_latency_stats(latency.base_url), after=observe)
            add(
                "latency",
                f"{n} URLs answered after {LATENCY_DELAY_MS} ms",
                job,
                runs,
                {"urls": n, "delay_ms": LATENCY_DELAY_MS, "ideal_s": ideal},
            )

        if "fields" in plan.only:
            job = Job("fields", site_urls, LIST_CONCURRENCY, site.n_pages, fields=True)
            add(
                "fields",
                f"{site.n_pages} pages as a list, with [parse.fields]",
                job,
                run_job(job, ctx),
                {"pages": site.n_pages, "fields": {"h1": "h1", "links": "a[href], all"}},
            )

        if "docs" in plan.only and (DOCS / "index.html").is_file():
            docs = stack.enter_context(servers.start_static(DOCS, use_nginx=use_nginx))
            results["server"]["docs"] = docs.kind
            docs_seed = files / "docs-seed.txt"
            docs_seed.write_text(f"{docs.base_url}/index.html\n")
            job = Job("docs", docs_seed, LIST_CONCURRENCY, None, crawl=True, tools=("ours", "scrapy"))
            add("docs", f"crawl of the Python 3.11 docs ({DOCS}) from /index.html", job, run_job(job, ctx),
                {"docs": str(DOCS), "depth": CRAWL_DEPTH})
        elif "docs" in plan.only:
            print(f"docs: skipped, no {DOCS}/index.html (apt-get install python3.11-doc)", file=sys.stderr)

        if "bigfile" in plan.only:
            big = write_urls(files / "big.txt", static.base_url, site.n_pages, lines=BIGFILE_LINES, unique=True)
            job = Job("bigfile", big, LIST_CONCURRENCY, BIGFILE_MAX_PAGES, max_pages=BIGFILE_MAX_PAGES)
            add(
                "bigfile",
                f"{BIGFILE_LINES:,}-line urls.txt, --max-pages {BIGFILE_MAX_PAGES}",
                job,
                run_job(job, ctx),
                {
                    "lines": BIGFILE_LINES,
                    "max_pages": BIGFILE_MAX_PAGES,
                    "file_mb": round(big.stat().st_size / 2**20, 1),
                },
            )
    return results


# --- output ------------------------------------------------------------------------


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "n/a"
    return spec.format(value)


def format_table(results: dict[str, Any]) -> str:
    meta, server = results["meta"], results.get("server", {})
    static = server.get("static", "?") + (f" {server['version']}" if server.get("version") else "")
    lines: list[str] = [
        f"site: {meta['pages']} pages ({meta['site_bytes'] / 2**20:.0f} MB), static server: {static}"
        + (f", latency server: {server['latency']}" if "latency" in server else ""),
        f"python {meta['python']}, {meta['cpus']} cores, load average at start {meta['load_average_at_start']}",
    ]
    for name, sc in results["scenarios"].items():
        runs: dict[str, dict[str, Any]] = sc["runs"]
        params = sc["params"]
        lines.append("")
        lines.append(f"== {name}: {sc['description']}, concurrency {params['concurrency']} ==")
        header = f"{'':24}" + "".join(f"{t:>11}" for t in TOOLS) + f"{'ours/bare':>12}{'ours/scrapy':>13}"
        lines.append(header)
        figures = FIGURES + (LATENCY_FIGURES if name == "latency" else [])
        for key, label, spec in figures:
            cells = []
            for tool in TOOLS:
                run = runs.get(tool, {})
                value = run.get(key, run.get("extra", {}).get(key))
                cells.append(_fmt(value if run.get("status") != "skipped" else None, spec))
            row = f"{label:24}" + "".join(f"{c:>11}" for c in cells)
            if key in RATIO_KEYS:
                for other, width in (("ours/bare", 12), ("ours/scrapy", 13)):
                    r = sc["ratios"][other].get(key)
                    row += f"{(f'{r:.2f}x' if r is not None else 'n/a'):>{width}}"
            lines.append(row.rstrip())
        if name == "latency":
            lines.append(f"{'ideal s (n*D/C)':24}{params['ideal_s']:>11.2f}")
        for tool in TOOLS:
            run = runs.get(tool, {})
            if run.get("note"):
                note = run["note"].replace("\n", "\n      ")
                lines.append(f"  {tool}: {run['status']}: {note}")
    return "\n".join(lines)


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("aiohttp", "scrapy", "twisted", "lxml", "beautifulsoup4", "scraper"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _check_ours(timeout: float = 60) -> tuple[bool, str]:
    """Whether `python -m scraper --help` works; if not, the reason (its output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    try:
        r = subprocess.run(
            [sys.executable, "-m", "scraper", "--help"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=tempfile.gettempdir(),
        )
    except subprocess.TimeoutExpired:
        return False, f"`python -m scraper --help` did not finish in {timeout} s"
    if r.returncode != 0:
        return False, f"`python -m scraper --help` exited {r.returncode}: {_tail(r.stderr or r.stdout)}"
    return True, ""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--pages", type=int, default=5000, help="pages in the site (default 5000)")
    p.add_argument(
        "--quick", action="store_true", help="500 pages and 200 latency URLs: the whole run in under a minute"
    )
    p.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated scenarios (default: {','.join(SCENARIOS)})"
    )
    p.add_argument("--no-scrapy", action="store_true", help="skip the Scrapy runs")
    p.add_argument("--no-nginx", action="store_true", help="serve the site with aiohttp even if nginx is installed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, help="seconds per run before it is killed (default 300, 90 with --quick)")
    p.add_argument("--site-dir", type=Path, help="where the generated site is cached")
    p.add_argument("--results", type=Path, default=BENCH_DIR / "results.json")
    p.add_argument("--keep", action="store_true", help="keep the runs' temp dir (outputs, logs)")
    args = p.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.only = only
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers and the running child are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pages = 500 if args.quick else args.pages
    plan = Plan(pages=pages, latency_urls=200 if args.quick else 2000, seed=args.seed, only=args.only)
    timeout = args.timeout or (90.0 if args.quick else 300.0)
    site_dir = args.site_dir or Path(tempfile.gettempdir()) / "scraper-bench-sites" / f"n{pages}-s{args.seed}"
    load = os.getloadavg()[0]
    if load > 0.5:
        # 2 cores: another job's load shows up directly in every figure.
        print(f"warning: load average {load:.2f} before the run; figures will be noisy", file=sys.stderr)
    t0 = time.perf_counter()
    site = ensure_site(site_dir, pages, args.seed)
    print(
        f"site: {site.n_pages} pages, {site.total_bytes / 2**20:.0f} MB in {site.root} "
        f"(crawl depth {site.max_depth}; ready in {time.perf_counter() - t0:.1f} s)",
        file=sys.stderr,
    )

    ours_ready, ours_why = _check_ours()
    if not ours_ready:
        print(f"our CLI is not usable, its runs are skipped:\n{ours_why}", file=sys.stderr)
    if args.no_scrapy:
        scrapy_ready, scrapy_why = False, "--no-scrapy"
    elif importlib.util.find_spec("scrapy") is None:
        scrapy_ready, scrapy_why = False, "scrapy is not installed (pip install -e '.[bench]')"
    else:
        scrapy_ready, scrapy_why = True, ""

    workdir = Path(tempfile.mkdtemp(prefix="scraper-bench-run-"))
    ctx = Context(workdir, timeout, ours_ready, ours_why, scrapy_ready, scrapy_why)
    try:
        results = run_scenarios(plan, site, ctx, use_nginx=not args.no_nginx)
    finally:
        if args.keep:
            print(f"outputs and logs kept in {workdir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)

    results = {
        "meta": {
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "pages": pages,
            "latency_urls": plan.latency_urls,
            "seed": args.seed,
            "site_bytes": site.total_bytes,
            "site_depth": site.max_depth,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_start": round(load, 2),
            "versions": _versions(),
            "timeout_s": timeout,
            "ours_skipped": None if ours_ready else ours_why,
        },
        **results,
    }
    print(format_table(results))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
