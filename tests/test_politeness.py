"""Politeness without head-of-line blocking (SPEC section 6).

Caps are counted on the servers' side; delays are measured between the request
starts the scraper made (`request_starts`), since a server sees each start after
a lag that a loaded machine stretches.

Each host is its own loopback address (127.0.0.2, 127.0.0.3, ...), since
limits are per host name.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from conftest import config
from hostile_servers import gaps

from scraper import Page, Scraper


class Gauge:
    """Requests in flight across several servers, as the servers see them."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def wrap(self, handler: Any) -> Any:
        async def counted(request: web.Request) -> web.StreamResponse:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                return await handler(request)
            finally:
                self.now -= 1

        return counted


def site(page: Any, robots_txt: str | None = None) -> Any:
    """`page` for every path; robots.txt as given, or 404."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/robots.txt":
            if robots_txt is None:
                return web.Response(status=404, text="none")
            return web.Response(text=robots_txt, content_type="text/plain")
        return await page(request)

    return handler


def pause(seconds: float, robots_txt: str | None = None) -> Any:
    """A page that takes `seconds`; robots.txt as given, or 404."""

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/robots.txt":
            if robots_txt is None:
                return web.Response(status=404, text="none")
            return web.Response(text=robots_txt, content_type="text/plain")
        await asyncio.sleep(seconds)
        return web.Response(text="ok", content_type="text/plain")

    return handler


async def timed_crawl(cfg: Any, urls: list[str]) -> tuple[dict[str, Page], dict[str, float]]:
    """The pages, and when each record came out (seconds from the start)."""
    done: dict[str, float] = {}
    pages: dict[str, Page] = {}
    t0 = time.monotonic()
    async with Scraper(cfg) as s:
        async for page in s.crawl(urls):
            done[page.url] = time.monotonic() - t0
            pages[page.url] = page
    return pages, done


async def test_slow_polite_host_does_not_hold_up_the_others(
    serve: Any, request_starts: dict[str, list[float]]
) -> None:
    concurrency, per_host, crawl_delay = 4, 2, 0.25
    gauge = Gauge()
    slow_started, fast_done = asyncio.Event(), asyncio.Event()
    fast_urls_served = 0

    async def slow_page(request: web.Request) -> web.Response:
        slow_started.set()
        await fast_done.wait()  # the slow host answers nothing until every other host is done
        return web.Response(text="ok", content_type="text/plain")

    async def fast_page(request: web.Request) -> web.Response:
        nonlocal fast_urls_served
        await asyncio.sleep(0.02)  # long enough for a host's requests to overlap
        if fast_urls_served == len(fast_urls) - 1:
            await slow_started.wait()  # the last one: only once the slow host is held up too
        fast_urls_served += 1
        if fast_urls_served == len(fast_urls):
            fast_done.set()
        return web.Response(text="ok", content_type="text/plain")

    slow = await serve(gauge.wrap(site(slow_page, f"User-agent: *\nCrawl-delay: {crawl_delay}\n")), host="127.0.0.2")
    fast = [await serve(gauge.wrap(site(fast_page)), host=f"127.0.0.{i}") for i in range(3, 12)]
    slow_urls = [slow.url(f"/s{i}") for i in range(5)]
    fast_urls = [srv.url(f"/f{i}") for srv in fast for i in range(10)]
    # the slow host's URLs come first: with concurrency <= 2 * per_host, a URL waiting for its
    # host (a slot or the delay) while holding a global slot would take every global slot,
    # and the slow host's answers wait for the other hosts: the crawl could never end
    # (the slow host's requests may wait as long as it takes: no fetch timeout ends the wait)
    cfg = config(fetch={"obey_robots": True, "concurrency": concurrency, "per_host": per_host, "timeout": 600.0})
    try:
        async with asyncio.timeout(30):
            pages, done = await timed_crawl(cfg, slow_urls + fast_urls)
    except TimeoutError:
        served = f"{fast_urls_served} of {len(fast_urls)} served"
        raise AssertionError(f"the slow host held up the others: {served}") from None
    assert len(pages) == len(slow_urls) + len(fast_urls) == 95
    assert all(p.ok for p in pages.values()), [p.error for p in pages.values() if not p.ok][:3]
    assert max(done[u] for u in fast_urls) < min(done[u] for u in slow_urls)
    # the delay held on the slow host (robots.txt included), between the starts the scraper made
    starts = request_starts[slow.host]
    assert len(starts) == 1 + len(slow_urls)
    assert min(gaps(starts)) >= crawl_delay, gaps(starts)
    assert slow.max_in_flight <= per_host
    # the caps held, and were reached: the crawl was not merely slow
    assert max(srv.max_in_flight for srv in fast) == per_host
    assert gauge.peak == concurrency


async def test_fetch_delay_and_per_host_and_concurrency_caps(
    serve: Any, request_starts: dict[str, list[float]]
) -> None:
    gauge = Gauge()
    hosts = [await serve(gauge.wrap(pause(0.05)), host=f"127.0.0.{i}") for i in (2, 3, 4)]
    urls = [srv.url(f"/p{i}") for i in range(12) for srv in hosts]
    cfg = config(fetch={"concurrency": 5, "per_host": 3, "delay": 0.15})
    pages, _ = await timed_crawl(cfg, urls)
    assert all(p.ok for p in pages.values())
    for srv in hosts:
        assert srv.max_in_flight <= 3
        assert len(request_starts[srv.host]) == 12
        assert min(gaps(request_starts[srv.host])) >= 0.15, gaps(request_starts[srv.host])
    assert gauge.peak <= 5

    # without a delay the caps are reached, and hold
    gauge = Gauge()
    hosts = [await serve(gauge.wrap(pause(0.1)), host=f"127.0.0.{i}") for i in (5, 6, 7)]
    urls = [srv.url(f"/p{i}") for srv in hosts for i in range(12)]  # host by host
    pages, _ = await timed_crawl(config(fetch={"concurrency": 5, "per_host": 3}), urls)
    assert all(p.ok for p in pages.values())
    assert max(srv.max_in_flight for srv in hosts) == 3
    assert gauge.peak == 5


async def test_backoff_holds_no_slot(serve: Any) -> None:
    async def limited(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "2"}, text="slow down")

    throttled = await serve(limited, host="127.0.0.2")
    other = await serve(pause(0.01), host="127.0.0.3")
    cfg = config(fetch={"concurrency": 1, "per_host": 1}, retry={"attempts": 2, "max_backoff": 5.0})
    urls = [throttled.url(f"/t{i}") for i in range(3)] + [other.url(f"/o{i}") for i in range(10)]
    pages, done = await timed_crawl(cfg, urls)
    for url in urls[:3]:
        assert pages[url].error is not None and pages[url].error.kind == "http" and pages[url].attempts == 2
    # one global slot in all: the other host's pages went through while the throttled URLs waited
    # (ten small pages against a 2 s wait: a wait that held the slot would put them after it)
    assert max(done[u] for u in urls[3:]) < min(done[u] for u in urls[:3])
    assert min(done[u] for u in urls[:3]) >= 2.0


async def test_limiter_forgets_idle_hosts():
    from scraper.limits import Limiter

    limiter = Limiter(concurrency=4, per_host=1, delay=0.0)
    limiter.raise_delay("slow.test", 5.0)  # a Crawl-delay must survive
    for i in range(10_000):
        async with limiter.request(f"host{i}.test"):
            pass
    assert limiter.hosts < 4_200
    assert limiter.delay_of("slow.test") == 5.0
