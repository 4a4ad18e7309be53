"""The crawl report: real crawls and shard files, rendered by headless Chromium.

The report of a real crawl (three hosts on 127.0.0.x, failures of seven kinds, a
slow page, a title full of markup) is opened in Debian's `chromium --headless`;
the rendered DOM must hold the summary numbers, the tables and the seven charts,
and the file must reference nothing outside itself. `.ci/run` installs chromium.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from aiohttp import web

from scraper.page import Page, PageError
from scraper.report import main as report_main
from scraper.report import write_report
from scraper.report.collect import HOSTS_CAP, TEXT_CAP, TOP, Collector, Sketch, Timeline, iter_records, output_files
from scraper.sinks import Sink
from scraper.stats import Stats
from tests.conftest import ROOT, Result, html, read_jsonl, run_cli

CHARTS = ("timeline", "status", "errors-per-host", "times-per-host", "depth", "content-types", "body-sizes")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SLOW_TITLE = 'Slow <b>bold</b> & "quoted" <script>alert(1)</script>'
BAD_LINE = "<img src=x onerror=alert(1)>"
ODD_TYPE = "application/x-<b>odd</b>$x$"  # markup, and what matplotlib would take for mathtext


# --- helpers -----------------------------------------------------------------------


async def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return Result(proc.returncode or 0, out.decode(), err.decode())


def _chromium_pids(profile: Path) -> list[int]:
    """Processes of the Chromium that uses `profile` (its children name it on their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(profile).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


async def chromium(page: Path, tmp_path: Path, *mode: str) -> str:
    """Run headless Chromium on `page` in `mode` (e.g. --dump-dom); its stdout. Nothing is left running."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it")  # CI never skips silently
        pytest.skip("chromium is not installed")
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-default-apps",
        f"--user-data-dir={profile}", *mode, page.resolve().as_uri(),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        # the browser's own session, then any helper that left it but names our profile
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in _chromium_pids(profile):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.returncode is None:
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def rendered(report: Path, tmp_path: Path) -> Any:
    """The report as Chromium renders it (an lxml tree of the DOM), after a screenshot next to it."""
    png = report.with_suffix(".png")
    await chromium(report, tmp_path, f"--screenshot={png}", "--window-size=1280,4000")
    assert png.stat().st_size > 50_000  # a page with charts, not a blank one
    dom = await chromium(report, tmp_path, "--dump-dom")
    assert "</html>" in dom
    return lxml.html.fromstring(dom)


def by_id(doc: Any, name: str) -> Any:
    found = doc.xpath(f'//*[@id="{name}"]')
    assert len(found) == 1, f"#{name}: {len(found)} elements"
    return found[0]


def table(doc: Any, name: str) -> list[list[str]]:
    return [[cell.text_content().strip() for cell in tr.xpath("./td")] for tr in by_id(doc, name).xpath(".//tbody/tr")]


def assert_self_contained(report: Path, pages: set[str]) -> None:
    """Nothing in the file makes a browser fetch anything; the only links are the crawled pages'."""
    text = report.read_text(encoding="utf-8")
    doc = lxml.html.fromstring(text)
    assert doc.xpath("//script | //link | //img | //iframe | //object | //embed | //video | //audio") == []
    csp = doc.xpath('//meta[@http-equiv="Content-Security-Policy"]/@content')
    assert csp and "default-src 'none'" in csp[0]
    for element in doc.iter():
        for name, value in element.attrib.items():
            if name in ("src", "srcset", "data", "poster", "action", "background", "xlink:href"):
                assert value.startswith("#"), (element.tag, name, value)
            if name == "href":
                assert element.tag == "a", (element.tag, value)
                assert value.startswith("#") or value in pages, value
    # CSS may point only inside the document (the SVGs' clip paths)
    for target in re.findall(r"url\(\s*['\"]?([^'\")]*)", text):
        assert target.startswith("#"), target
    assert "@import" not in text


# --- a real crawl ----------------------------------------------------------------


def closed_port(host: str) -> int:
    """A port on `host` that refuses connections: bound for a moment, then closed."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


async def crawl_site(serve: Any, tmp_path: Path, *, report: bool) -> tuple[Path, Result, list[Any]]:
    """Crawl three loopback hosts with every kind of trouble; the output folder, the CLI's result, the servers."""
    never = asyncio.Event()

    def page(title: str, links: tuple[str, ...] = ()) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=html(title, list(links)), content_type="text/html")
        return handler

    def answer(status: int, body: bytes = b"no", content_type: str = "text/plain", wait: float = 0) -> Any:
        async def handler(request: web.Request) -> web.Response:
            await asyncio.sleep(wait)
            return web.Response(status=status, body=body, content_type=content_type)
        return handler

    async def hang(request: web.Request) -> web.Response:
        await never.wait()  # never answers: the client's timeout ends it
        return web.Response(text="late")

    a = await serve({
        "/": page("A home", ("/a", "/b", "/slow", "/missing", "/broken", "/big", "/doc.pdf", "/odd", "/private/x")),
        "/a": page("A a"),
        "/b": page("A b"),
        "/slow": answer(200, html(SLOW_TITLE).encode(), "text/html", wait=0.5),
        "/missing": answer(404),
        "/broken": answer(500),
        "/big": answer(200, html("big", body="x" * 300_000).encode(), "text/html"),
        "/doc.pdf": answer(200, b"%PDF-1.4 " + b"0" * 5000, "application/pdf"),
        "/odd": answer(200, b"odd", ODD_TYPE),
        "/robots.txt": answer(200, b"User-agent: *\nDisallow: /private\n"),
    }, host="127.0.0.2")
    b = await serve({"/": page("B home", ("/p1", "/p2", "/p3", "/hang")), "/p1": page("B 1"), "/p2": page("B 2"),
                     "/p3": page("B 3"), "/hang": hang}, host="127.0.0.3")
    out = tmp_path / "out"
    urls = tmp_path / "urls.txt"
    refused = f"http://127.0.0.4:{closed_port('127.0.0.4')}/"
    urls.write_text(f"{a.url('/')}\n{b.url('/')}\n{refused}\n{BAD_LINE}\n", encoding="utf-8")
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "[fetch]\ntimeout = 1.5\nconnect_timeout = 1.5\nmax_bytes = 100000\nobey_robots = true\n"
        "[retry]\nattempts = 2\nbackoff = 0.01\nmax_backoff = 0.05\nstatuses = [500]\n"
        "[crawl]\ndepth = 1\n[parse]\nworkers = 1\n"
        f"[output]\ndir = \"{out}\"\nreport = {'true' if report else 'false'}\n",
        encoding="utf-8",
    )
    return out, await cli(str(urls), "--config", str(cfg)), [a, b]


