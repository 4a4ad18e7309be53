"""The pipeline end to end, against real loopback servers: limits, CLI output, library."""

from __future__ import annotations

import asyncio
import csv
import json

import pytest
from aiohttp import web

import scraper
from scraper import Page, Scraper, load_config
from tests.conftest import config, html, page_handler, read_jsonl, run_cli


def slow_pages(delay: float = 0.03):
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        n = request.path.strip("/")
        return web.Response(text=html(f"page {n}", [f"/{n}-next"]), content_type="text/html")

    return handler


async def test_200_urls_respect_concurrency_and_per_host(serve, tmp_path):
    hosts = [await serve(slow_pages(), host=f"127.0.0.{i}") for i in (2, 3, 4)]
    urls = [hosts[i % 3].url(f"/{i}") for i in range(200)]
    cfg = config(tmp_path, fetch={"concurrency": 8, "per_host": 3})
    async with Scraper(cfg) as s:
        pages = [p async for p in s.crawl(urls)]
    assert len(pages) == 200
    assert {p.url for p in pages} == set(urls)
    assert all(p.ok and p.status == 200 for p in pages)
    for h in hosts:
        assert h.max_in_flight <= 3, h.host
        assert h.max_in_flight == 3, f"{h.host} never reached its per-host limit"
    # all hosts together: never more than 8, and most of the 8 in use (3 + 3 + 2)
    overall = _max_overlap([t for h in hosts for t in _intervals(h)])
    assert overall <= 8
    assert overall >= 6


def _intervals(server):
    # the middleware records starts only; the handler sleeps a fixed time, so ends are start + delay
    return [(t, t + 0.03) for t, _ in server.starts]


