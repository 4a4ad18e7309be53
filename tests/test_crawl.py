"""Crawling: depth, referrer, host and regex filters, max_pages, traps, sitemaps, extract."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc

from aiohttp import web

from scraper import Scraper
from scraper.config import FieldSpec
from scraper.frontier import Item, MemoryFrontier
from tests.conftest import config, html, page_handler


def tree(fanout: int, prefix: str = ""):
    """/ -> /0 /1 /2 -> /0/0 ... : an endless tree of pages."""

    async def handler(request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        links = [f"{path}/{i}" for i in range(fanout)]
        return web.Response(text=html(path or "root", links), content_type="text/html")

    return handler


async def crawl(cfg, seeds, **kwargs):
    async with Scraper(cfg, **kwargs) as s:
        return [p async for p in s.crawl(seeds)]


async def test_depth_2_on_fanout_3_tree_gives_13_pages(serve, tmp_path):
    site = await serve(tree(3))
    pages = await crawl(config(tmp_path, crawl={"depth": 2}), [site.url("/")])
    assert len(pages) == 13
    by_url = {p.url: p for p in pages}
    assert len(by_url) == 13
    root = by_url[site.url("/")]
    assert root.depth == 0 and root.referrer is None
    for i in range(3):
        child = by_url[site.url(f"/{i}")]
        assert child.depth == 1 and child.referrer == site.url("/")
        for j in range(3):
            grandchild = by_url[site.url(f"/{i}/{j}")]
            assert grandchild.depth == 2 and grandchild.referrer == site.url(f"/{i}")
    # pages at the last depth still list their links, but they are not followed
    assert by_url[site.url("/0/0")].links == [site.url(f"/0/0/{k}") for k in range(3)]
    assert sum(site.hits.values()) == 13


async def test_same_host_keeps_the_crawl_on_one_host_name(serve, tmp_path):
    other = await serve({"/x": page_handler(html("other", ["/y"]))}, host="127.0.0.3")
    home = await serve({"/": page_handler(html("home", ["/a", other.url("/x")])),
                        "/a": page_handler(html("a"))}, host="127.0.0.2")
    pages = await crawl(config(tmp_path, crawl={"depth": 3}), [home.url("/")])
    assert sorted(p.url for p in pages) == [home.url("/"), home.url("/a")]
    assert other.hits == {}
    # with same_host off the other host is crawled too
    pages = await crawl(config(tmp_path, crawl={"depth": 3, "same_host": False}), [home.url("/")])
    assert sorted(p.url for p in pages) == sorted([home.url("/"), home.url("/a"), other.url("/x"), other.url("/y")])


async def test_allow_and_deny(serve, tmp_path):
    site = await serve({
        "/": page_handler(html("home", ["/docs/1", "/docs/2.pdf", "/blog/1", "/docs/logout"])),
        "/docs/1": page_handler(html("d1")),
    })
    cfg = config(tmp_path, crawl={"depth": 1, "allow": ["/docs/"], "deny": [r"\.pdf$", "logout"]})
    pages = await crawl(cfg, [site.url("/")])
    assert sorted(p.url for p in pages) == [site.url("/"), site.url("/docs/1")]


async def test_seeds_are_never_filtered(serve, tmp_path):
    site = await serve({"/blog/x": page_handler(html("x"))})
    cfg = config(tmp_path, crawl={"depth": 1, "allow": ["/docs/"], "deny": ["blog"]})
    pages = await crawl(cfg, [site.url("/blog/x")])
    assert [p.title for p in pages] == ["x"]


async def test_max_pages_starts_exactly_n_fetches(serve, tmp_path):
    site = await serve(tree(5))
    cfg = config(tmp_path, crawl={"depth": 5, "max_pages": 17}, fetch={"concurrency": 8, "per_host": 8})
    pages = await crawl(cfg, [site.url("/")])
    assert len(pages) == 17
    assert sum(site.hits.values()) == 17
    assert len({p.url for p in pages}) == 17


async def test_max_pages_ignores_invalid_and_robots_records(serve, tmp_path):
    async def robots(request):
        return web.Response(text="User-agent: *\nDisallow: /private\n")

    site = await serve({"/robots.txt": robots, "/": page_handler(html("r", ["/private/1", "/private/2", "/a", "/b"])),
                        "/a": page_handler(html("a")), "/b": page_handler(html("b"))})
    cfg = config(tmp_path, crawl={"depth": 1, "max_pages": 2}, fetch={"obey_robots": True, "concurrency": 1})
    pages = await crawl(cfg, ["not a url", site.url("/")])
    kinds = sorted((p.error.kind if p.error else "ok") for p in pages)
    fetched = [p for p in pages if p.attempts > 0]
    assert len(fetched) == 2
    assert "invalid_url" in kinds
    page_hits = sum(n for path, n in site.hits.items() if path != "/robots.txt")
    assert page_hits == 2


async def test_calendar_trap_ends_at_depth_and_at_max_pages(serve, tmp_path):
    async def calendar(request: web.Request) -> web.Response:
        day = int(request.query.get("day", "0"))
        return web.Response(text=html(f"day {day}", [f"/cal?day={day + 1}", f"/cal?day={day + 1}&view=week"]),
                            content_type="text/html")

    site = await serve({"/cal": calendar})
    pages = await crawl(config(tmp_path, crawl={"depth": 6}), [site.url("/cal?day=0")])
    assert max(p.depth for p in pages) == 6
    assert len(pages) == 1 + 2 * 6  # both links of each day, the "week" view leads on too
    pages = await crawl(config(tmp_path, crawl={"depth": 10_000, "max_pages": 40}), [site.url("/cal?day=0")])
    assert len(pages) == 40


async def test_overlong_links_are_skipped(serve, tmp_path):
    long = "/x" + "a" * 2100
    site = await serve({"/": page_handler(html("home", [long, "/short"])), "/short": page_handler(html("s"))})
    pages = await crawl(config(tmp_path, crawl={"depth": 1}), [site.url("/")])
    assert sorted(p.url for p in pages) == [site.url("/"), site.url("/short")]
    assert site.requests(long) == 0


async def test_two_spellings_are_fetched_once(serve, tmp_path):
    site = await serve({"/a/b": page_handler(html("ab", ["./b", "../a/./b#frag", "/a/%62"]))})
    base = site.base
    seeds = [f"{base}/a/b", f"{base.upper()}/a/../a/b", f"{base}/a/b#top"]
    pages = await crawl(config(tmp_path, crawl={"depth": 2}), seeds)
    assert [p.url for p in pages] == [f"{base}/a/b"]
    assert site.requests("/a/b") == 1


async def test_deep_crawl_with_a_queue_of_one_finishes(serve, tmp_path):
    """2,000 pages, depth 10, queue size 1, concurrency 50: no deadlock, every page once."""

    async def handler(request: web.Request) -> web.Response:
        n = int(request.path.strip("/") or 0)
        # a tree of fanout 5 numbered breadth-first: pages n*5+1 .. n*5+5, capped at 2,000 pages
        links = [f"/{c}" for c in range(n * 5 + 1, n * 5 + 6) if c < 2000]
        return web.Response(text=html(str(n), [*links, "/0"]), content_type="text/html")

    site = await serve(handler)
    cfg = config(tmp_path, crawl={"depth": 10}, fetch={"concurrency": 50, "per_host": 50},
                 parse={"workers": 2, "batch_size": 8})
    pages = await asyncio.wait_for(crawl(cfg, [site.url("/0")], queue_size=1), timeout=90)
    assert len(pages) == 2000
    assert len({p.url for p in pages}) == 2000
    assert all(n == 1 for n in site.hits.values()) and len(site.hits) == 2000
    assert max(p.depth for p in pages) <= 10


SITEMAP = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{}</urlset>"""
INDEX = """<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{}</sitemapindex>"""