async def test_report_of_a_real_crawl_in_chromium(serve, tmp_path):
    out, result, servers = await crawl_site(serve, tmp_path, report=True)
    assert result.code == 0, result.stderr
    records = read_jsonl(out / "pages.jsonl")
    kinds = Counter(r["error"]["kind"] for r in records if r["error"])
    assert {"http", "too_large", "robots", "timeout", "connect", "invalid_url"} <= set(kinds), kinds
    stats = json.loads((out / "stats.json").read_text())

    # [output] report = true wrote the report at the end of the run
    report = out / "report.html"
    assert report.is_file()
    assert_self_contained(report, {r["url"] for r in records})
    hits = [dict(server.hits) for server in servers]
    doc = await rendered(report, tmp_path)
    assert [server.hits for server in servers] == hits  # viewing the report fetched none of the pages

    pages, ok = len(records), sum(r["ok"] for r in records)
    size = sum(r["bytes"] for r in records)
    assert by_id(doc, "summary-pages").text_content() == f"{pages:,}"
    assert by_id(doc, "summary-ok").text_content() == f"{ok:,}"
    assert by_id(doc, "summary-failed").text_content() == f"{pages - ok:,}"
    assert by_id(doc, "summary-bytes").get("data-value") == str(size)
    assert f"{size:,} bytes" in by_id(doc, "summary-section").text_content()
    assert float(by_id(doc, "summary-elapsed").get("data-value")) == round(stats["elapsed_s"], 3)
    assert float(by_id(doc, "summary-rate").get("data-value")) == round(stats["pages_per_s"], 3)
    assert doc.xpath('//*[@id="summary-changed"]') == []  # no --since: no changed/unchanged/new
    statuses = Counter("none" if r["status"] is None else str(r["status"]) for r in records)
    assert {s: int(n.replace(",", "")) for s, n in table(doc, "status-codes")} == statuses
    assert {k: int(n.replace(",", "")) for k, n in table(doc, "error-kinds")} == kinds

    # seven charts, drawn as inline SVG with their text as text
    for name in CHARTS:
        svgs = by_id(doc, f"chart-{name}").xpath(".//svg")
        assert len(svgs) == 1 and svgs[0].xpath(".//path"), name
    assert "127.0.0.2" in by_id(doc, "chart-errors-per-host").text_content()
    assert "127.0.0.3" in by_id(doc, "chart-times-per-host").text_content()
    assert "application/pdf" in by_id(doc, "chart-content-types").text_content()
    assert ODD_TYPE in by_id(doc, "chart-content-types").text_content()  # drawn as text, as it is

    # the slowest pages: every requested page (fewer than 50), slowest first, ties in record order
    requested = [(i, r) for i, r in enumerate(records) if r["attempts"] > 0]
    expected = [r["url"] for _, r in sorted(requested, key=lambda ir: (-ir[1]["elapsed_ms"], ir[0]))]
    rows = by_id(doc, "slowest").xpath(".//tbody/tr")
    assert [row.xpath(".//td[@class='page']//a")[0].get("href") for row in rows] == expected
    slow = next(r for r in records if r["url"].endswith("/slow"))
    assert slow["elapsed_ms"] >= 500 and slow["title"] == SLOW_TITLE
    slow_row = next(row for row in rows if row.xpath(".//a")[0].get("href") == slow["url"])
    assert slow_row.xpath(".//span[@class='title']")[0].text_content() == SLOW_TITLE  # shown as text
    assert doc.xpath("//b | //script | //img") == []  # ... never as markup

    # failed pages by kind, with their messages
    for kind in kinds:
        section = by_id(doc, f"failed-{kind}")
        failed = [r for r in records if r["error"] and r["error"]["kind"] == kind]
        cells = [[td.text_content() for td in tr.xpath("./td")] for tr in section.xpath(".//tbody/tr")]
        assert [c[1] for c in cells] == [r["url"] for r in failed][:TOP]
        assert [c[2] for c in cells] == [r["error"]["message"] for r in failed][:TOP]
    assert [c[1] for c in table(doc, "failed-invalid_url")] == [BAD_LINE]

    # the command gives the same report anywhere with -o
    again = await cli("report", str(out), "-o", str(tmp_path / "again.html"))
    assert again.code == 0, again.stderr
    assert "written to" in again.stderr and again.stdout == ""
    other = lxml.html.fromstring((tmp_path / "again.html").read_text(encoding="utf-8"))
    for key in ("pages", "ok", "failed", "bytes", "elapsed", "rate"):
        assert by_id(other, f"summary-{key}").get("data-value") == by_id(doc, f"summary-{key}").get("data-value")
    assert len(other.xpath("//svg")) == len(CHARTS)


