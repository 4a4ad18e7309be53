"""robots.txt (RFC 9309) as SPEC section 6 promises it, against real servers on 127.0.0.x."""

from __future__ import annotations

import asyncio
from typing import Any

import hostile_servers
import pytest
from aiohttp import web
from conftest import config, page_handler
from hostile_servers import chain, free_port, gaps, redirect, starts_of

from scraper import Page, Scraper
from scraper.fetch import Fetcher
from scraper.limits import Limiter
from scraper.robots import MAX_CRAWL_DELAY, MAX_ROBOTS_BYTES, RobotsCache, product_token

no_dns_for_invalid = hostile_servers.no_dns_for_invalid  # an autouse fixture

PAGE = page_handler("<title>page</title>")


def robots(text: str, status: int = 200, delay: float = 0.0) -> Any:
    async def handler(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        return web.Response(text=text, status=status, content_type="text/plain")

    return handler


def site(robots_txt: Any, **routes: Any) -> Any:
    """A catch-all handler: robots.txt, the given routes, else a page."""
    routes["/robots.txt"] = robots_txt

    async def handler(request: web.Request) -> web.StreamResponse:
        return await routes.get(request.path, PAGE)(request)

    return handler


def obeying(**fetch: Any) -> Any:
    retry = fetch.pop("retry", {})
    return config(fetch={"obey_robots": True, **fetch}, retry=retry)


async def crawl(cfg: Any, urls: list[str]) -> dict[str, Page]:
    async with Scraper(cfg) as s:
        return {p.url: p async for p in s.crawl(urls)}


def assert_unrequested(page: Page, kind: str) -> None:
    """A record of a URL that was never requested (SPEC 5)."""
    assert page.error is not None and page.error.kind == kind, page.error
    assert (page.attempts, page.status, page.final_url, page.bytes, page.elapsed_ms) == (0, None, None, 0, 0)
    assert page.fetched_at


async def test_5xx_robots_disallows_everything_after_retries(serve: Any) -> None:
    srv = await serve(site(robots("oops", status=503)))
    pages = await crawl(obeying(retry={"attempts": 2}), [srv.url("/a"), srv.url("/b")])
    for path in ("/a", "/b"):
        assert_unrequested(pages[srv.url(path)], "robots")
        assert "robots.txt" in pages[srv.url(path)].error.message  # type: ignore[union-attr]
        assert srv.requests(path) == 0
    assert srv.requests("/robots.txt") == 2  # retried like a page, fetched once per origin


async def test_4xx_robots_allows_everything(serve: Any) -> None:
    srv = await serve(site(robots("gone", status=404)))
    pages = await crawl(obeying(), [srv.url("/a"), srv.url("/b")])
    assert all(p.ok and p.error is None for p in pages.values())
    assert srv.requests("/a") == srv.requests("/b") == 1
    assert srv.requests("/robots.txt") == 1


ROBOTS_BY_AGENT = """\
User-agent: *
Disallow: /

User-agent: Scraper
Disallow: /private

User-agent: scraper-images
Disallow: /
"""


@pytest.mark.parametrize(
    "user_agent, allowed",
    [
        ("scraper/1.2 (+https://example.org/bot)", {"/public": True, "/private": False}),
        ("scraper", {"/public": True, "/private": False}),
        ("otherbot/1.0", {"/public": False, "/private": False}),
    ],
)
async def test_rules_of_our_product_token_apply(serve: Any, user_agent: str, allowed: dict[str, bool]) -> None:
    srv = await serve(site(robots(ROBOTS_BY_AGENT)))
    pages = await crawl(obeying(user_agent=user_agent), [srv.url(p) for p in allowed])
    for path, ok in allowed.items():
        page = pages[srv.url(path)]
        if ok:
            assert page.ok and page.error is None and srv.requests(path) == 1
        else:
            assert_unrequested(page, "robots")
            assert srv.requests(path) == 0


@pytest.mark.parametrize(
    "user_agent, token",
    [
        ("scraper/0.1", "scraper"),
        ("scraper/0.1 (+https://example.org/bot)", "scraper"),
        ("  MyBot/2", "MyBot"),
        ("nobot", "nobot"),
        ("/1.0", "*"),
        ("", "*"),
    ],
)
def test_product_token(user_agent: str, token: str) -> None:
    assert product_token(user_agent) == token


async def test_crawl_delay_holds_between_request_starts(serve: Any, request_starts: dict[str, list[float]]) -> None:
    srv = await serve(site(robots("User-agent: *\nCrawl-delay: 0.3\n")))
    urls = [srv.url(f"/p{i}") for i in range(4)]
    pages = await crawl(obeying(per_host=4, concurrency=8), urls)
    assert all(p.ok for p in pages.values())
    assert srv.starts[0][1] == "/robots.txt"
    assert len(starts_of(srv)) == 5
    # robots.txt counts like any other request: the delay holds after it too. Measured
    # between the starts the scraper made (the server sees them after a varying lag)
    starts = request_starts[srv.host]
    assert len(starts) == 5
    assert min(gaps(starts)) >= 0.3, gaps(starts)
    assert srv.max_in_flight == 1


async def test_crawl_delay_is_capped(serve: Any) -> None:
    srv = await serve({"/robots.txt": robots("User-agent: *\nCrawl-delay: 3600\n")})
    cfg = obeying()
    limiter = Limiter(4, 4, 0.0)
    async with Fetcher(cfg, limiter) as fetcher:
        cache = RobotsCache(fetcher, limiter, cfg.fetch.user_agent)
        assert await cache.check(srv.url("/x"), allow_private=True) is None
    assert MAX_CRAWL_DELAY == 30.0
    assert limiter.delay_of("127.0.0.1") == MAX_CRAWL_DELAY


async def test_robots_fetched_once_per_origin_with_concurrent_pages(serve: Any) -> None:
    srv = await serve(site(robots("User-agent: *\nDisallow: /no\n", delay=0.3)))
    urls = [srv.url(f"/p{i}") for i in range(18)] + [srv.url("/no1"), srv.url("/no2")]
    pages = await crawl(obeying(per_host=10, concurrency=32), urls)
    assert len(pages) == 20
    assert srv.requests("/robots.txt") == 1
    assert sum(p.ok for p in pages.values()) == 18
    assert_unrequested(pages[srv.url("/no1")], "robots")


async def test_two_ports_of_one_host_have_two_robots(serve: Any) -> None:
    strict = await serve(site(robots("User-agent: *\nDisallow: /x\n")))
    lax = await serve(site(robots("User-agent: *\nDisallow:\n")))
    assert strict.host == lax.host and strict.port != lax.port
    pages = await crawl(obeying(), [strict.url("/x"), lax.url("/x"), strict.url("/y"), lax.url("/y")])
    assert_unrequested(pages[strict.url("/x")], "robots")
    assert pages[lax.url("/x")].ok and lax.requests("/x") == 1
    assert pages[strict.url("/y")].ok and pages[lax.url("/y")].ok
    assert strict.requests("/robots.txt") == lax.requests("/robots.txt") == 1


async def test_unreachable_robots_refused(serve: Any) -> None:
    port = free_port()
    urls = [f"http://127.0.0.1:{port}/a", f"http://127.0.0.1:{port}/b"]
    pages = await crawl(obeying(retry={"attempts": 2}), urls)
    for url in urls:
        assert_unrequested(pages[url], "connect")
        message = pages[url].error.message  # type: ignore[union-attr]
        assert "robots.txt" in message and "unreachable" in message, message


async def test_unreachable_robots_timeout_and_dns(serve: Any) -> None:
    srv = await serve(site(robots("", delay=3600)))
    dns = "http://robots-host.invalid/a"
    pages = await crawl(obeying(timeout=0.5, connect_timeout=0.5, retry={"attempts": 2}), [srv.url("/a"), dns])
    assert_unrequested(pages[srv.url("/a")], "timeout")
    assert "robots.txt" in pages[srv.url("/a")].error.message  # type: ignore[union-attr]
    assert srv.requests("/robots.txt") == 2 and srv.requests("/a") == 0
    assert_unrequested(pages[dns], "dns")
    assert "robots.txt" in pages[dns].error.message  # type: ignore[union-attr]


async def test_robots_redirects_followed_up_to_five(serve: Any) -> None:
    rules = robots("User-agent: *\nDisallow: /x\n")
    # /robots.txt -> /r0 -> ... -> /rules: 5 redirects, then 6
    five = await serve(site(redirect("/r0"), **chain(4, final="/rules"), **{"/rules": rules}))
    six = await serve(site(redirect("/r0"), **chain(5, final="/rules"), **{"/rules": rules}))
    pages = await crawl(obeying(), [five.url("/x"), five.url("/y"), six.url("/x")])
    # five redirects: the rules at the end apply
    assert_unrequested(pages[five.url("/x")], "robots")
    assert pages[five.url("/y")].ok
    assert five.requests("/rules") == 1
    # six: given up after the fifth, as if there were no robots.txt
    assert six.requests("/rules") == 0 and six.requests("/r4") == 1
    assert pages[six.url("/x")].ok and six.requests("/x") == 1


async def test_robots_parsed_from_its_first_500_kib(serve: Any) -> None:
    head = "User-agent: *\nDisallow: /early\n"
    pad = "# " + "x" * 97 + "\n"
    edge = "Disallow: /edge\n"
    body = head + pad * ((MAX_ROBOTS_BYTES - len(head) - len(edge)) // len(pad)) + edge
    assert len(body) <= MAX_ROBOTS_BYTES
    body += pad * 1500 + "Disallow: /late\n"  # beyond the cap: ignored
    assert len(body) > 600 * 1024
    srv = await serve(site(robots(body)))
    pages = await crawl(obeying(), [srv.url("/early"), srv.url("/edge"), srv.url("/late")])
    assert_unrequested(pages[srv.url("/early")], "robots")
    assert_unrequested(pages[srv.url("/edge")], "robots")
    assert pages[srv.url("/late")].ok and srv.requests("/late") == 1


async def test_origins_beyond_the_parsed_cache_keep_their_rules_without_a_refetch(serve: Any) -> None:
    servers = [await serve(site(robots(f"User-agent: *\nDisallow: /secret{i}\n"))) for i in range(4)]
    cfg = obeying()
    limiter = Limiter(4, 4, 0.0)
    async with Fetcher(cfg, limiter) as fetcher:
        cache = RobotsCache(fetcher, limiter, cfg.fetch.user_agent, parsed=2)
        for _ in range(3):  # three rounds over four origins: each round evicts every parsed robots.txt
            for i, srv in enumerate(servers):
                assert await cache.check(srv.url(f"/ok{i}"), allow_private=True) is None
                refused = await cache.check(srv.url(f"/secret{i}/x"), allow_private=True)
                assert refused is not None and refused.kind == "robots"
                other = await cache.check(srv.url(f"/secret{(i + 1) % 4}"), allow_private=True)
                assert other is None  # each origin keeps its own rules
        assert len(cache._parsed) == 2
    assert [srv.requests("/robots.txt") for srv in servers] == [1, 1, 1, 1]


def test_only_the_whole_product_token_selects_a_group() -> None:
    from protego import Protego

    from scraper.robots import exact_groups

    text = ("User-agent: scrap\nDisallow: /a\n\nUser-agent: scraperbot\nDisallow: /b\n\n"
            "User-agent: SCRAPER\nUser-agent: other\nDisallow: /c\n\nUser-agent: *\nDisallow: /d\n")
    rules = Protego.parse(exact_groups(text, "scraper"))
    allowed = {p: rules.can_fetch(f"http://h.test{p}", "scraper") for p in ("/a", "/b", "/c", "/d")}
    assert allowed == {"/a": True, "/b": True, "/c": False, "/d": True}
    # no group of ours: the * group applies
    rules = Protego.parse(exact_groups("User-agent: scrap\nDisallow: /a\nUser-agent: *\nDisallow: /d\n", "scraper"))
    assert rules.can_fetch("http://h.test/a", "scraper") and not rules.can_fetch("http://h.test/d", "scraper")