async def test_sitemaps_expand_into_seeds(serve, tmp_path):
    docs: dict[str, bytes] = {}  # filled once the server's port is known

    async def handler(request):
        if request.path in docs:
            ct = "application/gzip" if request.path.endswith(".gz") else "application/xml"
            return web.Response(body=docs[request.path], content_type=ct)
        n = request.path.strip("/")
        return web.Response(text=html(n, ["/not-followed"]), content_type="text/html")

    host = await serve(handler)
    base = host.base
    docs["/sitemap_index.xml"] = INDEX.format(f"<sitemap><loc>{base}/sitemap1.xml</loc></sitemap>"
                                              f"<sitemap><loc>{base}/sitemap2.xml.gz</loc></sitemap>").encode()
    docs["/sitemap1.xml"] = SITEMAP.format(f"<url><loc>{base}/p1</loc></url><url><loc>{base}/p2</loc></url>").encode()
    docs["/sitemap2.xml.gz"] = gzip.compress(
        SITEMAP.format(f"<url><loc>{base}/p3</loc></url><url><loc>{base}/p1</loc></url>").encode())

    pages = await crawl(config(tmp_path), [host.url("/sitemap_index.xml")])
    urls = sorted(p.url for p in pages)
    assert urls == sorted([host.url("/sitemap_index.xml"), host.url("/sitemap1.xml"), host.url("/sitemap2.xml.gz"),
                           host.url("/p1"), host.url("/p2"), host.url("/p3")])
    for p in pages:
        assert p.depth == 0 and p.referrer is None and p.ok
    index = next(p for p in pages if p.url.endswith("sitemap_index.xml"))
    assert index.links == [host.url("/sitemap1.xml"), host.url("/sitemap2.xml.gz")]
    assert host.requests("/not-followed") == 0  # depth 0: sitemap URLs are seeds, their links are not followed
    assert host.requests("/p1") == 1