async def test_report_true_after_an_interrupt(serve, tmp_path):
    arrived = asyncio.Event()
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/hang":
            arrived.set()
            await never.wait()
        return web.Response(text=html(request.path), content_type="text/html")

    site = await serve(handler)
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(site.url(f"/p{i}") + "\n" for i in range(5)) + site.url("/hang") + "\n")
    cfg = tmp_path / "config.toml"
    out = tmp_path / "out"
    cfg.write_text(f'[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n[output]\ndir = "{out}"\nreport = true\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", str(urls), "--config", str(cfg),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SCRAPER_GRACE_S": "0"},
    )
    await asyncio.wait_for(arrived.wait(), 60)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130, err.decode()
    records = read_jsonl(out / "pages.jsonl")
    assert json.loads((out / "stats.json").read_text())["interrupted"] is True
    doc = lxml.html.fromstring((out / "report.html").read_text(encoding="utf-8"))
    assert by_id(doc, "summary-pages").text_content() == str(len(records))
    assert "interrupted" in doc.xpath("//header")[0].text_content()


async def test_report_of_a_recrawl_counts_changed_unchanged_new(serve, tmp_path):
    bodies = {"/a": html("A"), "/b": html("B, first")}

    async def handler(request: web.Request) -> web.Response:
        if request.path not in bodies:
            return web.Response(status=404)
        if request.path == "/a" and request.headers.get("If-None-Match") == '"a1"':
            return web.Response(status=304, headers={"ETag": '"a1"'})
        return web.Response(text=bodies[request.path], content_type="text/html",
                            headers={"ETag": '"a1"'} if request.path == "/a" else {})

    site = await serve(handler)
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{site.url('/a')}\n{site.url('/b')}\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text("[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n")
    first = await cli(str(urls), "--config", str(cfg), "--output", str(tmp_path / "first"))
    assert first.code == 0, first.stderr
    cfg.write_text("[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n[output]\nreport = true\n")
    bodies["/b"] = html("B, second")
    bodies["/c"] = html("C")
    urls.write_text(f"{site.url('/a')}\n{site.url('/b')}\n{site.url('/c')}\n")
    again = await cli(str(urls), "--config", str(cfg), "--output", str(tmp_path / "again"),
                      "--since", str(tmp_path / "first"))
    assert again.code == 0, again.stderr
    doc = lxml.html.fromstring((tmp_path / "again" / "report.html").read_text(encoding="utf-8"))
    assert [by_id(doc, f"summary-{k}").text_content() for k in ("pages", "changed", "unchanged", "new")] == \
        ["3", "1", "1", "1"]
    assert table(doc, "status-codes") == [["200", "2"], ["304", "1"]]


