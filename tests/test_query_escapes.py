"""SPEC 5: in the query as in the path, escapes of reserved characters stay escaped (upper-cased),
escapes of unreserved ones are unescaped; links and redirects keep them, and the request sends them."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from scraper import Scraper
from scraper.parse import ParseJob, Parser
from scraper.urls import LinkFilter, normalize
from tests.conftest import config, html, page_handler


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("http://a.test/?y=%2f", "http://a.test/?y=%2F"),
        ("http://a.test/?y=%2F", "http://a.test/?y=%2F"),
        ("http://a.test/?q=%3f&r=%26&s=%3d&t=%2b&u=%23&v=%40&w=%3a", "http://a.test/?q=%3F&r=%26&s=%3D&t=%2B&u=%23&v=%40&w=%3A"),
        ("http://a.test/?a=%41%7e%2d%2E%5f%30", "http://a.test/?a=A~-._0"),  # unreserved: unescaped
        ("http://a.test/?next=http%3a%2f%2fb.test%2fx%3fk%3dv", "http://a.test/?next=http%3A%2F%2Fb.test%2Fx%3Fk%3Dv"),
        ("http://a.test/p%2fq?y=%2f#f%2f", "http://a.test/p%2Fq?y=%2F"),
        ("http://a.test?y=%2f", "http://a.test/?y=%2F"),
        # the rest as before: spaces, non-ASCII, a stray %, + and order
        ("http://a.test/?a=b c&é=%e2%82%ac", "http://a.test/?a=b+c&%C3%A9=%E2%82%AC"),
        ("http://a.test/?x=%zz&b=2&a=1+1", "http://a.test/?x=%25zz&b=2&a=1+1"),
        ("http://a.test/?x=%25", "http://a.test/?x=%25"),
    ],
)
def test_query_escapes(raw: str, normal: str) -> None:
    assert normalize(raw) == normal
    assert normalize(normal) == normal  # normal forms are fixed points


def test_links_keep_their_query_escapes() -> None:
    parser = Parser(fields={}, text=False, extract=None, link_filter=LinkFilter(True, (), ()))
    body = b'<a href="?y=%2f&z=%41">1</a><a href="">2</a><a href="q?a=%3d">3</a><a href="//b.test/?u=%2F">4</a>'
    out = parser.parse(ParseJob(final_url="http://a.test/p?y=%2F", content_type="text/html", body=body, follow=True,
                                sitemap=False))
    assert out.links == ["http://a.test/p?y=%2F&z=A", "http://a.test/p?y=%2F", "http://a.test/q?a=%3D",
                         "http://b.test/?u=%2F"]


async def test_the_request_sends_the_escapes_and_the_record_keeps_them(serve: Any, tmp_path: Any) -> None:
    seen: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(text=html("q"), content_type="text/html")

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/target?to=%2fhome%3fa%3d1"})  # as written

    site = await serve({
        "/": page_handler(html("root", links=["/echo?y=%2f", "/echo?y=/", "/moved"])),
        "/echo": echo,
        "/target": echo,
        "/moved": moved,
    })
    async with Scraper(config(tmp_path, crawl={"depth": 1})) as s:
        pages = {p.url: p async for p in s.crawl([site.url("/")])}
    assert sorted(seen) == ["/echo?y=%2F", "/echo?y=/", "/target?to=%2Fhome%3Fa%3D1"]  # two URLs, not one
    assert site.url("/echo?y=%2F") in pages and site.url("/echo?y=/") in pages
    assert pages[site.url("/moved")].final_url == site.url("/target?to=%2Fhome%3Fa%3D1")


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("http://a.test/a%2cb%40c%3ad%21e%24f%27g%28h%29i%2aj%3bk", "http://a.test/a%2Cb%40c%3Ad%21e%24f%27g%28h%29i%2Aj%3Bk"),
        ("http://a.test/%7euser/x/%2E%2e/%41", "http://a.test/~user/A"),  # unreserved unescaped, then ".." resolved
        ("http://a.test/x/../y%2f./z", "http://a.test/y%2F./z"),
        ("http://a.test/a,b@c:d", "http://a.test/a,b@c:d"),  # unescaped reserved characters stay unescaped
        ("http://a.test/%e2%82%ac/x y/%zz", "http://a.test/%E2%82%AC/x%20y/%25zz"),
    ],
)
def test_path_escapes(raw: str, normal: str) -> None:
    assert normalize(raw) == normal
    assert normalize(normal) == normal


def test_links_keep_their_path_escapes() -> None:
    parser = Parser(fields={}, text=False, extract=None, link_filter=LinkFilter(True, (), ()))
    body = (b'<base href="/d%2cir/"><a href="a%2cb">1</a><a href="../up%40x">2</a><a href="/r%3ds/./t">3</a>'
            b'<a href="%7ek">4</a>')
    out = parser.parse(ParseJob(final_url="http://a.test/p%2Cq", content_type="text/html", body=body, follow=True,
                                sitemap=False))
    assert out.links == ["http://a.test/d%2Cir/a%2Cb", "http://a.test/up%40x", "http://a.test/r%3Ds/t",
                         "http://a.test/d%2Cir/~k"]