def extract_heading(soup, page):
    """A module-level extract function: picklable by reference, so it runs in the parse processes."""
    import os

    h1 = soup.find("h1")
    return {"heading": h1.get_text(strip=True) if h1 else None, "pid": os.getpid(), "title_seen": page.title}


async def test_extract_runs_in_the_process_pool(serve, tmp_path):
    import os

    site = await serve({"/": page_handler(html("T", ["/b"], body="<h1>Hello</h1><span class=p>9</span>")),
                        "/b": page_handler(html("B", body="<h1>Bee</h1>"))})
    cfg = config(tmp_path, crawl={"depth": 1}, parse={"workers": 2, "fields": {"price": FieldSpec(selector=".p")}})
    pages = {p.url: p for p in await crawl(cfg, [site.url("/")], extract=extract_heading)}
    root = pages[site.url("/")]
    assert root.fields["heading"] == "Hello" and root.fields["price"] == "9" and root.fields["title_seen"] == "T"
    assert pages[site.url("/b")].fields["heading"] == "Bee" and pages[site.url("/b")].fields["price"] is None
    assert root.fields["pid"] != os.getpid()  # it ran in a parse worker


async def test_seen_set_stays_under_100_bytes_per_url():
    frontier = MemoryFrontier()
    n = 200_000
    urls = [f"https://www.example-{i % 97}.com/section/{i}/article-{i * 7}.html?ref=home" for i in range(n)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for url in urls:
        await frontier.mark_seen(url)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_url = (after - before) / n
    assert await frontier.is_seen(urls[123]) and not await frontier.is_seen("https://www.example-1.com/other")
    assert per_url < 100, per_url


async def test_memory_frontier_is_breadth_first():
    f = MemoryFrontier()
    await f.add_links([Item("http://a/3", depth=3), Item("http://a/1", depth=1), Item("http://a/2", depth=2),
                       Item("http://a/1b", depth=1)])
    f.close_seeds()
    order = []
    while f.pending:
        item = await f.next()
        order.append(item.url)
        await f.release(item)
    assert order == ["http://a/1", "http://a/1b", "http://a/2", "http://a/3"]
    assert await f.next() is None


async def test_max_pages_stops_reading_the_seeds(serve, tmp_path):
    site = await serve(tree(0))
    consumed = 0

    def seeds():
        nonlocal consumed
        for i in range(100_000):
            consumed += 1
            yield site.url(f"/{i}")

    cfg = config(tmp_path, crawl={"max_pages": 5}, fetch={"concurrency": 4})
    async with Scraper(cfg, queue_size=8) as s:
        stats = await s.run(seeds())
    assert stats.pages == 5
    assert sum(site.hits.values()) == 5
    assert consumed < 1_000  # the rest of the input is never read