async def test_report_true_with_output_to_stdout_writes_no_file(serve, tmp_path):
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=html("hello"), content_type="text/html")

    site = await serve(hello)
    work = tmp_path / "work"
    work.mkdir()
    (work / "urls.txt").write_text(site.url("/") + "\n")
    (work / "config.toml").write_text("[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n[output]\nreport = true\n")
    result = await run_cli("urls.txt", "--output", "-", cwd=work)
    assert result.code == 0, result.stderr
    assert [json.loads(line)["title"] for line in result.stdout.splitlines()] == ["hello"]
    assert sorted(p.name for p in work.iterdir()) == ["config.toml", "urls.txt"]


# --- a shared crawl's shards ---------------------------------------------------------


def shard_pages(n: int, seed: int) -> list[Page]:
    rng = random.Random(seed)
    pages = []
    for i in range(n):
        host = f"shop-{rng.randrange(4)}.example"
        failed = rng.random() < 0.2
        kind = rng.choice(("timeout", "http", "dns")) if failed else None
        status = 404 if kind == "http" else (None if failed else 200)
        pages.append(Page(
            url=f"https://{host}/item/{seed}-{i}", final_url=f"https://{host}/item/{seed}-{i}", status=status,
            ok=not failed, depth=rng.randrange(3), fetched_at=f"2026-11-30T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
            elapsed_ms=rng.randrange(5, 3000), attempts=1, content_type=None if failed else "text/html",
            bytes=0 if failed else rng.randrange(100, 90_000), title=None if failed else f"Item {i}",
            changed=rng.choice((True, False, None)) if not failed else True,
            error=PageError(kind, f"{kind} for item {i}") if kind else None,
        ))
    return pages


async def write_shards(out: Path, fmt: str) -> list[Page]:
    everything = []
    for worker, (n, seed) in {"w1": (120, 1), "w2": (80, 2)}.items():
        pages = shard_pages(n, seed)
        sink = Sink(out / f"pages-{worker}.{fmt}", fmt)
        await sink.open()
        for p in pages:
            await sink.write(p)
        await sink.close()
        Stats(pages=n, started_at="2026-11-30T10:00:00.000Z", finished_at=f"2026-11-30T10:0{seed}:40.000Z",
              elapsed_s=100.0, run_pages=n, interrupted=False).write(out / f"stats-{worker}.json")
        everything += pages
    # stats of a --since crawl name changed/unchanged/new
    data = json.loads((out / "stats-w1.json").read_text())
    (out / "stats-w1.json").write_text(json.dumps({**data, "changed": 1, "unchanged": 1, "new": 1}))
    with open(out / f"pages-w2.{fmt}", "ab") as f:
        f.write(b'{"url": "https://torn.example/' if fmt == "jsonl" else b'"https://torn.example/",,200')
    return everything