def _max_overlap(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


async def test_global_cap_on_one_server_counter(serve, tmp_path):
    # one server, many hosts is not possible on one address: use per_host = concurrency on one host
    site = await serve(slow_pages(0.05))
    urls = [site.url(f"/{i}") for i in range(60)]
    cfg = config(tmp_path, fetch={"concurrency": 5, "per_host": 50})
    async with Scraper(cfg) as s:
        pages = [p async for p in s.crawl(urls)]
    assert len(pages) == 60
    assert site.max_in_flight == 5


async def test_cli_writes_one_record_per_unique_url_and_stats(serve, tmp_path):
    site = await serve({
        "/a": page_handler(html("A", ["/b"], description="about a")),
        "/b": page_handler(html("B")),
        "/doc.pdf": page_handler("%PDF-1.4 binary", content_type="application/pdf"),
        "/gone": page_handler("no", status=404),
    })
    urls = tmp_path / "urls.txt"
    urls.write_bytes(
        (
            f"# seeds\r\n\r\n  {site.url('/a')}  \r\n{site.url('/a#again')}\r\n{site.url('/b')}\n"
            f"{site.url('/doc.pdf')}\n{site.url('/gone')}\nftp://files.test/x\nnot a url\n"
        ).encode()
        + b"http://bad\xff.test/\n"
    )
    out = tmp_path / "out"
    result = await run_cli(str(urls), "--output", str(out), "--config", str(_no_robots(tmp_path)))
    assert result.code == 0, result.stderr
    records = read_jsonl(out / "pages.jsonl")
    by_url = {r["url"]: r for r in records}
    assert len(records) == len(by_url) == 7
    a = by_url[site.url("/a")]
    assert a["ok"] is True and a["status"] == 200 and a["title"] == "A" and a["description"] == "about a"
    assert a["links"] == [site.url("/b")] and a["depth"] == 0 and a["referrer"] is None
    assert a["content_type"] == "text/html" and a["bytes"] > 0 and a["attempts"] == 1 and a["error"] is None
    assert a["fetched_at"].endswith("Z") and isinstance(a["elapsed_ms"], int)
    assert list(a) == ["url", "final_url", "status", "ok", "depth", "referrer", "fetched_at", "elapsed_ms",
                       "attempts", "content_type", "bytes", "title", "description", "links", "fields",
        "etag", "last_modified", "content_hash", "changed", "error"]
    pdf = by_url[site.url("/doc.pdf")]
    assert pdf["ok"] is True and pdf["content_type"] == "application/pdf" and pdf["links"] == []
    assert pdf["fields"] == {} and pdf["error"] is None and pdf["title"] is None
    gone = by_url[site.url("/gone")]
    assert gone["status"] == 404 and gone["ok"] is False and gone["error"]["kind"] == "http"
    invalid = [r for r in records if r["error"] and r["error"]["kind"] == "invalid_url"]
    assert {r["url"] for r in invalid} == {"ftp://files.test/x", "not a url", "http://bad\ufffd.test/"}
    lines = {r["url"]: r["error"]["message"] for r in invalid}
    assert "line 8" in lines["ftp://files.test/x"] and "line 9" in lines["not a url"]
    assert "line 10" in lines["http://bad\ufffd.test/"]
    for r in invalid:
        assert r["status"] is None and r["attempts"] == 0 and r["final_url"] is None and r["depth"] == 0
    assert site.requests("/a") == 1  # two spellings, one fetch
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pages"] == 7 and stats["ok"] == 3 and stats["failed"] == 4
    assert stats["by_status"] == {"200": 3, "404": 1}
    assert stats["by_error"] == {"http": 1, "invalid_url": 3}
    assert stats["interrupted"] is False and stats["bytes"] == sum(r["bytes"] for r in records)
    for key in ("elapsed_s", "pages_per_s", "started_at", "finished_at"):
        assert key in stats
    assert "done: 7 pages" in result.stderr


def _no_robots(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n")
    return path


async def test_cli_csv_output_parses_with_csv_module(serve, tmp_path):
    site = await serve({"/a": page_handler(html('Quote "q", comma', ["/b", "/c"])),
                        "/b": page_handler(html("B\nline"))})
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{site.url('/a')}\n{site.url('/b')}\n")
    out = tmp_path / "out"
    result = await run_cli(str(urls), "--output", str(out), "--format", "csv", "--config", str(_no_robots(tmp_path)))
    assert result.code == 0, result.stderr
    with open(out / "pages.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    a = next(r for r in rows if r["url"] == site.url("/a"))
    assert a["title"] == 'Quote "q", comma'
    assert json.loads(a["links"]) == [site.url("/b"), site.url("/c")]
    assert json.loads(a["fields"]) == {} and a["ok"] == "true" and a["status"] == "200" and a["error"] == ""
    assert list(rows[0]) == ["url", "final_url", "status", "ok", "depth", "referrer", "fetched_at", "elapsed_ms",
                             "attempts", "content_type", "bytes", "title", "description", "links", "fields",
        "etag", "last_modified", "content_hash", "changed", "error"]


async def test_cli_reads_stdin(serve, tmp_path):
    site = await serve({"/a": page_handler(html("A"))})
    out = tmp_path / "out"
    result = await run_cli("-", "--output", str(out), "-q", "--config", str(_no_robots(tmp_path)),
                           stdin=f"{site.url('/a')}\n".encode())
    assert result.code == 0
    assert result.stderr == ""  # -q: nothing but fatal errors
    [record] = read_jsonl(out / "pages.jsonl")
    assert record["title"] == "A"


async def test_cli_verbose_prints_a_line_per_page_and_plain_progress(serve, tmp_path):
    site = await serve(slow_pages(0.2))
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(site.url(f"/{i}") + "\n" for i in range(6)))
    import os

    os.environ["SCRAPER_PROGRESS_INTERVAL"] = "0.1"
    try:
        result = await run_cli(str(urls), "--output", str(tmp_path / "out"), "-v", "--per-host", "1",
                               "--config", str(_no_robots(tmp_path)))
    finally:
        del os.environ["SCRAPER_PROGRESS_INTERVAL"]
    assert result.code == 0
    assert sum(1 for line in result.stderr.splitlines() if line.startswith("200 http")) == 6
    assert "progress:" in result.stderr  # not a terminal: plain log lines
    assert "\x1b" not in result.stderr


async def test_cli_version_and_help():
    result = await run_cli("--version")
    assert result.code == 0 and scraper.__version__ in result.stdout
    result = await run_cli("--help")
    assert result.code == 0
    for flag in ("--config", "--output", "--format", "--concurrency", "--per-host", "--depth", "--max-pages",
                 "--resume", "--overwrite", "--quiet", "--verbose", "--version"):
        assert flag in result.stdout


async def test_library_run_returns_stats_and_writes_output(serve, tmp_path):
    site = await serve({"/a": page_handler(html("A", ["/b"])), "/b": page_handler(html("B"))})
    cfg = config(tmp_path, crawl={"depth": 1})
    async with Scraper(cfg) as s:
        stats = await s.run([site.url("/a")])
    assert stats.pages == 2 and stats.ok == 2 and stats.by_status == {"200": 2}
    records = read_jsonl(tmp_path / "out" / "pages.jsonl")
    assert sorted(r["url"] for r in records) == [site.url("/a"), site.url("/b")]
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["pages"] == 2


async def test_library_crawl_streams_pages_and_writes_no_files(serve, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    site = await serve({"/a": page_handler(html("A", description="d"))})
    async with Scraper(config(None)) as s:
        pages = [p async for p in s.crawl([site.url("/a")])]
    [page] = pages
    assert isinstance(page, Page) and page.title == "A" and page.description == "d"
    assert page.error is None and page.to_dict()["title"] == "A"
    assert list(tmp_path.iterdir()) == []


def gated_pages(gate: asyncio.Event) -> web.RequestHandler:
    """/0 answers at once, every other page once `gate` is set: the crawl cannot run ahead of the test."""

    async def handler(request: web.Request) -> web.Response:
        if request.path != "/0":
            await gate.wait()
        return web.Response(text=html(f"page {request.path}"), content_type="text/html")

    return handler


async def test_breaking_out_of_crawl_stops_it(serve, tmp_path):
    gate = asyncio.Event()
    site = await serve(gated_pages(gate))
    async with Scraper(config(tmp_path, fetch={"concurrency": 2})) as s:
        async for _ in s.crawl([site.url(f"/{i}") for i in range(100)]):
            break
        gate.set()
        hits = sum(site.hits.values())
        await asyncio.sleep(0.1)
    assert sum(site.hits.values()) == hits <= 3  # /0 and the two in flight; nothing after the break


def scrape_in_thread(url, tmp):
    return scraper.scrape([url], config(tmp), depth=0)


async def test_scrape_is_blocking_and_returns_a_list(serve, tmp_path):
    site = await serve({"/a": page_handler(html("A"))})
    pages = await asyncio.to_thread(scrape_in_thread, site.url("/a"), tmp_path)
    assert [p.title for p in pages] == ["A"]


def test_public_names():
    assert scraper.__all__ == sorted(scraper.__all__)
    for name in ("Scraper", "Page", "PageError", "Config", "load_config", "scrape"):
        assert name in scraper.__all__
    assert load_config(None) == scraper.Config()


async def test_slow_consumer_gets_every_page(serve, tmp_path):
    site = await serve(slow_pages(0.0))
    urls = [site.url(f"/{i}") for i in range(400)]
    seen = []
    async with Scraper(config(tmp_path, fetch={"concurrency": 16, "per_host": 16})) as s:
        async for page in s.crawl(urls):
            if not seen:
                await asyncio.sleep(1.0)  # let the pipeline fill every buffer behind us
            seen.append(page.url)
    assert sorted(seen) == sorted(urls)


async def test_save_html_keeps_bodies_named_by_hash(serve, tmp_path):
    import hashlib

    body = html("A", ["/b"])
    site = await serve({"/../../etc/a": page_handler(body), "/a": page_handler(body),
                        "/pdf": page_handler("%PDF", content_type="application/pdf"),
                        "/gone": page_handler("x", status=404)})
    cfg = config(tmp_path, output={"save_html": True})
    urls = [site.url("/a"), site.url("/pdf"), site.url("/gone")]
    async with Scraper(cfg) as s:
        await s.run(urls)
    folder = tmp_path / "out" / "html"
    names = sorted(p.name for p in folder.iterdir())
    expected = sorted(hashlib.sha256(u.encode()).hexdigest() + ".html" for u in urls[:2])
    assert names == expected  # the 404 kept no body
    assert (folder / (hashlib.sha256(urls[0].encode()).hexdigest() + ".html")).read_text() == body
    # crawl() writes no files, save_html or not
    other = tmp_path / "elsewhere"
    cfg = config(None, output={"save_html": True, "dir": str(other)})
    async with Scraper(cfg) as s:
        pages = [p async for p in s.crawl([site.url("/a")])]
    assert pages[0].ok and not other.exists()


async def test_interrupt_right_after_crawl_starts(serve, tmp_path):
    gate = asyncio.Event()
    site = await serve(gated_pages(gate))
    async with Scraper(config(tmp_path)) as s:
        pages = []
        async for page in s.crawl([site.url(f"/{i}") for i in range(50)]):
            pages.append(page)
            s.interrupt()
            gate.set()  # the requests in flight finish within their grace; no new one starts
    assert 1 <= len(pages) <= 1 + 4  # /0, and what per_host let start before the interrupt
    async with Scraper(config(tmp_path)) as s:
        gen = s.crawl([site.url("/x")])
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0)
        s.interrupt()  # before the run has set anything up
        try:
            page = await first
        except StopAsyncIteration:
            page = None
        await gen.aclose()
    assert page is None or page.url == site.url("/x")


def test_queue_size_must_be_positive():
    with pytest.raises(ValueError, match="queue_size"):
        Scraper(queue_size=0)
    assert Scraper(queue_size=1).queue_size == 1
    assert Scraper().queue_size == 64