async def test_report_of_csv_shards_in_chromium(tmp_path):
    out = tmp_path / "out"
    pages = await write_shards(out, "csv")
    result = await cli("report", str(out))
    assert result.code == 0, result.stderr
    report = out / "report.html"
    assert_self_contained(report, {p.url for p in pages})
    doc = lxml.html.fromstring(await chromium(report, tmp_path, "--dump-dom"))
    ok = sum(p.ok for p in pages)
    assert by_id(doc, "summary-pages").text_content() == f"{len(pages):,}"  # both shards, no torn line
    assert by_id(doc, "summary-ok").text_content() == f"{ok:,}"
    assert by_id(doc, "summary-failed").text_content() == f"{len(pages) - ok:,}"
    for key, value in (("changed", True), ("unchanged", False), ("new", None)):
        assert by_id(doc, f"summary-{key}").text_content() == str(sum(p.changed is value for p in pages))
    # the workers ran side by side: from the first start to the last finish, 160 s
    assert float(by_id(doc, "summary-elapsed").get("data-value")) == 160.0
    assert float(by_id(doc, "summary-rate").get("data-value")) == round(200 / 160, 3)
    assert "pages-w1.csv, pages-w2.csv" in doc.xpath("//header")[0].text_content()
    assert len(doc.xpath("//figure//svg")) == len(CHARTS)
    assert "shop-0.example" in by_id(doc, "chart-errors-per-host").text_content()


async def test_jsonl_shards_give_the_same_figures_as_csv(tmp_path):
    figures = []
    for fmt in ("jsonl", "csv"):
        out = tmp_path / fmt
        pages = await write_shards(out, fmt)
        c = Collector()
        for path in output_files(out)[0]:
            for record in iter_records(path):
                c.add(record)
        assert c.pages == len(pages) and c.ok == sum(p.ok for p in pages)
        figures.append((c.pages, c.ok, c.bytes, c.changed, c.unchanged, c.new, c.by_status, c.by_error, c.by_depth,
                        c.by_type, c.by_size_bits, c.timeline.series(), c.slowest(), c.failures,
                        {h: (t.pages, t.errors, t.times.quantiles(0.5, 0.9, 0.99)) for h, t in c.hosts.items()}))
    assert figures[0] == figures[1]


def test_times_from_the_records_when_stats_are_missing_or_unreadable(tmp_path):
    out = tmp_path / "out"
    pages = asyncio.run(write_shards(out, "jsonl"))
    (out / "stats-w1.json").unlink()
    (out / "stats-w2.json").write_text("{not json")
    report = write_report(out, tmp_path / "r.html")
    assert report.pages == len(pages) and report.path == tmp_path / "r.html"
    doc = lxml.html.fromstring(report.path.read_text(encoding="utf-8"))
    # the records' fetched_at run from 10:00:00 to 10:01:59
    assert float(by_id(doc, "summary-elapsed").get("data-value")) == 119.0
    assert float(by_id(doc, "summary-rate").get("data-value")) == round(len(pages) / 119, 3)
    assert "fetched_at" in by_id(doc, "summary-section").text_content()
    notes = [n.text_content() for n in doc.xpath('//p[@class="note"]')]
    assert notes == ["stats-w2.json is unreadable (JSONDecodeError); its run times are left out"]
    assert not (out / "report.html").exists()


# --- bounded state ----------------------------------------------------------------------


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, -(-int(q * 1000) * len(ordered) // 1000)) - 1]


def test_sketch_percentiles_are_exact_to_100_ms_and_within_1_percent_above():
    rng = random.Random(3)
    for values in ([rng.randrange(0, 101) for _ in range(5000)],
                   [int(rng.lognormvariate(6, 1.2)) for _ in range(20000)],
                   [30_000] * 50 + [5] * 5):
        sketch = Sketch()
        for v in values:
            sketch.add(v)
        for q, got in zip((0.5, 0.9, 0.99), sketch.quantiles(0.5, 0.9, 0.99), strict=True):
            want = nearest_rank(values, q)
            if want <= Sketch.EXACT:
                assert got == want
            else:
                assert abs(got - want) / want < 0.01, (q, got, want)
    assert len(sketch.buckets) <= 2


def test_timeline_keeps_its_bound_and_every_count():
    timeline = Timeline()
    rng = random.Random(5)
    times = [1_700_000_000 + rng.uniform(0, 7 * 86400) for _ in range(30_000)]
    for t in times:
        timeline.add(t, ok=t % 2 < 1)
    starts, counts, failed = timeline.series()
    assert len(counts) <= Timeline.MAX_BUCKETS
    assert sum(counts) == len(times) and sum(failed) == sum(1 for t in times if t % 2 >= 1)
    width = timeline.width
    for t in rng.sample(times, 50):  # every time sits in its bucket
        assert starts[0] <= t < starts[-1] + width


def test_collector_tables_and_host_bound():
    c = Collector()
    for i in range(HOSTS_CAP + 500):
        c.add({"url": f"https://h{i}.example/", "ok": True, "attempts": 1, "elapsed_ms": i % 977,
               "fetched_at": "2026-11-30T10:00:00Z", "status": 200})
    for i in range(300):
        c.add({"url": "https://busy.example/x", "ok": False, "attempts": 1, "elapsed_ms": 5, "status": 503,
               "error": {"kind": "http", "message": f"HTTP 503 number {i}"}, "fetched_at": "bad"})
    assert len(c.hosts) <= HOSTS_CAP and c.hosts_dropped > 0
    assert c.busiest(1)[0][0] == "busy.example" and c.busiest(1)[0][1].pages == 300
    assert len(c.failures["http"]) == TOP and c.by_error["http"] == 300
    assert [f.message for f in c.failures["http"][:2]] == ["HTTP 503 number 0", "HTTP 503 number 1"]
    # slowest first; among equal times, the earlier record first
    expected = sorted(range(HOSTS_CAP + 500), key=lambda i: (-(i % 977), i))[:TOP]
    assert [r.url for r in c.slowest()] == [f"https://h{i}.example/" for i in expected]
    assert c.untimed == 300 and c.pages == HOSTS_CAP + 800
    # what the tables keep of a page's text is bounded too
    c.add({"url": "https://big.example/", "attempts": 1, "elapsed_ms": 10**6, "title": "t" * 10**6,
           "error": {"kind": "parse", "message": "m" * 10**6}})
    assert len(c.slowest()[0].title) == len(c.failures["parse"][0].message) == TEXT_CAP


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["a", "b"], ["--bogus", "x"], ["x", "-o"]])
async def test_bad_arguments_exit_2(args):
    result = await cli("report", *args)
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_or_empty_output_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / "pages.jsonl").write_bytes(b"")
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "pages.jsonl").write_bytes(b'{"url": "https://a.example/", "ok"')
    (tmp_path / "header").mkdir()
    (tmp_path / "header" / "pages.csv").write_text("url,final_url,status\n")
    (tmp_path / "file").write_text("x")
    cases = {"missing": "does not exist", "file": "is not a folder", "empty": "holds no crawl output",
             "zero": "is empty", "torn": "is empty", "header": "is empty"}
    for name, says in cases.items():  # the command's own entry point (the CLI dispatches to it)
        assert report_main([str(tmp_path / name)]) == 2, name
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / name / "report.html").exists()


async def test_bad_report_destination_exits_2(tmp_path):
    out = tmp_path / "out"
    await write_shards(out, "jsonl")
    for target, says in ((tmp_path, "is a folder"), (tmp_path / "no" / "r.html", "does not exist")):
        result = await cli("report", str(out), "-o", str(target))
        assert result.code == 2 and says in result.stderr, result.stderr
    assert not (out / "report.html").exists()


def _without_matplotlib(tmp_path: Path) -> dict[str, str]:
    """An environment where `import matplotlib` fails, as when the extra is not installed."""
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    return {"PYTHONPATH": f"{shadow.parent}{os.pathsep}{ROOT}"}


async def test_without_the_extra_one_line_exit_2(serve, tmp_path):
    env = _without_matplotlib(tmp_path)
    out = tmp_path / "out"
    await write_shards(out, "jsonl")
    result = await cli("report", str(out), env=env)
    assert result.code == 2 and "pip install 'scraper[report]'" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    # `[output] report = true` refuses before any request, and writes nothing
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    site = await serve(hello)
    urls = tmp_path / "urls.txt"
    urls.write_text(site.url("/") + "\n")
    cfg = tmp_path / "config.toml"
    run_out = tmp_path / "run"
    cfg.write_text(f'[output]\ndir = "{run_out}"\nreport = true\n')
    result = await cli(str(urls), "--config", str(cfg), env=env)
    assert result.code == 2 and "pip install 'scraper[report]'" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert site.hits == {} and not run_out.exists()


async def test_report_key_bad_value_exits_2(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text('[output]\nreport = "yes"\n')
    result = await cli(str(urls), "--config", str(cfg))
    assert result.code == 2 and "output.report" in result.stderr and str(cfg) in result.stderr, result.stderr
